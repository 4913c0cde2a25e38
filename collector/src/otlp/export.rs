//! Stored spans back to OTLP/JSON (`TracesData`), as `/api/traces/{id}` returns them.
//!
//! Spans are grouped into `resourceSpans` by resource attributes and into
//! `scopeSpans` by scope. Ids are hex, enums integers and 64-bit times strings,
//! as the OTLP/JSON mapping requires. Attribute values come back as
//! `stringValue`: the `attributes` map stores every value as text.

use std::collections::{BTreeMap, HashMap};

use arrow::array::RecordBatch;
use serde_json::{Value, json};
use weft_schemas::SpanReader;
use weft_schemas::schema::col;

use crate::error::{Error, Result};

/// Attributes as OTLP/JSON `KeyValue`s.
fn key_values<'a>(entries: impl Iterator<Item = (&'a str, Option<&'a str>)>) -> Vec<Value> {
    entries
        .map(|(k, v)| json!({"key": k, "value": {"stringValue": v.unwrap_or("")}}))
        .collect()
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
            logged.entry(*span.as_bytes()).or_default().push((
                time,
                json!({
                    "timeUnixNano": time.to_string(),
                    "name": r.name(row),
                    "attributes": key_values(r.attributes(row)),
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
            let resource = key_values(r.resource_attributes(row));
            let resource_key = Value::Array(resource.clone()).to_string();
            let scope_key = (
                r.scope_name(row).unwrap_or("").to_owned(),
                r.scope_version(row).unwrap_or("").to_owned(),
            );
            let mut events: Vec<(i64, Value)> = r
                .events(row)
                .map(|e| {
                    (
                        e.time_unix_nano,
                        json!({
                            "timeUnixNano": e.time_unix_nano.to_string(),
                            "name": e.name,
                            "attributes": key_values(r.event_attributes(&e)),
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
                .map(|l| {
                    let mut link = json!({
                        "traceId": hex(l.trace_id),
                        "spanId": hex(l.span_id),
                        "attributes": key_values(r.link_attributes(&l)),
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
                "attributes": key_values(r.attributes(row)),
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
    use crate::otlp::ExportTraceServiceRequest;
    use crate::otlp::normalise::{
        normalise,
        tests::{good_span, request},
    };
    use weft_schemas::spans_to_batch;

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
