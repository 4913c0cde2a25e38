//! The workflows view: one line per recent workflow, newest (or longest)
//! first, with the flags that deserve a look.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, Widget, Wrap};
use weft_lineage::WorkflowSummary;
use weft_lineage::render::duration;
use weft_schemas::StatusCode;

use super::{Theme, clock, fit, window_start};
use crate::app::App;
use crate::workflows::{Sort, StatusFilter};

/// The flags column, in order: letter and meaning (the help shows them too).
pub(crate) const FLAGS: [(char, &str); 6] = [
    ('E', "a step failed"),
    ('D', "a policy denied"),
    ('F', "a governance finding"),
    ('W', "a write no allow or approval gated"),
    ('A', "an anomaly (missing parent, skew, …)"),
    ('~', "spans may still be arriving"),
];

/// `1863` as `1,863`.
pub(super) fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

pub(super) fn render(app: &App, theme: Theme, area: Rect, buf: &mut Buffer) {
    let list = app.workflows();
    // How much of the window the list is: a capped list says so, and how
    // many traces started in the window.
    let count = match (list.capped(), list.traces()) {
        (true, Some(traces)) => format!(
            "{} of the newest {} (capped; {} traces started)",
            list.shown().len(),
            list.total(),
            thousands(traces)
        ),
        (true, None) => format!(
            "{} of the newest {} (capped)",
            list.shown().len(),
            list.total()
        ),
        (false, Some(traces)) => format!(
            "{} of {} · {} traces",
            list.shown().len(),
            list.total(),
            thousands(traces)
        ),
        (false, None) => format!("{} of {}", list.shown().len(), list.total()),
    };
    let mut title = format!(
        " workflows · last {} · {count} · by {} ",
        list.window().0,
        match list.sort() {
            Sort::Time => "time",
            Sort::Duration => "duration",
        }
    );
    let mut filters = Vec::new();
    if !list.text().is_empty() {
        filters.push(format!("/{}", list.text()));
    }
    if let Some(s) = list.service() {
        filters.push(format!("service={s}"));
    }
    if let Some(i) = list.identity() {
        filters.push(format!("identity={i}"));
    }
    match list.status() {
        StatusFilter::All => {}
        StatusFilter::Error => filters.push("status=error".into()),
        StatusFilter::Ok => filters.push("status=ok".into()),
    }
    if !filters.is_empty() {
        title.push_str(&format!("· {} · Esc clears ", filters.join(" ")));
    }
    title.push_str(marks_title(app));
    let block = Block::bordered().title(title);
    let empty = |text: String, style: Style| {
        Paragraph::new(text)
            .style(style)
            .wrap(Wrap { trim: false })
            .block(block.clone())
    };
    if let Some(e) = list.error() {
        return empty(
            format!("The workflows could not be listed: {e}"),
            theme.alert(),
        )
        .render(area, buf);
    }
    if !list.loaded() {
        return empty("Loading workflows …".into(), theme.dim()).render(area, buf);
    }
    if list.shown().len() == 0 {
        let text = if list.total() == 0 {
            format!(
                "No workflows started in the last {}. Send some (`weft demo`), or press t for a longer range.",
                list.window().0
            )
        } else {
            "No workflow passes the filters; Esc clears them.".into()
        };
        return empty(text, theme.dim()).render(area, buf);
    }
    let wide = area.width >= 120;
    let inner_height = area.height.saturating_sub(3) as usize; // borders and the header row
    let first = window_start(list.selected(), inner_height);
    // Service, agent and identity columns as wide as what they hold (up to
    // a cap), so the name column gets the rest rather than a cut identity.
    let fixed = 9 + 6 + 8 + 5 + 6 + 7;
    let room = (area.width as usize).saturating_sub(fixed + 2 + MIN_NAME);
    let fit_to = |text: fn(&WorkflowSummary) -> Option<&str>, header: usize, cap: usize| {
        list.shown()
            .map(|w| text(w).map_or(0, |t| t.chars().count()))
            .max()
            .unwrap_or(0)
            .max(header)
            .min(cap)
    };
    let service = fit_to(|w| w.service.as_deref(), 7, if wide { 24 } else { 14 });
    let (agent, identity) = if wide {
        let agent = fit_to(|w| w.agent.as_deref(), 5, 20);
        let identity = fit_to(|w| w.identity.as_deref(), 8, 40);
        // Narrow the widest first until the name column keeps its minimum.
        let over = (service + agent + identity).saturating_sub(room);
        (agent, identity.saturating_sub(over).max(8))
    } else {
        (0, 0)
    };
    let widths_of = Widths {
        service,
        agent,
        identity,
    };
    let rows = list
        .shown()
        .enumerate()
        .skip(first)
        .take(inner_height)
        .map(|(i, w)| {
            let mark = mark_of(app, w.trace_id);
            row(w, theme, wide, i == list.selected(), mark, widths_of)
        });
    let mut widths = vec![
        Constraint::Length(9),
        Constraint::Length(6),
        Constraint::Length(8),
        Constraint::Length(5),
        Constraint::Length(service as u16),
    ];
    let mut header = vec!["start", "flags", "took", "spans", "service"];
    if wide {
        widths.extend([
            Constraint::Length(agent as u16),
            Constraint::Length(identity as u16),
            Constraint::Length(6),
        ]);
        header.extend(["agent", "identity", "traces"]);
    }
    widths.push(Constraint::Fill(1));
    header.push("name");
    Table::new(rows, widths)
        .header(Row::new(header).style(theme.title()))
        .block(block)
        .render(area, buf);
}

/// The name column keeps at least this many characters.
const MIN_NAME: usize = 24;

/// The widths of the columns sized to their content.
#[derive(Clone, Copy)]
struct Widths {
    service: usize,
    agent: usize,
    identity: usize,
}

/// `a` or `b` for a workflow marked for a diff (the first marked, the second).
pub(super) fn mark_of(app: &App, trace: weft_schemas::TraceId) -> Option<char> {
    app.marked()
        .iter()
        .position(|t| *t == trace)
        .map(|k| if k == 0 { 'a' } else { 'b' })
}

/// What a list's title says of the workflows marked for a diff.
pub(super) fn marks_title(app: &App) -> &'static str {
    match app.marked().len() {
        0 => "",
        1 => "· 1 marked (m another, then d) ",
        _ => "· 2 marked (d: diff) ",
    }
}

/// The flags column of a workflow: one letter of [`FLAGS`] per flag set.
pub(super) fn flags(w: &WorkflowSummary, theme: Theme) -> Span<'static> {
    let f = w.flags;
    let on = [
        f.error,
        f.policy_deny,
        f.finding,
        f.ungated_write,
        f.anomaly,
        w.in_flight,
    ];
    let letters: String = FLAGS
        .iter()
        .zip(on)
        .map(|((c, _), set)| if set { *c } else { '·' })
        .collect();
    let style = if f.error || f.policy_deny || f.ungated_write || f.finding {
        theme.alert()
    } else {
        theme.dim()
    };
    Span::styled(letters, style)
}

fn row<'a>(
    w: &'a WorkflowSummary,
    theme: Theme,
    wide: bool,
    selected: bool,
    mark: Option<char>,
    widths: Widths,
) -> Row<'a> {
    let cursor = if selected { "›" } else { " " };
    let status_style = if w.status == StatusCode::Error {
        theme.alert()
    } else {
        theme.fg(Color::Green)
    };
    let mut cells = vec![
        Cell::from(format!("{cursor}{}", clock(w.start_ns))),
        Cell::from(flags(w, theme)),
        Cell::from(duration(w.duration_ns())),
        Cell::from(w.spans.to_string()),
        Cell::from(Line::from(vec![Span::styled(
            fit(w.service.as_deref().unwrap_or("?"), widths.service),
            status_style,
        )])),
    ];
    if wide {
        cells.push(Cell::from(fit(
            w.agent.as_deref().unwrap_or(""),
            widths.agent,
        )));
        cells.push(Cell::from(fit(
            w.identity.as_deref().unwrap_or(""),
            widths.identity,
        )));
        cells.push(Cell::from(w.traces.len().to_string()));
    }
    let mut name = match mark {
        Some(m) => format!("[{m}] {}", w.name),
        None => w.name.clone(),
    };
    if w.status == StatusCode::Error {
        name.push_str(" (error)");
    }
    cells.push(Cell::from(name));
    let r = Row::new(cells);
    if selected {
        r.style(theme.selected())
    } else {
        r
    }
}
