//! Live load signals end to end: the demo workload goes through a real OTLP
//! exporter into `weft serve`, and `GET /api/signals` answers per GPU node what
//! a scheduler needs — calls, errors, KV-cache hit rate, queue wait and
//! time-to-first-token percentiles, tokens — warmest cache first.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use crate::common;

use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::Server;
use opentelemetry::KeyValue;
use opentelemetry::trace::{Span as _, SpanKind, Tracer, TracerProvider as _};
use serde_json::Value;

#[test]
fn signals_rank_nodes_by_warm_kv_cache_and_agree_with_sql() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    server.run_demo(12);

    // The demo's workflows end now: README's `since=5m` right after it sees them.
    let recent: Vec<Value> = server.get("/api/signals?since=5m").json().unwrap();
    assert!(
        !recent.is_empty(),
        "the demo's calls are within five minutes"
    );
    let nodes: Vec<Value> = server.get("/api/signals?since=2h").json().unwrap();
    let expected = server.sql(
        "SELECT node, count(*) AS calls, avg(CASE WHEN kv_cache_hit THEN 1.0 ELSE 0.0 END) AS hit, \
         min(queue_wait_ns) AS qmin, max(queue_wait_ns) AS qmax, sum(output_tokens) AS out \
         FROM spans WHERE ai_kind = 'llm' AND node IS NOT NULL GROUP BY node",
    );
    assert!(
        expected.len() >= 2,
        "the demo uses several nodes: {expected:?}"
    );
    assert_eq!(nodes.len(), expected.len(), "{nodes:?}");
    for row in &expected {
        let node = nodes.iter().find(|n| n["node"] == row["node"]).unwrap();
        assert_eq!(node["calls"], row["calls"], "{node}");
        assert_eq!(node["output_tokens"], row["out"], "{node}");
        let hit = node["kv_cache_hit_rate"].as_f64().unwrap();
        assert!(
            (hit - row["hit"].as_f64().unwrap()).abs() < 1e-9,
            "{node} vs {row}"
        );
        let (p50, p95) = (
            node["queue_wait_p50_ns"].as_i64().unwrap(),
            node["queue_wait_p95_ns"].as_i64().unwrap(),
        );
        let (lo, hi) = (row["qmin"].as_i64().unwrap(), row["qmax"].as_i64().unwrap());
        assert!(lo <= p50 && p50 <= p95 && p95 <= hi, "{node} vs {row}");
        assert!(node["last_seen"].is_string(), "{node}");
    }
    // Warmest first: the order a router should try.
    let rates: Vec<f64> = nodes
        .iter()
        .map(|n| n["kv_cache_hit_rate"].as_f64().unwrap())
        .collect();
    assert!(rates.windows(2).all(|w| w[0] >= w[1]), "{rates:?}");

    // One model only.
    let model = server.sql(
        "SELECT gen_ai_model AS m, count(*) AS n FROM spans \
         WHERE ai_kind = 'llm' AND node IS NOT NULL GROUP BY 1 ORDER BY 2 DESC LIMIT 1",
    );
    let name = model[0]["m"].as_str().unwrap();
    let only: Vec<Value> = server
        .get(&format!("/api/signals?since=2h&model={name}"))
        .json()
        .unwrap();
    let calls: i64 = only.iter().map(|n| n["calls"].as_i64().unwrap()).sum();
    assert_eq!(calls, model[0]["n"].as_i64().unwrap());

    // Nothing has happened since a time in the future; bad input is a 400.
    let none: Vec<Value> = server
        .get("/api/signals?since=2099-01-01T00:00:00Z")
        .json()
        .unwrap();
    assert!(none.is_empty());
    assert_eq!(server.get("/api/signals?since=soon").status(), 400);
    // The live windows are the configured ones; other parameters are refused.
    assert_eq!(server.get("/api/signals?window=2m").status(), 400);
    assert_eq!(server.get("/api/signals?window=1m&since=5m").status(), 400);
    assert_eq!(server.get("/api/signals?windw=1m").status(), 400);
    assert_eq!(server.get("/api/route").status(), 400, "model is required");

    // The live rows count the same calls the SQL rows do.
    let live: Vec<Value> = server.get("/api/signals?window=5m").json().unwrap();
    let sql_recent: i64 = server
        .get("/api/signals?since=5m")
        .json::<Vec<Value>>()
        .unwrap()
        .iter()
        .map(|n| n["calls"].as_i64().unwrap())
        .sum();
    let live_calls: i64 = live.iter().map(|n| n["calls"].as_i64().unwrap()).sum();
    assert_eq!(live_calls, sql_recent, "{live:?}");
    for node in &live {
        for field in [
            "stale",
            "in_flight",
            "queue_wait_p99_ns",
            "ttft_p99_ns",
            "cost",
        ] {
            assert!(node.get(field).is_some(), "{field} missing in {node}");
        }
    }
}

/// Sends model calls through the OpenTelemetry SDK's OTLP/gRPC exporter and
/// returns when the server has acknowledged them (the flush returned).
fn send_calls(server: &Server, calls: &[(&str, &[KeyValue])]) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _guard = runtime.enter();
    let provider = common::grpc_tracer_provider(server, "inference");
    let tracer = provider.tracer("fleet");
    for (node, attributes) in calls {
        let mut span = tracer
            .span_builder("chat llama")
            .with_kind(SpanKind::Server)
            .start(&tracer);
        span.set_attribute(KeyValue::new("gen_ai.operation.name", "chat"));
        span.set_attribute(KeyValue::new("gen_ai.request.model", "llama"));
        span.set_attribute(KeyValue::new("weft.node", node.to_string()));
        span.set_attribute(KeyValue::new("gen_ai.usage.input_tokens", 1_000_000i64));
        span.set_attribute(KeyValue::new("gen_ai.usage.output_tokens", 1_000i64));
        for kv in *attributes {
            span.set_attribute(kv.clone());
        }
        span.end();
    }
    provider.force_flush().unwrap();
    provider.shutdown().unwrap();
}

/// Polls `check` until it holds, failing after `deadline`: no fixed sleeps.
fn by<T>(deadline: Instant, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "{what} not seen by the deadline");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn within<T>(limit: Duration, what: &str, check: impl FnMut() -> Option<T>) -> T {
    by(Instant::now() + limit, what, check)
}

/// Reads `/api/signals/stream` on a thread; each event's JSON on the channel.
fn stream(server: &Server, query: &str) -> mpsc::Receiver<Value> {
    let (tx, rx) = mpsc::channel();
    let url = format!("http://{}/api/signals/stream{query}", server.api);
    let response = reqwest::blocking::Client::builder()
        .timeout(None)
        .build()
        .unwrap()
        .get(url)
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    std::thread::spawn(move || {
        for line in BufReader::new(response).lines() {
            let Ok(line) = line else { return };
            if let Some(data) = line.strip_prefix("data: ")
                && let Ok(value) = serde_json::from_str(data)
                && tx.send(value).is_err()
            {
                return;
            }
        }
    });
    rx
}

const PRICED: &str = r#"
[prices."llama"]
input_per_mtok = 1.0
cached_input_per_mtok = 0.25
output_per_mtok = 4.0
"#;

#[test]
fn acknowledged_spans_move_signals_the_stream_and_metrics_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_config(dir.path(), PRICED, &[]);
    let events = stream(&server, "?window=10s");
    send_calls(
        &server,
        &[
            ("gpu-live", &[KeyValue::new("weft.queue.wait_ms", 12.0)]),
            ("gpu-live", &[KeyValue::new("weft.kv_cache.hit", true)]),
        ],
    );
    // Within a second of the acknowledgement, all three interfaces show it.
    let deadline = Instant::now() + Duration::from_secs(1);
    let row = by(deadline, "the calls in /api/signals", || {
        let rows: Vec<Value> = server.get("/api/signals?window=10s").json().unwrap();
        rows.into_iter()
            .find(|r| r["node"] == "gpu-live" && r["calls"] == 2)
    });
    assert_eq!(row["stale"], false);
    assert_eq!(row["kv_cache_hit_rate"], 1.0, "{row}");
    assert_eq!(row["window"], "10s");
    // 1M input and 1k output tokens at 1.0 and 4.0 per million, twice.
    let cost = row["cost"].as_f64().unwrap();
    assert!((cost - 2.0 * 1.004).abs() < 1e-9, "{row}");
    let event = by(deadline, "a stream event", || {
        events
            .try_recv()
            .ok()
            .filter(|e| e["node"] == "gpu-live" && e["calls"] == 2)
    });
    assert_eq!(event["window"], "10s");
    by(deadline, "the gauges in /metrics", || {
        let text = server.get("/metrics").text().unwrap();
        text.lines()
            .find(|l| {
                l.starts_with("weft_node_requests_per_second{node=\"gpu-live\",model=\"llama\",window=\"10s\"}")
            })
            .map(str::to_owned)
    });
    // The span's cost is a column too; an unknown model's is null.
    send_calls(
        &server,
        &[(
            "gpu-live",
            &[KeyValue::new("gen_ai.response.model", "mystery")],
        )],
    );
    let costs =
        server.sql("SELECT gen_ai_model AS m, cost FROM spans WHERE node = 'gpu-live' ORDER BY m");
    assert_eq!(costs.len(), 3, "{costs:?}");
    assert!(
        costs
            .iter()
            .any(|r| r["m"] == "mystery" && r["cost"].is_null()),
        "{costs:?}"
    );
    // And the SQL view of what a scheduler saw.
    let seen = server.sql("SELECT node, calls, stale FROM signals('10s') WHERE node = 'gpu-live'");
    assert_eq!(seen[0]["calls"], 3, "{seen:?}");
    let by_model = server.sql("SELECT sum(calls) AS n FROM signals('1m', 'llama')");
    assert_eq!(by_model[0]["n"], 2, "{by_model:?}");
}

#[test]
fn route_advice_ranks_the_node_with_the_prefix_first_and_a_stale_node_last() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[signals]\nstaleness_secs = 1\n";
    let server = Server::start_with_config(dir.path(), config, &[]);
    let prefix = |p: &'static str| KeyValue::new("weft.kv_cache.prefix", p);
    send_calls(
        &server,
        &[(
            "gpu-gone",
            &[prefix("system-a"), KeyValue::new("weft.kv_cache.hit", true)],
        )],
    );
    // Wait until gpu-gone has been silent past the staleness bound.
    within(Duration::from_secs(10), "gpu-gone stale", || {
        let rows: Vec<Value> = server.get("/api/signals").json().unwrap();
        rows.iter()
            .any(|r| r["node"] == "gpu-gone" && r["stale"] == true)
            .then_some(())
    });
    send_calls(
        &server,
        &[
            (
                "gpu-warm",
                &[prefix("system-a"), KeyValue::new("weft.kv_cache.hit", true)],
            ),
            (
                "gpu-cold",
                &[
                    prefix("system-b"),
                    KeyValue::new("weft.kv_cache.hit", false),
                ],
            ),
        ],
    );
    let advice: Vec<Value> = server
        .get("/api/route?model=llama&prefix=system-a&conversation=nobody")
        .json()
        .unwrap();
    let order: Vec<&str> = advice.iter().map(|a| a["node"].as_str().unwrap()).collect();
    assert_eq!(order, ["gpu-warm", "gpu-cold", "gpu-gone"], "{advice:?}");
    assert!(
        advice[0]["score"].as_f64().unwrap() > advice[1]["score"].as_f64().unwrap(),
        "{advice:?}"
    );
    let reasons = advice[0]["reasons"].to_string();
    assert!(
        reasons.contains("prefix") && reasons.contains("hit"),
        "{reasons}"
    );
    assert_eq!(advice[2]["stale"], true);
    assert!(
        advice[2]["reasons"].to_string().contains("stale"),
        "{advice:?}"
    );
    // Another model: no node to advise.
    let none: Vec<Value> = server.get("/api/route?model=gpt").json().unwrap();
    assert!(none.is_empty());
}

#[test]
fn a_restarted_server_rebuilds_its_windows_before_it_answers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    send_calls(
        &server,
        &[
            ("gpu-kept", &[KeyValue::new("weft.queue.wait_ms", 40.0)]),
            ("gpu-kept", &[KeyValue::new("weft.queue.wait_ms", 80.0)]),
            ("gpu-other", &[]),
        ],
    );
    let before: Vec<Value> = within(Duration::from_secs(1), "the calls", || {
        let rows: Vec<Value> = server.get("/api/signals?window=5m").json().unwrap();
        (rows.len() == 2).then_some(rows)
    });
    // kill -9: the spans are only in the WAL.
    server.kill();
    let server = Server::start(dir.path(), &[]);
    // The first answer after the restart already holds them.
    let after: Vec<Value> = server.get("/api/signals?window=5m").json().unwrap();
    let calls = |rows: &[Value], node: &str| {
        rows.iter()
            .find(|r| r["node"] == node)
            .map(|r| (r["calls"].clone(), r["queue_wait_p99_ns"].clone()))
    };
    for node in ["gpu-kept", "gpu-other"] {
        assert_eq!(calls(&after, node), calls(&before, node), "{after:?}");
    }
    // A clean restart (the spans flushed to Parquet) rebuilds them too.
    assert!(server.terminate().success());
    let server = Server::start(dir.path(), &[]);
    let again: Vec<Value> = server.get("/api/signals?window=5m").json().unwrap();
    assert_eq!(
        calls(&again, "gpu-kept"),
        calls(&before, "gpu-kept"),
        "{again:?}"
    );
}
