//! Stored spans back to OTLP/JSON (`TracesData`), as `/api/traces/{id}` returns them.
//!
//! Spans are grouped into `resourceSpans` by resource attributes and into
//! `scopeSpans` by scope. Ids are hex, enums integers and 64-bit times strings,
//! as the OTLP/JSON mapping requires. Attribute values come back with the
//! type they arrived with: the maps store text, `attribute_types` the type of
//! each value that is not a string (`weft_schemas::value_types`). Spans stored
//! before that column existed give strings. Inside arrays and key/value lists
//! (stored as JSON) bytes come back as their hex string and a list's keys in
//! sorted order.

use std::collections::{BTreeMap, HashMap};

use arrow::array::RecordBatch;
use serde_json::{Value, json};
use weft_schemas::SpanReader;
use weft_schemas::schema::col;
use weft_schemas::value_types::{Place, ValueType, ValueTypes};

use crate::error::{Error, Result};

/// Attributes of `place` as OTLP/JSON `KeyValue`s, typed by `types`.
fn key_values<'a>(
    entries: impl Iterator<Item = (&'a str, Option<&'a str>)>,
    types: &ValueTypes,
    place: Place,
) -> Vec<Value> {
    let prefix = place.prefix();
    entries
        .map(|(k, v)| json!({"key": k, "value": any_value(v.unwrap_or(""), types.get(&prefix, k))}))
        .collect()
}

/// One stored value as an OTLP/JSON `AnyValue` of type `ty` (a string when
/// none was recorded, or when the text does not read as `ty`).
fn any_value(text: &str, ty: Option<ValueType>) -> Value {
    use base64::Engine;
    let typed = match ty {
        None => None,
        Some(ValueType::Bool) => text.parse::<bool>().ok().map(|b| json!({"boolValue": b})),
        Some(ValueType::Int) => text
            .parse::<i64>()
            .ok()
            .map(|i| json!({"intValue": i.to_string()})),
        // JSON has no NaN or infinity: those stay text.
        Some(ValueType::Double) => text
            .parse::<f64>()
            .ok()
            .filter(|d| d.is_finite())
            .map(|d| json!({"doubleValue": d})),
        Some(ValueType::Bytes) => hex::decode(text)
            .ok()
            .map(|b| json!({"bytesValue": base64::engine::general_purpose::STANDARD.encode(b)})),
        // Parsing is depth-limited (serde_json stops at 128 levels), so the
        // recursion below is too.
        Some(ValueType::Array | ValueType::KvList) => serde_json::from_str::<Value>(text)
            .ok()
            .map(|v| plain_to_any(&v)),
        Some(ValueType::Empty) => Some(json!({})),
    };
    typed.unwrap_or_else(|| json!({"stringValue": text}))
}

/// Plain JSON, as arrays and key/value lists are stored, as an `AnyValue`.
fn plain_to_any(value: &Value) -> Value {
    match value {
        Value::Null => json!({}),
        Value::Bool(b) => json!({"boolValue": b}),
        Value::Number(n) => match n.as_i64() {
            Some(i) => json!({"intValue": i.to_string()}),
            None => json!({"doubleValue": n.as_f64()}),
        },
        Value::String(s) => json!({"stringValue": s}),
        Value::Array(items) => {
            let values: Vec<Value> = items.iter().map(plain_to_any).collect();
            json!({"arrayValue": {"values": values}})
        }
        Value::Object(entries) => {
            let values: Vec<Value> = entries
                .iter()
                .map(|(k, v)| json!({"key": k, "value": plain_to_any(v)}))
                .collect();
            json!({"kvlistValue": {"values": values}})
        }
    }
}

fn hex(id: Option<impl std::fmt::Display>) -> Value {
    id.map_or(Value::Null, |id| Value::String(id.to_string()))
}

/// The same `TracesData` as OTLP protobuf bytes (for `Accept:
/// application/protobuf`): the JSON read into the protobuf types, so both
/// answers say the same.
pub fn traces_data_protobuf(batches: &[RecordBatch], events: &[RecordBatch]) -> Result<Vec<u8>> {
    use prost::Message;
    let data: opentelemetry_proto::tonic::trace::v1::TracesData =
        serde_json::from_value(traces_data_json_with_events(batches, events)?)
            .map_err(|e| Error::Internal(format!("stored spans as OTLP protobuf: {e}")))?;
    Ok(data.encode_to_vec())
}

/// The same trace as Grafana Tempo's `TraceByIDResponse` protobuf (its
/// `/api/v2/traces/{id}` answer to `Accept: application/protobuf`): field 1
/// is Tempo's `Trace`, whose only field (`resourceSpans = 1`) is laid out as
/// `TracesData`'s; the status, COMPLETE, is the default and so not written.
pub fn tempo_trace_by_id_protobuf(
    batches: &[RecordBatch],
    events: &[RecordBatch],
) -> Result<Vec<u8>> {
    let trace = traces_data_protobuf(batches, events)?;
    let mut out = Vec::with_capacity(trace.len() + 11);
    prost::encoding::encode_key(1, prost::encoding::WireType::LengthDelimited, &mut out);
    prost::encoding::encode_varint(trace.len() as u64, &mut out);
    out.extend_from_slice(&trace);
    Ok(out)
}

/// Builds `TracesData` JSON from batches of the span schema.
pub fn traces_data_json(batches: &[RecordBatch]) -> Result<Value> {
    traces_data_json_with_events(batches, &[])
}

/// [`traces_data_json`], with the event store's rows of the same trace (log
/// records of its spans, such as GenAI events) among their spans' events,
/// in time order.
pub fn traces_data_json_with_events(
    batches: &[RecordBatch],
    events: &[RecordBatch],
) -> Result<Value> {
    let mut logged: HashMap<[u8; 8], Vec<(i64, Value)>> = HashMap::new();
    for batch in events {
        let r = SpanReader::with_columns(batch, &[col::PARENT_SPAN_ID, col::START_TIME])
            .map_err(|e| Error::Internal(format!("reading events for export: {e}")))?;
        for row in 0..r.len() {
            let Some(span) = r.parent_span_id(row) else {
                continue;
            };
            let time = r.start_ns(row);
            let types = r.attribute_types(row);
            let types = ValueTypes::new(&types);
            logged.entry(*span.as_bytes()).or_default().push((
                time,
                json!({
                    "timeUnixNano": time.to_string(),
                    "name": r.name(row),
                    "attributes": key_values(r.attributes(row), &types, Place::Span),
                }),
            ));
        }
    }
    // resource key → (resource attrs, scope key → (scope json, spans))
    type Scopes = BTreeMap<(String, String), Vec<Value>>;
    let mut resources: BTreeMap<String, (Vec<Value>, Scopes)> = BTreeMap::new();
    for batch in batches {
        let r = SpanReader::with_columns(
            batch,
            &[col::TRACE_ID, col::SPAN_ID, col::START_TIME, col::END_TIME],
        )
        .map_err(|e| Error::Internal(format!("reading spans for export: {e}")))?;
        for row in 0..r.len() {
            let types = r.attribute_types(row);
            let types = ValueTypes::new(&types);
            let resource = key_values(r.resource_attributes(row), &types, Place::Resource);
            let resource_key = Value::Array(resource.clone()).to_string();
            let scope_key = (
                r.scope_name(row).unwrap_or("").to_owned(),
                r.scope_version(row).unwrap_or("").to_owned(),
            );
            let mut events: Vec<(i64, Value)> = r
                .events(row)
                .enumerate()
                .map(|(i, e)| {
                    (
                        e.time_unix_nano,
                        json!({
                            "timeUnixNano": e.time_unix_nano.to_string(),
                            "name": e.name,
                            "attributes": key_values(r.event_attributes(&e), &types, Place::Event(i)),
                        }),
                    )
                })
                .collect();
            if let Some(more) = r.span_id(row).and_then(|id| logged.remove(id.as_bytes())) {
                events.extend(more);
                events.sort_by_key(|(time, _)| *time);
            }
            let events: Vec<Value> = events.into_iter().map(|(_, e)| e).collect();
            let links: Vec<Value> = r
                .links(row)
                .enumerate()
                .map(|(i, l)| {
                    let mut link = json!({
                        "traceId": hex(l.trace_id),
                        "spanId": hex(l.span_id),
                        "attributes": key_values(r.link_attributes(&l), &types, Place::Link(i)),
                    });
                    if let Some(s) = l.trace_state {
                        link["traceState"] = json!(s);
                    }
                    link
                })
                .collect();
            let mut status = json!({"code": r.status(row).to_otlp()});
            if let Some(m) = r.status_message(row) {
                status["message"] = json!(m);
            }
            let mut span = json!({
                "traceId": hex(r.trace_id(row)),
                "spanId": hex(r.span_id(row)),
                "name": r.name(row),
                "kind": r.kind(row).to_otlp(),
                "startTimeUnixNano": r.start_ns(row).to_string(),
                "endTimeUnixNano": r.end_ns(row).to_string(),
                "attributes": key_values(r.attributes(row), &types, Place::Span),
                "events": events,
                "links": links,
                "status": status,
            });
            if let Some(p) = r.parent_span_id(row) {
                span["parentSpanId"] = json!(p.to_hex());
            }
            if let Some(ts) = r.trace_state(row) {
                span["traceState"] = json!(ts);
            }
            resources
                .entry(resource_key)
                .or_insert_with(|| (resource, BTreeMap::new()))
                .1
                .entry(scope_key)
                .or_default()
                .push(span);
        }
    }
    let resource_spans: Vec<Value> = resources
        .into_values()
        .map(|(attrs, scopes)| {
            let scope_spans: Vec<Value> = scopes
                .into_iter()
                .map(|((name, version), spans)| {
                    json!({"scope": {"name": name, "version": version}, "spans": spans})
                })
                .collect();
            json!({"resource": {"attributes": attrs}, "scopeSpans": scope_spans})
        })
        .collect();
    Ok(json!({ "resourceSpans": resource_spans }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ExportTraceServiceRequest;
    use crate::normalise::{
        normalise,
        tests::{good_span, kv, request},
    };
    use opentelemetry_proto::tonic::common::v1::{
        AnyValue, ArrayValue, KeyValue, KeyValueList, any_value,
    };
    use opentelemetry_proto::tonic::trace::v1::TracesData;
    use prost::Message;
    use weft_schemas::spans_to_batch;

    fn any(v: any_value::Value) -> AnyValue {
        AnyValue { value: Some(v) }
    }

    /// An attribute of every OTLP type, nested ones included.
    fn typed_attributes() -> Vec<KeyValue> {
        use any_value::Value as V;
        vec![
            kv("s", V::StringValue("text".into())),
            kv("b", V::BoolValue(true)),
            kv("i", V::IntValue(-42)),
            kv("big", V::IntValue(i64::MAX)),
            kv("d", V::DoubleValue(0.1)),
            kv("whole", V::DoubleValue(2.0)),
            kv("raw", V::BytesValue(vec![0, 255, 7])),
            kv(
                "list",
                V::ArrayValue(ArrayValue {
                    values: vec![
                        any(V::IntValue(1)),
                        any(V::DoubleValue(1.5)),
                        any(V::StringValue("x".into())),
                        any(V::BoolValue(false)),
                    ],
                }),
            ),
            kv(
                "map",
                V::KvlistValue(KeyValueList {
                    values: vec![
                        kv("a", V::IntValue(1)),
                        kv(
                            "b",
                            V::ArrayValue(ArrayValue {
                                values: vec![any(V::StringValue("y".into()))],
                            }),
                        ),
                    ],
                }),
            ),
            KeyValue {
                key: "unset".into(),
                value: Some(AnyValue { value: None }),
                ..Default::default()
            },
        ]
    }

    #[test]
    fn attribute_values_come_back_with_their_otlp_types() {
        let mut span = good_span(1);
        span.attributes = typed_attributes();
        span.attributes
            .push(kv("nan", any_value::Value::DoubleValue(f64::NAN)));
        span.events
            .push(opentelemetry_proto::tonic::trace::v1::span::Event {
                time_unix_nano: span.start_time_unix_nano,
                name: "e".into(),
                attributes: typed_attributes(),
                ..Default::default()
            });
        span.links
            .push(opentelemetry_proto::tonic::trace::v1::span::Link {
                trace_id: vec![7; 16],
                span_id: vec![7; 8],
                attributes: typed_attributes(),
                ..Default::default()
            });
        let mut req = request(vec![span]);
        let resource = req.resource_spans[0].resource.as_mut().unwrap();
        resource
            .attributes
            .push(kv("host.cores", any_value::Value::IntValue(64)));
        let spans = normalise(req).spans;
        let batch = spans_to_batch(&spans).unwrap();

        let json = traces_data_json(std::slice::from_ref(&batch)).unwrap();
        let from_json: TracesData = serde_json::from_value(json.clone()).unwrap();
        let from_protobuf =
            TracesData::decode(traces_data_protobuf(&[batch], &[]).unwrap().as_slice()).unwrap();
        for data in [from_json, from_protobuf] {
            let rs = &data.resource_spans[0];
            let cores = rs.resource.as_ref().unwrap().attributes.iter();
            let cores = cores
                .filter(|kv| kv.key == "host.cores")
                .collect::<Vec<_>>();
            assert_eq!(
                cores[0].value,
                Some(any(any_value::Value::IntValue(64))),
                "{json}"
            );
            let back = &rs.scope_spans[0].spans[0];
            let mut expected = typed_attributes();
            // JSON has no NaN: it comes back as the text it is stored as.
            expected.push(kv("nan", any_value::Value::StringValue("NaN".into())));
            assert_eq!(back.attributes, expected, "{json}");
            assert_eq!(back.events[0].attributes, typed_attributes());
            assert_eq!(back.links[0].attributes, typed_attributes());
        }
    }

    #[test]
    fn without_recorded_types_values_are_strings() {
        let spans = normalise(request(vec![good_span(1)])).spans;
        let batch = spans_to_batch(&spans).unwrap();
        // As a file of schema version 3 reads: no `attribute_types`.
        let old = batch
            .project(&(0..batch.num_columns() - 1).collect::<Vec<_>>())
            .unwrap();
        assert!(old.column_by_name(col::ATTRIBUTE_TYPES).is_none());
        let json = traces_data_json(&[old]).unwrap();
        let attrs = &json["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"];
        let tokens = attrs
            .as_array()
            .unwrap()
            .iter()
            .find(|kv| kv["key"] == "gen_ai.usage.input_tokens")
            .unwrap();
        assert_eq!(tokens["value"], json!({"stringValue": "100"}));
        let new = traces_data_json(&[batch]).unwrap();
        let attrs = &new["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"];
        assert!(
            attrs
                .as_array()
                .unwrap()
                .iter()
                .any(|kv| kv["value"] == json!({"intValue": "100"})),
            "{new}"
        );
    }

    #[test]
    fn round_trips_through_the_json_decoder() {
        let mut child = good_span(2);
        child.parent_span_id = vec![1; 8];
        child
            .links
            .push(opentelemetry_proto::tonic::trace::v1::span::Link {
                trace_id: vec![7; 16],
                span_id: vec![7; 8],
                ..Default::default()
            });
        let spans = normalise(request(vec![good_span(1), child])).spans;
        let json = traces_data_json(&[spans_to_batch(&spans).unwrap()]).unwrap();
        let back: ExportTraceServiceRequest = serde_json::from_value(json.clone()).unwrap();
        let round = normalise(back);
        assert_eq!(round.rejected, 0, "{json}");
        assert_eq!(round.spans.len(), 2);
        assert_eq!(round.spans[1].parent_span_id, spans[1].parent_span_id);
        assert_eq!(round.spans[1].links[0].trace_id, spans[1].links[0].trace_id);
        assert_eq!(
            round.spans[0].start_time_unix_nano,
            spans[0].start_time_unix_nano
        );
        assert_eq!(
            round.spans[0].service_name.as_deref(),
            Some("support-agent")
        );
        assert_eq!(
            json["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["kind"],
            3
        );
    }
}
