//! What a full disk, failing flushes and a second process cannot do to
//! acknowledged spans (issue 10, items 1–4). A real `weft serve`, a real
//! size-limited filesystem (tmpfs), real kill -9.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use crate::common;

use std::process::Command;

use common::Server;
use common::tmpfs::Tmpfs;
use serde_json::{Value, json};

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// `n` spans of trace `trace`; each with an attribute of `pad` bytes.
fn spans(trace: u16, n: u16, pad: usize) -> Value {
    let start = now_ns();
    let spans: Vec<_> = (0..n)
        .map(|i| {
            json!({
                "traceId": format!("{trace:04x}{}", "ab".repeat(14)),
                "spanId": format!("{trace:04x}{i:04x}00000001"),
                "name": format!("step {i}"),
                "startTimeUnixNano": (start + u64::from(i)).to_string(),
                "endTimeUnixNano": (start + u64::from(i) + 1_000).to_string(),
                "attributes": [{"key": "pad", "value": {"stringValue": "p".repeat(pad)}}],
            })
        })
        .collect();
    json!({"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]})
}

/// Posts an OTLP/JSON export; the status, `Retry-After` and body.
fn post(server: &Server, body: &Value) -> (u16, Option<String>, String) {
    let response = reqwest::blocking::Client::new()
        .post(format!("http://{}/v1/traces", server.http))
        .json(body)
        .send()
        .unwrap();
    let status = response.status().as_u16();
    let retry = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, retry, response.text().unwrap())
}

/// One number from `weft sql --data-dir` (the tables and the WAL there).
fn count(dir: &std::path::Path, sql: &str) -> i64 {
    let dir = dir.to_str().unwrap();
    common::weft_ok(&["sql", "--data-dir", dir, "--format", "csv", sql])
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Item 1 and 2: a WAL record that does not fit on the disk is refused
/// (retryable) and leaves the log as it was; records acknowledged after it,
/// and its own retry once there is room, survive kill -9 exactly once.
#[test]
fn a_wal_write_that_fills_the_disk_loses_nothing_acknowledged_after_it() {
    let disk = Tmpfs::mount("6m");
    let data = tempfile::tempdir().unwrap();
    let wal = disk.path().join("wal");
    let start = |data: &std::path::Path| {
        Server::start_at(
            data.to_str().unwrap(),
            &[
                "--wal-dir",
                wal.to_str().unwrap(),
                "--flush-interval-secs",
                "3600",
            ],
            &[],
        )
    };
    let server = start(data.path());
    for t in 0..5 {
        assert_eq!(post(&server, &spans(t, 10, 100)).0, 200);
    }
    // Less room than the next record needs: it is cut short by ENOSPC.
    disk.fill(700 * 1024);
    // Six spans of 250 KB (under the 256 KiB attribute cap): a 1.5 MB record.
    let big = spans(100, 6, 250_000);
    let (status, retry, body) = post(&server, &big);
    assert_eq!(status, 503, "{body}");
    assert!(retry.is_some(), "a full disk is retryable: Retry-After");
    assert!(body.contains("No space left"), "{body}");
    // The partial record is gone: the room it took is free again.
    for t in 5..10 {
        let (status, _, body) = post(&server, &spans(t, 10, 100));
        assert_eq!(status, 200, "acknowledged after the failure: {body}");
    }
    // Room again: the client's retry of the big one is taken.
    disk.free();
    assert_eq!(post(&server, &big).0, 200);
    server.kill();

    let server = start(data.path());
    assert_eq!(server.count("SELECT count(*) AS n FROM spans"), 106);
    assert_eq!(
        server.count("SELECT count(DISTINCT span_id) AS n FROM spans"),
        106
    );
    assert_eq!(
        server.count("SELECT count(*) AS n FROM spans WHERE length(attributes['pad']) = 250000"),
        6
    );
    drop(server);
}

/// Item 3: a second `weft serve` on the same WAL exits with a message that
/// names the holder; read-only commands still work beside the first.
#[test]
fn a_second_server_on_the_same_wal_is_refused_and_readers_still_work() {
    let data = tempfile::tempdir().unwrap();
    let first = Server::start(data.path(), &["--flush-interval-secs", "3600"]);
    assert_eq!(post(&first, &spans(1, 20, 10)).0, 200);

    let mut second = Command::new(env!("CARGO_BIN_EXE_weft"))
        .arg("serve")
        .arg("--data-dir")
        .arg(data.path())
        .args(["--otlp-grpc", "127.0.0.1:0", "--otlp-http", "127.0.0.1:0"])
        .args(["--api", "127.0.0.1:0"])
        .env("WEFT_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while second.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            second.kill().unwrap();
            panic!("a second weft serve on the same WAL kept running");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let second = second.wait_with_output().unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("in use by another weft process")
            && stderr.contains(&format!("pid {}", first.pid())),
        "{stderr}"
    );
    // The reader sees the first server's spans (in its WAL) once.
    assert_eq!(count(data.path(), "SELECT count(*) FROM spans"), 20);
    assert_eq!(post(&first, &spans(2, 20, 10)).0, 200);
    first.kill();
    let again = Server::start(data.path(), &[]);
    assert_eq!(again.count("SELECT count(*) AS n FROM spans"), 40);
}

/// Item 4: while flushes keep failing, ingest stops acknowledging at
/// `max_unflushed_spans` (503, Retry-After) instead of growing; queries still
/// work; a restart without the fault stores what was acknowledged, once.
#[test]
fn failing_flushes_bound_the_backlog_and_keep_queries_working() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_with_config_env(
        data.path(),
        "max_unflushed_spans = 100\n",
        &["--flush-interval-secs", "0.1"],
        &[("WEFT_FAULT".into(), "flush.files_written".into())],
    );
    let mut acknowledged = 0;
    let mut refused = None;
    for t in 0..6 {
        let (status, retry, body) = post(&server, &spans(t, 30, 10));
        match status {
            200 => acknowledged += 30,
            503 => {
                assert!(retry.is_some(), "{body}");
                refused = Some(body);
            }
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!(
        acknowledged, 90,
        "100 spans may wait; the fourth request of 30 is refused"
    );
    let refused = refused.expect("a request was refused");
    assert!(refused.contains("waiting to be written"), "{refused}");
    assert_eq!(server.count("SELECT count(*) AS n FROM spans"), 90);
    let metrics = server.get("/metrics").text().unwrap();
    assert!(
        metrics.contains("weft_requests_refused_backlog_total 3"),
        "{metrics}"
    );
    // The flusher (every 0.1 s) counts its failures.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while server
        .get("/metrics")
        .text()
        .unwrap()
        .contains("weft_flushes_failed_total 0\n")
    {
        assert!(std::time::Instant::now() < deadline, "no flush failed");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    server.kill();

    let server = Server::start_at(data.path().join("data").to_str().unwrap(), &[], &[]);
    assert_eq!(server.count("SELECT count(*) AS n FROM spans"), 90);
    assert_eq!(
        server.count("SELECT count(DISTINCT span_id) AS n FROM spans"),
        90
    );
    drop(server);
}

/// A request refused because the buffer is full starts a flush, even when
/// the buffer is short of `flush_max_rows` (here equal to the bound, so 90
/// waiting spans never reach it) and the flush interval is an hour away:
/// the client's retry is then taken, not refused until the interval.
#[test]
fn a_backlog_refusal_starts_a_flush() {
    let data = tempfile::tempdir().unwrap();
    let config = "max_unflushed_spans = 100\nflush_max_rows = 100\n";
    let server = Server::start_with_config(data.path(), config, &["--flush-interval-secs", "3600"]);
    for t in 0..3 {
        assert_eq!(post(&server, &spans(t, 30, 10)).0, 200);
    }
    let (status, retry, body) = post(&server, &spans(3, 30, 10));
    assert_eq!(status, 503, "{body}");
    assert!(retry.is_some(), "{body}");
    // Retried as an exporter would, until taken; only a flush makes room.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (status, _, body) = post(&server, &spans(3, 30, 10));
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(
            std::time::Instant::now() < deadline,
            "still refused: no flush started ({body})"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let metrics = server.get("/metrics").text().unwrap();
    assert!(!metrics.contains("weft_flushes_total 0\n"), "{metrics}");
    assert_eq!(server.count("SELECT count(*) AS n FROM spans"), 120);
}

/// Item 4: a server whose disk is full still starts, replays its WAL, answers
/// queries, and refuses new spans as retryable.
#[test]
fn a_server_on_a_full_disk_starts_and_answers_queries() {
    let disk = Tmpfs::mount("16m");
    let data = disk.path().join("data");
    let start = || {
        Server::start_at(
            data.to_str().unwrap(),
            &["--flush-interval-secs", "3600"],
            &[],
        )
    };
    let server = start();
    for t in 0..4 {
        assert_eq!(post(&server, &spans(t, 25, 10)).0, 200);
    }
    server.kill();
    disk.fill(0);

    let server = start();
    assert_eq!(server.count("SELECT count(*) AS n FROM spans"), 100);
    let (status, retry, body) = post(&server, &spans(9, 5, 10));
    assert_eq!(status, 503, "{body}");
    assert!(retry.is_some(), "{body}");
    // Room again: the spans are taken and everything is stored once.
    disk.free();
    assert_eq!(post(&server, &spans(9, 5, 10)).0, 200);
    assert!(server.terminate().success());
    let server = start();
    assert_eq!(
        server.count("SELECT count(DISTINCT span_id) AS n FROM spans"),
        105
    );
    assert_eq!(server.count("SELECT count(*) AS n FROM spans"), 105);
    drop(server);
}

/// A start that fails on a port in use leaves nothing on disk; a reader
/// pointed at a directory Weft never wrote says so instead of answering 0.
#[test]
fn a_failed_start_leaves_nothing_and_a_wrong_directory_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let data = dir.path().join("data");
    let out = common::weft(&[
        "serve",
        "--data-dir",
        data.to_str().unwrap(),
        "--otlp-grpc",
        &taken.local_addr().unwrap().to_string(),
        "--otlp-http",
        "127.0.0.1:0",
        "--api",
        "127.0.0.1:0",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--otlp-grpc"), "{stderr}");
    assert!(!data.exists(), "a failed start created {}", data.display());

    let empty = tempfile::tempdir().unwrap();
    let out = common::weft(&[
        "sql",
        "--data-dir",
        empty.path().to_str().unwrap(),
        "SELECT count(*) FROM spans",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("holds no Weft tables"), "{stderr}");
}
