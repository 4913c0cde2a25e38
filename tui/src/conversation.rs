//! The conversation view's state: the workflows of one conversation
//! (`gen_ai.conversation.id`, `session.id`), oldest first — the sessions view
//! of Phoenix and Langfuse — and the selection.

use weft_lineage::WorkflowSummary;

use crate::data::Listed;
use crate::explorer::PAGE;

/// Turns asked for per conversation.
pub const TURNS: usize = 500;

/// One conversation's workflows.
#[derive(Debug, Default)]
pub enum ConversationState {
    /// None opened yet.
    #[default]
    Empty,
    Loading(String),
    Failed(String, String),
    Ready(Turns),
}

/// A listed conversation and the selected turn.
#[derive(Debug)]
pub struct Turns {
    pub id: String,
    pub workflows: Vec<WorkflowSummary>,
    /// Traces that took part, when the source said.
    pub traces: Option<usize>,
    pub selected: usize,
}

impl Turns {
    pub fn new(id: String, listed: Listed) -> Self {
        Self {
            id,
            workflows: listed.workflows,
            traces: listed.traces,
            selected: 0,
        }
    }

    /// Whether the list stopped at [`TURNS`] (later turns are not in it).
    pub fn capped(&self) -> bool {
        self.workflows.len() >= TURNS
    }

    pub fn selected_workflow(&self) -> Option<&WorkflowSummary> {
        self.workflows.get(self.selected)
    }

    pub fn move_by(&mut self, by: isize) {
        let last = self.workflows.len().saturating_sub(1);
        self.selected = self.selected.saturating_add_signed(by).min(last);
    }

    pub fn page(&mut self, down: bool) {
        let by = isize::try_from(PAGE).unwrap_or(10);
        self.move_by(if down { by } else { -by });
    }

    pub fn home(&mut self) {
        self.selected = 0;
    }

    pub fn end(&mut self) {
        self.selected = self.workflows.len().saturating_sub(1);
    }

    /// A fresh answer for the same conversation keeps the selected turn.
    pub fn refresh(&mut self, listed: Listed) {
        let keep = self.selected_workflow().map(|w| w.trace_id);
        self.workflows = listed.workflows;
        self.traces = listed.traces;
        self.selected = keep
            .and_then(|t| self.workflows.iter().position(|w| w.trace_id == t))
            .unwrap_or(0);
    }
}

impl ConversationState {
    /// The conversation shown or asked for.
    pub fn id(&self) -> Option<&str> {
        match self {
            ConversationState::Empty => None,
            ConversationState::Loading(id) | ConversationState::Failed(id, _) => Some(id),
            ConversationState::Ready(t) => Some(&t.id),
        }
    }
}
