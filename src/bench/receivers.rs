//! Durable ingest beside a decode-only receiver: the same OTLP protobuf
//! requests, sent by the same concurrent clients over loopback, to rotel (a
//! Rust OTLP receiver, its blackhole exporter: decode and drop) and to
//! `weft serve` (acknowledged after the WAL fsync), each its own process.
//! Requests are encoded once, before timing; the clients send those bytes
//! as they are (gRPC through a pass-through codec), so the load generator
//! costs both receivers the same.

use std::ffi::OsStr;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::{Buf, BufMut, Bytes};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// One receiver process, killed when dropped (a data directory it made
/// itself removed with it; one it was given stays the caller's).
pub(super) struct Receiver {
    name: &'static str,
    child: Child,
    grpc: SocketAddr,
    http: SocketAddr,
    /// Weft's query API (rotel has none).
    pub(super) api: Option<SocketAddr>,
    _own_dir: Option<tempfile::TempDir>,
}

impl Receiver {
    /// The process's resident set size, from `/proc` (Linux), in bytes.
    pub(super) fn rss_bytes(&self) -> Option<u64> {
        self.status_bytes("VmRSS:")
    }

    /// The process's peak resident set size so far (`VmHWM`), in bytes.
    pub(super) fn peak_rss_bytes(&self) -> Option<u64> {
        self.status_bytes("VmHWM:")
    }

    fn status_bytes(&self, key: &str) -> Option<u64> {
        super::proc_status_bytes(&self.child.id().to_string(), key)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Which OTLP transport the clients use.
#[derive(Debug, Clone, Copy)]
pub(super) enum Transport {
    Http,
    Grpc,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Http => "OTLP/HTTP protobuf",
            Transport::Grpc => "OTLP/gRPC",
        }
    }
}

/// Where rotel's binary is: `--rotel`, else the `rotel` Python package's.
fn find_rotel(given: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = given {
        return Some(path.to_owned());
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import os, rotel; print(os.path.join(os.path.dirname(rotel.__file__), 'rotel-agent'))",
        ])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let path = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    (out.status.success() && path.is_file()).then_some(path)
}

fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

fn wait_listening(addr: SocketAddr, child: &mut Child, name: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("{name} exited before listening ({status})");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("{name} did not listen on {addr} within 30 s")
}

fn start_rotel(binary: &Path) -> anyhow::Result<Receiver> {
    let (grpc, http) = (free_port()?, free_port()?);
    let mut child = Command::new(binary)
        .args(["start", "--exporter", "blackhole"])
        .arg("--otlp-grpc-endpoint")
        .arg(grpc.to_string())
        .arg("--otlp-http-endpoint")
        .arg(http.to_string())
        .args(["--otlp-grpc-max-recv-msg-size-mib", "64"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    wait_listening(grpc, &mut child, "rotel")?;
    wait_listening(http, &mut child, "rotel")?;
    Ok(Receiver {
        name: "rotel (decode only, blackhole)",
        child,
        grpc,
        http,
        api: None,
        _own_dir: None,
    })
}

/// `weft serve` on a data directory (a fresh one unless given), with a
/// configuration file if given (its defaults otherwise), every listener on a
/// free port of 127.0.0.1.
pub(super) fn start_weft(dir: Option<PathBuf>, config: Option<&Path>) -> anyhow::Result<Receiver> {
    start_weft_with(dir, config, &[])
}

/// [`start_weft`] with extra `weft serve` flags (`--wal-dir`, say).
pub(super) fn start_weft_with(
    dir: Option<PathBuf>,
    config: Option<&Path>,
    extra: &[&str],
) -> anyhow::Result<Receiver> {
    let (dir, own_dir) = match dir {
        Some(dir) => (dir, None),
        None => {
            let own = super::tempfile_dir()?;
            (own.path().to_path_buf(), Some(own))
        }
    };
    let mut child = Command::new(std::env::current_exe()?)
        .arg("serve")
        .arg("--data-dir")
        .arg(&dir)
        .args(["--otlp-grpc", "127.0.0.1:0", "--otlp-http", "127.0.0.1:0"])
        .args(["--api", "127.0.0.1:0"])
        .args(
            config
                .map(|c| [OsStr::new("--config"), c.as_os_str()])
                .into_iter()
                .flatten(),
        )
        .args(extra)
        .env("WEFT_LOG", "warn,deltalake_core::kernel::transaction=error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start weft serve")?;
    let mut line = String::new();
    if let Some(stdout) = child.stdout.take() {
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)?;
    }
    let field = |name: &str| -> anyhow::Result<SocketAddr> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .with_context(|| format!("weft serve did not announce {name}: {line:?}"))?
            .parse()
            .context("weft serve announced a bad address")
    };
    let (grpc, http, api) = (field("otlp_grpc")?, field("otlp_http")?, field("api")?);
    Ok(Receiver {
        name: "weft serve (durable: WAL fsync, then ack)",
        child,
        grpc,
        http,
        api: Some(api),
        _own_dir: own_dir,
    })
}

/// What `send_all` took: the wall-clock time, and how many exports were
/// answered "retry later" and sent again.
pub(super) struct Sent {
    pub(super) elapsed: Duration,
    pub(super) retries: u64,
}

/// Sends every payload once, `clients` at a time (each until it is taken),
/// and returns the time from the first send to the last answer.
pub(super) async fn send_all(
    receiver: &Receiver,
    transport: Transport,
    payloads: &[Bytes],
    clients: usize,
) -> anyhow::Result<Sent> {
    let clients = clients.max(1);
    let mut senders = Vec::new();
    for _ in 0..clients {
        senders.push(Sender::connect(receiver, transport).await?);
    }
    let started = Instant::now();
    let tasks: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(c, mut sender)| {
            let share: Vec<Bytes> = payloads.iter().skip(c).step_by(clients).cloned().collect();
            tokio::spawn(async move {
                let mut retries = 0;
                for body in share {
                    retries += sender.send_until_taken(body).await?;
                }
                Ok::<_, anyhow::Error>(retries)
            })
        })
        .collect();
    let mut retries = 0;
    for t in tasks {
        retries += t.await??;
    }
    Ok(Sent {
        elapsed: started.elapsed(),
        retries,
    })
}

/// Why an export failed: the receiver asked for a retry (OTLP's retryable
/// answers: HTTP 429, 502, 503, 504; gRPC UNAVAILABLE, RESOURCE_EXHAUSTED),
/// or anything else.
enum Refused {
    Retry,
    Failed(anyhow::Error),
}

fn failed(e: impl Into<anyhow::Error>) -> Refused {
    Refused::Failed(e.into())
}

enum Sender {
    Http {
        client: reqwest::Client,
        url: String,
    },
    Grpc(tonic::client::Grpc<tonic::transport::Channel>),
}

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

impl Sender {
    async fn connect(receiver: &Receiver, transport: Transport) -> anyhow::Result<Self> {
        Ok(match transport {
            Transport::Http => Sender::Http {
                client: reqwest::Client::builder().build()?,
                url: format!("http://{}/v1/traces", receiver.http),
            },
            Transport::Grpc => {
                let channel =
                    tonic::transport::Endpoint::from_shared(format!("http://{}", receiver.grpc))?
                        .connect()
                        .await?;
                Sender::Grpc(tonic::client::Grpc::new(channel))
            }
        })
    }

    /// One export, sent again while the receiver answers "retry later" (as an
    /// OTLP exporter does, backing off from 10 ms to 1 s, for at most two
    /// minutes); the number of retries.
    async fn send_until_taken(&mut self, body: Bytes) -> anyhow::Result<u64> {
        let (mut retries, mut backoff) = (0, Duration::from_millis(10));
        let give_up = Instant::now() + Duration::from_secs(120);
        loop {
            match self.send(body.clone()).await {
                Ok(()) => return Ok(retries),
                Err(Refused::Retry) if Instant::now() < give_up => {
                    retries += 1;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                Err(Refused::Retry) => anyhow::bail!("still told to retry after two minutes"),
                Err(Refused::Failed(e)) => return Err(e),
            }
        }
    }

    /// One export; an error unless the receiver took every span.
    async fn send(&mut self, body: Bytes) -> Result<(), Refused> {
        let answer = match self {
            Sender::Http { client, url } => {
                let response = client
                    .post(url.as_str())
                    .header("content-type", "application/x-protobuf")
                    .body(body)
                    .send()
                    .await
                    .map_err(failed)?;
                let status = response.status();
                let bytes = response.bytes().await.map_err(failed)?;
                if matches!(status.as_u16(), 429 | 502 | 503 | 504) {
                    return Err(Refused::Retry);
                }
                if !status.is_success() {
                    return Err(failed(anyhow::anyhow!("HTTP {status}")));
                }
                bytes
            }
            Sender::Grpc(grpc) => {
                grpc.ready().await.map_err(failed)?;
                let answer = grpc
                    .unary(
                        tonic::Request::new(body),
                        http::uri::PathAndQuery::from_static(EXPORT_PATH),
                        RawCodec,
                    )
                    .await;
                match answer {
                    Ok(answer) => answer.into_inner(),
                    Err(status)
                        if matches!(
                            status.code(),
                            tonic::Code::Unavailable | tonic::Code::ResourceExhausted
                        ) =>
                    {
                        return Err(Refused::Retry);
                    }
                    Err(status) => return Err(failed(status)),
                }
            }
        };
        let answer = ExportTraceServiceResponse::decode(answer).map_err(failed)?;
        if let Some(p) = answer
            .partial_success
            .as_ref()
            .filter(|p| p.rejected_spans > 0)
        {
            return Err(failed(anyhow::anyhow!("spans rejected: {p:?}")));
        }
        Ok(())
    }
}

/// Passes already-encoded messages through gRPC's framing unchanged.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// The comparison: each receiver, each transport, one pass over the payloads.
pub(super) fn run(
    payloads: &[Bytes],
    spans: usize,
    clients: usize,
    rotel: Option<&Path>,
) -> anyhow::Result<()> {
    let runtime = crate::runtime()?;
    let rotel = find_rotel(rotel);
    if rotel.is_none() {
        eprintln!(
            "rotel not found (`pip install rotel`, or --rotel PATH): weft's rate is shown \
             without the decode-only baseline"
        );
    }
    let rate = |d: Duration| spans as f64 / d.as_secs_f64();
    println!(
        "| receiver ({clients} clients, {} requests) | transport | spans/s | relative to rotel | \
         exports retried (\"retry later\") |",
        payloads.len()
    );
    println!("|---|---|---:|---:|---:|");
    for transport in [Transport::Http, Transport::Grpc] {
        let mut baseline = None;
        if let Some(binary) = &rotel {
            let receiver = start_rotel(binary)?;
            eprintln!("sending to {} over {} ...", receiver.name, transport.name());
            let sent = runtime.block_on(send_all(&receiver, transport, payloads, clients))?;
            baseline = Some(sent.elapsed);
            println!(
                "| {} | {} | {:.0} | 1.000 | {} |",
                receiver.name,
                transport.name(),
                rate(sent.elapsed),
                sent.retries
            );
        }
        // A fresh server per transport: both start from an empty WAL.
        let receiver = start_weft(None, None)?;
        eprintln!("sending to {} over {} ...", receiver.name, transport.name());
        let sent = runtime.block_on(send_all(&receiver, transport, payloads, clients))?;
        let relative = baseline.map_or("—".to_owned(), |b| {
            format!("{:.3}", b.as_secs_f64() / sent.elapsed.as_secs_f64())
        });
        println!(
            "| {} | {} | {:.0} | {relative} | {} |",
            receiver.name,
            transport.name(),
            rate(sent.elapsed),
            sent.retries
        );
    }
    Ok(())
}
