//! Attributes as they arrived (typed as OTLP sends them) and the keys only
//! the server writes. Below `conventions` (which reads AI columns from
//! attributes) and `span` (which holds them), so neither imports the other.

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
