//! Counters exported at `/metrics` in Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Ingest and storage counters, shared by every stage.
#[derive(Debug, Default)]
pub struct Metrics {
    pub spans_accepted: AtomicU64,
    pub spans_rejected: AtomicU64,
    pub spans_duplicate: AtomicU64,
    pub requests_failed: AtomicU64,
    pub requests_refused_backlog: AtomicU64,
    pub flushes_failed: AtomicU64,
    pub wal_bytes: AtomicU64,
    pub wal_syncs: AtomicU64,
    pub buffered_spans: AtomicU64,
    /// Span ids held for retry detection (bounded by `dedup_max_spans`).
    pub dedup_spans: AtomicU64,
    /// Settled traces remembered for extension (bounded by `settle_max_traces`).
    pub settled_traces: AtomicU64,
    pub flushes: AtomicU64,
    /// Microseconds spent in flushes (write, settle, commit), all of them.
    pub flush_micros: AtomicU64,
    /// Flush commits that found another writer's commit first (a collector
    /// sharing the location, maintenance): checked for conflicts, then landed.
    pub commit_conflicts: AtomicU64,
    pub parquet_bytes: AtomicU64,
    /// Unix nanoseconds of the oldest span acknowledged but not yet in Parquet (0 = none).
    pub oldest_unflushed_unix_nano: AtomicI64,
}

impl Metrics {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Renders all counters in Prometheus text exposition format: the span
    /// store's unlabelled, and with `events`, the event store's (GenAI events,
    /// `/v1/logs`) as the same metrics labelled `store="events"`.
    pub fn render_prometheus(&self, now_unix_nano: i64, events: Option<&Metrics>) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut emit = |name: &str, kind: &str, help: &str, value: &dyn Fn(&Metrics) -> String| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {}", value(self));
            if let Some(events) = events {
                let _ = writeln!(out, "{name}{{store=\"events\"}} {}", value(events));
            }
        };
        emit(
            "weft_spans_accepted_total",
            "counter",
            "Spans acknowledged durable.",
            &|m| get(&m.spans_accepted).to_string(),
        );
        emit(
            "weft_spans_rejected_total",
            "counter",
            "Spans rejected by validation.",
            &|m| get(&m.spans_rejected).to_string(),
        );
        emit(
            "weft_spans_duplicate_total",
            "counter",
            "Acknowledged spans resent by a client and dropped.",
            &|m| get(&m.spans_duplicate).to_string(),
        );
        emit(
            "weft_requests_failed_total",
            "counter",
            "Export requests answered with an error.",
            &|m| get(&m.requests_failed).to_string(),
        );
        emit(
            "weft_requests_refused_backlog_total",
            "counter",
            "Export requests refused (retry later) because max_unflushed_spans wait to be flushed.",
            &|m| get(&m.requests_refused_backlog).to_string(),
        );
        emit(
            "weft_flushes_failed_total",
            "counter",
            "Flushes that failed (a full disk, an unreachable object store); the next retries.",
            &|m| get(&m.flushes_failed).to_string(),
        );
        emit(
            "weft_wal_bytes_total",
            "counter",
            "Bytes appended to the write-ahead log.",
            &|m| get(&m.wal_bytes).to_string(),
        );
        emit(
            "weft_wal_syncs_total",
            "counter",
            "fsyncs of the write-ahead log (one per group commit).",
            &|m| get(&m.wal_syncs).to_string(),
        );
        emit(
            "weft_buffered_spans",
            "gauge",
            "Spans acknowledged and not yet flushed to Parquet.",
            &|m| get(&m.buffered_spans).to_string(),
        );
        emit(
            "weft_dedup_spans",
            "gauge",
            "Span ids remembered to drop client retries (at most dedup_max_spans).",
            &|m| get(&m.dedup_spans).to_string(),
        );
        emit(
            "weft_settled_traces",
            "gauge",
            "Settled traces remembered so later spans extend them (at most settle_max_traces).",
            &|m| get(&m.settled_traces).to_string(),
        );
        emit(
            "weft_flushes_total",
            "counter",
            "Flushes of the live buffer to Parquet.",
            &|m| get(&m.flushes).to_string(),
        );
        emit(
            "weft_flush_seconds_total",
            "counter",
            "Time spent flushing (writing Parquet, settling, committing); divided by weft_flushes_total, the mean flush.",
            &|m| format!("{:.6}", get(&m.flush_micros) as f64 / 1e6),
        );
        emit(
            "weft_commit_conflicts_total",
            "counter",
            "Flush commits that found another writer's commit first (checked for conflicts, then landed).",
            &|m| get(&m.commit_conflicts).to_string(),
        );
        emit(
            "weft_parquet_bytes_total",
            "counter",
            "Bytes written to Parquet files.",
            &|m| get(&m.parquet_bytes).to_string(),
        );
        let lag = |m: &Metrics| {
            let oldest = m.oldest_unflushed_unix_nano.load(Ordering::Relaxed);
            let lag = if oldest == 0 {
                0.0
            } else {
                (now_unix_nano - oldest).max(0) as f64 / 1e9
            };
            format!("{lag:.3}")
        };
        emit(
            "weft_flush_lag_seconds",
            "gauge",
            "Age of the oldest acknowledged span not yet in Parquet.",
            &lag,
        );
        out
    }
}
