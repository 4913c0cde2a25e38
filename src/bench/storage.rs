//! `weft bench --only storage`: the storage lifecycle on Delta tables.
//!
//! - A simulated day of ingest: `flushes` flushes (2,880 is a day at the
//!   default 30 s interval) of the demo workload, into two stores side by
//!   side in the same run, one never maintained and one compacted every
//!   `compact_every` flushes. Reported for each: files in the tables, bytes
//!   per span, a flush's cost (and the Delta commit's part of it), and
//!   trace-by-id and group-by query times at the end of the day.
//! - Trace by id over `lookup_spans` stored spans (after compaction): p50 and
//!   p99 of a lookup by a random trace id through SQL.
//! - A long-lived trace growing over 15 flushes: bytes of structure written
//!   beside bytes of spans.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prost::Message;
use rand::{Rng, SeedableRng};
use weft_otlp::{Format as OtlpFormat, decode_spans};
use weft_query::{QueryEngine, QuerySettings};
use weft_schemas::{Span, SpanLink, TraceId};
use weft_store::{Metrics, Store, StoreConfig, read_snapshot};

use super::to_requests;
use crate::workload::workflows;

/// What the storage benchmark runs.
#[derive(Debug, Clone, Copy)]
pub struct StorageBench {
    pub flushes: usize,
    pub spans_per_flush: usize,
    pub compact_every: usize,
    pub lookup_spans: usize,
}

pub fn run(bench: StorageBench) -> anyhow::Result<()> {
    let runtime = crate::runtime()?;
    runtime.block_on(async {
        long_lived().await?;
        simulated_day(bench).await?;
        if bench.lookup_spans > 0 {
            lookups(bench.lookup_spans).await?;
        }
        Ok(())
    })
}

/// About `n` spans of the demo workload, their ids made unique to `chunk`
/// (the workload's ids repeat from run to run), starting at `start_ns`.
pub(super) fn chunk(chunk: u32, n: usize, start_ns: i64) -> anyhow::Result<Vec<Span>> {
    let plan = workflows(n.div_ceil(8).max(1), u64::from(chunk));
    let mut spans = Vec::new();
    for request in to_requests(&plan, 512) {
        let normalised = decode_spans(&request.encode_to_vec(), OtlpFormat::Protobuf)?;
        spans.extend(normalised.spans);
    }
    let first = spans
        .iter()
        .map(|s| s.start_time_unix_nano)
        .min()
        .unwrap_or(0);
    let remap = |t: &TraceId| -> TraceId {
        let mut bytes = *t.as_bytes();
        bytes[..4].copy_from_slice(&chunk.to_be_bytes());
        TraceId::try_from(bytes.as_slice()).unwrap_or(*t)
    };
    for s in &mut spans {
        s.trace_id = remap(&s.trace_id);
        for link in &mut s.links {
            *link = SpanLink {
                trace_id: remap(&link.trace_id),
                ..link.clone()
            };
        }
        let shift = start_ns - first;
        s.start_time_unix_nano += shift;
        s.end_time_unix_nano += shift;
    }
    Ok(spans)
}

pub(super) fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

pub(super) fn config(dir: &std::path::Path) -> StoreConfig {
    let mut config = StoreConfig::new(dir);
    config.flush_interval = Duration::from_secs(24 * 3600);
    config.flush_max_rows = usize::MAX;
    // A simulated day passes in minutes: every structure file is "old".
    config.settle_horizon = Duration::ZERO;
    config.vacuum_grace = Duration::ZERO;
    config.retention = Duration::from_secs(30 * 24 * 3600);
    config
}

#[derive(Default)]
struct Day {
    spans: usize,
    flush: Duration,
    commit: Duration,
    maintain: Duration,
    span_files: usize,
    all_files: usize,
    span_bytes: u64,
    by_id: Vec<Duration>,
    group_by: Duration,
}

async fn day(
    dir: &std::path::Path,
    bench: StorageBench,
    compact: bool,
    traces: &mut Vec<TraceId>,
) -> anyhow::Result<Day> {
    let store = Store::open(config(dir), Arc::new(Metrics::default())).await?;
    let start = now_ns() - 24 * 3_600_000_000_000 + 60_000_000_000;
    let mut out = Day::default();
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let mut window: (Duration, Duration) = Default::default();
    for f in 0..bench.flushes {
        let spans = chunk(
            f as u32,
            bench.spans_per_flush,
            start + f as i64 * 30_000_000_000,
        )?;
        if rng.random_ratio(1, 10) {
            traces.push(spans[0].trace_id);
        }
        out.spans += spans.len();
        store.ingest(&spans).await?;
        let t = Instant::now();
        let report = store.flush().await?;
        let took = t.elapsed();
        out.flush += took;
        out.commit += report.commit;
        if compact && (f + 1) % bench.compact_every.max(1) == 0 {
            let t = Instant::now();
            store.maintain().await?;
            out.maintain += t.elapsed();
        }
        window.0 += took;
        window.1 += report.commit;
        if (f + 1) % 240 == 0 {
            eprintln!(
                "  {} of {} flushes; last 240: flush {} ms, commits {} ms (means)",
                f + 1,
                bench.flushes,
                ms(window.0 / 240),
                ms(window.1 / 240),
            );
            window = Default::default();
        }
    }
    if compact {
        let t = Instant::now();
        store.maintain().await?;
        out.maintain += t.elapsed();
    }
    let snapshot = store.snapshot()?;
    out.span_files = snapshot.files.len();
    out.all_files = snapshot.files.len() + snapshot.structure.len() + snapshot.links.len();
    out.span_bytes = snapshot.files.iter().map(|f| f.bytes).sum();
    let engine = QueryEngine::new(Arc::new(store.clone()), QuerySettings::default()).await?;
    for trace in traces.iter() {
        let sql = format!(
            "SELECT span_id, name, start_time, duration_ns FROM spans WHERE trace_id = '{}'",
            trace.to_hex()
        );
        let t = Instant::now();
        let result = engine.sql(&sql).await?;
        out.by_id.push(t.elapsed());
        anyhow::ensure!(
            result.batches.iter().map(|b| b.num_rows()).sum::<usize>() > 0,
            "trace {trace} not found"
        );
    }
    out.by_id.sort();
    let mut group_by = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        engine
            .sql(
                "SELECT service_name, ai_kind, count(*), avg(duration_ns) FROM spans GROUP BY 1, 2",
            )
            .await?;
        group_by.push(t.elapsed());
    }
    group_by.sort();
    out.group_by = group_by[group_by.len() / 2];
    store.shutdown().await?;
    Ok(out)
}

pub(super) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub(super) fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

async fn simulated_day(bench: StorageBench) -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    let mut traces = Vec::new();
    eprintln!(
        "simulated day: {} flushes of about {} spans, without maintenance ...",
        bench.flushes, bench.spans_per_flush
    );
    let plain = day(&root.path().join("plain"), bench, false, &mut traces).await?;
    eprintln!(
        "the same day, compacted every {} flushes ...",
        bench.compact_every
    );
    let mut same_traces = traces.clone();
    let compacted = day(
        &root.path().join("compacted"),
        bench,
        true,
        &mut same_traces,
    )
    .await?;
    let per = |d: Duration, n: usize| d / n.max(1) as u32;
    println!(
        "\n## Simulated day: {} flushes, {} spans\n",
        bench.flushes, plain.spans
    );
    println!(
        "| | without maintenance | compacted every {} flushes | ratio |",
        bench.compact_every
    );
    println!("|---|---:|---:|---:|");
    let row = |name: &str, a: f64, b: f64, unit: &str| {
        let ratio = if a > 0.0 {
            format!("{:.3}", b / a)
        } else {
            "—".to_owned()
        };
        println!("| {name} | {a:.2}{unit} | {b:.2}{unit} | {ratio} |");
    };
    row(
        "span files",
        plain.span_files as f64,
        compacted.span_files as f64,
        "",
    );
    row(
        "files in all three tables",
        plain.all_files as f64,
        compacted.all_files as f64,
        "",
    );
    row(
        "bytes per span (span files)",
        plain.span_bytes as f64 / plain.spans as f64,
        compacted.span_bytes as f64 / compacted.spans as f64,
        "",
    );
    let f = |d: Duration| d.as_secs_f64() * 1e3;
    row(
        "flush, mean (ms)",
        f(per(plain.flush, bench.flushes)),
        f(per(compacted.flush, bench.flushes)),
        "",
    );
    row(
        "of which Delta commits, mean (ms)",
        f(per(plain.commit, bench.flushes)),
        f(per(compacted.commit, bench.flushes)),
        "",
    );
    row(
        "maintenance, whole day (ms)",
        f(plain.maintain),
        f(compacted.maintain),
        "",
    );
    row(
        "trace by id p50 (ms)",
        f(percentile(&plain.by_id, 0.5)),
        f(percentile(&compacted.by_id, 0.5)),
        "",
    );
    row(
        "trace by id p99 (ms)",
        f(percentile(&plain.by_id, 0.99)),
        f(percentile(&compacted.by_id, 0.99)),
        "",
    );
    row(
        "group by, median of 5 (ms)",
        f(plain.group_by),
        f(compacted.group_by),
        "",
    );
    println!(
        "\nA flush before the switch to Delta was the files and the settling; the \
         Delta commits are what the switch added: {} of {} ms per flush ({:.1}%).",
        ms(per(plain.commit, bench.flushes)),
        ms(per(plain.flush, bench.flushes)),
        100.0 * plain.commit.as_secs_f64() / plain.flush.as_secs_f64().max(f64::MIN_POSITIVE)
    );
    Ok(())
}

/// Fills a store at `dir` with about `total` spans of the demo workload in
/// flushes of 100,000 (their start times within the last hour), runs one
/// maintenance and shuts it down. Returns two trace ids of every flush, the
/// spans stored and the maintenance report.
pub(super) async fn fill(
    dir: &std::path::Path,
    total: usize,
    seed: u64,
) -> anyhow::Result<(Vec<TraceId>, usize, weft_store::MaintainReport)> {
    let mut config = config(dir);
    config.target_file_bytes = 128 * 1024 * 1024;
    let store = Store::open(config, Arc::new(Metrics::default())).await?;
    let per_chunk = 100_000;
    let chunks = total.div_ceil(per_chunk);
    let start = now_ns() - 1_800_000_000_000;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut traces = Vec::new();
    let mut stored = 0;
    eprintln!("storing {total} spans in {chunks} flushes ...");
    let t = Instant::now();
    for c in 0..chunks {
        let spans = chunk(
            1_000_000 + c as u32,
            per_chunk,
            start + c as i64 * 10_000_000,
        )?;
        for _ in 0..2 {
            traces.push(spans[rng.random_range(0..spans.len())].trace_id);
        }
        stored += spans.len();
        store.ingest(&spans).await?;
        store.flush().await?;
        if (c + 1) % 10 == 0 {
            eprintln!(
                "  {stored} spans stored ({:.0} s)",
                t.elapsed().as_secs_f64()
            );
        }
    }
    eprintln!("compacting ...");
    let report = store.maintain().await?;
    store.shutdown().await?;
    Ok((traces, stored, report))
}

async fn lookups(total: usize) -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    let dir = root.path().join("lookups");
    let (traces, stored, report) = fill(&dir, total, 5).await?;
    // Read as `weft sql --data-dir` reads: a fresh snapshot of the tables.
    let snapshot = read_snapshot(&dir.to_string_lossy()).await?;
    let files = snapshot.files.len();
    let engine = QueryEngine::new(
        Arc::new(weft_query::StaticSource(snapshot)),
        QuerySettings::default(),
    )
    .await?;
    let mut times = Vec::new();
    for trace in &traces {
        let sql = format!(
            "SELECT span_id, name, start_time, duration_ns FROM spans WHERE trace_id = '{}'",
            trace.to_hex()
        );
        let t = Instant::now();
        let result = engine.sql(&sql).await?;
        times.push(t.elapsed());
        anyhow::ensure!(
            result.batches.iter().map(|b| b.num_rows()).sum::<usize>() > 0,
            "trace {trace} not found"
        );
    }
    times.sort();
    println!(
        "\n## Trace by id over {stored} stored spans\n\n{} span files after compaction \
         ({} merged); {} lookups of random trace ids through SQL: p50 {} ms, p99 {} ms, max {} ms.",
        files,
        report.compacted_files,
        times.len(),
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.99)),
        ms(times.last().copied().unwrap_or_default()),
    );
    Ok(())
}

/// One trace that keeps growing: every flush adds 200 steps under its root,
/// each with 4 children, as an agent loop that runs for hours would.
async fn long_lived() -> anyhow::Result<()> {
    use weft_schemas::{AiFields, SpanId, SpanKind, StatusCode};
    const FLUSHES: u64 = 15;
    const STEPS: u64 = 200;
    let root = tempfile::tempdir()?;
    let mut config = config(root.path());
    config.settle_horizon = Duration::from_secs(3600);
    let store = Store::open(config, Arc::new(Metrics::default())).await?;
    let trace = TraceId::try_from([7u8; 16].as_slice())?;
    let start = now_ns() - 3_600_000_000_000;
    let sid = |n: u64| SpanId::try_from(n.to_be_bytes().as_slice());
    let span = |id: SpanId, parent: Option<SpanId>, at: i64| Span {
        trace_id: trace,
        span_id: id,
        parent_span_id: parent,
        trace_state: String::new(),
        name: format!("step {id}"),
        kind: SpanKind::Internal,
        start_time_unix_nano: at,
        end_time_unix_nano: at + 1_000_000,
        status_code: StatusCode::Ok,
        status_message: String::new(),
        service_name: Some("agent".into()),
        resource_attributes: Default::default(),
        scope_name: String::new(),
        scope_version: String::new(),
        attributes: Vec::new(),
        events: Vec::new(),
        links: Vec::new(),
        ai: AiFields::default(),
    };
    let mut structure_rows = Vec::new();
    let mut id = 1u64;
    for f in 0..FLUSHES {
        let mut spans = Vec::new();
        if f == 0 {
            spans.push(span(sid(1)?, None, start));
        }
        for s in 0..STEPS {
            let at = start + ((f * STEPS + s) * 10_000_000) as i64;
            id += 1;
            let step = id;
            spans.push(span(sid(step)?, Some(sid(1)?), at));
            for c in 0..4 {
                id += 1;
                spans.push(span(sid(id)?, Some(sid(step)?), at + c));
            }
        }
        store.ingest(&spans).await?;
        store.flush().await?;
        let snapshot = store.snapshot()?;
        structure_rows.push(snapshot.structure.iter().map(|f| f.rows).sum::<usize>());
    }
    let snapshot = store.snapshot()?;
    let spans_bytes: u64 = snapshot.files.iter().map(|f| f.bytes).sum();
    let structure_bytes: u64 = snapshot.structure.iter().map(|f| f.bytes).sum();
    let spans_rows: usize = snapshot.files.iter().map(|f| f.rows).sum();
    println!(
        "\n## A long-lived trace: {FLUSHES} flushes of {} spans each\n\n\
         {spans_rows} spans in {} bytes of span files; {} structure rows written in {} bytes \
         of structure files ({:.2} bytes of structure per byte of spans). Before this change a \
         settling rewrote the whole trace: {} rows would have been written.",
        STEPS * 5,
        spans_bytes,
        structure_rows.last().copied().unwrap_or(0),
        structure_bytes,
        structure_bytes as f64 / spans_bytes.max(1) as f64,
        (1..=FLUSHES).map(|f| 1 + f * STEPS * 5).sum::<u64>(),
    );
    store.shutdown().await?;
    Ok(())
}
