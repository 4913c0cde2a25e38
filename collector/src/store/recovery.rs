//! Recovery at open: what a data location holds after a stop or a crash.
//! Each table's `txn` says which WAL records it holds; the WAL past the
//! lowest of them replays into the live buffer (a flush interrupted between
//! its tables' commits is finished by the store before it takes spans), and
//! the retry-detection and settling windows are seeded from recent files, so
//! a restart forgets nothing a client or a later flush relies on.
//! [`read_snapshot`] reads the same without changing anything.

use std::fs;
use std::path::Path;
use std::time::Duration;

use arrow::array::RecordBatch;
use weft_schemas::{SpanId, SpanReader, TraceId};

use super::codec::decode_batch;
use super::legacy;
use super::recent::Recent;
use super::{LiveBatch, Snapshot, WAL_DIR};
use crate::config::StoreConfig;
use crate::error::{Error, Result};
use crate::parquet_files::{FileMeta, read_span_keys};
use crate::tables::{TableKind, Tables, collector_id};
use crate::wal;

/// The WAL past what every table holds, and the windows seeded from files.
pub(super) struct Recovered {
    /// The highest WAL sequence seen (in a table or replayed).
    pub max_seq: u64,
    /// WAL records some table does not hold yet, in sequence order.
    pub live: Vec<LiveBatch>,
    pub dedup: Recent<(TraceId, SpanId), ()>,
    pub settled: Recent<TraceId, i64>,
}

/// Replays the WAL past `held` (the lowest sequence every table holds), and
/// seeds the retry and settling windows from the tables' recent files.
pub(super) fn recover(
    config: &StoreConfig,
    held: u64,
    spans: &[FileMeta],
    structure: &[FileMeta],
) -> Result<Recovered> {
    let root = &config.data_dir;
    let wal_dir = root.join(WAL_DIR);
    let mut settled = Recent::new(config.settle_horizon);
    seed_settled_from_recent_files(structure, config.settle_horizon, &mut settled);

    let mut dedup = Recent::new(config.dedup_window);
    seed_dedup_from_recent_files(spans, config.dedup_window, &mut dedup);
    let mut live = Vec::new();
    let mut max_seq = held;
    let report = wal::replay(&wal_dir, wal::Mode::Repair, |seq, payload| {
        max_seq = max_seq.max(seq);
        if seq <= held {
            return Ok(());
        }
        match decode_batch(payload) {
            Ok(batch) => {
                for key in batch_keys(&batch) {
                    dedup.insert(key, ());
                }
                live.push(LiveBatch { seq, batch });
            }
            Err(e) => {
                tracing::error!(seq, error = %e, "wal record is not a span batch; skipped")
            }
        }
        Ok(())
    })?;
    tracing::info!(
        data_dir = %root.display(),
        span_files = spans.len(),
        replayed_records = live.len(),
        replayed_spans = live.iter().map(|l| l.batch.num_rows()).sum::<usize>(),
        torn_bytes = report.torn_bytes,
        quarantined = report.quarantined.len(),
        "store opened"
    );
    Ok(Recovered {
        max_seq,
        live,
        dedup,
        settled,
    })
}

/// Reads a data location without changing it — for queries beside (or
/// without) a running server: the tables' files plus the WAL's records the
/// `spans` table does not hold yet. Nothing is locked: if a running server
/// flushes and trims its WAL while this reads, the flushed spans can be
/// missing from this one snapshot (read again).
pub async fn read_snapshot(data_dir: &Path) -> Result<Snapshot> {
    let data_dir = &std::path::absolute(data_dir).map_err(|e| Error::io(data_dir, e))?;
    if !data_dir.is_dir() {
        return Err(Error::io(
            data_dir,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such data directory; run `weft serve` first or pass --data-dir",
            ),
        ));
    }
    if legacy::is_legacy(data_dir) {
        return Err(legacy::refuse(data_dir));
    }
    let Some(tables) = Tables::open(data_dir, false).await? else {
        return Ok(Snapshot::default());
    };
    let wal_dir = data_dir.join(WAL_DIR);
    let held = match collector_id(&wal_dir, false)? {
        Some(app) => tables.get(TableKind::Spans).applied(&app).await?,
        None => 0,
    };
    let mut batches = Vec::new();
    wal::replay(&wal_dir, wal::Mode::ReadOnly, |seq, payload| {
        if seq > held {
            batches.push(decode_batch(payload)?);
        }
        Ok(())
    })?;
    Ok(Snapshot {
        files: tables.get(TableKind::Spans).files()?,
        batches,
        structure: tables.get(TableKind::Structure).files()?,
        links: tables.get(TableKind::Links).files()?,
    })
}

/// Remembers the span ids of files written within the dedup window, so a
/// client retrying across a restart does not store its spans twice.
fn seed_dedup_from_recent_files(
    files: &[FileMeta],
    window: Duration,
    dedup: &mut Recent<(TraceId, SpanId), ()>,
) {
    for_recent_keys(files, window, "retry detection", |_, key| {
        dedup.insert(key, ())
    });
}

/// Remembers which traces the structure files of the horizon settled, so
/// spans arriving for them after a restart extend their structure.
fn seed_settled_from_recent_files(
    files: &[FileMeta],
    horizon: Duration,
    settled: &mut Recent<TraceId, i64>,
) {
    // Oldest first, so a trace ends with its latest generation.
    for_recent_keys(files, horizon, "trace structure", |file, (trace, _)| {
        settled.insert(trace, file.seq_hi as i64)
    });
}

/// Calls `each` with every `(trace_id, span_id)` of the files modified within `window`.
fn for_recent_keys(
    files: &[FileMeta],
    window: Duration,
    purpose: &str,
    mut each: impl FnMut(&FileMeta, (TraceId, SpanId)),
) {
    let now = std::time::SystemTime::now();
    let mut recent: Vec<&FileMeta> = files
        .iter()
        .filter(|f| {
            fs::metadata(&f.path)
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).unwrap_or_default() < window)
        })
        .collect();
    recent.sort_by_key(|f| f.seq_hi);
    for file in recent {
        match read_span_keys(&file.path) {
            Ok(keys) => {
                for key in keys {
                    each(file, key);
                }
            }
            Err(e) => {
                tracing::warn!(file = %file.path.display(), error = %e, purpose, "cannot read span ids")
            }
        }
    }
}

/// The `(trace_id, span_id)` of every row with valid ids.
pub(super) fn batch_keys(batch: &RecordBatch) -> Vec<(TraceId, SpanId)> {
    let Ok(r) = SpanReader::new(batch) else {
        return Vec::new();
    };
    (0..r.len())
        .filter_map(|row| Some((r.trace_id(row)?, r.span_id(row)?)))
        .collect()
}
