//! The diff view: two marked workflows side by side — the first run on the
//! left, the second on the right, each step that differs on one row: removed
//! (left only), added (right only), changed (both, each fact with its value
//! in that run). Steps in tree order, so the rows read like both trees.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Widget, Wrap};
use weft_lineage::diff::{RunDiff, RunSide};
use weft_lineage::render::duration;
use weft_schemas::TraceId;

use super::Theme;
use crate::app::{App, DiffState};

pub(super) fn render(app: &App, theme: Theme, area: Rect, buf: &mut Buffer) {
    let message = |text: String, style: Style| {
        Paragraph::new(text)
            .style(style)
            .wrap(Wrap { trim: false })
            .block(Block::bordered().title(" diff "))
    };
    match app.diff() {
        DiffState::Empty => message(
            "Mark two workflows on the workflows view (m), then press d to see what changed \
             between them, side by side."
                .into(),
            theme.dim(),
        )
        .render(area, buf),
        DiffState::Loading(a, b) => message(
            format!("Comparing {} with {} …", short(a), short(b)),
            theme.dim(),
        )
        .render(area, buf),
        DiffState::Failed(a, b, why) => message(
            format!("{} and {} could not be compared: {why}", short(a), short(b)),
            theme.alert(),
        )
        .render(area, buf),
        DiffState::Ready(_, _, diff, scroll) => sides(diff, *scroll, theme, area, buf),
    }
}

fn short(t: &TraceId) -> String {
    t.to_hex()[..8].to_owned()
}

fn run_line(label: &str, s: &RunSide) -> String {
    format!(
        "{label}: {} steps · {} · {} errors · {}",
        s.steps,
        duration(s.duration_ns),
        s.errors,
        s.traces.first().map_or("", |t| &t[..8.min(t.len())])
    )
}

/// The rows of both sides, paired: `(left, right, style)`.
fn rows(d: &RunDiff, theme: Theme) -> Vec<(String, String, Style)> {
    enum Entry<'a> {
        Removed(&'a str),
        Added(&'a str),
        Changed(&'a weft_lineage::diff::Changed),
    }
    let mut entries: Vec<(&str, Entry)> = Vec::new();
    entries.extend(
        d.removed
            .iter()
            .map(|s| (s.step.as_str(), Entry::Removed(&s.step))),
    );
    entries.extend(
        d.added
            .iter()
            .map(|s| (s.step.as_str(), Entry::Added(&s.step))),
    );
    entries.extend(
        d.changed
            .iter()
            .map(|c| (c.step.as_str(), Entry::Changed(c))),
    );
    entries.sort_by_key(|(step, _)| *step);
    let mut out = Vec::new();
    for (_, entry) in entries {
        match entry {
            Entry::Removed(step) => out.push((format!("- {step}"), String::new(), theme.alert())),
            Entry::Added(step) => {
                out.push((String::new(), format!("+ {step}"), theme.fg(Color::Green)))
            }
            Entry::Changed(c) => {
                let step = format!("~ {}", c.step);
                out.push((step.clone(), step, theme.title()));
                for ch in &c.changes {
                    out.push((
                        format!("    {}: {}", ch.field, ch.shown(&ch.a)),
                        format!("    {}: {}", ch.field, ch.shown(&ch.b)),
                        Style::new(),
                    ));
                }
            }
        }
    }
    out
}

fn sides(d: &RunDiff, scroll: usize, theme: Theme, area: Rect, buf: &mut Buffer) {
    let title = if d.is_empty() {
        format!(" diff · no differences ({} steps aligned) ", d.unchanged)
    } else {
        format!(
            " diff · {} added · {} removed · {} changed · {} unchanged · ↑↓ scroll ",
            d.added.len(),
            d.removed.len(),
            d.changed.len(),
            d.unchanged
        )
    };
    let block = Block::bordered().title(title);
    let inner = block.inner(area);
    block.render(area, buf);
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(inner);
    let rows = rows(d, theme);
    let height = inner.height.saturating_sub(1) as usize;
    let first = scroll.min(rows.len().saturating_sub(height));
    let shown = rows.iter().skip(first).take(height);
    let mut l = vec![Line::styled(run_line("a", &d.a), theme.title())];
    let mut r = vec![Line::styled(run_line("b", &d.b), theme.title())];
    for (a, b, style) in shown {
        l.push(Line::styled(a.clone(), *style));
        r.push(Line::styled(b.clone(), *style));
    }
    Paragraph::new(l).render(left, buf);
    Paragraph::new(r).render(right, buf);
}
