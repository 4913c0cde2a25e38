//! What the explorer asks for and what it gets back: plain data, and the
//! [`Source`] that answers (a running Weft over HTTP, or a data directory —
//! implemented by the `weft` binary, which knows both).

use weft_lineage::{Lineage, RunDiff, WorkflowSummary};
use weft_schemas::{SpanId, TraceId};

/// The newest workflows of a window, and how many traces started in it: a
/// list as long as the limit asked for is capped, and this says of what.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Listed {
    pub workflows: Vec<WorkflowSummary>,
    /// Traces that started in the window, when the source said.
    pub traces: Option<usize>,
}

impl From<Vec<WorkflowSummary>> for Listed {
    fn from(workflows: Vec<WorkflowSummary>) -> Self {
        Self {
            workflows,
            traces: None,
        }
    }
}

/// A query result as text: column names and one string per cell.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// Why the answer stops short of every row, when it does.
    pub truncated: Option<String>,
}

/// The window of the load signals: calls that started in the last five
/// minutes (long enough to show work that paused, short enough to be live).
pub const SIGNALS_WINDOW_SECS: u64 = 300;

/// One GPU node's load over [`SIGNALS_WINDOW_SECS`] (`/api/signals`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeSignal {
    pub node: String,
    pub calls: u64,
    pub errors: u64,
    /// Share of calls that hit the KV cache, 0..1.
    pub kv_cache_hit_rate: Option<f64>,
    pub queue_wait_p50_ns: Option<i64>,
    pub queue_wait_p95_ns: Option<i64>,
    pub ttft_p50_ns: Option<i64>,
    pub ttft_p95_ns: Option<i64>,
}

/// A key and its value as text.
pub type Attribute = (String, String);

/// Everything stored about one span beyond what lineage reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpanDetail {
    pub span_id: Option<SpanId>,
    pub kind: String,
    pub attributes: Vec<Attribute>,
    pub resource: Vec<Attribute>,
    pub events: Vec<SpanEvent>,
    pub links: Vec<SpanLink>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SpanEvent {
    pub time_ns: i64,
    pub name: String,
    pub attributes: Vec<Attribute>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SpanLink {
    pub trace_id: Option<TraceId>,
    pub span_id: Option<SpanId>,
    pub attributes: Vec<Attribute>,
}

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub message: String,
    /// The server could not be reached at all (retried on the next tick),
    /// rather than answering with an error.
    pub unreachable: bool,
}

impl Failure {
    pub fn answer(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            unreachable: false,
        }
    }

    pub fn unreachable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            unreachable: true,
        }
    }
}

/// What the explorer asks its [`Source`] for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Request {
    /// Workflows whose roots started in the last `window_secs`, newest first.
    Workflows {
        window_secs: u64,
        limit: usize,
    },
    /// One conversation's workflows, oldest first.
    Conversation(String),
    /// The workflow reachable from a trace.
    Lineage(TraceId),
    /// What changed between the workflows reachable from two traces.
    Diff(TraceId, TraceId),
    /// Every span of a trace with all its attributes, events and links.
    Trace(TraceId),
    Sql(String),
    /// Per-node load over [`SIGNALS_WINDOW_SECS`].
    Signals,
}

/// An answer to a [`Request`].
#[derive(Debug, Clone)]
pub enum Fetched {
    Workflows(Result<Listed, Failure>),
    Conversation(String, Result<Listed, Failure>),
    Lineage(TraceId, Result<Box<Lineage>, Failure>),
    Diff((TraceId, TraceId), Result<Box<RunDiff>, Failure>),
    Trace(TraceId, Result<Vec<SpanDetail>, Failure>),
    Sql(String, Result<Table, Failure>),
    Signals(Result<Vec<NodeSignal>, Failure>),
}

/// Where the explorer's data comes from. Calls block; they run on the
/// fetcher's own thread ([`crate::fetch`]), never the UI's.
pub trait Source: Send + 'static {
    fn workflows(&mut self, window_secs: u64, limit: usize) -> Result<Listed, Failure>;
    /// The first `limit` workflows of conversation `id`, oldest first.
    fn conversation(&mut self, id: &str, limit: usize) -> Result<Listed, Failure>;
    fn lineage(&mut self, trace: TraceId) -> Result<Lineage, Failure>;
    fn diff(&mut self, a: TraceId, b: TraceId) -> Result<RunDiff, Failure>;
    fn trace(&mut self, trace: TraceId) -> Result<Vec<SpanDetail>, Failure>;
    fn sql(&mut self, text: &str) -> Result<Table, Failure>;
    fn signals(&mut self) -> Result<Vec<NodeSignal>, Failure>;

    /// Answers one request.
    fn fetch(&mut self, request: Request) -> Fetched {
        match request {
            Request::Workflows { window_secs, limit } => {
                Fetched::Workflows(self.workflows(window_secs, limit))
            }
            Request::Conversation(id) => {
                let answer = self.conversation(&id, crate::conversation::TURNS);
                Fetched::Conversation(id, answer)
            }
            Request::Lineage(t) => Fetched::Lineage(t, self.lineage(t).map(Box::new)),
            Request::Diff(a, b) => Fetched::Diff((a, b), self.diff(a, b).map(Box::new)),
            Request::Trace(t) => Fetched::Trace(t, self.trace(t)),
            Request::Sql(text) => {
                let answer = self.sql(&text);
                Fetched::Sql(text, answer)
            }
            Request::Signals => Fetched::Signals(self.signals()),
        }
    }
}
