//! The AI semantic-convention mapping: which attribute keys fill which typed column.
//!
//! [`AI_COLUMNS`] is the single table. Each column lists its keys in priority
//! order; the first key present on the span decides the value. If that value has
//! the wrong type (a string where a bool belongs), the column is null and the raw
//! attribute stays in `attributes` — a badly typed attribute never rejects a span.
//! `CONVENTIONS.md` documents this table for users; a test keeps the two in step.

use crate::span::{AttrValue, find};

/// Where a key is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Span,
    Resource,
}

/// How a key's value becomes the column's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interp {
    /// Taken as it is (string, integer, float or bool, per the column type).
    AsIs,
    /// A `weft.kind` value, one of [`AiKind`]'s names.
    WeftKind,
    /// A `gen_ai.operation.name` value mapped to a kind.
    GenAiOperationKind,
    /// An `openinference.span.kind` value mapped to a kind.
    OpenInferenceKind,
    /// A `traceloop.span.kind` value mapped to a kind.
    TraceloopKind,
    /// Milliseconds, stored as nanoseconds.
    MillisToNanos,
    /// Seconds, stored as nanoseconds.
    SecondsToNanos,
    /// A JSON array of documents (strings, or objects with an `id`).
    DocumentIdsJson,
    /// OpenInference's flattened `retrieval.documents.N.document.id` keys.
    DocumentIdsIndexed,
    /// One of `allow`, `deny`, `needs_approval`.
    Verdict,
    /// One of `requested`, `granted`, `denied`.
    Approval,
    /// A ratio in `0..=1`.
    Ratio,
}

/// Arrow type of an AI column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Utf8,
    Int64,
    Float64,
    Boolean,
    Utf8List,
}

/// One key that can fill a column.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub name: &'static str,
    pub scope: Scope,
    pub interp: Interp,
}

/// One typed AI column and the keys that fill it, first present wins.
#[derive(Debug, Clone, Copy)]
pub struct AiColumn {
    pub name: &'static str,
    pub ty: ColumnType,
    pub keys: &'static [Key],
    pub doc: &'static str,
}

const fn span(name: &'static str) -> Key {
    Key {
        name,
        scope: Scope::Span,
        interp: Interp::AsIs,
    }
}

const fn span_as(name: &'static str, interp: Interp) -> Key {
    Key {
        name,
        scope: Scope::Span,
        interp,
    }
}

const fn resource(name: &'static str) -> Key {
    Key {
        name,
        scope: Scope::Resource,
        interp: Interp::AsIs,
    }
}

/// The mapping table, in column order.
pub const AI_COLUMNS: &[AiColumn] = &[
    AiColumn {
        name: "ai_kind",
        ty: ColumnType::Utf8,
        keys: &[
            span_as("weft.kind", Interp::WeftKind),
            span_as("gen_ai.operation.name", Interp::GenAiOperationKind),
            span_as("openinference.span.kind", Interp::OpenInferenceKind),
            span_as("traceloop.span.kind", Interp::TraceloopKind),
        ],
        doc: "what the step is: llm, embedding, retrieval, rerank, tool, agent, workflow, policy, approval, guardrail or other",
    },
    AiColumn {
        name: "gen_ai_operation",
        ty: ColumnType::Utf8,
        keys: &[span("gen_ai.operation.name")],
        doc: "the GenAI operation name as sent (chat, embeddings, execute_tool, ...)",
    },
    AiColumn {
        name: "gen_ai_provider",
        ty: ColumnType::Utf8,
        keys: &[
            span("gen_ai.provider.name"),
            span("gen_ai.system"),
            span("llm.provider"),
            span("llm.system"),
        ],
        doc: "model provider (openai, anthropic, vllm, ...)",
    },
    AiColumn {
        name: "gen_ai_model",
        ty: ColumnType::Utf8,
        keys: &[
            span("gen_ai.response.model"),
            span("gen_ai.request.model"),
            span("llm.model_name"),
        ],
        doc: "model that answered, else the model requested",
    },
    AiColumn {
        name: "input_tokens",
        ty: ColumnType::Int64,
        keys: &[
            span("gen_ai.usage.input_tokens"),
            span("gen_ai.usage.prompt_tokens"),
            span("llm.token_count.prompt"),
        ],
        doc: "prompt tokens",
    },
    AiColumn {
        name: "output_tokens",
        ty: ColumnType::Int64,
        keys: &[
            span("gen_ai.usage.output_tokens"),
            span("gen_ai.usage.completion_tokens"),
            span("llm.token_count.completion"),
        ],
        doc: "completion tokens",
    },
    AiColumn {
        name: "cached_input_tokens",
        ty: ColumnType::Int64,
        keys: &[
            span("gen_ai.usage.cache_read.input_tokens"),
            span("llm.token_count.prompt_details.cache_read"),
        ],
        doc: "prompt tokens served from a cache",
    },
    AiColumn {
        name: "tool_name",
        ty: ColumnType::Utf8,
        keys: &[span("gen_ai.tool.name"), span("tool.name")],
        doc: "tool invoked",
    },
    AiColumn {
        name: "tool_call_id",
        ty: ColumnType::Utf8,
        keys: &[span("gen_ai.tool.call.id"), span("tool.id")],
        doc: "the model's id for the tool call",
    },
    AiColumn {
        name: "retrieval_source",
        ty: ColumnType::Utf8,
        keys: &[span("weft.retrieval.source"), span("gen_ai.data_source.id")],
        doc: "index, store or API documents were retrieved from",
    },
    AiColumn {
        name: "retrieved_document_ids",
        ty: ColumnType::Utf8List,
        keys: &[
            span_as("gen_ai.retrieval.documents", Interp::DocumentIdsJson),
            span_as(
                "retrieval.documents.N.document.id",
                Interp::DocumentIdsIndexed,
            ),
        ],
        doc: "ids of the documents retrieved, in order",
    },
    AiColumn {
        name: "identity",
        ty: ColumnType::Utf8,
        keys: &[span("weft.identity"), span("enduser.id"), span("user.id")],
        doc: "the end user or principal the step ran for",
    },
    AiColumn {
        name: "workload_identity",
        ty: ColumnType::Utf8,
        keys: &[span("weft.workload.id"), resource("weft.workload.id")],
        doc: "the workload (service account, SPIFFE id, ...) the step ran as",
    },
    AiColumn {
        name: "policy_name",
        ty: ColumnType::Utf8,
        keys: &[
            span("weft.policy.name"),
            span("gen_ai.security.policy.name"),
        ],
        doc: "policy evaluated",
    },
    AiColumn {
        name: "policy_verdict",
        ty: ColumnType::Utf8,
        keys: &[
            span_as("weft.policy.verdict", Interp::Verdict),
            span_as("gen_ai.security.verdict", Interp::Verdict),
        ],
        doc: "allow, deny or needs_approval",
    },
    AiColumn {
        name: "approval_state",
        ty: ColumnType::Utf8,
        keys: &[span_as("weft.approval.state", Interp::Approval)],
        doc: "requested, granted or denied",
    },
    AiColumn {
        name: "approver",
        ty: ColumnType::Utf8,
        keys: &[span("weft.approval.approver")],
        doc: "who granted or denied the approval",
    },
    AiColumn {
        name: "node",
        ty: ColumnType::Utf8,
        keys: &[span("weft.node"), resource("host.name")],
        doc: "GPU node or host that ran the step",
    },
    AiColumn {
        name: "kv_cache_hit",
        ty: ColumnType::Boolean,
        keys: &[span("weft.kv_cache.hit")],
        doc: "whether the prompt prefix was in the KV cache",
    },
    AiColumn {
        name: "kv_cache_hit_ratio",
        ty: ColumnType::Float64,
        keys: &[span_as("weft.kv_cache.hit_ratio", Interp::Ratio)],
        doc: "share of prompt tokens served from the KV cache, 0..1",
    },
    AiColumn {
        name: "queue_wait_ns",
        ty: ColumnType::Int64,
        keys: &[span_as("weft.queue.wait_ms", Interp::MillisToNanos)],
        doc: "time queued before the step ran, nanoseconds",
    },
    AiColumn {
        name: "time_to_first_token_ns",
        ty: ColumnType::Int64,
        keys: &[
            span_as("weft.ttft_ms", Interp::MillisToNanos),
            span_as(
                "gen_ai.response.time_to_first_chunk",
                Interp::SecondsToNanos,
            ),
        ],
        doc: "time to first token, nanoseconds",
    },
    AiColumn {
        name: "conversation_id",
        ty: ColumnType::Utf8,
        keys: &[span("gen_ai.conversation.id"), span("session.id")],
        doc: "conversation or session the step belongs to",
    },
    AiColumn {
        name: "agent_name",
        ty: ColumnType::Utf8,
        keys: &[span("gen_ai.agent.name"), span("agent.name")],
        doc: "agent that ran the step",
    },
];

/// What an AI step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AiKind {
    Llm,
    Embedding,
    Retrieval,
    Rerank,
    Tool,
    Agent,
    Workflow,
    Policy,
    Approval,
    Guardrail,
    Other,
}

impl AiKind {
    /// Every kind, in documentation order.
    pub const ALL: [AiKind; 11] = [
        AiKind::Llm,
        AiKind::Embedding,
        AiKind::Retrieval,
        AiKind::Rerank,
        AiKind::Tool,
        AiKind::Agent,
        AiKind::Workflow,
        AiKind::Policy,
        AiKind::Approval,
        AiKind::Guardrail,
        AiKind::Other,
    ];

    /// The text stored in the `ai_kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            AiKind::Llm => "llm",
            AiKind::Embedding => "embedding",
            AiKind::Retrieval => "retrieval",
            AiKind::Rerank => "rerank",
            AiKind::Tool => "tool",
            AiKind::Agent => "agent",
            AiKind::Workflow => "workflow",
            AiKind::Policy => "policy",
            AiKind::Approval => "approval",
            AiKind::Guardrail => "guardrail",
            AiKind::Other => "other",
        }
    }

    /// Parses a `weft.kind` value.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    fn from_gen_ai_operation(op: &str) -> Self {
        match op {
            "chat" | "text_completion" | "generate_content" => AiKind::Llm,
            "embeddings" => AiKind::Embedding,
            "retrieval" => AiKind::Retrieval,
            "execute_tool" => AiKind::Tool,
            "invoke_agent" | "create_agent" => AiKind::Agent,
            "invoke_workflow" => AiKind::Workflow,
            _ => AiKind::Other,
        }
    }

    fn from_openinference(kind: &str) -> Self {
        match kind.to_ascii_uppercase().as_str() {
            "LLM" => AiKind::Llm,
            "EMBEDDING" => AiKind::Embedding,
            "RETRIEVER" => AiKind::Retrieval,
            "RERANKER" => AiKind::Rerank,
            "TOOL" => AiKind::Tool,
            "AGENT" => AiKind::Agent,
            "CHAIN" => AiKind::Workflow,
            "GUARDRAIL" => AiKind::Guardrail,
            _ => AiKind::Other,
        }
    }

    fn from_traceloop(kind: &str) -> Self {
        match kind {
            "workflow" | "task" => AiKind::Workflow,
            "agent" => AiKind::Agent,
            "tool" => AiKind::Tool,
            _ => AiKind::Other,
        }
    }
}

/// A policy decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyVerdict {
    Allow,
    Deny,
    NeedsApproval,
}

impl PolicyVerdict {
    /// The text stored in the `policy_verdict` column.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyVerdict::Allow => "allow",
            PolicyVerdict::Deny => "deny",
            PolicyVerdict::NeedsApproval => "needs_approval",
        }
    }

    /// Parses a verdict; unknown text is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "allow" => Some(PolicyVerdict::Allow),
            "deny" => Some(PolicyVerdict::Deny),
            "needs_approval" => Some(PolicyVerdict::NeedsApproval),
            _ => None,
        }
    }
}

/// The state of a human approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApprovalState {
    Requested,
    Granted,
    Denied,
}

impl ApprovalState {
    /// The text stored in the `approval_state` column.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalState::Requested => "requested",
            ApprovalState::Granted => "granted",
            ApprovalState::Denied => "denied",
        }
    }

    /// Parses an approval state; unknown text is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "requested" => Some(ApprovalState::Requested),
            "granted" => Some(ApprovalState::Granted),
            "denied" => Some(ApprovalState::Denied),
            _ => None,
        }
    }
}

/// The typed AI columns of one span; `None` is a null column.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AiFields {
    pub ai_kind: Option<AiKind>,
    pub gen_ai_operation: Option<String>,
    pub gen_ai_provider: Option<String>,
    pub gen_ai_model: Option<String>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub cached_input_tokens: Option<i64>,
    pub tool_name: Option<String>,
    pub tool_call_id: Option<String>,
    pub retrieval_source: Option<String>,
    pub retrieved_document_ids: Option<Vec<String>>,
    pub identity: Option<String>,
    pub workload_identity: Option<String>,
    pub policy_name: Option<String>,
    pub policy_verdict: Option<PolicyVerdict>,
    pub approval_state: Option<ApprovalState>,
    pub approver: Option<String>,
    pub node: Option<String>,
    pub kv_cache_hit: Option<bool>,
    pub kv_cache_hit_ratio: Option<f64>,
    pub queue_wait_ns: Option<i64>,
    pub time_to_first_token_ns: Option<i64>,
    pub conversation_id: Option<String>,
    pub agent_name: Option<String>,
}

macro_rules! serialize_as_str {
    ($($t:ty),*) => {$(
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }
    )*};
}
serialize_as_str!(AiKind, PolicyVerdict, ApprovalState);

/// A column value after interpretation.
#[derive(Debug, Clone, PartialEq)]
enum Typed {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    List(Vec<String>),
}

impl Typed {
    fn str(self) -> Option<String> {
        match self {
            Typed::Str(s) => Some(s),
            _ => None,
        }
    }
    fn int(self) -> Option<i64> {
        match self {
            Typed::Int(i) => Some(i),
            _ => None,
        }
    }
    fn float(self) -> Option<f64> {
        match self {
            Typed::Float(f) => Some(f),
            _ => None,
        }
    }
    fn bool(self) -> Option<bool> {
        match self {
            Typed::Bool(b) => Some(b),
            _ => None,
        }
    }
    fn list(self) -> Option<Vec<String>> {
        match self {
            Typed::List(l) => Some(l),
            _ => None,
        }
    }
}

/// Extracts every AI column from a span's and its resource's attributes.
pub fn extract(
    span_attrs: &[(String, AttrValue)],
    resource_attrs: &[(String, AttrValue)],
) -> AiFields {
    let mut out = AiFields::default();
    for column in AI_COLUMNS {
        let Some(value) = first_present(column, span_attrs, resource_attrs) else {
            continue;
        };
        assign(&mut out, column.name, value);
    }
    out
}

/// The first key present decides; a wrongly typed value gives `Some(None)`.
fn first_present(
    column: &AiColumn,
    span_attrs: &[(String, AttrValue)],
    resource_attrs: &[(String, AttrValue)],
) -> Option<Option<Typed>> {
    for key in column.keys {
        let attrs = match key.scope {
            Scope::Span => span_attrs,
            Scope::Resource => resource_attrs,
        };
        if key.interp == Interp::DocumentIdsIndexed {
            if let Some(ids) = indexed_document_ids(attrs) {
                return Some(Some(Typed::List(ids)));
            }
            continue;
        }
        if let Some(value) = find(attrs, key.name) {
            return Some(interpret(column.ty, key.interp, value));
        }
    }
    None
}

fn interpret(ty: ColumnType, interp: Interp, value: &AttrValue) -> Option<Typed> {
    match interp {
        Interp::AsIs => as_type(ty, value),
        Interp::WeftKind => text(value).and_then(AiKind::parse).map(kind),
        Interp::GenAiOperationKind => text(value).map(|s| kind(AiKind::from_gen_ai_operation(s))),
        Interp::OpenInferenceKind => text(value).map(|s| kind(AiKind::from_openinference(s))),
        Interp::TraceloopKind => text(value).map(|s| kind(AiKind::from_traceloop(s))),
        Interp::MillisToNanos => number(value).map(|ms| Typed::Int((ms * 1e6).round() as i64)),
        Interp::SecondsToNanos => number(value).map(|s| Typed::Int((s * 1e9).round() as i64)),
        Interp::DocumentIdsJson => json_document_ids(value).map(Typed::List),
        Interp::DocumentIdsIndexed => None,
        Interp::Verdict => text(value)
            .and_then(PolicyVerdict::parse)
            .map(|v| Typed::Str(v.as_str().to_owned())),
        Interp::Approval => text(value)
            .and_then(ApprovalState::parse)
            .map(|v| Typed::Str(v.as_str().to_owned())),
        Interp::Ratio => number(value)
            .filter(|r| (0.0..=1.0).contains(r))
            .map(Typed::Float),
    }
}

fn kind(k: AiKind) -> Typed {
    Typed::Str(k.as_str().to_owned())
}

fn text(value: &AttrValue) -> Option<&str> {
    match value {
        AttrValue::Str(s) => Some(s),
        _ => None,
    }
}

fn number(value: &AttrValue) -> Option<f64> {
    match value {
        AttrValue::Int(i) => Some(*i as f64),
        AttrValue::Double(d) if d.is_finite() => Some(*d),
        _ => None,
    }
}

fn as_type(ty: ColumnType, value: &AttrValue) -> Option<Typed> {
    match (ty, value) {
        (ColumnType::Utf8, AttrValue::Str(s)) => Some(Typed::Str(s.clone())),
        (ColumnType::Int64, AttrValue::Int(i)) => Some(Typed::Int(*i)),
        // JavaScript SDKs may send whole numbers as doubles.
        (ColumnType::Int64, AttrValue::Double(d)) if d.fract() == 0.0 && d.is_finite() => {
            Some(Typed::Int(*d as i64))
        }
        (ColumnType::Float64, v) => number(v).map(Typed::Float),
        (ColumnType::Boolean, AttrValue::Bool(b)) => Some(Typed::Bool(*b)),
        (ColumnType::Utf8List, AttrValue::Array(items)) => items
            .iter()
            .map(|v| text(v).map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .map(Typed::List),
        _ => None,
    }
}

/// `gen_ai.retrieval.documents`: a JSON array (as a string) of ids or of
/// objects carrying `id`/`document_id`; an OTLP array of strings also works.
fn json_document_ids(value: &AttrValue) -> Option<Vec<String>> {
    let json = match value {
        AttrValue::Str(s) => serde_json::from_str::<serde_json::Value>(s).ok()?,
        AttrValue::Array(_) => value.to_json(),
        _ => return None,
    };
    let items = json.as_array()?;
    items
        .iter()
        .map(|item| match item {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Object(o) => ["id", "document_id", "document.id"]
                .iter()
                .find_map(|k| o.get(*k))
                .and_then(|v| match v {
                    serde_json::Value::String(s) => Some(s.clone()),
                    serde_json::Value::Number(n) => Some(n.to_string()),
                    _ => None,
                }),
            _ => None,
        })
        .collect()
}

/// OpenInference's `retrieval.documents.{N}.document.id`, ordered by N.
fn indexed_document_ids(attrs: &[(String, AttrValue)]) -> Option<Vec<String>> {
    let mut found: Vec<(u32, String)> = attrs
        .iter()
        .filter_map(|(k, v)| {
            let n = k
                .strip_prefix("retrieval.documents.")?
                .strip_suffix(".document.id")?
                .parse::<u32>()
                .ok()?;
            Some((n, v.to_text()))
        })
        .collect();
    if found.is_empty() {
        return None;
    }
    found.sort_by_key(|(n, _)| *n);
    Some(found.into_iter().map(|(_, id)| id).collect())
}

fn assign(out: &mut AiFields, column: &str, value: Option<Typed>) {
    let Some(v) = value else { return };
    match column {
        "ai_kind" => out.ai_kind = v.str().and_then(|s| AiKind::parse(&s)),
        "gen_ai_operation" => out.gen_ai_operation = v.str(),
        "gen_ai_provider" => out.gen_ai_provider = v.str(),
        "gen_ai_model" => out.gen_ai_model = v.str(),
        "input_tokens" => out.input_tokens = v.int(),
        "output_tokens" => out.output_tokens = v.int(),
        "cached_input_tokens" => out.cached_input_tokens = v.int(),
        "tool_name" => out.tool_name = v.str(),
        "tool_call_id" => out.tool_call_id = v.str(),
        "retrieval_source" => out.retrieval_source = v.str(),
        "retrieved_document_ids" => out.retrieved_document_ids = v.list(),
        "identity" => out.identity = v.str(),
        "workload_identity" => out.workload_identity = v.str(),
        "policy_name" => out.policy_name = v.str(),
        "policy_verdict" => out.policy_verdict = v.str().and_then(|s| PolicyVerdict::parse(&s)),
        "approval_state" => out.approval_state = v.str().and_then(|s| ApprovalState::parse(&s)),
        "approver" => out.approver = v.str(),
        "node" => out.node = v.str(),
        "kv_cache_hit" => out.kv_cache_hit = v.bool(),
        "kv_cache_hit_ratio" => out.kv_cache_hit_ratio = v.float(),
        "queue_wait_ns" => out.queue_wait_ns = v.int(),
        "time_to_first_token_ns" => out.time_to_first_token_ns = v.int(),
        "conversation_id" => out.conversation_id = v.str(),
        "agent_name" => out.agent_name = v.str(),
        // Every name in AI_COLUMNS is matched above; a test checks it.
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(k: &str, v: &str) -> (String, AttrValue) {
        (k.to_owned(), AttrValue::Str(v.to_owned()))
    }
    fn i(k: &str, v: i64) -> (String, AttrValue) {
        (k.to_owned(), AttrValue::Int(v))
    }

    #[test]
    fn every_column_is_assigned_and_in_the_schema() {
        let schema = crate::schema::span_schema();
        for column in AI_COLUMNS {
            assert!(
                schema.field_with_name(column.name).is_ok(),
                "{} missing from schema",
                column.name
            );
        }
    }

    #[test]
    fn genai_llm_span() {
        let ai = extract(
            &[
                s("gen_ai.operation.name", "chat"),
                s("gen_ai.system", "openai"),
                s("gen_ai.request.model", "gpt-4o"),
                s("gen_ai.response.model", "gpt-4o-2024-08-06"),
                i("gen_ai.usage.input_tokens", 120),
                i("gen_ai.usage.output_tokens", 30),
                (
                    "gen_ai.response.time_to_first_chunk".to_owned(),
                    AttrValue::Double(0.25),
                ),
            ],
            &[s("host.name", "gpu-3")],
        );
        assert_eq!(ai.ai_kind, Some(AiKind::Llm));
        assert_eq!(ai.gen_ai_operation.as_deref(), Some("chat"));
        assert_eq!(ai.gen_ai_provider.as_deref(), Some("openai"));
        assert_eq!(ai.gen_ai_model.as_deref(), Some("gpt-4o-2024-08-06"));
        assert_eq!((ai.input_tokens, ai.output_tokens), (Some(120), Some(30)));
        assert_eq!(ai.time_to_first_token_ns, Some(250_000_000));
        assert_eq!(ai.node.as_deref(), Some("gpu-3"));
    }

    #[test]
    fn first_present_key_wins_over_later_aliases() {
        let ai = extract(
            &[
                s("weft.kind", "policy"),
                s("gen_ai.operation.name", "chat"),
                s("weft.node", "gpu-1"),
                s("user.id", "bob"),
                s("enduser.id", "alice"),
            ],
            &[s("host.name", "gpu-9")],
        );
        assert_eq!(ai.ai_kind, Some(AiKind::Policy));
        assert_eq!(ai.node.as_deref(), Some("gpu-1"));
        assert_eq!(ai.identity.as_deref(), Some("alice"));
    }

    #[test]
    fn openinference_and_traceloop_kinds() {
        let oi = |k| extract(&[s("openinference.span.kind", k)], &[]).ai_kind;
        assert_eq!(oi("RETRIEVER"), Some(AiKind::Retrieval));
        assert_eq!(oi("CHAIN"), Some(AiKind::Workflow));
        assert_eq!(oi("RERANKER"), Some(AiKind::Rerank));
        assert_eq!(oi("GUARDRAIL"), Some(AiKind::Guardrail));
        assert_eq!(oi("SOMETHING"), Some(AiKind::Other));
        let tl = |k| extract(&[s("traceloop.span.kind", k)], &[]).ai_kind;
        assert_eq!(tl("task"), Some(AiKind::Workflow));
        assert_eq!(tl("tool"), Some(AiKind::Tool));
        assert_eq!(extract(&[s("http.method", "GET")], &[]).ai_kind, None);
    }

    #[test]
    fn wrongly_typed_values_give_null_not_fallthrough() {
        let ai = extract(
            &[
                s("weft.kv_cache.hit", "yes"),
                s("gen_ai.usage.input_tokens", "many"),
                i("gen_ai.usage.prompt_tokens", 5),
                s("weft.policy.verdict", "maybe"),
                ("weft.kv_cache.hit_ratio".to_owned(), AttrValue::Double(1.5)),
            ],
            &[],
        );
        assert_eq!(ai.kv_cache_hit, None);
        assert_eq!(ai.input_tokens, None);
        assert_eq!(ai.policy_verdict, None);
        assert_eq!(ai.kv_cache_hit_ratio, None);
    }

    #[test]
    fn document_ids_from_json_and_indexed_keys() {
        let ai = extract(
            &[s(
                "gen_ai.retrieval.documents",
                r#"[{"id":"kb-1","score":0.9},{"id":"kb-7"}]"#,
            )],
            &[],
        );
        assert_eq!(
            ai.retrieved_document_ids,
            Some(vec!["kb-1".to_owned(), "kb-7".to_owned()])
        );
        let ai = extract(
            &[
                s("retrieval.documents.1.document.id", "b"),
                s("retrieval.documents.0.document.id", "a"),
            ],
            &[],
        );
        assert_eq!(
            ai.retrieved_document_ids,
            Some(vec!["a".to_owned(), "b".to_owned()])
        );
    }

    #[test]
    fn units_and_resource_fallbacks() {
        let ai = extract(
            &[
                ("weft.queue.wait_ms".to_owned(), AttrValue::Double(12.5)),
                i("weft.ttft_ms", 80),
                ("weft.kv_cache.hit".to_owned(), AttrValue::Bool(true)),
            ],
            &[s("weft.workload.id", "spiffe://weft/agent")],
        );
        assert_eq!(ai.queue_wait_ns, Some(12_500_000));
        assert_eq!(ai.time_to_first_token_ns, Some(80_000_000));
        assert_eq!(ai.kv_cache_hit, Some(true));
        assert_eq!(ai.workload_identity.as_deref(), Some("spiffe://weft/agent"));
    }

    #[test]
    fn conventions_md_documents_every_key() {
        let doc = include_str!("../../CONVENTIONS.md");
        for column in AI_COLUMNS {
            assert!(
                doc.contains(&format!("`{}`", column.name)),
                "{}",
                column.name
            );
            for key in column.keys {
                assert!(
                    doc.contains(&format!("`{}`", key.name)),
                    "CONVENTIONS.md does not mention `{}`",
                    key.name
                );
            }
        }
    }
}
