//! The event loop: draw, read a key, turn it into an [`Action`], update.

use std::io;

use ratatui::DefaultTerminal;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use weft_lineage::Lineage;

use crate::app::{Action, App};

/// Runs the explorer on `lineage` until the user quits. The terminal is put
/// back as it was on return, and by ratatui's panic hook on a panic.
pub fn run(lineage: Lineage) -> io::Result<()> {
    let mut terminal = ratatui::init();
    let result = event_loop(&mut terminal, App::new(lineage));
    ratatui::restore();
    result
}

fn event_loop(terminal: &mut DefaultTerminal, mut app: App) -> io::Result<()> {
    while !app.should_quit() {
        terminal.draw(|frame| frame.render_widget(&app, frame.area()))?;
        if let Event::Key(key) = event::read()?
            && let Some(action) = action_for(key)
        {
            app.update(action);
        }
    }
    Ok(())
}

/// The action a key press asks for, if any. Key releases and repeats of
/// releases (some terminals report them) are ignored.
pub fn action_for(key: KeyEvent) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    Some(match key.code {
        KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => Action::Quit,
        KeyCode::Char('q') | KeyCode::Esc => Action::Quit,
        KeyCode::Up | KeyCode::Char('k') => Action::Up,
        KeyCode::Down | KeyCode::Char('j') => Action::Down,
        KeyCode::PageUp => Action::PageUp,
        KeyCode::PageDown => Action::PageDown,
        KeyCode::Home | KeyCode::Char('g') => Action::Home,
        KeyCode::End | KeyCode::Char('G') => Action::End,
        KeyCode::Enter | KeyCode::Char(' ') => Action::Toggle,
        KeyCode::Right | KeyCode::Char('l') => Action::Expand,
        KeyCode::Left | KeyCode::Char('h') => Action::Collapse,
        KeyCode::Char('c') => Action::NextCritical,
        KeyCode::Tab | KeyCode::BackTab => Action::NextTab,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_actions() {
        let press = |code| KeyEvent::new(code, KeyModifiers::NONE);
        assert_eq!(action_for(press(KeyCode::Char('q'))), Some(Action::Quit));
        assert_eq!(
            action_for(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(Action::Quit)
        );
        assert_eq!(
            action_for(press(KeyCode::Char('c'))),
            Some(Action::NextCritical)
        );
        assert_eq!(action_for(press(KeyCode::Down)), Some(Action::Down));
        assert_eq!(action_for(press(KeyCode::Enter)), Some(Action::Toggle));
        assert_eq!(action_for(press(KeyCode::Char('x'))), None);
        let mut release = press(KeyCode::Down);
        release.kind = KeyEventKind::Release;
        assert_eq!(action_for(release), None);
    }
}
