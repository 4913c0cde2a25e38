//! Live load signals end to end: the demo workload goes through a real OTLP
//! exporter into `weft serve`, and `GET /api/signals` answers per GPU node what
//! a scheduler needs — calls, errors, KV-cache hit rate, queue wait and
//! time-to-first-token percentiles, tokens — warmest cache first.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use common::Server;
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
    assert_eq!(server.get("/api/signals?window=1m").status(), 400);
}
