//! Recovery at open: what a data location holds after a stop or a crash.
//! Each table's `txn` says which WAL records it holds; the WAL past the
//! lowest of them replays into the live buffer (a flush interrupted between
//! its tables' commits is finished by the store before it takes spans), and
//! the retry-detection and settling windows are seeded from recent files, so
//! a restart forgets nothing a client or a later flush relies on.
//! [`read_snapshot`] reads the same without changing anything.

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
use crate::storage::Storage;
use crate::tables::{TableKind, Tables, collector_id};
use crate::wal;

/// The WAL past what every table holds, and the windows seeded from files.
pub(super) struct Recovered {
    /// The highest WAL sequence seen (in a table or replayed).
    pub max_seq: u64,
    /// WAL records some table does not hold yet, in sequence order.
    pub live: Vec<LiveBatch>,
    pub dedup: Recent<(TraceId, SpanId), ()>,
    pub settled: Recent<TraceId, Vec<i64>>,
}

/// Replays the WAL past `held` (the lowest sequence every table holds), and
/// seeds the retry and settling windows from the tables' recent files.
pub(super) fn recover(
    config: &StoreConfig,
    storage: &Storage,
    app: &str,
    held: u64,
    spans: &[FileMeta],
    structure: &[FileMeta],
) -> Result<Recovered> {
    let wal_dir = config.wal_dir();
    let mut settled = Recent::new(config.settle_horizon, config.settle_max_traces);
    let own: Vec<FileMeta> = structure
        .iter()
        .filter(|f| f.writer == app)
        .cloned()
        .collect();
    seed_settled_from_recent_files(storage, &own, config.settle_horizon, &mut settled);

    let mut dedup = Recent::new(config.dedup_window, config.dedup_max_spans);
    seed_dedup_from_recent_files(storage, spans, config.dedup_window, &mut dedup);
    let mut live = Vec::new();
    let mut max_seq = held;
    let report = wal::replay(&wal_dir, wal::Mode::Repair, |seq, payload| {
        max_seq = max_seq.max(seq);
        if seq <= held {
            return Ok(());
        }
        // A record whose checksum holds but which does not read (another
        // weft version's schema) was acknowledged: skipping it would lose it
        // at the next truncation, so the store does not open.
        let batch = decode_batch(payload).map_err(|e| {
            Error::Corrupt(format!(
                "WAL record {seq} in {} cannot be read ({e}); its spans were acknowledged, \
                 so weft does not start without them: run the weft version that wrote it \
                 until it has flushed, or move the WAL directory aside to give them up",
                wal_dir.display()
            ))
        })?;
        for key in batch_keys(&batch) {
            dedup.insert(key, ());
        }
        live.push(LiveBatch { seq, batch });
        Ok(())
    })?;
    tracing::info!(
        location = %storage.root(),
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

/// Reads a data location (a directory or an `s3://` URL) without changing
/// it — for queries beside (or without) a running server: the tables' files
/// plus, for a directory, the records of its WAL the `spans` table does not
/// hold yet. Nothing is locked: if a running server flushes and trims its WAL
/// while this reads, the flushed spans can be missing from this one snapshot
/// (read again).
pub async fn read_snapshot(location: &str) -> Result<Snapshot> {
    let storage = Storage::open(location)?;
    if let Some(dir) = storage.local() {
        if !dir.is_dir() {
            return Err(Error::io(
                dir,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such data directory; run `weft serve` first or pass --data-dir",
                ),
            ));
        }
        if legacy::is_legacy(dir) {
            return Err(legacy::refuse(dir));
        }
    }
    let Some(tables) = Tables::open(&storage, false).await? else {
        // A directory with a WAL but no tables yet is a server's first
        // minutes; anything else is not where Weft writes.
        let has_wal = storage
            .local()
            .is_some_and(|dir| dir.join(WAL_DIR).is_dir());
        if !has_wal {
            return Err(Error::NotWeft {
                location: storage.root(),
            });
        }
        return Ok(Snapshot {
            remote: storage.remote(),
            ..Snapshot::default()
        });
    };
    let mut batches = Vec::new();
    if let Some(dir) = storage.local() {
        let wal_dir = dir.join(WAL_DIR);
        // The listing below holds this collector's flushes that reached
        // every table, `span_structure` last; the WAL has the rest.
        let held = match collector_id(&wal_dir, false)? {
            Some(app) => tables.get(TableKind::Structure).applied(&app).await?,
            None => 0,
        };
        wal::replay(&wal_dir, wal::Mode::ReadOnly, |seq, payload| {
            if seq > held {
                batches.push(decode_batch(payload)?);
            }
            Ok(())
        })?;
    }
    let listing = tables.listing().await?;
    Ok(Snapshot {
        files: listing.spans,
        batches,
        structure: listing.structure,
        links: listing.links,
        remote: storage.remote(),
    })
}

/// Remembers the span ids of files written within the dedup window, so a
/// client retrying across a restart does not store its spans twice.
fn seed_dedup_from_recent_files(
    storage: &Storage,
    files: &[FileMeta],
    window: Duration,
    dedup: &mut Recent<(TraceId, SpanId), ()>,
) {
    for_recent_keys(storage, files, window, "retry detection", |_, key| {
        dedup.insert(key, ())
    });
}

/// Remembers which traces the structure files of the horizon settled, so
/// spans arriving for them after a restart extend their structure.
fn seed_settled_from_recent_files(
    storage: &Storage,
    files: &[FileMeta],
    horizon: Duration,
    settled: &mut Recent<TraceId, Vec<i64>>,
) {
    // Oldest first, so a trace ends with its latest generation. Compacted
    // files (no WAL sequence) hold generations no flush extends any more.
    for_recent_keys(
        storage,
        files,
        horizon,
        "trace structure",
        |file, (trace, _)| {
            if file.seq_hi > 0 {
                let mut generations = settled.get(&trace).unwrap_or_default();
                if generations.last() != Some(&(file.seq_hi as i64)) {
                    generations.push(file.seq_hi as i64);
                }
                settled.insert(trace, generations)
            }
        },
    );
}

/// Calls `each` with every `(trace_id, span_id)` of the files modified within `window`.
fn for_recent_keys(
    storage: &Storage,
    files: &[FileMeta],
    window: Duration,
    purpose: &str,
    mut each: impl FnMut(&FileMeta, (TraceId, SpanId)),
) {
    let mut recent: Vec<&FileMeta> = files.iter().filter(|f| f.age() < window).collect();
    recent.sort_by_key(|f| f.seq_hi);
    for file in recent {
        match read_span_keys(storage, &file.location) {
            Ok(keys) => {
                for key in keys {
                    each(file, key);
                }
            }
            Err(e) => {
                tracing::warn!(file = %file.location, error = %e, purpose, "cannot read span ids")
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
