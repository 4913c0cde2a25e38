//! Who may do what (issue 10, items 11 and 14): bearer tokens with roles on
//! every listener, tokens never logged, TLS on every listener, and no
//! unauthenticated server on an address other machines can reach.
//!
//! Real parts: `weft serve` processes, the OpenTelemetry SDK's exporters (in
//! `weft demo`, given the standard `OTEL_EXPORTER_OTLP_HEADERS`), tonic's
//! gRPC client, curl over TLS, certificates made by openssl.

#![allow(clippy::unwrap_used)]

use crate::common;
use crate::common::Spawned;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Server, weft};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use serde_json::{Value, json};

const INGEST: &str = "ingest-token-7f3a9c2e41d8b6a0";
const QUERY: &str = "query-token-2b8e6d4f9a1c3e57";
const ADMIN: &str = "admin-token-c4e1a7b3d9f20865";

/// A config file with an ingest, a query and an admin token, each from
/// another source (inline, the environment, a file).
fn config(dir: &Path) -> PathBuf {
    let path = dir.join("weft.toml");
    std::fs::write(
        &path,
        format!(
            r#"[[tokens]]
name = "agents"
role = "ingest"
token = "{INGEST}"

[[tokens]]
name = "grafana"
role = "query"
token_env = "WEFT_TEST_QUERY_TOKEN"

[[tokens]]
name = "ops"
role = "admin"
token_file = "{}"
"#,
            dir.join("admin.token").display()
        ),
    )
    .unwrap();
    std::fs::write(dir.join("admin.token"), format!("{ADMIN}\n")).unwrap();
    path
}

fn post(url: &str, token: Option<&str>, content_type: &str, body: &str) -> (u16, String, String) {
    let mut request = reqwest::blocking::Client::new()
        .post(url)
        .header("content-type", content_type)
        .body(body.to_owned());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().unwrap();
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, challenge, response.text().unwrap())
}

fn one_span(trace: u8) -> Value {
    json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "auth-test"}}]},
        "scopeSpans": [{"spans": [{
            "traceId": format!("{trace:032x}"),
            "spanId": "00000000000000a1",
            "name": "step",
            "startTimeUnixNano": format!("{}", now_ns() - 1_000_000_000),
            "endTimeUnixNano": format!("{}", now_ns()),
        }]}]
    }]})
}

fn now_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

async fn grpc_export(
    endpoint: String,
    token: Option<&str>,
    tls: Option<&Path>,
) -> Result<(), tonic::Status> {
    let mut channel = tonic::transport::Endpoint::from_shared(endpoint).unwrap();
    if let Some(ca) = tls {
        let ca = tonic::transport::Certificate::from_pem(std::fs::read(ca).unwrap());
        channel = channel
            .tls_config(
                tonic::transport::ClientTlsConfig::new()
                    .ca_certificate(ca)
                    .domain_name("localhost"),
            )
            .unwrap();
    }
    let mut client = TraceServiceClient::new(channel.connect().await.unwrap());
    let mut request = tonic::Request::new(ExportTraceServiceRequest::default());
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    client.export(request).await.map(|_| ())
}

#[test]
fn every_listener_wants_a_token_with_the_right_role() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = config(dir.path());
    let server = Server::start_at(
        &data.to_string_lossy(),
        &["--config", &config.to_string_lossy()],
        &[("WEFT_TEST_QUERY_TOKEN".into(), QUERY.into())],
    );

    // OTLP/HTTP: checked before the body is read; JSON errors for JSON requests.
    let traces = format!("http://{}/v1/traces", server.http);
    let body = one_span(1).to_string();
    let (status, challenge, text) = post(&traces, None, "application/json", &body);
    assert_eq!((status, challenge.as_str()), (401, "Bearer"), "{text}");
    let error: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(error["code"], 16, "UNAUTHENTICATED: {text}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("Authorization: Bearer")
    );
    let (status, _, text) = post(
        &traces,
        Some("not-a-token-at-all"),
        "application/json",
        &body,
    );
    assert_eq!(status, 401, "{text}");
    let (status, _, text) = post(&traces, Some(QUERY), "application/json", &body);
    assert_eq!(status, 403, "{text}");
    let message: Value = serde_json::from_str(&text).unwrap();
    assert!(
        message["message"]
            .as_str()
            .unwrap()
            .contains("\"grafana\" has role query"),
        "{text}"
    );
    let (status, _, text) = post(&traces, Some(INGEST), "application/json", &body);
    assert_eq!(status, 200, "{text}");
    let (status, _, _) = post(
        &traces,
        Some(ADMIN),
        "application/json",
        &one_span(2).to_string(),
    );
    assert_eq!(status, 200);

    // OTLP/gRPC: refused on the headers, before the message is decoded.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let grpc = format!("http://{}", server.grpc);
    let code = |token| {
        runtime
            .block_on(grpc_export(grpc.clone(), token, None))
            .map_err(|s| s.code())
    };
    assert_eq!(code(None), Err(tonic::Code::Unauthenticated));
    assert_eq!(code(Some("Bearer-less")), Err(tonic::Code::Unauthenticated));
    assert_eq!(code(Some(QUERY)), Err(tonic::Code::PermissionDenied));
    assert_eq!(code(Some(INGEST)), Ok(()));

    // The SDK's exporters send the standard header variable.
    let demo = |headers: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_weft"));
        cmd.args(["demo", "--workflows", "2", "--endpoint", &grpc]);
        if let Some(h) = headers {
            cmd.env("OTEL_EXPORTER_OTLP_HEADERS", h);
        }
        cmd.output().unwrap()
    };
    assert!(
        !demo(None).status.success(),
        "the demo got in without a token"
    );
    let sent = demo(Some(&format!("authorization=Bearer%20{INGEST}")));
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );

    // The query API: /healthz is open, everything else needs query or admin.
    let sql = format!("http://{}/api/sql", server.api);
    let count = "SELECT count(*) AS n FROM spans";
    let (status, challenge, text) = post(&sql, None, "text/plain", count);
    assert_eq!((status, challenge.as_str()), (401, "Bearer"), "{text}");
    assert!(serde_json::from_str::<Value>(&text).unwrap()["error"].is_string());
    let (status, _, text) = post(&sql, Some(INGEST), "text/plain", count);
    assert_eq!(status, 403, "{text}");
    for token in [QUERY, ADMIN] {
        let (status, _, text) = post(
            &sql,
            Some(token),
            "application/json",
            &json!({"sql": count}).to_string(),
        );
        assert_eq!(status, 200, "{text}");
        let rows: Value = serde_json::from_str(&text).unwrap();
        assert!(rows[0]["n"].as_i64().unwrap() >= 2, "{rows}");
    }
    for path in [
        "/metrics",
        "/api/signals",
        "/api/graph",
        "/api/lineage/00000000000000000000000000000001",
    ] {
        let response = reqwest::blocking::get(format!("http://{}{path}", server.api)).unwrap();
        assert_eq!(response.status(), 401, "{path} answered without a token");
    }
    assert_eq!(server.get("/healthz").status(), 200);

    // `weft sql` and `weft lineage` send --token or WEFT_TOKEN.
    let api = format!("http://{}", server.api);
    let refused = weft(&["sql", "--server", &api, count]);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("401") && said.contains("Authorization: Bearer"),
        "{said}"
    );
    let by_flag = weft(&[
        "sql", "--server", &api, "--token", QUERY, "--format", "csv", count,
    ]);
    assert!(
        by_flag.status.success(),
        "{}",
        String::from_utf8_lossy(&by_flag.stderr)
    );
    let by_env = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["lineage", "--server", &api, &format!("{:032x}", 1)])
        .env("WEFT_TOKEN", ADMIN)
        .output()
        .unwrap();
    assert!(
        by_env.status.success(),
        "{}",
        String::from_utf8_lossy(&by_env.stderr)
    );
    assert!(String::from_utf8_lossy(&by_env.stdout).contains("step"));
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed (Debian: openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for localhost and 127.0.0.1 signed by it.
fn certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=weft test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
}

fn curl(args: &[&str]) -> (bool, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn tls_on_every_listener_and_tokens_never_logged() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let config = config(dir.path());
    let data = dir.path().join("data");
    let mut server = Spawned::start(
        &[
            "--data-dir",
            &data.to_string_lossy(),
            "--config",
            &config.to_string_lossy(),
            "--tls-cert",
            &dir.path().join("server.pem").to_string_lossy(),
            "--tls-key",
            &dir.path().join("server.key").to_string_lossy(),
            "--otlp-grpc",
            "127.0.0.1:0",
            "--otlp-http",
            "127.0.0.1:0",
            "--api",
            "127.0.0.1:0",
            "--postgres",
            "127.0.0.1:0",
        ],
        &[("WEFT_TEST_QUERY_TOKEN", QUERY), ("WEFT_LOG", "debug")],
        dir.path().join("stderr"),
    );
    let (http, api, grpc) = (
        server.addr("otlp_http"),
        server.addr("api"),
        server.addr("otlp_grpc"),
    );
    let ca = dir.path().join("ca.pem");
    let ca_arg = ca.to_string_lossy().into_owned();

    // HTTP/1.1 and HTTP/2 over TLS, verified against the CA.
    let (ok, out) = curl(&[
        "--cacert",
        &ca_arg,
        &format!("https://localhost:{}/healthz", port(&api)),
    ]);
    assert!(ok && out.contains("ok"), "{out}");
    let (ok, out) = curl(&[
        "--cacert",
        &ca_arg,
        "--http2",
        "-H",
        &format!("Authorization: Bearer {INGEST}"),
        "-H",
        "content-type: application/json",
        "--data",
        &one_span(3).to_string(),
        "-w",
        " %{http_code} %{http_version}",
        &format!("https://127.0.0.1:{}/v1/traces", port(&http)),
    ]);
    assert!(ok && out.ends_with(" 200 2"), "{out}");
    let (ok, out) = curl(&[
        "--cacert",
        &ca_arg,
        "-H",
        &format!("Authorization: Bearer {QUERY}"),
        "--data",
        "SELECT count(*) AS n FROM spans",
        &format!("https://127.0.0.1:{}/api/sql", port(&api)),
    ]);
    assert!(ok && out.contains("\"n\":1"), "{out}");
    // Plain HTTP to a TLS listener gets no answer.
    let (ok, out) = curl(&[&format!("http://127.0.0.1:{}/healthz", port(&api))]);
    assert!(!ok || !out.contains("ok"), "plain HTTP was served: {out}");

    // PostgreSQL over TLS, verified against the CA; plaintext is refused.
    let pg = server.addr("postgres");
    let psql = |sslmode: &str| {
        std::process::Command::new("psql")
            .arg(format!(
                "host=localhost port={} user=weft dbname=weft sslmode={sslmode} sslrootcert={}",
                port(&pg),
                ca.display()
            ))
            .args(["-X", "-A", "-t", "-c", "SELECT count(*) FROM spans"])
            .env("PGPASSWORD", QUERY)
            .output()
            .expect("psql is installed (Debian: postgresql-client)")
    };
    let verified = psql("verify-full");
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&verified.stdout).trim(), "1");
    let plain = psql("disable");
    assert!(!plain.status.success());
    assert!(
        String::from_utf8_lossy(&plain.stderr).contains("TLS connections only"),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );

    // Weft's own commands over TLS: the CA given, the token too.
    let server_url = format!("https://localhost:{}", port(&api));
    let sql = |extra: &[&str]| {
        let mut args = vec!["sql", "--server", &server_url, "--token", QUERY];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--format", "csv", "SELECT count(*) AS n FROM spans"]);
        common::weft(&args)
    };
    let answered = sql(&["--ca-cert", &ca_arg]);
    assert!(
        answered.status.success(),
        "{}",
        String::from_utf8_lossy(&answered.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&answered.stdout).trim(), "n\n1");
    // Without the CA the certificate is not trusted, and the error says what to pass.
    let untrusted = sql(&[]);
    assert!(!untrusted.status.success());
    assert!(
        String::from_utf8_lossy(&untrusted.stderr).contains("--ca-cert"),
        "{}",
        String::from_utf8_lossy(&untrusted.stderr)
    );

    // gRPC over TLS.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let endpoint = format!("https://localhost:{}", port(&grpc));
    runtime
        .block_on(grpc_export(endpoint.clone(), Some(INGEST), Some(&ca)))
        .unwrap();
    let refused = runtime
        .block_on(grpc_export(endpoint, None, Some(&ca)))
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);

    // `weft demo` over TLS with the ingest token, gRPC and OTLP/HTTP; without
    // the token it says what the server answered and what to pass.
    for (protocol, addr) in [("grpc", &grpc), ("http-proto", &http)] {
        let endpoint = format!("https://localhost:{}", port(addr));
        let demo = |extra: &[&str]| {
            let mut args = vec![
                "demo",
                "--workflows",
                "2",
                "--protocol",
                protocol,
                "--endpoint",
                &endpoint,
                "--ca-cert",
                &ca_arg,
            ];
            args.extend_from_slice(extra);
            common::weft(&args)
        };
        let sent = demo(&["--token", INGEST]);
        let stderr = String::from_utf8_lossy(&sent.stderr);
        assert!(sent.status.success(), "{protocol}: {stderr}");
        assert!(stderr.contains("the server acknowledged"), "{stderr}");
        let refused = demo(&[]);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            !refused.status.success(),
            "{protocol}: the demo got in without a token"
        );
        assert!(
            (stderr.contains("Unauthenticated") || stderr.contains("401"))
                && stderr.contains("--token"),
            "{protocol}: {stderr}"
        );
    }

    server.terminate();
    let log = server.log();
    assert!(
        log.contains("weft is listening"),
        "debug log written: {log}"
    );
    assert!(
        !log.contains('\x1b'),
        "colour codes in a log that is not a terminal"
    );
    for token in [INGEST, QUERY, ADMIN] {
        assert!(!log.contains(token), "a token is in the log");
    }
}

fn port(addr: &str) -> &str {
    addr.rsplit_once(':').unwrap().1
}

#[test]
fn no_unauthenticated_server_on_a_reachable_address() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_string_lossy();
    let everywhere = [
        "--otlp-grpc",
        "0.0.0.0:0",
        "--otlp-http",
        "127.0.0.1:0",
        "--api",
        "127.0.0.1:0",
    ];
    let mut refused = Spawned::start(
        &[&["--data-dir", &data][..], &everywhere[..]].concat(),
        &[],
        dir.path().join("refused"),
    );
    assert!(!refused.wait().success());
    let said = refused.log();
    assert!(
        said.contains("refusing to serve OTLP/gRPC on 0.0.0.0:0")
            && said.contains("--allow-unauthenticated")
            && said.contains("[[tokens]]"),
        "{said}"
    );
    assert_eq!(said.lines().count(), 1, "one line: {said}");
    assert!(
        !data_created(&dir.path().join("data")),
        "nothing written before refusing"
    );

    let mut allowed = Spawned::start(
        &[
            &["--data-dir", &data, "--allow-unauthenticated"][..],
            &everywhere[..],
        ]
        .concat(),
        &[("WEFT_LOG_FORMAT", "json")],
        dir.path().join("allowed"),
    );
    assert!(
        allowed.line.starts_with("weft listening"),
        "{}",
        allowed.log()
    );
    allowed.terminate();
    // WEFT_LOG_FORMAT=json: one JSON object per line.
    let log = allowed.log();
    assert!(log.lines().count() >= 2, "{log}");
    for line in log.lines() {
        let entry: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            entry["level"].is_string() && entry["fields"]["message"].is_string(),
            "{line}"
        );
    }

    let config = config(dir.path());
    let mut with_tokens = Spawned::start(
        &[
            &["--data-dir", &data, "--config", &config.to_string_lossy()][..],
            &everywhere[..],
        ]
        .concat(),
        &[("WEFT_TEST_QUERY_TOKEN", QUERY)],
        dir.path().join("tokens"),
    );
    assert!(
        with_tokens.line.starts_with("weft listening"),
        "{}",
        with_tokens.log()
    );
    with_tokens.terminate();

    // A token in the config that cannot be loaded stops the start, naming it.
    let mut missing_env = Spawned::start(
        &["--data-dir", &data, "--config", &config.to_string_lossy()],
        &[],
        dir.path().join("missing"),
    );
    assert!(!missing_env.wait().success());
    let said = missing_env.log();
    assert!(
        said.contains("\"grafana\"") && said.contains("WEFT_TEST_QUERY_TOKEN"),
        "{said}"
    );
}

fn data_created(dir: &Path) -> bool {
    dir.join("wal").exists()
}

const POLICY: &str = "policy-token-91d3e7a05b2c4f68";
const INTRUDER: &str = "intruder-token-5e0a8c1f7b3d9246";

/// One OTLP/JSON request of one span.
fn governance_span(
    trace: u64,
    span: u64,
    parent: Option<u64>,
    service: &str,
    offset_ms: u64,
    attributes: Value,
) -> Value {
    let start = now_ns() - 10_000_000_000 + u128::from(offset_ms) * 1_000_000;
    let mut s = json!({
        "traceId": format!("{trace:032x}"),
        "spanId": format!("{span:016x}"),
        "name": format!("{service} step {span}"),
        "startTimeUnixNano": start.to_string(),
        "endTimeUnixNano": (start + 1_000_000).to_string(),
        "attributes": attributes,
    });
    if let Some(p) = parent {
        s["parentSpanId"] = json!(format!("{p:016x}"));
    }
    json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeSpans": [{"spans": [s]}]
    }]})
}

fn attr(key: &str, value: &str) -> Value {
    json!({"key": key, "value": {"stringValue": value}})
}

/// Item 13: an ingest client that knows a trace id cannot pass off a forged
/// `allow` verdict or approval as the policy service's: lineage marks it
/// unverified and the finding says so.
#[test]
fn governance_data_is_trusted_only_from_tokens_bound_to_its_service() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_with(
        dir.path(),
        &format!(
            r#"[[tokens]]
name = "agents"
role = "ingest"
token = "{INGEST}"
services = ["agent"]

[[tokens]]
name = "policy-engine"
role = "ingest"
token = "{POLICY}"
services = ["policy"]

[[tokens]]
name = "somebody"
role = "ingest"
token = "{INTRUDER}"

[[tokens]]
name = "ops"
role = "admin"
token = "{ADMIN}"
"#
        ),
    );
    let send = |token: &str, body: Value| send_ok(&server, token, &body);
    // Two workflows alike: an agent run, a policy check allowing a write,
    // then the write. In trace 10 the policy service reports its verdict; in
    // trace 11 someone else sends it as the policy service, claiming
    // `weft.origin = verified` too.
    for (trace, policy_token) in [(10u64, POLICY), (11, INTRUDER)] {
        send(
            INGEST,
            governance_span(trace, 1, None, "agent", 0, json!([])),
        );
        send(
            policy_token,
            governance_span(
                trace,
                2,
                Some(1),
                "policy",
                10,
                json!([
                    attr("weft.kind", "policy"),
                    attr("weft.policy.name", "payments"),
                    attr("weft.policy.verdict", "allow"),
                    attr("weft.origin", "verified"),
                ]),
            ),
        );
        send(
            INGEST,
            governance_span(
                trace,
                3,
                Some(1),
                "agent",
                20,
                json!([
                    attr("gen_ai.tool.name", "refund"),
                    attr("weft.tool.effect", "write"),
                ]),
            ),
        );
    }
    let lineage = |trace: u64| -> Value {
        reqwest::blocking::Client::new()
            .get(format!("http://{}/api/lineage/{trace:032x}", server.api))
            .bearer_auth(ADMIN)
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    let trusted = lineage(10);
    let summary = &trusted["summary"];
    assert_eq!(summary["findings"], json!([]), "{summary}");
    assert!(
        summary["policy_checks"][0].get("unverified").is_none(),
        "{summary}"
    );

    let forged = lineage(11);
    let summary = &forged["summary"];
    assert_eq!(summary["policy_checks"][0]["unverified"], true, "{summary}");
    let findings = summary["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{summary}");
    assert_eq!(findings[0]["rule"], "unverified_allow");
    let message = findings[0]["message"].as_str().unwrap();
    assert!(
        message.contains("service policy") && message.contains("not bound"),
        "{message}"
    );

    // The stored attributes are the server's, not the client's.
    let rows: Value = reqwest::blocking::Client::new()
        .post(format!("http://{}/api/sql", server.api))
        .bearer_auth(ADMIN)
        .body("SELECT trace_id, attributes['weft.origin'] AS origin, attributes['weft.origin.token'] AS token \
               FROM spans WHERE span_id = '0000000000000002' ORDER BY trace_id")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        rows,
        json!([
            {"trace_id": format!("{:032x}", 10), "origin": "verified", "token": "policy-engine"},
            {"trace_id": format!("{:032x}", 11), "origin": "unverified", "token": "somebody"},
        ])
    );
}

const ACME_INGEST: &str = "acme-ingest-3f9e1b7c5a2d4e60";
const GLOBEX_INGEST: &str = "globex-ingest-8c2a6e4f1b9d3a75";
const ACME_QUERY: &str = "acme-query-6d1f3b8a9e2c7b40";

/// Item 12: a tenant's token reads its tenant's spans only, through every
/// interface, whatever the query text says.
#[test]
fn a_tenant_sees_only_its_own_spans() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_with(
        dir.path(),
        &format!(
            r#"[[tokens]]
name = "acme-agents"
role = "ingest"
tenant = "acme"
token = "{ACME_INGEST}"

[[tokens]]
name = "globex-agents"
role = "ingest"
tenant = "globex"
token = "{GLOBEX_INGEST}"

[[tokens]]
name = "acme-grafana"
role = "query"
tenant = "acme"
token = "{ACME_QUERY}"

[[tokens]]
name = "ops"
role = "admin"
token = "{ADMIN}"
"#
        ),
    );
    let send = |token: &str, body: Value| send_ok(&server, token, &body);
    // acme's workflow: trace 20, linked from globex's trace 21, whose span
    // also claims to be acme's.
    send(
        ACME_INGEST,
        governance_span(
            20,
            1,
            None,
            "agent",
            0,
            json!([
                attr("gen_ai.request.model", "acme-model"),
                attr("gen_ai.operation.name", "chat"),
                attr("weft.node", "acme-gpu"),
            ]),
        ),
    );
    let mut globex = governance_span(
        21,
        1,
        None,
        "agent",
        5,
        json!([
            attr("weft.tenant", "acme"),
            attr("gen_ai.request.model", "globex-model"),
            attr("gen_ai.operation.name", "chat"),
            attr("weft.node", "globex-gpu"),
        ]),
    );
    globex["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["links"] =
        json!([{"traceId": format!("{:032x}", 20), "spanId": format!("{:016x}", 1)}]);
    send(GLOBEX_INGEST, globex);

    let get = |token: &str, path: &str| {
        reqwest::blocking::Client::new()
            .get(format!("http://{}{path}", server.api))
            .bearer_auth(token)
            .send()
            .unwrap()
    };
    let sql = |token: &str, query: &str| -> (u16, String) {
        let response = reqwest::blocking::Client::new()
            .post(format!("http://{}/api/sql", server.api))
            .bearer_auth(token)
            .body(query.to_owned())
            .send()
            .unwrap();
        (response.status().as_u16(), response.text().unwrap())
    };
    let acme_trace = format!("{:032x}", 20);
    let globex_trace = format!("{:032x}", 21);

    // SQL: however the query asks, only acme's rows.
    for query in [
        "SELECT trace_id FROM spans".to_owned(),
        format!("SELECT trace_id FROM spans WHERE trace_id = '{globex_trace}' OR true"),
        "SELECT trace_id FROM spans WHERE attributes['weft.tenant'] <> 'acme' OR attributes['weft.tenant'] IS NULL UNION ALL SELECT trace_id FROM spans".to_owned(),
        format!("SELECT trace_id FROM lineage('{globex_trace}')"),
        format!("SELECT trace_id FROM lineage('{acme_trace}')"),
        "SELECT DISTINCT trace_id FROM (SELECT * FROM spans) s".to_owned(),
    ] {
        let (status, text) = sql(ACME_QUERY, &query);
        assert_eq!(status, 200, "{query}: {text}");
        assert!(!text.contains(&globex_trace) && !text.contains("globex"), "{query} leaked: {text}");
    }
    let (_, text) = sql(
        ACME_QUERY,
        "SELECT count(*) AS n, min(gen_ai_model) AS m FROM spans",
    );
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!([{"n": 1, "m": "acme-model"}])
    );
    for table in ["span_links", "span_structure"] {
        let (status, text) = sql(ACME_QUERY, &format!("SELECT * FROM {table}"));
        assert_eq!(status, 400, "{table}: {text}");
        assert!(text.contains("tenant"), "{text}");
    }
    // The stored tenant is the token's, not the span's claim.
    let (_, text) = sql(
        ADMIN,
        "SELECT trace_id, attributes['weft.tenant'] AS tenant FROM spans ORDER BY trace_id",
    );
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!([{"trace_id": acme_trace, "tenant": "acme"}, {"trace_id": globex_trace, "tenant": "globex"}])
    );

    // Traces, lineage, signals, metrics.
    assert_eq!(
        get(ACME_QUERY, &format!("/api/traces/{globex_trace}")).status(),
        404
    );
    assert_eq!(
        get(ACME_QUERY, &format!("/api/traces/{acme_trace}")).status(),
        200
    );
    assert_eq!(
        get(ACME_QUERY, &format!("/api/lineage/{globex_trace}")).status(),
        404
    );
    let lineage: Value = get(ACME_QUERY, &format!("/api/lineage/{acme_trace}"))
        .json()
        .unwrap();
    assert_eq!(lineage["traces"], json!([acme_trace]), "{lineage}");
    let admin_view: Value = get(ADMIN, &format!("/api/lineage/{acme_trace}"))
        .json()
        .unwrap();
    assert_eq!(
        admin_view["traces"].as_array().unwrap().len(),
        2,
        "{admin_view}"
    );
    // Signals, live and from SQL: acme's node, never globex's (both spans
    // ran on a node, so an unfiltered answer would show both).
    for path in ["/api/signals?since=1h", "/api/signals?window=5m"] {
        let signals = get(ACME_QUERY, path).text().unwrap();
        assert!(signals.contains("acme-gpu"), "{path}: {signals}");
        assert!(!signals.contains("globex"), "{path}: {signals}");
        let everyone = get(ADMIN, path).text().unwrap();
        assert!(
            everyone.contains("acme-gpu") && everyone.contains("globex-gpu"),
            "{path}: {everyone}"
        );
    }
    let metrics = get(ACME_QUERY, "/metrics");
    assert_eq!(metrics.status(), 403);
    assert!(metrics.text().unwrap().contains("every tenant"));
    assert_eq!(get(ADMIN, "/metrics").status(), 200);
    let tree = get(ACME_QUERY, &format!("/api/lineage/{acme_trace}/tree"))
        .text()
        .unwrap();
    assert!(!tree.contains(&globex_trace[24..]), "{tree}");
}

/// A server whose config file is `config` (its tokens, say).
fn serve_with(dir: &Path, config: &str) -> Server {
    let path = dir.join("weft.toml");
    std::fs::write(&path, config).unwrap();
    Server::start(&dir.join("data"), &["--config", &path.to_string_lossy()])
}

/// Sends one OTLP/JSON request with `token`, which must be accepted.
fn send_ok(server: &Server, token: &str, body: &Value) {
    let traces = format!("http://{}/v1/traces", server.http);
    let (status, _, text) = post(&traces, Some(token), "application/json", &body.to_string());
    assert_eq!(status, 200, "{text}");
}
