//! The explorer's state and the one function that changes it.
//!
//! Everything that happens is a [`Msg`]: a key's [`Action`], an answer the
//! fetcher [`Fetched`], or a clock tick. [`App::update`] applies it and may
//! queue [`Request`]s, which the event loop hands to the fetcher
//! ([`App::take_requests`]); nothing here touches the network or the screen.

use std::collections::HashMap;

use weft_lineage::RunDiff;
use weft_schemas::{SpanId, TraceId};

use crate::conversation::{ConversationState, Turns};
use crate::data::{Failure, Fetched, Request, SpanDetail};
use crate::explorer::{Explorer, Move};
use crate::keys::Context;
use crate::signals::Signals;
use crate::sql::{Outcome, SqlView};
use crate::workflows::{LIMIT, WorkflowList};

pub use crate::action::{Action, View};

/// Something that happened.
#[derive(Debug, Clone)]
pub enum Msg {
    Key(Action),
    Fetched(Fetched),
    /// The clock, about every 100 ms; drives refreshes and retries.
    Tick {
        now_ms: u64,
    },
}

/// How the server has been answering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    /// Nothing answered yet.
    Connecting,
    Connected,
    /// The last request could not reach it; requests are retried.
    Unreachable(String),
}

/// The lineage view's workflow.
#[derive(Debug)]
pub enum LineageState {
    /// None opened yet.
    Empty,
    Loading(TraceId),
    /// The message, and whether the server could not be reached (then the
    /// workflow is asked again once it answers).
    Failed(TraceId, String, bool),
    Ready(Box<Explorer>),
}

/// The diff view's comparison.
#[derive(Debug)]
pub enum DiffState {
    /// None asked for yet.
    Empty,
    Loading(TraceId, TraceId),
    Failed(TraceId, TraceId, String),
    /// The two traces, the diff, and how far down it is scrolled.
    Ready(TraceId, TraceId, Box<RunDiff>, usize),
}

/// Attributes, events and links of one trace's spans, fetched for the detail pane.
#[derive(Debug)]
pub enum Details {
    Loading,
    Failed(String),
    Ready(HashMap<SpanId, SpanDetail>),
}

/// How often the lists refresh.
const WORKFLOWS_EVERY_MS: u64 = 2_000;
const SIGNALS_EVERY_MS: u64 = 1_000;
/// Traces whose details are kept.
const DETAIL_TRACES: usize = 64;

/// The explorer.
#[derive(Debug)]
pub struct App {
    /// What the data comes from, for the header (`http://…` or a directory).
    source: String,
    colour: bool,
    view: View,
    help: bool,
    /// The text filter being typed, if the prompt is open.
    prompt: Option<String>,
    connection: Connection,
    workflows: WorkflowList,
    lineage: LineageState,
    /// Workflows marked for a diff (their first traces), oldest first; two at most.
    marked: Vec<TraceId>,
    diff: DiffState,
    /// The conversation view's workflows.
    conversation: ConversationState,
    details: HashMap<TraceId, Details>,
    sql: SqlView,
    signals: Signals,
    /// Requests for the fetcher.
    outbox: Vec<Request>,
    /// Refreshes asked and not answered, and when each kind last went out.
    waiting_workflows: bool,
    waiting_signals: bool,
    last_workflows_ms: Option<u64>,
    last_signals_ms: Option<u64>,
    now_ms: u64,
    quit: bool,
}

impl App {
    /// An explorer reading from `source` (its description); with `open`, it
    /// starts on that trace's workflow.
    pub fn new(source: impl Into<String>, colour: bool, open: Option<TraceId>) -> Self {
        let mut app = Self {
            source: source.into(),
            colour,
            view: View::Workflows,
            help: false,
            prompt: None,
            connection: Connection::Connecting,
            workflows: WorkflowList::default(),
            lineage: LineageState::Empty,
            marked: Vec::new(),
            diff: DiffState::Empty,
            conversation: ConversationState::Empty,
            details: HashMap::new(),
            sql: SqlView::default(),
            signals: Signals::default(),
            outbox: Vec::new(),
            waiting_workflows: false,
            waiting_signals: false,
            last_workflows_ms: None,
            last_signals_ms: None,
            now_ms: 0,
            quit: false,
        };
        if let Some(trace) = open {
            app.open(trace);
        }
        app
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn colour(&self) -> bool {
        self.colour
    }

    pub fn view(&self) -> View {
        self.view
    }

    pub fn help(&self) -> bool {
        self.help
    }

    pub fn prompt(&self) -> Option<&str> {
        self.prompt.as_deref()
    }

    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    pub fn workflows(&self) -> &WorkflowList {
        &self.workflows
    }

    pub fn lineage(&self) -> &LineageState {
        &self.lineage
    }

    pub fn explorer(&self) -> Option<&Explorer> {
        match &self.lineage {
            LineageState::Ready(x) => Some(x),
            _ => None,
        }
    }

    /// The traces marked for a diff, oldest first.
    pub fn marked(&self) -> &[TraceId] {
        &self.marked
    }

    pub fn diff(&self) -> &DiffState {
        &self.diff
    }

    pub fn conversation(&self) -> &ConversationState {
        &self.conversation
    }

    pub fn details(&self, trace: &TraceId) -> Option<&Details> {
        self.details.get(trace)
    }

    pub fn sql(&self) -> &SqlView {
        &self.sql
    }

    pub fn signals(&self) -> &Signals {
        &self.signals
    }

    /// Whether something the current view shows is on its way.
    pub fn loading(&self) -> bool {
        match self.view {
            View::Workflows => self.waiting_workflows && !self.workflows.loaded(),
            View::Lineage => matches!(self.lineage, LineageState::Loading(_)),
            View::Sql => self.sql.running().is_some(),
            View::Signals => self.waiting_signals && !self.signals.loaded(),
            View::Diff => matches!(self.diff, DiffState::Loading(..)),
            View::Conversation => matches!(self.conversation, ConversationState::Loading(_)),
        }
    }

    pub fn should_quit(&self) -> bool {
        self.quit
    }

    /// Where keys go now.
    pub fn context(&self) -> Context {
        if self.prompt.is_some() || (self.view == View::Sql && self.sql.editing()) {
            Context::Typing
        } else {
            Context::View(self.view)
        }
    }

    /// The requests queued since the last call.
    pub fn take_requests(&mut self) -> Vec<Request> {
        std::mem::take(&mut self.outbox)
    }

    /// Applies one message. Nothing else mutates the explorer.
    pub fn update(&mut self, msg: Msg) {
        match msg {
            Msg::Key(action) => self.key(action),
            Msg::Fetched(answer) => self.receive(answer),
            Msg::Tick { now_ms } => self.tick(now_ms),
        }
        self.want_details();
    }

    fn tick(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
        let due = |last: Option<u64>, every: u64| last.is_none_or(|l| now_ms >= l + every);
        if !self.waiting_workflows && due(self.last_workflows_ms, WORKFLOWS_EVERY_MS) {
            self.ask_workflows();
        }
        if !self.waiting_signals && due(self.last_signals_ms, SIGNALS_EVERY_MS) {
            self.waiting_signals = true;
            self.last_signals_ms = Some(now_ms);
            self.outbox.push(Request::Signals);
        }
        // A workflow that could not be fetched because the server was away
        // is asked again once it answers.
        if let (Connection::Connected, LineageState::Failed(t, _, true)) =
            (&self.connection, &self.lineage)
        {
            let t = *t;
            self.open(t);
        }
    }

    fn ask_workflows(&mut self) {
        self.waiting_workflows = true;
        self.last_workflows_ms = Some(self.now_ms);
        self.outbox.push(Request::Workflows {
            window_secs: self.workflows.window().1,
            limit: LIMIT,
        });
    }

    fn open(&mut self, trace: TraceId) {
        self.lineage = LineageState::Loading(trace);
        self.view = View::Lineage;
        self.outbox.push(Request::Lineage(trace));
    }

    /// Asks for the details of the selected step's trace, once.
    fn want_details(&mut self) {
        if self.view != View::Lineage {
            return;
        }
        let Some(trace) = self
            .explorer()
            .and_then(|x| x.selected_node())
            .map(|n| n.span.trace_id)
        else {
            return;
        };
        if !self.details.contains_key(&trace) {
            if self.details.len() >= DETAIL_TRACES {
                self.details.clear();
            }
            self.details.insert(trace, Details::Loading);
            self.outbox.push(Request::Trace(trace));
        }
    }

    fn heard(&mut self, failure: Option<&Failure>) {
        match failure {
            Some(f) if f.unreachable => {
                self.connection = Connection::Unreachable(f.message.clone());
            }
            _ => self.connection = Connection::Connected,
        }
    }

    fn receive(&mut self, answer: Fetched) {
        match answer {
            Fetched::Workflows(result) => {
                self.waiting_workflows = false;
                self.heard(result.as_ref().err());
                self.workflows.receive(result.map_err(|f| f.message));
            }
            Fetched::Signals(result) => {
                self.waiting_signals = false;
                self.heard(result.as_ref().err());
                self.signals.receive(result.map_err(|f| f.message));
            }
            Fetched::Lineage(trace, result) => {
                self.heard(result.as_ref().err());
                let current = match &self.lineage {
                    LineageState::Loading(t) => *t == trace,
                    _ => false,
                };
                if !current {
                    return; // another workflow was opened since
                }
                self.lineage = match result {
                    Ok(lineage) => LineageState::Ready(Box::new(Explorer::new(trace, *lineage))),
                    Err(f) => LineageState::Failed(trace, f.message, f.unreachable),
                };
            }
            Fetched::Conversation(id, result) => {
                self.heard(result.as_ref().err());
                if self.conversation.id() != Some(id.as_str()) {
                    return; // another conversation was opened since
                }
                self.conversation = match (std::mem::take(&mut self.conversation), result) {
                    (ConversationState::Ready(mut turns), Ok(listed)) => {
                        turns.refresh(listed);
                        ConversationState::Ready(turns)
                    }
                    (_, Ok(listed)) => ConversationState::Ready(Turns::new(id, listed)),
                    (_, Err(f)) => ConversationState::Failed(id, f.message),
                };
            }
            Fetched::Diff((a, b), result) => {
                self.heard(result.as_ref().err());
                if !matches!(self.diff, DiffState::Loading(x, y) if (x, y) == (a, b)) {
                    return; // another diff was asked since
                }
                self.diff = match result {
                    Ok(diff) => DiffState::Ready(a, b, diff, 0),
                    Err(f) => DiffState::Failed(a, b, f.message),
                };
            }
            Fetched::Trace(trace, result) => {
                self.heard(result.as_ref().err());
                let details = match result {
                    Ok(spans) => Details::Ready(
                        spans
                            .into_iter()
                            .filter_map(|s| Some((s.span_id?, s)))
                            .collect(),
                    ),
                    Err(f) if f.unreachable => {
                        // Asked again when the step is next selected.
                        self.details.remove(&trace);
                        return;
                    }
                    Err(f) => Details::Failed(f.message),
                };
                if self.details.contains_key(&trace) {
                    self.details.insert(trace, details);
                }
            }
            Fetched::Sql(query, result) => {
                self.heard(result.as_ref().err());
                let outcome = match result {
                    Ok(table) => Outcome::Table(table),
                    Err(f) => Outcome::Error(f.message),
                };
                self.sql.receive(query, outcome);
            }
        }
    }

    fn key(&mut self, action: Action) {
        if action == Action::Quit {
            self.quit = true;
            return;
        }
        if self.help {
            // Any key closes the help.
            self.help = false;
            return;
        }
        if self.prompt.is_some() {
            self.prompt_key(action);
            return;
        }
        if self.view == View::Sql && self.sql.editing() {
            self.editor_key(action);
            return;
        }
        match action {
            Action::Help => self.help = true,
            Action::NextView | Action::PrevView => {
                let i = View::ALL.iter().position(|v| *v == self.view).unwrap_or(0);
                let n = View::ALL.len();
                let next = if action == Action::NextView {
                    i + 1
                } else {
                    i + n - 1
                };
                self.show(View::ALL[next % n]);
            }
            Action::Show(view) => self.show(view),
            Action::Back | Action::Close if self.view != View::Workflows => {
                self.view = View::Workflows
            }
            Action::Back => self.workflows.clear_filters(),
            Action::Close => self.quit = true,
            _ => match self.view {
                View::Workflows => self.workflows_key(action),
                View::Lineage => self.lineage_key(action),
                View::Sql => self.results_key(action),
                View::Signals => self.signals_key(action),
                View::Diff => self.diff_key(action),
                View::Conversation => self.conversation_key(action),
            },
        }
    }

    fn show(&mut self, view: View) {
        self.view = view;
        if view == View::Sql && self.sql.outcome().is_none() {
            self.sql.set_editing(true);
        }
    }

    fn workflows_key(&mut self, action: Action) {
        let w = &mut self.workflows;
        match action {
            Action::Up => w.move_by(-1),
            Action::Down => w.move_by(1),
            Action::PageUp => w.page(false),
            Action::PageDown => w.page(true),
            Action::Home => w.home(),
            Action::End => w.end(),
            Action::Filter => self.prompt = Some(w.text().to_owned()),
            Action::CycleService => w.cycle_service(),
            Action::CycleIdentity => w.cycle_identity(),
            Action::CycleStatus => w.cycle_status(),
            Action::Sort => w.toggle_sort(),
            Action::CycleWindow => {
                w.cycle_window();
                self.ask_workflows_now();
            }
            Action::Refresh => self.ask_workflows_now(),
            Action::Enter => {
                if let Some(t) = w.selected_workflow().map(|w| w.trace_id) {
                    self.open(t);
                }
            }
            Action::Mark => {
                if let Some(t) = w.selected_workflow().map(|w| w.trace_id) {
                    self.toggle_mark(t);
                }
            }
            Action::Diff => self.diff_marked(),
            Action::Conversation => {
                if let Some(id) = w.selected_workflow().and_then(|w| w.conversation.clone()) {
                    self.ask_conversation(id);
                } else {
                    // The view says why there is nothing to show.
                    self.conversation = ConversationState::Empty;
                    self.view = View::Conversation;
                }
            }
            _ => {}
        }
    }

    /// Marks `t` for a diff, or unmarks it; the last two marked are kept.
    fn toggle_mark(&mut self, t: TraceId) {
        if let Some(at) = self.marked.iter().position(|m| *m == t) {
            self.marked.remove(at);
        } else {
            if self.marked.len() == 2 {
                self.marked.remove(0);
            }
            self.marked.push(t);
        }
    }

    fn diff_marked(&mut self) {
        if let [a, b] = self.marked[..] {
            self.ask_diff(a, b);
        } else {
            self.view = View::Diff;
        }
    }

    fn ask_conversation(&mut self, id: String) {
        self.view = View::Conversation;
        // The same conversation again keeps its turns (and selection) until
        // the answer replaces them.
        if self.conversation.id() != Some(id.as_str()) {
            self.conversation = ConversationState::Loading(id.clone());
        }
        self.outbox.push(Request::Conversation(id));
    }

    fn conversation_key(&mut self, action: Action) {
        if action == Action::Refresh {
            if let Some(id) = self.conversation.id().map(str::to_owned) {
                self.ask_conversation(id);
            }
            return;
        }
        let ConversationState::Ready(turns) = &mut self.conversation else {
            return;
        };
        match action {
            Action::Up => turns.move_by(-1),
            Action::Down => turns.move_by(1),
            Action::PageUp => turns.page(false),
            Action::PageDown => turns.page(true),
            Action::Home => turns.home(),
            Action::End => turns.end(),
            Action::Enter => {
                if let Some(t) = turns.selected_workflow().map(|w| w.trace_id) {
                    self.open(t);
                }
            }
            Action::Mark => {
                if let Some(t) = turns.selected_workflow().map(|w| w.trace_id) {
                    self.toggle_mark(t);
                }
            }
            Action::Diff => self.diff_marked(),
            _ => {}
        }
    }

    fn ask_diff(&mut self, a: TraceId, b: TraceId) {
        self.diff = DiffState::Loading(a, b);
        self.view = View::Diff;
        self.outbox.push(Request::Diff(a, b));
    }

    fn diff_key(&mut self, action: Action) {
        match (&mut self.diff, action) {
            (DiffState::Ready(.., scroll), Action::Down) => *scroll += 1,
            (DiffState::Ready(.., scroll), Action::PageDown) => *scroll += 10,
            (DiffState::Ready(.., scroll), Action::Up) => *scroll = scroll.saturating_sub(1),
            (DiffState::Ready(.., scroll), Action::PageUp) => *scroll = scroll.saturating_sub(10),
            (DiffState::Ready(.., scroll), Action::Home) => *scroll = 0,
            (
                DiffState::Ready(a, b, ..) | DiffState::Failed(a, b, _) | DiffState::Loading(a, b),
                Action::Refresh,
            ) => {
                let (a, b) = (*a, *b);
                self.ask_diff(a, b);
            }
            _ => {}
        }
    }

    /// A refresh now, unless one is already on its way (its answer is then
    /// followed by another at once).
    fn ask_workflows_now(&mut self) {
        if self.waiting_workflows {
            self.last_workflows_ms = None;
        } else {
            self.ask_workflows();
        }
    }

    fn prompt_key(&mut self, action: Action) {
        let Some(text) = self.prompt.as_mut() else {
            return;
        };
        match action {
            Action::Type(c) => text.push(c),
            Action::Backspace => {
                text.pop();
            }
            // The filter is typed at its end: to the start is all of it.
            Action::KillToStart => text.clear(),
            Action::KillWord => {
                let chars: Vec<char> = text.chars().collect();
                let start = crate::sql::word_start(&chars, chars.len());
                *text = chars[..start].iter().collect();
            }
            Action::Enter => {
                self.prompt = None;
                return;
            }
            Action::Back => {
                self.prompt = None;
                self.workflows.set_text(String::new());
                return;
            }
            Action::Up => self.workflows.move_by(-1),
            Action::Down => self.workflows.move_by(1),
            _ => return,
        }
        let text = text.clone();
        self.workflows.set_text(text);
    }

    fn lineage_key(&mut self, action: Action) {
        if action == Action::Refresh {
            if let Some(t) = match &self.lineage {
                LineageState::Ready(x) => Some(x.trace()),
                LineageState::Failed(t, ..) | LineageState::Loading(t) => Some(*t),
                LineageState::Empty => None,
            } {
                self.details.clear();
                self.open(t);
            }
            return;
        }
        let LineageState::Ready(x) = &mut self.lineage else {
            return;
        };
        let m = match action {
            Action::Up => Move::Up,
            Action::Down => Move::Down,
            Action::PageUp => Move::PageUp,
            Action::PageDown => Move::PageDown,
            Action::Home => Move::Home,
            Action::End => Move::End,
            Action::Enter => Move::Jump,
            Action::Right => Move::Expand,
            Action::Left => Move::Collapse,
            Action::NextCritical => Move::NextCritical,
            Action::FollowLink => Move::FollowLink,
            Action::SwitchPane => Move::SwitchPane,
            Action::DetailUp => Move::DetailUp,
            Action::DetailDown => Move::DetailDown,
            _ => return,
        };
        x.update(m);
    }

    fn editor_key(&mut self, action: Action) {
        let s = &mut self.sql;
        match action {
            Action::Type(c) => s.type_char(c),
            Action::Backspace => s.backspace(),
            Action::Delete => s.delete(),
            Action::KillToStart => s.kill_to_start(),
            Action::KillToEnd => s.kill_to_end(),
            Action::KillWord => s.kill_word(),
            Action::Left => s.cursor_by(-1),
            Action::Right => s.cursor_by(1),
            Action::Home => s.cursor_to(false),
            Action::End => s.cursor_to(true),
            Action::Up => s.recall(true),
            Action::Down => s.recall(false),
            Action::Back => s.set_editing(false),
            Action::NextView | Action::PrevView => {
                s.set_editing(false);
                self.key(action);
            }
            Action::Enter => {
                if let Some(query) = s.submit() {
                    self.outbox.push(Request::Sql(query));
                }
            }
            _ => {}
        }
    }

    fn results_key(&mut self, action: Action) {
        let s = &mut self.sql;
        match action {
            Action::Up => s.scroll_rows(-1),
            Action::Down => s.scroll_rows(1),
            Action::PageUp => s.scroll_page(false),
            Action::PageDown => s.scroll_page(true),
            Action::Home => s.scroll_rows(isize::MIN),
            Action::End => s.scroll_rows(isize::MAX),
            Action::Left => s.scroll_columns(-1),
            Action::Right => s.scroll_columns(1),
            Action::Enter => s.set_editing(true),
            _ => {}
        }
    }

    fn signals_key(&mut self, action: Action) {
        match action {
            Action::Up => self.signals.move_by(-1),
            Action::Down => self.signals.move_by(1),
            Action::Refresh if !self.waiting_signals => {
                self.last_signals_ms = None;
                self.tick(self.now_ms);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use weft_lineage::WorkflowSummary;
    use weft_schemas::StatusCode;

    use super::*;
    use crate::data::{NodeSignal, Table};
    use crate::keys::Context;
    use crate::view::tests::workflow;

    fn summaries() -> Vec<WorkflowSummary> {
        let base = WorkflowSummary::of(&workflow()).unwrap();
        (0..5u8)
            .map(|i| {
                let mut w = base.clone();
                w.trace_id = TraceId::try_from([i + 10; 16].as_slice()).unwrap();
                w.traces = vec![w.trace_id];
                w.name = format!("workflow {i}");
                w.start_ns += i64::from(i) * 1_000;
                w.end_ns += i64::from(5 - i) * 1_000_000;
                w.services = vec![if i % 2 == 0 { "support" } else { "triage" }.into()];
                w.conversation = (i % 2 == 0).then(|| "chat-7".to_owned());
                w.status = if i == 3 {
                    StatusCode::Error
                } else {
                    StatusCode::Ok
                };
                w
            })
            .collect()
    }

    fn started() -> App {
        let mut app = App::new("test", true, None);
        app.update(Msg::Tick { now_ms: 0 });
        app.take_requests();
        app.update(Msg::Fetched(Fetched::Workflows(Ok(summaries().into()))));
        app
    }

    fn key(app: &mut App, action: Action) {
        app.update(Msg::Key(action));
    }

    #[test]
    fn refreshes_go_out_on_ticks_one_at_a_time() {
        let mut app = App::new("test", true, None);
        assert_eq!(app.connection(), &Connection::Connecting);
        app.update(Msg::Tick { now_ms: 0 });
        let first = app.take_requests();
        assert!(first.contains(&Request::Workflows {
            window_secs: 3_600,
            limit: LIMIT
        }));
        assert!(first.contains(&Request::Signals));
        assert!(app.loading(), "the list shows it is loading");
        app.update(Msg::Tick { now_ms: 5_000 });
        assert!(
            app.take_requests().is_empty(),
            "nothing new while both are unanswered"
        );
        app.update(Msg::Fetched(Fetched::Workflows(Err(Failure::unreachable(
            "refused",
        )))));
        assert!(matches!(app.connection(), Connection::Unreachable(m) if m == "refused"));
        app.update(Msg::Tick { now_ms: 5_100 });
        assert_eq!(
            app.take_requests(),
            [Request::Workflows {
                window_secs: 3_600,
                limit: LIMIT
            }],
            "retried: the last went out 5 s ago"
        );
        app.update(Msg::Fetched(Fetched::Workflows(Ok(summaries().into()))));
        assert_eq!(app.connection(), &Connection::Connected);
        assert!(!app.loading());
        app.update(Msg::Tick { now_ms: 6_000 });
        assert!(app.take_requests().is_empty(), "not due for 2 s");
        app.update(Msg::Tick { now_ms: 7_100 });
        assert_eq!(app.take_requests().len(), 1);
    }

    #[test]
    fn the_selection_stays_on_its_workflow_across_refreshes_and_filters() {
        let mut app = started();
        assert_eq!(app.workflows().shown().len(), 5);
        assert_eq!(
            app.workflows().selected_workflow().unwrap().name,
            "workflow 4",
            "newest first"
        );
        key(&mut app, Action::Down);
        key(&mut app, Action::Down);
        let chosen = app.workflows().selected_workflow().unwrap().trace_id;
        let mut fewer = summaries();
        fewer.remove(4); // the newest is gone
        app.update(Msg::Fetched(Fetched::Workflows(Ok(fewer.into()))));
        assert_eq!(
            app.workflows().selected_workflow().unwrap().trace_id,
            chosen
        );

        key(&mut app, Action::CycleService);
        assert_eq!(app.workflows().service(), Some("support"));
        assert!(app.workflows().shown().all(|w| w.services == ["support"]));
        key(&mut app, Action::CycleService);
        assert_eq!(app.workflows().service(), Some("triage"));
        key(&mut app, Action::CycleService);
        assert_eq!(app.workflows().service(), None);
        key(&mut app, Action::CycleStatus);
        assert!(
            app.workflows()
                .shown()
                .all(|w| w.status == StatusCode::Error)
        );
        assert_eq!(app.workflows().shown().len(), 1);
        key(&mut app, Action::Back);
        assert_eq!(app.workflows().shown().len(), 4, "Esc clears the filters");
        assert!(!app.should_quit());

        key(&mut app, Action::Sort);
        let took: Vec<i64> = app.workflows().shown().map(|w| w.duration_ns()).collect();
        assert!(took.windows(2).all(|p| p[0] >= p[1]), "longest first");
        key(&mut app, Action::CycleWindow);
        assert_eq!(
            app.take_requests(),
            [Request::Workflows {
                window_secs: 21_600,
                limit: LIMIT
            }],
            "a new range is asked at once"
        );
    }

    #[test]
    fn the_text_filter_types_and_filters_as_it_goes() {
        let mut app = started();
        key(&mut app, Action::Filter);
        assert_eq!(app.context(), Context::Typing);
        for c in "rkflow 2".chars() {
            key(&mut app, Action::Type(c));
        }
        assert_eq!(app.prompt(), Some("rkflow 2"));
        let names: Vec<&str> = app.workflows().shown().map(|w| w.name.as_str()).collect();
        assert_eq!(names, ["workflow 2"]);
        key(&mut app, Action::Type('q'));
        assert!(!app.should_quit(), "q types while typing");
        key(&mut app, Action::Backspace);
        key(&mut app, Action::Enter);
        assert_eq!(app.prompt(), None);
        assert_eq!(app.workflows().text(), "rkflow 2", "Enter keeps the filter");
        key(&mut app, Action::Filter);
        key(&mut app, Action::Back);
        assert_eq!(app.workflows().text(), "", "Esc in the prompt clears it");
        assert_eq!(app.workflows().shown().len(), 5);
    }

    #[test]
    fn enter_opens_a_lineage_which_asks_for_its_details() {
        let mut app = started();
        let trace = app.workflows().selected_workflow().unwrap().trace_id;
        key(&mut app, Action::Enter);
        assert_eq!(app.view(), View::Lineage);
        assert_eq!(app.take_requests(), [Request::Lineage(trace)]);
        assert!(app.loading());
        // An answer for a workflow opened before is dropped.
        let other = TraceId::try_from([99u8; 16].as_slice()).unwrap();
        app.update(Msg::Fetched(Fetched::Lineage(
            other,
            Ok(Box::new(workflow())),
        )));
        assert!(matches!(app.lineage(), LineageState::Loading(t) if *t == trace));
        app.update(Msg::Fetched(Fetched::Lineage(
            trace,
            Ok(Box::new(workflow())),
        )));
        let x = app.explorer().unwrap();
        let step_trace = x.selected_node().unwrap().span.trace_id;
        assert_eq!(app.take_requests(), [Request::Trace(step_trace)]);
        assert!(matches!(app.details(&step_trace), Some(Details::Loading)));
        app.update(Msg::Fetched(Fetched::Trace(step_trace, Ok(Vec::new()))));
        assert!(matches!(app.details(&step_trace), Some(Details::Ready(_))));
        key(&mut app, Action::Down);
        assert!(
            app.take_requests().is_empty(),
            "same trace, already fetched"
        );
        key(&mut app, Action::End);
        key(&mut app, Action::FollowLink);
        key(&mut app, Action::Close);
        assert_eq!(app.view(), View::Workflows, "q goes back");
        assert!(!app.should_quit());
        key(&mut app, Action::Close);
        assert!(app.should_quit(), "q on the workflows quits");
    }

    #[test]
    fn a_lineage_lost_to_an_unreachable_server_is_asked_again() {
        let trace = TraceId::try_from([7u8; 16].as_slice()).unwrap();
        let mut app = App::new("test", false, Some(trace));
        assert_eq!(app.view(), View::Lineage);
        assert_eq!(app.take_requests(), [Request::Lineage(trace)]);
        app.update(Msg::Fetched(Fetched::Lineage(
            trace,
            Err(Failure::unreachable("refused")),
        )));
        assert!(matches!(app.lineage(), LineageState::Failed(..)));
        app.update(Msg::Tick { now_ms: 0 });
        assert!(
            !app.take_requests().contains(&Request::Lineage(trace)),
            "not while away"
        );
        app.update(Msg::Fetched(Fetched::Signals(Ok(Vec::new()))));
        app.update(Msg::Tick { now_ms: 100 });
        assert!(app.take_requests().contains(&Request::Lineage(trace)));
        // An error the server answered is shown, not retried.
        app.update(Msg::Fetched(Fetched::Lineage(
            trace,
            Err(Failure::answer("no such trace")),
        )));
        app.update(Msg::Tick { now_ms: 200 });
        assert!(!app.take_requests().contains(&Request::Lineage(trace)));
        key(&mut app, Action::Refresh);
        assert_eq!(app.take_requests(), [Request::Lineage(trace)], "r retries");
    }

    #[test]
    fn sql_runs_shows_the_result_and_keeps_a_history() {
        let mut app = started();
        key(&mut app, Action::Show(View::Sql));
        assert_eq!(app.context(), Context::Typing, "the editor has the keys");
        key(&mut app, Action::Home);
        for _ in 0..200 {
            key(&mut app, Action::Delete);
        }
        for c in "SELECT 1".chars() {
            key(&mut app, Action::Type(c));
        }
        key(&mut app, Action::Enter);
        assert_eq!(app.take_requests(), [Request::Sql("SELECT 1".into())]);
        assert!(app.loading());
        key(&mut app, Action::Enter);
        assert!(app.take_requests().is_empty(), "one query at a time");
        let table = Table {
            columns: vec!["Int64(1)".into()],
            rows: vec![vec!["1".into()]],
            truncated: None,
        };
        app.update(Msg::Fetched(Fetched::Sql(
            "SELECT 1".into(),
            Ok(table.clone()),
        )));
        assert_eq!(
            app.sql().outcome(),
            Some(&("SELECT 1".into(), Outcome::Table(table)))
        );
        assert_eq!(
            app.context(),
            Context::View(View::Sql),
            "the result has the keys"
        );
        key(&mut app, Action::Enter);
        for _ in 0..8 {
            key(&mut app, Action::Backspace);
        }
        for c in "SELEC nonsense".chars() {
            key(&mut app, Action::Type(c));
        }
        key(&mut app, Action::Enter);
        app.take_requests();
        app.update(Msg::Fetched(Fetched::Sql(
            "SELEC nonsense".into(),
            Err(Failure::answer("sql parser error")),
        )));
        assert!(
            matches!(app.sql().outcome(), Some((_, Outcome::Error(e))) if e.contains("parser"))
        );
        key(&mut app, Action::Enter);
        key(&mut app, Action::Up);
        assert_eq!(app.sql().input(), "SELEC nonsense");
        key(&mut app, Action::Up);
        assert_eq!(app.sql().input(), "SELECT 1");
        key(&mut app, Action::Down);
        key(&mut app, Action::Down);
        assert_eq!(app.sql().input(), "", "past the newest: a new query");
        key(&mut app, Action::Back);
        key(&mut app, Action::Close);
        assert_eq!(app.view(), View::Workflows);
    }

    #[test]
    fn the_sql_box_starts_empty_and_edits_as_readline_does() {
        let mut app = started();
        key(&mut app, Action::Show(View::Sql));
        // Empty, with the example shown: typing does not append to it.
        assert_eq!(app.sql().input(), "");
        assert_eq!(app.sql().placeholder(), Some(crate::sql::FIRST_QUERY));
        for c in "DESC spans".chars() {
            key(&mut app, Action::Type(c));
        }
        assert_eq!(app.sql().input(), "DESC spans");
        assert_eq!(app.sql().placeholder(), None);
        key(&mut app, Action::KillWord);
        assert_eq!(app.sql().input(), "DESC ");
        key(&mut app, Action::Home);
        key(&mut app, Action::Right);
        key(&mut app, Action::KillToEnd);
        assert_eq!(app.sql().input(), "D");
        for c in "ESCRIBE spans".chars() {
            key(&mut app, Action::Type(c));
        }
        key(&mut app, Action::Left);
        key(&mut app, Action::KillToStart);
        assert_eq!((app.sql().input().as_str(), app.sql().cursor()), ("s", 0));
        key(&mut app, Action::KillToEnd);
        // Enter on the empty box runs the example it shows.
        key(&mut app, Action::Enter);
        assert_eq!(
            app.take_requests(),
            [Request::Sql(crate::sql::FIRST_QUERY.into())]
        );
    }

    #[test]
    fn readline_keys_map_while_typing() {
        use crate::keys::{Context as K, action_for};
        use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
        let ctrl = |c| KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL);
        for (c, action) in [
            ('a', Action::Home),
            ('e', Action::End),
            ('b', Action::Left),
            ('f', Action::Right),
            ('d', Action::Delete),
            ('u', Action::KillToStart),
            ('k', Action::KillToEnd),
            ('w', Action::KillWord),
        ] {
            assert_eq!(action_for(ctrl(c), K::Typing), Some(action), "C-{c}");
        }
    }

    #[test]
    fn tabs_numbers_help_and_quit() {
        let mut app = started();
        for expected in [View::Lineage, View::Sql] {
            key(&mut app, Action::NextView);
            assert_eq!(app.view(), expected);
        }
        key(&mut app, Action::NextView); // from the editor too
        assert_eq!(app.view(), View::Signals);
        key(&mut app, Action::PrevView);
        assert_eq!(app.view(), View::Sql);
        key(&mut app, Action::Back);
        key(&mut app, Action::Show(View::Workflows));
        assert_eq!(app.view(), View::Workflows);
        key(&mut app, Action::Help);
        assert!(app.help());
        key(&mut app, Action::Close);
        assert!(!app.help() && !app.should_quit(), "any key closes the help");
        key(&mut app, Action::Quit);
        assert!(app.should_quit());
    }

    #[test]
    fn signals_keep_a_sample_per_refresh_for_each_node() {
        let mut app = started();
        let node = |name: &str, calls| NodeSignal {
            node: name.into(),
            calls,
            kv_cache_hit_rate: Some(0.5),
            ttft_p50_ns: Some(120_000_000),
            ..NodeSignal::default()
        };
        app.update(Msg::Fetched(Fetched::Signals(Ok(vec![node("gpu-a", 3)]))));
        app.update(Msg::Fetched(Fetched::Signals(Ok(vec![
            node("gpu-a", 5),
            node("gpu-b", 1),
        ]))));
        app.update(Msg::Fetched(Fetched::Signals(Ok(vec![node("gpu-b", 2)]))));
        let calls = |n: &str| -> Vec<u64> {
            app.signals()
                .history(n)
                .unwrap()
                .iter()
                .map(|s| s.calls)
                .collect()
        };
        assert_eq!(calls("gpu-a"), [3, 5, 0], "quiet is zero, not a gap");
        assert_eq!(calls("gpu-b"), [1, 2]);
        let last = app
            .signals()
            .history("gpu-b")
            .unwrap()
            .back()
            .copied()
            .unwrap();
        assert_eq!((last.kv_hit_pct, last.ttft_p50_ms), (Some(50), Some(120)));
        for i in 0..400 {
            app.update(Msg::Fetched(Fetched::Signals(Ok(vec![node("gpu-b", i)]))));
        }
        assert_eq!(
            app.signals().history("gpu-b").unwrap().len(),
            crate::signals::SAMPLES
        );
    }

    #[test]
    fn c_opens_the_selected_workflows_conversation_and_enter_a_turn() {
        let mut app = started();
        // Newest first: workflow 4 (a conversation's) is selected.
        assert_eq!(
            app.workflows()
                .selected_workflow()
                .unwrap()
                .conversation
                .as_deref(),
            Some("chat-7")
        );
        key(&mut app, Action::Conversation);
        assert_eq!(app.view(), View::Conversation);
        assert_eq!(
            app.take_requests(),
            [Request::Conversation("chat-7".into())]
        );
        assert!(app.loading());
        // The turns, oldest first, as the source lists them.
        let turns: Vec<WorkflowSummary> = summaries()
            .into_iter()
            .filter(|w| w.conversation.is_some())
            .collect();
        app.update(Msg::Fetched(Fetched::Conversation(
            "chat-7".into(),
            Ok(turns.clone().into()),
        )));
        // An answer for another conversation is not this one's.
        app.update(Msg::Fetched(Fetched::Conversation(
            "other".into(),
            Ok(Vec::new().into()),
        )));
        let ConversationState::Ready(shown) = app.conversation() else {
            panic!("not ready: {:?}", app.conversation());
        };
        assert_eq!(shown.workflows, turns);
        key(&mut app, Action::Down);
        key(&mut app, Action::Mark);
        assert_eq!(app.marked(), [turns[1].trace_id]);
        key(&mut app, Action::Enter);
        assert_eq!(app.view(), View::Lineage);
        assert_eq!(app.take_requests(), [Request::Lineage(turns[1].trace_id)]);
        // A refresh keeps the selected turn.
        key(&mut app, Action::Back);
        key(&mut app, Action::Conversation);
        assert_eq!(
            app.take_requests(),
            [Request::Conversation("chat-7".into())]
        );
        let mut again = turns.clone();
        again.remove(0);
        app.update(Msg::Fetched(Fetched::Conversation(
            "chat-7".into(),
            Ok(again.into()),
        )));
        let ConversationState::Ready(shown) = app.conversation() else {
            panic!("not ready");
        };
        assert_eq!(
            shown.selected_workflow().unwrap().trace_id,
            turns[1].trace_id
        );
        // A workflow that names no conversation opens none.
        key(&mut app, Action::Back);
        key(&mut app, Action::Down);
        key(&mut app, Action::Conversation);
        assert_eq!(app.view(), View::Conversation);
        assert!(app.take_requests().is_empty());
        assert!(matches!(app.conversation(), ConversationState::Empty));
    }

    /// Random keys, answers and ticks, drawn at random sizes: nothing panics
    /// and the selection stays inside what is shown.
    #[test]
    fn random_sessions_never_panic() {
        let actions = [
            Action::Up,
            Action::Down,
            Action::PageUp,
            Action::PageDown,
            Action::Home,
            Action::End,
            Action::Left,
            Action::Right,
            Action::Enter,
            Action::Back,
            Action::Close,
            Action::NextView,
            Action::PrevView,
            Action::Show(View::Workflows),
            Action::Show(View::Lineage),
            Action::Show(View::Sql),
            Action::Show(View::Signals),
            Action::Help,
            Action::Filter,
            Action::CycleService,
            Action::CycleIdentity,
            Action::CycleStatus,
            Action::CycleWindow,
            Action::Sort,
            Action::Mark,
            Action::Diff,
            Action::Conversation,
            Action::Refresh,
            Action::NextCritical,
            Action::FollowLink,
            Action::SwitchPane,
            Action::DetailUp,
            Action::DetailDown,
            Action::Type('x'),
            Action::Type('é'),
            Action::Backspace,
            Action::Delete,
        ];
        let mut seed: u64 = 0x5eed;
        let mut next = |n: usize| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize % n
        };
        for _ in 0..20 {
            let mut app = started();
            for step in 0..2_000u64 {
                match next(10) {
                    0 => app.update(Msg::Tick { now_ms: step * 150 }),
                    1 => {
                        for r in app.take_requests() {
                            let answer = match r {
                                Request::Lineage(t) => {
                                    Fetched::Lineage(t, Ok(Box::new(workflow())))
                                }
                                Request::Trace(t) => Fetched::Trace(t, Ok(Vec::new())),
                                Request::Diff(a, b) => Fetched::Diff(
                                    (a, b),
                                    Ok(Box::new(weft_lineage::diff(&workflow(), &workflow()))),
                                ),
                                Request::Sql(q) => Fetched::Sql(q, Ok(Table::default())),
                                Request::Signals => Fetched::Signals(Ok(Vec::new())),
                                Request::Workflows { .. } => {
                                    let mut list = summaries();
                                    list.truncate(next(6));
                                    Fetched::Workflows(Ok(list.into()))
                                }
                                Request::Conversation(id) => {
                                    let mut list = summaries();
                                    list.truncate(next(6));
                                    Fetched::Conversation(id, Ok(list.into()))
                                }
                            };
                            app.update(Msg::Fetched(answer));
                        }
                    }
                    2 => {
                        let (w, h) = (next(200) as u16 + 1, next(60) as u16 + 1);
                        crate::view::tests::draw(&app, w, h);
                    }
                    _ => key(&mut app, actions[next(actions.len())]),
                }
                let list = app.workflows();
                assert!(list.selected() <= list.shown().len().saturating_sub(1));
                if let Some(x) = app.explorer() {
                    assert!(x.selected() < x.rows().len().max(1));
                }
                if app.should_quit() {
                    app = started(); // and carry on with a fresh one
                }
            }
        }
    }
}
