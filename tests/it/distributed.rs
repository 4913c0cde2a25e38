//! SQL over workers (`weft worker`, datafusion-distributed): real worker
//! processes on 127.0.0.1, `weft sql --workers` and `weft serve --workers`
//! answer every query of `tests/fixtures/distributed_queries.sql` with the
//! rows one process gives; live (unflushed) spans travel with the plan; a
//! worker killed with SIGKILL makes the next query fail with a retryable
//! error that says so; a worker with a token refuses a coordinator without it.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use crate::common::{Server, weft, weft_ok};

/// A `weft worker` on an ephemeral loopback port, killed when dropped.
struct Worker {
    child: Child,
    addr: String,
}

impl Worker {
    fn start(data_dir: &str, env: &[(&str, &str)]) -> Worker {
        let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(["worker", "--listen", "127.0.0.1:0", "--data-dir", data_dir])
            .envs(env.iter().copied())
            .env("WEFT_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("addr="))
            .unwrap_or_else(|| panic!("no addr in {line:?}"))
            .to_owned();
        Worker { child, addr }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn fixture_queries() -> Vec<String> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/distributed_queries.sql"
    ))
    .unwrap();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("--"))
        .map(str::to_owned)
        .collect()
}

/// A data directory holding `workflows` demo workflows, all flushed (the
/// server stopped), and a config file that cuts scans into one task per few
/// bytes, so even these small tables spread over every worker.
fn demo_store(workflows: usize) -> (tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    server.run_demo(workflows);
    assert!(
        server.terminate().success(),
        "the final flush stores every span"
    );
    let data = dir.path().to_string_lossy().into_owned();
    let config = dir.path().join("workers.toml");
    std::fs::write(&config, "worker_bytes_per_task = 1\n").unwrap();
    (dir, data, config.to_string_lossy().into_owned())
}

fn sql_csv(data: &str, extra: &[&str], query: &str) -> String {
    let mut args = vec!["sql", "--data-dir", data, "--format", "csv"];
    args.extend_from_slice(extra);
    args.push(query);
    weft_ok(&args)
}

#[test]
fn workers_answer_every_fixture_query_as_one_process_does() {
    let (dir, data, config) = demo_store(60);
    let (a, b) = (Worker::start(&data, &[]), Worker::start(&data, &[]));
    let workers = format!("{},{}", a.addr, b.addr);
    let spread = ["--config", config.as_str(), "--workers", workers.as_str()];

    let queries = fixture_queries();
    assert!(queries.len() >= 8);
    for query in &queries {
        let local = sql_csv(&data, &[], query);
        assert!(local.lines().count() > 1, "{query} answers rows:\n{local}");
        assert_eq!(sql_csv(&data, &spread, query), local, "{query}");
    }

    // lineage() runs in the coordinator; its rows take part in the plan.
    let trace = sql_csv(
        &data,
        &[],
        "SELECT trace_id FROM spans WHERE parent_span_id IS NULL ORDER BY trace_id LIMIT 1",
    );
    let trace = trace.lines().nth(1).unwrap();
    let lineage = format!(
        "SELECT l.span_id, l.depth, s.name FROM lineage('{trace}') l \
         JOIN spans s ON s.span_id = l.span_id ORDER BY 1, 2, 3"
    );
    let local = sql_csv(&data, &[], &lineage);
    assert!(local.lines().count() > 2, "{local}");
    assert_eq!(sql_csv(&data, &spread, &lineage), local);

    // The same through a server's API, over what it has not flushed yet
    // (the live spans travel with the plan).
    // PostgreSQL's wire protocol (psql) distributes through the same session.
    let server = Server::start(
        dir.path(),
        &[
            "--config",
            &config,
            "--workers",
            &workers,
            "--postgres",
            "127.0.0.1:0",
        ],
    );
    server.run_demo(20);
    let per_kind = "SELECT ai_kind, count(*) AS n FROM spans GROUP BY 1 ORDER BY 1";
    let live: String = server
        .sql(per_kind)
        .iter()
        .map(|r| format!("{},{}\n", r["ai_kind"].as_str().unwrap(), r["n"]))
        .collect();
    let over_psql: String = crate::postgres::psql_lines(&server, per_kind)
        .iter()
        .map(|l| format!("{}\n", l.replace('|', ",")))
        .collect();
    assert_eq!(over_psql, live, "psql through the workers");
    let plan =
        crate::postgres::psql_lines(&server, &format!("EXPLAIN ANALYZE {per_kind}")).join("\n");
    assert!(
        plan.contains("Stage"),
        "psql's query ran in stages:\n{plan}"
    );
    assert!(server.terminate().success());
    assert_eq!(
        format!("ai_kind,n\n{live}"),
        sql_csv(&data, &[], per_kind),
        "the distributed group-by saw every live span"
    );

    // A worker killed with SIGKILL: a clear error that says to retry, never
    // a wrong answer.
    drop(b);
    let query = &queries[1];
    let out = weft(&[
        "sql",
        "--data-dir",
        &data,
        "--format",
        "csv",
        "--config",
        &config,
        "--workers",
        &workers,
        query,
    ]);
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("a worker of this query is unreachable or stopped")
            && stderr.contains("retry"),
        "{stderr}"
    );
    let server = Server::start(dir.path(), &["--config", &config, "--workers", &workers]);
    let response = reqwest::blocking::Client::new()
        .post(format!("http://{}/api/sql", server.api))
        .body(query.clone())
        .send()
        .unwrap();
    assert_eq!(response.status(), 503, "retryable over HTTP");
    drop(a);
}

#[test]
fn a_worker_with_a_token_refuses_a_coordinator_without_it() {
    let (_dir, data, config) = demo_store(5);
    // Two: over one worker datafusion-distributed plans no network stage.
    let token = [("WEFT_WORKER_TOKEN", "between-us")];
    let (a, b) = (Worker::start(&data, &token), Worker::start(&data, &token));
    let workers = format!("{},{}", a.addr, b.addr);
    // A scan (a bare count(*) is answered from the files' statistics).
    let query = "SELECT ai_kind, count(*) AS n FROM spans GROUP BY 1 ORDER BY 1";
    let args = [
        "sql",
        "--data-dir",
        &data,
        "--format",
        "csv",
        "--config",
        &config,
        "--workers",
        &workers,
        query,
    ];
    let refused = weft(&args);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("WEFT_WORKER_TOKEN"), "{stderr}");
    let allowed = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .env("WEFT_WORKER_TOKEN", "between-us")
        .output()
        .unwrap();
    assert!(
        allowed.status.success(),
        "{}",
        String::from_utf8_lossy(&allowed.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&allowed.stdout),
        sql_csv(&data, &[], query)
    );
}
