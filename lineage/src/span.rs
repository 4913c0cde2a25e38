//! [`LineageSpan`]: one span as lineage sees it — plain data that whoever
//! fetches spans (the query engine, a test, a benchmark) fills in.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use weft_schemas::{AiFields, ORIGIN_KEY, SpanId, SparseAi, StatusCode, TENANT_KEY, TraceId};

/// What lineage knows of one span's AI step: every typed AI column of the
/// schema ([`AiFields`], so a column added there reaches lineage with no
/// change here; kept sparse, [`SparseAi`], as a workflow has a million
/// spans and each sets few columns), and the `weft.*` keys lineage reads
/// that are not columns. As JSON, flat: one key per column present, named
/// as the column.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StepAi {
    #[serde(flatten)]
    pub fields: SparseAi,
    /// `weft.tool.effect`: `write` for tools that change something.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_effect: Option<Arc<str>>,
    /// The tenant whose token sent the span ([`TENANT_KEY`]): evidence
    /// never joins two tenants' spans.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<Arc<str>>,
    /// Whether the ingest token that sent the span is bound to its service
    /// ([`ORIGIN_KEY`]); `None` when authentication was off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin_verified: Option<bool>,
}

/// The attribute that marks a tool call as changing something (`write`).
pub const TOOL_EFFECT_KEY: &str = "weft.tool.effect";
impl StepAi {
    /// From a span's typed AI columns, and `attribute` to read the `weft.*`
    /// keys lineage uses that are not columns ([`TOOL_EFFECT_KEY`],
    /// [`TENANT_KEY`], [`ORIGIN_KEY`]); a loader of many spans hands out
    /// one shared copy of each distinct value.
    pub fn from_fields(
        fields: AiFields,
        mut attribute: impl FnMut(&str) -> Option<Arc<str>>,
    ) -> Self {
        Self {
            fields: fields.into(),
            tool_effect: attribute(TOOL_EFFECT_KEY),
            tenant: attribute(TENANT_KEY),
            origin_verified: match attribute(ORIGIN_KEY).as_deref() {
                Some("verified") => Some(true),
                Some("unverified") => Some(false),
                _ => None,
            },
        }
    }
}

/// One span as lineage sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineageSpan {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_span_id: Option<SpanId>,
    /// Shared, not copied, by every step of the summary that names it.
    pub name: Arc<str>,
    /// The OTLP span kind, when it says more than `internal`: `server`,
    /// `client`, `producer` or `consumer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<Arc<str>>,
    /// Shared by the spans of one service (a loader interns it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<Arc<str>>,
    pub start_ns: i64,
    pub end_ns: i64,
    pub status: StatusCode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    /// Spans this one follows from: `(trace, span)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<(TraceId, SpanId)>,
    #[serde(flatten)]
    pub ai: StepAi,
    /// Log records of this span (GenAI events such as `gen_ai.user.message`),
    /// in time order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<StepEvent>,
}

/// An event logged for a span (an OTLP log record carrying its ids).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepEvent {
    pub time_ns: i64,
    pub name: String,
    /// The record's body (a message, for GenAI events), as text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

impl AsRef<LineageSpan> for LineageSpan {
    fn as_ref(&self) -> &LineageSpan {
        self
    }
}

/// Which span of a workflow: `trace_id:span_id` as text, ids as bytes until
/// shown (a summary names hundreds of thousands of steps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanKey {
    pub trace_id: TraceId,
    pub span_id: SpanId,
}

impl std::fmt::Display for SpanKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.trace_id, self.span_id)
    }
}

impl std::str::FromStr for SpanKey {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (trace, span) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?} is not trace_id:span_id"))?;
        Ok(Self {
            trace_id: trace.parse().map_err(|e| format!("{e}"))?,
            span_id: span.parse().map_err(|e| format!("{e}"))?,
        })
    }
}

impl Serialize for SpanKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SpanKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl LineageSpan {
    pub fn duration_ns(&self) -> i64 {
        self.end_ns.saturating_sub(self.start_ns)
    }

    /// Which span this is, as a [`SpanKey`].
    pub fn span_key(&self) -> SpanKey {
        SpanKey {
            trace_id: self.trace_id,
            span_id: self.span_id,
        }
    }

    /// `trace_id:span_id`, unique within a workflow.
    pub fn key(&self) -> String {
        format!("{}:{}", self.trace_id, self.span_id)
    }
}
