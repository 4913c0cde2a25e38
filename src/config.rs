//! `weft serve` settings: defaults, then the TOML config file, then flags.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::cors::Cors;
use anyhow::Context;
use clap::Args;
use serde::Deserialize;
use weft_auth::{Auth, TokenConfig};
use weft_collector::IngestLimits;
use weft_listen::ListenLimits;
use weft_query::QuerySettings;
use weft_store::StoreConfig;

/// Flags of `weft serve`; each overrides the config file.
#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// Where spans are stored: a directory (default ./weft-data) or an
    /// `s3://bucket/prefix` URL (then give --wal-dir).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The write-ahead log's directory, always local (default <data-dir>/wal).
    #[arg(long)]
    pub wal_dir: Option<PathBuf>,
    /// Serve queries over tables that other `weft serve` processes write:
    /// no OTLP listeners, no WAL; the tables are re-read every few seconds.
    #[arg(long)]
    pub no_ingest: bool,
    /// Run SQL (the API, PostgreSQL, Flight SQL) over these `weft worker`s,
    /// `host:port,host:port`; WEFT_WORKER_TOKEN, if set, is sent to them.
    #[arg(long)]
    pub workers: Option<String>,
    /// OTLP/gRPC listen address (default 127.0.0.1:4317).
    #[arg(long)]
    pub otlp_grpc: Option<ListenAddr>,
    /// OTLP/HTTP listen address (default 127.0.0.1:4318).
    #[arg(long)]
    pub otlp_http: Option<ListenAddr>,
    /// Query API listen address (default 127.0.0.1:4319).
    #[arg(long)]
    pub api: Option<ListenAddr>,
    /// Serve PostgreSQL's wire protocol (psql, psycopg, DBeaver, Grafana)
    /// on this address, for example 127.0.0.1:5433 (default: off).
    #[arg(long)]
    pub postgres: Option<ListenAddr>,
    /// Serve Arrow Flight SQL (ADBC, JDBC) on this address, for example
    /// 127.0.0.1:4320 (default: off).
    #[arg(long)]
    pub flight: Option<ListenAddr>,
    /// TOML config file; unknown keys are an error.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Flush the live buffer to Parquet at least this often, in seconds (default 30).
    #[arg(long)]
    pub flush_interval_secs: Option<f64>,
    /// Keep spans this many hours by start time; older ones are refused at
    /// ingest and removed by maintenance (default 168).
    #[arg(long)]
    pub retention_hours: Option<f64>,
    /// Delete files no table version needs once they are this many seconds old (default 3600).
    #[arg(long)]
    pub vacuum_grace_secs: Option<f64>,
    /// TLS certificate chain (PEM) for every listener; needs --tls-key.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) for every listener; needs --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve addresses other than loopback with no tokens configured
    /// (anyone who can reach them may send and read traces).
    #[arg(long)]
    pub allow_unauthenticated: bool,
    /// A browser origin (scheme://host[:port], or *) allowed to call the
    /// OTLP/HTTP and API listeners (CORS); repeat for several.
    #[arg(long = "cors-origin")]
    pub cors_origins: Vec<String>,
    /// Drop message content (prompts, completions, GenAI event bodies) at
    /// ingest; everything else about each call is kept.
    #[arg(long)]
    pub drop_message_content: bool,
}

/// The config file. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub wal_dir: Option<PathBuf>,
    /// How often a server re-reads the tables for other writers' commits (default 2).
    pub refresh_secs: Option<f64>,
    /// With --workers: bytes of Parquet per scan task (default 16 MiB).
    pub worker_bytes_per_task: Option<usize>,
    pub otlp_grpc: Option<ListenAddr>,
    pub otlp_http: Option<ListenAddr>,
    pub api: Option<ListenAddr>,
    /// PostgreSQL wire protocol listen address (default: off).
    pub postgres: Option<ListenAddr>,
    /// Arrow Flight SQL listen address (default: off).
    pub flight: Option<ListenAddr>,
    pub max_grpc_message_bytes: Option<usize>,
    pub max_http_body_bytes: Option<usize>,
    pub flush_interval_secs: Option<f64>,
    pub flush_max_rows: Option<usize>,
    /// Refuse spans (retry later) while this many wait to be flushed.
    pub max_unflushed_spans: Option<usize>,
    /// Connections each listener serves at once.
    pub max_connections: Option<usize>,
    /// Seconds a client has to send a request's headers (HTTP/1), or between
    /// keep-alive pings (HTTP/2).
    pub header_timeout_secs: Option<f64>,
    /// Seconds a whole request may take.
    pub request_timeout_secs: Option<f64>,
    /// Seconds requests in flight get at shutdown before their connections close.
    pub shutdown_grace_secs: Option<f64>,
    /// Bytes the requests being stored may hold at once (an estimate).
    pub max_inflight_bytes: Option<usize>,
    /// Attribute caps: value bytes and count per span, and per resource.
    pub max_attribute_value_bytes: Option<usize>,
    pub max_attributes: Option<usize>,
    pub max_resource_attribute_value_bytes: Option<usize>,
    pub max_resource_attributes: Option<usize>,
    pub row_group_rows: Option<usize>,
    pub dedup_window_secs: Option<u64>,
    /// The most span ids remembered for retry detection (default 4,000,000).
    pub dedup_max_spans: Option<usize>,
    /// How long a settled trace's structure generation is remembered.
    pub settle_horizon_secs: Option<u64>,
    /// The most settled traces remembered (default 1,000,000).
    pub settle_max_traces: Option<usize>,
    /// Which traces this collector settles: "own" (default), "fleet" (every
    /// writer's; one per location) or "none" (the fleet settler does).
    pub settle: Option<String>,
    /// Hours spans are kept, by start time (default 168).
    pub retention_hours: Option<f64>,
    /// How far ahead of this machine's clock a span may start (default 900).
    pub max_clock_skew_secs: Option<f64>,
    /// Files no table version needs are deleted once this old (default 3600).
    pub vacuum_grace_secs: Option<f64>,
    /// Compaction's target file size (default 64 MiB).
    pub target_file_bytes: Option<u64>,
    /// How often the server runs retention, compaction and vacuum (default 600).
    pub maintain_interval_secs: Option<f64>,
    pub query_timeout_secs: Option<f64>,
    pub query_memory_bytes: Option<usize>,
    /// Rows and bytes one answer holds at most.
    pub max_result_rows: Option<usize>,
    pub max_result_bytes: Option<usize>,
    /// Bytes queries together may spill to the temporary directory.
    pub max_spill_bytes: Option<u64>,
    /// Tools that change something, for lineage governance checks
    /// (besides spans marked `weft.tool.effect = write`).
    pub write_tools: Option<Vec<String>>,
    /// Which ids join spans whose trace context was lost (lineage's evidence
    /// joins); default all three, `[]` turns joins off.
    pub evidence_keys: Option<Vec<String>>,
    /// Evidence ends further apart than this (start to start) never join
    /// (default 86400, a day).
    pub evidence_window_secs: Option<f64>,
    /// TLS certificate chain and private key (PEM) for every listener.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Serve non-loopback addresses without tokens.
    pub allow_unauthenticated: Option<bool>,
    /// Bearer tokens (`[[tokens]]` tables); none: no authentication.
    pub tokens: Option<Vec<TokenConfig>>,
    /// Browser origins allowed to call the HTTP listeners (CORS).
    pub cors_origins: Option<Vec<String>>,
    /// Drop message content (prompts, completions, GenAI event bodies) at ingest.
    pub drop_message_content: Option<bool>,
    /// The PostgreSQL listener's idle deadline, message size limit and the
    /// budget all its sessions' messages share.
    pub postgres_idle_timeout_secs: Option<f64>,
    pub postgres_max_message_bytes: Option<usize>,
    pub postgres_message_budget_bytes: Option<usize>,
    /// `[prices."model"]`: each call's `cost` at ingest.
    pub prices: Option<weft_schemas::Prices>,
    /// `[signals]`: the live load signals.
    pub signals: Option<SignalsFile>,
}

/// `[signals]` in the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalsFile {
    /// Sliding windows, like `["10s", "1m", "5m"]`.
    pub windows: Option<Vec<String>>,
    pub default_window: Option<String>,
    pub staleness_secs: Option<f64>,
    pub in_flight_timeout_secs: Option<f64>,
    pub max_keys: Option<usize>,
    pub max_locality_keys: Option<usize>,
    pub max_open: Option<usize>,
    pub max_traces: Option<usize>,
    pub locality_ttl_secs: Option<f64>,
    pub stream_interval_ms: Option<u64>,
    /// End-to-end budget of workflows not in `budgets_secs`.
    pub default_budget_secs: Option<f64>,
    /// Per workflow kind (root span name or `gen_ai.agent.name`).
    pub budgets_secs: Option<std::collections::HashMap<String, f64>>,
    /// Route advice weights.
    pub route: Option<RouteWeightsFile>,
}

/// `[signals.route]`: how much each reason counts in `/api/route`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteWeightsFile {
    pub conversation: Option<f64>,
    pub prefix: Option<f64>,
    pub queue_wait: Option<f64>,
    pub in_flight: Option<f64>,
    pub errors: Option<f64>,
}

impl SignalsFile {
    fn resolve(&self) -> anyhow::Result<weft_signals::SignalsConfig> {
        let mut config = weft_signals::SignalsConfig::default();
        if let Some(windows) = &self.windows {
            config.windows = windows
                .iter()
                .map(|w| weft_signals::WindowSpec::parse(w))
                .collect::<Result<_, _>>()
                .context("signals.windows")?;
        }
        if let Some(w) = &self.default_window {
            config.default_window = w.clone();
        }
        for (value, slot, what) in [
            (
                self.staleness_secs,
                &mut config.staleness,
                "signals.staleness_secs",
            ),
            (
                self.in_flight_timeout_secs,
                &mut config.in_flight_timeout,
                "signals.in_flight_timeout_secs",
            ),
            (
                self.locality_ttl_secs,
                &mut config.locality_ttl,
                "signals.locality_ttl_secs",
            ),
            (
                self.default_budget_secs,
                &mut config.default_budget,
                "signals.default_budget_secs",
            ),
        ] {
            if let Some(s) = value {
                *slot = secs(s, what)?;
            }
        }
        for (value, slot) in [
            (self.max_keys, &mut config.max_keys),
            (self.max_locality_keys, &mut config.max_locality_keys),
            (self.max_open, &mut config.max_open),
            (self.max_traces, &mut config.max_traces),
        ] {
            if let Some(n) = value {
                *slot = n;
            }
        }
        if let Some(ms) = self.stream_interval_ms {
            config.stream_interval = Duration::from_millis(ms);
        }
        for (kind, s) in self.budgets_secs.iter().flatten() {
            config
                .budgets
                .insert(kind.clone(), secs(*s, "signals.budgets_secs")?);
        }
        if let Some(route) = &self.route {
            let weights = &mut config.route;
            for (value, slot) in [
                (route.conversation, &mut weights.conversation),
                (route.prefix, &mut weights.prefix),
                (route.queue_wait, &mut weights.queue_wait),
                (route.in_flight, &mut weights.in_flight),
                (route.errors, &mut weights.errors),
            ] {
                if let Some(w) = value {
                    anyhow::ensure!(
                        w.is_finite() && w >= 0.0,
                        "signals.route weights are finite and not negative"
                    );
                    *slot = w;
                }
            }
        }
        Ok(config.validated()?)
    }
}

/// The certificate and key files every listener serves TLS with.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Resolved settings.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub otlp_grpc: ListenAddr,
    pub otlp_http: ListenAddr,
    pub api: ListenAddr,
    /// PostgreSQL's wire protocol, when on.
    pub postgres: Option<ListenAddr>,
    /// Arrow Flight SQL, when on.
    pub flight: Option<ListenAddr>,
    /// The PostgreSQL listener's session limits.
    pub postgres_limits: weft_postgres::PgLimits,
    pub ingest: IngestLimits,
    /// Connections, timeouts and the shutdown grace of every listener.
    pub listen: ListenLimits,
    pub store: StoreConfig,
    /// Query limits and the lineage settings (`write_tools`).
    pub query: QuerySettings,
    /// Only serve queries over tables others write.
    pub no_ingest: bool,
    /// How often a `no_ingest` server re-reads the tables.
    pub refresh: Duration,
    /// The tokens every listener checks.
    pub auth: Arc<Auth>,
    pub tls: Option<TlsFiles>,
    /// Serve non-loopback addresses though no tokens are configured.
    pub allow_unauthenticated: bool,
    /// Browser origins the HTTP listeners answer (CORS).
    pub cors: Cors,
    /// The live signals' settings.
    pub signals: weft_signals::SignalsConfig,
}

fn addr(s: &str) -> ListenAddr {
    ListenAddr(s.to_owned())
}

/// A listen address as given: `host:port`, the host an IP address (`[::1]`
/// for IPv6) or a name such as `localhost`, resolved when the listener binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddr(String);

impl std::str::FromStr for ListenAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((host, port)) = s.rsplit_once(':') else {
            return Err(format!(
                "{s:?} is not host:port (for example 127.0.0.1:4319)"
            ));
        };
        if host.is_empty() {
            return Err(format!("{s:?} has no host (for example 127.0.0.1:4319)"));
        }
        port.parse::<u16>()
            .map_err(|_| format!("{s:?}: the port must be a number from 0 to 65535"))?;
        Ok(Self(s.to_owned()))
    }
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for ListenAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

fn secs(s: f64, what: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(s)
        .with_context(|| format!("{what} must be a non-negative number of seconds, got {s}"))
}

impl ServeConfig {
    /// Defaults ← config file ← flags.
    pub fn resolve(args: &ServeArgs) -> anyhow::Result<Self> {
        let file = match &args.config {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };
        let query = with_workers(
            query_settings(&file)?,
            args.workers.as_deref(),
            file.worker_bytes_per_task,
        )?;
        let postgres_limits = postgres_limits(&file)?;
        let data_dir = args
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("./weft-data"));
        let wal_dir = args.wal_dir.clone().or(file.wal_dir);
        let location = data_dir.to_string_lossy().into_owned();
        let mut store = if location.contains("://") {
            anyhow::ensure!(
                location.starts_with("s3://"),
                "{location}: the data location is a directory or an s3://bucket/prefix URL"
            );
            let wal = match (&wal_dir, args.no_ingest) {
                (Some(wal), _) => wal.clone(),
                (None, true) => PathBuf::from("./weft-wal"),
                (None, false) => anyhow::bail!(
                    "the write-ahead log stays on local disk: with --data-dir {location}, \
                     pass --wal-dir (or wal_dir in the config file)"
                ),
            };
            let mut store = StoreConfig::new(&wal);
            store.location = Some(location);
            store.wal_dir = Some(wal);
            store
        } else {
            let mut store = StoreConfig::new(data_dir);
            store.wal_dir = wal_dir;
            store
        };
        if let Some(s) = args.flush_interval_secs.or(file.flush_interval_secs) {
            store.flush_interval = secs(s, "flush_interval_secs")?;
        }
        if let Some(n) = file.flush_max_rows {
            store.flush_max_rows = n;
        }
        if let Some(n) = file.max_unflushed_spans {
            anyhow::ensure!(n > 0, "max_unflushed_spans must be positive");
            store.max_unflushed_spans = n;
        }
        if let Some(n) = file.max_inflight_bytes {
            anyhow::ensure!(n >= 1024, "max_inflight_bytes must be at least 1024");
            store.max_inflight_bytes = n;
        }
        let mut attributes = weft_otlp::AttributeLimits::default();
        let limits = &mut attributes;
        for (value, slot) in [
            (file.max_attribute_value_bytes, &mut limits.max_value_bytes),
            (file.max_attributes, &mut limits.max_attributes),
            (
                file.max_resource_attribute_value_bytes,
                &mut limits.max_resource_value_bytes,
            ),
            (
                file.max_resource_attributes,
                &mut limits.max_resource_attributes,
            ),
        ] {
            if let Some(n) = value {
                *slot = n;
            }
        }
        limits.drop_message_content =
            args.drop_message_content || file.drop_message_content.unwrap_or(false);
        if let Some(n) = file.row_group_rows {
            anyhow::ensure!(n > 0, "row_group_rows must be positive");
            store.row_group_rows = n;
        }
        if let Some(s) = file.dedup_window_secs {
            store.dedup_window = Duration::from_secs(s);
        }
        if let Some(s) = file.settle_horizon_secs {
            store.settle_horizon = Duration::from_secs(s);
        }
        if let Some(n) = file.dedup_max_spans {
            anyhow::ensure!(n > 0, "dedup_max_spans must be positive");
            store.dedup_max_spans = n;
        }
        if let Some(n) = file.settle_max_traces {
            anyhow::ensure!(n > 0, "settle_max_traces must be positive");
            store.settle_max_traces = n;
        }
        if let Some(role) = &file.settle {
            store.settle = weft_store::SettleRole::parse(role).ok_or_else(|| {
                anyhow::anyhow!(
                    "settle = {role:?}: expected \"own\" (one collector per location), \"fleet\" \
                     (the one collector of a location that settles every writer's traces) or \
                     \"none\" (the fleet settler settles this collector's traces)"
                )
            })?;
        }
        store.refresh = secs(file.refresh_secs.unwrap_or(2.0), "refresh_secs")?;
        if let Some(h) = args.retention_hours.or(file.retention_hours) {
            store.retention = secs(h * 3600.0, "retention_hours (in seconds)")?;
        }
        if let Some(s) = file.max_clock_skew_secs {
            store.max_clock_skew = secs(s, "max_clock_skew_secs")?;
        }
        if let Some(s) = args.vacuum_grace_secs.or(file.vacuum_grace_secs) {
            store.vacuum_grace = secs(s, "vacuum_grace_secs")?;
        }
        if let Some(n) = file.target_file_bytes {
            anyhow::ensure!(n > 0, "target_file_bytes must be positive");
            store.target_file_bytes = n;
        }
        if let Some(s) = file.maintain_interval_secs {
            store.maintain_interval = secs(s, "maintain_interval_secs")?;
            anyhow::ensure!(
                !store.maintain_interval.is_zero(),
                "maintain_interval_secs must be positive"
            );
        }
        if let Some(prices) = &file.prices {
            prices
                .validate()
                .map_err(|e| anyhow::anyhow!("invalid [prices]: {e}"))?;
            store.prices = Arc::new(prices.clone());
        }
        let signals = file.signals.as_ref().map_or_else(
            || Ok(weft_signals::SignalsConfig::default()),
            SignalsFile::resolve,
        )?;
        let mut ingest = IngestLimits {
            attributes,
            ..IngestLimits::default()
        };
        if let Some(n) = file.max_grpc_message_bytes {
            ingest.max_grpc_message_bytes = n;
        }
        if let Some(n) = file.max_http_body_bytes {
            ingest.max_http_body_bytes = n;
        }
        let mut listen = ListenLimits::default();
        if let Some(n) = file.max_connections {
            anyhow::ensure!(n > 0, "max_connections must be positive");
            listen.max_connections = n;
        }
        for (value, slot, what) in [
            (
                file.header_timeout_secs,
                &mut listen.header_timeout,
                "header_timeout_secs",
            ),
            (
                file.request_timeout_secs,
                &mut listen.request_timeout,
                "request_timeout_secs",
            ),
            (
                file.shutdown_grace_secs,
                &mut listen.shutdown_grace,
                "shutdown_grace_secs",
            ),
        ] {
            if let Some(s) = value {
                *slot = secs(s, what)?;
                anyhow::ensure!(!slot.is_zero(), "{what} must be positive");
            }
        }
        let auth = Auth::from_config(file.tokens.as_deref().unwrap_or_default())
            .context("invalid [[tokens]] in the config file")?;
        let tls = match (
            args.tls_cert.clone().or(file.tls_cert),
            args.tls_key.clone().or(file.tls_key),
        ) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            _ => anyhow::bail!("TLS needs both a certificate and a key (tls_cert and tls_key)"),
        };
        let cors = if args.cors_origins.is_empty() {
            Cors::parse(file.cors_origins.as_deref().unwrap_or_default())?
        } else {
            Cors::parse(&args.cors_origins)?
        };
        Ok(Self {
            auth: Arc::new(auth),
            tls,
            cors,
            allow_unauthenticated: args.allow_unauthenticated
                || file.allow_unauthenticated.unwrap_or(false),
            otlp_grpc: args
                .otlp_grpc
                .clone()
                .or(file.otlp_grpc)
                .unwrap_or_else(|| addr("127.0.0.1:4317")),
            otlp_http: args
                .otlp_http
                .clone()
                .or(file.otlp_http)
                .unwrap_or_else(|| addr("127.0.0.1:4318")),
            api: args
                .api
                .clone()
                .or(file.api)
                .unwrap_or_else(|| addr("127.0.0.1:4319")),
            postgres: args.postgres.clone().or(file.postgres),
            flight: args.flight.clone().or(file.flight),
            postgres_limits,
            ingest,
            listen,
            store,
            query,
            no_ingest: args.no_ingest,
            refresh: secs(file.refresh_secs.unwrap_or(2.0), "refresh_secs")?,
            signals,
        })
    }
}

fn postgres_limits(file: &FileConfig) -> anyhow::Result<weft_postgres::PgLimits> {
    let mut limits = weft_postgres::PgLimits::default();
    if let Some(s) = file.postgres_idle_timeout_secs {
        limits.idle_timeout = secs(s, "postgres_idle_timeout_secs")?;
    }
    if let Some(n) = file.postgres_max_message_bytes {
        anyhow::ensure!(
            n >= 1024,
            "postgres_max_message_bytes must be at least 1024"
        );
        limits.max_message_bytes = n;
    }
    if let Some(n) = file.postgres_message_budget_bytes {
        limits.message_budget_bytes = n;
    }
    anyhow::ensure!(
        limits.message_budget_bytes >= limits.max_message_bytes,
        "postgres_message_budget_bytes ({}) must hold at least one message of \
         postgres_max_message_bytes ({})",
        limits.message_budget_bytes,
        limits.max_message_bytes
    );
    Ok(limits)
}

/// The query settings of a config file (limits and `write_tools`), for the
/// commands that query a data directory without a server.
pub fn query_settings_of(
    config: Option<&Path>,
    workers: Option<&str>,
) -> anyhow::Result<QuerySettings> {
    let file = match config {
        Some(path) => load_file(path)?,
        None => FileConfig::default(),
    };
    with_workers(query_settings(&file)?, workers, file.worker_bytes_per_task)
}

/// `query` run over `workers` (`host:port,…`), if any, with the worker
/// token from `WEFT_WORKER_TOKEN`.
pub fn with_workers(
    mut query: QuerySettings,
    workers: Option<&str>,
    bytes_per_task: Option<usize>,
) -> anyhow::Result<QuerySettings> {
    if let Some(list) = workers {
        let mut distribution =
            weft_distributed::Distribution::new(weft_distributed::Workers::parse(list)?);
        distribution.token = std::env::var("WEFT_WORKER_TOKEN").ok();
        if let Some(n) = bytes_per_task {
            distribution.bytes_per_task = n;
        }
        query.distribution = Some(distribution);
    }
    Ok(query)
}

fn query_settings(file: &FileConfig) -> anyhow::Result<QuerySettings> {
    let window = match file.evidence_window_secs {
        Some(s) => secs(s, "evidence_window_secs")?,
        None => Duration::from_nanos(weft_lineage::evidence::DEFAULT_WINDOW_NS as u64),
    };
    let keys = file
        .evidence_keys
        .clone()
        .unwrap_or_else(|| weft_lineage::evidence::ALL_KEYS.map(str::to_owned).to_vec());
    let window_ns = i64::try_from(window.as_nanos()).unwrap_or(i64::MAX);
    let evidence = weft_lineage::EvidenceRules::new(&keys, window_ns)
        .map_err(|e| anyhow::anyhow!("evidence_keys: {e}"))?;
    let mut query = QuerySettings {
        write_tools: file.write_tools.clone().unwrap_or_default(),
        evidence,
        ..QuerySettings::default()
    };
    if let Some(s) = file.query_timeout_secs {
        query.limits.timeout = secs(s, "query_timeout_secs")?;
    }
    if let Some(n) = file.query_memory_bytes {
        query.limits.memory_bytes = n;
    }
    if let Some(n) = file.max_result_rows {
        query.limits.max_result_rows = n;
    }
    if let Some(n) = file.max_result_bytes {
        query.limits.max_result_bytes = n;
    }
    if let Some(n) = file.max_spill_bytes {
        query.limits.max_spill_bytes = n;
    }
    Ok(query)
}

fn load_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_and_file_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weft.toml");
        std::fs::write(
            &path,
            "data_dir = \"/tmp/from-file\"\napi = \"127.0.0.1:9000\"\nmax_http_body_bytes = 1024\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path),
            data_dir: Some("/tmp/from-flag".into()),
            ..Default::default()
        };
        let cfg = ServeConfig::resolve(&args).unwrap();
        assert_eq!(cfg.store.data_dir, PathBuf::from("/tmp/from-flag"));
        assert_eq!(cfg.api, addr("127.0.0.1:9000"));
        assert_eq!(cfg.otlp_grpc, addr("127.0.0.1:4317"));
        assert_eq!(cfg.ingest.max_http_body_bytes, 1024);
    }

    #[test]
    fn listen_addresses_take_host_names_and_refuse_what_is_not_host_port() {
        assert_eq!(
            "localhost:4319".parse::<ListenAddr>().unwrap(),
            addr("localhost:4319")
        );
        assert!("[::1]:0".parse::<ListenAddr>().is_ok());
        for bad in ["4319", ":4319", "localhost:http", "localhost:70000"] {
            let err = bad.parse::<ListenAddr>().unwrap_err();
            assert!(err.contains("host") || err.contains("port"), "{bad}: {err}");
        }
    }

    /// The config file shown in README.md spells out exactly the defaults.
    #[test]
    fn readme_config_example_is_the_defaults() {
        let readme = include_str!("../README.md");
        let example = readme
            .split("```toml\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("README.md has a toml block");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weft.toml");
        std::fs::write(&path, example).unwrap();
        let from_example = ServeConfig::resolve(&ServeArgs {
            config: Some(path),
            ..Default::default()
        })
        .unwrap();
        let defaults = ServeConfig::resolve(&ServeArgs::default()).unwrap();
        assert_eq!(format!("{from_example:?}"), format!("{defaults:?}"));
    }

    /// README's authentication example is a valid config file.
    #[test]
    fn readme_tokens_example_parses() {
        let readme = include_str!("../README.md");
        let example = readme
            .split("```toml\n")
            .find(|block| block.starts_with("[[tokens]]"))
            .and_then(|rest| rest.split("```").next())
            .expect("README.md has a [[tokens]] example");
        let file: FileConfig = toml::from_str(example).unwrap();
        let tokens = file.tokens.unwrap();
        assert_eq!(tokens.len(), 2);
        assert_eq!(tokens[0].role, Some(weft_auth::Role::Ingest));
        assert_eq!(
            tokens[1].token_file.as_deref(),
            Some(Path::new("/etc/weft/query.token"))
        );
    }

    /// README's price table is a valid config file, and prices the calls it names.
    #[test]
    fn readme_prices_example_parses_and_prices() {
        let readme = include_str!("../README.md");
        let example = readme
            .split("```toml\n")
            .find(|block| block.starts_with("[prices."))
            .and_then(|rest| rest.split("```").next())
            .expect("README.md has a [prices] example");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weft.toml");
        std::fs::write(&path, example).unwrap();
        let config = ServeConfig::resolve(&ServeArgs {
            config: Some(path),
            ..Default::default()
        })
        .unwrap();
        let cost = config
            .store
            .prices
            .cost(
                Some("llama-3.1-70b-instruct"),
                Some(2_000_000),
                Some(1_000_000),
                Some(0),
            )
            .unwrap();
        assert!((cost - 1.25).abs() < 1e-12, "{cost}");
        let negative = "[prices.m]\ninput_per_mtok = -1.0\noutput_per_mtok = 1.0\n";
        std::fs::write(dir.path().join("bad.toml"), negative).unwrap();
        let refused = ServeConfig::resolve(&ServeArgs {
            config: Some(dir.path().join("bad.toml")),
            ..Default::default()
        });
        assert!(refused.is_err());
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weft.toml");
        std::fs::write(&path, "data_dri = \"typo\"\n").unwrap();
        let err = ServeConfig::resolve(&ServeArgs {
            config: Some(path),
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("unknown field `data_dri`"),
            "{err:#}"
        );
    }
}
