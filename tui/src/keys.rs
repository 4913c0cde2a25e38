//! Keys: one table per context, read both to turn a key press into an
//! [`Action`] and to draw the help overlay, so the help cannot drift from
//! what the keys do.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::action::{Action, View};

/// A key as a binding names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Char(char),
    Code(KeyCode),
    Ctrl(char),
}

/// Keys, the label the help shows for them, and what they do.
#[derive(Debug, Clone, Copy)]
pub struct Binding {
    pub keys: &'static [Key],
    pub label: &'static str,
    pub action: Action,
    pub help: &'static str,
}

/// Where the keys go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// Typing into the filter prompt or the SQL editor.
    Typing,
    View(View),
}

const fn b(
    keys: &'static [Key],
    label: &'static str,
    action: Action,
    help: &'static str,
) -> Binding {
    Binding {
        keys,
        label,
        action,
        help,
    }
}

use Key::{Char as C, Code, Ctrl};

/// Keys every view (but typing) shares.
pub const GLOBAL: &[Binding] = &[
    b(&[Code(KeyCode::Up), C('k')], "↑ k", Action::Up, "move up"),
    b(
        &[Code(KeyCode::Down), C('j')],
        "↓ j",
        Action::Down,
        "move down",
    ),
    b(&[Code(KeyCode::PageUp)], "PgUp", Action::PageUp, "page up"),
    b(
        &[Code(KeyCode::PageDown)],
        "PgDn",
        Action::PageDown,
        "page down",
    ),
    b(
        &[Code(KeyCode::Home), C('g')],
        "Home g",
        Action::Home,
        "first",
    ),
    b(&[Code(KeyCode::End), C('G')], "End G", Action::End, "last"),
    b(&[Code(KeyCode::Tab)], "Tab", Action::NextView, "next view"),
    b(
        &[Code(KeyCode::BackTab)],
        "S-Tab",
        Action::PrevView,
        "previous view",
    ),
    b(&[C('1')], "1", Action::Show(View::Workflows), "workflows"),
    b(&[C('2')], "2", Action::Show(View::Lineage), "lineage"),
    b(&[C('3')], "3", Action::Show(View::Sql), "SQL"),
    b(&[C('4')], "4", Action::Show(View::Signals), "signals"),
    b(&[C('?')], "?", Action::Help, "this help"),
    b(
        &[Code(KeyCode::Esc)],
        "Esc",
        Action::Back,
        "back (on workflows: clear filters)",
    ),
    b(&[C('q')], "q", Action::Close, "back (on workflows: quit)"),
    b(&[Ctrl('c')], "C-c", Action::Quit, "quit"),
];

/// Marking for a diff, and the diff: the same on every list of workflows.
const MARK: Binding = b(
    &[C('m')],
    "m",
    Action::Mark,
    "mark / unmark for a diff (the last two marked)",
);
const DIFF_MARKED: Binding = b(
    &[C('d')],
    "d",
    Action::Diff,
    "diff the two marked workflows side by side",
);

pub const WORKFLOWS: &[Binding] = &[
    b(
        &[Code(KeyCode::Enter)],
        "Enter",
        Action::Enter,
        "open the workflow's lineage",
    ),
    b(&[C('/')], "/", Action::Filter, "filter by text"),
    b(
        &[C('s')],
        "s",
        Action::CycleService,
        "filter by service (cycles)",
    ),
    b(
        &[C('i')],
        "i",
        Action::CycleIdentity,
        "filter by identity (cycles)",
    ),
    b(
        &[C('e')],
        "e",
        Action::CycleStatus,
        "filter by status: all, error, ok",
    ),
    b(
        &[C('t')],
        "t",
        Action::CycleWindow,
        "time range: 15m 1h 6h 24h 7d",
    ),
    b(&[C('o')], "o", Action::Sort, "sort by time or duration"),
    MARK,
    DIFF_MARKED,
    b(
        &[C('c')],
        "c",
        Action::Conversation,
        "the workflow's conversation, turn by turn",
    ),
    b(&[C('r')], "r", Action::Refresh, "refresh now"),
];

pub const CONVERSATION: &[Binding] = &[
    b(
        &[Code(KeyCode::Enter)],
        "Enter",
        Action::Enter,
        "open the turn's lineage",
    ),
    MARK,
    DIFF_MARKED,
    b(
        &[C('r')],
        "r",
        Action::Refresh,
        "list the conversation again",
    ),
];

pub const DIFF: &[Binding] = &[b(&[C('r')], "r", Action::Refresh, "diff again")];

pub const LINEAGE: &[Binding] = &[
    b(
        &[Code(KeyCode::Enter), C(' ')],
        "Enter Space",
        Action::Enter,
        "fold / unfold; on the summary: jump to the span",
    ),
    b(
        &[Code(KeyCode::Right), C('l')],
        "→ l",
        Action::Right,
        "unfold",
    ),
    b(
        &[Code(KeyCode::Left), C('h')],
        "← h",
        Action::Left,
        "fold, or go to the parent",
    ),
    b(
        &[C('c')],
        "c",
        Action::NextCritical,
        "next step on the critical path",
    ),
    b(
        &[C('x')],
        "x",
        Action::FollowLink,
        "follow the span link (into the linked trace)",
    ),
    b(
        &[C('s')],
        "s",
        Action::SwitchPane,
        "steps / summary (findings, anomalies)",
    ),
    b(
        &[C('J')],
        "J",
        Action::DetailDown,
        "scroll the detail pane down",
    ),
    b(
        &[C('K')],
        "K",
        Action::DetailUp,
        "scroll the detail pane up",
    ),
    b(&[C('r')], "r", Action::Refresh, "reload the workflow"),
];

pub const SQL: &[Binding] = &[
    b(
        &[Code(KeyCode::Enter), C('i'), C('/')],
        "Enter i /",
        Action::Enter,
        "edit the query",
    ),
    b(
        &[Code(KeyCode::Left), C('h')],
        "← h",
        Action::Left,
        "scroll columns left",
    ),
    b(
        &[Code(KeyCode::Right), C('l')],
        "→ l",
        Action::Right,
        "scroll columns right",
    ),
];

pub const SIGNALS: &[Binding] = &[b(&[C('r')], "r", Action::Refresh, "refresh now")];

/// While typing (the filter prompt, the SQL editor); other keys type.
pub const TYPING: &[Binding] = &[
    b(
        &[Code(KeyCode::Enter)],
        "Enter",
        Action::Enter,
        "apply the filter / run the query",
    ),
    b(
        &[Code(KeyCode::Esc)],
        "Esc",
        Action::Back,
        "stop typing (the filter: clear it)",
    ),
    b(
        &[Code(KeyCode::Up)],
        "↑",
        Action::Up,
        "SQL: older query in the history",
    ),
    b(
        &[Code(KeyCode::Down)],
        "↓",
        Action::Down,
        "SQL: newer query in the history",
    ),
    b(
        &[Code(KeyCode::Left), Ctrl('b')],
        "← C-b",
        Action::Left,
        "cursor left",
    ),
    b(
        &[Code(KeyCode::Right), Ctrl('f')],
        "→ C-f",
        Action::Right,
        "cursor right",
    ),
    b(
        &[Code(KeyCode::Home), Ctrl('a')],
        "Home C-a",
        Action::Home,
        "start of line",
    ),
    b(
        &[Code(KeyCode::End), Ctrl('e')],
        "End C-e",
        Action::End,
        "end of line",
    ),
    b(
        &[Code(KeyCode::Backspace), Ctrl('h')],
        "Bksp",
        Action::Backspace,
        "delete left",
    ),
    b(
        &[Code(KeyCode::Delete), Ctrl('d')],
        "Del C-d",
        Action::Delete,
        "delete right",
    ),
    b(
        &[Ctrl('u')],
        "C-u",
        Action::KillToStart,
        "delete to the start of the line",
    ),
    b(
        &[Ctrl('k')],
        "C-k",
        Action::KillToEnd,
        "delete to the end of the line",
    ),
    b(
        &[Ctrl('w')],
        "C-w",
        Action::KillWord,
        "delete the word before the cursor",
    ),
    b(&[Code(KeyCode::Tab)], "Tab", Action::NextView, "next view"),
    b(&[Ctrl('c')], "C-c", Action::Quit, "quit"),
];

/// The bindings of a context, most specific first.
pub fn tables(context: Context) -> Vec<(&'static str, &'static [Binding])> {
    match context {
        Context::Typing => vec![("typing", TYPING)],
        Context::View(view) => {
            let own: (&str, &[Binding]) = match view {
                View::Workflows => ("workflows", WORKFLOWS),
                View::Lineage => ("lineage", LINEAGE),
                View::Sql => ("SQL results", SQL),
                View::Signals => ("signals", SIGNALS),
                View::Diff => ("diff", DIFF),
                View::Conversation => ("conversation", CONVERSATION),
            };
            vec![own, ("everywhere", GLOBAL)]
        }
    }
}

/// The action a key press asks for in `context`, if any. Releases (some
/// terminals report them) are ignored; while typing, a printable key types.
pub fn action_for(key: KeyEvent, context: Context) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    let pressed = |k: &Key| match (*k, key.code) {
        (Key::Char(c), KeyCode::Char(d)) => !ctrl && c == d,
        (Key::Ctrl(c), KeyCode::Char(d)) => ctrl && c == d,
        (Key::Code(c), code) => c == code,
        _ => false,
    };
    for (_, table) in tables(context) {
        if let Some(binding) = table.iter().find(|b| b.keys.iter().any(pressed)) {
            return Some(binding.action);
        }
    }
    match (context, key.code) {
        (Context::Typing, KeyCode::Char(c)) if !ctrl => Some(Action::Type(c)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn keys_map_to_actions_by_context() {
        let workflows = Context::View(View::Workflows);
        let lineage = Context::View(View::Lineage);
        assert_eq!(
            action_for(press(KeyCode::Char('q')), workflows),
            Some(Action::Close)
        );
        assert_eq!(
            action_for(
                KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL),
                lineage
            ),
            Some(Action::Quit)
        );
        assert_eq!(
            action_for(press(KeyCode::Char('c')), lineage),
            Some(Action::NextCritical)
        );
        assert_eq!(
            action_for(press(KeyCode::Char('s')), workflows),
            Some(Action::CycleService)
        );
        assert_eq!(
            action_for(press(KeyCode::Char('s')), lineage),
            Some(Action::SwitchPane)
        );
        assert_eq!(
            action_for(press(KeyCode::Char('j')), lineage),
            Some(Action::Down)
        );
        assert_eq!(
            action_for(press(KeyCode::Char('3')), lineage),
            Some(Action::Show(View::Sql))
        );
        assert_eq!(action_for(press(KeyCode::Char('z')), workflows), None);
        // Typing: letters and digits type, even those bound elsewhere.
        for c in ['q', 'j', '3', '/', '?'] {
            assert_eq!(
                action_for(press(KeyCode::Char(c)), Context::Typing),
                Some(Action::Type(c))
            );
        }
        assert_eq!(
            action_for(press(KeyCode::Esc), Context::Typing),
            Some(Action::Back)
        );
        let mut release = press(KeyCode::Down);
        release.kind = KeyEventKind::Release;
        assert_eq!(action_for(release, lineage), None);
    }

    #[test]
    fn no_key_means_two_things_in_one_context() {
        for view in [
            View::Workflows,
            View::Lineage,
            View::Sql,
            View::Signals,
            View::Diff,
            View::Conversation,
        ] {
            let tables = tables(Context::View(view));
            let own = tables[0].1;
            for binding in own {
                for key in binding.keys {
                    let twice = own.iter().filter(|b| b.keys.contains(key)).count();
                    assert_eq!(twice, 1, "{key:?} bound twice in {view:?}");
                    // A view may override a global key only on purpose.
                    let global = GLOBAL.iter().find(|g| g.keys.contains(key));
                    assert!(
                        global.is_none(),
                        "{key:?} in {view:?} shadows the global {:?}",
                        global.map(|g| g.help)
                    );
                }
            }
        }
    }
}
