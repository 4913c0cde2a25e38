//! The SQL surfaces a user touches: `/api/sql` in JSON, CSV and Arrow IPC, the
//! read-only guard over HTTP, and `weft sql` against a server and against a
//! data directory with the server stopped.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use crate::common;

use common::Server;
use reqwest::blocking::Client;

const QUERY: &str = "SELECT name, ai_kind, input_tokens FROM spans WHERE ai_kind = 'llm'";

fn weft_sql(args: &[&str]) -> String {
    common::weft_ok(&[&["sql"], args].concat())
}

#[test]
fn sql_over_http_and_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    // The fixture's spans are from 2024: keep them.
    let server = Server::start(dir.path(), &["--retention-hours", "1000000"]);
    let client = Client::new();
    let fixture = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/trace_a.json"
    ))
    .unwrap();
    let sent = client
        .post(format!("http://{}/v1/traces", server.http))
        .header("content-type", "application/json")
        .body(fixture)
        .send()
        .unwrap();
    assert_eq!(sent.status(), 200);
    let api = format!("http://{}/api/sql", server.api);

    let csv = client
        .post(&api)
        .header("accept", "text/csv")
        .body(QUERY)
        .send()
        .unwrap();
    assert_eq!(csv.headers()["content-type"], "text/csv");
    assert_eq!(
        csv.text().unwrap(),
        "name,ai_kind,input_tokens\nchat gpt-4o,llm,1200\n"
    );

    let arrow = client
        .post(&api)
        .header("accept", "application/vnd.apache.arrow.stream")
        .body(r#"{"sql": "SELECT span_id, attributes, links FROM spans"}"#)
        .send()
        .unwrap();
    let reader = arrow::ipc::reader::StreamReader::try_new(
        std::io::Cursor::new(arrow.bytes().unwrap()),
        None,
    )
    .unwrap();
    let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, 6);

    // Nested columns render in CSV as JSON (a list, a map), quoted as CSV quotes.
    let nested = client
        .post(&api)
        .header("accept", "text/csv")
        .body(
            "SELECT retrieved_document_ids, map_extract(attributes, 'gen_ai.request.model') AS m, \
               attributes FROM spans WHERE retrieved_document_ids IS NOT NULL",
        )
        .send()
        .unwrap()
        .text()
        .unwrap();
    let mut lines = nested.lines();
    assert_eq!(lines.next(), Some("retrieved_document_ids,m,attributes"));
    let row = lines.next().unwrap();
    assert!(
        row.starts_with("\"[\"\"kb-1\"\",\"\"kb-2\"\"]\","),
        "{nested}"
    );
    let attributes = row
        .rsplit_once(",\"{")
        .map(|(_, m)| format!("{{{}", m.trim_end_matches('"')));
    let attributes: serde_json::Value =
        serde_json::from_str(&attributes.unwrap().replace("\"\"", "\"")).unwrap();
    assert!(attributes.is_object(), "a map is a JSON object: {nested}");

    // JSON rows keep null columns as null rather than dropping the key.
    let rows: Vec<serde_json::Value> = client
        .post(&api)
        .body("SELECT name, status_message FROM spans ORDER BY name LIMIT 2")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(rows.len(), 2);
    for row in &rows {
        let row = row.as_object().unwrap();
        assert!(row.contains_key("status_message"), "{row:?}");
    }
    assert!(rows.iter().any(|r| r["status_message"].is_null()));

    for (body, status, text) in [
        ("DROP TABLE spans", 400, "read-only"),
        ("SELECT nope FROM spans", 400, "nope"),
        ("", 400, "empty query"),
        (r#"{"query": "SELECT 1"}"#, 400, "expected {\"sql\""),
    ] {
        let response = client.post(&api).body(body).send().unwrap();
        assert_eq!(response.status().as_u16(), status, "{body}");
        let error: serde_json::Value = response.json().unwrap();
        assert!(
            error["error"].as_str().unwrap().contains(text),
            "{body}: {error}"
        );
    }

    let server_url = format!("http://{}", server.api);
    let table = weft_sql(&["--server", &server_url, QUERY]);
    assert!(
        table.contains("| chat gpt-4o | llm     | 1200         |"),
        "{table}"
    );
    let json: serde_json::Value = serde_json::from_str(&weft_sql(&[
        "--server",
        &server_url,
        "--format",
        "json",
        QUERY,
    ]))
    .unwrap();
    assert_eq!(json[0]["input_tokens"], 1200);

    // With the server stopped, the data directory answers the same.
    assert!(server.terminate().success());
    let csv = weft_sql(&[
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--format",
        "csv",
        QUERY,
    ]);
    assert_eq!(csv, "name,ai_kind,input_tokens\nchat gpt-4o,llm,1200\n");
    let failed = common::weft(&["sql", "--server", &server_url, "SELECT 1"]);
    assert!(!failed.status.success());
    assert!(String::from_utf8_lossy(&failed.stderr).contains("is `weft serve` running?"));
}

/// Runs `weft args` with its stdout a pipe whose reader goes away, as with
/// `| head -1`: after one line, or (`read_first` false) at once, before the
/// command has its answer from the server to write. Returns how it ended and
/// what it wrote to stderr.
fn with_stdout_closed(args: &[&str], read_first: bool) -> (std::process::ExitStatus, String) {
    use std::io::{BufRead, BufReader, Read};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    if read_first {
        let mut first = String::new();
        BufReader::new(stdout).read_line(&mut first).unwrap();
        assert!(!first.is_empty(), "weft {args:?} printed nothing");
    } else {
        drop(stdout);
    }
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (child.wait().unwrap(), stderr)
}

#[test]
fn a_closed_stdout_ends_a_command_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    server.run_demo(30);
    let api = format!("http://{}", server.api);
    // Far more than a pipe holds, so a write meets the closed pipe.
    let (status, stderr) = with_stdout_closed(
        &[
            "sql",
            "--server",
            &api,
            "SELECT s.* FROM spans s, spans t LIMIT 20000",
        ],
        true,
    );
    assert_eq!(status.signal(), Some(13), "ended by SIGPIPE: {status:?}");
    assert!(stderr.is_empty(), "{stderr}");
    // `weft lineage … --format dot | dot` without graphviz: the reader is
    // gone before the DOT is written.
    let trace = server.sql("SELECT trace_id FROM spans WHERE name = 'incident triage' LIMIT 1")[0]
        ["trace_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, stderr) = with_stdout_closed(
        &["lineage", &trace, "--server", &api, "--format", "dot"],
        false,
    );
    assert_eq!(status.signal(), Some(13), "{status:?}: {stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn a_query_may_start_with_a_comment() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let out = weft_sql(&[
        "--server",
        &format!("http://{}", server.api),
        "--format",
        "csv",
        "-- How many spans?\nSELECT count(*) AS n FROM spans",
    ]);
    assert_eq!(out.trim(), "n\n0");
}
