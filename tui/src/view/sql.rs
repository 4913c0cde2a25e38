//! The SQL view: the query being edited, then the result as a table scrolled
//! by rows and columns, or the error in place of it.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, Widget, Wrap};

use super::{Theme, fit};
use crate::app::App;
use crate::data::Table as Data;
use crate::sql::Outcome;

/// Widest a column is drawn; longer cells are cut with `…`.
const MAX_COLUMN: usize = 40;

/// The example's first character, drawn under the cursor of an empty box.
fn example_first() -> String {
    crate::sql::FIRST_QUERY
        .chars()
        .next()
        .map_or(" ".into(), String::from)
}

pub(super) fn render(app: &App, theme: Theme, area: Rect, buf: &mut Buffer) {
    let sql = app.sql();
    let [input, result] = Layout::vertical([Constraint::Length(3), Constraint::Min(1)]).areas(area);
    let title = if sql.editing() {
        " query · Enter runs · ↑↓ history · Esc to the result "
    } else {
        " query · Enter edits "
    };
    let text = sql.input();
    let width = input.width.saturating_sub(2) as usize;
    // Keep the cursor in view on a long query.
    let skip = if sql.editing() {
        (sql.cursor() + 1).saturating_sub(width.max(1))
    } else {
        0
    };
    let mut spans = vec![Span::raw(
        text.chars()
            .skip(skip)
            .take(sql.cursor().saturating_sub(skip))
            .collect::<String>(),
    )];
    if sql.editing() {
        let at: String = text
            .chars()
            .nth(sql.cursor())
            .map_or(" ".into(), String::from);
        spans.push(Span::styled(at, theme.selected()));
        spans.push(Span::raw(
            text.chars().skip(sql.cursor() + 1).collect::<String>(),
        ));
    } else {
        spans.push(Span::raw(
            text.chars().skip(sql.cursor()).collect::<String>(),
        ));
    }
    if let Some(example) = sql.placeholder() {
        // The empty box shows the example, dimmed, after the cursor.
        let example = if sql.editing() {
            example.chars().skip(1).collect::<String>()
        } else {
            example.to_owned()
        };
        if sql.editing() {
            spans[1] = Span::styled(example_first(), theme.selected());
        }
        spans.push(Span::styled(
            format!("{example}  (Enter runs this example; type to replace it)"),
            theme.dim(),
        ));
    }
    Paragraph::new(Line::from(spans))
        .block(Block::bordered().title(title))
        .render(input, buf);

    if let Some(running) = sql.running() {
        return Paragraph::new(format!("Running: {running}"))
            .style(theme.dim())
            .wrap(Wrap { trim: false })
            .block(Block::bordered().title(" result "))
            .render(result, buf);
    }
    match sql.outcome() {
        None => Paragraph::new(format!(
            "Type a query and press Enter. Tables: spans, span_links, span_structure; the view service_calls; lineage('<trace id>').{}",
            if sql.history().is_empty() { "" } else { " ↑ recalls earlier queries." }
        ))
        .style(theme.dim())
        .wrap(Wrap { trim: false })
        .block(Block::bordered().title(" result "))
        .render(result, buf),
        Some((_, Outcome::Error(e))) => Paragraph::new(e.clone())
            .style(theme.alert())
            .wrap(Wrap { trim: false })
            .block(Block::bordered().title(" error "))
            .render(result, buf),
        Some((_, Outcome::Table(t))) => table(t, sql.scroll(), theme, result, buf),
    }
}

fn table(t: &Data, (row, column): (usize, usize), theme: Theme, area: Rect, buf: &mut Buffer) {
    let height = area.height.saturating_sub(3) as usize;
    let shown: Vec<&Vec<String>> = t.rows.iter().skip(row).take(height).collect();
    let columns: Vec<usize> = (column..t.columns.len()).collect();
    let widths: Vec<Constraint> = columns
        .iter()
        .map(|c| {
            let cells = shown
                .iter()
                .filter_map(|r| r.get(*c))
                .map(|v| v.chars().count());
            let w = cells
                .chain([t.columns[*c].chars().count()])
                .max()
                .unwrap_or(1)
                .min(MAX_COLUMN);
            Constraint::Length(w as u16)
        })
        .collect();
    let cell = |v: &str| Cell::from(fit(v, MAX_COLUMN));
    let rows = shown.iter().map(|r| {
        Row::new(
            columns
                .iter()
                .map(|c| cell(r.get(*c).map_or("", String::as_str))),
        )
    });
    let mut title = format!(" {} row(s) · {} column(s)", t.rows.len(), t.columns.len());
    if row > 0 || column > 0 {
        title.push_str(&format!(" · from row {} column {}", row + 1, column + 1));
    }
    if let Some(why) = &t.truncated {
        title.push_str(&format!(" · truncated: {why}"));
    }
    title.push_str(" · ↑↓ ←→ scroll ");
    Table::new(rows, widths)
        .header(Row::new(columns.iter().map(|c| cell(&t.columns[*c]))).style(theme.title()))
        .column_spacing(2)
        .block(Block::bordered().title(title))
        .render(area, buf);
}
