//! `weft tui` in a real terminal: tmux gives it a pseudo-terminal of a fixed
//! size, keys go in with `send-keys`, the screen comes back with
//! `capture-pane`. The server is a real `weft serve` fed by `weft demo`
//! (the OpenTelemetry SDK's exporter); the workflows list the TUI reads is
//! checked against `/api/workflows` and SQL.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::Server;
use serde_json::Value;

/// A tmux server of its own (`-L`), killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("tmux runs (the CI script installs it)");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts `command` in a 120×40 terminal.
    fn start(command: &str) -> Self {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let t = Self {
            socket: format!(
                "weft-test-{}-{}",
                std::process::id(),
                STARTED.fetch_add(1, Ordering::Relaxed)
            ),
        };
        t.tmux(&[
            "new-session",
            "-d",
            "-s",
            "tui",
            "-x",
            "120",
            "-y",
            "40",
            command,
        ]);
        t
    }

    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", "tui"])
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "tui"];
        args.extend(keys);
        self.tmux(&args);
    }

    /// The value of a tmux format (`#{alternate_on}`, `#{cursor_flag}`).
    fn format(&self, f: &str) -> String {
        self.tmux(&["display-message", "-p", "-t", "tui", f])
            .trim()
            .to_owned()
    }

    /// Waits until the screen shows everything in `want`; fails with the
    /// screen after a minute.
    fn wait_for(&self, want: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let screen = self.screen();
            if want.iter().all(|w| screen.contains(w)) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "the screen never showed {want:?}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

fn wait_for_file(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && text.contains("exit=")
        {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `weft tui` under a shell that records, after it exits, its exit status
/// and the terminal's settings (`stty -a`), then keeps the pane open.
fn tui_command(args: &str, after: &Path) -> String {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_weft"));
    format!(
        "{} tui {args}; echo exit=$? > {after}.tmp; stty -a >> {after}.tmp; mv {after}.tmp {after}; sleep 600",
        bin.display(),
        after = after.display()
    )
}

#[test]
fn the_tui_lists_opens_queries_and_gives_the_terminal_back() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    server.run_demo(30);

    // What the TUI reads: every demo workflow once, its linked traces with it.
    let listed: Vec<Value> = server.get("/api/workflows?since=1h").json().unwrap();
    let roots = server.count("SELECT count(*) AS n FROM spans WHERE parent_span_id IS NULL");
    let traces_listed: usize = listed
        .iter()
        .map(|w| w["traces"].as_array().unwrap().len())
        .sum();
    assert_eq!(listed.len(), 30, "one line per workflow");
    assert_eq!(traces_listed as i64, roots, "each trace in one workflow");
    let triage = listed
        .iter()
        .find(|w| w["name"] == "incident triage")
        .unwrap();
    assert_eq!(
        triage["traces"].as_array().unwrap().len(),
        2,
        "resumed in a linked trace"
    );
    // A workflow is flagged as failed exactly when one of its traces has a
    // failed span.
    let failed: Vec<Value> = server
        .sql("SELECT DISTINCT trace_id FROM spans WHERE status_code = 'error'")
        .into_iter()
        .map(|r| r["trace_id"].clone())
        .collect();
    assert!(!failed.is_empty(), "the demo has failures to flag");
    for w in &listed {
        let has_failure = w["traces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| failed.contains(t));
        assert_eq!(w["flags"]["error"], has_failure, "{w}");
    }

    let after = dir.path().join("after");
    let api = format!("http://{}", server.api);
    let tmux = Tmux::start(&tui_command(&format!("--server {api}"), &after));

    // The workflows view lists the demo's workflows.
    let screen = tmux.wait_for(&["incident triage", "support ticket", "code change request"]);
    assert!(screen.contains("of 30"), "{screen}");
    assert_eq!(
        tmux.format("#{alternate_on}"),
        "1",
        "drawn on the alternate screen"
    );

    // Enter opens a lineage with its AI steps and their details.
    tmux.keys(&["Enter"]);
    tmux.wait_for(&["steps", "[llm]", "span kind", "attributes ("]);

    // The help overlay lists every key; any key closes it.
    tmux.keys(&["?"]);
    tmux.wait_for(&["any key closes", "follow the span link"]);
    tmux.keys(&["Escape"]);

    // The SQL view runs its query and shows the result as a table.
    tmux.keys(&["3"]);
    tmux.wait_for(&["query · Enter runs"]);
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for(&["row(s)", "service_name", "llm-gateway"]);
    assert!(!screen.contains("error"), "{screen}");
    // A mistake is shown inline, and the TUI carries on.
    tmux.keys(&["Enter", "End", " nonsense", "Enter"]);
    tmux.wait_for(&[" error ", "nonsense"]);

    // The signals view shows the demo's GPU nodes.
    tmux.keys(&["4"]);
    tmux.wait_for(&["gpu-", "kv hit %"]);

    // The server goes away: the TUI says so and keeps retrying.
    server.kill();
    tmux.wait_for(&["server unreachable, retrying"]);

    // q goes back, q again quits, and the terminal is as it was.
    tmux.keys(&["q"]);
    tmux.wait_for(&["workflows · last 1h"]);
    tmux.keys(&["q"]);
    let report = wait_for_file(&after);
    assert!(report.starts_with("exit=0"), "{report}");
    let settings: Vec<&str> = report.split_whitespace().collect();
    for restored in ["icanon", "echo", "isig", "icrnl", "opost"] {
        assert!(
            settings.contains(&restored),
            "{restored} not restored: {report}"
        );
    }
    assert_eq!(
        tmux.format("#{alternate_on}"),
        "0",
        "back on the main screen"
    );
    assert_eq!(
        tmux.format("#{cursor_flag}"),
        "1",
        "the cursor is shown again"
    );
}

#[test]
fn explore_opens_a_data_directory_on_one_workflow() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    server.run_demo(3);
    let trace = server.sql(
        "SELECT trace_id FROM spans WHERE name = 'incident triage' AND parent_span_id IS NULL",
    )[0]["trace_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let after = dir.path().join("after");
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_weft"));
    let command = format!(
        "{} explore {trace} --data-dir {}; echo exit=$? > {after}.tmp; mv {after}.tmp {after}; sleep 600",
        bin.display(),
        dir.path().display(),
        after = after.display()
    );
    let tmux = Tmux::start(&command);
    // Opened straight on the workflow, both traces of it.
    tmux.wait_for(&["incident triage ·", "in 2 trace(s)", "remediation resumed"]);
    // Esc goes back to the list of the directory's workflows.
    tmux.keys(&["Escape"]);
    tmux.wait_for(&["of 3", "support ticket"]);
    tmux.keys(&["C-c"]);
    assert!(wait_for_file(&after).starts_with("exit=0"));
}

#[test]
fn the_tui_sends_its_token_and_says_when_it_has_none() {
    const INGEST: &str = "ingest-token-0123456789";
    const QUERY: &str = "query-token-0123456789ab";
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("weft.toml");
    std::fs::write(
        &config,
        format!(
            "[[tokens]]\nname = \"agents\"\nrole = \"ingest\"\ntoken = \"{INGEST}\"\n\n\
             [[tokens]]\nname = \"oncall\"\nrole = \"query\"\ntoken = \"{QUERY}\"\n"
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &["--config", config.to_str().unwrap()]);
    let demo = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["demo", "--workflows", "3", "--endpoint"])
        .arg(format!("http://{}", server.grpc))
        .env(
            "OTEL_EXPORTER_OTLP_HEADERS",
            format!("authorization=Bearer {INGEST}"),
        )
        .output()
        .unwrap();
    assert!(
        demo.status.success(),
        "{}",
        String::from_utf8_lossy(&demo.stderr)
    );
    let api = format!("http://{}", server.api);

    // WEFT_TOKEN, as weft sql reads it.
    let after = dir.path().join("after");
    let tmux = Tmux::start(&format!(
        "WEFT_TOKEN={QUERY} {}",
        tui_command(&format!("--server {api}"), &after)
    ));
    tmux.wait_for(&["of 3", "support ticket"]);
    tmux.keys(&["q"]);
    assert!(wait_for_file(&after).starts_with("exit=0"));
    drop(tmux);

    // Without one, the server's refusal is on the screen.
    let after = dir.path().join("after-no-token");
    let tmux = Tmux::start(&format!(
        "env -u WEFT_TOKEN {}",
        tui_command(&format!("--server {api}"), &after)
    ));
    let screen = tmux.wait_for(&["401"]);
    assert!(screen.contains("could not be listed"), "{screen}");
    assert!(!screen.contains("unreachable"), "{screen}");
    tmux.keys(&["q"]);
    assert!(wait_for_file(&after).starts_with("exit=0"));
}

/// The list the TUI refreshes every few seconds reuses a workflow's summary
/// only while its traces hold the same spans: a new span, a new linked trace
/// and a failure show on the next call.
#[test]
fn the_workflows_list_follows_new_spans() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let span = |trace: &str, id: &str, parent: Option<&str>, links: Value, error: bool| {
        let mut s = serde_json::json!({
            "traceId": trace, "spanId": id, "name": format!("step {id}"),
            "startTimeUnixNano": now.to_string(),
            "endTimeUnixNano": (now + 1_000_000).to_string(),
            "links": links,
        });
        if let Some(p) = parent {
            s["parentSpanId"] = Value::from(p);
        }
        if error {
            s["status"] = serde_json::json!({"code": 2});
        }
        server.send_json(&serde_json::json!({"resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
            "scopeSpans": [{"spans": [s]}]}]}));
    };
    let first = "0af7651916cd43dd8448eb211c800001";
    let list = || -> Vec<Value> { server.get("/api/workflows?since=1h").json().unwrap() };

    span(
        first,
        "00000000000000a1",
        None,
        serde_json::json!([]),
        false,
    );
    let w = list();
    assert_eq!(w.len(), 1);
    assert_eq!(
        (w[0]["spans"].as_u64(), w[0]["in_flight"].as_bool()),
        (Some(1), Some(true))
    );
    assert_eq!(list(), w, "unchanged: the same answer");

    span(
        first,
        "00000000000000a2",
        Some("00000000000000a1"),
        serde_json::json!([]),
        true,
    );
    let w = list();
    assert_eq!(w[0]["spans"], 2, "a new span in the trace");
    assert_eq!(w[0]["flags"]["error"], true);

    let second = "0af7651916cd43dd8448eb211c800002";
    span(
        second,
        "00000000000000b1",
        None,
        serde_json::json!([{"traceId": first, "spanId": "00000000000000a2"}]),
        false,
    );
    let w = list();
    assert_eq!(w.len(), 1, "a linked trace joins the workflow: {w:?}");
    assert_eq!(w[0]["traces"].as_array().unwrap().len(), 2);
    assert_eq!(w[0]["spans"], 3);
    assert_eq!(w[0]["trace_id"], first, "opened from its first root");
}
