//! The WAL writer thread: one thread owns the WAL. It groups concurrent
//! requests, drops spans already stored (client retries), appends one record per
//! request, fsyncs once per group, puts the batches in the live buffer in
//! sequence order, and only then answers. A failed group answers every request
//! in it with the error that failed it.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use arrow::array::{BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use tokio::sync::{Notify, mpsc, oneshot};
use weft_schemas::{SpanId, TraceId};

use super::codec::encode_batch;
use super::recent::Recent;
use super::{IngestOutcome, LiveBatch, State, now_unix_nano};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::wal::WalWriter;

/// Most requests committed with one fsync.
const MAX_GROUP: usize = 1024;

/// What the store asks of the writer thread.
pub(super) enum Command {
    Append {
        keys: Vec<(TraceId, SpanId)>,
        batch: RecordBatch,
        reply: oneshot::Sender<Result<IngestOutcome>>,
    },
    /// Everything at or below this sequence number is in Parquet.
    Trim(u64),
}

pub(super) struct WriterContext {
    pub state: Arc<RwLock<State>>,
    pub metrics: Arc<Metrics>,
    pub flush_wanted: Arc<Notify>,
    pub flush_max_rows: usize,
    /// Requests are refused (retry later) while this many spans wait to be
    /// flushed: a store whose flushes fail must not grow without bound.
    pub max_unflushed_spans: usize,
    pub dedup: Recent<(TraceId, SpanId), ()>,
    /// Sees each acknowledged batch, after its clients were answered.
    pub observer: super::ObserverSlot,
}

/// The WAL writer thread: group commit until every sender is gone.
pub(super) fn run_writer(
    mut rx: mpsc::Receiver<Command>,
    mut wal: WalWriter,
    mut cx: WriterContext,
) {
    while let Some(first) = rx.blocking_recv() {
        let mut group = Vec::new();
        let mut trim = None;
        let mut next = Some(first);
        while let Some(cmd) = next.take() {
            match cmd {
                Command::Append { keys, batch, reply } => group.push((keys, batch, reply)),
                Command::Trim(seq) => trim = Some(seq),
            }
            if group.len() < MAX_GROUP {
                next = rx.try_recv().ok();
            }
        }
        if !group.is_empty() {
            commit_group(&mut wal, &mut cx, group);
        }
        if let Some(checkpoint) = trim
            && let Err(e) = wal.rotate_and_trim(checkpoint)
        {
            tracing::error!(error = %e, "wal trim failed; old segments stay until the next flush");
        }
    }
    if let Err(e) = wal.sync() {
        tracing::error!(error = %e, "final wal sync failed");
    }
}

type Pending = (
    Vec<(TraceId, SpanId)>,
    RecordBatch,
    oneshot::Sender<Result<IngestOutcome>>,
);

fn commit_group(wal: &mut WalWriter, cx: &mut WriterContext, group: Vec<Pending>) {
    if wal.is_broken()
        && let Err(e) = wal.roll_back()
    {
        tracing::warn!(error = %e, "the wal still cannot be rolled back");
    }
    let mut in_group: HashSet<(TraceId, SpanId)> = HashSet::new();
    let mut staged = Vec::with_capacity(group.len());
    let mut failure: Option<Error> = None;
    let mut bytes = 0u64;
    let mut waiting = cx.state.read().map_or(0, |s| s.live_rows);
    for (keys, batch, reply) in group {
        // Over the backlog bound: refuse, unless nothing waits (a request
        // larger than the bound alone would otherwise never be taken), and
        // ask for a flush: the buffer may be full short of `flush_max_rows`
        // (when that is near the bound), and only a flush makes room.
        if waiting > 0 && waiting + batch.num_rows() > cx.max_unflushed_spans {
            cx.flush_wanted.notify_one();
            Metrics::add(&cx.metrics.requests_refused_backlog, 1);
            let _ = reply.send(Err(Error::Backlog {
                waiting,
                limit: cx.max_unflushed_spans,
            }));
            continue;
        }
        waiting += batch.num_rows();
        if failure.is_some() {
            // The WAL already failed for this group: answer the rest with that error.
            staged.push((None, IngestOutcome::default(), reply));
            continue;
        }
        let mask: Vec<bool> = keys
            .iter()
            .map(|k| !cx.dedup.contains(k) && in_group.insert(*k))
            .collect();
        let stored = mask.iter().filter(|m| **m).count();
        let outcome = IngestOutcome {
            stored,
            duplicates: keys.len() - stored,
        };
        let batch = if outcome.duplicates == 0 {
            Ok(batch)
        } else {
            filter_record_batch(&batch, &BooleanArray::from(mask)).map_err(Error::from)
        };
        let appended = batch.and_then(|batch| {
            if batch.num_rows() == 0 {
                return Ok(None);
            }
            let payload = encode_batch(&batch)?;
            bytes += payload.len() as u64;
            let seq = wal.append(&payload)?;
            Ok(Some((seq, batch)))
        });
        match appended {
            Ok(entry) => staged.push((entry, outcome, reply)),
            Err(e) => {
                failure = Some(e);
                staged.push((None, outcome, reply));
            }
        }
    }
    if failure.is_none()
        && let Err(e) = wal.sync()
    {
        failure = Some(e);
    }
    if let Some(e) = failure {
        tracing::error!(error = %e, requests = staged.len(), "wal commit failed; clients will retry");
        for (_, _, reply) in staged {
            let _ = reply.send(Err(e.duplicate()));
        }
        // None of the group was acknowledged: take its records (whole or
        // partial frames) out of the log, so they never replay and the next
        // group's records follow the last acknowledged one.
        if let Err(e) = wal.roll_back() {
            tracing::error!(error = %e, "cannot roll the wal back; the next write tries again");
        }
        return;
    }
    Metrics::add(&cx.metrics.wal_bytes, bytes);
    Metrics::add(&cx.metrics.wal_syncs, 1);
    let mut replies = Vec::with_capacity(staged.len());
    let observer = cx.observer.read().ok().and_then(|o| o.clone());
    let mut acknowledged = Vec::new();
    {
        let Ok(mut state) = cx.state.write() else {
            for (_, _, reply) in staged {
                let _ = reply.send(Err(Error::Internal("store lock poisoned".into())));
            }
            return;
        };
        if state.live.is_empty() {
            cx.metrics
                .oldest_unflushed_unix_nano
                .store(now_unix_nano(), Ordering::Relaxed);
        }
        for (entry, outcome, reply) in staged {
            if let Some((seq, batch)) = entry {
                state.live_rows += batch.num_rows();
                if observer.is_some() {
                    acknowledged.push(batch.clone());
                }
                state.live.push(LiveBatch { seq, batch });
            }
            replies.push((outcome, reply));
        }
        cx.metrics
            .buffered_spans
            .store(state.live_rows as u64, Ordering::Relaxed);
        if state.live_rows >= cx.flush_max_rows {
            cx.flush_wanted.notify_one();
        }
    }
    for key in in_group {
        cx.dedup.insert(key, ());
    }
    cx.metrics
        .dedup_spans
        .store(cx.dedup.len() as u64, Ordering::Relaxed);
    for (outcome, reply) in replies {
        Metrics::add(&cx.metrics.spans_accepted, outcome.stored as u64);
        Metrics::add(&cx.metrics.spans_duplicate, outcome.duplicates as u64);
        let _ = reply.send(Ok(outcome));
    }
    if let Some(observer) = observer {
        for batch in &acknowledged {
            observer.acknowledged(batch);
        }
    }
}
