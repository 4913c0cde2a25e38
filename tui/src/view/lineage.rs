//! The lineage view: the folded tree with a waterfall bar per step, the
//! selected step's details, and the summary pane.

use std::fmt::Write as _;

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Widget, Wrap};
use weft_lineage::render::duration;
use weft_lineage::{EdgeKind, Node};
use weft_schemas::StatusCode;

use super::{Theme, fit, window_start};
use crate::app::{App, Details, LineageState};
use crate::data::{Attribute, SpanDetail};
use crate::explorer::{Explorer, Pane, Row};

pub(super) fn render(app: &App, theme: Theme, area: Rect, buf: &mut Buffer) {
    let x = match app.lineage() {
        LineageState::Ready(x) => x,
        LineageState::Empty => {
            return message(
                "No workflow open: pick one on the workflows view (1) and press Enter.",
                theme.dim(),
                area,
                buf,
            );
        }
        LineageState::Loading(t) => {
            return message(
                &format!("Loading the workflow of trace {t} …"),
                theme.dim(),
                area,
                buf,
            );
        }
        LineageState::Failed(t, why, _) => {
            return message(
                &format!(
                    "Could not load the workflow of trace {t}: {why}\n\nr retries · q goes back"
                ),
                theme.alert(),
                area,
                buf,
            );
        }
    };
    let [title, body] = Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(area);
    heading(x, theme).render(title, buf);
    if x.pane() == Pane::Summary {
        return summary(x, theme, body, buf);
    }
    // Side by side when there is room, else the details below the steps.
    let [steps, detail] = if body.width >= 120 {
        Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(body)
    } else {
        Layout::vertical([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(body)
    };
    steps_pane(x, theme, steps, buf);
    let lines = detail_lines(app, x, theme);
    let scroll = x.detail_scroll().min(lines.len().saturating_sub(1));
    Paragraph::new(lines)
        .wrap(Wrap { trim: false })
        .scroll((u16::try_from(scroll).unwrap_or(u16::MAX), 0))
        .block(Block::bordered().title(" step · J/K scroll "))
        .render(detail, buf);
}

fn message(text: &str, style: Style, area: Rect, buf: &mut Buffer) {
    Paragraph::new(text.to_owned())
        .style(style)
        .wrap(Wrap { trim: false })
        .block(Block::bordered())
        .render(area, buf);
}

/// The workflow in one line.
fn heading(x: &Explorer, theme: Theme) -> Line<'_> {
    let l = x.lineage();
    let (first, last) = x.time_span();
    let root = x.first_root().map_or("?", |n| &*n.span.name);
    let mut spans = vec![
        Span::styled(format!(" {root} "), theme.title()),
        Span::raw(format!(
            "· {} span(s) in {} trace(s) · {} ",
            l.nodes.len(),
            l.traces.len(),
            duration(last.saturating_sub(first))
        )),
    ];
    let findings = l.summary.findings.len();
    let anomalies = l.anomalies.len();
    let style = |n: usize| if n > 0 { theme.alert() } else { theme.dim() };
    spans.push(Span::styled(
        format!("· {findings} finding(s) "),
        style(findings),
    ));
    spans.push(Span::styled(
        format!(
            "· {anomalies} anomal{} ",
            if anomalies == 1 { "y" } else { "ies" }
        ),
        style(anomalies),
    ));
    spans.push(Span::styled("· s summary", theme.dim()));
    Line::from(spans)
}

/// The visible rows of the tree, each with its waterfall bar.
fn steps_pane(x: &Explorer, theme: Theme, area: Rect, buf: &mut Buffer) {
    let block =
        Block::bordered().title(" steps · * critical path · ⇢ link · ≈ evidence · ? orphan ");
    let inner = block.inner(area);
    block.render(area, buf);
    let height = inner.height as usize;
    let width = inner.width as usize;
    // The waterfall takes what the names leave, at most half.
    let bar_width = if width >= 60 {
        width * 2 / 5
    } else {
        width / 3
    };
    let name_width = width.saturating_sub(bar_width + 1);
    let first = window_start(x.selected(), height);
    let lines: Vec<Line> = x
        .rows()
        .iter()
        .enumerate()
        .skip(first)
        .take(height)
        .map(|(i, row)| step_line(x, theme, row, i == x.selected(), name_width, bar_width))
        .collect();
    Paragraph::new(lines).render(inner, buf);
}

fn step_line<'a>(
    x: &'a Explorer,
    theme: Theme,
    row: &Row,
    selected: bool,
    name_width: usize,
    bar_width: usize,
) -> Line<'a> {
    let node = &x.lineage().nodes[row.node];
    let fold = if row.repeat || !x.has_children(row.node) {
        "  "
    } else if x.is_collapsed(row.node) {
        "▸ "
    } else {
        "▾ "
    };
    let edge = match row.via {
        Some(EdgeKind::Link) => "⇢ ",
        Some(EdgeKind::Orphan) => "? ",
        Some(EdgeKind::Evidence) => "≈ ",
        _ => "",
    };
    let star = if node.on_critical_path { "* " } else { "" };
    // A visible cursor too, for terminals (and snapshots) without reverse video.
    let cursor = if selected { "›" } else { " " };
    let mut text = format!(
        "{cursor}{}{fold}{edge}{star}{}",
        "  ".repeat(row.depth.min(32)),
        node.span.name
    );
    if row.repeat {
        text.push_str(" (shown above)");
    } else if let Some(kind) = node.span.ai.fields.ai_kind() {
        let _ = write!(text, " [{}]", kind.as_str());
    }
    let error = node.span.status == StatusCode::Error;
    if error {
        text.push_str(" error");
    }
    let text = format!("{:<name_width$}", fit(&text, name_width));
    let name_style = if error { theme.alert() } else { Style::new() };
    let mut spans = vec![Span::styled(text, name_style), Span::raw(" ")];
    spans.extend(bar(x, theme, node, bar_width));
    let line = Line::from(spans);
    if selected {
        line.style(theme.selected())
    } else {
        line
    }
}

/// The step's place in the workflow's time: blank before it starts, a bar
/// while it runs (at least one cell), scaled to the whole workflow.
fn bar<'a>(x: &Explorer, theme: Theme, node: &Node, width: usize) -> Vec<Span<'a>> {
    if width == 0 {
        return Vec::new();
    }
    let (first, last) = x.time_span();
    let total = last.saturating_sub(first).max(1) as f64;
    let cell = |t: i64| (((t.saturating_sub(first)) as f64 / total) * width as f64) as usize;
    let start = cell(node.span.start_ns).min(width - 1);
    let end = cell(node.span.end_ns).clamp(start + 1, width);
    let (glyph, style) = if node.span.status == StatusCode::Error {
        ("█", theme.alert())
    } else if node.on_critical_path {
        ("█", theme.fg(Color::Yellow).add_modifier(Modifier::BOLD))
    } else {
        ("▆", theme.fg(Color::Cyan))
    };
    vec![
        Span::raw(" ".repeat(start)),
        Span::styled(glyph.repeat(end - start), style),
        Span::raw(" ".repeat(width - end)),
    ]
}

/// The summary pane: findings and anomalies (Enter jumps to the span), then
/// the review questions.
fn summary(x: &Explorer, theme: Theme, area: Rect, buf: &mut Buffer) {
    let block = Block::bordered()
        .title(" summary · Enter on a finding or anomaly jumps to its span · s steps ");
    let inner = block.inner(area);
    block.render(area, buf);
    let height = inner.height as usize;
    let first = window_start(x.summary_selected(), height);
    let lines: Vec<Line> = x
        .summary()
        .iter()
        .enumerate()
        .skip(first)
        .take(height)
        .map(|(i, l)| {
            // The cursor marks only a line Enter acts on; on a summary
            // with none it just scrolls, unmarked.
            let selected = i == x.summary_selected() && l.target.is_some();
            let cursor = if selected { "›" } else { " " };
            let jump = if l.target.is_some() { " →" } else { "" };
            let style = if l.alert { theme.alert() } else { Style::new() };
            let line = Line::styled(format!("{cursor}{}{jump}", l.text), style);
            if selected {
                line.style(theme.selected())
            } else {
                line
            }
        })
        .collect();
    Paragraph::new(lines).render(inner, buf);
}

/// The facts of the selected step, then every attribute, resource
/// attribute, event and link stored for it.
fn detail_lines<'a>(app: &App, x: &Explorer, theme: Theme) -> Vec<Line<'a>> {
    let Some(node) = x.selected_node() else {
        return vec![Line::raw("no spans")];
    };
    let (origin, _) = x.time_span();
    let mut lines: Vec<Line> = describe(node, origin)
        .lines()
        .map(|l| Line::raw(l.to_owned()))
        .collect();
    // Evidence joins into and out of this step: what each rests on.
    let here = x.rows()[x.selected()].node;
    for e in &x.lineage().edges {
        let Some(ev) = &e.evidence else { continue };
        let (arrow, other) = match (e.from == here, e.to == here) {
            (_, true) => ("from", e.from),
            (true, _) => ("to", e.to),
            _ => continue,
        };
        lines.push(Line::raw(format!(
            "{:<10}{arrow} {} · {}={} (no trace context)",
            "evidence",
            x.lineage().nodes[other].span.name,
            ev.key,
            ev.value
        )));
    }
    let linked = x.linked(x.rows()[x.selected()].node);
    if !linked.is_empty() {
        let names: Vec<&str> = linked
            .iter()
            .map(|n| &*x.lineage().nodes[*n].span.name)
            .collect();
        lines.push(Line::raw(format!(
            "{:<10}{} (x follows)",
            "linked",
            names.join(", ")
        )));
    }
    match app.details(&node.span.trace_id) {
        None | Some(Details::Loading) => {
            lines.push(Line::styled("loading attributes …", theme.dim()))
        }
        Some(Details::Failed(why)) => {
            lines.push(Line::styled(format!("attributes: {why}"), theme.alert()))
        }
        Some(Details::Ready(spans)) => match spans.get(&node.span.span_id) {
            Some(d) => stored_lines(d, origin, theme, &mut lines),
            None => lines.push(Line::styled(
                "(no stored attributes for this span)",
                theme.dim(),
            )),
        },
    }
    lines
}

fn stored_lines<'a>(d: &SpanDetail, origin: i64, theme: Theme, lines: &mut Vec<Line<'a>>) {
    let section = |lines: &mut Vec<Line<'a>>, title: String| {
        lines.push(Line::raw(""));
        lines.push(Line::styled(title, theme.title()));
    };
    let pairs = |lines: &mut Vec<Line<'a>>, attrs: &[Attribute], indent: &str| {
        for (k, v) in attrs {
            lines.push(Line::raw(format!("{indent}{k} = {v}")));
        }
    };
    if !d.kind.is_empty() {
        lines.push(Line::raw(format!("{:<10}{}", "span kind", d.kind)));
    }
    section(lines, format!("attributes ({})", d.attributes.len()));
    pairs(lines, &d.attributes, "  ");
    section(lines, format!("resource ({})", d.resource.len()));
    pairs(lines, &d.resource, "  ");
    section(lines, format!("events ({})", d.events.len()));
    for e in &d.events {
        lines.push(Line::raw(format!(
            "  +{} {}",
            duration(e.time_ns - origin),
            e.name
        )));
        pairs(lines, &e.attributes, "    ");
    }
    section(lines, format!("links ({})", d.links.len()));
    for l in &d.links {
        let id = |v: Option<String>| v.unwrap_or_else(|| "?".into());
        lines.push(Line::raw(format!(
            "  {}:{}",
            id(l.trace_id.map(|t| t.to_hex())),
            id(l.span_id.map(|s| s.to_hex()))
        )));
        pairs(lines, &l.attributes, "    ");
    }
}

/// The facts of one step as text; `origin` is the workflow's first start.
fn describe(node: &Node, origin: i64) -> String {
    let s = &node.span;
    let ai = &s.ai;
    let mut out = String::new();
    let mut line = |k: &str, v: String| {
        let _ = writeln!(out, "{k:<10}{v}");
    };
    line("name", s.name.to_string());
    line("trace", s.trace_id.to_hex());
    line("span", s.span_id.to_hex());
    if let Some(service) = &s.service {
        line("service", service.to_string());
    }
    let mut status = s.status.as_str().to_owned();
    if let Some(m) = &s.status_message {
        let _ = write!(status, ": {m}");
    }
    line("status", status);
    line(
        "time",
        format!(
            "+{} · took {}",
            duration(s.start_ns - origin),
            duration(s.duration_ns())
        ),
    );
    line("self time", duration(node.self_time_ns));
    let via = match node.reached_by {
        Some(EdgeKind::Child) => " via parent",
        Some(EdgeKind::Link) => " via link",
        Some(EdgeKind::Orphan) => " (orphan)",
        Some(EdgeKind::Evidence) => " via evidence",
        None => " (root)",
    };
    let path = if node.on_critical_path {
        " · critical path"
    } else {
        ""
    };
    line("depth", format!("{}{via}{path}", node.depth));
    if let Some(id) = &node.effective_identity {
        let own = if ai.fields.identity().is_some() {
            ""
        } else {
            " (inherited)"
        };
        line("identity", format!("{id}{own}"));
    }
    if let Some(w) = ai.fields.workload_identity() {
        line("workload", w.to_owned());
    }
    if let Some(kind) = ai.fields.ai_kind() {
        line("kind", kind.as_str().to_owned());
    }
    if let Some(model) = ai.fields.gen_ai_model() {
        let tokens = match (ai.fields.input_tokens(), ai.fields.output_tokens()) {
            (None, None) => String::new(),
            (i, o) => format!(
                " · tokens {} in / {} out",
                i.map_or("?".into(), |v| v.to_string()),
                o.map_or("?".into(), |v| v.to_string())
            ),
        };
        line("model", format!("{model}{tokens}"));
    }
    if let Some(n) = ai.fields.node() {
        let kv = match ai.fields.kv_cache_hit() {
            Some(true) => " · kv cache hit",
            Some(false) => " · kv cache miss",
            None => "",
        };
        line("node", format!("{n}{kv}"));
    }
    if let Some(tool) = ai.fields.tool_name() {
        let call = ai
            .fields
            .tool_call_id()
            .map(|c| format!(" ({c})"))
            .unwrap_or_default();
        let writes = if ai.tool_effect.as_deref() == Some("write") {
            " · writes"
        } else {
            ""
        };
        line("tool", format!("{tool}{call}{writes}"));
    }
    if let Some(verdict) = ai.fields.policy_verdict() {
        let name = ai.fields.policy_name().unwrap_or("?");
        line("policy", format!("{name} → {}", verdict.as_str()));
    }
    if let Some(state) = ai.fields.approval_state() {
        let by = ai
            .fields
            .approver()
            .map(|a| format!(" by {a}"))
            .unwrap_or_default();
        let gates = ai
            .fields
            .approval_action()
            .map(|a| format!(" · gates {a}"))
            .unwrap_or_default();
        line("approval", format!("{}{by}{gates}", state.as_str()));
    }
    if ai.fields.retrieval_source().is_some()
        || ai
            .fields
            .retrieved_document_ids()
            .as_ref()
            .is_some_and(|d| !d.is_empty())
    {
        line(
            "retrieved",
            format!(
                "{} [{}]",
                ai.fields.retrieval_source().unwrap_or("?"),
                ai.fields
                    .retrieved_document_ids()
                    .unwrap_or_default()
                    .join(", ")
            ),
        );
    }
    out
}
