//! Requests built to exhaust the process (issue 10, items 5 and 10): deep
//! span chains through every lineage interface, SQL with thousands of
//! operators, multi-member gzip. Each gets an answer, and the server stays up.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use crate::common;

use std::io::Write;

use common::Server;
use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::json;

const TRACE: &str = "0123456789abcdef0123456789abcdef";
const CHAIN: u64 = 20_000;

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// A chain of `CHAIN` spans, each the parent of the next.
fn chain() -> serde_json::Value {
    let start = now_ns() - 60_000_000_000;
    let spans: Vec<_> = (1..=CHAIN)
        .map(|i| {
            let mut span = json!({
                "traceId": TRACE,
                "spanId": format!("{i:016x}"),
                "name": "step",
                "startTimeUnixNano": (start + i).to_string(),
                "endTimeUnixNano": (start + 2 * CHAIN - i).to_string(),
            });
            if i > 1 {
                span["parentSpanId"] = json!(format!("{:016x}", i - 1));
            }
            span
        })
        .collect();
    json!({"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]})
}

fn api_sql(server: &Server, sql: &str) -> (u16, String) {
    let response = reqwest::blocking::Client::new()
        .post(format!("http://{}/api/sql", server.api))
        .body(sql.to_owned())
        .send()
        .unwrap();
    (response.status().as_u16(), response.text().unwrap())
}

#[test]
fn a_deep_chain_is_answered_by_every_lineage_interface() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--flush-interval-secs", "0.5"]);
    server.send_json(&chain());
    let n = CHAIN as i64;
    assert_eq!(
        server.wait_for_count("SELECT count(*) AS n FROM span_structure", n),
        n
    );

    let tree = server.get(&format!("/api/lineage/{TRACE}/tree"));
    assert_eq!(tree.status(), 200);
    let tree = tree.text().unwrap();
    assert_eq!(
        tree.matches("step").count(),
        CHAIN as usize,
        "one line per span"
    );
    assert!(tree.len() < 40 * 1024 * 1024, "{} bytes", tree.len());

    let json = server.get(&format!("/api/lineage/{TRACE}"));
    assert_eq!(json.status(), 200);
    let json: serde_json::Value = json.json().unwrap();
    assert_eq!(json["total_nodes"], json!(CHAIN));
    // Pages of 10,000 nodes: the second holds the rest.
    let page: serde_json::Value = server
        .get(&format!("/api/lineage/{TRACE}?offset=10000"))
        .json()
        .unwrap();
    assert_eq!(
        page["nodes"].as_array().unwrap().len() + json["nodes"].as_array().unwrap().len(),
        CHAIN as usize
    );

    assert_eq!(
        server.get(&format!("/api/lineage/{TRACE}/dot")).status(),
        200
    );
    let rows = server.sql(&format!("SELECT max(depth) AS n FROM lineage('{TRACE}')"));
    assert_eq!(rows[0]["n"], json!(CHAIN - 1), "{rows:?}");
    let last = format!("{CHAIN:016x}");
    assert_eq!(
        server.count(&format!(
            "SELECT count(*) AS n FROM ancestors('{TRACE}', '{last}')"
        )),
        n - 1,
        "every span above the last one"
    );
    assert!(server.is_healthy());
    let peak = peak_rss(server.pid());
    eprintln!(
        "peak resident memory, {CHAIN}-span chain through every lineage interface: {peak} bytes"
    );
    assert!(peak < 512 * 1024 * 1024, "{peak} bytes");
}

#[test]
fn sql_with_thousands_of_operators_is_refused_and_the_server_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let sum = |terms: usize| format!("SELECT {} AS n", vec!["1"; terms].join(" + "));

    let (status, body) = api_sql(&server, &sum(900));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("900"), "{body}");

    for sql in [
        sum(5_000),
        format!("SELECT {}1{} AS n", "(".repeat(3_000), ")".repeat(3_000)),
        format!("SELECT {}1{} AS n", "abs(".repeat(3_000), ")".repeat(3_000)),
        format!("SELECT 1 AS n WHERE {}", vec!["1 = 1"; 3_000].join(" OR ")),
    ] {
        let (status, body) = api_sql(&server, &sql);
        assert_eq!(status, 400, "{body}");
        assert!(
            body.contains("at most") && body.contains("allowed"),
            "{body}"
        );
    }
    assert!(server.is_healthy());
}

#[test]
fn every_member_of_a_multi_member_gzip_body_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let body = serde_json::to_vec(&json!({"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": TRACE, "spanId": "00000000000000aa", "name": "gz",
        "startTimeUnixNano": now_ns().to_string(), "endTimeUnixNano": (now_ns() + 1).to_string(),
    }]}]}]}))
    .unwrap();
    // The same bytes split across two gzip members, as `cat a.gz b.gz` makes.
    let (a, b) = body.split_at(body.len() / 2);
    let member = |bytes: &[u8]| {
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    };
    let mut gz = member(a);
    gz.extend(member(b));
    let response = reqwest::blocking::Client::new()
        .post(format!("http://{}/v1/traces", server.http))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(gz)
        .send()
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().unwrap());
    assert_eq!(
        server.count("SELECT count(*) AS n FROM spans WHERE name = 'gz'"),
        1
    );
}

/// Item 7: one span with out-of-range numbers does not break the answer
/// everyone shares; its raw attributes keep what it sent.
#[test]
fn one_poisoned_value_does_not_break_the_signals() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let call = |span: u8, ttft: serde_json::Value, tokens: &str| {
        json!({
            "traceId": TRACE, "spanId": format!("00000000000000{span:02x}"), "name": "chat",
            "startTimeUnixNano": now_ns().to_string(), "endTimeUnixNano": (now_ns() + 1).to_string(),
            "attributes": [
                {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                {"key": "weft.node", "value": {"stringValue": "gpu-a"}},
                {"key": "weft.ttft_ms", "value": ttft},
                {"key": "gen_ai.usage.input_tokens", "value": {"intValue": tokens}},
            ],
        })
    };
    server.send_json(&json!({"resourceSpans": [{"scopeSpans": [{"spans": [
        call(1, json!({"doubleValue": 80.0}), "10"),
        call(2, json!({"doubleValue": 9.3e12}), "9000000000000000000"),
    ]}]}]}));
    let signals = server.get("/api/signals?since=5m");
    assert_eq!(signals.status(), 200);
    let rows: serde_json::Value = signals.json().unwrap();
    let row = &rows[0];
    assert_eq!(row["node"], "gpu-a", "{rows}");
    assert_eq!(row["calls"], 2, "{rows}");
    assert_eq!(row["ttft_p95_ns"], 80_000_000, "{rows}");
    assert_eq!(row["input_tokens"], 10, "{rows}");
    let raw = server.sql(
        "SELECT attributes['gen_ai.usage.input_tokens'] AS t FROM spans WHERE time_to_first_token_ns IS NULL",
    );
    assert_eq!(raw[0]["t"], "9000000000000000000", "{raw:?}");
}

/// Item 6: attribute caps stop one request from multiplying its size (a
/// resource attribute is copied into every row), truncation is flagged, and a
/// request that could never fit the in-flight budget is refused for good.
#[test]
fn attribute_caps_and_the_inflight_budget_bound_a_request() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("weft.toml");
    std::fs::write(&config, "max_inflight_bytes = 8388608\n").unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    let request = |resource: Vec<serde_json::Value>, spans: u32, pad: usize| {
        let start = now_ns();
        let spans: Vec<_> = (1..=spans)
            .map(|i| {
                json!({
                    "traceId": TRACE, "spanId": format!("{i:016x}"), "name": "s",
                    "startTimeUnixNano": (start + u64::from(i)).to_string(),
                    "endTimeUnixNano": (start + u64::from(i) + 1).to_string(),
                    "attributes": [{"key": "pad", "value": {"stringValue": "p".repeat(pad)}}],
                })
            })
            .collect();
        json!({"resourceSpans": [{"resource": {"attributes": resource},
            "scopeSpans": [{"spans": spans}]}]})
    };
    let attr =
        |key: String, len: usize| json!({"key": key, "value": {"stringValue": "r".repeat(len)}});

    // A 1 MiB resource attribute on 1,100 spans: cut to 4 KiB, flagged, stored.
    server.send_json(&request(vec![attr("big".into(), 1 << 20)], 1_100, 1));
    assert_eq!(server.count("SELECT count(*) AS n FROM spans"), 1_100);
    let rows = server.sql(
        "SELECT max(length(resource_attributes['big'])) AS len, \
         max(resource_attributes['weft.resource_attributes_truncated']) AS cut FROM spans",
    );
    assert_eq!(rows[0]["len"], 4096, "{rows:?}");
    assert_eq!(rows[0]["cut"], "1", "{rows:?}");
    // Before the caps this request peaked at 2.3 GB.
    let peak = peak_rss(server.pid());
    eprintln!("peak resident memory, 1 MiB resource attribute on 1,100 spans: {peak} bytes");
    assert!(peak < 512 * 1024 * 1024, "{peak} bytes");

    // A 1 MiB span attribute: cut to 256 KiB, flagged.
    let mut one = request(Vec::new(), 1, 1 << 20);
    one["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"] =
        json!("fedcba9876543210fedcba9876543210");
    server.send_json(&one);
    let rows = server.sql(
        "SELECT length(attributes['pad']) AS len, attributes['weft.attributes_truncated'] AS cut \
         FROM spans WHERE trace_id = 'fedcba9876543210fedcba9876543210'",
    );
    assert_eq!(rows[0]["len"], 262_144, "{rows:?}");
    assert_eq!(rows[0]["cut"], "1", "{rows:?}");

    // 64 resource attributes of 4 KiB on 200 spans: about 52 MB of rows,
    // more than the 8 MiB budget: refused as the client's to fix.
    let resource = (0..64).map(|i| attr(format!("r{i}"), 4096)).collect();
    let response = reqwest::blocking::Client::new()
        .post(format!("http://{}/v1/traces", server.http))
        .json(&request(resource, 200, 1))
        .send()
        .unwrap();
    assert_eq!(response.status(), 400);
    let text = response.text().unwrap();
    assert!(text.contains("max_inflight_bytes"), "{text}");
    assert!(server.is_healthy());
    assert_eq!(server.count("SELECT count(*) AS n FROM spans"), 1_101);
}

/// Item 8 (in part): an answer stops at `max_result_rows`, and says so in a
/// header; `weft sql` repeats it. A whole answer carries no such header.
#[test]
fn an_answer_stops_at_the_row_cap_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("weft.toml");
    std::fs::write(&config, "max_result_rows = 5\n").unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    let ask = |sql: &str| {
        reqwest::blocking::Client::new()
            .post(format!("http://{}/api/sql", server.api))
            .body(sql.to_owned())
            .send()
            .unwrap()
    };
    let cut = ask("SELECT value FROM generate_series(1, 100)");
    assert_eq!(cut.status(), 200);
    let why = cut.headers()["weft-result-truncated"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(why.contains("max_result_rows"), "{why}");
    let rows: Vec<serde_json::Value> = cut.json().unwrap();
    assert_eq!(rows.len(), 5);

    let whole = ask("SELECT value FROM generate_series(1, 5)");
    assert!(whole.headers().get("weft-result-truncated").is_none());
    assert_eq!(whole.json::<Vec<serde_json::Value>>().unwrap().len(), 5);

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["sql", "--server", &format!("http://{}", server.api)])
        .args([
            "--format",
            "csv",
            "SELECT value FROM generate_series(1, 100)",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 6);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cut short"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Errors a person meets: unknown endpoints and methods answer JSON that
/// names the endpoints; a failing command prints one line and no backtrace,
/// even with RUST_BACKTRACE set.
#[test]
fn errors_are_json_on_the_api_and_one_line_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    for (response, status) in [
        (server.get("/api/nothing"), 404),
        (server.get("/api/sql"), 405),
    ] {
        assert_eq!(response.status(), status);
        let body: serde_json::Value = response.json().unwrap();
        let message = body["error"].as_str().unwrap();
        assert!(message.contains("POST /api/sql"), "{message}");
    }
    // The OTLP/HTTP edge answers in OTLP's error shape (google.rpc.Status as JSON).
    let client = reqwest::blocking::Client::new();
    for (response, status) in [
        (
            client
                .post(format!("http://{}/v1/trace", server.http))
                .send()
                .unwrap(),
            404,
        ),
        (
            client
                .get(format!("http://{}/v1/traces", server.http))
                .send()
                .unwrap(),
            405,
        ),
    ] {
        assert_eq!(response.status(), status);
        let body: serde_json::Value = response.json().unwrap();
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("POST /v1/traces"), "{message}");
        assert_eq!(body["code"], 5, "NOT_FOUND");
    }

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["sql", "--data-dir"])
        .arg(dir.path().join("nowhere"))
        .arg("SELECT 1")
        .env("RUST_BACKTRACE", "1")
        .env("WEFT_LOG", "error")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("weft: "), "{stderr}");
    assert!(!stderr.contains("backtrace"), "{stderr}");

    // Query-string mistakes are JSON too.
    let response = server.get("/api/graph?since=1h&bogus=1");
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("unknown field `bogus`"),
        "{body}"
    );

    // An id that matches nothing says how to list the ids there are.
    server.send_json(&serde_json::json!({"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": "0000000000000000000000000000a001", "spanId": "000000000000a001", "name": "x",
        "startTimeUnixNano": now_ns().to_string(), "endTimeUnixNano": now_ns().to_string()
    }]}]}]}));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["explore", "0000000000000000000000000000b002", "--data-dir"])
        .arg(dir.path())
        .env("WEFT_LOG", "error")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not found") && stderr.contains("SELECT trace_id"),
        "{stderr}"
    );
    let response = server.get("/api/lineage/0000000000000000000000000000b002");
    assert_eq!(response.status(), 404);
    assert!(response.text().unwrap().contains("SELECT trace_id"));
}

/// The server's peak resident memory so far (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

/// Item 8: with a 64 MiB query memory limit, a 250 MB answer streams while
/// the server stays far under it (before streaming, the whole answer was
/// collected and rendered as one string: gigabytes); a sort of the whole
/// set spills instead of failing; the spill bound holds with a 503; a cut
/// in a streamed answer is stated in-band and in the trailer.
#[test]
fn query_memory_holds_with_streamed_answers_and_bounded_spill() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("weft.toml");
    std::fs::write(
        &config,
        "query_memory_bytes = 67108864\nmax_result_rows = 2000000\n",
    )
    .unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &["--config", &config.to_string_lossy()],
    );
    let big = "SELECT value, repeat('x', 100) AS pad FROM generate_series(1, 3000000)";
    let response = reqwest::blocking::Client::new()
        .post(format!("http://{}/api/sql", server.api))
        .header("accept", "application/x-ndjson")
        .body(big)
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers().get("content-length").is_none(),
        "streamed"
    );
    let body = response.bytes().unwrap();
    assert!(body.len() > 200_000_000, "{} bytes", body.len());
    let lines: Vec<&[u8]> = body.trim_ascii_end().split(|b| *b == b'\n').collect();
    assert_eq!(lines.len(), 2_000_001);
    let last: serde_json::Value = serde_json::from_slice(lines[lines.len() - 1]).unwrap();
    assert!(
        last["weft_result_truncated"]
            .as_str()
            .unwrap()
            .contains("max_result_rows"),
        "{last}"
    );
    // Rows come in no particular order (no ORDER BY): each is whole.
    for line in [lines[0], lines[1_999_999]] {
        let row: serde_json::Value = serde_json::from_slice(line).unwrap();
        assert!(row["value"].as_i64().unwrap() > 0, "{row}");
        assert_eq!(row["pad"].as_str().unwrap().len(), 100, "{row}");
    }
    let peak = peak_rss(server.pid());
    eprintln!("peak resident memory, 250 MB answer under a 64 MiB query limit: {peak} bytes");
    assert!(
        peak < 256 * 1024 * 1024,
        "peak resident memory {peak} bytes for a 64 MiB query limit"
    );

    // HTTP/1.1 with `TE: trailers` gets the reason a streamed answer stops
    // in a trailer.
    let curl = |sql: &str| {
        let out = std::process::Command::new("curl")
            .args([
                "-sS",
                "--raw",
                "-H",
                "TE: trailers",
                "-H",
                "accept: text/csv",
            ])
            .arg(format!("http://{}/api/sql", server.api))
            .args(["-d", sql])
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = curl("SELECT value, repeat('x', 100) AS pad FROM generate_series(1, 2500000)");
    assert!(
        text.contains("weft-result-truncated: the first 2000000 rows"),
        "no trailer at the end: {}",
        &text[text.len().saturating_sub(300)..]
    );
    // A sort of about twice the memory limit spills and streams, whole. Near
    // the limit DataFusion's final merge can find the memory taken by the
    // sorters and the answer is a retryable 503 (RELIABILITY.md, known
    // limits); a client retries those, and so does this test, a few times.
    let sort = "SELECT value, repeat('x', 100) AS pad FROM generate_series(1, 1000000) ORDER BY value DESC";
    let mut text = curl(sort);
    for _ in 0..5 {
        if !text.starts_with("{\"error\":\"query exceeded its memory") {
            break;
        }
        text = curl(sort);
    }
    assert!(
        text.contains("value,pad\n1000000,xxx") && text.contains("\n1,xxx"),
        "sorted descending: {}",
        &text[..text.len().min(400)]
    );
    assert!(!text.contains("weft-result-truncated"));
    drop(server);

    // Spill space is bounded: over it, a 503 that names the setting.
    let spill = dir.path().join("spill.toml");
    std::fs::write(
        &spill,
        "query_memory_bytes = 16777216\nmax_spill_bytes = 1048576\n",
    )
    .unwrap();
    let server = Server::start(
        &dir.path().join("data2"),
        &["--config", &spill.to_string_lossy()],
    );
    let response = reqwest::blocking::Client::new()
        .post(format!("http://{}/api/sql", server.api))
        .body(
            "SELECT max(r) AS n FROM (SELECT row_number() OVER (ORDER BY value DESC) AS r \
             FROM (SELECT value, repeat('x', 50) AS pad FROM generate_series(1, 2000000)))",
        )
        .send()
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let error: serde_json::Value = response.json().unwrap();
    assert!(
        error["error"].as_str().unwrap().contains("max_spill_bytes"),
        "{error}"
    );
    assert!(server.is_healthy());
}

/// A request that outlives `request_timeout_secs` gets a 408 that says so in
/// JSON, on both HTTP listeners.
#[test]
fn a_timed_out_request_is_told_why() {
    use std::io::{Read, Write as _};
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("weft.toml");
    std::fs::write(&config, "request_timeout_secs = 1\n").unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &["--config", &config.to_string_lossy()],
    );
    for (addr, path) in [(server.http, "/v1/traces"), (server.api, "/api/sql")] {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        // Headers promise 100 bytes; 10 come, then nothing.
        write!(
            stream,
            "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n0123456789"
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        let body = answer.split("\r\n\r\n").nth(1).unwrap();
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("request_timeout_secs"),
            "{body}"
        );
        assert_eq!(body["error"], body["message"]);
    }
}

/// A query that makes DataFusion panic (a 300 KB literal copied into every
/// row of a batch overflows Arrow's 32-bit offsets) gets a JSON error, not a
/// dropped connection, and the server keeps serving; functions that build
/// values of a size the query chooses are refused before they allocate
/// (`tests/slt/bounded.slt` has the cases).
#[test]
fn a_query_that_panics_inside_datafusion_is_answered_and_survived() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let literal = "x".repeat(300_000);
    let (status, body) = api_sql(
        &server,
        &format!("SELECT '{literal}' AS s FROM generate_series(1, 10000)"),
    );
    assert!(status >= 400, "{status}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(body["error"].is_string(), "{body}");
    let (status, body) = api_sql(
        &server,
        "SELECT repeat('a', 100000000) FROM generate_series(1, 100000)",
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("over the limit"), "{body}");
    assert!(server.is_healthy());
    assert_eq!(server.count("SELECT count(*) AS n FROM spans"), 0);
}

/// Item 6, again: a request's decode is charged before it is decoded. A
/// protobuf body of empty spans (`12 00`, two bytes each) decodes into a
/// whole `Span` struct per two bytes — 8 MiB of them into gigabytes — so it
/// is refused from its bytes, over HTTP and over gRPC, and the server's
/// memory never holds the decoded request.
#[test]
fn empty_elements_are_charged_what_they_decode_into_before_decoding() {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_config(dir.path(), "max_inflight_bytes = 67108864\n", &[]);
    let before = peak_rss(server.pid());

    // One resource, one scope, four million empty spans: 8 MiB on the wire.
    let spans = 4 << 20;
    let mut scope = Vec::with_capacity(2 * spans);
    for _ in 0..spans {
        scope.extend_from_slice(&[0x12, 0x00]);
    }
    let mut body = Vec::new();
    let mut resource = vec![0x12];
    prost::encoding::encode_varint(scope.len() as u64, &mut resource);
    resource.extend_from_slice(&scope);
    body.push(0x0a);
    prost::encoding::encode_varint(resource.len() as u64, &mut body);
    body.extend_from_slice(&resource);
    let response = reqwest::blocking::Client::new()
        .post(format!("http://{}/v1/traces", server.http))
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .unwrap();
    assert_eq!(response.status(), 400);
    let status = <common::RpcStatus as prost::Message>::decode(response.bytes().unwrap()).unwrap();
    assert!(status.message.contains("max_inflight_bytes"), "{status:?}");

    // The same over gRPC: 300,000 empty spans, under the 4 MiB message limit.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let refused = runtime.block_on(async {
        let mut client = TraceServiceClient::connect(format!("http://{}", server.grpc))
            .await
            .unwrap();
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span::default(); 300_000],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        client.export(request).await.unwrap_err()
    });
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert!(
        refused.message().contains("max_inflight_bytes"),
        "{refused:?}"
    );

    // Neither was decoded: the server grew by far less than either would take.
    let grown = peak_rss(server.pid()).saturating_sub(before);
    eprintln!("peak resident memory grew by {grown} bytes");
    assert!(grown < 128 * 1024 * 1024, "{grown} bytes");
    assert!(server.is_healthy());
    server.send_json(&json!({"resourceSpans": []}));
}
