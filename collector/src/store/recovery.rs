//! Recovery at open: what the data directory holds after a stop or a crash.
//! Files past the checkpoint (an interrupted flush) are deleted, the WAL past
//! it replays into the live buffer, and the retry-detection and settling
//! windows are seeded from recent files, so a restart forgets nothing a client
//! or a later flush relies on. [`read_snapshot`] reads the same without changing anything.

use std::fs;
use std::path::Path;
use std::time::Duration;

use arrow::array::RecordBatch;
use weft_schemas::{SpanId, SpanReader, TraceId};

use super::checkpoint::read_checkpoint;
use super::codec::decode_batch;
use super::recent::Recent;
use super::upgrade::{Table, check, upgrade};
use super::{LiveBatch, Snapshot, State, WAL_DIR};
use crate::config::StoreConfig;
use crate::error::{Error, Result};
use crate::parquet_files::{FileMeta, SPANS_DIR, read_span_keys, recover_files};
use crate::settle::{LINKS_DIR, STRUCTURE_DIR};
use crate::wal;

/// What a data directory holds, ready for a store to run on.
pub(super) struct Recovered {
    pub checkpoint: u64,
    /// The highest WAL sequence seen (durable in Parquet or replayed).
    pub max_seq: u64,
    /// The committed files and the replayed live buffer.
    pub state: State,
    pub dedup: Recent<(TraceId, SpanId), ()>,
    pub settled: Recent<TraceId, i64>,
}

/// Drops leftovers of an interrupted flush, replays the WAL past the
/// checkpoint, and seeds the retry and settling windows.
pub(super) fn recover(config: &StoreConfig) -> Result<Recovered> {
    let root = &config.data_dir;
    let wal_dir = root.join(WAL_DIR);
    let checkpoint = read_checkpoint(root)?;
    let files = recover_files(root, SPANS_DIR, checkpoint, true)?;
    let structure = recover_files(root, STRUCTURE_DIR, checkpoint, true)?;
    let links = recover_files(root, LINKS_DIR, checkpoint, true)?;
    upgrade(
        root,
        &[
            (&files, Table::Spans),
            (&structure, Table::Structure),
            (&links, Table::Links),
        ],
        config.row_group_rows,
    )?;
    let mut settled = Recent::new(config.settle_horizon);
    seed_settled_from_recent_files(&structure, config.settle_horizon, &mut settled);

    let mut dedup = Recent::new(config.dedup_window);
    seed_dedup_from_recent_files(&files, config.dedup_window, &mut dedup);
    let mut live = Vec::new();
    let mut max_seq = checkpoint;
    let report = wal::replay(&wal_dir, wal::Mode::Repair, |seq, payload| {
        max_seq = max_seq.max(seq);
        if seq <= checkpoint {
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
    let live_rows = live.iter().map(|l| l.batch.num_rows()).sum::<usize>();
    tracing::info!(
        data_dir = %root.display(),
        parquet_files = files.len(),
        replayed_records = live.len(),
        replayed_spans = live_rows,
        torn_bytes = report.torn_bytes,
        quarantined = report.quarantined.len(),
        "store opened"
    );
    Ok(Recovered {
        checkpoint,
        max_seq,
        state: State {
            files,
            structure,
            links,
            live,
            live_rows,
        },
        dedup,
        settled,
    })
}

/// Reads a data directory without changing it — for queries beside (or
/// without) a running server: committed files plus the WAL's unflushed records.
/// Nothing is locked: if a running server flushes and trims its WAL while this
/// reads, the flushed spans can be missing from this one snapshot (read again).
pub fn read_snapshot(data_dir: &Path) -> Result<Snapshot> {
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
    let checkpoint = read_checkpoint(data_dir)?;
    let files = recover_files(data_dir, SPANS_DIR, checkpoint, false)?;
    let structure = recover_files(data_dir, STRUCTURE_DIR, checkpoint, false)?;
    let links = recover_files(data_dir, LINKS_DIR, checkpoint, false)?;
    check(data_dir, &[&files, &structure, &links])?;
    let mut batches = Vec::new();
    wal::replay(
        &data_dir.join(WAL_DIR),
        wal::Mode::ReadOnly,
        |seq, payload| {
            if seq > checkpoint {
                batches.push(decode_batch(payload)?);
            }
            Ok(())
        },
    )?;
    Ok(Snapshot {
        files,
        batches,
        structure,
        links,
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
