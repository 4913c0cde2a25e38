//! SQL over several machines. Weft's query engine plans a statement as it
//! always does; datafusion-distributed (datafusion-contrib) then cuts the
//! physical plan into stages at its exchanges (repartitions, the final
//! merge) and runs each stage's tasks on worker processes, which stream
//! their batches to each other and back over Arrow Flight (gRPC). This
//! crate owns the two ends: the coordinator's session settings
//! ([`coordinate`]: which workers) and the worker's server
//! ([`serve_worker`]). What a worker must know to run Weft's plans (Weft's
//! functions, the object store of the data location) its caller gives it.
//!
//! A worker runs whatever plan a coordinator sends it, so it listens on
//! loopback unless told otherwise and, with a token configured
//! (`WEFT_WORKER_TOKEN` on both ends), refuses a coordinator without it.

use std::future::Future;
use std::sync::Arc;

use datafusion::error::DataFusionError;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::prelude::SessionContext;
use datafusion_distributed::{
    DistributedExt, SessionStateBuilderExt, Worker, WorkerQueryContext, WorkerResolver,
};
use tokio::net::TcpListener;
use url::Url;
use weft_listen::ListenLimits;

/// The header a coordinator sends its worker token in.
const TOKEN_HEADER: &str = "x-weft-worker-token";

/// What can go wrong setting up distribution.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A worker address that does not parse (the user's mistake).
    #[error("worker address {0:?}: {1}; give host:port or http://host:port, comma-separated")]
    Address(String, String),
    /// The worker token is not a valid header value (the user's mistake).
    #[error("WEFT_WORKER_TOKEN holds characters a header cannot carry")]
    Token,
    /// The worker's server failed (a socket error).
    #[error("worker server: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// The workers a query runs on, by URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workers(Vec<Url>);

impl Workers {
    /// Parses `host:port,host:port` (or `http://host:port` each).
    pub fn parse(list: &str) -> Result<Self, Error> {
        let urls = list
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(|a| {
                let text = if a.contains("://") {
                    a.to_owned()
                } else {
                    format!("http://{a}")
                };
                match Url::parse(&text) {
                    Ok(url) if url.port().is_some() && url.host_str().is_some() => Ok(url),
                    Ok(_) => Err(Error::Address(a.to_owned(), "a port is needed".into())),
                    Err(e) => Err(Error::Address(a.to_owned(), e.to_string())),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        if urls.is_empty() {
            return Err(Error::Address(list.to_owned(), "no worker named".into()));
        }
        Ok(Self(urls))
    }

    /// The workers' URLs.
    pub fn urls(&self) -> &[Url] {
        &self.0
    }
}

impl WorkerResolver for Workers {
    fn get_urls(&self) -> Result<Vec<Url>, DataFusionError> {
        Ok(self.0.clone())
    }
}

/// How a coordinator distributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Distribution {
    pub workers: Workers,
    /// Sent to the workers, which refuse a coordinator without theirs.
    pub token: Option<String>,
    /// Bytes of Parquet a scan task reads: a scan of fewer bytes than this
    /// runs as one task (and a query over little data in one stage).
    pub bytes_per_task: usize,
}

impl Distribution {
    /// Over `workers`, with datafusion-distributed's 16 MiB per scan task.
    pub fn new(workers: Workers) -> Self {
        Self {
            workers,
            token: None,
            bytes_per_task: 16 * 1024 * 1024,
        }
    }
}

/// A coordinator's session: plans are distributed over the workers, each
/// stage's tasks at most one per worker.
pub fn coordinate(
    builder: SessionStateBuilder,
    distribution: &Distribution,
) -> Result<SessionStateBuilder, Error> {
    let mut builder = builder
        .with_distributed_worker_resolver(distribution.workers.clone())
        .with_distributed_planner()
        .with_distributed_file_scan_config_bytes_per_partition(distribution.bytes_per_task.max(1))
        .map_err(|e| Error::Address("bytes per task".into(), e.to_string()))?;
    let token = distribution.token.as_deref();
    if let Some(token) = token {
        let mut headers = http::HeaderMap::new();
        let value = http::HeaderValue::from_str(token).map_err(|_| Error::Token)?;
        headers.insert(TOKEN_HEADER, value);
        builder = builder
            .with_distributed_passthrough_headers(headers)
            .map_err(|_| Error::Token)?;
    }
    Ok(builder)
}

/// What a worker does to each query's session before running its part of a
/// plan: register the functions Weft's plans call.
pub type Prepare = Arc<dyn Fn(&SessionContext) -> datafusion::error::Result<()> + Send + Sync>;

/// Serves plans from coordinators on `listener` until `stop`, reading files
/// through `runtime`'s object stores; with `token`, only for coordinators
/// that send it.
pub async fn serve_worker(
    listener: TcpListener,
    runtime: Arc<RuntimeEnv>,
    prepare: Prepare,
    token: Option<String>,
    limits: ListenLimits,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let token: Option<Arc<str>> = token.map(Arc::from);
    let build = move |ctx: WorkerQueryContext| {
        let (prepare, token) = (Arc::clone(&prepare), token.clone());
        async move { session(ctx, prepare, token) }
    };
    let worker = Worker::from_session_builder(build).with_runtime_env(runtime);
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(limits.header_timeout))
        .http2_keepalive_timeout(Some(limits.header_timeout))
        .add_service(worker.into_worker_server())
        .serve_with_incoming_shutdown(weft_listen::grpc::limited(listener, limits, None), stop)
        .await?;
    Ok(())
}

fn session(
    ctx: WorkerQueryContext,
    prepare: Prepare,
    token: Option<Arc<str>>,
) -> Result<SessionState, DataFusionError> {
    if let Some(token) = token {
        use subtle::ConstantTimeEq;
        let sent = ctx
            .headers
            .get(TOKEN_HEADER)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if !bool::from(sent.ct_eq(token.as_bytes())) {
            return Err(DataFusionError::Execution(
                "this worker needs its token: set WEFT_WORKER_TOKEN for the coordinator \
                 (weft serve / weft sql) to the worker's"
                    .into(),
            ));
        }
    }
    let session = SessionContext::new_with_state(ctx.builder.build());
    prepare(&session)?;
    Ok(session.state())
}

/// What went wrong, if `e` (or an error under it) is a worker that could not
/// be reached or went away mid-query (a network failure, not an error its
/// part of the plan reported): the query may succeed when retried once the
/// worker is back, or without it. datafusion-distributed reports a failed
/// connection as text only (in an `Execution` error under a `Context`), so
/// that text is matched; `tests/it/distributed.rs` pins it.
pub fn worker_lost(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(e);
    while let Some(e) = next {
        if e.downcast_ref::<tonic::transport::Error>().is_some() {
            return Some(e.to_string());
        }
        if let Some(status) = e.downcast_ref::<tonic::Status>() {
            use tonic::Code;
            let lost = matches!(
                status.code(),
                Code::Unavailable | Code::Cancelled | Code::Unknown | Code::Aborted
            );
            return lost.then(|| format!("{}: {}", status.code(), status.message()));
        }
        if let Some(DataFusionError::Context(_, inner)) = e.downcast_ref::<DataFusionError>()
            && let DataFusionError::Execution(text) = inner.as_ref()
            && text.contains("Distributed DataFusion worker")
        {
            return Some(text.clone());
        }
        next = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_lists_parse_with_or_without_a_scheme() {
        let w = Workers::parse("127.0.0.1:7001, http://10.0.0.2:7002")
            .unwrap_or_else(|e| panic!("{e}"));
        let urls: Vec<&str> = w.urls().iter().map(Url::as_str).collect();
        assert_eq!(urls, ["http://127.0.0.1:7001/", "http://10.0.0.2:7002/"]);
        assert!(Workers::parse("").is_err());
        assert!(Workers::parse("127.0.0.1").is_err());
    }
}
