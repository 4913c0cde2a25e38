//! Conversations end to end: workflows sent by the OpenTelemetry SDK over
//! OTLP/gRPC, four turns of one conversation (named by
//! `gen_ai.conversation.id` on a child step, or by its alias `session.id`;
//! one turn resumed in a linked trace), a turn of another conversation in
//! between, and a workflow of none. `GET /api/workflows?conversation=` lists
//! the four in order with their summaries and pages them; SQL
//! `conversation()` gives the same rows and pages with LIMIT/OFFSET; plain SQL
//! lists the conversations.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::{Duration, SystemTime};

use opentelemetry::trace::{
    Link, Span as _, SpanKind, Status, TraceContextExt, Tracer, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use serde_json::Value;

use crate::common::{self, Server};

/// One turn: a root, a model call naming the conversation (under `key`),
/// and, when `resume` is set, an approval resumed in a linked trace that
/// names the conversation too. Returns the turn's trace ids.
#[allow(clippy::too_many_arguments)]
fn turn(
    tracer: &opentelemetry_sdk::trace::SdkTracer,
    at: SystemTime,
    name: &str,
    key: &'static str,
    conversation: Option<&str>,
    (model, input, output): (&'static str, i64, i64),
    failed: bool,
    resume: bool,
) -> Vec<String> {
    let s = |secs: u64| at + Duration::from_millis(secs);
    let root = tracer
        .span_builder(name.to_owned())
        .with_kind(SpanKind::Server)
        .with_start_time(s(0))
        .start_with_context(tracer, &Context::new());
    let mut traces = vec![root.span_context().trace_id().to_string()];
    let cx = Context::current_with_span(root);
    let mut attributes = vec![
        KeyValue::new("gen_ai.operation.name", "chat"),
        KeyValue::new("gen_ai.request.model", model),
        KeyValue::new("gen_ai.usage.input_tokens", input),
        KeyValue::new("gen_ai.usage.output_tokens", output),
    ];
    if let Some(c) = conversation {
        attributes.push(KeyValue::new(key, c.to_owned()));
    }
    let mut chat = tracer
        .span_builder(format!("chat {model}"))
        .with_kind(SpanKind::Client)
        .with_start_time(s(100))
        .with_attributes(attributes)
        .start_with_context(tracer, &cx);
    if failed {
        chat.set_status(Status::error("upstream timed out"));
    }
    chat.end_with_timestamp(s(900));
    let mut request_cx = None;
    if resume {
        let mut request = tracer
            .span_builder("approval requested")
            .with_start_time(s(950))
            .with_attributes([
                KeyValue::new("weft.kind", "approval"),
                KeyValue::new("weft.approval.state", "requested"),
            ])
            .start_with_context(tracer, &cx);
        request_cx = Some(request.span_context().clone());
        request.end_with_timestamp(s(990));
    }
    cx.span().end_with_timestamp(s(1_000));
    drop(cx);
    if let Some(request_cx) = request_cx {
        let mut resumed = tracer
            .span_builder("approval granted")
            .with_kind(SpanKind::Server)
            .with_start_time(s(5_000))
            .with_links(vec![Link::with_context(request_cx)])
            .with_attributes([
                KeyValue::new("weft.kind", "approval"),
                KeyValue::new("weft.approval.state", "granted"),
                KeyValue::new(key, conversation.unwrap_or_default().to_owned()),
            ])
            .start_with_context(tracer, &Context::new());
        traces.push(resumed.span_context().trace_id().to_string());
        resumed.end_with_timestamp(s(5_500));
    }
    traces
}

/// Sends the conversations; returns chat-42's turns' trace ids, in order.
fn send(server: &Server) -> Vec<Vec<String>> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _guard = runtime.enter();
    let provider = common::grpc_tracer_provider(server, "support-chat");
    let tracer = provider.tracer("conversations");
    let base = SystemTime::now() - Duration::from_secs(3_600);
    let at = |secs: u64| base + Duration::from_secs(secs);
    const ID: &str = "gen_ai.conversation.id";
    // Sent out of order: the list's order is the turns', not the arrival's.
    let t4 = turn(
        &tracer,
        at(30),
        "turn 4",
        ID,
        Some("chat-42"),
        ("m-large", 400, 80),
        true,
        false,
    );
    let t1 = turn(
        &tracer,
        at(0),
        "turn 1",
        ID,
        Some("chat-42"),
        ("m-small", 100, 20),
        false,
        false,
    );
    let t2 = turn(
        &tracer,
        at(10),
        "turn 2",
        "session.id",
        Some("chat-42"),
        ("m-large", 200, 40),
        false,
        false,
    );
    let t3 = turn(
        &tracer,
        at(20),
        "turn 3",
        ID,
        Some("chat-42"),
        ("m-small", 300, 60),
        false,
        true,
    );
    // Decoys: another conversation between turns 2 and 3, and none at all.
    turn(
        &tracer,
        at(15),
        "other chat",
        ID,
        Some("chat-43"),
        ("m-small", 1, 1),
        false,
        false,
    );
    turn(
        &tracer,
        at(16),
        "batch job",
        ID,
        None,
        ("m-small", 1, 1),
        false,
        false,
    );
    provider.force_flush().unwrap();
    provider.shutdown().unwrap();
    vec![t1, t2, t3, t4]
}

fn list(server: &Server, query: &str) -> (Vec<Value>, String) {
    let response = server.get(&format!("/api/workflows?{query}"));
    assert_eq!(response.status(), 200, "{query}");
    let traces = response
        .headers()
        .get("weft-traces-in-window")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().unwrap();
    (body.as_array().unwrap().clone(), traces)
}

fn names(workflows: &[Value]) -> Vec<&str> {
    workflows
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect()
}

#[test]
fn a_conversation_lists_its_workflows_in_order_in_the_api_and_sql() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let turns = send(&server);
    // 4 turns (2 spans, turn 3 4) and two decoys of 2.
    assert_eq!(
        server.wait_for_count("SELECT count(*) AS n FROM spans", 14),
        14
    );

    let (all, traces) = list(&server, "conversation=chat-42");
    assert_eq!(names(&all), ["turn 1", "turn 2", "turn 3", "turn 4"]);
    assert_eq!(traces, "5", "four turns, one resumed in a second trace");
    for (w, ids) in all.iter().zip(&turns) {
        assert_eq!(w["conversation"], "chat-42", "{w}");
        assert_eq!(w["trace_id"], ids[0].as_str());
        let listed: Vec<&str> = w["traces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        let mut expected: Vec<&str> = ids.iter().map(String::as_str).collect();
        let mut got = listed.clone();
        expected.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, expected, "the linked trace is the same turn: {w}");
    }
    let tokens: Vec<(i64, i64)> = all
        .iter()
        .map(|w| {
            (
                w["input_tokens"].as_i64().unwrap(),
                w["output_tokens"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(tokens, [(100, 20), (200, 40), (300, 60), (400, 80)]);
    assert_eq!(all[1]["models"], serde_json::json!(["m-large"]));
    assert_eq!(all[2]["spans"], 4);
    assert_eq!(all[3]["status"], "error");
    assert_eq!(all[0]["status"], "ok");

    // Pages, in the same order.
    let (page, _) = list(&server, "conversation=chat-42&offset=1&limit=2");
    assert_eq!(names(&page), ["turn 2", "turn 3"]);
    let (past, _) = list(&server, "conversation=chat-42&offset=4");
    assert!(past.is_empty());
    // Another conversation, and one nobody had.
    let (other, traces) = list(&server, "conversation=chat-43");
    assert_eq!((names(&other), traces.as_str()), (vec!["other chat"], "1"));
    let (none, traces) = list(&server, "conversation=chat-404");
    assert_eq!((none.len(), traces.as_str()), (0, "0"));
    // The recent list names each workflow's conversation, if it has one.
    let (recent, _) = list(&server, "since=2h");
    let batch = recent.iter().find(|w| w["name"] == "batch job").unwrap();
    assert!(batch["conversation"].is_null());
    assert_eq!(recent.len(), 6);
    // A window does not apply to a conversation: said, not ignored.
    let response = server.get("/api/workflows?conversation=chat-42&since=1h");
    assert_eq!(response.status(), 400);
    assert!(response.text().unwrap().contains("offset and limit"));

    // SQL: the same rows, turn by turn, and pages.
    let rows = server.sql(
        "SELECT turn, name, traces, input_tokens, output_tokens, models, status_code \
         FROM conversation('chat-42') ORDER BY turn",
    );
    let got: Vec<(i64, &str, i64, i64, &str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["turn"].as_i64().unwrap(),
                r["name"].as_str().unwrap(),
                r["traces"].as_i64().unwrap(),
                r["input_tokens"].as_i64().unwrap(),
                r["models"].as_str().unwrap(),
                r["status_code"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (1, "turn 1", 1, 100, "m-small", "ok"),
            (2, "turn 2", 1, 200, "m-large", "ok"),
            (3, "turn 3", 2, 300, "m-small", "ok"),
            (4, "turn 4", 1, 400, "m-large", "error"),
        ]
    );
    let page = server.sql("SELECT turn, trace_id FROM conversation('chat-42') LIMIT 2 OFFSET 2");
    let page: Vec<(i64, &str)> = page
        .iter()
        .map(|r| (r["turn"].as_i64().unwrap(), r["trace_id"].as_str().unwrap()))
        .collect();
    assert_eq!(page, [(3, turns[2][0].as_str()), (4, turns[3][0].as_str())]);
    // It joins like any table: the spans of turn 4.
    assert_eq!(
        server.count(
            "SELECT count(*) AS n FROM spans s JOIN conversation('chat-42') c \
             ON s.trace_id = c.trace_id WHERE c.turn = 4"
        ),
        2
    );
    // The conversations themselves are plain SQL over the spans.
    let conversations = server.sql(
        "SELECT conversation_id, count(DISTINCT trace_id) AS traces FROM spans \
         WHERE conversation_id IS NOT NULL GROUP BY conversation_id ORDER BY conversation_id",
    );
    assert_eq!(
        conversations,
        [
            serde_json::json!({"conversation_id": "chat-42", "traces": 5}),
            serde_json::json!({"conversation_id": "chat-43", "traces": 1}),
        ]
    );
    // A wrong argument is the caller's mistake, said so.
    let response = reqwest::blocking::Client::new()
        .post(format!("http://{}/api/sql", server.api))
        .body("SELECT * FROM conversation(42)")
        .send()
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(
        response
            .text()
            .unwrap()
            .contains("conversation() takes one conversation id as text")
    );
}
