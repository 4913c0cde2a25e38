//! [`LineageSpan`]: one span as lineage sees it — plain data that whoever
//! fetches spans (the query engine, a test, a benchmark) fills in.

use serde::Serialize;
use weft_schemas::{AiKind, ApprovalState, PolicyVerdict, SpanId, StatusCode, TraceId};

/// The AI columns lineage reads from one span.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StepAi {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ai_kind: Option<AiKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload_identity: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_verdict: Option<PolicyVerdict>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// `weft.tool.effect`: `write` for tools that change something.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_effect: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retrieval_source: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub document_ids: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_state: Option<ApprovalState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approver: Option<String>,
    /// `weft.approval.action`: the action an approval gates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_action: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kv_cache_hit: Option<bool>,
}

/// One span as lineage sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LineageSpan {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_span_id: Option<SpanId>,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub start_ns: i64,
    pub end_ns: i64,
    pub status: StatusCode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    /// Spans this one follows from: `(trace, span)`.
    #[serde(skip)]
    pub links: Vec<(TraceId, SpanId)>,
    #[serde(flatten)]
    pub ai: StepAi,
}

impl LineageSpan {
    pub fn duration_ns(&self) -> i64 {
        self.end_ns.saturating_sub(self.start_ns)
    }

    /// `trace_id:span_id`, unique within a workflow.
    pub fn key(&self) -> String {
        format!("{}:{}", self.trace_id, self.span_id)
    }
}
