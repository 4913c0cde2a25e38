//! The workflows list: what the server last sent, the filters and sort the
//! operator chose, and the selection, kept on the same workflow across
//! refreshes.

use weft_lineage::WorkflowSummary;
use weft_schemas::{StatusCode, TraceId};

use crate::explorer::PAGE;

/// Time windows `t` cycles through: (label, seconds).
pub const WINDOWS: [(&str, u64); 5] = [
    ("15m", 900),
    ("1h", 3_600),
    ("6h", 21_600),
    ("24h", 86_400),
    ("7d", 604_800),
];
/// The window the list opens with (1h).
const DEFAULT_WINDOW: usize = 1;
/// Workflows asked for per refresh.
pub const LIMIT: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    /// Newest first.
    Time,
    /// Longest first.
    Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    All,
    Error,
    Ok,
}

/// The list's state.
#[derive(Debug)]
pub struct WorkflowList {
    all: Vec<WorkflowSummary>,
    /// Indices into `all` that pass the filters, in sort order.
    shown: Vec<usize>,
    selected: usize,
    /// Whether an answer has arrived yet.
    loaded: bool,
    /// The last answer's error, shown in place of a stale list.
    error: Option<String>,
    /// Traces that started in the window, when the source said.
    traces: Option<usize>,
    text: String,
    service: Option<String>,
    identity: Option<String>,
    status: StatusFilter,
    window: usize,
    sort: Sort,
}

impl Default for WorkflowList {
    fn default() -> Self {
        Self {
            all: Vec::new(),
            shown: Vec::new(),
            selected: 0,
            loaded: false,
            error: None,
            traces: None,
            text: String::new(),
            service: None,
            identity: None,
            status: StatusFilter::All,
            window: DEFAULT_WINDOW,
            sort: Sort::Time,
        }
    }
}

impl WorkflowList {
    /// The workflows passing the filters, in order.
    pub fn shown(&self) -> impl ExactSizeIterator<Item = &WorkflowSummary> {
        self.shown.iter().map(|i| &self.all[*i])
    }

    pub fn total(&self) -> usize {
        self.all.len()
    }

    /// Traces that started in the window, when the source said.
    pub fn traces(&self) -> Option<usize> {
        self.traces
    }

    /// Whether the list stopped at the limit asked for (older workflows in
    /// the window are not in it).
    pub fn capped(&self) -> bool {
        self.all.len() >= LIMIT
    }

    pub fn selected(&self) -> usize {
        self.selected
    }

    pub fn selected_workflow(&self) -> Option<&WorkflowSummary> {
        self.shown.get(self.selected).map(|i| &self.all[*i])
    }

    pub fn loaded(&self) -> bool {
        self.loaded
    }

    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn service(&self) -> Option<&str> {
        self.service.as_deref()
    }

    pub fn identity(&self) -> Option<&str> {
        self.identity.as_deref()
    }

    pub fn status(&self) -> StatusFilter {
        self.status
    }

    pub fn sort(&self) -> Sort {
        self.sort
    }

    pub fn window(&self) -> (&'static str, u64) {
        WINDOWS[self.window]
    }

    pub fn has_filter(&self) -> bool {
        !self.text.is_empty()
            || self.service.is_some()
            || self.identity.is_some()
            || self.status != StatusFilter::All
    }

    /// A new answer from the server, keeping the selected workflow selected.
    pub fn receive(&mut self, answer: Result<crate::data::Listed, String>) {
        self.loaded = true;
        match answer {
            Ok(listed) => {
                let keep = self.selected_workflow().map(|w| w.trace_id);
                self.all = listed.workflows;
                self.traces = listed.traces;
                self.error = None;
                self.refilter(keep);
            }
            Err(e) => self.error = Some(e),
        }
    }

    pub fn move_by(&mut self, delta: isize) {
        let last = self.shown.len().saturating_sub(1);
        self.selected = self.selected.saturating_add_signed(delta).min(last);
    }

    pub fn page(&mut self, down: bool) {
        let step = PAGE as isize;
        self.move_by(if down { step } else { -step });
    }

    pub fn home(&mut self) {
        self.selected = 0;
    }

    pub fn end(&mut self) {
        self.selected = self.shown.len().saturating_sub(1);
    }

    pub fn set_text(&mut self, text: String) {
        self.text = text;
        self.refilter_keeping();
    }

    pub fn clear_filters(&mut self) {
        self.text.clear();
        self.service = None;
        self.identity = None;
        self.status = StatusFilter::All;
        self.refilter_keeping();
    }

    /// Next service seen in the list, then none.
    pub fn cycle_service(&mut self) {
        let values = distinct(self.all.iter().flat_map(|w| w.services.iter()));
        self.service = next_of(&values, self.service.as_deref());
        self.refilter_keeping();
    }

    /// Next identity seen in the list, then none.
    pub fn cycle_identity(&mut self) {
        let values = distinct(self.all.iter().flat_map(|w| w.identities.iter()));
        self.identity = next_of(&values, self.identity.as_deref());
        self.refilter_keeping();
    }

    pub fn cycle_status(&mut self) {
        self.status = match self.status {
            StatusFilter::All => StatusFilter::Error,
            StatusFilter::Error => StatusFilter::Ok,
            StatusFilter::Ok => StatusFilter::All,
        };
        self.refilter_keeping();
    }

    /// The next time window; the caller asks the server again.
    pub fn cycle_window(&mut self) {
        self.window = (self.window + 1) % WINDOWS.len();
    }

    pub fn toggle_sort(&mut self) {
        self.sort = match self.sort {
            Sort::Time => Sort::Duration,
            Sort::Duration => Sort::Time,
        };
        self.refilter_keeping();
    }

    fn refilter_keeping(&mut self) {
        let keep = self.selected_workflow().map(|w| w.trace_id);
        self.refilter(keep);
    }

    fn refilter(&mut self, keep: Option<TraceId>) {
        let text = self.text.to_lowercase();
        let mut shown: Vec<usize> = (0..self.all.len())
            .filter(|i| {
                let w = &self.all[*i];
                let status_ok = match self.status {
                    StatusFilter::All => true,
                    StatusFilter::Error => w.status == StatusCode::Error,
                    StatusFilter::Ok => w.status != StatusCode::Error,
                };
                status_ok
                    && self.service.as_ref().is_none_or(|s| w.services.contains(s))
                    && self
                        .identity
                        .as_ref()
                        .is_none_or(|s| w.identities.contains(s))
                    && (text.is_empty() || matches_text(w, &text))
            })
            .collect();
        match self.sort {
            Sort::Time => shown.sort_by_key(|i| std::cmp::Reverse(self.all[*i].start_ns)),
            Sort::Duration => shown.sort_by_key(|i| std::cmp::Reverse(self.all[*i].duration_ns())),
        }
        self.shown = shown;
        self.selected = keep
            .and_then(|t| self.shown.iter().position(|i| self.all[*i].trace_id == t))
            .unwrap_or(self.selected)
            .min(self.shown.len().saturating_sub(1));
    }
}

/// `text` (lower case) in the name, a service, agent or identity, or a trace id.
fn matches_text(w: &WorkflowSummary, text: &str) -> bool {
    let has = |s: &str| s.to_lowercase().contains(text);
    has(&w.name)
        || w.services.iter().any(|s| has(s))
        || w.agent.as_deref().is_some_and(has)
        || w.identities.iter().any(|s| has(s))
        || w.traces.iter().any(|t| t.to_hex().contains(text))
}

fn distinct<'a>(values: impl Iterator<Item = &'a String>) -> Vec<&'a str> {
    let mut v: Vec<&str> = values.map(String::as_str).collect();
    v.sort_unstable();
    v.dedup();
    v
}

fn next_of(values: &[&str], current: Option<&str>) -> Option<String> {
    let next = match current {
        None => values.first(),
        Some(c) => values
            .iter()
            .position(|v| *v == c)
            .and_then(|i| values.get(i + 1)),
    };
    next.map(|s| (*s).to_owned())
}
