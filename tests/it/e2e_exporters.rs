//! End to end: the `opentelemetry-otlp` exporters (gRPC, HTTP protobuf, HTTP
//! JSON) send AI spans to a running `weft serve`; SQL finds every span with
//! its typed AI columns, and `/api/traces/{id}` returns the trace.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use crate::common;

use std::time::Duration;

use common::Server;
use opentelemetry::trace::{Span as _, SpanKind, TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;

#[derive(Clone, Copy, Debug)]
enum Transport {
    Grpc,
    HttpProto,
    HttpJson,
}

/// Sends one small agent trace (workflow → llm, tool) and returns its trace id.
fn send(server: &Server, transport: Transport, service: &str) -> String {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _guard = matches!(transport, Transport::Grpc).then(|| runtime.enter());
    let exporter = match transport {
        Transport::Grpc => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(format!("http://{}", server.grpc))
            .build(),
        Transport::HttpProto | Transport::HttpJson => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(if matches!(transport, Transport::HttpJson) {
                Protocol::HttpJson
            } else {
                Protocol::HttpBinary
            })
            .with_endpoint(format!("http://{}/v1/traces", server.http))
            .with_timeout(Duration::from_secs(10))
            .build(),
    }
    .expect("exporter builds");
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(service.to_owned())
                .with_attributes([KeyValue::new("host.name", "gpu-host-9")])
                .build(),
        )
        .build();
    let tracer = provider.tracer("e2e");
    let root = tracer
        .span_builder("agent run")
        .with_kind(SpanKind::Server)
        .with_attributes([
            KeyValue::new("gen_ai.operation.name", "invoke_agent"),
            KeyValue::new("gen_ai.agent.name", "refund-bot"),
            KeyValue::new("enduser.id", "alice"),
        ])
        .start(&tracer);
    let trace_id = root.span_context().trace_id().to_string();
    let cx = Context::current_with_span(root);
    let mut llm = tracer
        .span_builder("chat gpt-4o")
        .with_kind(SpanKind::Client)
        .with_attributes([
            KeyValue::new("gen_ai.operation.name", "chat"),
            KeyValue::new("gen_ai.provider.name", "openai"),
            KeyValue::new("gen_ai.request.model", "gpt-4o"),
            KeyValue::new("gen_ai.usage.input_tokens", 321_i64),
            KeyValue::new("gen_ai.usage.output_tokens", 45_i64),
            KeyValue::new("weft.node", "gpu-a2"),
            KeyValue::new("weft.kv_cache.hit", true),
            KeyValue::new("weft.kv_cache.hit_ratio", 0.5),
        ])
        .start_with_context(&tracer, &cx);
    llm.end();
    let mut tool = tracer
        .span_builder("execute_tool payments.refund")
        .with_attributes([
            KeyValue::new("gen_ai.operation.name", "execute_tool"),
            KeyValue::new("gen_ai.tool.name", "payments.refund"),
            KeyValue::new("weft.policy.verdict", "allow"),
        ])
        .start_with_context(&tracer, &cx);
    tool.end();
    cx.span().end();
    drop(cx);
    provider.force_flush().expect("spans exported");
    provider.shutdown().expect("provider shuts down");
    trace_id
}

#[test]
fn every_exporter_delivers_typed_ai_spans() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let cases = [
        (Transport::Grpc, "svc-grpc"),
        (Transport::HttpProto, "svc-http-proto"),
        (Transport::HttpJson, "svc-http-json"),
    ];
    let mut traces = Vec::new();
    for (transport, service) in cases {
        traces.push((service, send(&server, transport, service)));
    }
    // Export returned only after Weft acknowledged durability; the spans are queryable now.
    assert_eq!(server.count("SELECT count(*) AS n FROM spans"), 9);

    for (service, trace_id) in &traces {
        let rows = server.sql(&format!(
            "SELECT trace_id, name, ai_kind, gen_ai_provider, gen_ai_model, input_tokens, output_tokens, \
             node, kv_cache_hit, kv_cache_hit_ratio, identity, agent_name, tool_name, policy_verdict \
             FROM spans WHERE service_name = '{service}' ORDER BY name"
        ));
        assert_eq!(rows.len(), 3, "{service}: {rows:?}");
        let (agent, llm, tool) = (&rows[0], &rows[1], &rows[2]);
        for row in &rows {
            assert_eq!(row["trace_id"], trace_id.as_str(), "{service}");
        }
        assert_eq!(agent["name"], "agent run");
        assert_eq!(agent["ai_kind"], "agent");
        assert_eq!(agent["identity"], "alice");
        assert_eq!(agent["agent_name"], "refund-bot");
        assert_eq!(agent["node"], "gpu-host-9", "node falls back to host.name");
        assert_eq!(llm["ai_kind"], "llm", "{service}: {llm}");
        assert_eq!(llm["gen_ai_provider"], "openai");
        assert_eq!(llm["gen_ai_model"], "gpt-4o");
        assert_eq!(llm["input_tokens"], 321);
        assert_eq!(llm["output_tokens"], 45);
        assert_eq!(llm["node"], "gpu-a2");
        assert_eq!(llm["kv_cache_hit"], true);
        assert_eq!(llm["kv_cache_hit_ratio"], 0.5);
        assert_eq!(tool["ai_kind"], "tool");
        assert_eq!(tool["tool_name"], "payments.refund");
        assert_eq!(tool["policy_verdict"], "allow");

        let response =
            reqwest::blocking::get(format!("http://{}/api/traces/{trace_id}", server.api)).unwrap();
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().unwrap();
        let resource = &body["resourceSpans"][0];
        let spans = resource["scopeSpans"][0]["spans"].as_array().unwrap();
        assert_eq!(spans.len(), 3, "{body}");
        assert!(spans.iter().all(|s| s["traceId"] == trace_id.as_str()));
        assert!(
            resource["resource"]["attributes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|kv| kv["key"] == "service.name" && kv["value"]["stringValue"] == *service)
        );
        let llm = spans.iter().find(|s| s["name"] == "chat gpt-4o").unwrap();
        assert_eq!(llm["kind"], 3);
        assert_eq!(llm["parentSpanId"].as_str().unwrap().len(), 16);
    }

    let missing = reqwest::blocking::get(format!(
        "http://{}/api/traces/{}",
        server.api,
        "ab".repeat(16)
    ))
    .unwrap();
    assert_eq!(missing.status(), 404);
    let bad = reqwest::blocking::get(format!("http://{}/api/traces/not-hex", server.api)).unwrap();
    assert_eq!(bad.status(), 400);
}

#[test]
fn demo_command_sends_its_workload_through_a_real_exporter() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    for (protocol, endpoint) in [("grpc", server.grpc), ("http-json", server.http)] {
        let endpoint = format!("http://{endpoint}");
        let output = common::weft(&[
            "demo",
            "--workflows",
            "6",
            "--protocol",
            protocol,
            "--endpoint",
            &endpoint,
        ]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // Same seed twice: identical plans, fresh ids, so twice the spans.
    let total = server.count("SELECT count(*) AS n FROM spans");
    assert!(total > 2 * 6 * 5, "{total}");
    // Three workflow services, plus the shared LLM gateway and retriever they call.
    assert_eq!(
        server.count("SELECT count(DISTINCT service_name) AS n FROM spans"),
        5
    );
    // Every LLM step carries model, node, tokens and KV-cache state.
    assert_eq!(
        server.count(
            "SELECT count(*) AS n FROM spans WHERE ai_kind = 'llm' AND (gen_ai_model IS NULL OR node IS NULL \
             OR input_tokens IS NULL OR kv_cache_hit IS NULL)"
        ),
        0
    );
    assert!(server.count("SELECT count(*) AS n FROM spans WHERE ai_kind = 'llm'") >= 12);
    // The triage approval resumes in a second trace, linked across traces.
    assert_eq!(
        server.count(
            "SELECT count(*) AS n FROM spans s JOIN spans t \
             ON s.links[1]['span_id'] = t.span_id AND s.links[1]['trace_id'] = t.trace_id \
             WHERE t.approval_state = 'requested' AND s.trace_id <> t.trace_id"
        ),
        4
    );
}

/// The number after `word` in `text` ("acknowledged 16040 spans" → 16040).
fn number_after(text: &str, word: &str) -> i64 {
    text.split(word)
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after {word:?} in {text}"))
}

#[test]
fn demo_delivers_every_span_it_sends_and_says_what_was_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    // 2,000 workflows once lost spans to the exporter's full queue
    // (SpansDropped) while the demo said it sent them all.
    let output = common::weft(&[
        "demo",
        "--workflows",
        "2000",
        "--endpoint",
        &format!("http://{}", server.grpc),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let sent = number_after(&stderr, "sent ");
    let acknowledged = number_after(&stderr, "acknowledged ");
    let events = number_after(&stderr, "spans and ");
    assert_eq!(sent, acknowledged, "{stderr}");
    assert_eq!(server.count("SELECT count(*) AS n FROM spans"), sent);
    assert!(events > 2000, "{stderr}");
    assert_eq!(
        server.count("SELECT count(*) AS n FROM span_events"),
        events
    );
    // Not a terminal: no progress lines, only the summary and the hints.
    assert!(stderr.lines().count() <= 6, "{stderr}");
    assert!(stderr.contains("over OTLP/gRPC"), "{stderr}");
}

#[test]
fn demo_shows_content_events_a_governance_finding_and_an_anomaly() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    server.run_demo(3);
    // Every model call has its prompt, and every answered one its answer,
    // as SQL shows them (JSON text).
    let rows = server.sql(
        "SELECT e.event_name, e.body FROM span_events e JOIN spans s \
         ON e.trace_id = s.trace_id AND e.span_id = s.span_id WHERE s.ai_kind = 'llm' \
         ORDER BY e.event_name",
    );
    assert!(
        rows.iter().any(|r| r["event_name"] == "gen_ai.user.message"
            && r["body"].as_str().unwrap().starts_with("{\"content\":")),
        "{rows:?}"
    );
    assert!(
        rows.iter().any(|r| r["event_name"] == "gen_ai.choice"),
        "{rows:?}"
    );
    // The first ticket refunds although the approval was denied; the first
    // code-assistant scan's clock is behind.
    let first = |name: &str| {
        server.sql(&format!(
            "SELECT trace_id FROM spans WHERE name = '{name}' LIMIT 1"
        ))[0]["trace_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let ticket: serde_json::Value = server
        .get(&format!("/api/lineage/{}", first("support ticket")))
        .json()
        .unwrap();
    assert_eq!(
        ticket["summary"]["findings"][0]["rule"], "needs_approval_without_grant",
        "{ticket}"
    );
    let tree = server
        .get(&format!(
            "/api/lineage/{}/tree",
            first("code change request")
        ))
        .text()
        .unwrap();
    assert!(tree.contains("before its parent"), "{tree}");
}
