//! The help overlay: every key of the current view and of every view, read
//! from the same tables that map keys to actions.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Block, Clear, Paragraph, Widget, Wrap};

use super::Theme;
use super::workflows::FLAGS;
use crate::app::{App, View};
use crate::keys::tables;

pub(super) fn render(app: &App, theme: Theme, area: Rect, buf: &mut Buffer) {
    // One column per table: this view's keys (and the flags), then the keys
    // of every view.
    let columns: Vec<Vec<Line>> = tables(app.context())
        .into_iter()
        .enumerate()
        .map(|(i, (name, table))| {
            let mut lines = vec![Line::styled(name.to_owned(), theme.title())];
            for b in table {
                lines.push(Line::raw(format!("{:<11} {}", b.label, b.help)));
            }
            if i == 0 && app.view() == View::Workflows && app.prompt().is_none() {
                lines.push(Line::raw(""));
                lines.push(Line::styled("flags", theme.title()));
                for (c, meaning) in FLAGS {
                    lines.push(Line::raw(format!("{c}  {meaning}")));
                }
            }
            lines
        })
        .collect();
    let tallest = columns.iter().map(Vec::len).max().unwrap_or(0) as u16;
    let width = area.width.min(120);
    // Room for a few wrapped lines on a narrow screen.
    let height = (tallest + 6).min(area.height);
    let [column] = Layout::horizontal([Constraint::Length(width)])
        .flex(Flex::Center)
        .areas(area);
    let [overlay] = Layout::vertical([Constraint::Length(height)])
        .flex(Flex::Center)
        .areas(column);
    Clear.render(overlay, buf);
    let block = Block::bordered().title(" keys · any key closes ");
    let inner = block.inner(overlay);
    block.render(overlay, buf);
    let parts = Layout::horizontal(vec![Constraint::Fill(1); columns.len().max(1)])
        .spacing(2)
        .split(inner);
    for (lines, part) in columns.into_iter().zip(parts.iter()) {
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .render(*part, buf);
    }
}
