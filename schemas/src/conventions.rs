//! The AI semantic-convention mapping: which attribute keys fill which typed column.
//!
//! The [`ai_columns!`](crate::ai_column) invocation below is the single table:
//! it generates [`AiFields`], [`AI_COLUMNS`], [`ai_col`], [`extract`] and the
//! Arrow builders and reader. Each column lists its keys in priority
//! order; the first key present on the span decides the value. If that value has
//! the wrong type (a string where a bool belongs), the column is null and the raw
//! attribute stays in `attributes` — a badly typed attribute never rejects a span.
//! `CONVENTIONS.md` documents this table for users; a test keeps the two in step.

use arrow::array::{ArrayRef, RecordBatch};
use arrow::error::ArrowError;

use crate::ai_column::{AiValue, ColumnType, Typed, ai_columns};
pub use crate::ai_values::{AiKind, ApprovalState, PolicyVerdict};
use crate::attr::{AttrValue, find};

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
    /// `gen_ai.output.messages` (JSON): the ids of its `tool_call` parts.
    ToolCallIdsJson,
    /// OpenInference's flattened
    /// `llm.output_messages.N.message.tool_calls.M.tool_call.id` keys.
    ToolCallIdsIndexed,
    /// One of `allow`, `deny`, `needs_approval`.
    Verdict,
    /// One of `requested`, `granted`, `denied`.
    Approval,
    /// A ratio in `0..=1`.
    Ratio,
    /// A count (tokens) in `0..=MAX_COUNT`.
    Count,
    /// Present at all (any value): the step is of this kind. For GenAI spans
    /// sent without `gen_ai.operation.name`, which the conventions allow.
    Implies(AiKind),
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

// The one table of AI columns: `name: Rust type, "doc", [keys in priority order];`.
// Adding a column is one line here (and its keys in CONVENTIONS.md).
ai_columns! {
    ai_kind: AiKind,
        "what the step is: llm, embedding, retrieval, rerank, tool, agent, workflow, policy, approval, guardrail or other",
        [
            span_as("weft.kind", Interp::WeftKind),
            span_as("gen_ai.operation.name", Interp::GenAiOperationKind),
            span_as("openinference.span.kind", Interp::OpenInferenceKind),
            span_as("traceloop.span.kind", Interp::TraceloopKind),
            // GenAI spans without an operation name: what their other keys imply.
            span_as("gen_ai.tool.name", Interp::Implies(AiKind::Tool)),
            span_as("gen_ai.request.encoding_formats", Interp::Implies(AiKind::Embedding)),
            span_as("gen_ai.request.model", Interp::Implies(AiKind::Llm)),
            span_as("gen_ai.response.model", Interp::Implies(AiKind::Llm)),
            span_as("gen_ai.system", Interp::Implies(AiKind::Llm)),
            span_as("gen_ai.provider.name", Interp::Implies(AiKind::Llm)),
        ];
    gen_ai_operation: String,
        "the GenAI operation name as sent (chat, embeddings, execute_tool, ...)",
        [span("gen_ai.operation.name")];
    gen_ai_provider: String,
        "model provider (openai, anthropic, vllm, ...)",
        [
            span("gen_ai.provider.name"),
            span("gen_ai.system"),
            span("llm.provider"),
            span("llm.system"),
        ];
    gen_ai_model: String,
        "model that answered, else the model requested",
        [
            span("gen_ai.response.model"),
            span("gen_ai.request.model"),
            span("llm.model_name"),
        ];
    input_tokens: i64,
        "prompt tokens",
        [
            span_as("gen_ai.usage.input_tokens", Interp::Count),
            span_as("gen_ai.usage.prompt_tokens", Interp::Count),
            span_as("llm.token_count.prompt", Interp::Count),
        ];
    output_tokens: i64,
        "completion tokens",
        [
            span_as("gen_ai.usage.output_tokens", Interp::Count),
            span_as("gen_ai.usage.completion_tokens", Interp::Count),
            span_as("llm.token_count.completion", Interp::Count),
        ];
    cached_input_tokens: i64,
        "prompt tokens served from a cache",
        [
            span_as("gen_ai.usage.cache_read.input_tokens", Interp::Count),
            span_as("llm.token_count.prompt_details.cache_read", Interp::Count),
        ];
    tool_name: String,
        "tool invoked",
        [span("gen_ai.tool.name"), span("tool.name")];
    tool_call_id: String,
        "the model's id for the tool call",
        [span("gen_ai.tool.call.id"), span("tool.id")];
    retrieval_source: String,
        "index, store or API documents were retrieved from",
        [span("weft.retrieval.source"), span("gen_ai.data_source.id")];
    retrieved_document_ids: Vec<String>,
        "ids of the documents retrieved, in order",
        [
            span_as("gen_ai.retrieval.documents", Interp::DocumentIdsJson),
            span_as("retrieval.documents.N.document.id", Interp::DocumentIdsIndexed),
        ];
    identity: String,
        "the end user or principal the step ran for",
        [span("weft.identity"), span("enduser.id"), span("user.id")];
    workload_identity: String,
        "the workload (service account, SPIFFE id, ...) the step ran as",
        [span("weft.workload.id"), resource("weft.workload.id")];
    policy_name: String,
        "policy evaluated",
        [span("weft.policy.name"), span("gen_ai.security.policy.name")];
    policy_verdict: PolicyVerdict,
        "allow, deny or needs_approval",
        [
            span_as("weft.policy.verdict", Interp::Verdict),
            span_as("gen_ai.security.verdict", Interp::Verdict),
        ];
    approval_state: ApprovalState,
        "requested, granted or denied",
        [span_as("weft.approval.state", Interp::Approval)];
    approver: String,
        "who granted or denied the approval",
        [span("weft.approval.approver")];
    node: String,
        "GPU node or host that ran the step",
        [span("weft.node"), resource("host.name")];
    kv_cache_hit: bool,
        "whether the prompt prefix was in the KV cache",
        [span("weft.kv_cache.hit")];
    kv_cache_hit_ratio: f64,
        "share of prompt tokens served from the KV cache, 0..1",
        [span_as("weft.kv_cache.hit_ratio", Interp::Ratio)];
    kv_cache_prefix: String,
        "key of the prompt prefix the call's KV cache holds (a system prompt's hash, say): route advice's cache locality",
        [span("weft.kv_cache.prefix")];
    queue_wait_ns: i64,
        "time queued before the step ran, nanoseconds",
        [span_as("weft.queue.wait_ms", Interp::MillisToNanos)];
    time_to_first_token_ns: i64,
        "time to first token, nanoseconds",
        [
            span_as("weft.ttft_ms", Interp::MillisToNanos),
            span_as("gen_ai.response.time_to_first_chunk", Interp::SecondsToNanos),
        ];
    conversation_id: String,
        "conversation or session the step belongs to",
        [span("gen_ai.conversation.id"), span("session.id")];
    agent_name: String,
        "agent that ran the step",
        [span("gen_ai.agent.name"), span("agent.name")];
    cost: f64,
        "what the call cost, from the price table at ingest (`[prices]`), else as sent; null when the model has no price",
        [span("weft.cost")];
    requested_tool_call_ids: Vec<String>,
        "ids of the tool calls a model call asked for (its output messages' tool_call parts): lineage's evidence joins",
        [
            span_as("gen_ai.output.messages", Interp::ToolCallIdsJson),
            span_as(
                "llm.output_messages.N.message.tool_calls.M.tool_call.id",
                Interp::ToolCallIdsIndexed,
            ),
        ];
    approval_action: String,
        "the action an approval gates: a tool name, or a tool call id (an evidence join)",
        [span("weft.approval.action")];
    message_id: String,
        "id of the message a producer sent or a consumer received",
        [span("messaging.message.id")];
    messaging_operation: String,
        "messaging operation: create, send, receive, process, settle (older: publish, deliver)",
        [span("messaging.operation.type"), span("messaging.operation")];
    messaging_destination: String,
        "queue, topic or channel the message went through",
        [span("messaging.destination.name")];
}

/// The first key present decides; a wrongly typed value gives `Some(None)`.
fn first_present(
    ty: ColumnType,
    keys: &[Key],
    span_attrs: &[(String, AttrValue)],
    resource_attrs: &[(String, AttrValue)],
) -> Option<Option<Typed>> {
    for key in keys {
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
        if key.interp == Interp::ToolCallIdsIndexed {
            if let Some(ids) = indexed_tool_call_ids(attrs) {
                return Some(Some(Typed::List(ids)));
            }
            continue;
        }
        if let Some(value) = find(attrs, key.name) {
            return Some(interpret(ty, key.interp, value));
        }
    }
    None
}

fn interpret(ty: ColumnType, interp: Interp, value: &AttrValue) -> Option<Typed> {
    match interp {
        Interp::AsIs => as_type(ty, value),
        Interp::WeftKind => text(value).and_then(AiKind::parse).map(Typed::Kind),
        Interp::GenAiOperationKind => {
            text(value).map(|s| Typed::Kind(AiKind::from_gen_ai_operation(s)))
        }
        Interp::OpenInferenceKind => {
            text(value).map(|s| Typed::Kind(AiKind::from_openinference(s)))
        }
        Interp::TraceloopKind => text(value).map(|s| Typed::Kind(AiKind::from_traceloop(s))),
        Interp::MillisToNanos => number(value).and_then(|ms| duration_ns(ms * 1e6)),
        Interp::SecondsToNanos => number(value).and_then(|s| duration_ns(s * 1e9)),
        Interp::Count => number(value)
            .filter(|n| n.fract() == 0.0 && (0.0..=MAX_COUNT as f64).contains(n))
            .map(|n| Typed::Int(n as i64)),
        Interp::DocumentIdsJson => json_document_ids(value).map(Typed::List),
        Interp::DocumentIdsIndexed | Interp::ToolCallIdsIndexed => None,
        Interp::ToolCallIdsJson => json_tool_call_ids(value).map(Typed::List),
        Interp::Verdict => text(value)
            .and_then(PolicyVerdict::parse)
            .map(Typed::Verdict),
        Interp::Approval => text(value)
            .and_then(ApprovalState::parse)
            .map(Typed::Approval),
        Interp::Ratio => number(value)
            .filter(|r| (0.0..=1.0).contains(r))
            .map(Typed::Float),
        Interp::Implies(kind) => Some(Typed::Kind(kind)),
    }
}

fn text(value: &AttrValue) -> Option<&str> {
    match value {
        AttrValue::Str(s) => Some(s),
        _ => None,
    }
}

/// The largest token count a column takes from one span; larger (or
/// negative) values stay in `attributes` only. A sum over spans cannot then
/// overflow `i64` short of nine billion spans.
pub const MAX_COUNT: i64 = 1_000_000_000;

/// The longest duration (a year, in nanoseconds) a column takes from an
/// attribute; longer or negative ones stay in `attributes` only, so one bad
/// value cannot break the percentiles every scheduler reads.
pub const MAX_DURATION_NS: i64 = 366 * 24 * 3_600 * 1_000_000_000;

fn duration_ns(ns: f64) -> Option<Typed> {
    (0.0..=MAX_DURATION_NS as f64)
        .contains(&ns)
        .then(|| Typed::Int(ns.round() as i64))
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

/// `gen_ai.output.messages`: a JSON array of messages whose `parts` hold
/// `{"type": "tool_call", "id": ...}` (the GenAI conventions), or whose
/// `tool_calls` hold `{"id": ...}` (OpenAI's shape, which some instrumentations
/// copy). `None` when no message asked for a tool.
fn json_tool_call_ids(value: &AttrValue) -> Option<Vec<String>> {
    let json = match value {
        AttrValue::Str(s) => serde_json::from_str::<serde_json::Value>(s).ok()?,
        _ => return None,
    };
    let id = |part: &serde_json::Value| part.get("id")?.as_str().map(str::to_owned);
    let mut ids = Vec::new();
    for message in json.as_array()? {
        for part in message
            .get("parts")
            .and_then(|p| p.as_array())
            .into_iter()
            .flatten()
        {
            if part.get("type").and_then(|t| t.as_str()) == Some("tool_call") {
                ids.extend(id(part));
            }
        }
        for call in message
            .get("tool_calls")
            .and_then(|p| p.as_array())
            .into_iter()
            .flatten()
        {
            ids.extend(id(call));
        }
    }
    (!ids.is_empty()).then_some(ids)
}

/// OpenInference's `llm.output_messages.{N}.message.tool_calls.{M}.tool_call.id`,
/// ordered by N then M.
fn indexed_tool_call_ids(attrs: &[(String, AttrValue)]) -> Option<Vec<String>> {
    let mut found: Vec<((u32, u32), String)> = attrs
        .iter()
        .filter_map(|(k, v)| {
            let rest = k.strip_prefix("llm.output_messages.")?;
            let (n, rest) = rest.split_once(".message.tool_calls.")?;
            let m = rest.strip_suffix(".tool_call.id")?;
            Some(((n.parse().ok()?, m.parse().ok()?), v.to_text()))
        })
        .collect();
    if found.is_empty() {
        return None;
    }
    found.sort_by_key(|(n, _)| *n);
    Some(found.into_iter().map(|(_, id)| id).collect())
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
    fn genai_spans_without_an_operation_name_get_a_kind() {
        let kind = |attrs: &[(String, AttrValue)]| extract(attrs, &[]).ai_kind;
        // What the OpenAI instrumentations send before the operation name
        // became required: a provider and a model.
        assert_eq!(
            kind(&[
                s("gen_ai.system", "openai"),
                s("gen_ai.request.model", "gpt-4o")
            ]),
            Some(AiKind::Llm)
        );
        assert_eq!(
            kind(&[s("gen_ai.provider.name", "anthropic")]),
            Some(AiKind::Llm)
        );
        assert_eq!(
            kind(&[
                s("gen_ai.system", "openai"),
                s("gen_ai.tool.name", "search")
            ]),
            Some(AiKind::Tool),
            "a tool name says more than the provider"
        );
        assert_eq!(
            kind(&[
                s("gen_ai.system", "openai"),
                s("gen_ai.request.encoding_formats", "float")
            ]),
            Some(AiKind::Embedding)
        );
        // An explicit operation still decides.
        assert_eq!(
            kind(&[
                s("gen_ai.operation.name", "embeddings"),
                s("gen_ai.request.model", "m")
            ]),
            Some(AiKind::Embedding)
        );
        assert_eq!(kind(&[s("http.route", "/chat")]), None, "not a GenAI span");
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
    fn tool_calls_a_model_asked_for() {
        // The GenAI conventions' parts, and OpenAI's tool_calls shape.
        let ai = extract(
            &[s(
                "gen_ai.output.messages",
                r#"[{"role":"assistant","parts":[{"type":"text","content":"ok"},
                    {"type":"tool_call","id":"call_1","name":"refund"},
                    {"type":"tool_call","id":"call_2","name":"notify"}]},
                   {"role":"assistant","tool_calls":[{"id":"call_3","type":"function"}]}]"#,
            )],
            &[],
        );
        assert_eq!(
            ai.requested_tool_call_ids,
            Some(vec!["call_1".into(), "call_2".into(), "call_3".into()])
        );
        // No tool call asked for: null, not an empty list; bad JSON: null.
        for text in [
            r#"[{"role":"assistant","parts":[{"type":"text"}]}]"#,
            "not json",
        ] {
            let ai = extract(&[s("gen_ai.output.messages", text)], &[]);
            assert_eq!(ai.requested_tool_call_ids, None, "{text}");
        }
        // OpenInference's flattened keys, in order.
        let ai = extract(
            &[
                s(
                    "llm.output_messages.0.message.tool_calls.1.tool_call.id",
                    "b",
                ),
                s(
                    "llm.output_messages.0.message.tool_calls.0.tool_call.id",
                    "a",
                ),
                s(
                    "llm.output_messages.1.message.tool_calls.0.tool_call.id",
                    "c",
                ),
            ],
            &[],
        );
        assert_eq!(
            ai.requested_tool_call_ids,
            Some(vec!["a".into(), "b".into(), "c".into()])
        );
        let ai = extract(
            &[
                s("messaging.operation", "publish"),
                s("messaging.message.id", "m-1"),
            ],
            &[],
        );
        assert_eq!(ai.messaging_operation.as_deref(), Some("publish"));
        assert_eq!(ai.message_id.as_deref(), Some("m-1"));
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
