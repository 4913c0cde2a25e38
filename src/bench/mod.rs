//! `weft bench`: the demo workload's durable ingest rate over real gRPC, beside
//! decode-only baselines of the same payloads measured in the same run, and its
//! bytes per span on disk beside its OTLP protobuf bytes.

mod fleet;
mod lineage;
mod query;
mod receivers;
mod signals;
mod soak;
mod storage;
mod tui;
mod workers;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Args;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use prost::Message;
use rand::{Rng, SeedableRng};
use weft_collector::IngestLimits;
use weft_collector::receiver::grpc;
use weft_otlp::{Format as OtlpFormat, decode_spans};
use weft_store::{Metrics, Store, StoreConfig};

use crate::workload::{Kind, Value, Workflow, workflows};

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Which figures to measure.
    #[arg(long, value_enum, default_value_t = Which::All)]
    pub only: Which,
    /// Spans in the lineage (and TUI) benchmark's workflow.
    #[arg(long, default_value_t = 100_000)]
    pub lineage_spans: usize,
    /// Workflows in the workload (about 8 spans each).
    #[arg(long, default_value_t = 25_000)]
    pub workflows: usize,
    /// Spans per export request, as an SDK batch processor would send.
    #[arg(long, default_value_t = 512)]
    pub batch: usize,
    /// Concurrent gRPC clients.
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// Flushes in the simulated day (2,880 is a day at 30 s).
    #[arg(long, default_value_t = 2880)]
    pub flushes: usize,
    /// Spans per flush in the simulated day.
    #[arg(long, default_value_t = 100)]
    pub spans_per_flush: usize,
    /// Compact the simulated day's tables every this many flushes.
    #[arg(long, default_value_t = 60)]
    pub compact_every: usize,
    /// How long `--only soak` ingests, in seconds.
    #[arg(long, default_value_t = 600)]
    pub soak_secs: u64,
    /// A `weft serve` configuration file for `--only soak` (default: none).
    #[arg(long)]
    pub soak_config: Option<std::path::PathBuf>,
    /// Stored spans for `--only query` (SQL beside DuckDB, trace by id, bytes per column).
    #[arg(long, default_value_t = 2_000_000)]
    pub query_spans: usize,
    /// Stored spans for the trace-by-id lookups (0 skips them).
    #[arg(long, default_value_t = 10_000_000)]
    pub lookup_spans: usize,
    /// rotel's binary, the decode-only receiver ingest is compared with
    /// (default: the one the `rotel` Python package installed).
    #[arg(long)]
    pub rotel: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Which {
    All,
    Ingest,
    Lineage,
    Storage,
    Tui,
    Signals,
    Query,
    /// Not part of `all`: ten minutes by default.
    Soak,
    /// Not part of `all`: 1, 2 and 3 collectors on one table location.
    Fleet,
    /// Not part of `all`: SQL over 0 to 3 `weft worker`s.
    Workers,
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    if matches!(args.only, Which::All | Which::Ingest) {
        ingest(&args)?;
    }
    if matches!(args.only, Which::All | Which::Lineage) {
        lineage::run(args.lineage_spans)?;
    }
    if matches!(args.only, Which::All | Which::Tui) {
        tui::run(args.lineage_spans)?;
    }
    if matches!(args.only, Which::All | Which::Signals) {
        signals::run()?;
    }
    if args.only == Which::Soak {
        soak::run(args.soak_secs, args.clients, args.soak_config.as_deref())?;
    }
    if args.only == Which::Workers {
        workers::run(args.query_spans)?;
    }
    if args.only == Which::Fleet {
        fleet::run(args.workflows * 4, args.clients)?;
    }
    if matches!(args.only, Which::All | Which::Query) {
        query::run(args.query_spans)?;
    }
    if matches!(args.only, Which::All | Which::Storage) {
        storage::run(storage::StorageBench {
            flushes: args.flushes,
            spans_per_flush: args.spans_per_flush,
            compact_every: args.compact_every,
            lookup_spans: args.lookup_spans,
        })?;
    }
    Ok(())
}

fn ingest(args: &BenchArgs) -> anyhow::Result<()> {
    let plan = workflows(args.workflows, 7);
    let requests = to_requests(&plan, args.batch.max(1));
    let spans: usize = requests.iter().map(count_spans).sum();
    let payloads: Vec<bytes::Bytes> = requests.iter().map(|r| r.encode_to_vec().into()).collect();
    let proto_bytes: usize = payloads.iter().map(bytes::Bytes::len).sum();
    eprintln!(
        "workload: {} workflows, {spans} spans in {} requests, {proto_bytes} protobuf bytes",
        plan.len(),
        requests.len()
    );

    eprintln!("measuring decode-only baseline ...");
    let decode = time(|| {
        for p in &payloads {
            let r = ExportTraceServiceRequest::decode(&p[..])?;
            std::hint::black_box(r);
        }
        Ok(())
    })?;
    eprintln!("measuring decode + validate + normalise ...");
    let normal = time(|| {
        for p in &payloads {
            std::hint::black_box(decode_spans(p, OtlpFormat::Protobuf)?);
        }
        Ok(())
    })?;

    eprintln!(
        "measuring durable ingest over gRPC with {} clients ...",
        args.clients
    );
    let dir = tempfile_dir()?;
    let runtime = crate::runtime()?;
    let (ingest, parquet_bytes) =
        runtime.block_on(durable_ingest(dir.path(), requests, args.clients))?;
    drop(dir);

    let rate = |d: Duration| spans as f64 / d.as_secs_f64();
    println!("| measurement | spans/s | relative to decode-only |");
    println!("|---|---:|---:|");
    for (name, d) in [
        ("protobuf decode only (baseline)", decode),
        ("decode + validate + normalise", normal),
        ("durable ingest over gRPC (fsynced WAL, acked)", ingest),
    ] {
        println!(
            "| {name} | {:.0} | {:.3} |",
            rate(d),
            decode.as_secs_f64() / d.as_secs_f64()
        );
    }
    println!();
    println!("| storage | bytes/span |");
    println!("|---|---:|");
    println!(
        "| OTLP protobuf (uncompressed request bodies) | {:.1} |",
        proto_bytes as f64 / spans as f64
    );
    println!(
        "| Weft Parquet on disk | {:.1} |",
        parquet_bytes as f64 / spans as f64
    );
    println!(
        "| ratio Parquet / protobuf | {:.3} |",
        parquet_bytes as f64 / proto_bytes as f64
    );
    println!();
    receivers::run(&payloads, spans, args.clients, args.rotel.as_deref())?;
    Ok(())
}

/// A fresh directory under the system's temp dir, removed when dropped
/// (also when a measurement fails half-way).
/// A size line of `/proc/<process>/status` (`VmRSS:`, `VmHWM:`), in bytes
/// (Linux).
fn proc_status_bytes(process: &str, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{process}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

fn tempfile_dir() -> anyhow::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("weft-bench-")
        .tempdir()
        .context("cannot create a directory under the system's temp dir")
}

/// Best of three runs.
pub(crate) fn time(mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<Duration> {
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed());
    }
    Ok(best)
}

async fn durable_ingest(
    dir: &std::path::Path,
    requests: Vec<ExportTraceServiceRequest>,
    clients: usize,
) -> anyhow::Result<(Duration, u64)> {
    let mut config = StoreConfig::new(dir);
    config.flush_interval = Duration::from_secs(3600);
    config.flush_max_rows = usize::MAX;
    config.max_unflushed_spans = usize::MAX;
    let metrics = Arc::new(Metrics::default());
    let store = Store::open(config, Arc::clone(&metrics)).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(grpc::serve(
        listener,
        store.clone(),
        IngestLimits::default(),
        weft_listen::ListenLimits::default(),
        weft_collector::receiver::Edge::default(),
        async move {
            let _ = stop_rx.await;
        },
    ));
    let clients = clients.max(1);
    let mut shares: Vec<Vec<ExportTraceServiceRequest>> =
        (0..clients).map(|_| Vec::new()).collect();
    for (i, r) in requests.into_iter().enumerate() {
        shares[i % clients].push(r);
    }
    let mut connected = Vec::new();
    for share in shares {
        let client = TraceServiceClient::connect(format!("http://{addr}"))
            .await?
            .max_encoding_message_size(64 << 20);
        connected.push((client, share));
    }
    let started = Instant::now();
    let tasks: Vec<_> = connected
        .into_iter()
        .map(|(mut client, share)| {
            tokio::spawn(async move {
                for r in share {
                    let response = client.export(r).await?.into_inner();
                    anyhow::ensure!(
                        response.partial_success.is_none(),
                        "spans rejected: {response:?}"
                    );
                }
                Ok::<_, anyhow::Error>(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    let elapsed = started.elapsed();
    store.flush().await?;
    let parquet_bytes = metrics
        .parquet_bytes
        .load(std::sync::atomic::Ordering::Relaxed);
    let _ = stop_tx.send(());
    server.await??;
    store.shutdown().await?;
    Ok((elapsed, parquet_bytes))
}

pub(crate) fn count_spans(r: &ExportTraceServiceRequest) -> usize {
    r.resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len())
        .sum()
}

fn any(v: &Value) -> AnyValue {
    AnyValue {
        value: Some(match v {
            Value::Str(s) => any_value::Value::StringValue(s.clone()),
            Value::Int(i) => any_value::Value::IntValue(*i),
            Value::Float(f) => any_value::Value::DoubleValue(*f),
            Value::Bool(b) => any_value::Value::BoolValue(*b),
        }),
    }
}

fn kv(key: &str, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(value),
        ..Default::default()
    }
}

/// The workload as OTLP requests of about `batch` spans, grouped by service.
pub fn to_requests(plan: &[Workflow], batch: usize) -> Vec<ExportTraceServiceRequest> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    // Workflows start 50 ms apart and the last starts an hour ago, so all
    // of them lie inside the accepted window (past, not future).
    let span = plan.len() as u64 * 50_000_000;
    let base = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        - 3_600_000_000_000
        - span;
    let mut spans: Vec<(&'static str, Span)> = Vec::new();
    for (w, workflow) in plan.iter().enumerate() {
        let traces: Vec<[u8; 16]> = (0..2).map(|_| rng.random::<[u8; 16]>()).collect();
        let ids: Vec<[u8; 8]> = workflow
            .spans
            .iter()
            .map(|_| rng.random::<[u8; 8]>())
            .collect();
        let start = base + w as u64 * 50_000_000;
        for (i, p) in workflow.spans.iter().enumerate() {
            let begin = start.saturating_add_signed(p.start_ns);
            spans.push((
                p.service,
                Span {
                    trace_id: traces[p.trace].to_vec(),
                    span_id: ids[i].to_vec(),
                    parent_span_id: p.parent.map(|x| ids[x].to_vec()).unwrap_or_default(),
                    name: p.name.clone(),
                    kind: match p.kind {
                        Kind::Internal => 1,
                        Kind::Server => 2,
                        Kind::Client => 3,
                    },
                    start_time_unix_nano: begin,
                    end_time_unix_nano: begin + p.duration_ns as u64,
                    attributes: p.attributes.iter().map(|(k, v)| kv(k, any(v))).collect(),
                    links: p
                        .links
                        .iter()
                        .map(|l| span::Link {
                            trace_id: traces[workflow.spans[*l].trace].to_vec(),
                            span_id: ids[*l].to_vec(),
                            ..Default::default()
                        })
                        .collect(),
                    status: p.error.as_ref().map(|m| Status {
                        code: 2,
                        message: m.clone(),
                    }),
                    ..Default::default()
                },
            ));
        }
    }
    spans
        .chunks(batch)
        .map(|chunk| {
            let mut by_service: BTreeMap<&str, Vec<Span>> = BTreeMap::new();
            for (service, span) in chunk {
                by_service.entry(service).or_default().push(span.clone());
            }
            ExportTraceServiceRequest {
                resource_spans: by_service
                    .into_iter()
                    .map(|(service, spans)| ResourceSpans {
                        resource: Some(Resource {
                            attributes: vec![
                                kv("service.name", any(&Value::Str(service.into()))),
                                kv("host.name", any(&Value::Str("app-1".into()))),
                            ],
                            ..Default::default()
                        }),
                        scope_spans: vec![ScopeSpans {
                            spans,
                            ..Default::default()
                        }],
                        ..Default::default()
                    })
                    .collect(),
            }
        })
        .collect()
}
