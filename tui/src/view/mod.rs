//! Drawing. `impl Widget for &App` reads state and never changes it; each
//! view draws only the rows that fit on screen.
//!
//! Colour is an addition, never the only signal: selection is reverse video,
//! the critical path `*`, errors the word `error`, so a monochrome terminal
//! (`NO_COLOR`) loses nothing but colour.

mod conversation;
mod diff;
mod help;
mod lineage;
mod signals;
mod sql;
mod workflows;

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget};

use crate::app::{App, Connection, View};
use crate::keys::{Context, tables};

/// Styles, in colour or not.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Theme {
    colour: bool,
}

impl Theme {
    pub(crate) fn of(app: &App) -> Self {
        Self {
            colour: app.colour(),
        }
    }

    /// `colour` as the foreground, or nothing in monochrome.
    pub(crate) fn fg(self, colour: Color) -> Style {
        if self.colour {
            Style::new().fg(colour)
        } else {
            Style::new()
        }
    }

    /// Errors and warnings: red, or bold in monochrome.
    pub(crate) fn alert(self) -> Style {
        if self.colour {
            Style::new().fg(Color::Red)
        } else {
            Style::new().add_modifier(Modifier::BOLD)
        }
    }

    pub(crate) fn dim(self) -> Style {
        Style::new().add_modifier(Modifier::DIM)
    }

    pub(crate) fn selected(self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }

    pub(crate) fn title(self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }
}

impl Widget for &App {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let theme = Theme::of(self);
        let [header, body, footer] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Min(1),
            Constraint::Length(1),
        ])
        .areas(area);
        self.header(theme).render(header, buf);
        match self.view() {
            View::Workflows => workflows::render(self, theme, body, buf),
            View::Lineage => lineage::render(self, theme, body, buf),
            View::Sql => sql::render(self, theme, body, buf),
            View::Signals => signals::render(self, theme, body, buf),
            View::Diff => diff::render(self, theme, body, buf),
            View::Conversation => conversation::render(self, theme, body, buf),
        }
        self.footer(theme, footer.width as usize)
            .render(footer, buf);
        if self.help() {
            help::render(self, theme, body, buf);
        }
    }
}

impl App {
    /// Tabs, where the data comes from, and whether it is coming.
    fn header(&self, theme: Theme) -> Line<'_> {
        let mut spans = vec![Span::styled(
            " weft ",
            theme.title().add_modifier(Modifier::REVERSED),
        )];
        for (i, v) in View::ALL.iter().enumerate() {
            let label = format!(" {} {} ", i + 1, v.title());
            spans.push(if *v == self.view() {
                Span::styled(label, theme.selected())
            } else {
                Span::styled(label, theme.dim())
            });
        }
        if matches!(self.view(), View::Diff | View::Conversation) {
            spans.push(Span::styled(
                format!(" {} ", self.view().title()),
                theme.selected(),
            ));
        }
        spans.push(Span::raw(" "));
        let state = match self.connection() {
            Connection::Connecting => Span::styled("connecting…", theme.dim()),
            Connection::Connected if self.loading() => Span::styled("loading…", theme.dim()),
            Connection::Connected => Span::styled(self.source().to_owned(), theme.dim()),
            Connection::Unreachable(why) => Span::styled(
                format!("server unreachable, retrying: {why}"),
                theme.alert(),
            ),
        };
        spans.push(state);
        Line::from(spans)
    }

    /// The filter prompt while it is open, else the keys of this view.
    fn footer(&self, theme: Theme, width: usize) -> Paragraph<'_> {
        if let Some(text) = self.prompt() {
            return Paragraph::new(Line::from(vec![
                Span::styled("filter: ", theme.title()),
                Span::raw(text.to_owned()),
                Span::styled("█", theme.dim()),
                Span::styled("  Enter keep · Esc clear", theme.dim()),
            ]));
        }
        let context = self.context();
        let own: Vec<String> = tables(context)
            .first()
            .map(|(_, own)| {
                own.iter()
                    .map(|b| format!("{} {}", b.label, short(b.help)))
                    .collect()
            })
            .unwrap_or_default();
        let mut last = Vec::new();
        if context != Context::Typing {
            last.push("Tab view".to_owned());
            last.push(if self.view() == View::Workflows {
                "q quit".into()
            } else {
                "q back".into()
            });
        }
        Paragraph::new(Line::styled(fit_keys(&own, &last, width), theme.dim()))
    }
}

/// The footer's keys in `width` columns: `? help`, then the view's own keys
/// as many as fit whole, then `last`; `…` says some were left for the help.
fn fit_keys(own: &[String], last: &[String], width: usize) -> String {
    let line = |parts: &[String]| format!(" {}", parts.join(" · "));
    let mut parts = vec![String::from("? help")];
    let mut kept = 0;
    for key in own {
        let mut trial = parts.clone();
        trial.push(key.clone());
        trial.extend(last.iter().cloned());
        if kept < own.len() - 1 {
            trial.push("…".into());
        }
        if line(&trial).chars().count() > width {
            break;
        }
        parts.push(key.clone());
        kept += 1;
    }
    if kept < own.len() {
        parts.push("…".into());
    }
    parts.extend(last.iter().cloned());
    line(&parts)
}

/// The first clause of a help text, for the footer.
fn short(help: &str) -> &str {
    help.split([';', '(', ':', ','])
        .next()
        .unwrap_or(help)
        .trim_end()
}

/// `text` cut to `width` characters, with `…` when cut.
pub(crate) fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    if width == 0 {
        return String::new();
    }
    let mut out: String = text.chars().take(width - 1).collect();
    out.push('…');
    out
}

/// `HH:MM:SS` (UTC) of a Unix-nanosecond time.
pub(crate) fn clock(ns: i64) -> String {
    let s = ns.div_euclid(1_000_000_000).rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// The first row of a window of `height` rows that keeps `selected` in view.
pub(crate) fn window_start(selected: usize, height: usize) -> usize {
    (selected + 1).saturating_sub(height.max(1))
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]

    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use weft_lineage::{BuildOptions, Lineage, LineageSpan, StepAi, build};
    use weft_schemas::{AiKind, ApprovalState, PolicyVerdict, SpanId, StatusCode, TraceId};

    use crate::app::App;

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
            events: Vec::new(),
            trace_id: tid(t),
            span_id: sid(s),
            parent_span_id: parent.map(sid),
            name: name.into(),
            kind: None,
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
        root.ai.fields.update(|f| {
            f.identity = Some("alice".into());
            f.ai_kind = Some(AiKind::Workflow);
        });
        let mut retrieve = span(1, 2, Some(1), "retrieve kb", 10, 60);
        retrieve.ai.fields.update(|f| {
            f.ai_kind = Some(AiKind::Retrieval);
            f.retrieval_source = Some("kb".into());
            f.retrieved_document_ids = Some(vec!["doc-7".into(), "doc-9".into()]);
        });
        let mut policy = span(1, 3, Some(1), "policy refund-limit", 70, 80);
        policy.ai.fields.update(|f| {
            f.ai_kind = Some(AiKind::Policy);
            f.policy_name = Some("refund-limit".into());
            f.policy_verdict = Some(PolicyVerdict::NeedsApproval);
        });
        let mut chat = span(1, 4, Some(1), "chat gpt-4o", 90, 400);
        chat.ai.fields.update(|f| {
            f.ai_kind = Some(AiKind::Llm);
            f.gen_ai_model = Some("gpt-4o".into());
            f.input_tokens = Some(1200);
            f.output_tokens = Some(300);
            f.node = Some("gpu-a1".into());
            f.kv_cache_hit = Some(true);
        });
        let mut approval = span(1, 5, Some(1), "approval", 410, 800);
        approval.ai.fields.update(|f| {
            f.ai_kind = Some(AiKind::Approval);
            f.approval_state = Some(ApprovalState::Granted);
            f.approver = Some("bob".into());
        });
        let mut orphan = span(1, 6, Some(99), "late retry", 420, 430);
        orphan.status = StatusCode::Error;
        orphan.status_message = Some("timeout".into());
        let mut resume = span(2, 7, None, "resume refund", 1000, 1500);
        resume.links = vec![(approval.trace_id, approval.span_id)];
        let mut tool = span(2, 8, Some(7), "execute_tool payments.refund", 1100, 1400);
        tool.ai.fields.update(|f| {
            f.ai_kind = Some(AiKind::Tool);
            f.tool_name = Some("payments.refund".into());
            f.tool_call_id = Some("call_1".into());
        });
        tool.ai.tool_effect = Some("write".into());
        let spans = vec![root, retrieve, policy, chat, approval, orphan, resume, tool];
        let options = BuildOptions {
            now_ns: i64::MAX, // long settled
            ..BuildOptions::default()
        };
        build(spans, &options)
    }

    pub(crate) fn draw(app: &App, width: u16, height: u16) -> Terminal<TestBackend> {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|f| f.render_widget(app, f.area())).unwrap();
        terminal
    }

    /// Every view once, with a workflow open and an error on the SQL view.
    fn every_view(colour: bool) -> Vec<Terminal<TestBackend>> {
        every_view_at(colour, 100, 30)
    }

    fn every_view_at(colour: bool, width: u16, height: u16) -> Vec<Terminal<TestBackend>> {
        use crate::app::{Action, Msg, View};
        use crate::data::{Failure, Fetched};
        let lineage = workflow();
        let trace = lineage.traces[0];
        let mut app = App::new("test", colour, Some(trace));
        app.update(Msg::Fetched(Fetched::Lineage(
            trace,
            Ok(Box::new(lineage.clone())),
        )));
        app.update(Msg::Fetched(Fetched::Workflows(Ok(vec![
            weft_lineage::WorkflowSummary::of(&lineage).unwrap(),
        ]
        .into()))));
        let mut out = vec![draw(&app, width, height)];
        app.update(Msg::Key(Action::SwitchPane));
        out.push(draw(&app, width, height));
        app.update(Msg::Key(Action::Show(View::Workflows)));
        out.push(draw(&app, width, height));
        // The test workflow names no conversation: the view says so.
        app.update(Msg::Key(Action::Conversation));
        out.push(draw(&app, width, height));
        app.update(Msg::Key(Action::Show(View::Signals)));
        app.update(Msg::Fetched(Fetched::Signals(Ok(vec![
            crate::data::NodeSignal {
                node: "gpu-a1".into(),
                calls: 3,
                ..Default::default()
            },
        ]))));
        out.push(draw(&app, width, height));
        app.update(Msg::Key(Action::Help));
        out.push(draw(&app, width, height));
        app.update(Msg::Key(Action::Help));
        app.update(Msg::Key(Action::Show(View::Sql)));
        out.push(draw(&app, width, height));
        app.update(Msg::Key(Action::Enter));
        app.update(Msg::Fetched(Fetched::Sql(
            app.sql().history()[0].clone(),
            Err(Failure::answer("no")),
        )));
        app.update(Msg::Fetched(Fetched::Signals(Err(Failure::unreachable(
            "down",
        )))));
        out.push(draw(&app, width, height));
        out
    }

    #[test]
    fn no_colour_means_no_colour_and_nothing_lost() {
        use ratatui::style::Color;
        let coloured = |t: &Terminal<TestBackend>| {
            t.backend()
                .buffer()
                .content()
                .iter()
                .any(|c| c.fg != Color::Reset || c.bg != Color::Reset)
        };
        let mono = every_view(false);
        let colour = every_view(true);
        assert!(mono.iter().all(|t| !coloured(t)), "a colour under NO_COLOR");
        assert!(colour.iter().any(coloured), "colour is on by default");
        // The same text either way: colour only adds.
        for (m, c) in mono.iter().zip(&colour) {
            let text = |t: &Terminal<TestBackend>| -> String {
                t.backend()
                    .buffer()
                    .content()
                    .iter()
                    .map(|c| c.symbol())
                    .collect()
            };
            assert_eq!(text(m), text(c));
        }
    }

    #[test]
    fn tiny_and_odd_terminal_sizes_draw_without_panicking() {
        for (w, h) in [
            (1, 1),
            (2, 3),
            (12, 4),
            (40, 8),
            (79, 23),
            (300, 5),
            (5, 200),
        ] {
            let frames = every_view_at(true, w, h);
            assert!(frames.iter().all(|t| t.backend().buffer().area.width == w));
        }
    }

    #[test]
    fn text_helpers() {
        assert_eq!(super::fit("abcdef", 4), "abc…");
        assert_eq!(super::fit("abc", 4), "abc");
        assert_eq!(super::clock(3_723_000_000_000), "01:02:03");
        assert_eq!(super::window_start(0, 10), 0);
        assert_eq!(super::window_start(15, 10), 6);
        assert_eq!(
            super::short("fold / unfold; on the summary"),
            "fold / unfold"
        );
    }
}
