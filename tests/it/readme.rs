//! README's examples, run as written: every `sh` block in bash (with
//! `cargo run --release --` standing for the `weft` binary under test), every
//! `sql` block through `weft sql` (the DuckDB one in DuckDB), every `python`
//! block in Python with the real client packages. They run against a
//! `weft serve` on README's own addresses (127.0.0.1:4317-4320 and 5433) in
//! a directory whose `./weft-data` the examples name, after `weft demo` (the
//! README's own first example) filled it. The few blocks not run here say
//! why in [`SKIPPED`]; each must still be in README, so a skip cannot
//! outlive its block.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Blocks not run here (matched by a line they hold), and why.
const SKIPPED: &[(&str, &str)] = &[
    (
        "cargo run --release -- serve",
        "the harness runs this server itself, with the PostgreSQL and Flight SQL listeners on",
    ),
    ("cargo test --workspace", "this test is part of that run"),
    (
        "cargo run --release -- tui ",
        "interactive: tests/it/tui.rs drives `weft tui` in a real terminal (tmux)",
    ),
    (
        "weft worker --listen",
        "needs an S3 bucket: tests/it/distributed.rs runs workers, weft serve --workers and \
         weft sql --workers on a data directory",
    ),
    (
        "weft serve --data-dir s3://",
        "needs an S3 bucket: tests/it/s3.rs and tests/it/fleet.rs run these against a real S3-compatible server",
    ),
];

/// Run after the server has stopped (it maintains the tables a server writes).
const AFTER_STOP: &str = "cargo run --release -- maintain";

/// README's addresses, which the examples use as written.
const ADDRESSES: [&str; 5] = [
    "127.0.0.1:4317",
    "127.0.0.1:4318",
    "127.0.0.1:4319",
    "127.0.0.1:4320",
    "127.0.0.1:5433",
];

#[derive(Debug)]
struct Block {
    lang: String,
    body: String,
    /// README's line the block starts on, for failure messages.
    line: usize,
}

/// The fenced code blocks of a Markdown text.
fn blocks(markdown: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (n, line) in markdown.lines().enumerate() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(lang)) => {
                open = Some(Block {
                    lang: lang.trim().to_owned(),
                    body: String::new(),
                    line: n + 1,
                })
            }
            (Some(_), Some(_)) => out.extend(open.take()),
            (Some(block), None) => {
                block.body.push_str(line);
                block.body.push('\n');
            }
            (None, None) => {}
        }
    }
    out
}

/// The statements of a SQL block (split at `;` ending a line, before any
/// `-- comment`).
fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in sql.lines() {
        current.push_str(line);
        current.push('\n');
        let code = line.split("--").next().unwrap_or_default();
        if code.trim_end().ends_with(';') {
            out.push(std::mem::take(&mut current));
        }
    }
    if current.lines().any(|l| {
        let l = l.trim();
        !l.is_empty() && !l.starts_with("--")
    }) {
        out.push(current);
    }
    out
}

fn weft() -> &'static str {
    env!("CARGO_BIN_EXE_weft")
}

/// The server; killed if the test ends without stopping it.
struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `weft serve` in `dir` on README's addresses, the PostgreSQL and Flight
/// SQL listeners on (its log in `dir/serve.log`); returns once it listens.
fn serve(dir: &Path) -> Serving {
    let log = std::fs::File::create(dir.join("serve.log")).unwrap();
    let mut child = Command::new(weft())
        .args([
            "serve",
            "--postgres",
            "127.0.0.1:5433",
            "--flight",
            "127.0.0.1:4320",
        ])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        line.starts_with("weft listening"),
        "weft serve did not start on README's addresses {ADDRESSES:?} (is something \
         else listening there? stop it): {}",
        std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default()
    );
    Serving(child)
}

/// Runs `script` in bash in `dir`: `cargo run --release --` is the binary
/// under test, `curl` fails on an HTTP error (a `--max-time` that ends a
/// stream is its expected end).
fn bash(dir: &Path, script: &str, line: usize) {
    let prelude = format!(
        r#"set -eo pipefail
cargo() {{
  if [ "$1 $2 $3" != "run --release --" ]; then echo "README runs cargo $*" >&2; return 2; fi
  shift 3; "{weft}" "$@"
}}
curl() {{
  local status=0
  command curl --fail-with-body "$@" || status=$?
  if [ "$status" = 28 ] && [[ " $* " == *" --max-time "* ]]; then status=0; fi
  return "$status"
}}
"#,
        weft = weft()
    );
    let out = Command::new("bash")
        .args(["-c", &format!("{prelude}{script}")])
        .current_dir(dir)
        .env_remove("WEFT_TOKEN")
        // README's token example reads it, as a user who configured tokens has it.
        .env("WEFT_INGEST_TOKEN", "0123456789abcdef0123456789abcdef")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "README.md line {line}: the sh block failed ({}):\n{script}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sql(dir: &Path, statement: &str, line: usize) {
    let out = Command::new(weft())
        .args(["sql", statement])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "README.md line {line}: `weft sql` failed on\n{statement}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn python(dir: &Path, script: &str, line: usize) {
    let out = common::python::python()
        .args(["-c", script])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "README.md line {line}: the python block failed:\n{script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// DuckDB with the `delta` extension from PyPI, as README's offline route says.
const DUCKDB: &str = r#"
import os, sys, duckdb, duckdb_extension_delta
con = duckdb.connect()
ext = os.path.join(os.path.dirname(duckdb_extension_delta.__file__), "extensions",
                   "v" + duckdb.__version__, "delta.duckdb_extension")
con.execute(f"LOAD '{ext}'")
for statement in sys.argv[1:]:
    con.execute(statement).fetch_arrow_table()
"#;

fn duckdb(dir: &Path, sql: &str, line: usize) {
    let out = common::python::python()
        .args(["-c", DUCKDB])
        .args(statements(sql))
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "README.md line {line}: DuckDB failed on\n{sql}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn readme_examples_run_as_written() {
    let readme = include_str!("../../README.md");
    let all = blocks(readme);
    for (pattern, _) in SKIPPED {
        assert!(
            all.iter().any(|b| b.body.contains(pattern)),
            "README no longer has the skipped block {pattern:?}: drop it from SKIPPED"
        );
    }
    let skipped = |b: &Block| SKIPPED.iter().any(|(p, _)| b.body.contains(p));
    assert!(all.iter().any(|b| b.body.contains(AFTER_STOP)));
    // TOML blocks are the config file's; the config tests parse them.
    let runnable: Vec<&Block> = all
        .iter()
        .filter(|b| b.lang != "toml" && !skipped(b))
        .collect();
    assert!(
        runnable
            .iter()
            .all(|b| ["sh", "sql", "python"].contains(&b.lang.as_str())),
        "a README block of a language this test does not run: {:?}",
        runnable.iter().map(|b| &b.lang).collect::<Vec<_>>()
    );
    assert!(
        runnable[0].body.contains("cargo run --release -- demo"),
        "README's first runnable example sends the demo workload"
    );

    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let mut server = serve(dir);
    // The demo first, as README orders it; then a trace of it stands in for
    // README's example trace ids.
    bash(dir, &runnable[0].body, runnable[0].line);
    let out = Command::new(weft())
        .args([
            "sql",
            "--format",
            "csv",
            "SELECT trace_id FROM spans WHERE name = 'incident triage' ORDER BY trace_id LIMIT 2",
        ])
        .output()
        .unwrap();
    let traces = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut traces = traces.lines().skip(1);
    let trace = traces
        .next()
        .expect("the demo's workflows are stored")
        .to_owned();
    let other = traces
        .next()
        .expect("the demo stores several workflows")
        .to_owned();
    let concrete = |body: &str| {
        body.replace("<trace_id>", &trace)
            .replace("<other_trace_id>", &other)
            .replace("0af7651916cd43dd8448eb211c80319c", &trace)
    };
    let mut after_stop = Vec::new();
    for block in &runnable[1..] {
        let body = concrete(&block.body);
        match block.lang.as_str() {
            "sh" if body.contains(AFTER_STOP) => after_stop.push((body, block.line)),
            "sh" => bash(dir, &body, block.line),
            "sql" if body.contains("delta_scan(") => duckdb(dir, &body, block.line),
            "sql" => {
                for statement in statements(&body) {
                    sql(dir, &statement, block.line);
                }
            }
            _ => python(dir, &body, block.line),
        }
    }
    Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(
        server.0.wait().unwrap().success(),
        "weft serve stopped cleanly"
    );
    for (body, line) in after_stop {
        bash(dir, &body, line);
    }
}

#[test]
fn statements_split_at_line_ends() {
    let split =
        statements("-- a question\nSELECT 1;  -- one\nSELECT 2\nFROM t;\n-- trailing note\n");
    assert_eq!(
        split,
        ["-- a question\nSELECT 1;  -- one\n", "SELECT 2\nFROM t;\n"]
    );
    let blocks = blocks("x\n```sh\necho hi\n```\n```sql\nSELECT 1;\n```\n");
    assert_eq!(
        blocks
            .iter()
            .map(|b| (b.lang.as_str(), b.body.as_str(), b.line))
            .collect::<Vec<_>>(),
        [("sh", "echo hi\n", 2), ("sql", "SELECT 1;\n", 5)]
    );
}
