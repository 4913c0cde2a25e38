//! The store: acknowledged spans, first in the WAL and the live buffer, then in Parquet.
//!
//! [`Store::ingest`] hands a batch to the single WAL writer thread, which groups
//! concurrent requests, drops spans it has already stored (client retries),
//! appends one record per request, `fdatasync`s once for the whole group, puts
//! the batches in the live buffer in sequence order, and only then answers.
//! A background task flushes the live buffer to Parquet and settles the traces
//! in it ([`crate::settle`]); the WAL is trimmed only after the files and the
//! checkpoint naming them are durable.
//!
//! Readers take a [`Snapshot`]: the committed Parquet files plus the live
//! batches not in them, taken under one lock, so no span is seen twice or missed.
//!
//! One file per job: this one is the API and the flush; `writer` the WAL writer
//! thread; `recent` the bounded retry and settling windows; `checkpoint`;
//! `codec` the WAL record format; `recovery` what a directory holds at open (and
//! `read_snapshot`); `upgrade` converting files of an older schema version.

mod checkpoint;
mod codec;
mod recent;
mod recovery;
mod upgrade;
mod writer;

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use tokio::sync::{Notify, mpsc, oneshot};
use weft_schemas::{Span, TraceId, span_schema, spans_to_batch};

use self::checkpoint::write_checkpoint;
use self::recent::Recent;
pub use self::recovery::read_snapshot;
use self::recovery::{Recovered, batch_keys, recover};
use self::writer::{Command, WriterContext, run_writer};
use crate::config::StoreConfig;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::parquet_files::{FileMeta, write_partitions};
use crate::settle::{Previous, link_rows, settle};
use crate::wal::WalWriter;

const WAL_DIR: &str = "wal";

/// What happened to the spans of one ingest call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IngestOutcome {
    /// Spans newly stored.
    pub stored: usize,
    /// Spans already stored earlier (a client retry) and dropped.
    pub duplicates: usize,
}

/// A consistent view for readers: Parquet files plus the live batches not in
/// them, and the settled tables written by the same flushes as those files.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub files: Vec<FileMeta>,
    pub batches: Vec<RecordBatch>,
    /// `span_structure` files (one per flush).
    pub structure: Vec<FileMeta>,
    /// `span_links` files (one per flush that stored a link).
    pub links: Vec<FileMeta>,
}

impl Snapshot {
    /// The `span_links` rows of the live batches, derived exactly as a flush
    /// derives them for its link files.
    pub fn live_links(&self) -> Result<Vec<RecordBatch>> {
        self.batches.iter().map(link_rows).collect()
    }
}

/// What one flush did, and what each part of it cost.
#[derive(Debug, Clone, Default)]
pub struct FlushReport {
    /// Spans written to Parquet.
    pub spans: usize,
    /// Span files written, and their bytes.
    pub files: usize,
    pub bytes: u64,
    /// Traces settled (their structure written again).
    pub traces_settled: usize,
    /// Writing the span files.
    pub write: Duration,
    /// Settling: the structure and link files.
    pub settle: Duration,
}

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    config: StoreConfig,
    metrics: Arc<Metrics>,
    state: Arc<RwLock<State>>,
    tx: Mutex<Option<mpsc::Sender<Command>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    flush_lock: tokio::sync::Mutex<()>,
    flush_wanted: Arc<Notify>,
    /// Latest structure generation of each recently settled trace.
    settled: Mutex<Recent<TraceId, i64>>,
}

#[derive(Default)]
pub(crate) struct State {
    files: Vec<FileMeta>,
    structure: Vec<FileMeta>,
    links: Vec<FileMeta>,
    live: Vec<LiveBatch>,
    live_rows: usize,
}

pub(crate) struct LiveBatch {
    seq: u64,
    batch: RecordBatch,
}

fn lock_err<T>(_: T) -> Error {
    Error::Internal("store lock poisoned by an earlier panic".into())
}

impl Store {
    /// Opens the data directory: drops leftovers of an interrupted flush, replays
    /// the WAL into the live buffer, and starts the WAL writer thread.
    pub fn open(mut config: StoreConfig, metrics: Arc<Metrics>) -> Result<Self> {
        // Absolute, so readers can turn file paths into URLs.
        config.data_dir =
            std::path::absolute(&config.data_dir).map_err(|e| Error::io(&config.data_dir, e))?;
        let wal_dir = config.data_dir.join(WAL_DIR);
        fs::create_dir_all(&wal_dir).map_err(|e| Error::io(&wal_dir, e))?;
        let Recovered {
            checkpoint,
            max_seq,
            state,
            dedup,
            settled,
        } = recover(&config)?;
        metrics
            .buffered_spans
            .store(state.live_rows as u64, Ordering::Relaxed);
        if state.live_rows > 0 {
            metrics
                .oldest_unflushed_unix_nano
                .store(now_unix_nano(), Ordering::Relaxed);
        }

        let mut writer = WalWriter::open(&wal_dir, max_seq + 1)?;
        writer.rotate_and_trim(checkpoint)?;
        let state = Arc::new(RwLock::new(state));
        let (tx, rx) = mpsc::channel(4096);
        let flush_wanted = Arc::new(Notify::new());
        let thread = {
            let ctx = WriterContext {
                state: Arc::clone(&state),
                metrics: Arc::clone(&metrics),
                flush_wanted: Arc::clone(&flush_wanted),
                flush_max_rows: config.flush_max_rows,
                dedup,
            };
            std::thread::Builder::new()
                .name("weft-wal".into())
                .spawn(move || run_writer(rx, writer, ctx))
                .map_err(|e| Error::io(&wal_dir, e))?
        };
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                metrics,
                state,
                tx: Mutex::new(Some(tx)),
                writer: Mutex::new(Some(thread)),
                flush_lock: tokio::sync::Mutex::new(()),
                flush_wanted,
                settled: Mutex::new(settled),
            }),
        })
    }

    /// The counters this store updates.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.inner.config.data_dir
    }

    /// Stores spans durably. Returns once they are fsynced in the WAL and
    /// visible to readers; spans already stored are dropped as duplicates.
    pub async fn ingest(&self, spans: &[Span]) -> Result<IngestOutcome> {
        if spans.is_empty() {
            return Ok(IngestOutcome::default());
        }
        let keys = spans.iter().map(|s| (s.trace_id, s.span_id)).collect();
        let batch = spans_to_batch(spans)?;
        let tx = self
            .inner
            .tx
            .lock()
            .map_err(lock_err)?
            .clone()
            .ok_or(Error::ShuttingDown)?;
        let (reply, rx) = oneshot::channel();
        tx.send(Command::Append { keys, batch, reply })
            .await
            .map_err(|_| Error::ShuttingDown)?;
        rx.await.map_err(|_| Error::ShuttingDown)?
    }

    /// Committed files and live batches, as one consistent view.
    pub fn snapshot(&self) -> Result<Snapshot> {
        let state = self.inner.state.read().map_err(lock_err)?;
        Ok(Snapshot {
            files: state.files.clone(),
            batches: state.live.iter().map(|l| l.batch.clone()).collect(),
            structure: state.structure.clone(),
            links: state.links.clone(),
        })
    }

    /// Writes the live buffer to Parquet and settles its traces, then trims
    /// the WAL. Says what it wrote and what each part cost.
    pub async fn flush(&self) -> Result<FlushReport> {
        let _guard = self.inner.flush_lock.lock().await;
        let (batches, seq_lo, seq_hi, structure_files) = {
            let state = self.inner.state.read().map_err(lock_err)?;
            let (Some(first), Some(last)) = (state.live.first(), state.live.last()) else {
                return Ok(FlushReport::default());
            };
            let batches: Vec<RecordBatch> = state.live.iter().map(|l| l.batch.clone()).collect();
            let by_generation: HashMap<i64, PathBuf> = state
                .structure
                .iter()
                .map(|f| (f.seq_hi as i64, f.path.clone()))
                .collect();
            (batches, first.seq, last.seq, by_generation)
        };
        let root = self.inner.config.data_dir.clone();
        let row_group_rows = self.inner.config.row_group_rows;
        let inner = Arc::clone(&self.inner);
        let started = Instant::now();
        let (files, settled, write, settling) = tokio::task::spawn_blocking(move || {
            let all = concat_batches(&span_schema(), &batches)?;
            let write_started = Instant::now();
            let files = write_partitions(&root, &all, seq_lo, seq_hi, row_group_rows)?;
            let write = write_started.elapsed();
            let settle_started = Instant::now();
            let previous = inner.previous_settlings(&all, &structure_files)?;
            let settled = settle(&root, &all, seq_lo, seq_hi, &previous)?;
            let settling = settle_started.elapsed();
            write_checkpoint(&root, seq_hi)?;
            Ok::<_, Error>((files, settled, write, settling))
        })
        .await
        .map_err(|e| Error::Internal(format!("flush task failed: {e}")))??;

        let rows: usize = files.iter().map(|f| f.rows).sum();
        let bytes: u64 = files.iter().map(|f| f.bytes).sum();
        {
            let mut recent = self.inner.settled.lock().map_err(lock_err)?;
            for trace in &settled.traces {
                recent.insert(*trace, seq_hi as i64);
            }
        }
        {
            let mut state = self.inner.state.write().map_err(lock_err)?;
            state.files.extend(files.iter().cloned());
            state.structure.extend(settled.structure);
            state.links.extend(settled.links);
            state.live.retain(|l| l.seq > seq_hi);
            state.live_rows = state.live.iter().map(|l| l.batch.num_rows()).sum();
            let m = &self.inner.metrics;
            m.buffered_spans
                .store(state.live_rows as u64, Ordering::Relaxed);
            if state.live.is_empty() {
                m.oldest_unflushed_unix_nano.store(0, Ordering::Relaxed);
            }
        }
        Metrics::add(&self.inner.metrics.flushes, 1);
        Metrics::add(&self.inner.metrics.parquet_bytes, bytes);
        let tx = self.inner.tx.lock().map_err(lock_err)?.clone();
        if let Some(tx) = tx {
            // A stopped writer means shutdown; the next start trims instead.
            let _ = tx.send(Command::Trim(seq_hi)).await;
        }
        let report = FlushReport {
            spans: rows,
            files: files.len(),
            bytes,
            traces_settled: settled.traces.len(),
            write,
            settle: settling,
        };
        tracing::info!(
            spans = rows,
            files = report.files,
            traces_settled = report.traces_settled,
            bytes,
            write_ms = write.as_millis() as u64,
            settle_ms = settling.as_millis() as u64,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "flushed to parquet"
        );
        Ok(report)
    }

    /// Flushes every `flush_interval`, or sooner when the buffer fills, until `stop`.
    pub async fn run_flusher(self, stop: Arc<Notify>) {
        let interval = self.inner.config.flush_interval;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = self.inner.flush_wanted.notified() => {}
                _ = stop.notified() => return,
            }
            if let Err(e) = self.flush().await {
                tracing::error!(error = %e, "flush failed; spans stay in the wal and the next flush retries");
            }
        }
    }

    /// Stops accepting spans, waits for the WAL writer, and flushes what it holds.
    pub async fn shutdown(&self) -> Result<()> {
        let tx = self.inner.tx.lock().map_err(lock_err)?.take();
        drop(tx);
        let handle = self.inner.writer.lock().map_err(lock_err)?.take();
        if let Some(handle) = handle {
            tokio::task::spawn_blocking(move || handle.join())
                .await
                .map_err(|e| Error::Internal(format!("join failed: {e}")))?
                .map_err(|_| Error::Internal("wal writer panicked".into()))?;
        }
        self.flush().await?;
        Ok(())
    }

    /// Spans acknowledged but not yet in Parquet.
    pub fn buffered_spans(&self) -> usize {
        self.inner.state.read().map(|s| s.live_rows).unwrap_or(0)
    }
}

impl Inner {
    /// The latest settling of each trace in `spans` that the store remembers,
    /// with the file holding it. Traces settled before the horizon are not
    /// remembered: their new spans settle as a fresh generation.
    fn previous_settlings(
        &self,
        spans: &RecordBatch,
        files: &HashMap<i64, PathBuf>,
    ) -> Result<Previous> {
        let recent = self.settled.lock().map_err(lock_err)?;
        let traces: HashSet<TraceId> = batch_keys(spans).into_iter().map(|(t, _)| t).collect();
        Ok(traces
            .into_iter()
            .filter_map(|t| {
                let generation = recent.get(&t)?;
                Some((t, (generation, files.get(&generation)?.clone())))
            })
            .collect())
    }
}

fn now_unix_nano() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}
