//! What decoding an OTLP request will allocate, read from its bytes before it
//! is decoded, so the request is charged against the in-flight budget first.
//!
//! The wire size alone says little: a two-byte empty span (`12 00`) decodes
//! into a whole `Span` struct, so a 4 MiB message of them would take about a
//! gigabyte. For protobuf, [`protobuf`] walks the message by the OTLP schema
//! (an explicit stack, no recursion, at most prost's nesting depth) and adds,
//! per message element, its struct's size twice (a `Vec` may hold twice what
//! it uses) and per string or bytes field its length. For JSON, [`json`]
//! bounds the same from the number of objects and arrays in the body.

use std::mem::size_of;

use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

/// Which OTLP message a stretch of bytes is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    TracesRequest,
    LogsRequest,
    ResourceSpans,
    ResourceLogs,
    Resource,
    ScopeSpans,
    ScopeLogs,
    Scope,
    Span,
    Event,
    Link,
    Status,
    LogRecord,
    KeyValue,
    AnyValue,
    ArrayValue,
    KeyValueList,
}

/// What a length-delimited field holds.
enum Field {
    Message(Kind),
    /// A string or bytes: its length is allocated.
    Bytes,
    /// Not kept by the decoder (unknown fields are skipped).
    Skipped,
}

impl Kind {
    fn size(self) -> usize {
        match self {
            Kind::TracesRequest | Kind::LogsRequest => 0,
            Kind::ResourceSpans => size_of::<ResourceSpans>(),
            Kind::ResourceLogs => size_of::<ResourceLogs>(),
            Kind::Resource => size_of::<Resource>(),
            Kind::ScopeSpans => size_of::<ScopeSpans>(),
            Kind::ScopeLogs => size_of::<ScopeLogs>(),
            Kind::Scope => size_of::<InstrumentationScope>(),
            Kind::Span => size_of::<Span>(),
            Kind::Event => size_of::<Event>(),
            Kind::Link => size_of::<Link>(),
            Kind::Status => size_of::<Status>(),
            Kind::LogRecord => size_of::<LogRecord>(),
            Kind::KeyValue => size_of::<KeyValue>(),
            Kind::AnyValue => size_of::<AnyValue>(),
            Kind::ArrayValue => size_of::<ArrayValue>(),
            Kind::KeyValueList => size_of::<KeyValueList>(),
        }
    }

    /// The OTLP schema: what field `number` of this message holds.
    fn field(self, number: u64) -> Field {
        use Field::{Bytes, Message, Skipped};
        match (self, number) {
            (Kind::TracesRequest, 1) => Message(Kind::ResourceSpans),
            (Kind::LogsRequest, 1) => Message(Kind::ResourceLogs),
            (Kind::ResourceSpans | Kind::ResourceLogs, 1) => Message(Kind::Resource),
            (Kind::ResourceSpans, 2) => Message(Kind::ScopeSpans),
            (Kind::ResourceLogs, 2) => Message(Kind::ScopeLogs),
            (Kind::ResourceSpans | Kind::ResourceLogs | Kind::ScopeSpans | Kind::ScopeLogs, 3) => {
                Bytes
            }
            (Kind::Resource, 1) => Message(Kind::KeyValue),
            (Kind::ScopeSpans | Kind::ScopeLogs, 1) => Message(Kind::Scope),
            (Kind::ScopeSpans, 2) => Message(Kind::Span),
            (Kind::ScopeLogs, 2) => Message(Kind::LogRecord),
            (Kind::Scope, 1 | 2) => Bytes,
            (Kind::Scope, 3) => Message(Kind::KeyValue),
            (Kind::Span, 1..=5) => Bytes,
            (Kind::Span, 9) => Message(Kind::KeyValue),
            (Kind::Span, 11) => Message(Kind::Event),
            (Kind::Span, 13) => Message(Kind::Link),
            (Kind::Span, 15) => Message(Kind::Status),
            (Kind::Event, 2) => Bytes,
            (Kind::Event, 3) => Message(Kind::KeyValue),
            (Kind::Link, 1..=3) => Bytes,
            (Kind::Link, 4) => Message(Kind::KeyValue),
            (Kind::Status, 2) => Bytes,
            (Kind::LogRecord, 3 | 9 | 10 | 12) => Bytes,
            (Kind::LogRecord, 5) => Message(Kind::AnyValue),
            (Kind::LogRecord, 6) => Message(Kind::KeyValue),
            (Kind::KeyValue, 1) => Bytes,
            (Kind::KeyValue, 2) => Message(Kind::AnyValue),
            (Kind::AnyValue, 1 | 7) => Bytes,
            (Kind::AnyValue, 5) => Message(Kind::ArrayValue),
            (Kind::AnyValue, 6) => Message(Kind::KeyValueList),
            (Kind::ArrayValue, 1) => Message(Kind::AnyValue),
            (Kind::KeyValueList, 1) => Message(Kind::KeyValue),
            _ => Skipped,
        }
    }
}

/// prost's own nesting limit: deeper messages fail to decode anyway.
const MAX_DEPTH: usize = 100;

fn varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// The bytes decoding `bytes` as the protobuf message `root` will allocate
/// (an upper bound). Malformed input is charged what was read up to the
/// fault plus its own length: the decoder refuses it, but may allocate first.
pub(crate) fn protobuf(root: Kind, bytes: &[u8]) -> usize {
    let mut cost = 0usize;
    // (message kind, where it ends)
    let mut stack: Vec<(Kind, usize)> = vec![(root, bytes.len())];
    let mut at = 0usize;
    while let Some(&(kind, end)) = stack.last() {
        if at >= end {
            stack.pop();
            continue;
        }
        let Some(tag) = varint(bytes, &mut at) else {
            return cost.saturating_add(bytes.len());
        };
        let skipped = match tag & 7 {
            0 => varint(bytes, &mut at).map(|_| ()),
            1 => (at + 8 <= end).then(|| at += 8),
            5 => (at + 4 <= end).then(|| at += 4),
            2 => {
                let Some(len) = varint(bytes, &mut at).and_then(|l| usize::try_from(l).ok()) else {
                    return cost.saturating_add(bytes.len());
                };
                if at.checked_add(len).is_none_or(|stop| stop > end) {
                    return cost.saturating_add(bytes.len());
                }
                match kind.field(tag >> 3) {
                    Field::Message(child) if stack.len() < MAX_DEPTH => {
                        cost = cost.saturating_add(2 * child.size());
                        stack.push((child, at + len));
                    }
                    Field::Message(_) => return cost.saturating_add(bytes.len()),
                    Field::Bytes => {
                        cost = cost.saturating_add(len);
                        at += len;
                    }
                    Field::Skipped => at += len,
                }
                Some(())
            }
            _ => None,
        };
        if skipped.is_none() {
            return cost.saturating_add(bytes.len());
        }
    }
    cost
}

/// A message of no schema here (metrics, which are answered, not kept):
/// every element takes at least two bytes and at most twice the largest
/// struct, so the bound is coarse.
pub(crate) fn protobuf_unknown(bytes: &[u8]) -> usize {
    bytes.len().saturating_mul(largest_struct())
}

fn largest_struct() -> usize {
    [
        Kind::ResourceSpans,
        Kind::ResourceLogs,
        Kind::Resource,
        Kind::ScopeSpans,
        Kind::ScopeLogs,
        Kind::Scope,
        Kind::Span,
        Kind::Event,
        Kind::Link,
        Kind::Status,
        Kind::LogRecord,
        Kind::KeyValue,
        Kind::AnyValue,
        Kind::ArrayValue,
        Kind::KeyValueList,
    ]
    .into_iter()
    .map(Kind::size)
    .max()
    .unwrap_or(0)
}

/// The struct a JSON object under `key` becomes (OTLP/JSON's field names;
/// the largest one for a key it does not know).
fn json_kind(key: &[u8]) -> usize {
    let kind = match key {
        b"resourceSpans" => Kind::ResourceSpans,
        b"resourceLogs" => Kind::ResourceLogs,
        b"resource" => Kind::Resource,
        b"scopeSpans" => Kind::ScopeSpans,
        b"scopeLogs" => Kind::ScopeLogs,
        b"scope" => Kind::Scope,
        b"spans" => Kind::Span,
        b"events" => Kind::Event,
        b"links" => Kind::Link,
        b"status" => Kind::Status,
        b"logRecords" => Kind::LogRecord,
        b"attributes" => Kind::KeyValue,
        b"value" | b"body" => Kind::AnyValue,
        b"arrayValue" => Kind::ArrayValue,
        b"kvlistValue" => Kind::KeyValueList,
        // `values` holds AnyValues or KeyValues; anything else (metrics),
        // the largest.
        _ => return largest_struct(),
    };
    kind.size()
}

/// An upper bound on what decoding the OTLP/JSON `body` allocates: its text
/// twice (strings decoded, and serde_json's work), plus per object the struct
/// it becomes — told by the key it sits under — twice (it sits in a `Vec`).
/// One pass over the bytes with a stack of array keys; no recursion.
pub(crate) fn json(body: &[u8]) -> usize {
    let mut cost = body.len().saturating_mul(2);
    // The key of each open array or object, innermost last.
    let mut keys: Vec<&[u8]> = Vec::new();
    let mut last_string: &[u8] = &[];
    let mut key: &[u8] = &[];
    let mut at = 0;
    while at < body.len() {
        match body[at] {
            b'"' => {
                let start = at + 1;
                at = start;
                while at < body.len() && body[at] != b'"' {
                    at += if body[at] == b'\\' { 2 } else { 1 };
                }
                last_string = &body[start..at.min(body.len())];
            }
            b':' => key = last_string,
            b'[' => {
                keys.push(key);
            }
            b'{' => {
                // In an array, the array's key; after a colon, that key.
                let under = if key.is_empty() {
                    keys.last().copied().unwrap_or_default()
                } else {
                    key
                };
                if !under.is_empty() {
                    cost = cost.saturating_add(2 * json_kind(under));
                }
                keys.push(under);
                key = &[];
            }
            b']' | b'}' => {
                keys.pop();
                key = &[];
            }
            b',' => key = &[],
            _ => {}
        }
        at += 1;
    }
    cost
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::ExportTraceServiceRequest;
    use crate::otlp::normalise::tests::{good_span, request};
    use prost::Message;

    #[test]
    fn empty_spans_cost_their_structs_not_their_two_bytes() {
        // One resource, one scope, then 10,000 empty spans (`12 00` each).
        let mut scope = Vec::new();
        for _ in 0..10_000 {
            scope.extend_from_slice(&[0x12, 0x00]);
        }
        let mut resource = vec![0x12];
        prost::encoding::encode_varint(scope.len() as u64, &mut resource);
        resource.extend_from_slice(&scope);
        let mut body = vec![0x0a];
        prost::encoding::encode_varint(resource.len() as u64, &mut body);
        body.extend_from_slice(&resource);
        let decoded = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
        assert_eq!(decoded.resource_spans[0].scope_spans[0].spans.len(), 10_000);
        let cost = protobuf(Kind::TracesRequest, &body);
        assert!(cost >= 10_000 * size_of::<Span>(), "{cost}");
        assert!(cost > 50 * body.len(), "{cost} for {} bytes", body.len());
    }

    #[test]
    fn strings_are_charged_their_length_once() {
        let mut span = good_span(1);
        span.name = "n".repeat(1 << 20);
        let body = request(vec![span]).encode_to_vec();
        let cost = protobuf(Kind::TracesRequest, &body);
        assert!(cost >= 1 << 20, "{cost}");
        assert!(cost < (1 << 20) + 16 * 1024, "{cost}");
    }

    #[test]
    fn malformed_input_is_charged_not_trusted() {
        // A length running past the end, a group wire type, a bare tag.
        for body in [&[0x0a, 0xff, 0x01, 0x00][..], &[0x0b, 0x00], &[0x0a]] {
            assert!(protobuf(Kind::TracesRequest, body) >= body.len());
        }
        // Nesting past prost's limit: array in array in array …
        let mut value = Vec::new();
        for _ in 0..500 {
            let mut array = vec![0x0a];
            prost::encoding::encode_varint(value.len() as u64, &mut array);
            array.extend_from_slice(&value);
            let mut outer = vec![0x2a];
            prost::encoding::encode_varint(array.len() as u64, &mut outer);
            outer.extend_from_slice(&array);
            value = outer;
        }
        assert!(protobuf(Kind::AnyValue, &value) >= value.len());
    }

    #[test]
    fn json_objects_are_charged_as_the_structs_they_become() {
        let spans = vec!["{}"; 1000].join(",");
        let body = format!(r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{spans}]}}]}}]}}"#);
        assert!(json(body.as_bytes()) >= 2000 * size_of::<Span>());
        // Attributes are charged as KeyValues and AnyValues, not as spans.
        let attribute = r#"{"key":"k","value":{"stringValue":"v"}}"#;
        let attributes = vec![attribute; 1000].join(",");
        let body =
            format!(r#"{{"resourceSpans":[{{"resource":{{"attributes":[{attributes}]}}}}]}}"#);
        let cost = json(body.as_bytes());
        let per_attribute = 2 * (size_of::<KeyValue>() + size_of::<AnyValue>());
        assert!(cost >= 1000 * per_attribute, "{cost}");
        assert!(cost < 1000 * per_attribute + 4 * body.len(), "{cost}");
        // A quote or brace inside a string is text.
        let text = br#"{"a":"{\"{"}"#;
        assert_eq!(json(text), 2 * text.len());
    }
}
