//! `weft serve`: wires the store, the OTLP edges and the query API, and shuts
//! down cleanly on Ctrl-C or SIGTERM, flushing what it holds.

use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio_rustls::TlsAcceptor;
use weft_collector::receiver::{Edge, grpc, http};
use weft_query::QueryEngine;
use weft_store::{Follower, Metrics, Store};

use crate::config::{ListenAddr, ServeArgs, ServeConfig};

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = ServeConfig::resolve(&args)?;
    crate::runtime()
        .context("cannot start the async runtime")?
        .block_on(serve(config))
}

/// Binds `addr`, refusing an address other machines can reach while no
/// tokens are configured (unless allowed).
async fn bind(
    config: &ServeConfig,
    addr: &ListenAddr,
    what: &str,
    flag: &str,
) -> anyhow::Result<TcpListener> {
    // `bind` resolves a host name and tries each address it resolves to.
    let listener = TcpListener::bind(addr.to_string()).await.with_context(|| {
        format!("cannot listen for {what} on {addr}; is another weft running? choose another address with {flag}")
    })?;
    let bound = listener.local_addr()?;
    if !bound.ip().is_loopback() && !config.auth.is_enabled() && !config.allow_unauthenticated {
        anyhow::bail!(
            "refusing to serve {what} on {addr} ({bound}) without authentication: anyone who \
             can reach it could send and read traces. Configure tokens ([[tokens]] in the \
             config file; see README, \"Authentication and TLS\"), listen on 127.0.0.1, or \
             pass --allow-unauthenticated"
        );
    }
    Ok(listener)
}

/// The TLS every listener speaks, if configured.
fn tls(config: &ServeConfig) -> anyhow::Result<Option<TlsAcceptor>> {
    let Some(files) = &config.tls else {
        return Ok(None);
    };
    let server =
        weft_auth::tls::server_config(&files.cert, &files.key).context("cannot set up TLS")?;
    Ok(Some(TlsAcceptor::from(server)))
}

/// The SQL protocol listeners that are on (PostgreSQL wire, Flight SQL), bound before
/// anything starts, served by the same engine and limits as the query API.
struct SqlProtocols {
    postgres: Option<TcpListener>,
    flight: Option<TcpListener>,
}

impl SqlProtocols {
    async fn bind(config: &ServeConfig) -> anyhow::Result<Self> {
        let postgres = match &config.postgres {
            Some(addr) => Some(bind(config, addr, "PostgreSQL clients", "--postgres").await?),
            None => None,
        };
        let flight = match &config.flight {
            Some(addr) => Some(bind(config, addr, "Flight SQL clients", "--flight").await?),
            None => None,
        };
        Ok(Self { postgres, flight })
    }

    /// ` postgres=ADDR flight=ADDR` for the listening line, for each one on.
    fn announce(&self) -> anyhow::Result<String> {
        let mut line = String::new();
        if let Some(listener) = &self.postgres {
            line.push_str(&format!(" postgres={}", listener.local_addr()?));
        }
        if let Some(listener) = &self.flight {
            line.push_str(&format!(" flight={}", listener.local_addr()?));
        }
        Ok(line)
    }

    fn spawn<F>(
        self,
        engine: &Arc<QueryEngine>,
        config: &ServeConfig,
        tls: Option<TlsAcceptor>,
        stopped: impl Fn() -> F,
    ) -> Vec<tokio::task::JoinHandle<()>>
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let mut tasks = Vec::new();
        if let Some(listener) = self.postgres {
            tasks.push(tokio::spawn(weft_postgres::serve(
                listener,
                Arc::clone(engine),
                Arc::clone(&config.auth),
                config.listen,
                config.postgres_limits,
                tls.clone(),
                stopped(),
            )));
        }
        if let Some(listener) = self.flight {
            let serving = weft_flight::serve(
                listener,
                Arc::clone(engine),
                Arc::clone(&config.auth),
                config.listen,
                tls,
                stopped(),
            );
            tasks.push(tokio::spawn(async move {
                if let Err(e) = serving.await {
                    tracing::error!(error = %e, "the Flight SQL listener failed");
                }
            }));
        }
        tasks
    }
}

async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    if config.no_ingest {
        return serve_queries(config).await;
    }
    // Listen first: a port in use stops the start before anything is
    // created on disk.
    let tls = tls(&config)?;
    let grpc_listener = bind(&config, &config.otlp_grpc, "OTLP/gRPC", "--otlp-grpc").await?;
    let http_listener = bind(&config, &config.otlp_http, "OTLP/HTTP", "--otlp-http").await?;
    let api_listener = bind(&config, &config.api, "the query API", "--api").await?;
    let protocols = SqlProtocols::bind(&config).await?;
    let metrics = Arc::new(Metrics::default());
    let store_config = config.store.clone();
    let store = {
        let metrics = Arc::clone(&metrics);
        Store::open(store_config, metrics)
            .await
            .map_err(anyhow::Error::from)
            .map_err(|e| {
                let hint = if format!("{e:#}").contains("NoSuchBucket") {
                    " (the bucket does not exist: create it, or check AWS_ENDPOINT_URL)"
                } else {
                    ""
                };
                e.context(format!(
                    "cannot open the data location {}{hint}",
                    config.store.tables_location()
                ))
            })?
    };
    // Log records of spans (GenAI events) go to a second store of the same
    // kind, under `events/`: the same WAL durability, flushes, retention.
    let events_config = config.store.events();
    let events = Store::open(events_config.clone(), Arc::new(Metrics::default()))
        .await
        .with_context(|| {
            format!(
                "cannot open the event store at {}",
                events_config.tables_location()
            )
        })?;
    let engine = Arc::new(
        QueryEngine::with_events(
            Arc::new(store.clone()),
            Arc::new(events.clone()),
            config.query.clone(),
        )
        .await?,
    );
    live_signals(&config, &store, &engine).await?;
    let addrs = (
        grpc_listener.local_addr()?,
        http_listener.local_addr()?,
        api_listener.local_addr()?,
    );
    tracing::info!(
        otlp_grpc = %addrs.0,
        otlp_http = %addrs.1,
        api = %addrs.2,
        location = %store.location(),
        tls = tls.is_some(),
        tokens = config.auth.is_enabled(),
        "weft is listening"
    );
    let stop = shutdown_signal();
    // One machine-readable line on stdout, for scripts and tests using port 0.
    println!(
        "weft listening otlp_grpc={} otlp_http={} api={}{}",
        addrs.0,
        addrs.1,
        addrs.2,
        protocols.announce()?
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let flusher_stop = Arc::new(Notify::new());
    let flusher = tokio::spawn(store.clone().run_flusher(Arc::clone(&flusher_stop)));
    let maintainer_stop = Arc::new(Notify::new());
    let maintainer = tokio::spawn(store.clone().run_maintenance(Arc::clone(&maintainer_stop)));
    // Each stop is a `notify_one`, kept until its task waits: one per task.
    let events_flusher_stop = Arc::new(Notify::new());
    let events_flusher = tokio::spawn(events.clone().run_flusher(Arc::clone(&events_flusher_stop)));
    let events_maintainer_stop = Arc::new(Notify::new());
    let events_maintainer = tokio::spawn(
        events
            .clone()
            .run_maintenance(Arc::clone(&events_maintainer_stop)),
    );

    let listen = config.listen;
    let edge = Edge {
        auth: Arc::clone(&config.auth),
        tls: tls.clone(),
        events: Some(events.clone()),
    };
    let grpc_task = tokio::spawn(grpc::serve(
        grpc_listener,
        store.clone(),
        config.ingest,
        listen,
        edge.clone(),
        stopped(),
    ));
    let http_task = tokio::spawn(weft_listen::http::serve(
        http_listener,
        config
            .cors
            .apply(http::router(store.clone(), config.ingest, &edge)),
        listen,
        tls.clone(),
        stopped(),
    ));
    let protocol_tasks = protocols.spawn(&engine, &config, tls.clone(), &stopped);
    let api_task = tokio::spawn(weft_listen::http::serve(
        api_listener,
        config.cors.apply(weft_query::api::router(
            engine,
            metrics,
            Some(Arc::clone(events.metrics())),
            Arc::clone(&config.auth),
        )),
        listen,
        tls,
        stopped(),
    ));

    stop.await;
    tracing::info!(grace = ?listen.shutdown_grace, "shutting down: finishing requests in flight, then flushing");
    let _ = stop_tx.send(true);
    // Every acknowledged span is in the WAL already: past the grace period,
    // connections still open are closed and the final flush goes ahead.
    match tokio::time::timeout(listen.shutdown_grace, grpc_task).await {
        Ok(served) => served?.context("otlp/grpc server failed")?,
        Err(_) => {
            tracing::warn!("otlp/grpc requests still in flight at the shutdown deadline; closing")
        }
    }
    http_task.await?;
    api_task.await?;
    for task in protocol_tasks {
        task.await?;
    }
    flusher_stop.notify_one();
    events_flusher_stop.notify_one();
    flusher.await?;
    events_flusher.await?;
    maintainer_stop.notify_one();
    events_maintainer_stop.notify_one();
    maintainer.await?;
    events_maintainer.await?;
    let stored = store.shutdown().await;
    events
        .shutdown()
        .await
        .context("final flush of the event store failed; the events stay in its wal and replay on the next start")?;
    stored.context("final flush failed; the spans stay in the wal and replay on the next start")?;
    tracing::info!(location = %store.location(), "stopped cleanly");
    Ok(())
}

/// Hands acknowledged spans to the live signals, on a thread of their own:
/// the WAL writer only queues each batch (an `Arc` copy), so keeping the
/// signals does not lengthen its group commits. The queue is bounded (64
/// batches; 1,024 held about a gigabyte of flushed batches in a soak, and
/// ingest was slower); when it is full the writer waits, so a slow observer
/// slows ingest rather than growing without bound.
pub(crate) struct Feed(std::sync::mpsc::SyncSender<arrow::record_batch::RecordBatch>);

impl Feed {
    pub(crate) fn new(signals: Arc<weft_signals::Signals>) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<arrow::record_batch::RecordBatch>(64);
        std::thread::Builder::new()
            .name("weft-signals".into())
            .spawn(move || {
                for batch in rx {
                    if let Err(e) = signals.observe(&batch) {
                        tracing::error!(error = %e, "live signals missed a batch");
                    }
                }
            })?;
        Ok(Self(tx))
    }
}

impl weft_store::SpanObserver for Feed {
    fn acknowledged(&self, batch: &arrow::record_batch::RecordBatch) {
        if self.0.send(batch.clone()).is_err() {
            tracing::error!("the live signals' thread has stopped; signals are not updated");
        }
    }
}

/// The live signals, rebuilt from the WAL and recent files (the longest
/// window and the in-flight timeout back) before any listener serves, then
/// fed every acknowledged batch.
async fn live_signals(
    config: &ServeConfig,
    store: &Store,
    engine: &Arc<QueryEngine>,
) -> anyhow::Result<Arc<weft_signals::Signals>> {
    let signals =
        Arc::new(weft_signals::Signals::new(config.signals.clone()).context("invalid [signals]")?);
    let settings = signals.config();
    let back = settings
        .windows
        .iter()
        .map(|w| w.length)
        .max()
        .unwrap_or_default()
        + settings.in_flight_timeout;
    let since = weft_signals::now_ns() - i64::try_from(back.as_nanos()).unwrap_or(i64::MAX);
    let started = std::time::Instant::now();
    let mut failed = None;
    let replayed = engine
        .replay_recent(since, |batch| {
            if let Err(e) = signals.rebuild(batch) {
                failed.get_or_insert(e);
            }
        })
        .await;
    let spans = match replayed {
        Ok(spans) => spans,
        // A worker of `--workers` that is down must not keep the server
        // from starting: the signals then fill from new spans only.
        Err(e) if e.kind() == weft_query::ErrorKind::Overloaded => {
            tracing::warn!(error = %e, "cannot read the recent spans now; live signals start from new spans only");
            0
        }
        Err(e) => {
            return Err(anyhow::Error::new(e)
                .context("cannot read the recent spans to rebuild the live signals"));
        }
    };
    if let Some(e) = failed {
        anyhow::bail!("cannot rebuild the live signals: {e}");
    }
    tracing::info!(
        spans,
        took = ?started.elapsed(),
        windows = %settings.window_names(),
        memory_bound_mib = weft_signals::memory_bound_bytes(settings) >> 20,
        "live signals rebuilt from the recent spans"
    );
    store.set_observer(Arc::new(Feed::new(Arc::clone(&signals))?))?;
    engine.attach_signals(Arc::clone(&signals));
    Ok(signals)
}

/// `--no-ingest`: the query API over tables that other servers write, re-read
/// every `refresh`.
async fn serve_queries(config: ServeConfig) -> anyhow::Result<()> {
    let location = config.store.tables_location();
    let follower = Follower::open(&location)
        .await
        .with_context(|| format!("cannot read the tables at {location}"))?;
    // The event store, once a server has written one there.
    let events_location = config.store.events().tables_location();
    let events = match Follower::open(&events_location).await {
        Ok(events) => Some(events),
        Err(e) => {
            tracing::info!(location = %events_location, error = %e, "no event store to follow; span_events is empty");
            None
        }
    };
    let engine = Arc::new(match &events {
        Some(events) => {
            QueryEngine::with_events(
                Arc::new(follower.clone()),
                Arc::new(events.clone()),
                config.query.clone(),
            )
            .await?
        }
        None => QueryEngine::new(Arc::new(follower.clone()), config.query.clone()).await?,
    });
    let tls = tls(&config)?;
    let api_listener = bind(&config, &config.api, "the query API", "--api").await?;
    let protocols = SqlProtocols::bind(&config).await?;
    let api = api_listener.local_addr()?;
    tracing::info!(%api, location = %location, "weft is serving queries (no ingest)");
    let shutdown = shutdown_signal();
    println!(
        "weft listening api={api} no_ingest=true{}",
        protocols.announce()?
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let stop = Arc::new(Notify::new());
    let refresher = tokio::spawn(follower.run_refresh(config.refresh, Arc::clone(&stop)));
    let events_stop = Arc::new(Notify::new());
    let events_refresher = events
        .map(|events| tokio::spawn(events.run_refresh(config.refresh, Arc::clone(&events_stop))));
    let protocol_tasks = protocols.spawn(&engine, &config, tls.clone(), &stopped);
    let router = config.cors.apply(weft_query::api::router(
        engine,
        Arc::new(Metrics::default()),
        None,
        Arc::clone(&config.auth),
    ));
    weft_listen::http::serve(api_listener, router, config.listen, tls, async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    })
    .await;
    for task in protocol_tasks {
        task.await?;
    }
    stop.notify_one();
    refresher.await?;
    if let Some(events_refresher) = events_refresher {
        events_stop.notify_one();
        events_refresher.await?;
    }
    Ok(())
}

/// Ctrl-C or SIGTERM. The handlers are installed when this is called, not
/// when the future is first polled: call it before announcing the listeners,
/// so a stop sent right after the announcement is not the default (fatal) one.
pub(crate) fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            match (interrupt, terminate) {
                (Ok(mut interrupt), Ok(mut terminate)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                    }
                }
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(error = %e, "cannot watch SIGINT/SIGTERM; stop with Ctrl-C");
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
