//! Drawing the explorer. `impl Widget for &App` reads state and never changes it.

use std::fmt::Write as _;

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Widget, Wrap};
use weft_lineage::render::summary_text;
use weft_lineage::{EdgeKind, Node};
use weft_schemas::StatusCode;

use crate::app::{App, Row, Tab};

const KEYS: &str =
    " ↑↓ PgUp PgDn move · ←→ enter fold · c next on critical path · tab view · q quit";

impl Widget for &App {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let [header, body, footer] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Min(3),
            Constraint::Length(1),
        ])
        .areas(area);
        self.header().render(header, buf);
        match self.tab() {
            Tab::Tree => {
                let [tree, detail] =
                    Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)])
                        .areas(body);
                self.tree(tree.height.saturating_sub(2) as usize)
                    .block(Block::bordered().title(" workflow "))
                    .render(tree, buf);
                Paragraph::new(self.details())
                    .wrap(Wrap { trim: false })
                    .block(Block::bordered().title(" step "))
                    .render(detail, buf);
            }
            Tab::Summary => {
                let text = summary_text(self.lineage());
                let lines = text.lines().count().max(1);
                let scroll = self.summary_scroll().min(lines - 1);
                Paragraph::new(text)
                    .scroll((u16::try_from(scroll).unwrap_or(u16::MAX), 0))
                    .block(Block::bordered().title(" summary · findings · anomalies "))
                    .render(body, buf);
            }
        }
        Line::from(KEYS).dim().render(footer, buf);
    }
}

impl App {
    fn header(&self) -> Line<'_> {
        let l = self.lineage();
        let tab = |t: Tab, name: &'static str| {
            if self.tab() == t {
                Span::from(format!("[{name}]")).bold()
            } else {
                Span::from(format!(" {name} ")).dim()
            }
        };
        Line::from(vec![
            Span::from(" weft ").bold().reversed(),
            Span::from(" "),
            tab(Tab::Tree, "tree"),
            tab(Tab::Summary, "summary"),
            Span::from(format!(
                "  {} span(s) in {} trace(s) · {} anomal{} · {} finding(s)",
                l.nodes.len(),
                l.traces.len(),
                l.anomalies.len(),
                if l.anomalies.len() == 1 { "y" } else { "ies" },
                l.summary.findings.len(),
            )),
        ])
    }

    /// The visible window of rows, scrolled so the selection is on screen.
    fn tree(&self, height: usize) -> Paragraph<'_> {
        let rows = self.rows();
        let height = height.max(1);
        let first = (self.selected() + 1).saturating_sub(height);
        let lines: Vec<Line> = rows
            .iter()
            .enumerate()
            .skip(first)
            .take(height)
            .map(|(i, row)| self.tree_line(row, i == self.selected()))
            .collect();
        Paragraph::new(lines)
    }

    fn tree_line(&self, row: &Row, selected: bool) -> Line<'_> {
        let node = &self.lineage().nodes[row.node];
        let fold = if row.repeat || !self.has_children(row.node) {
            "  "
        } else if self.is_collapsed(row.node) {
            "▸ "
        } else {
            "▾ "
        };
        let edge = match row.via {
            Some(EdgeKind::Link) => "⇢ ",
            Some(EdgeKind::Orphan) => "? ",
            _ => "",
        };
        let star = if node.on_critical_path { "* " } else { "" };
        // A visible cursor too, for terminals (and snapshots) without reverse video.
        let cursor = if selected { "›" } else { " " };
        let mut spans = vec![
            Span::from(format!(
                "{cursor}{}{fold}{edge}{star}",
                "  ".repeat(row.depth)
            )),
            Span::from(node.span.name.as_str()),
        ];
        if row.repeat {
            spans.push(Span::from(" (shown above)").dim());
        } else if let Some(kind) = node.span.ai.ai_kind {
            spans.push(Span::from(format!("  {}", kind.as_str())).fg(Color::Cyan));
        }
        if node.span.status == StatusCode::Error {
            spans.push(Span::from("  error").fg(Color::Red));
        }
        let line = Line::from(spans);
        if selected {
            line.style(Style::new().add_modifier(Modifier::REVERSED))
        } else {
            line
        }
    }

    /// Everything known about the selected step, one fact per line.
    fn details(&self) -> String {
        let Some(node) = self.selected_node() else {
            return "no spans".into();
        };
        let origin = self
            .lineage()
            .nodes
            .iter()
            .map(|n| n.span.start_ns)
            .min()
            .unwrap_or(node.span.start_ns);
        describe(node, origin)
    }
}

fn ms(ns: i64) -> String {
    format!("{:.1} ms", ns as f64 / 1e6)
}

/// The facts of one step as text; `origin` is the workflow's first start.
pub fn describe(node: &Node, origin: i64) -> String {
    let s = &node.span;
    let ai = &s.ai;
    let mut out = String::new();
    let mut line = |k: &str, v: String| {
        let _ = writeln!(out, "{k:<10}{v}");
    };
    line("name", s.name.clone());
    line("trace", s.trace_id.to_hex());
    line("span", s.span_id.to_hex());
    if let Some(service) = &s.service {
        line("service", service.clone());
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
            ms(s.start_ns - origin),
            ms(s.duration_ns())
        ),
    );
    line("self time", ms(node.self_time_ns));
    let via = match node.reached_by {
        Some(EdgeKind::Child) => " via parent",
        Some(EdgeKind::Link) => " via link",
        Some(EdgeKind::Orphan) => " (orphan)",
        None => " (root)",
    };
    let path = if node.on_critical_path {
        " · critical path"
    } else {
        ""
    };
    line("depth", format!("{}{via}{path}", node.depth));
    if let Some(id) = &node.effective_identity {
        let own = if ai.identity.is_some() {
            ""
        } else {
            " (inherited)"
        };
        line("identity", format!("{id}{own}"));
    }
    if let Some(w) = &ai.workload_identity {
        line("workload", w.clone());
    }
    if let Some(kind) = ai.ai_kind {
        line("kind", kind.as_str().to_owned());
    }
    if let Some(model) = &ai.model {
        let tokens = match (ai.input_tokens, ai.output_tokens) {
            (None, None) => String::new(),
            (i, o) => format!(
                " · tokens {} in / {} out",
                i.map_or("?".into(), |v| v.to_string()),
                o.map_or("?".into(), |v| v.to_string())
            ),
        };
        line("model", format!("{model}{tokens}"));
    }
    if let Some(n) = &ai.node {
        let kv = match ai.kv_cache_hit {
            Some(true) => " · kv cache hit",
            Some(false) => " · kv cache miss",
            None => "",
        };
        line("node", format!("{n}{kv}"));
    }
    if let Some(tool) = &ai.tool_name {
        let call = ai
            .tool_call_id
            .as_deref()
            .map(|c| format!(" ({c})"))
            .unwrap_or_default();
        let writes = if ai.tool_effect.as_deref() == Some("write") {
            " · writes"
        } else {
            ""
        };
        line("tool", format!("{tool}{call}{writes}"));
    }
    if let Some(verdict) = ai.policy_verdict {
        let name = ai.policy_name.as_deref().unwrap_or("?");
        line("policy", format!("{name} → {}", verdict.as_str()));
    }
    if let Some(state) = ai.approval_state {
        let by = ai
            .approver
            .as_deref()
            .map(|a| format!(" by {a}"))
            .unwrap_or_default();
        let gates = ai
            .approval_action
            .as_deref()
            .map(|a| format!(" · gates {a}"))
            .unwrap_or_default();
        line("approval", format!("{}{by}{gates}", state.as_str()));
    }
    if ai.retrieval_source.is_some() || !ai.document_ids.is_empty() {
        line(
            "retrieved",
            format!(
                "{} [{}]",
                ai.retrieval_source.as_deref().unwrap_or("?"),
                ai.document_ids.join(", ")
            ),
        );
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use weft_lineage::{BuildOptions, Lineage, build};
    use weft_lineage::{LineageSpan, StepAi};
    use weft_schemas::{AiKind, ApprovalState, PolicyVerdict, SpanId, StatusCode, TraceId};

    use crate::app::{Action, App};

    fn span(
        t: u8,
        s: u8,
        parent: Option<u8>,
        name: &str,
        start_ms: i64,
        end_ms: i64,
    ) -> LineageSpan {
        let tid = |n: u8| TraceId::try_from([n; 16].as_slice()).unwrap();
        let sid = |n: u8| SpanId::try_from([n; 8].as_slice()).unwrap();
        LineageSpan {
            trace_id: tid(t),
            span_id: sid(s),
            parent_span_id: parent.map(sid),
            name: name.into(),
            service: Some("support-agent".into()),
            start_ns: start_ms * 1_000_000,
            end_ns: end_ms * 1_000_000,
            status: StatusCode::Ok,
            status_message: None,
            links: Vec::new(),
            ai: StepAi::default(),
        }
    }

    /// A refund workflow: retrieval, policy, a model call, an approval, and the
    /// refund resumed in a second trace by a span link; plus an orphan.
    pub(crate) fn workflow() -> Lineage {
        let mut root = span(1, 1, None, "support ticket", 0, 900);
        root.ai.identity = Some("alice".into());
        root.ai.ai_kind = Some(AiKind::Workflow);
        let mut retrieve = span(1, 2, Some(1), "retrieve kb", 10, 60);
        retrieve.ai.ai_kind = Some(AiKind::Retrieval);
        retrieve.ai.retrieval_source = Some("kb".into());
        retrieve.ai.document_ids = vec!["doc-7".into(), "doc-9".into()];
        let mut policy = span(1, 3, Some(1), "policy refund-limit", 70, 80);
        policy.ai.ai_kind = Some(AiKind::Policy);
        policy.ai.policy_name = Some("refund-limit".into());
        policy.ai.policy_verdict = Some(PolicyVerdict::NeedsApproval);
        let mut chat = span(1, 4, Some(1), "chat gpt-4o", 90, 400);
        chat.ai.ai_kind = Some(AiKind::Llm);
        chat.ai.model = Some("gpt-4o".into());
        chat.ai.input_tokens = Some(1200);
        chat.ai.output_tokens = Some(300);
        chat.ai.node = Some("gpu-a1".into());
        chat.ai.kv_cache_hit = Some(true);
        let mut approval = span(1, 5, Some(1), "approval", 410, 800);
        approval.ai.ai_kind = Some(AiKind::Approval);
        approval.ai.approval_state = Some(ApprovalState::Granted);
        approval.ai.approver = Some("bob".into());
        let mut orphan = span(1, 6, Some(99), "late retry", 420, 430);
        orphan.status = StatusCode::Error;
        orphan.status_message = Some("timeout".into());
        let mut resume = span(2, 7, None, "resume refund", 1000, 1500);
        resume.links = vec![(approval.trace_id, approval.span_id)];
        let mut tool = span(2, 8, Some(7), "execute_tool payments.refund", 1100, 1400);
        tool.ai.ai_kind = Some(AiKind::Tool);
        tool.ai.tool_name = Some("payments.refund".into());
        tool.ai.tool_call_id = Some("call_1".into());
        tool.ai.tool_effect = Some("write".into());
        let spans = vec![root, retrieve, policy, chat, approval, orphan, resume, tool];
        let options = BuildOptions {
            now_ns: i64::MAX, // long settled
            ..BuildOptions::default()
        };
        build(spans, &options)
    }

    fn draw(app: &App) -> Terminal<TestBackend> {
        let mut terminal = Terminal::new(TestBackend::new(100, 20)).unwrap();
        terminal.draw(|f| f.render_widget(app, f.area())).unwrap();
        terminal
    }

    #[test]
    fn tree_with_the_root_selected() {
        insta::assert_snapshot!(draw(&App::new(workflow())).backend());
    }

    /// Moves down to the first step named `name`.
    fn select(app: &mut App, name: &str) {
        while app.selected_node().is_some_and(|n| n.span.name != name) {
            let before = app.selected();
            app.update(Action::Down);
            assert_ne!(before, app.selected(), "no step named {name}");
        }
    }

    #[test]
    fn tool_call_in_the_resumed_trace_selected() {
        let mut app = App::new(workflow());
        select(&mut app, "execute_tool payments.refund");
        insta::assert_snapshot!(draw(&app).backend());
    }

    #[test]
    fn failed_orphan_selected() {
        let mut app = App::new(workflow());
        app.update(Action::End);
        insta::assert_snapshot!(draw(&app).backend());
    }

    #[test]
    fn approval_folded() {
        let mut app = App::new(workflow());
        select(&mut app, "approval");
        app.update(Action::Toggle);
        insta::assert_snapshot!(draw(&app).backend());
    }

    #[test]
    fn summary_tab() {
        let mut app = App::new(workflow());
        app.update(Action::NextTab);
        insta::assert_snapshot!(draw(&app).backend());
    }
}
