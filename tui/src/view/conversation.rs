//! The conversation view: one line per workflow of a conversation, oldest
//! first, numbered by turn, with what each cost (tokens, models) and the flags
//! that deserve a look.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::Span;
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, Widget, Wrap};
use weft_lineage::WorkflowSummary;
use weft_lineage::render::duration;
use weft_schemas::StatusCode;

use super::workflows::{flags, mark_of, marks_title, thousands};
use super::{Theme, clock, fit, window_start};
use crate::app::App;
use crate::conversation::{ConversationState, Turns};

pub(super) fn render(app: &App, theme: Theme, area: Rect, buf: &mut Buffer) {
    let message = |title: String, text: String, style, buf: &mut Buffer| {
        Paragraph::new(text)
            .style(style)
            .wrap(Wrap { trim: false })
            .block(Block::bordered().title(title))
            .render(area, buf)
    };
    match app.conversation() {
        ConversationState::Empty => message(
            " conversation ".into(),
            "The selected workflow names no conversation (gen_ai.conversation.id or session.id). \
             On the workflows list, c opens the conversation of a workflow that names one."
                .into(),
            theme.dim(),
            buf,
        ),
        ConversationState::Loading(id) => message(
            format!(" conversation {id} "),
            "Listing the conversation's workflows …".into(),
            theme.dim(),
            buf,
        ),
        ConversationState::Failed(id, why) => message(
            format!(" conversation {id} "),
            format!("The conversation could not be listed: {why}"),
            theme.alert(),
            buf,
        ),
        ConversationState::Ready(turns) => table(app, turns, theme, area, buf),
    }
}

fn table(app: &App, turns: &Turns, theme: Theme, area: Rect, buf: &mut Buffer) {
    let n = turns.workflows.len();
    let mut title = format!(
        " conversation {} · {} workflow{}",
        turns.id,
        if turns.capped() {
            format!("first {n}")
        } else {
            n.to_string()
        },
        if n == 1 { "" } else { "s" }
    );
    if let Some(traces) = turns.traces {
        title.push_str(&format!(" · {} traces", thousands(traces)));
    }
    let (tokens_in, tokens_out) = turns.workflows.iter().fold((0i64, 0i64), |(i, o), w| {
        (
            i.saturating_add(w.input_tokens),
            o.saturating_add(w.output_tokens),
        )
    });
    title.push_str(&format!(" · tokens {tokens_in} in, {tokens_out} out "));
    title.push_str(marks_title(app));
    let block = Block::bordered().title(title);
    if n == 0 {
        return Paragraph::new("No workflow of this conversation is stored (any more).")
            .style(theme.dim())
            .block(block)
            .render(area, buf);
    }
    let wide = area.width >= 120;
    let inner_height = area.height.saturating_sub(3) as usize;
    let first = window_start(turns.selected, inner_height);
    // Narrow terminals leave the models to the lineage, for the name's sake.
    let models_width = if wide { 28 } else { 0 };
    let rows = turns
        .workflows
        .iter()
        .enumerate()
        .skip(first)
        .take(inner_height)
        .map(|(i, w)| {
            let mark = mark_of(app, w.trace_id);
            row(i, w, theme, i == turns.selected, mark, models_width)
        });
    let mut widths = vec![
        Constraint::Length(5),
        Constraint::Length(9),
        Constraint::Length(6),
        Constraint::Length(8),
        Constraint::Length(5),
        Constraint::Length(13),
    ];
    let mut header = vec!["turn", "start", "flags", "took", "spans", "tokens in/out"];
    if wide {
        widths.push(Constraint::Length(models_width as u16));
        header.push("models");
    }
    widths.push(Constraint::Fill(1));
    header.push("name");
    Table::new(rows, widths)
        .header(Row::new(header).style(theme.title()))
        .block(block)
        .render(area, buf);
}

fn row<'a>(
    i: usize,
    w: &'a WorkflowSummary,
    theme: Theme,
    selected: bool,
    mark: Option<char>,
    models_width: usize,
) -> Row<'a> {
    let cursor = if selected { "›" } else { " " };
    let mut name = match mark {
        Some(m) => format!("[{m}] {}", w.name),
        None => w.name.clone(),
    };
    if w.status == StatusCode::Error {
        name.push_str(" (error)");
    }
    let mut cells = vec![
        Cell::from(format!("{cursor}{:>3}", i + 1)),
        Cell::from(clock(w.start_ns)),
        Cell::from(flags(w, theme)),
        Cell::from(duration(w.duration_ns())),
        Cell::from(w.spans.to_string()),
        Cell::from(format!("{}/{}", w.input_tokens, w.output_tokens)),
    ];
    if models_width > 0 {
        cells.push(Cell::from(Span::raw(fit(
            &w.models.join(","),
            models_width,
        ))));
    }
    cells.push(Cell::from(name));
    let r = Row::new(cells);
    if selected {
        r.style(theme.selected())
    } else {
        r
    }
}
