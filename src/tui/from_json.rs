//! What a running Weft's JSON answers become for the explorer: node
//! signals from `/api/signals`, and a trace's span details from
//! `/api/traces/{id}` (OTLP/JSON), each value shown as the data directory's
//! rows show it (`super::from_arrow`).

use serde_json::Value;
use weft_schemas::SpanId;
use weft_schemas::value_types::ValueType;
use weft_tui::data::{NodeSignal, SpanDetail, SpanEvent, SpanLink};

use super::shown::shown;

/// `/api/signals` rows (JSON objects) as node signals.
pub(super) fn node_signals(rows: &Value) -> Vec<NodeSignal> {
    let rows = rows.as_array().map(Vec::as_slice).unwrap_or_default();
    rows.iter()
        .filter_map(|r| {
            Some(NodeSignal {
                node: r["node"].as_str()?.to_owned(),
                calls: r["calls"].as_u64().unwrap_or(0),
                errors: r["errors"].as_u64().unwrap_or(0),
                kv_cache_hit_rate: r["kv_cache_hit_rate"].as_f64(),
                queue_wait_p50_ns: r["queue_wait_p50_ns"].as_i64(),
                queue_wait_p95_ns: r["queue_wait_p95_ns"].as_i64(),
                ttft_p50_ns: r["ttft_p50_ns"].as_i64(),
                ttft_p95_ns: r["ttft_p95_ns"].as_i64(),
            })
        })
        .collect()
}

/// An OTLP/JSON `AnyValue` as plain JSON, as stored and as SQL and lineage
/// show it (`{"content":"…"}`, not `{"kvlistValue":…}`; bytes as hex, an
/// empty value as null). Nesting past `depth` levels stays as it came.
fn plain(v: &Value, depth: usize) -> Value {
    let Some(object) = v.as_object() else {
        return v.clone();
    };
    let Some((kind, inner)) = object.iter().next() else {
        return Value::Null;
    };
    match kind.as_str() {
        _ if depth == 0 => v.clone(),
        "stringValue" | "boolValue" | "doubleValue" => inner.clone(),
        "bytesValue" => inner
            .as_str()
            .and_then(hex_of_base64)
            .map_or_else(|| inner.clone(), Value::String),
        "intValue" => inner
            .as_str()
            .and_then(|i| i.parse::<i64>().ok())
            .map_or_else(|| inner.clone(), Value::from),
        "arrayValue" => Value::Array(
            inner["values"]
                .as_array()
                .map(|items| items.iter().map(|i| plain(i, depth - 1)).collect())
                .unwrap_or_default(),
        ),
        "kvlistValue" => Value::Object(
            inner["values"]
                .as_array()
                .map(|kvs| {
                    kvs.iter()
                        .map(|kv| {
                            (
                                kv["key"].as_str().unwrap_or("?").to_owned(),
                                plain(&kv["value"], depth - 1),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
        ),
        _ => v.clone(),
    }
}

/// How deep [`plain`] converts (serde_json parses at most 128 levels).
const PLAIN_DEPTH: usize = 64;

fn hex_of_base64(text: &str) -> Option<String> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()
        .map(hex::encode)
}

/// An OTLP/JSON `AnyValue` as the text stored for it (what SQL shows as
/// `attributes['k']`) and its type: scalars in their usual text form, bytes
/// as hex, arrays and key/value lists as plain JSON, an empty value as "".
fn stored(v: &Value) -> (String, Option<ValueType>) {
    let Some((kind, inner)) = v.as_object().and_then(|o| o.iter().next()) else {
        return (String::new(), Some(ValueType::Empty));
    };
    let text = |t: Option<String>| t.unwrap_or_else(|| inner.to_string());
    match kind.as_str() {
        "stringValue" => (text(inner.as_str().map(str::to_owned)), None),
        "boolValue" => (
            text(inner.as_bool().map(|b| b.to_string())),
            Some(ValueType::Bool),
        ),
        "intValue" => (
            text(
                inner
                    .as_str()
                    .map(str::to_owned)
                    .or_else(|| inner.as_i64().map(|i| i.to_string())),
            ),
            Some(ValueType::Int),
        ),
        "doubleValue" => (
            text(inner.as_f64().map(|d| d.to_string())),
            Some(ValueType::Double),
        ),
        "bytesValue" => (
            text(inner.as_str().and_then(hex_of_base64)),
            Some(ValueType::Bytes),
        ),
        "arrayValue" => (plain(v, PLAIN_DEPTH).to_string(), Some(ValueType::Array)),
        "kvlistValue" => (plain(v, PLAIN_DEPTH).to_string(), Some(ValueType::KvList)),
        _ => (plain(v, PLAIN_DEPTH).to_string(), None),
    }
}

fn attributes(v: &Value) -> Vec<(String, String)> {
    let list = v.as_array().map(Vec::as_slice).unwrap_or_default();
    list.iter()
        .map(|kv| {
            let (text, ty) = stored(&kv["value"]);
            (
                kv["key"].as_str().unwrap_or("?").to_owned(),
                shown(&text, ty),
            )
        })
        .collect()
}

/// The spans of an OTLP/JSON `TracesData` with everything stored about them.
pub(super) fn span_details(data: &Value) -> Vec<SpanDetail> {
    let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
    let mut out = Vec::new();
    for rs in list(&data["resourceSpans"]) {
        let resource = attributes(&rs["resource"]["attributes"]);
        for ss in list(&rs["scopeSpans"]) {
            for s in list(&ss["spans"]) {
                let kind = match s["kind"].as_i64() {
                    Some(1) => "internal",
                    Some(2) => "server",
                    Some(3) => "client",
                    Some(4) => "producer",
                    Some(5) => "consumer",
                    _ => "",
                };
                out.push(SpanDetail {
                    span_id: s["spanId"].as_str().and_then(|h| h.parse::<SpanId>().ok()),
                    kind: kind.to_owned(),
                    attributes: attributes(&s["attributes"]),
                    resource: resource.clone(),
                    events: list(&s["events"])
                        .iter()
                        .map(|e| SpanEvent {
                            time_ns: e["timeUnixNano"]
                                .as_str()
                                .and_then(|t| t.parse().ok())
                                .or_else(|| e["timeUnixNano"].as_i64())
                                .unwrap_or(0),
                            name: e["name"].as_str().unwrap_or("").to_owned(),
                            attributes: attributes(&e["attributes"]),
                        })
                        .collect(),
                    links: list(&s["links"])
                        .iter()
                        .map(|l| SpanLink {
                            trace_id: l["traceId"].as_str().and_then(|h| h.parse().ok()),
                            span_id: l["spanId"].as_str().and_then(|h| h.parse().ok()),
                            attributes: attributes(&l["attributes"]),
                        })
                        .collect(),
                });
            }
        }
    }
    out
}
