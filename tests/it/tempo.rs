//! Grafana Tempo's HTTP API under `/tempo`: the requests Grafana's Tempo data
//! source makes (the paths and parameters of its query editor, search and
//! trace view), answered in the shapes Tempo's API documentation shows, with
//! the same traces SQL finds.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use crate::common;

use std::collections::BTreeSet;

use common::Server;
use serde_json::Value;

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

fn get(server: &Server, path: &str) -> Value {
    let response = server.get(path);
    assert_eq!(response.status(), 200, "{path}");
    response.json().unwrap()
}

#[test]
fn grafana_can_search_tag_and_open_weft_traces() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    server.run_demo(12);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let window = format!("start={}&end={}", now - 3600, now + 60);

    // Connection test and version probe.
    assert_eq!(server.get("/tempo/api/echo").text().unwrap(), "echo");
    let info = get(&server, "/tempo/api/status/buildinfo");
    assert!(info["version"].is_string(), "{info}");

    // The query editor's tag lists (v2 with scopes, v1 flat).
    let scopes = get(&server, &format!("/tempo/api/v2/search/tags?{window}"));
    let names: BTreeSet<&str> = scopes["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, BTreeSet::from(["intrinsic", "resource", "span"]));
    let span_tags = &scopes["scopes"].as_array().unwrap()[0]["tags"];
    assert!(
        span_tags
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "weft.node"),
        "{scopes}"
    );
    let only_resource = get(
        &server,
        &format!("/tempo/api/v2/search/tags?scope=resource&{window}"),
    );
    assert_eq!(only_resource["scopes"].as_array().unwrap().len(), 1);
    assert!(
        only_resource["scopes"][0]["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "service.name")
    );
    let flat = get(&server, &format!("/tempo/api/search/tags?{window}"));
    assert!(
        flat["tagNames"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "gen_ai.request.model")
    );

    // Tag values, v2 typed (narrowed by the query typed so far) and v1 plain.
    let services = get(
        &server,
        &format!("/tempo/api/v2/search/tag/resource.service.name/values?q=%7B%7D&{window}"),
    );
    let want: BTreeSet<String> = server
        .sql("SELECT DISTINCT service_name FROM spans")
        .iter()
        .map(|r| r["service_name"].as_str().unwrap().to_owned())
        .collect();
    let got: BTreeSet<String> = services["tagValues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            assert_eq!(v["type"], "string");
            v["value"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(got, want);
    let statuses = get(
        &server,
        &format!("/tempo/api/v2/search/tag/status/values?{window}"),
    );
    let statuses = statuses["tagValues"].as_array().unwrap();
    assert!(!statuses.is_empty());
    assert!(
        statuses.iter().all(|v| v["type"] == "keyword"),
        "{statuses:?}"
    );
    let nodes = get(
        &server,
        &format!("/tempo/api/search/tag/weft.node/values?{window}"),
    );
    let node_values = nodes["tagValues"].as_array().unwrap();
    assert!(!node_values.is_empty(), "{nodes}");
    assert!(
        node_values
            .iter()
            .all(|v| v.as_str().unwrap().starts_with("gpu-")),
        "{nodes}"
    );

    // Search with TraceQL: the same traces as SQL, in Tempo's shape.
    let q =
        urlencode(r#"{ resource.service.name = "llm-gateway" && span.weft.kv_cache.hit = true }"#);
    let found = get(
        &server,
        &format!("/tempo/api/search?q={q}&limit=100&spss=2&{window}"),
    );
    let want: BTreeSet<String> = server
        .sql(
            "SELECT DISTINCT trace_id FROM spans WHERE service_name = 'llm-gateway' \
             AND kv_cache_hit",
        )
        .iter()
        .map(|r| r["trace_id"].as_str().unwrap().to_owned())
        .collect();
    let traces = found["traces"].as_array().unwrap();
    let got: BTreeSet<String> = traces
        .iter()
        .map(|t| t["traceID"].as_str().unwrap().to_owned())
        .collect();
    assert!(!want.is_empty());
    assert_eq!(got, want);
    for t in traces {
        // The fields of Tempo's documented search result.
        assert_eq!(
            keys(t),
            BTreeSet::from([
                "traceID",
                "rootServiceName",
                "rootTraceName",
                "startTimeUnixNano",
                "durationMs",
                "spanSet",
                "spanSets"
            ])
        );
        assert!(t["startTimeUnixNano"].is_string() && t["durationMs"].is_u64());
        let start: u64 = t["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
        assert!(
            (now - 3600) * 1_000_000_000 < start && start < (now + 60) * 1_000_000_000,
            "nanoseconds in the window: {t}"
        );
        assert!(t["durationMs"].as_u64().unwrap() < 3_600_000, "{t}");
        let set = &t["spanSet"];
        assert!(set["matched"].as_u64().unwrap() >= 1);
        let spans = set["spans"].as_array().unwrap();
        assert!(!spans.is_empty() && spans.len() <= 2, "spss=2");
        for s in spans {
            assert!(s["spanID"].is_string() && s["durationNanos"].is_string());
            let span_start: u64 = s["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
            assert!(span_start >= start, "a span starts within its trace: {t}");
        }
    }

    // Legacy tag search with duration bounds; the limit holds.
    let some = get(
        &server,
        &format!(
            "/tempo/api/search?tags=service.name%3Dllm-gateway&minDuration=1ms&limit=2&{window}"
        ),
    );
    assert_eq!(some["traces"].as_array().unwrap().len(), 2);
    let none = get(
        &server,
        &format!("/tempo/api/search?tags=service.name%3Dllm-gateway&maxDuration=1ns&{window}"),
    );
    assert!(none["traces"].as_array().unwrap().is_empty());

    // Opening a trace from the results: v2 and v1 shapes, every span there.
    let id = traces[0]["traceID"].as_str().unwrap();
    let count = server.count(&format!(
        "SELECT count(*) AS n FROM spans WHERE trace_id = '{id}'"
    ));
    let v2 = get(&server, &format!("/tempo/api/v2/traces/{id}?{window}"));
    let spans_in = |resource_spans: &Value| -> usize {
        resource_spans
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|rs| rs["scopeSpans"].as_array().unwrap())
            .map(|ss| ss["spans"].as_array().unwrap().len())
            .sum()
    };
    assert_eq!(spans_in(&v2["trace"]["resourceSpans"]) as i64, count);
    let v1 = get(&server, &format!("/tempo/api/traces/{id}"));
    assert_eq!(spans_in(&v1["batches"]) as i64, count);
    let missing = server.get("/tempo/api/v2/traces/0000000000000000000000000000abcd");
    assert_eq!(missing.status(), 404);

    // Weft's own /api/traces keeps its shape beside Tempo's, and answers
    // OTLP protobuf when asked: the same spans.
    let own = get(&server, &format!("/api/traces/{id}"));
    assert_eq!(spans_in(&own["resourceSpans"]) as i64, count);
    let protobuf = reqwest::blocking::Client::new()
        .get(format!("http://{}/api/traces/{id}", server.api))
        .header("accept", "application/protobuf")
        .send()
        .unwrap();
    assert_eq!(protobuf.headers()["content-type"], "application/x-protobuf");
    let data = <opentelemetry_proto::tonic::trace::v1::TracesData as prost::Message>::decode(
        protobuf.bytes().unwrap(),
    )
    .unwrap();
    let mut from_protobuf: Vec<String> = data
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .map(|s| hex(&s.span_id))
        .collect();
    let mut from_json: Vec<String> = own["resourceSpans"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|rs| rs["scopeSpans"].as_array().unwrap())
        .flat_map(|ss| ss["spans"].as_array().unwrap())
        .map(|s| s["spanId"].as_str().unwrap().to_owned())
        .collect();
    from_protobuf.sort();
    from_json.sort();
    assert_eq!(from_protobuf.len() as i64, count);
    assert_eq!(from_protobuf, from_json);

    // What the subset does not do is a clear 400.
    for bad in [
        r#"{ .a = "x" || .b = "y" }"#,
        r#"{ .a = "x" } | count() > 1"#,
        "{ nonsense",
    ] {
        let response = server.get(&format!("/tempo/api/search?q={}", urlencode(bad)));
        assert_eq!(response.status(), 400, "{bad}");
        let body: Value = response.json().unwrap();
        assert!(
            body["error"].as_str().unwrap().contains("TraceQL"),
            "{body}"
        );
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Tempo's `TraceByIDResponse`, as Grafana decodes `/api/v2/traces/{id}`:
/// its `Trace` (field 1) is laid out as OTLP `TracesData`.
#[derive(Clone, PartialEq, prost::Message)]
struct TraceByIdResponse {
    #[prost(message, optional, tag = "1")]
    trace: Option<opentelemetry_proto::tonic::trace::v1::TracesData>,
    #[prost(int32, tag = "3")]
    status: i32,
    #[prost(string, tag = "4")]
    message: String,
}

fn span_count(data: &opentelemetry_proto::tonic::trace::v1::TracesData) -> usize {
    data.resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len())
        .sum()
}

#[test]
fn grafanas_requests_as_it_sends_them_are_answered_as_it_reads_them() {
    use prost::Message;
    let fixture: Value =
        serde_json::from_str(include_str!("../fixtures/grafana_tempo_requests.json")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    server.run_demo(4);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let row = &server.sql(
        "SELECT trace_id, service_name, count(*) OVER (PARTITION BY trace_id) AS n \
         FROM spans WHERE parent_span_id IS NULL ORDER BY trace_id LIMIT 1",
    )[0];
    let trace_id = row["trace_id"].as_str().unwrap();
    let service = row["service_name"].as_str().unwrap();
    let spans = server.count(&format!(
        "SELECT count(*) AS n FROM spans WHERE trace_id = '{trace_id}'"
    )) as usize;
    assert!(spans > 1);

    let requests = fixture["requests"].as_array().unwrap();
    assert!(requests.len() >= 10);
    let client = reqwest::blocking::Client::new();
    for request in requests {
        let path = request["path"]
            .as_str()
            .unwrap()
            .replace("{trace_id}", trace_id)
            .replace("{service}", service)
            .replace("{start}", &(now - 3600).to_string())
            .replace("{end}", &(now + 60).to_string());
        let what = format!("{} (GET {path})", request["what"]);
        let mut get = client.get(format!("http://{}/tempo{path}", server.api));
        if let Some(accept) = request["accept"].as_str() {
            get = get.header("accept", accept);
        }
        let response = get.send().unwrap();
        assert_eq!(response.status(), 200, "{what}");
        let body = response.bytes().unwrap();
        let reads = request["grafana_reads"].as_str().unwrap();
        match reads.split_once(':').unwrap() {
            ("text", expected) => assert_eq!(&body[..], expected.as_bytes(), "{what}"),
            ("protobuf", "TraceByIDResponse") => {
                let answer = TraceByIdResponse::decode(&body[..]).unwrap();
                assert_eq!(answer.status, 0, "COMPLETE: {what}");
                assert_eq!(span_count(&answer.trace.unwrap()), spans, "{what}");
            }
            ("protobuf", "Trace") => {
                let trace =
                    opentelemetry_proto::tonic::trace::v1::TracesData::decode(&body[..]).unwrap();
                assert_eq!(span_count(&trace), spans, "{what}");
            }
            ("json", key) => {
                let json: Value = serde_json::from_slice(&body)
                    .unwrap_or_else(|e| panic!("{what}: not JSON ({e})"));
                let list = json[key]
                    .as_array()
                    .unwrap_or_else(|| panic!("{what}: {json}"));
                assert!(!list.is_empty(), "{what}: {json}");
            }
            other => panic!("unknown expectation {other:?}"),
        }
    }
}
