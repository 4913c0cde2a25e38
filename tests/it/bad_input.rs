//! Bad input, as a table: each case gets the OTLP spec's answer, the server
//! stays up, and spans stored earlier are intact.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use crate::common;

use std::io::Write;

use common::{RpcStatus, Server};
use flate2::Compression;
use flate2::write::GzEncoder;
use prost::Message;
use reqwest::blocking::{Body, Client};
use serde_json::{Value, json};

const SEEDED: &str = "SELECT count(*) AS n FROM spans WHERE service_name = 'support-agent' AND span_id NOT LIKE 'ee%'";

fn fixture() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/trace_a.json"
    ))
    .unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::best());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn span_json(trace_id: &str, span_id: &str, start: u64, end: u64, attrs: Value) -> Value {
    json!({"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "bad-input"}}]},
        "scopeSpans": [{"spans": [{"traceId": trace_id, "spanId": span_id, "name": "s",
            "startTimeUnixNano": start.to_string(), "endTimeUnixNano": end.to_string(), "attributes": attrs}]}]}]})
}

struct Case {
    name: &'static str,
    path: &'static str,
    content_type: &'static str,
    gzip: bool,
    body: Vec<u8>,
    status: u16,
    /// Text the response body must contain.
    expect: &'static str,
}

#[test]
fn bad_input_gets_the_spec_answer_and_harms_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("weft.toml");
    std::fs::write(
        &config,
        "max_http_body_bytes = 1048576\nmax_grpc_message_bytes = 65536\nretention_hours = 1000000\n",
    )
    .unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    let client = Client::new();
    let url = |path: &str| format!("http://{}{path}", server.http);

    let seeded = client
        .post(url("/v1/traces"))
        .header("content-type", "application/json")
        .body(fixture())
        .send()
        .unwrap();
    assert_eq!(seeded.status(), 200);
    assert_eq!(seeded.text().unwrap(), "{}");
    assert_eq!(server.count(SEEDED), 6);

    let zeros = vec![0u8; 64 * 1024 * 1024];
    let now = 1_714_557_600_000_000_000u64;
    let good = "0af7651916cd43dd8448eb211c80319d";
    let cases = vec![
        Case { name: "malformed protobuf", path: "/v1/traces", content_type: "application/x-protobuf", gzip: false,
            body: vec![0x0a, 0xff, 0xff, 0xff, 0x0f, 0x01], status: 400, expect: "malformed protobuf payload" },
        Case { name: "malformed json", path: "/v1/traces", content_type: "application/json", gzip: false,
            body: b"{\"resourceSpans\": [".to_vec(), status: 400, expect: "malformed json payload" },
        Case { name: "json with base64 instead of hex ids", path: "/v1/traces", content_type: "application/json", gzip: false,
            body: span_json("CvdlGRbNQ92ESOshHIAxnA==", "AAAAAAAAAAE=", now, now + 1, json!([])).to_string().into_bytes(),
            status: 400, expect: "malformed json payload" },
        Case { name: "wrong content type", path: "/v1/traces", content_type: "text/plain", gzip: false,
            body: fixture(), status: 415, expect: "unsupported content type" },
        Case { name: "gzip bomb", path: "/v1/traces", content_type: "application/json", gzip: true,
            body: zeros.clone(), status: 413, expect: "exceeds the limit of 1048576 bytes" },
        Case { name: "oversize body", path: "/v1/traces", content_type: "application/x-protobuf", gzip: false,
            body: vec![0u8; 2 * 1024 * 1024], status: 413, expect: "exceeds the limit" },
        Case { name: "corrupt gzip", path: "/v1/traces", content_type: "application/json", gzip: false,
            body: b"\x1f\x8b\x08\x00garbage".to_vec(), status: 400, expect: "malformed" },
        Case { name: "bad id length", path: "/v1/traces", content_type: "application/json", gzip: false,
            body: span_json("abcd", "00000000000000aa", now, now + 1, json!([])).to_string().into_bytes(),
            status: 200, expect: "trace id must be 16 bytes, got 2" },
        Case { name: "all-zero span id", path: "/v1/traces", content_type: "application/json", gzip: false,
            body: span_json(good, "0000000000000000", now, now + 1, json!([])).to_string().into_bytes(),
            status: 200, expect: "span id must not be all zeros" },
        Case { name: "end before start", path: "/v1/traces", content_type: "application/json", gzip: false,
            body: span_json(good, "00000000000000bb", now + 10, now, json!([])).to_string().into_bytes(),
            status: 200, expect: "is before start time" },
        Case { name: "metrics are not stored", path: "/v1/metrics", content_type: "application/json", gzip: false,
            body: br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"m","gauge":{"dataPoints":[{"asInt":"1"},{"asDouble":2.5}]}}]}]}]}"#.to_vec(),
            status: 200, expect: r#""rejectedDataPoints":"2""# },
        Case { name: "a log record of no span is rejected", path: "/v1/logs", content_type: "application/json", gzip: false,
            body: br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"hi"}}]}]}]}"#.to_vec(),
            status: 200, expect: r#""rejectedLogRecords":"1""# },
    ];

    for case in cases {
        let mut request = client
            .post(url(case.path))
            .header("content-type", case.content_type);
        let body = if case.gzip {
            request = request.header("content-encoding", "gzip");
            gzip(&case.body)
        } else {
            case.body.clone()
        };
        let response = request.body(body).send().unwrap();
        let status = response.status().as_u16();
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        let bytes = response.bytes().unwrap();
        let text = if content_type == "application/x-protobuf" && status != 200 {
            RpcStatus::decode(bytes.as_ref())
                .expect("protobuf Status body")
                .message
        } else {
            String::from_utf8_lossy(&bytes).into_owned()
        };
        assert_eq!(status, case.status, "{}: {text}", case.name);
        assert!(text.contains(case.expect), "{}: {text}", case.name);
        if case.status == 200 && case.path == "/v1/traces" {
            let body: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(
                body["partialSuccess"]["rejectedSpans"], "1",
                "{}",
                case.name
            );
        }
        assert!(server.is_healthy(), "{}: server down", case.name);
        assert_eq!(
            server.count(SEEDED),
            6,
            "{}: earlier data changed",
            case.name
        );
    }
    assert_eq!(
        server.count("SELECT count(*) AS n FROM spans WHERE service_name = 'bad-input'"),
        0
    );

    // Partial success: one bad span rejected, the good one beside it stored.
    let mixed = json!({"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": good, "spanId": "00000000000000c1", "name": "kept", "startTimeUnixNano": now.to_string(), "endTimeUnixNano": (now + 5).to_string()},
        {"traceId": good, "spanId": "00000000000000c2", "name": "dropped", "startTimeUnixNano": (now + 5).to_string(), "endTimeUnixNano": now.to_string()}]}]}]});
    let response: Value = client
        .post(url("/v1/traces"))
        .header("content-type", "application/json")
        .body(mixed.to_string())
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(response["partialSuccess"]["rejectedSpans"], "1");
    assert_eq!(
        server.count("SELECT count(*) AS n FROM spans WHERE name IN ('kept', 'dropped')"),
        1
    );

    // Wrongly typed AI attributes: the span is stored, typed columns null, raw values kept.
    let typed = span_json(
        good,
        "00000000000000d1",
        now,
        now + 1,
        json!([
            {"key": "weft.kv_cache.hit", "value": {"stringValue": "yes"}},
            {"key": "gen_ai.usage.input_tokens", "value": {"stringValue": "lots"}},
            {"key": "weft.policy.verdict", "value": {"intValue": "1"}},
        ]),
    );
    let response = client
        .post(url("/v1/traces"))
        .header("content-type", "application/json")
        .body(typed.to_string())
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().unwrap(), "{}");
    let rows = server.sql(
        "SELECT kv_cache_hit, input_tokens, policy_verdict, attributes['weft.kv_cache.hit'] AS raw \
        FROM spans WHERE span_id = '00000000000000d1'",
    );
    assert_eq!(rows.len(), 1);
    assert!(
        rows[0].get("kv_cache_hit").is_none_or(Value::is_null),
        "{rows:?}"
    );
    assert!(
        rows[0].get("input_tokens").is_none_or(Value::is_null),
        "{rows:?}"
    );
    assert!(
        rows[0].get("policy_verdict").is_none_or(Value::is_null),
        "{rows:?}"
    );
    assert_eq!(rows[0]["raw"], "yes");

    // Chunked body with no Content-Length, gzip-compressed protobuf: Node exporters send this.
    let request = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
        resource_spans: serde_json::from_value::<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
        >(span_json(good, "00000000000000e1", now, now + 1, json!([])))
        .unwrap()
        .resource_spans,
    };
    let body = gzip(&request.encode_to_vec());
    let response = client
        .post(url("/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "gzip")
        .body(Body::new(std::io::Cursor::new(body)))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-protobuf");
    assert_eq!(
        server.count("SELECT count(*) AS n FROM spans WHERE span_id = '00000000000000e1'"),
        1
    );

    grpc_cases(&server);
    assert_eq!(server.count(SEEDED), 6);
}

/// gRPC: an oversize message is RESOURCE_EXHAUSTED; gzip is accepted; bad spans are partial success.
fn grpc_cases(server: &Server) {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut client = TraceServiceClient::connect(format!("http://{}", server.grpc))
            .await
            .unwrap()
            .send_compressed(tonic::codec::CompressionEncoding::Gzip);
        let mut big: ExportTraceServiceRequest = serde_json::from_slice(&fixture()).unwrap();
        big.resource_spans[0].scope_spans[0].spans[0].name = "x".repeat(200_000);
        // Compressed it is tiny on the wire: the limit holds while decompressing.
        let status = client.export(big.clone()).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
        let mut plain = TraceServiceClient::connect(format!("http://{}", server.grpc))
            .await
            .unwrap();
        let status = plain.export(big).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");

        let mut bad: ExportTraceServiceRequest = serde_json::from_slice(&fixture()).unwrap();
        for (i, span) in bad.resource_spans[0].scope_spans[0]
            .spans
            .iter_mut()
            .enumerate()
        {
            span.span_id = vec![0xee, i as u8 + 1, 0, 0, 0, 0, 0, 1];
        }
        bad.resource_spans[0].scope_spans[0].spans[0].trace_id = vec![1, 2, 3];
        let response = client.export(bad).await.unwrap().into_inner();
        let partial = response.partial_success.expect("partial success");
        assert_eq!(partial.rejected_spans, 1);
        assert!(
            partial.error_message.contains("trace id must be 16 bytes"),
            "{}",
            partial.error_message
        );
    });
    assert_eq!(
        server.count("SELECT count(*) AS n FROM spans WHERE span_id LIKE 'ee%'"),
        5
    );
}
