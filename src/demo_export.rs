//! The demo's OTLP exporters: gRPC or HTTP, with the ingest token and TLS
//! (a private CA with `--ca-cert`), each wrapped so the demo knows how many
//! spans and events the server acknowledged and what it answered when it
//! refused.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use opentelemetry_otlp::{
    Protocol, RetryPolicy, WithExportConfig, WithHttpConfig, WithTonicConfig,
};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogBatch, LogExporter};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

/// How the demo reaches the server.
#[derive(Debug, Clone, Copy, clap::ValueEnum, PartialEq, Eq)]
pub enum DemoProtocol {
    Grpc,
    HttpProto,
    HttpJson,
}

impl std::fmt::Display for DemoProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DemoProtocol::Grpc => "OTLP/gRPC",
            DemoProtocol::HttpProto => "OTLP/HTTP (protobuf)",
            DemoProtocol::HttpJson => "OTLP/HTTP (JSON)",
        })
    }
}

/// An exporter of kind `$kind` (spans or logs; their builders share no
/// trait) to `$to`, with its token, TLS and retries; HTTP posts to `$path`.
macro_rules! exporter {
    ($to:expr, $tally:expr, $kind:ty, $path:literal) => {{
        let to: &Destination = $to;
        let built = match to.protocol {
            DemoProtocol::Grpc => <$kind>::builder()
                .with_tonic()
                .with_endpoint(&to.endpoint)
                .with_metadata(to.metadata()?)
                .with_tls_config(to.tonic_tls())
                .with_retry_policy(retries())
                .build(),
            _ => <$kind>::builder()
                .with_http()
                .with_protocol(to.http_protocol())
                .with_endpoint(format!("{}{}", to.endpoint, $path))
                .with_headers(to.headers())
                .with_http_client(to.http_client($tally)?)
                .with_retry_policy(retries())
                .build(),
        };
        built.with_context(|| format!("cannot build an OTLP exporter for {}", to.endpoint))
    }};
}

/// Where and how to send: endpoint, protocol, token and the CA to trust.
pub struct Destination {
    pub endpoint: String,
    pub protocol: DemoProtocol,
    pub token: Option<String>,
    /// PEM certificates to trust besides the system's, read from `--ca-cert`.
    pub ca_pem: Option<Vec<u8>>,
}

impl Destination {
    pub fn new(
        endpoint: String,
        protocol: DemoProtocol,
        token: Option<String>,
        ca_cert: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let ca_pem = ca_cert
            .map(|path| {
                std::fs::read(path)
                    .with_context(|| format!("cannot read the CA certificate {}", path.display()))
            })
            .transpose()?;
        Ok(Self {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            protocol,
            token,
            ca_pem,
        })
    }

    /// A span exporter to this destination.
    pub fn spans(&self, tally: &Arc<Tally>) -> anyhow::Result<opentelemetry_otlp::SpanExporter> {
        exporter!(self, tally, opentelemetry_otlp::SpanExporter, "/v1/traces")
    }

    /// A log exporter (GenAI content events) to this destination.
    pub fn logs(&self, tally: &Arc<Tally>) -> anyhow::Result<opentelemetry_otlp::LogExporter> {
        exporter!(self, tally, opentelemetry_otlp::LogExporter, "/v1/logs")
    }

    fn http_protocol(&self) -> Protocol {
        if self.protocol == DemoProtocol::HttpJson {
            Protocol::HttpJson
        } else {
            Protocol::HttpBinary
        }
    }

    fn headers(&self) -> HashMap<String, String> {
        self.token
            .iter()
            .map(|t| ("authorization".to_owned(), format!("Bearer {t}")))
            .collect()
    }

    fn metadata(&self) -> anyhow::Result<tonic::metadata::MetadataMap> {
        let mut metadata = tonic::metadata::MetadataMap::new();
        if let Some(token) = &self.token {
            let value = format!("Bearer {token}")
                .parse()
                .context("the token holds characters a gRPC header cannot carry")?;
            metadata.insert("authorization", value);
        }
        Ok(metadata)
    }

    /// TLS for an `https://` endpoint: the system's roots, and `--ca-cert`'s.
    fn tonic_tls(&self) -> tonic::transport::ClientTlsConfig {
        let mut tls = tonic::transport::ClientTlsConfig::new().with_native_roots();
        if let Some(pem) = &self.ca_pem {
            tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(pem));
        }
        tls
    }

    fn http_client(&self, tally: &Arc<Tally>) -> anyhow::Result<BlockingHttp> {
        let mut http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(10));
        if let Some(pem) = &self.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .context("the --ca-cert file holds no PEM certificate")?;
            http = http.tls_certs_merge(certs);
        }
        Ok(BlockingHttp {
            client: http.build().context("cannot set up the HTTP client")?,
            tally: tally.clone(),
        })
    }
}

/// Retries as the OTLP spec asks (retryable answers only, backing off), given
/// long enough to ride out a server that sheds load for a while.
fn retries() -> RetryPolicy {
    RetryPolicy::default()
        .with_max_retries(8)
        .with_initial_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
}

/// The exporter's HTTP client: Weft's rustls-based reqwest, so `https://`
/// endpoints and a private CA work. It blocks, which is what the SDK's
/// batch processors (a thread of their own each) expect. The exporter
/// reports a failed request as "network error" or a bare status code; this
/// client keeps the whole cause and the server's answer for the demo to show.
#[derive(Debug)]
struct BlockingHttp {
    client: reqwest::blocking::Client,
    tally: Arc<Tally>,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for BlockingHttp {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let (parts, body) = request.into_parts();
        let url = parts.uri.to_string();
        let sent = self
            .client
            .request(parts.method, &url)
            .headers(parts.headers)
            .body(body)
            .send();
        let response = match sent {
            Ok(response) => response,
            Err(e) => {
                self.tally
                    .answered(format!("cannot reach {url}: {}", causes(&e)));
                return Err(Box::new(e));
            }
        };
        let status = response.status();
        let mut answer = http::Response::builder().status(status);
        for (name, value) in response.headers() {
            answer = answer.header(name, value);
        }
        let body = response.bytes()?;
        if !status.is_success() {
            self.tally
                .answered(format!("HTTP {status}: {}", status_message(&body)));
        }
        Ok(answer.body(body)?)
    }
}

/// The message of an OTLP/HTTP error body: a `google.rpc.Status`, in
/// protobuf or JSON as the request was.
fn status_message(body: &[u8]) -> String {
    #[derive(prost::Message)]
    struct RpcStatus {
        #[prost(int32, tag = "1")]
        code: i32,
        #[prost(string, tag = "2")]
        message: String,
    }
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(body)
        && let Some(message) = json["message"].as_str()
    {
        return message.to_owned();
    }
    match <RpcStatus as prost::Message>::decode(body) {
        Ok(status) if !status.message.is_empty() => status.message,
        _ => String::from_utf8_lossy(&body[..body.len().min(1024)])
            .trim()
            .to_owned(),
    }
}

/// An error and its sources, joined (reqwest's own message names only the URL).
fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// What the server acknowledged, shared by the wrapped exporters.
#[derive(Debug, Default)]
pub struct Tally {
    acknowledged: AtomicUsize,
    last_refusal: Mutex<Option<String>>,
}

impl Tally {
    pub fn acknowledged(&self) -> usize {
        self.acknowledged.load(Ordering::Relaxed)
    }

    /// The server's answer (or the transport's error) to the last refused export.
    pub fn last_refusal(&self) -> Option<String> {
        self.last_refusal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn record(&self, n: usize, result: &OTelSdkResult) {
        match result {
            Ok(()) => {
                self.acknowledged.fetch_add(n, Ordering::Relaxed);
            }
            // The HTTP client's own account, when it gave one, says more.
            Err(e) => {
                let mut last = self.last_refusal.lock().unwrap_or_else(|e| e.into_inner());
                if last.is_none() {
                    *last = Some(e.to_string());
                }
            }
        }
    }

    /// What the server (or the network) answered to a request that failed.
    fn answered(&self, answer: String) {
        *self.last_refusal.lock().unwrap_or_else(|e| e.into_inner()) = Some(answer);
    }
}

/// An exporter that counts what its inner exporter got acknowledged.
#[derive(Debug)]
pub struct Counted<E> {
    pub inner: E,
    pub tally: Arc<Tally>,
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        let result = self.inner.export(batch).await;
        self.tally.record(n, &result);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E: LogExporter> LogExporter for Counted<E> {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        let n = batch.iter().count();
        let result = self.inner.export(batch).await;
        self.tally.record(n, &result);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}
