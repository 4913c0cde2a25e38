//! [`Span`]: one normalised span, the unit every stage after decoding handles.

use crate::conventions::AiFields;
use crate::ids::{SpanId, TraceId};

/// An attribute value, typed as OTLP sends it.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Str(String),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(Vec<u8>),
    Array(Vec<AttrValue>),
    KvList(Vec<(String, AttrValue)>),
    /// An `AnyValue` with no value set.
    Empty,
}

/// Ordered key/value attributes as they arrived.
pub type Attributes = Vec<(String, AttrValue)>;

/// Span attributes only the server writes, at ingest (a client's own are
/// dropped): whether the ingest token that sent the span is bound to its
/// service (`verified` / `unverified`; absent when authentication is off),
/// and that token's name.
pub const ORIGIN_KEY: &str = "weft.origin";
/// The attribute of an event row (a log record of a span) holding its body.
pub const EVENT_BODY_KEY: &str = "event.body";
pub const ORIGIN_TOKEN_KEY: &str = "weft.origin.token";
/// The tenant of the ingest token that sent the span, written by the server
/// (a client's own value is dropped); every read by a tenant's token sees
/// only spans with its tenant here.
pub const TENANT_KEY: &str = "weft.tenant";

impl AttrValue {
    /// The text stored in the `attributes` map column: strings as they are,
    /// scalars in their usual text form, arrays and key/value lists as JSON.
    pub fn to_text(&self) -> String {
        match self {
            AttrValue::Str(s) => s.clone(),
            AttrValue::Bool(b) => b.to_string(),
            AttrValue::Int(i) => i.to_string(),
            AttrValue::Double(d) => d.to_string(),
            AttrValue::Bytes(b) => hex::encode(b),
            AttrValue::Empty => String::new(),
            AttrValue::Array(_) | AttrValue::KvList(_) => self.to_json().to_string(),
        }
    }

    /// The value as plain JSON (not OTLP's `AnyValue` wrapping).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            AttrValue::Str(s) => Value::String(s.clone()),
            AttrValue::Bool(b) => Value::Bool(*b),
            AttrValue::Int(i) => Value::from(*i),
            AttrValue::Double(d) => Value::from(*d),
            AttrValue::Bytes(b) => Value::String(hex::encode(b)),
            AttrValue::Empty => Value::Null,
            AttrValue::Array(items) => Value::Array(items.iter().map(Self::to_json).collect()),
            AttrValue::KvList(kvs) => {
                Value::Object(kvs.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
            }
        }
    }
}

/// Looks up the first attribute with `key`.
pub fn find<'a>(attrs: &'a [(String, AttrValue)], key: &str) -> Option<&'a AttrValue> {
    attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// OTLP span kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpanKind {
    Unspecified,
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

impl SpanKind {
    /// From the OTLP enum number; unknown numbers are `Unspecified`.
    pub fn from_otlp(n: i32) -> Self {
        match n {
            1 => SpanKind::Internal,
            2 => SpanKind::Server,
            3 => SpanKind::Client,
            4 => SpanKind::Producer,
            5 => SpanKind::Consumer,
            _ => SpanKind::Unspecified,
        }
    }

    /// The OTLP enum number.
    pub fn to_otlp(self) -> i32 {
        match self {
            SpanKind::Unspecified => 0,
            SpanKind::Internal => 1,
            SpanKind::Server => 2,
            SpanKind::Client => 3,
            SpanKind::Producer => 4,
            SpanKind::Consumer => 5,
        }
    }

    /// The text stored in the `kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            SpanKind::Unspecified => "unspecified",
            SpanKind::Internal => "internal",
            SpanKind::Server => "server",
            SpanKind::Client => "client",
            SpanKind::Producer => "producer",
            SpanKind::Consumer => "consumer",
        }
    }

    /// Parses the text stored in the `kind` column.
    pub fn parse(s: &str) -> Self {
        match s {
            "internal" => SpanKind::Internal,
            "server" => SpanKind::Server,
            "client" => SpanKind::Client,
            "producer" => SpanKind::Producer,
            "consumer" => SpanKind::Consumer,
            _ => SpanKind::Unspecified,
        }
    }
}

/// OTLP status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusCode {
    Unset,
    Ok,
    Error,
}

impl StatusCode {
    /// From the OTLP enum number; unknown numbers are `Unset`.
    pub fn from_otlp(n: i32) -> Self {
        match n {
            1 => StatusCode::Ok,
            2 => StatusCode::Error,
            _ => StatusCode::Unset,
        }
    }

    /// The OTLP enum number.
    pub fn to_otlp(self) -> i32 {
        match self {
            StatusCode::Unset => 0,
            StatusCode::Ok => 1,
            StatusCode::Error => 2,
        }
    }

    /// The text stored in the `status_code` column.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusCode::Unset => "unset",
            StatusCode::Ok => "ok",
            StatusCode::Error => "error",
        }
    }

    /// Parses the text stored in the `status_code` column.
    pub fn parse(s: &str) -> Self {
        match s {
            "ok" => StatusCode::Ok,
            "error" => StatusCode::Error,
            _ => StatusCode::Unset,
        }
    }
}

impl serde::Serialize for StatusCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for StatusCode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Ok(StatusCode::parse(&text))
    }
}

/// A timed event inside a span.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanEvent {
    pub time_unix_nano: i64,
    pub name: String,
    pub attributes: Attributes,
}

/// A link from a span to another span, possibly in another trace.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanLink {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub trace_state: String,
    pub attributes: Attributes,
}

/// One validated, normalised span with its resource and scope folded in.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent_span_id: Option<SpanId>,
    pub trace_state: String,
    pub name: String,
    pub kind: SpanKind,
    /// Nanoseconds since the Unix epoch.
    pub start_time_unix_nano: i64,
    /// Nanoseconds since the Unix epoch; never before the start.
    pub end_time_unix_nano: i64,
    pub status_code: StatusCode,
    pub status_message: String,
    pub service_name: Option<String>,
    /// Shared by every span of one resource.
    pub resource_attributes: std::sync::Arc<Attributes>,
    pub scope_name: String,
    pub scope_version: String,
    pub attributes: Attributes,
    pub events: Vec<SpanEvent>,
    pub links: Vec<SpanLink>,
    pub ai: AiFields,
}

impl Span {
    /// End minus start, in nanoseconds (validated to be non-negative).
    pub fn duration_ns(&self) -> i64 {
        self.end_time_unix_nano
            .saturating_sub(self.start_time_unix_nano)
    }
}
