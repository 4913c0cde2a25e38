//! What decoding an OTLP request will allocate, read from its bytes before it
//! is decoded, so the request is charged against the in-flight budget first.
//!
//! The wire size alone says little: a two-byte empty span (`12 00`) decodes
//! into a whole `Span` struct, so a 4 MiB message of them would take about a
//! gigabyte. For protobuf, [`protobuf`] walks the message by the OTLP schema
//! (an explicit stack, no recursion, at most prost's nesting depth) and adds,
//! per message element, what its struct takes in a growing `Vec`
//! (`element_cost`), and per string or bytes field its length. For JSON,
//! [`json`] bounds the same from the objects and arrays in the body, each
//! charged as the struct its key says. The tests check the bound against
//! what decoding really allocates (`allocation-counter`) on generated
//! requests.

use std::mem::size_of;

use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

/// Which OTLP message a stretch of bytes is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    TracesRequest,
    LogsRequest,
    ResourceSpans,
    ResourceLogs,
    Resource,
    EntityRef,
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
    /// One string of a repeated string field: its length, and its `String`
    /// in a `Vec` (twice, for the slack).
    RepeatedString,
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
            Kind::EntityRef => size_of::<EntityRef>(),
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
        use Field::{Bytes, Message, RepeatedString, Skipped};
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
            (Kind::Resource, 3) => Message(Kind::EntityRef),
            (Kind::EntityRef, 1 | 2) => Bytes,
            (Kind::EntityRef, 3 | 4) => RepeatedString,
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

/// What one element of a repeated field costs, as the `Vec` holding it
/// grows by pushes: three slots (growing from `c` to `2c` holds both
/// buffers at once, `3c` for `c + 1` elements), and for a field's first
/// element four more (a `Vec` of small items starts at four). The current
/// message (`stack`'s top) remembers which fields it has met. A singular
/// message field is charged the same; it sits in its parent, so that is
/// more than it takes.
fn element_cost(stack: &mut [(Kind, usize, u64)], number: u64, size: usize) -> usize {
    let mut cost = 3 * size;
    if let Some((_, _, met)) = stack.last_mut() {
        let bit = 1u64 << number.min(63);
        if *met & bit == 0 {
            *met |= bit;
            cost += 4 * size;
        }
    }
    cost
}

/// The bytes decoding `bytes` as the protobuf message `root` will allocate
/// (an upper bound). Malformed input is charged what was read up to the
/// fault plus its own length: the decoder refuses it, but may allocate first.
pub fn protobuf(root: Kind, bytes: &[u8]) -> usize {
    let mut cost = 0usize;
    // (message kind, where it ends, the repeated fields met so far: bit n
    // for field n; OTLP's numbers are small)
    let mut stack: Vec<(Kind, usize, u64)> = vec![(root, bytes.len(), 0)];
    let mut at = 0usize;
    while let Some(&(kind, end, _)) = stack.last() {
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
                let number = tag >> 3;
                match kind.field(number) {
                    Field::Message(child) if stack.len() < MAX_DEPTH => {
                        cost = cost.saturating_add(element_cost(&mut stack, number, child.size()));
                        stack.push((child, at + len, 0));
                    }
                    Field::Message(_) => return cost.saturating_add(bytes.len()),
                    Field::Bytes => {
                        cost = cost.saturating_add(len);
                        at += len;
                    }
                    Field::RepeatedString => {
                        let element = element_cost(&mut stack, number, size_of::<String>());
                        cost = cost.saturating_add(len + element);
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
pub fn protobuf_unknown(bytes: &[u8]) -> usize {
    bytes.len().saturating_mul(largest_struct())
}

fn largest_struct() -> usize {
    [
        Kind::ResourceSpans,
        Kind::ResourceLogs,
        Kind::Resource,
        Kind::EntityRef,
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
        b"entityRefs" => Kind::EntityRef,
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
/// it becomes — told by the key it sits under — three times, and per array
/// four of its items (as `element_cost` for protobuf). One pass over the
/// bytes with a stack of keys; no recursion.
pub fn json(body: &[u8]) -> usize {
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
                // The Vec of the array's items starts at four.
                if !key.is_empty() {
                    cost = cost.saturating_add(4 * json_kind(key));
                }
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
                    cost = cost.saturating_add(3 * json_kind(under));
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
    use crate::normalise::tests::{good_span, request};
    use crate::{ExportLogsServiceRequest, ExportTraceServiceRequest};
    use prost::Message;

    /// The peak of heap bytes this thread held at once while `f` ran
    /// (`allocation-counter` counts per thread, so other tests do not count).
    fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
        let mut out = None;
        let info = allocation_counter::measure(|| out = Some(f()));
        (
            out.expect("the closure ran"),
            usize::try_from(info.bytes_max).unwrap_or(usize::MAX),
        )
    }

    /// A small deterministic generator (xorshift), for request shapes.
    struct Shapes(u64);

    impl Shapes {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n.max(1)
        }

        fn text(&mut self) -> String {
            "x".repeat(self.below(40) as usize)
        }

        fn value(&mut self, depth: u32) -> AnyValue {
            use opentelemetry_proto::tonic::common::v1::any_value::Value;
            let value = match self.below(if depth == 0 { 5 } else { 7 }) {
                0 => Some(Value::StringValue(self.text())),
                1 => Some(Value::IntValue(self.below(1 << 40) as i64)),
                2 => Some(Value::BytesValue(self.text().into_bytes())),
                3 => Some(Value::BoolValue(true)),
                4 => None,
                5 => Some(Value::ArrayValue(ArrayValue {
                    values: (0..self.below(6)).map(|_| self.value(depth - 1)).collect(),
                })),
                _ => Some(Value::KvlistValue(KeyValueList {
                    values: self.attributes(depth - 1),
                })),
            };
            AnyValue { value }
        }

        fn attributes(&mut self, depth: u32) -> Vec<KeyValue> {
            (0..self.below(12))
                .map(|_| KeyValue {
                    key: self.text(),
                    value: Some(self.value(depth)),
                    ..Default::default()
                })
                .collect()
        }

        fn logs(&mut self) -> ExportLogsServiceRequest {
            let records = (0..self.below(40))
                .map(|_| LogRecord {
                    event_name: self.text(),
                    severity_text: self.text(),
                    body: Some(self.value(3)),
                    attributes: self.attributes(2),
                    trace_id: vec![1; 16],
                    span_id: vec![2; 8],
                    ..Default::default()
                })
                .collect();
            ExportLogsServiceRequest {
                resource_logs: vec![ResourceLogs {
                    resource: Some(Resource {
                        attributes: self.attributes(1),
                        ..Default::default()
                    }),
                    scope_logs: vec![ScopeLogs {
                        log_records: records,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            }
        }

        fn request(&mut self) -> ExportTraceServiceRequest {
            let mut spans = Vec::new();
            for i in 0..self.below(40) {
                let mut span = good_span(i as u8 + 1);
                span.name = self.text();
                span.trace_state = self.text();
                span.attributes = self.attributes(3);
                span.events = (0..self.below(4))
                    .map(|_| Event {
                        name: self.text(),
                        attributes: self.attributes(1),
                        ..Default::default()
                    })
                    .collect();
                span.links = (0..self.below(3))
                    .map(|_| Link {
                        trace_id: vec![3; 16],
                        span_id: vec![4; 8],
                        attributes: self.attributes(1),
                        ..Default::default()
                    })
                    .collect();
                spans.push(span);
            }
            let mut request = request(spans);
            if let Some(resource) = request.resource_spans[0].resource.as_mut() {
                resource.attributes.extend(self.attributes(2));
            }
            request
        }
    }

    #[test]
    fn the_charge_covers_what_decoding_allocates() {
        let mut shapes = Shapes(0x9e37_79b9_7f4a_7c15);
        for _ in 0..200 {
            let request = shapes.request();
            let body = request.encode_to_vec();
            let (decoded, peak) =
                peak_during(|| ExportTraceServiceRequest::decode(body.as_slice()).unwrap());
            assert_eq!(decoded, request);
            let charged = protobuf(Kind::TracesRequest, &body);
            assert!(
                peak <= charged,
                "protobuf: {peak} allocated, {charged} charged"
            );

            let json = serde_json::to_vec(&request).unwrap();
            let (decoded, peak) =
                peak_during(|| serde_json::from_slice::<ExportTraceServiceRequest>(&json).unwrap());
            assert_eq!(decoded.resource_spans.len(), request.resource_spans.len());
            let charged = super::json(&json);
            assert!(peak <= charged, "json: {peak} allocated, {charged} charged");

            let logs = shapes.logs();
            let body = logs.encode_to_vec();
            let (decoded, peak) =
                peak_during(|| ExportLogsServiceRequest::decode(body.as_slice()).unwrap());
            assert_eq!(decoded, logs);
            let charged = protobuf(Kind::LogsRequest, &body);
            assert!(peak <= charged, "logs: {peak} allocated, {charged} charged");
        }
    }

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
        let (decoded, peak) =
            peak_during(|| ExportTraceServiceRequest::decode(body.as_slice()).unwrap());
        assert_eq!(decoded.resource_spans[0].scope_spans[0].spans.len(), 10_000);
        let cost = protobuf(Kind::TracesRequest, &body);
        assert!(peak <= cost, "{peak} allocated, {cost} charged");
        assert!(cost >= 10_000 * size_of::<Span>(), "{cost}");
        assert!(cost > 50 * body.len(), "{cost} for {} bytes", body.len());
    }

    #[test]
    fn every_repeated_field_is_charged_per_element() {
        use opentelemetry_proto::tonic::common::v1::EntityRef;
        use opentelemetry_proto::tonic::resource::v1::Resource;
        // A resource of 5,000 empty entity refs, one of 5,000 empty id keys.
        let mut refs = request(vec![]);
        refs.resource_spans[0].resource = Some(Resource {
            entity_refs: vec![EntityRef::default(); 5_000],
            ..Default::default()
        });
        let body = refs.encode_to_vec();
        let (_, peak) = peak_during(|| ExportTraceServiceRequest::decode(body.as_slice()));
        assert!(protobuf(Kind::TracesRequest, &body) >= peak.max(5_000 * size_of::<EntityRef>()));
        let mut keys = request(vec![]);
        keys.resource_spans[0].resource = Some(Resource {
            entity_refs: vec![EntityRef {
                id_keys: vec![String::new(); 5_000],
                ..Default::default()
            }],
            ..Default::default()
        });
        let body = keys.encode_to_vec();
        let (_, peak) = peak_during(|| ExportTraceServiceRequest::decode(body.as_slice()));
        assert!(protobuf(Kind::TracesRequest, &body) >= peak.max(5_000 * size_of::<String>()));
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
        assert!(json(body.as_bytes()) >= 3000 * size_of::<Span>());
        // Attributes are charged as KeyValues and AnyValues, not as spans.
        let attribute = r#"{"key":"k","value":{"stringValue":"v"}}"#;
        let attributes = vec![attribute; 1000].join(",");
        let body =
            format!(r#"{{"resourceSpans":[{{"resource":{{"attributes":[{attributes}]}}}}]}}"#);
        let cost = json(body.as_bytes());
        let per_attribute = 3 * (size_of::<KeyValue>() + size_of::<AnyValue>());
        assert!(cost >= 1000 * per_attribute, "{cost}");
        assert!(
            cost < 1000 * per_attribute + 4 * body.len() + 4096,
            "{cost}"
        );
        // A quote or brace inside a string is text.
        let text = br#"{"a":"{\"{"}"#;
        assert_eq!(json(text), 2 * text.len());
    }
}
