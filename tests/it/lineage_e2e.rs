//! Lineage end to end through OTLP: a workflow whose approval resumes in a
//! second trace via a span link is reconstructed whole from either trace id,
//! over the HTTP API, SQL and the `weft lineage` command.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use crate::common;

use common::Server;
use opentelemetry::trace::{
    Link, Span as _, SpanKind, TraceContextExt, Tracer, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use serde_json::Value;

/// Trace 1 asks for approval; trace 2, linked to the request, gets it and acts.
fn send_approval_workflow(server: &Server) -> (String, String) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _guard = runtime.enter();
    let provider = common::grpc_tracer_provider(server, "triage-agent");
    let tracer = provider.tracer("lineage-e2e");

    let root = tracer
        .span_builder("incident triage")
        .with_kind(SpanKind::Server)
        .with_attributes([
            KeyValue::new("weft.kind", "workflow"),
            KeyValue::new("weft.identity", "sre-oncall"),
        ])
        .start(&tracer);
    let first = root.span_context().trace_id().to_string();
    let cx = Context::current_with_span(root);
    tracer
        .span_builder("policy production-change")
        .with_attributes([
            KeyValue::new("weft.kind", "policy"),
            KeyValue::new("weft.policy.name", "production-change"),
            KeyValue::new("weft.policy.verdict", "needs_approval"),
        ])
        .start_with_context(&tracer, &cx)
        .end();
    let mut request = tracer
        .span_builder("approval requested")
        .with_attributes([
            KeyValue::new("weft.kind", "approval"),
            KeyValue::new("weft.approval.state", "requested"),
            KeyValue::new("weft.approval.action", "k8s.rollback"),
        ])
        .start_with_context(&tracer, &cx);
    let request_cx = request.span_context().clone();
    request.end();
    cx.span().end();
    drop(cx);

    let resumed = tracer
        .span_builder("remediation resumed")
        .with_kind(SpanKind::Server)
        .with_links(vec![Link::with_context(request_cx)])
        .start_with_context(&tracer, &Context::new());
    let second = resumed.span_context().trace_id().to_string();
    let cx = Context::current_with_span(resumed);
    tracer
        .span_builder("approval granted")
        .with_attributes([
            KeyValue::new("weft.kind", "approval"),
            KeyValue::new("weft.approval.state", "granted"),
            KeyValue::new("weft.approval.approver", "incident-commander"),
            KeyValue::new("weft.approval.action", "k8s.rollback"),
        ])
        .start_with_context(&tracer, &cx)
        .end();
    for tool in ["k8s.rollback", "pager.notify_customers"] {
        tracer
            .span_builder(format!("execute_tool {tool}"))
            .with_attributes([
                KeyValue::new("gen_ai.operation.name", "execute_tool"),
                KeyValue::new("gen_ai.tool.name", tool),
                KeyValue::new("weft.tool.effect", "write"),
            ])
            .start_with_context(&tracer, &cx)
            .end();
    }
    cx.span().end();
    drop(cx);
    provider.force_flush().unwrap();
    provider.shutdown().unwrap();
    (first, second)
}

#[test]
fn approval_resumed_in_a_linked_trace_is_one_workflow_from_either_end() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let (first, second) = send_approval_workflow(&server);
    assert_ne!(first, second);

    for start in [&first, &second] {
        let response = server.get(&format!("/api/lineage/{start}"));
        assert_eq!(response.status(), 200);
        let body: Value = response.json().unwrap();
        let traces: Vec<&str> = body["traces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        assert_eq!(traces.len(), 2, "{body}");
        assert!(traces.contains(&first.as_str()) && traces.contains(&second.as_str()));
        assert_eq!(body["total_nodes"], 7);
        let nodes = body["nodes"].as_array().unwrap();
        let index = |name: &str| nodes.iter().position(|n| n["name"] == name).unwrap();
        let link = body["edges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["kind"] == "link")
            .expect("a link edge");
        assert_eq!(link["from"], index("approval requested"));
        assert_eq!(link["to"], index("remediation resumed"));
        // The resumed trace inherits the identity of the work that asked for approval.
        assert_eq!(
            nodes[index("execute_tool k8s.rollback")]["effective_identity"],
            "sre-oncall"
        );

        let summary = &body["summary"];
        let tools = summary["tool_calls"].as_array().unwrap();
        let rollback = tools.iter().find(|t| t["tool"] == "k8s.rollback").unwrap();
        assert_eq!(rollback["preceding_verdict"]["verdict"], "needs_approval");
        assert_eq!(rollback["preceding_approval"]["state"], "granted");
        assert_eq!(
            rollback["preceding_approval"]["approver"],
            "incident-commander"
        );
        let findings = summary["findings"].as_array().unwrap();
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0]["rule"], "needs_approval_without_grant");
        assert!(
            findings[0]["message"]
                .as_str()
                .unwrap()
                .contains("pager.notify_customers")
        );
        let approvals = summary["approvals"].as_array().unwrap();
        assert_eq!(approvals.len(), 2);
        assert!(approvals.iter().all(|a| a["gates"] == "k8s.rollback"));
        assert_eq!(summary["policy_checks"][0]["identity"], "sre-oncall");
        // Spans that ended a moment ago are reported as possibly still arriving.
        assert!(
            body["anomalies"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["type"] == "may_still_be_arriving")
        );
    }

    // Upstream from the second trace still finds the first; downstream from the second does not.
    let up: Value = server
        .get(&format!("/api/lineage/{second}?direction=upstream"))
        .json()
        .unwrap();
    assert_eq!(up["total_nodes"], 7);
    let down: Value = server
        .get(&format!("/api/lineage/{second}?direction=downstream"))
        .json()
        .unwrap();
    assert_eq!(down["total_nodes"], 4);
    let shallow: Value = server
        .get(&format!("/api/lineage/{first}?depth=0"))
        .json()
        .unwrap();
    assert_eq!(shallow["total_nodes"], 3);
    assert_eq!(shallow["truncated"], true);
    assert_eq!(shallow["more_traces"], true);
    // A page says it is a part, what it left out, and where the next starts.
    let page: Value = server
        .get(&format!("/api/lineage/{first}?offset=2&limit=2"))
        .json()
        .unwrap();
    assert_eq!(page["nodes"].as_array().unwrap().len(), 2);
    assert_eq!(page["total_nodes"], 7);
    assert_eq!(page["truncated"], true, "{page}");
    assert_eq!(page["more_traces"], false, "{page}");
    assert_eq!(page["next_offset"], 4, "{page}");
    assert!(
        page["left_out"]
            .as_str()
            .unwrap()
            .contains("nodes 2..4 of 7"),
        "{page}"
    );
    let whole: Value = server.get(&format!("/api/lineage/{first}")).json().unwrap();
    assert_eq!(
        (&whole["truncated"], whole.get("left_out")),
        (&Value::Bool(false), None),
        "{whole}"
    );

    let tree = server
        .get(&format!("/api/lineage/{first}/tree"))
        .text()
        .unwrap();
    assert!(tree.contains("⇢ * remediation resumed"), "{tree}");
    assert!(tree.contains("needs_approval_without_grant"), "{tree}");
    let dot = server
        .get(&format!("/api/lineage/{second}/dot"))
        .text()
        .unwrap();
    assert!(
        dot.starts_with("digraph lineage {") && dot.contains("label=\"link\""),
        "{dot}"
    );

    assert_eq!(
        server
            .get(&format!("/api/lineage/{}", "cd".repeat(16)))
            .status(),
        404
    );
    assert_eq!(server.get("/api/lineage/xyz").status(), 400);
    assert_eq!(
        server
            .get(&format!("/api/lineage/{first}?direction=sideways"))
            .status(),
        400
    );

    let rows = server.sql(&format!(
        "SELECT count(*) AS n, count(DISTINCT trace_id) AS traces FROM lineage('{second}')"
    ));
    assert_eq!(rows[0]["n"], 7);
    assert_eq!(rows[0]["traces"], 2);

    let output = common::weft(&[
        "lineage",
        &first,
        "--server",
        &format!("http://{}", server.api),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("workflow: 7 span(s) in 2 trace(s)"), "{text}");
    assert!(
        text.contains("k8s.rollback (writes) as sre-oncall"),
        "{text}"
    );

    // A clean stop flushes, and the flush settles both traces: their structure
    // and the link between them are stored, and lineage reads them back
    // without a server too.
    assert!(server.terminate().success());
    let output = common::weft(&[
        "lineage",
        &first,
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("workflow: 7 span(s) in 2 trace(s)"), "{text}");
    let server = Server::start(dir.path(), &[]);
    let settled = server.sql(
        "SELECT trace_id, count(*) AS spans, sum(CAST(orphan AS INT)) AS orphans, \
         min(nested_left) AS lo, max(nested_right) AS hi \
         FROM span_structure GROUP BY trace_id ORDER BY spans",
    );
    assert_eq!(settled.len(), 2, "{settled:?}");
    for (row, (trace, spans)) in settled.iter().zip([(&first, 3), (&second, 4)]) {
        assert_eq!(row["trace_id"], trace.as_str());
        assert_eq!(row["spans"], spans);
        assert_eq!(row["orphans"], 0);
        assert_eq!(
            (row["lo"].clone(), row["hi"].clone()),
            (0.into(), (2 * spans - 1).into())
        );
    }
    let links = server.sql("SELECT linked_trace_id, trace_id FROM span_links");
    assert_eq!(links.len(), 1, "{links:?}");
    assert_eq!(links[0]["linked_trace_id"], first.as_str());
    assert_eq!(links[0]["trace_id"], second.as_str());
    let again: Value = server
        .get(&format!("/api/lineage/{second}"))
        .json()
        .unwrap();
    assert_eq!(again["total_nodes"], 7);
}

#[test]
fn service_graph_shows_who_calls_whom() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    server.run_demo(9);

    let edges: Vec<Value> = server.get("/api/graph?since=2h").json().unwrap();
    let edge = |caller: &str, callee: &str| {
        edges
            .iter()
            .find(|e| e["caller_service"] == caller && e["callee_service"] == callee)
            .unwrap_or_else(|| panic!("no {caller} -> {callee} in {edges:?}"))
    };
    let support_llm = edge("support-agent", "llm-gateway");
    assert!(support_llm["calls"].as_i64().unwrap() >= 3);
    assert!(support_llm["avg_duration_ns"].as_f64().unwrap() > 0.0);
    edge("code-assistant", "retriever");
    // The same calls counted another way, not through SQL: every trace as
    // OTLP/JSON from /api/traces, each span's parent looked up by id.
    let mut calls = std::collections::BTreeMap::<(String, String), (i64, i64)>::new();
    for row in server.sql("SELECT DISTINCT trace_id FROM spans") {
        let trace: Value = server
            .get(&format!(
                "/api/traces/{}",
                row["trace_id"].as_str().unwrap()
            ))
            .json()
            .unwrap();
        let mut spans = Vec::new();
        for rs in trace["resourceSpans"].as_array().unwrap() {
            let service = rs["resource"]["attributes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["key"] == "service.name")
                .map(|a| a["value"]["stringValue"].as_str().unwrap().to_owned())
                .unwrap();
            for ss in rs["scopeSpans"].as_array().unwrap() {
                for span in ss["spans"].as_array().unwrap() {
                    spans.push((service.clone(), span.clone()));
                }
            }
        }
        let service_of = |id: &Value| {
            spans
                .iter()
                .find(|(_, s)| &s["spanId"] == id)
                .map(|(service, _)| service.clone())
        };
        for (callee, span) in &spans {
            let Some(caller) = span.get("parentSpanId").and_then(&service_of) else {
                continue;
            };
            if &caller != callee {
                let entry = calls.entry((caller, callee.clone())).or_default();
                entry.0 += 1;
                entry.1 += i64::from(span["status"]["code"] == 2);
            }
        }
    }
    let counted = calls[&("support-agent".to_owned(), "llm-gateway".to_owned())];
    assert_eq!(
        (
            support_llm["calls"].as_i64().unwrap(),
            support_llm["errors"].as_i64().unwrap()
        ),
        counted,
        "{edges:?}"
    );
    assert_eq!(edges.len(), calls.len(), "{edges:?} against {calls:?}");
    // Nothing before the demo's window.
    let old: Vec<Value> = server
        .get("/api/graph?since=2020-01-01T00:00:00Z&until=2020-01-02T00:00:00Z")
        .json()
        .unwrap();
    assert!(old.is_empty());
    assert_eq!(server.get("/api/graph?since=yesterday").status(), 400);
}
