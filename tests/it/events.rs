//! GenAI content events as OTLP logs: the OpenTelemetry Python SDK's log
//! exporter (OTLP/HTTP) sends `gen_ai.user.message` and `gen_ai.choice`
//! events inside a span, and they show up with that span — in SQL
//! (`span_events`) and in `/api/traces/{id}` among the span's events; they
//! are durable once acknowledged (kill -9, restart); a real gRPC client's
//! logs request is stored too; records of no span are rejected as a partial
//! success; `--drop-message-content` keeps the events without their content.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use crate::common;

use common::Server;
use common::python::run_json;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use serde_json::Value;

/// A chat span with two GenAI events, sent by the Python SDK over OTLP/HTTP;
/// prints the trace and span ids.
const SCRIPT: &str = r#"
import json, sys
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

base = sys.argv[1]
resource = Resource.create({"service.name": "chat-app"})
tracer_provider = TracerProvider(resource=resource)
tracer_provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=base + "/v1/traces")))
logger_provider = LoggerProvider(resource=resource)
logger_provider.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=base + "/v1/logs")))
tracer = tracer_provider.get_tracer("genai-test")
logger = logger_provider.get_logger("genai-test")

with tracer.start_as_current_span("chat gpt-4o") as span:
    span.set_attribute("gen_ai.operation.name", "chat")
    span.set_attribute("gen_ai.request.model", "gpt-4o")
    span.set_attribute("gen_ai.prompt", "What is Weft?")
    logger.emit(event_name="gen_ai.user.message", body={"content": "What is Weft?"},
                attributes={"gen_ai.system": "openai"})
    logger.emit(event_name="gen_ai.choice",
                body={"index": 0, "message": {"content": "A trace backend."}},
                attributes={"gen_ai.system": "openai"})
    ctx = span.get_span_context()
# A log record of no span: rejected (partial success), not stored.
logger.emit(event_name="app.note", body="no span here")
tracer_provider.shutdown()
logger_provider.shutdown()
print(json.dumps({"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x")}))
"#;

fn send_chat(server: &Server) -> (String, String) {
    let ids = run_json(SCRIPT, &[&format!("http://{}", server.http)]);
    (
        ids["trace_id"].as_str().unwrap().to_owned(),
        ids["span_id"].as_str().unwrap().to_owned(),
    )
}

fn events_of(server: &Server, trace: &str) -> Vec<Value> {
    server.sql(&format!(
        "SELECT span_id, event_name, body, service_name, attributes['gen_ai.system'] AS system \
         FROM span_events WHERE trace_id = '{trace}' ORDER BY time"
    ))
}

#[test]
fn genai_events_from_the_python_sdk_show_with_their_span_and_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let (trace, span) = send_chat(&server);

    let events = events_of(&server, &trace);
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["event_name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["gen_ai.user.message", "gen_ai.choice"],
        "{events:?}"
    );
    assert!(events.iter().all(|e| e["span_id"] == span.as_str()));
    assert!(events.iter().all(|e| e["service_name"] == "chat-app"));
    assert!(events.iter().all(|e| e["system"] == "openai"));
    let body: Value = serde_json::from_str(events[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["content"], "What is Weft?", "{events:?}");
    // The record of no span was not stored.
    assert_eq!(
        server.count("SELECT count(*) AS n FROM span_events WHERE event_name = 'app.note'"),
        0
    );
    // The span itself is in `spans`, with its message content.
    assert_eq!(
        server.count(&format!(
            "SELECT count(*) AS n FROM spans WHERE span_id = '{span}' \
             AND attributes['gen_ai.prompt'] = 'What is Weft?'"
        )),
        1
    );

    // The trace as OTLP: the events are among the span's events.
    let otlp: Value = server.get(&format!("/api/traces/{trace}")).json().unwrap();
    let spans = &otlp["resourceSpans"][0]["scopeSpans"][0]["spans"];
    let chat = spans
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["spanId"] == span.as_str())
        .unwrap();
    let event_names: Vec<&str> = chat["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(event_names, ["gen_ai.user.message", "gen_ai.choice"]);

    // Lineage shows them on their span: in the tree, and in the JSON.
    let tree = server
        .get(&format!("/api/lineage/{trace}/tree"))
        .text()
        .unwrap();
    assert!(
        tree.contains("✉ gen_ai.user.message: {\"content\":\"What is Weft?\"}"),
        "{tree}"
    );
    let lineage: Value = server.get(&format!("/api/lineage/{trace}")).json().unwrap();
    let step = lineage["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["span_id"] == span.as_str())
        .unwrap_or_else(|| panic!("{lineage}"));
    assert_eq!(step["events"][1]["name"], "gen_ai.choice", "{step}");

    // /metrics counts the event store beside the span store.
    let metrics = server.get("/metrics").text().unwrap();
    assert!(
        metrics.contains("\nweft_spans_accepted_total{store=\"events\"} 2\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\nweft_buffered_spans{store=\"events\"} 2\n"),
        "{metrics}"
    );

    // Acknowledged events are durable: kill -9 before any flush, restart.
    server.kill();
    let server = Server::start(dir.path(), &[]);
    assert_eq!(events_of(&server, &trace).len(), 2);
    // The same records sent again (a client retry) are stored once: the
    // retry arrived (this server, restarted, acknowledged both records
    // again) and added nothing.
    run_json(SCRIPT, &[&format!("http://{}", server.http)]);
    let metrics = server.get("/metrics").text().unwrap();
    assert!(
        metrics.contains("\nweft_spans_accepted_total{store=\"events\"} 2\n"),
        "{metrics}"
    );
    assert_eq!(events_of(&server, &trace).len(), 2);
    // After a clean stop (final flush), from the tables.
    assert!(server.terminate().success());
    // Without a server: `weft lineage --data-dir` reads the event store too.
    let data_dir = dir.path().to_str().unwrap();
    let tree = common::weft_ok(&["lineage", &trace, "--data-dir", data_dir]);
    assert!(tree.contains("✉ gen_ai.choice: "), "{tree}");
    let server = Server::start(dir.path(), &[]);
    assert_eq!(events_of(&server, &trace).len(), 2);
}

fn text(s: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(s.into())),
    })
}

#[test]
fn grpc_logs_are_stored_and_content_can_be_dropped_at_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--drop-message-content"]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let record = |span: u8, body: &str| LogRecord {
        time_unix_nano: now,
        trace_id: vec![7; 16],
        span_id: vec![span; 8],
        event_name: "gen_ai.user.message".into(),
        body: text(body),
        ..Default::default()
    };
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![
                    record(1, "a secret prompt"),
                    record(2, "another"),
                    LogRecord {
                        span_id: Vec::new(),
                        ..record(3, "of no span")
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let response = runtime.block_on(async {
        let mut client = LogsServiceClient::connect(format!("http://{}", server.grpc))
            .await
            .unwrap();
        client.export(request).await.unwrap().into_inner()
    });
    let partial = response.partial_success.unwrap();
    assert_eq!(partial.rejected_log_records, 1);
    assert!(partial.error_message.contains("span"), "{partial:?}");

    let trace = "07070707070707070707070707070707";
    let events = events_of(&server, trace);
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events.iter().all(|e| e["body"].is_null()), "{events:?}");
    let dropped = server.count(&format!(
        "SELECT count(*) AS n FROM span_events WHERE trace_id = '{trace}' \
         AND attributes['weft.content_dropped'] = '1'"
    ));
    assert_eq!(dropped, 2);

    // Spans lose their content attributes too, and keep the rest.
    let (chat_trace, span) = send_chat(&server);
    let kept = server.sql(&format!(
        "SELECT attributes['gen_ai.prompt'] AS prompt, attributes['gen_ai.request.model'] AS model \
         FROM spans WHERE span_id = '{span}'"
    ));
    assert!(kept[0]["prompt"].is_null(), "{kept:?}");
    assert_eq!(kept[0]["model"], "gpt-4o");
    let chat_events = events_of(&server, &chat_trace);
    assert!(!chat_events.is_empty(), "the chat's events were stored");
    assert!(
        chat_events.iter().all(|e| e["body"].is_null()),
        "{chat_events:?}"
    );
}
