//! Test helpers: a real `weft serve` child process on ephemeral loopback ports.

#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Runs the `weft` binary with `args` and waits for it.
/// The value of the unlabelled metric `name` in a `/metrics` text.
pub fn metric(metrics: &str, name: &str) -> Option<u64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|n| n.trim().parse().ok())
}

pub fn weft(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .output()
        .expect("weft binary runs")
}

/// Runs the `weft` binary with `args`, asserts it succeeded, and returns its stdout.
pub fn weft_ok(args: &[&str]) -> String {
    let output = weft(args);
    assert!(
        output.status.success(),
        "weft {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// An OpenTelemetry SDK tracer provider exporting to `server` over OTLP/gRPC
/// with the real batch exporter, for `service`. Call it inside a Tokio runtime
/// (`runtime.enter()`); flush and shut it down to send everything.
pub fn grpc_tracer_provider(
    server: &Server,
    service: &'static str,
) -> opentelemetry_sdk::trace::SdkTracerProvider {
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(format!("http://{}", server.grpc))
        .build()
        .unwrap();
    opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service)
                .build(),
        )
        .build()
}

/// `google.rpc.Status`, the body of an OTLP/HTTP error in protobuf.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// A running `weft serve`, killed when dropped.
pub struct Server {
    child: Child,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub api: SocketAddr,
    /// The PostgreSQL and Flight SQL listeners, when started with
    /// `--postgres` / `--flight`.
    pub postgres: Option<SocketAddr>,
    pub flight: Option<SocketAddr>,
    pub dir: PathBuf,
}

fn optional_field(line: &str, key: &str) -> Option<SocketAddr> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .map(|a| {
            a.parse()
                .unwrap_or_else(|_| panic!("bad {key} in {line:?}"))
        })
}

fn field(line: &str, key: &str) -> SocketAddr {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
}

impl Server {
    /// `GET` on the query API.
    pub fn get(&self, path: &str) -> reqwest::blocking::Response {
        reqwest::blocking::get(format!("http://{}{path}", self.api)).unwrap()
    }

    /// Sends `workflows` demo workflows over OTLP/gRPC with `weft demo`.
    pub fn run_demo(&self, workflows: usize) {
        let output = weft(&[
            "demo",
            "--workflows",
            &workflows.to_string(),
            "--endpoint",
            &format!("http://{}", self.grpc),
        ]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Starts `weft serve` on port 0 everywhere, with extra flags.
    pub fn start(dir: &Path, extra: &[&str]) -> Server {
        Server::start_at(&dir.to_string_lossy(), extra, &[])
    }

    /// Starts `weft serve` on `dir/data` with the config file `config`
    /// (TOML, written to `dir/weft.toml`) and extra flags.
    pub fn start_with_config(dir: &Path, config: &str, extra: &[&str]) -> Server {
        Server::start_with_config_env(dir, config, extra, &[])
    }

    /// [`Server::start_with_config`] with environment variables (`WEFT_FAULT`).
    pub fn start_with_config_env(
        dir: &Path,
        config: &str,
        extra: &[&str],
        env: &[(String, String)],
    ) -> Server {
        let path = dir.join("weft.toml");
        std::fs::write(&path, config).unwrap();
        let mut args = vec!["--config", path.to_str().unwrap()];
        args.extend_from_slice(extra);
        Server::start_at(&dir.join("data").to_string_lossy(), &args, env)
    }

    /// Starts `weft serve` on a data location (a directory or a URL) with
    /// extra flags and environment; `--no-ingest` servers answer on the API only.
    pub fn start_at(location: &str, extra: &[&str], env: &[(String, String)]) -> Server {
        let ports: &[&str] = if extra.contains(&"--no-ingest") {
            &["--api", "127.0.0.1:0"]
        } else {
            &[
                "--otlp-grpc",
                "127.0.0.1:0",
                "--otlp-http",
                "127.0.0.1:0",
                "--api",
                "127.0.0.1:0",
            ]
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
            .arg("serve")
            .arg("--data-dir")
            .arg(location)
            .args(ports)
            .args(extra)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("WEFT_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("weft binary starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read stdout");
        assert!(
            line.starts_with("weft listening"),
            "unexpected first line: {line:?}"
        );
        let api = field(&line, "api");
        let ingest = !line.contains("no_ingest=true");
        let server = Server {
            grpc: if ingest {
                field(&line, "otlp_grpc")
            } else {
                api
            },
            http: if ingest {
                field(&line, "otlp_http")
            } else {
                api
            },
            api,
            postgres: optional_field(&line, "postgres"),
            flight: optional_field(&line, "flight"),
            child,
            dir: PathBuf::from(location),
        };
        server.wait_healthy();
        server
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(r) = reqwest::blocking::get(format!("http://{}/healthz", self.api))
                && r.status().is_success()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("weft did not become healthy");
    }

    pub fn is_healthy(&self) -> bool {
        reqwest::blocking::get(format!("http://{}/healthz", self.api))
            .is_ok_and(|r| r.status().is_success())
    }

    /// The service of an LLM span (after `run_demo`).
    pub fn llm_service(&self) -> String {
        self.sql("SELECT service_name FROM spans WHERE ai_kind = 'llm' LIMIT 1")[0]["service_name"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Runs SQL through the API; rows as JSON objects.
    pub fn sql(&self, query: &str) -> Vec<Value> {
        let response = reqwest::blocking::Client::new()
            .post(format!("http://{}/api/sql", self.api))
            .body(query.to_owned())
            .send()
            .expect("api reachable");
        let status = response.status();
        let text = response.text().unwrap();
        assert!(status.is_success(), "{query}: {status} {text}");
        serde_json::from_str(&text).expect("json rows")
    }

    /// A single number from SQL such as `SELECT count(*) AS n FROM spans`.
    pub fn count(&self, query: &str) -> i64 {
        let rows = self.sql(query);
        rows[0]["n"]
            .as_i64()
            .unwrap_or_else(|| panic!("{query}: {rows:?}"))
    }

    /// Polls until `query` counts `expected`, for spans in flight from batching exporters.
    pub fn wait_for_count(&self, query: &str, expected: i64) -> i64 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let n = self.count(query);
            if n >= expected || Instant::now() > deadline {
                return n;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the process to exit by itself (an injected abort, say).
    pub fn wait_exit(mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "weft did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends an OTLP/JSON export to `/v1/traces` and returns the answer
    /// after checking it is a full success (200, no partial success).
    pub fn send_json(&self, body: &Value) -> Value {
        let response = reqwest::blocking::Client::new()
            .post(format!("http://{}/v1/traces", self.http))
            .json(body)
            .send()
            .unwrap();
        assert_eq!(response.status(), 200);
        let answer: Value = response.json().unwrap();
        assert!(answer.get("partialSuccess").is_none(), "{answer}");
        answer
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no flush, no goodbye.
    pub fn kill(mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("wait");
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        self.child.wait().expect("wait")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
pub mod python;
pub mod s3;
pub mod tmpfs;

/// The README's example queries (ordered, so rows compare line by line).
pub const README_QUERIES: &[&str] = &[
    "SELECT ai_kind, count(*) AS n FROM spans GROUP BY 1 ORDER BY 1",
    "SELECT t.start_time, t.tool_name, t.identity, p.policy_name, p.policy_verdict \
     FROM spans t LEFT JOIN spans p \
       ON p.trace_id = t.trace_id AND p.policy_verdict IS NOT NULL AND p.start_time < t.start_time \
     WHERE t.ai_kind = 'tool' AND t.attributes['weft.tool.effect'] = 'write' \
     ORDER BY 1, 2, 3, 4, 5",
    "SELECT node, sum(input_tokens) AS input, sum(output_tokens) AS output, \
            avg(CASE WHEN kv_cache_hit THEN 1.0 ELSE 0.0 END) AS hit_rate \
     FROM spans WHERE ai_kind = 'llm' AND start_time > now() - INTERVAL '1 hour' \
     GROUP BY node ORDER BY node",
    "SELECT start_time, approval_state, approver, attributes['weft.approval.action'] AS action \
     FROM spans WHERE ai_kind = 'approval' ORDER BY start_time, approver",
    "SELECT trace_id AS resumed_in, linked_trace_id AS from_trace FROM span_links ORDER BY 1, 2",
];

/// A `weft serve` whose stderr is kept, for servers the common helper cannot
/// start (TLS, refused starts, a log to read).
pub struct Spawned {
    child: Child,
    /// Its first line on stdout (`weft listening …`, or nothing).
    pub line: String,
    stderr: PathBuf,
}

impl Spawned {
    pub fn start(args: &[&str], env: &[(&str, &str)], stderr: PathBuf) -> Spawned {
        let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
            .arg("serve")
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        Spawned {
            child,
            line,
            stderr,
        }
    }

    pub fn addr(&self, key: &str) -> String {
        self.line
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key} in {:?}: {}", self.line, self.log()))
            .to_owned()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn wait(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "weft did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn terminate(&mut self) {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(self.wait().success(), "{}", self.log());
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
