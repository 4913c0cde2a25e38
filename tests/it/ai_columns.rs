//! Every AI column of the schema reaches the APIs. One span carries a value
//! for each column (through the column's first key); `/api/lineage` gives
//! each column back under its own name, typed as `extract` reads it, and
//! `/api/traces` gives each key back as it was sent. The test walks the
//! schema's column list, so a column added there is checked here unchanged.

use serde_json::{Value, json};
use weft_schemas::AttrValue;
use weft_schemas::ai_column::ColumnType;
use weft_schemas::conventions::{AI_COLUMNS, Interp, Key, Scope, extract};

use crate::common::Server;

/// A value the key reads as a valid value of its column.
fn value_for(key: &Key, ty: ColumnType) -> AttrValue {
    let text = |s: &str| AttrValue::Str(s.to_owned());
    match key.interp {
        Interp::AsIs => match ty {
            ColumnType::Utf8 => AttrValue::Str(format!("value of {}", key.name)),
            ColumnType::Int64 => AttrValue::Int(41),
            ColumnType::Float64 => AttrValue::Double(0.5),
            ColumnType::Boolean => AttrValue::Bool(true),
            ColumnType::Utf8List => AttrValue::Array(vec![text("doc-1"), text("doc-2")]),
        },
        Interp::WeftKind => text("tool"),
        Interp::GenAiOperationKind => text("chat"),
        Interp::OpenInferenceKind => text("LLM"),
        Interp::TraceloopKind => text("tool"),
        Interp::MillisToNanos => AttrValue::Int(12),
        Interp::SecondsToNanos => AttrValue::Double(0.25),
        Interp::DocumentIdsJson => text(r#"["doc-1", {"id": "doc-2"}]"#),
        Interp::DocumentIdsIndexed => text("doc-1"),
        Interp::ToolCallIdsJson => text(
            r#"[{"role": "assistant", "parts": [{"type": "tool_call", "id": "call-1", "name": "search"}]}]"#,
        ),
        Interp::ToolCallIdsIndexed => text("call-1"),
        Interp::Verdict => text("deny"),
        Interp::Approval => text("granted"),
        Interp::Ratio => AttrValue::Double(0.75),
        Interp::Count => AttrValue::Int(120),
        Interp::Implies(_) => text("present"),
    }
}

/// An attribute value as OTLP/JSON's `AnyValue`.
fn any_value(v: &AttrValue) -> Value {
    match v {
        AttrValue::Str(s) => json!({"stringValue": s}),
        AttrValue::Bool(b) => json!({"boolValue": b}),
        AttrValue::Int(i) => json!({"intValue": i.to_string()}),
        AttrValue::Double(d) => json!({"doubleValue": d}),
        AttrValue::Array(items) => {
            json!({"arrayValue": {"values": items.iter().map(any_value).collect::<Vec<_>>()}})
        }
        other => panic!("no test values of {other:?}"),
    }
}

fn key_values(attrs: &[(String, AttrValue)]) -> Value {
    attrs
        .iter()
        .map(|(k, v)| json!({"key": k, "value": any_value(v)}))
        .collect()
}

#[test]
fn every_ai_column_reaches_lineage_and_traces() {
    let (mut span_attrs, mut resource_attrs) = (Vec::new(), Vec::new());
    for column in AI_COLUMNS {
        let key = &column.keys[0];
        let attrs = match key.scope {
            Scope::Span => &mut span_attrs,
            Scope::Resource => &mut resource_attrs,
        };
        attrs.push((key.name.to_owned(), value_for(key, column.ty)));
    }
    resource_attrs.push((
        "service.name".to_owned(),
        AttrValue::Str("ai-columns".into()),
    ));
    // What the schema's own reading of these attributes gives: every column set.
    let expected = serde_json::to_value(extract(&span_attrs, &resource_attrs)).unwrap();
    for column in AI_COLUMNS {
        assert!(
            !expected[column.name].is_null(),
            "the test's value for {} ({}) does not fill the column",
            column.name,
            column.keys[0].name
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let trace = "5b8efff798038103d269b633813fc60c";
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    server.send_json(&json!({"resourceSpans": [{
        "resource": {"attributes": key_values(&resource_attrs)},
        "scopeSpans": [{"spans": [{
            "traceId": trace,
            "spanId": "eee19b7ec3c1b174",
            "name": "every column",
            "kind": 3,
            "startTimeUnixNano": (now - 500_000_000).to_string(),
            "endTimeUnixNano": now.to_string(),
            "attributes": key_values(&span_attrs),
        }]}]
    }]}));

    let lineage: Value = server.get(&format!("/api/lineage/{trace}")).json().unwrap();
    let node = &lineage["nodes"][0];
    for column in AI_COLUMNS {
        assert_eq!(
            node[column.name], expected[column.name],
            "/api/lineage's {} (from {})",
            column.name, column.keys[0].name
        );
    }

    let traces: Value = server.get(&format!("/api/traces/{trace}")).json().unwrap();
    let resource_spans = &traces["resourceSpans"][0];
    let sent = |attrs: &Value, key: &str| -> Value {
        attrs
            .as_array()
            .unwrap()
            .iter()
            .find(|kv| kv["key"] == key)
            .map_or(Value::Null, |kv| kv["value"].clone())
    };
    for column in AI_COLUMNS {
        let key = &column.keys[0];
        let (attrs, given) = match key.scope {
            Scope::Span => (
                &resource_spans["scopeSpans"][0]["spans"][0]["attributes"],
                &span_attrs,
            ),
            Scope::Resource => (&resource_spans["resource"]["attributes"], &resource_attrs),
        };
        let value = given.iter().find(|(k, _)| k == key.name).unwrap();
        assert_eq!(
            sent(attrs, key.name),
            any_value(&value.1),
            "/api/traces' {} (the {} column)",
            key.name,
            column.name
        );
    }
}
