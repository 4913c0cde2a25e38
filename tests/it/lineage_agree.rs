//! One lineage entry point: `/api/lineage`, the `lineage()` SQL function and
//! `weft lineage` (through a server, and on the data directory with the same
//! config file) reconstruct the same nodes and raise the same governance
//! findings — here for a write tool that only the config's `write_tools` names.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use crate::common;

use std::collections::BTreeSet;

use common::{Server, weft_ok};
use opentelemetry::trace::{Span as _, SpanKind, TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use serde_json::Value;

/// An agent that searches (a read) and then drops a table — a write that no
/// attribute marks as one; only `write_tools` in the config says so.
fn send_workflow(server: &Server) -> String {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _guard = runtime.enter();
    let provider = common::grpc_tracer_provider(server, "db-agent");
    let tracer = provider.tracer("lineage-agree");
    let root = tracer
        .span_builder("clean up staging")
        .with_kind(SpanKind::Server)
        .with_attributes([
            KeyValue::new("weft.kind", "agent"),
            KeyValue::new("weft.identity", "ops-bot"),
        ])
        .start(&tracer);
    let trace_id = root.span_context().trace_id().to_string();
    let cx = Context::current_with_span(root);
    for tool in ["search_tables", "db.drop_table"] {
        tracer
            .span_builder(format!("execute_tool {tool}"))
            .with_attributes([
                KeyValue::new("gen_ai.operation.name", "execute_tool"),
                KeyValue::new("gen_ai.tool.name", tool),
            ])
            .start_with_context(&tracer, &cx)
            .end();
    }
    cx.span().end();
    drop(cx);
    provider.force_flush().unwrap();
    provider.shutdown().unwrap();
    trace_id
}

type Nodes = BTreeSet<String>;
type Findings = BTreeSet<(String, String)>;

/// Nodes (`trace:span`) and findings (`trace:span`, rule) of a lineage JSON
/// answer: `/api/lineage` and `weft lineage --format json` share the shape.
fn from_json(body: &Value) -> (Nodes, Findings) {
    let nodes = body["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            format!(
                "{}:{}",
                n["trace_id"].as_str().unwrap(),
                n["span_id"].as_str().unwrap()
            )
        })
        .collect();
    let findings = body["summary"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["step"]["span"].as_str().unwrap().to_owned(),
                f["rule"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (nodes, findings)
}

/// The same from rows of `SELECT trace_id, span_id, finding FROM lineage(..)`.
fn from_rows(rows: &[Value]) -> (Nodes, Findings) {
    let key = |r: &Value| {
        format!(
            "{}:{}",
            r["trace_id"].as_str().unwrap(),
            r["span_id"].as_str().unwrap()
        )
    };
    let nodes = rows.iter().map(key).collect();
    let findings = rows
        .iter()
        .filter_map(|r| Some((key(r), r["finding"].as_str()?.to_owned())))
        .collect();
    (nodes, findings)
}

#[test]
fn http_sql_and_cli_lineage_agree_on_nodes_and_findings() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("weft.toml");
    std::fs::write(&config, "write_tools = [\"db.drop_table\"]\n").unwrap();
    let config = config.to_str().unwrap();
    let server = Server::start(&data, &["--config", config]);
    let trace = send_workflow(&server);
    server.wait_for_count(
        &format!("SELECT count(*) AS n FROM spans WHERE trace_id = '{trace}'"),
        3,
    );

    let response = server.get(&format!("/api/lineage/{trace}"));
    assert_eq!(response.status(), 200);
    let api_text = response.text().unwrap();
    let (nodes, findings) = from_json(&serde_json::from_str(&api_text).unwrap());
    // The API's JSON is the lineage types' own serde model: it reads back.
    let page: weft_lineage::LineagePage = serde_json::from_str(&api_text).unwrap();
    let (trace_id, more_traces) = (page.trace_id, page.more_traces);
    let from_api = page
        .into_lineage()
        .expect("one page holds the whole workflow");
    // Nothing is lost on the way: the lineage read back gives the same JSON.
    let again = weft_lineage::LineagePage::of(&from_api, trace_id, more_traces, 0, usize::MAX);
    assert_eq!(
        serde_json::to_value(&again).unwrap(),
        serde_json::from_str::<Value>(&api_text).unwrap()
    );
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    let drop_span = server.sql(&format!(
        "SELECT span_id FROM spans WHERE trace_id = '{trace}' AND tool_name = 'db.drop_table'"
    ))[0]["span_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The write tool named only in write_tools raises a finding; the read does not.
    assert_eq!(
        findings,
        BTreeSet::from([(
            format!("{trace}:{drop_span}"),
            "write_without_allow".to_owned()
        )])
    );

    let sql = format!("SELECT trace_id, span_id, finding FROM lineage('{trace}')");
    assert_eq!(
        from_rows(&server.sql(&sql)),
        (nodes.clone(), findings.clone())
    );

    let api = format!("http://{}", server.api);
    let cli = weft_ok(&["lineage", &trace, "--server", &api, "--format", "json"]);
    assert_eq!(
        from_json(&serde_json::from_str(&cli).unwrap()),
        (nodes.clone(), findings.clone())
    );

    // On the data directory, without the server, the same config gives the same answers.
    assert!(server.terminate().success());
    let data = data.to_str().unwrap();
    let embedded = weft_ok(&[
        "lineage",
        &trace,
        "--data-dir",
        data,
        "--config",
        config,
        "--format",
        "json",
    ]);
    assert_eq!(
        from_json(&serde_json::from_str(&embedded).unwrap()),
        (nodes.clone(), findings.clone())
    );
    // `weft lineage --format json` on the directory prints the same model.
    let from_dir: weft_lineage::Lineage = serde_json::from_str(&embedded).unwrap();
    assert_eq!(from_dir.nodes.len(), 3);
    let rows = weft_ok(&[
        "sql",
        &sql,
        "--data-dir",
        data,
        "--config",
        config,
        "--format",
        "json",
    ]);
    let rows: Vec<Value> = serde_json::from_str(&rows).unwrap();
    assert_eq!(from_rows(&rows), (nodes, findings));
}
