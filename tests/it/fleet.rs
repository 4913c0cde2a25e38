//! Several collectors on one S3 location (a real S3 server, moto's) or one
//! shared directory, the
//! spans of every trace spread over all of them round-robin, as a load
//! balancer spreads them: one collector settles every writer's traces
//! (`settle = "fleet"`), the others none (`settle = "none"`). The settler is
//! aborted between its commits, and later killed with SIGKILL, as is another
//! collector while they commit; two maintenance runs overlap the flushes. Every
//! acknowledged span is stored exactly once (read back with the Python
//! `deltalake` package), every collector sees every span within the flush
//! and refresh intervals, and each trace's structure and lineage are exactly
//! those one collector receiving everything stores.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::s3::S3;
use crate::common::{self, Server};

const TRACES: u32 = 6;
/// Spans per trace: a binary tree, span `i`'s parent is `(i - 1) / 2`.
const SPANS: u32 = 42;
/// Each round sends this many more spans of every trace.
const PER_ROUND: u32 = 7;

fn trace_id(t: u32) -> String {
    format!("{:08x}{}", 0xf1ee_0000u32 + t, "cd".repeat(12))
}

fn span_id(t: u32, i: u32) -> String {
    format!("{t:04x}{i:04x}5a5a5a5a")
}

/// The OTLP/JSON spans of `round` that go to collector `to` of three: span
/// `i` of trace `t` goes to `(i + t) % 3`, so every trace reaches all three
/// and children often arrive before their parents.
fn round(base: u64, round: u32, to: u32) -> Value {
    let mut spans = Vec::new();
    for t in 0..TRACES {
        for i in round * PER_ROUND..(round + 1) * PER_ROUND {
            if (i + t) % 3 != to {
                continue;
            }
            let start = base + u64::from(t) * 1_000_000 + u64::from(i) * 1_000;
            let mut span = json!({
                "traceId": trace_id(t),
                "spanId": span_id(t, i),
                "name": format!("step {i}"),
                "kind": 1,
                "startTimeUnixNano": start.to_string(),
                "endTimeUnixNano": (start + 500_000).to_string(),
            });
            if i > 0 {
                span["parentSpanId"] = json!(span_id(t, (i - 1) / 2));
            }
            spans.push(span);
        }
    }
    json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "fleet"}}]},
        "scopeSpans": [{"spans": spans}]
    }]})
}

const STRUCTURE: &str = "SELECT trace_id, span_id, root_span_id, depth, nested_left, nested_right, \
     orphan FROM span_structure ORDER BY trace_id, nested_left";

fn total() -> i64 {
    i64::from(TRACES * SPANS)
}

/// Polls `server` until `query` counts `expected` or 60 s pass.
fn eventually(server: &Server, query: &str, expected: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = server.count(query);
        if n == expected || Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What of a lineage answer must not depend on which collector received
/// which span, with nodes named by span id (their order is the order spans
/// were read in): the spans, the edges, the critical path, the anomalies and
/// the summary.
fn lineage_shape(server: &Server, t: u32) -> Value {
    let response = server.get(&format!("/api/lineage/{}", trace_id(t)));
    assert_eq!(response.status(), 200);
    let page: Value = response.json().unwrap();
    let spans: Vec<&str> = page["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["span_id"].as_str().unwrap())
        .collect();
    let node = |v: &Value| spans[v.as_u64().unwrap() as usize];
    let mut edges: Vec<(&str, &str, &str)> = page["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                node(&e["from"]),
                node(&e["to"]),
                e["kind"].as_str().unwrap(),
            )
        })
        .collect();
    edges.sort();
    let critical: Vec<&str> = page["critical_path"]
        .as_array()
        .unwrap()
        .iter()
        .map(node)
        .collect();
    let mut sorted = spans.clone();
    sorted.sort();
    json!({
        "spans": sorted,
        "edges": edges,
        "critical_path": critical,
        "anomalies": page["anomalies"],
        "summary": page["summary"],
    })
}

/// The spans `server` does not show, as (trace, span, collector it was
/// sent to, round).
fn missing(server: &Server) -> Vec<(u32, u32, u32, u32)> {
    let seen: std::collections::HashSet<String> = server
        .sql("SELECT span_id FROM spans")
        .iter()
        .map(|r| r["span_id"].as_str().unwrap().to_owned())
        .collect();
    let mut out = Vec::new();
    for t in 0..TRACES {
        for i in 0..SPANS {
            if !seen.contains(&span_id(t, i)) {
                out.push((t, i, (i + t) % 3, i / PER_ROUND));
            }
        }
    }
    out
}

fn config(dir: &std::path::Path, name: &str, settle: &str) -> String {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!("settle = \"{settle}\"\nflush_interval_secs = 0.3\nrefresh_secs = 0.3\n"),
    )
    .unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn three_collectors_on_one_s3_location_store_each_trace_as_one_collector_would() {
    let s3 = S3::start();
    s3.create_bucket("fleet");
    three_collectors_store_each_trace_as_one_collector_would("s3://fleet/traces", &s3.env());
}

#[test]
fn three_collectors_on_one_shared_directory_store_each_trace_as_one_collector_would() {
    let shared = tempfile::tempdir().unwrap();
    three_collectors_store_each_trace_as_one_collector_would(
        &shared.path().join("traces").to_string_lossy(),
        &[],
    );
}

fn three_collectors_store_each_trace_as_one_collector_would(
    location: &str,
    env: &[(String, String)],
) {
    let local = tempfile::tempdir().unwrap();
    let wal = |name: &str| local.path().join(name).to_string_lossy().into_owned();
    let roles = [("a", "fleet"), ("b", "none"), ("c", "none")];
    let start = |n: usize, fault: Option<&str>| {
        let (name, role) = roles[n];
        let mut env = env.to_vec();
        if let Some(fault) = fault {
            env.push(("WEFT_FAULT".into(), fault.into()));
        }
        Server::start_at(
            location,
            &[
                "--wal-dir",
                &wal(name),
                "--config",
                &config(local.path(), name, role),
            ],
            &env,
        )
    };
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        - 60_000_000_000;
    let rounds = SPANS / PER_ROUND;

    // The fleet settler aborts after its first flush committed spans and
    // links but not structure; B and C write on meanwhile.
    let mut collectors = vec![
        start(0, Some("abort:flush.committed.span_links")),
        start(1, None),
        start(2, None),
    ];
    for (to, c) in collectors.iter().enumerate() {
        c.send_json(&round(base, 0, to as u32));
    }
    let aborted = collectors.remove(0);
    assert!(
        !aborted.wait_exit().success(),
        "the settler aborts at its fault point"
    );
    collectors.insert(0, start(0, None));

    for r in 1..rounds {
        for (to, c) in collectors.iter().enumerate() {
            c.send_json(&round(base, r, to as u32));
        }
        if r == 2 {
            // SIGKILL while the three flush and commit every 0.3 s: B's
            // acknowledged spans are in its WAL only until it restarts.
            collectors.remove(1).kill();
            collectors.insert(1, start(1, None));
        }
        if r == 4 {
            // SIGKILL of the settler once it has settled the others' files
            // for a while: it resumes from what its last commit recorded.
            collectors.remove(0).kill();
            collectors.insert(0, start(0, None));
        }
        if r == 3 {
            // Two maintenance runs at once, beside the collectors' commits.
            let maintain = || {
                Command::new(env!("CARGO_BIN_EXE_weft"))
                    .args(["maintain", "--data-dir", location])
                    .envs(env.iter().map(|(k, v)| (k, v)))
                    .env("WEFT_LOG", "warn")
                    .spawn()
                    .unwrap()
            };
            let (mut one, mut two) = (maintain(), maintain());
            let ok = [one.wait().unwrap(), two.wait().unwrap()];
            assert!(ok.iter().any(|s| s.success()), "{ok:?}");
        }
        std::thread::sleep(Duration::from_millis(400));
    }

    // Every collector sees every span, and the settler's structure of each.
    let n = total();
    for (k, c) in collectors.iter().enumerate() {
        let seen = eventually(c, "SELECT count(*) AS n FROM spans", n);
        assert_eq!(seen, n, "collector {k} misses {:?}", missing(c));
        assert_eq!(
            eventually(c, "SELECT count(*) AS n FROM span_structure", n),
            n
        );
    }
    let a = &collectors[0];
    assert_eq!(a.count("SELECT count(DISTINCT span_id) AS n FROM spans"), n);
    assert_eq!(
        a.count("SELECT count(*) AS n FROM span_structure WHERE orphan"),
        0,
        "no span of a spread trace is an orphan"
    );
    assert_eq!(
        a.count("SELECT count(*) AS n FROM span_structure WHERE depth = 0"),
        i64::from(TRACES),
        "one root per trace"
    );
    // Trace by id from a collector that received a third of each trace.
    for t in 0..TRACES {
        let response = collectors[1].get(&format!("/api/traces/{}", trace_id(t)));
        assert_eq!(response.status(), 200);
        let body: Value = response.json().unwrap();
        let spans: usize = body["resourceSpans"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r["scopeSpans"].as_array().unwrap())
            .map(|s| s["spans"].as_array().unwrap().len())
            .sum();
        assert_eq!(spans, SPANS as usize, "trace {t}");
    }
    let fleet_structure = a.sql(STRUCTURE);
    let fleet_lineage: Vec<Value> = (0..TRACES)
        .map(|t| lineage_shape(&collectors[2], t))
        .collect();

    // Stopped cleanly, nothing is left in a WAL and the S3 tables hold every
    // acknowledged span exactly once, for an independent reader too.
    for c in collectors {
        assert!(c.terminate().success());
    }
    assert_eq!(
        common::python::delta_span_ids(location, env),
        format!("{n} {n}")
    );

    // One collector receiving everything, in the same rounds.
    let single_dir = tempfile::tempdir().unwrap();
    let single = Server::start(
        single_dir.path(),
        &["--config", &config(local.path(), "single", "own")],
    );
    for r in 0..rounds {
        for to in 0..3 {
            single.send_json(&round(base, r, to));
        }
        std::thread::sleep(Duration::from_millis(400));
    }
    assert_eq!(
        eventually(&single, "SELECT count(*) AS n FROM span_structure", n),
        n
    );
    assert_eq!(single.sql(STRUCTURE), fleet_structure);
    for (t, shape) in (0..TRACES).zip(&fleet_lineage) {
        assert_eq!(&lineage_shape(&single, t), shape, "trace {t}");
    }
    let depths: BTreeMap<i64, i64> = single
        .sql("SELECT depth, count(*) AS n FROM span_structure GROUP BY depth")
        .iter()
        .map(|r| (r["depth"].as_i64().unwrap(), r["n"].as_i64().unwrap()))
        .collect();
    // 42 spans of a binary tree: 1, 2, 4, 8, 16 and 11 at depths 0..=5.
    let per_trace = [1, 2, 4, 8, 16, 11];
    let expected: BTreeMap<i64, i64> = per_trace
        .iter()
        .enumerate()
        .map(|(d, k)| (d as i64, k * i64::from(TRACES)))
        .collect();
    assert_eq!(depths, expected);
}
