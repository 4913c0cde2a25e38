//! Slow and idle clients (issue 10, item 9): every listener closes
//! connections that send nothing, limits how many it serves, and a stop
//! finishes within its grace period even with a request still trickling in,
//! then flushes everything acknowledged.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use crate::common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::Server;
use serde_json::json;

fn config(dir: &std::path::Path, text: &str) -> String {
    let path = dir.join("weft.toml");
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

/// Waits (up to a minute) for the server to close `stream`: end of file or
/// a reset, as opposed to data or our read timing out.
fn closed_by_server(mut stream: TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // an error response before closing is fine
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(_) => return true,
        }
    }
}

fn span(n: u8) -> serde_json::Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    json!({"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": "5107c11e4750000000000000000000aa", "spanId": format!("00000000000000{n:02x}"),
        "name": "s", "startTimeUnixNano": now.to_string(), "endTimeUnixNano": (now + 1).to_string(),
    }]}]}]})
}

#[test]
fn slow_and_silent_clients_are_disconnected_and_others_served() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        dir.path(),
        "header_timeout_secs = 1\nmax_connections = 16\n",
    );
    let server = Server::start(&dir.path().join("data"), &["--config", &config]);

    // 40 HTTP clients that start a request and never finish its headers,
    // and 40 gRPC clients that connect and say nothing.
    let slow = |addr: SocketAddr, partial: &[u8]| {
        (0..40)
            .map(|_| {
                let mut s = TcpStream::connect(addr).unwrap();
                s.write_all(partial).unwrap();
                s
            })
            .collect::<Vec<_>>()
    };
    let http = slow(server.http, b"POST /v1/traces HTTP/1.1\r\nHost: weft\r\n");
    let grpc = slow(server.grpc, b"");

    // Every one of them is closed by the server...
    for s in http.into_iter().chain(grpc) {
        assert!(closed_by_server(s), "a silent connection stayed open");
    }
    // ...and real clients are served.
    server.send_json(&span(1));
    assert_eq!(server.count("SELECT count(*) AS n FROM spans"), 1);
}

#[test]
fn a_listener_holds_at_most_max_connections() {
    let dir = tempfile::tempdir().unwrap();
    // Silent clients are never timed out here: only the limit can close one.
    let config = config(
        dir.path(),
        "header_timeout_secs = 3600\nrequest_timeout_secs = 3600\nmax_connections = 4\n",
    );
    let server = Server::start(&dir.path().join("data"), &["--config", &config]);
    let silent: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = TcpStream::connect(server.http).unwrap();
            s.write_all(b"POST /v1/traces HTTP/1.1\r\nHost: weft\r\n")
                .unwrap();
            s
        })
        .collect();
    // The listener accepts connections in the order they arrived, so a
    // fifth finds the four holding every slot and is closed...
    let fifth = TcpStream::connect(server.http).unwrap();
    assert!(closed_by_server(fifth), "a fifth connection was held");
    // ...and while the four stay open, none of them is closed.
    for s in &silent {
        s.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 1];
        let read = (&*s).read(&mut buf);
        assert!(
            matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "a held connection was closed or answered: {read:?}"
        );
    }
    // Room again once they go: a real client is served.
    drop(silent);
    let mut served = false;
    for _ in 0..100 {
        let sent = reqwest::blocking::Client::new()
            .post(format!("http://{}/v1/traces", server.http))
            .header("content-type", "application/json")
            .body(span(1).to_string())
            .send();
        if sent.is_ok_and(|r| r.status().is_success()) {
            served = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(served, "no room after the silent clients left");
    assert_eq!(server.count("SELECT count(*) AS n FROM spans"), 1);
}

#[test]
fn a_stop_finishes_within_its_grace_period_and_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = config(
        dir.path(),
        "request_timeout_secs = 3600\nheader_timeout_secs = 3600\nshutdown_grace_secs = 1\nflush_interval_secs = 3600\n",
    );
    let data_arg = data.to_string_lossy().into_owned();
    let mut server = crate::common::Spawned::start(
        &[
            "--data-dir",
            &data_arg,
            "--config",
            &config,
            "--otlp-grpc",
            "127.0.0.1:0",
            "--otlp-http",
            "127.0.0.1:0",
            "--api",
            "127.0.0.1:0",
        ],
        &[("WEFT_LOG", "info")],
        dir.path().join("stderr"),
    );
    let http: SocketAddr = server.addr("otlp_http").parse().unwrap();
    let api: SocketAddr = server.addr("api").parse().unwrap();
    let sent = reqwest::blocking::Client::new()
        .post(format!("http://{http}/v1/traces"))
        .header("content-type", "application/json")
        .body(span(1).to_string())
        .send()
        .unwrap();
    assert_eq!(sent.status(), 200);

    // A request whose body never finishes arriving.
    let mut trickle = TcpStream::connect(http).unwrap();
    trickle
        .write_all(
            b"POST /v1/traces HTTP/1.1\r\nHost: weft\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"resource",
        )
        .unwrap();
    // An idle kept-alive API connection.
    let _idle = TcpStream::connect(api).unwrap();
    // A later request to the same listener is answered only once the
    // trickling connection, accepted before it by the one accept loop, was
    // handed to its server: the stop below then finds it in flight (without
    // this, a loaded machine could stop before accepting it).
    reqwest::blocking::get(format!("http://{http}/")).unwrap();

    // The stop ends (`terminate` fails the test after 30 s) although the
    // request would have 3600 s: the grace cut it, and says so.
    server.terminate();
    let log = server.log();
    assert!(
        log.contains("requests still in flight at the shutdown deadline"),
        "{log}"
    );
    assert!(
        closed_by_server(trickle),
        "the trickling request stayed open"
    );

    // The acknowledged span was flushed by the clean stop.
    let again = Server::start(&data, &[]);
    assert_eq!(again.count("SELECT count(*) AS n FROM spans"), 1);
}

#[test]
fn listen_addresses_may_be_host_names() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_weft"))
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--otlp-grpc", "localhost:0", "--otlp-http", "localhost:0"])
        .args(["--api", "localhost:0"])
        .env("WEFT_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let api: SocketAddr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("api="))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(api.ip().is_loopback(), "{api}");
    let health = reqwest::blocking::get(format!("http://{api}/healthz")).unwrap();
    assert_eq!(health.status(), 200);
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Browsers (issue 12): with origins configured, preflights on OTLP/HTTP and
/// the API are answered before authentication, the requests themselves still
/// need their token, and answers carry the headers a page needs to read them.
#[test]
fn cors_lets_listed_origins_in_and_no_one_else() {
    const TOKEN: &str = "query-and-ingest-token-0123";
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        dir.path(),
        &format!(
            "cors_origins = [\"https://notebook.example\"]\n\n\
             [[tokens]]\nname = \"page\"\nrole = \"admin\"\ntoken = \"{TOKEN}\"\n"
        ),
    );
    let server = Server::start(&dir.path().join("data"), &["--config", &config]);
    let client = reqwest::blocking::Client::new();
    let origin = "https://notebook.example";
    let preflight = |url: String, origin: &str| {
        client
            .request(reqwest::Method::OPTIONS, url)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .send()
            .unwrap()
    };
    let api = format!("http://{}/api/sql", server.api);
    let otlp = format!("http://{}/v1/traces", server.http);
    for url in [&api, &otlp] {
        let answer = preflight(url.clone(), origin);
        assert!(answer.status().is_success(), "{url}: {}", answer.status());
        let h = answer.headers();
        assert_eq!(h["access-control-allow-origin"], origin, "{url}");
        let allowed = h["access-control-allow-headers"].to_str().unwrap();
        assert!(
            allowed.contains("authorization") && allowed.contains("content-type"),
            "{url}: {allowed}"
        );
        assert!(
            h["access-control-allow-methods"]
                .to_str()
                .unwrap()
                .contains("POST")
        );
        // Another origin gets no permission.
        let other = preflight(url.clone(), "https://evil.example");
        assert!(
            other.headers().get("access-control-allow-origin").is_none(),
            "{url}"
        );
    }

    // The request itself: a page's span goes in with its token ...
    let sent = client
        .post(&otlp)
        .header("origin", origin)
        .header("content-type", "application/json")
        .bearer_auth(TOKEN)
        .body(span(1).to_string())
        .send()
        .unwrap();
    assert_eq!(sent.status(), 200);
    assert_eq!(sent.headers()["access-control-allow-origin"], origin);
    // ... and is read back; the page may read the truncation header.
    let read = client
        .post(&api)
        .header("origin", origin)
        .bearer_auth(TOKEN)
        .body("SELECT count(*) AS n FROM spans")
        .send()
        .unwrap();
    assert_eq!(read.status(), 200);
    assert_eq!(read.headers()["access-control-allow-origin"], origin);
    assert!(
        read.headers()["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .contains("weft-result-truncated")
    );
    // Without its token it is refused, in a form the page can read.
    let refused = client
        .post(&api)
        .header("origin", origin)
        .body("SELECT 1")
        .send()
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(refused.headers()["access-control-allow-origin"], origin);
}

#[test]
fn without_cors_origins_there_are_no_cors_headers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let answer = reqwest::blocking::Client::new()
        .request(
            reqwest::Method::OPTIONS,
            format!("http://{}/api/sql", server.api),
        )
        .header("origin", "https://notebook.example")
        .header("access-control-request-method", "POST")
        .send()
        .unwrap();
    assert_eq!(answer.status(), 405);
    assert!(
        answer
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

/// tonic holds each request's message before Weft's codec charges it, so a
/// gRPC connection may have only so many requests in flight: the OTLP and
/// Flight SQL listeners both say 32 in their HTTP/2 settings (h2's default is
/// no limit).
#[test]
fn grpc_connections_are_limited_to_32_requests_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--flight", "127.0.0.1:0"]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for addr in [server.grpc, server.flight.unwrap()] {
        let advertised = runtime.block_on(async {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (client, connection) = h2::client::handshake(tcp).await.unwrap();
            tokio::spawn(connection);
            let client = client.ready().await.unwrap();
            // The server's SETTINGS frame comes first on the connection.
            let deadline = Instant::now() + Duration::from_secs(10);
            while client.current_max_send_streams() == usize::MAX && Instant::now() < deadline {
                tokio::task::yield_now().await;
            }
            client.current_max_send_streams()
        });
        assert_eq!(advertised, 32, "{addr}");
    }
}
