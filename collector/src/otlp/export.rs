//! Stored spans back to OTLP/JSON (`TracesData`), as `/api/traces/{id}` returns them.
//!
//! Spans are grouped into `resourceSpans` by resource attributes and into
//! `scopeSpans` by scope. Ids are hex, enums integers and 64-bit times strings,
//! as the OTLP/JSON mapping requires. Attribute values come back as
//! `stringValue`: the `attributes` map stores every value as text.

use std::collections::BTreeMap;

use arrow::array::{
    Array, AsArray, ListArray, MapArray, RecordBatch, StringArray, StructArray,
    TimestampNanosecondArray,
};
use serde_json::{Value, json};
use weft_schemas::schema::col;
use weft_schemas::{SpanKind, StatusCode};

use crate::error::{Error, Result};

fn missing(name: &str) -> Error {
    Error::Unavailable(format!(
        "span batch lacks column {name} of the expected type"
    ))
}

fn strings<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a StringArray> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .ok_or_else(|| missing(name))
}

fn times<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a TimestampNanosecondArray> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>())
        .ok_or_else(|| missing(name))
}

fn maps<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a MapArray> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<MapArray>())
        .ok_or_else(|| missing(name))
}

fn lists<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ListArray> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<ListArray>())
        .ok_or_else(|| missing(name))
}

fn opt(a: &StringArray, row: usize) -> Option<&str> {
    (!a.is_null(row)).then(|| a.value(row))
}

/// The entries of one map value as OTLP/JSON `KeyValue`s.
fn key_values(entries: &StructArray) -> Vec<Value> {
    let (Some(keys), Some(values)) = (
        entries.column(0).as_any().downcast_ref::<StringArray>(),
        entries.column(1).as_any().downcast_ref::<StringArray>(),
    ) else {
        return Vec::new();
    };
    (0..entries.len())
        .map(|i| {
            json!({"key": keys.value(i), "value": {"stringValue": opt(values, i).unwrap_or("")}})
        })
        .collect()
}

fn map_row(map: &MapArray, row: usize) -> Vec<Value> {
    key_values(&map.value(row))
}

/// Builds `TracesData` JSON from batches of the span schema.
pub fn traces_data_json(batches: &[RecordBatch]) -> Result<Value> {
    // resource key → (resource attrs, scope key → (scope json, spans))
    type Scopes = BTreeMap<(String, String), Vec<Value>>;
    let mut resources: BTreeMap<String, (Vec<Value>, Scopes)> = BTreeMap::new();
    for batch in batches {
        let trace_id = strings(batch, col::TRACE_ID)?;
        let span_id = strings(batch, col::SPAN_ID)?;
        let parent = strings(batch, col::PARENT_SPAN_ID)?;
        let trace_state = strings(batch, col::TRACE_STATE)?;
        let name = strings(batch, col::NAME)?;
        let kind = strings(batch, col::KIND)?;
        let start = times(batch, col::START_TIME)?;
        let end = times(batch, col::END_TIME)?;
        let status_code = strings(batch, col::STATUS_CODE)?;
        let status_message = strings(batch, col::STATUS_MESSAGE)?;
        let scope_name = strings(batch, col::SCOPE_NAME)?;
        let scope_version = strings(batch, col::SCOPE_VERSION)?;
        let resource_attrs = maps(batch, col::RESOURCE_ATTRIBUTES)?;
        let attrs = maps(batch, col::ATTRIBUTES)?;
        let events = lists(batch, col::EVENTS)?;
        let links = lists(batch, col::LINKS)?;

        for row in 0..batch.num_rows() {
            let resource = map_row(resource_attrs, row);
            let resource_key = Value::Array(resource.clone()).to_string();
            let scope_key = (
                opt(scope_name, row).unwrap_or("").to_owned(),
                opt(scope_version, row).unwrap_or("").to_owned(),
            );
            let mut span = json!({
                "traceId": trace_id.value(row),
                "spanId": span_id.value(row),
                "name": name.value(row),
                "kind": SpanKind::parse(kind.value(row)).to_otlp(),
                "startTimeUnixNano": start.value(row).to_string(),
                "endTimeUnixNano": end.value(row).to_string(),
                "attributes": map_row(attrs, row),
                "events": events_json(events, row),
                "links": links_json(links, row),
                "status": status_json(status_code.value(row), opt(status_message, row)),
            });
            if let Some(p) = opt(parent, row) {
                span["parentSpanId"] = json!(p);
            }
            if let Some(ts) = opt(trace_state, row) {
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

fn status_json(code: &str, message: Option<&str>) -> Value {
    let mut status = json!({"code": StatusCode::parse(code).to_otlp()});
    if let Some(m) = message {
        status["message"] = json!(m);
    }
    status
}

fn events_json(list: &ListArray, row: usize) -> Vec<Value> {
    let value = list.value(row);
    let items = value.as_struct();
    let (Some(time), Some(name), Some(attrs)) = (
        items
            .column(0)
            .as_any()
            .downcast_ref::<TimestampNanosecondArray>(),
        items.column(1).as_any().downcast_ref::<StringArray>(),
        items.column(2).as_any().downcast_ref::<MapArray>(),
    ) else {
        return Vec::new();
    };
    (0..items.len())
        .map(|i| {
            json!({
                "timeUnixNano": time.value(i).to_string(),
                "name": name.value(i),
                "attributes": map_row(attrs, i),
            })
        })
        .collect()
}

fn links_json(list: &ListArray, row: usize) -> Vec<Value> {
    let value = list.value(row);
    let items = value.as_struct();
    let (Some(trace), Some(span), Some(state), Some(attrs)) = (
        items.column(0).as_any().downcast_ref::<StringArray>(),
        items.column(1).as_any().downcast_ref::<StringArray>(),
        items.column(2).as_any().downcast_ref::<StringArray>(),
        items.column(3).as_any().downcast_ref::<MapArray>(),
    ) else {
        return Vec::new();
    };
    (0..items.len())
        .map(|i| {
            let mut link = json!({
                "traceId": trace.value(i),
                "spanId": span.value(i),
                "attributes": map_row(attrs, i),
            });
            if let Some(s) = opt(state, i) {
                link["traceState"] = json!(s);
            }
            link
        })
        .collect()
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
        let spans = normalise(&request(vec![good_span(1), child])).spans;
        let json = traces_data_json(&[spans_to_batch(&spans).unwrap()]).unwrap();
        let back: ExportTraceServiceRequest = serde_json::from_value(json.clone()).unwrap();
        let round = normalise(&back);
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
