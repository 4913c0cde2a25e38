//! Tables on S3-compatible object storage, against a real S3 server (moto's,
//! installed from PyPI on first use): two collectors, each with its own local
//! WAL, write the same tables at once; a `--no-ingest` query node sees both;
//! a collector killed with SIGKILL after acknowledging loses nothing and
//! duplicates nothing; `weft sql`, `weft maintain` and the Python `deltalake`
//! package work on the `s3://` location.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use crate::common;

use std::process::Command;

use common::Server;
use common::s3::S3;

/// `n` spans of one trace, ids unique by `(collector, batch)`, starting now.
fn batch(collector: u8, batch: u8, n: u8) -> serde_json::Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let spans: Vec<_> = (0..n)
        .map(|i| {
            serde_json::json!({
                "traceId": format!("{collector:02x}{batch:02x}{}", "ab".repeat(14)),
                "spanId": format!("{collector:02x}{batch:02x}{i:02x}0000000000"),
                "name": format!("collector {collector} batch {batch} span {i}"),
                "startTimeUnixNano": (now + u64::from(i)).to_string(),
                "endTimeUnixNano": (now + u64::from(i) + 1_000).to_string(),
            })
        })
        .collect();
    serde_json::json!({"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]})
}

fn weft_with_env(args: &[&str], env: &[(String, String)]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("WEFT_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "weft {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

const COUNT: &str = "SELECT count(*) AS n FROM spans";
const DISTINCT: &str = "SELECT count(DISTINCT span_id) AS n FROM spans";

#[test]
fn two_collectors_share_s3_tables_and_a_query_node_sees_both() {
    let s3 = S3::start();
    s3.create_bucket("weft");
    let env = s3.env();
    let location = "s3://weft/traces";
    let local = tempfile::tempdir().unwrap();
    let wal = |name: &str| local.path().join(name).to_string_lossy().into_owned();
    let collector = |name: &str| {
        Server::start_at(
            location,
            &["--wal-dir", &wal(name), "--flush-interval-secs", "0.3"],
            &env,
        )
    };
    let a = collector("a");
    let b = collector("b");
    let config = local.path().join("query.toml");
    std::fs::write(&config, "refresh_secs = 0.5\n").unwrap();
    let query = Server::start_at(
        location,
        &["--no-ingest", "--config", config.to_str().unwrap()],
        &env,
    );

    // Both collectors write at once; each flush commits to the same tables.
    for n in 0..4 {
        a.send_json(&batch(1, n, 25));
        b.send_json(&batch(2, n, 25));
    }
    assert_eq!(query.wait_for_count(COUNT, 200), 200);
    assert_eq!(query.count(DISTINCT), 200);
    assert_eq!(
        query.count("SELECT count(DISTINCT trace_id) AS n FROM span_structure"),
        8
    );

    // SIGKILL right after acknowledging: the spans are in A's WAL only.
    a.send_json(&batch(1, 9, 30));
    a.kill();
    let a = collector("a");
    assert_eq!(query.wait_for_count(COUNT, 230), 230);
    assert_eq!(query.count(DISTINCT), 230);
    // A client retry of acknowledged spans is not stored twice.
    a.send_json(&batch(1, 9, 30));
    let status = a.terminate();
    assert!(status.success());
    b.terminate();

    // The command line reads the S3 location directly, at its latest version
    // (no refresh to wait for): every span once, the retry included.
    let sql = |q: &str| weft_with_env(&["sql", "--data-dir", location, "--format", "csv", q], &env);
    let stored = "SELECT count(*) AS n, count(DISTINCT span_id) AS d FROM spans";
    assert_eq!(sql(stored), "n,d\n230,230\n");

    // So does an independent reader.
    assert_eq!(common::python::delta_span_ids(location, &env), "230 230");

    // Maintenance on S3: every table's small files merge; nothing is lost.
    let report = weft_with_env(
        &[
            "maintain",
            "--data-dir",
            location,
            "--vacuum-grace-secs",
            "0",
        ],
        &env,
    );
    assert!(!report.contains("compacted_files=0 "), "{report}");
    assert_eq!(sql(stored), "n,d\n230,230\n");
    // The query node answers "retry" until it has re-read the compacted
    // tables (its refresh is 0.5 s; polled for), then every span once. The
    // poll reads span values: a bare `count(*)` may be answered from the
    // footers it cached, which describe its older snapshot.
    let mut answered = None;
    for _ in 0..200 {
        let answer = reqwest::blocking::Client::new()
            .post(format!("http://{}/api/sql", query.api))
            .body(DISTINCT)
            .send()
            .unwrap();
        let status = answer.status();
        let text = answer.text().unwrap();
        if status == 200 {
            answered = Some(text);
            break;
        }
        assert_eq!(status, 503, "only a retry may come before: {text}");
        assert!(text.contains("the tables changed"), "{text}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let rows: serde_json::Value = serde_json::from_str(&answered.expect("answered")).unwrap();
    assert_eq!(rows[0]["n"], 230, "{rows}");
    assert_eq!(query.count(COUNT), 230);
}

#[test]
fn a_missing_bucket_is_said_once_with_what_to_do() {
    let s3 = S3::start();
    let local = tempfile::tempdir().unwrap();
    let wal = local.path().join("wal");
    let output = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args([
            "serve",
            "--data-dir",
            "s3://no-such-bucket/weft",
            "--wal-dir",
            &wal.to_string_lossy(),
            "--otlp-grpc",
            "127.0.0.1:0",
            "--otlp-http",
            "127.0.0.1:0",
            "--api",
            "127.0.0.1:0",
        ])
        .envs(s3.env())
        .env("WEFT_LOG", "warn")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The S3 error body (its XML) once, not once per layer that wraps it.
    assert_eq!(
        stderr.matches("<Code>NoSuchBucket</Code>").count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains("the bucket does not exist"), "{stderr}");
}
