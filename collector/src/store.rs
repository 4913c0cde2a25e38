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

use std::collections::{HashMap, HashSet};
use std::fs;
use std::hash::Hash;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arrow::array::{Array, BooleanArray, RecordBatch, StringArray};
use arrow::compute::{concat_batches, filter_record_batch};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use tokio::sync::{Notify, mpsc, oneshot};
use weft_schemas::{Span, SpanId, TraceId, span_schema, spans_to_batch};

use crate::config::StoreConfig;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::parquet_files::{FileMeta, SPANS_DIR, read_span_keys, recover_files, write_partitions};
use crate::settle::{LINKS_DIR, Previous, STRUCTURE_DIR, settle};
use crate::wal::{self, WalWriter, sync_dir};

const WAL_DIR: &str = "wal";
const CHECKPOINT_FILE: &str = "checkpoint";
/// Most requests committed with one fsync.
const MAX_GROUP: usize = 1024;

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
struct State {
    files: Vec<FileMeta>,
    structure: Vec<FileMeta>,
    links: Vec<FileMeta>,
    live: Vec<LiveBatch>,
    live_rows: usize,
}

struct LiveBatch {
    seq: u64,
    batch: RecordBatch,
}

enum Command {
    Append {
        keys: Vec<(TraceId, SpanId)>,
        batch: RecordBatch,
        reply: oneshot::Sender<Result<IngestOutcome>>,
    },
    /// Everything at or below this sequence number is in Parquet.
    Trim(u64),
}

fn lock_err<T>(_: T) -> Error {
    Error::Unavailable("store lock poisoned by an earlier panic".into())
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
        let checkpoint = read_checkpoint(&config.data_dir)?;
        let root = &config.data_dir;
        let files = recover_files(root, SPANS_DIR, checkpoint, true)?;
        let structure = recover_files(root, STRUCTURE_DIR, checkpoint, true)?;
        let links = recover_files(root, LINKS_DIR, checkpoint, true)?;
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
            data_dir = %config.data_dir.display(),
            parquet_files = files.len(),
            replayed_records = live.len(),
            replayed_spans = live_rows,
            torn_bytes = report.torn_bytes,
            quarantined = report.quarantined.len(),
            "store opened"
        );
        metrics
            .buffered_spans
            .store(live_rows as u64, Ordering::Relaxed);
        if live_rows > 0 {
            metrics
                .oldest_unflushed_unix_nano
                .store(now_unix_nano(), Ordering::Relaxed);
        }

        let mut writer = WalWriter::open(&wal_dir, max_seq + 1)?;
        writer.rotate_and_trim(checkpoint)?;
        let state = Arc::new(RwLock::new(State {
            files,
            structure,
            links,
            live,
            live_rows,
        }));
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
            .ok_or_else(|| Error::Unavailable("store is shutting down".into()))?;
        let (reply, rx) = oneshot::channel();
        tx.send(Command::Append { keys, batch, reply })
            .await
            .map_err(|_| Error::Unavailable("wal writer stopped".into()))?;
        rx.await
            .map_err(|_| Error::Unavailable("wal writer stopped".into()))?
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
    /// the WAL. Returns spans flushed.
    pub async fn flush(&self) -> Result<usize> {
        let _guard = self.inner.flush_lock.lock().await;
        let (batches, seq_lo, seq_hi, structure_files) = {
            let state = self.inner.state.read().map_err(lock_err)?;
            let (Some(first), Some(last)) = (state.live.first(), state.live.last()) else {
                return Ok(0);
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
        let (files, settled) = tokio::task::spawn_blocking(move || {
            let all = concat_batches(&span_schema(), &batches)?;
            let files = write_partitions(&root, &all, seq_lo, seq_hi, row_group_rows)?;
            let previous = inner.previous_settlings(&all, &structure_files)?;
            let settled = settle(&root, &all, seq_lo, seq_hi, &previous)?;
            write_checkpoint(&root, seq_hi)?;
            Ok::<_, Error>((files, settled))
        })
        .await
        .map_err(|e| Error::Unavailable(format!("flush task failed: {e}")))??;

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
        tracing::info!(
            spans = rows,
            files = files.len(),
            traces_settled = settled.traces.len(),
            bytes,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "flushed to parquet"
        );
        Ok(rows)
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
                .map_err(|e| Error::Unavailable(format!("join failed: {e}")))?
                .map_err(|_| Error::Unavailable("wal writer panicked".into()))?;
        }
        self.flush().await?;
        Ok(())
    }

    /// Spans acknowledged but not yet in Parquet.
    pub fn buffered_spans(&self) -> usize {
        self.inner.state.read().map(|s| s.live_rows).unwrap_or(0)
    }
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

struct WriterContext {
    state: Arc<RwLock<State>>,
    metrics: Arc<Metrics>,
    flush_wanted: Arc<Notify>,
    flush_max_rows: usize,
    dedup: Recent<(TraceId, SpanId), ()>,
}

/// The WAL writer thread: group commit until every sender is gone.
fn run_writer(mut rx: mpsc::Receiver<Command>, mut wal: WalWriter, mut cx: WriterContext) {
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
    let mut in_group: HashSet<(TraceId, SpanId)> = HashSet::new();
    let mut staged = Vec::with_capacity(group.len());
    let mut failure: Option<Error> = None;
    let mut bytes = 0u64;
    for (keys, batch, reply) in group {
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
        let msg = e.to_string();
        for (_, _, reply) in staged {
            let _ = reply.send(Err(Error::Unavailable(msg.clone())));
        }
        // Start a fresh segment so a half-written frame stays behind us.
        match WalWriter::open(wal.dir(), wal.next_seq()) {
            Ok(fresh) => *wal = fresh,
            Err(e) => tracing::error!(error = %e, "cannot reopen the wal"),
        }
        return;
    }
    Metrics::add(&cx.metrics.wal_bytes, bytes);
    Metrics::add(&cx.metrics.wal_syncs, 1);
    let mut replies = Vec::with_capacity(staged.len());
    {
        let Ok(mut state) = cx.state.write() else {
            for (_, _, reply) in staged {
                let _ = reply.send(Err(Error::Unavailable("store lock poisoned".into())));
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
    for (outcome, reply) in replies {
        Metrics::add(&cx.metrics.spans_accepted, outcome.stored as u64);
        Metrics::add(&cx.metrics.spans_duplicate, outcome.duplicates as u64);
        let _ = reply.send(Ok(outcome));
    }
}

/// Keys seen within a time window, kept in two generations of half the window
/// each: memory stays bounded, and a key is forgotten between one and two
/// halves after it was last inserted.
struct Recent<K, V> {
    current: HashMap<K, V>,
    previous: HashMap<K, V>,
    rotated: Instant,
    half_window: Duration,
}

impl<K: Hash + Eq, V: Copy> Recent<K, V> {
    fn new(window: Duration) -> Self {
        Self {
            current: HashMap::new(),
            previous: HashMap::new(),
            rotated: Instant::now(),
            half_window: window / 2,
        }
    }

    fn get(&self, key: &K) -> Option<V> {
        self.current
            .get(key)
            .or_else(|| self.previous.get(key))
            .copied()
    }

    fn contains(&self, key: &K) -> bool {
        self.get(key).is_some()
    }

    fn insert(&mut self, key: K, value: V) {
        if self.rotated.elapsed() >= self.half_window {
            self.previous = std::mem::take(&mut self.current);
            self.rotated = Instant::now();
        }
        self.current.insert(key, value);
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
                for (t, s) in keys {
                    if let (Ok(t), Ok(s)) = (t.parse(), s.parse()) {
                        each(file, (t, s));
                    }
                }
            }
            Err(e) => {
                tracing::warn!(file = %file.path.display(), error = %e, purpose, "cannot read span ids")
            }
        }
    }
}

fn batch_keys(batch: &RecordBatch) -> Vec<(TraceId, SpanId)> {
    let ids = |i: usize| {
        batch
            .column(i)
            .as_any()
            .downcast_ref::<StringArray>()
            .cloned()
    };
    let (Some(traces), Some(spans)) = (ids(0), ids(1)) else {
        return Vec::new();
    };
    (0..batch.num_rows())
        .filter_map(|row| {
            if traces.is_null(row) || spans.is_null(row) {
                return None;
            }
            Some((
                traces.value(row).parse().ok()?,
                spans.value(row).parse().ok()?,
            ))
        })
        .collect()
}

/// One WAL record: a span batch in Arrow IPC stream format.
pub fn encode_batch(batch: &RecordBatch) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut writer = StreamWriter::try_new(&mut out, &batch.schema())?;
    writer.write(batch)?;
    writer.finish()?;
    drop(writer);
    Ok(out)
}

/// Reads a WAL record written by [`encode_batch`].
pub fn decode_batch(payload: &[u8]) -> Result<RecordBatch> {
    let mut reader = StreamReader::try_new(Cursor::new(payload), None)?;
    if reader.schema().fields() != span_schema().fields() {
        return Err(Error::Unavailable(
            "wal record has a different span schema (written by another weft version)".into(),
        ));
    }
    match reader.next() {
        Some(batch) => Ok(batch?.with_schema(span_schema())?),
        None => Err(Error::Unavailable("wal record holds no batch".into())),
    }
}

fn read_checkpoint(dir: &Path) -> Result<u64> {
    let path = dir.join(CHECKPOINT_FILE);
    match fs::read_to_string(&path) {
        Ok(s) => s.trim().parse().map_err(|_| {
            Error::Unavailable(format!(
                "{} is corrupt ({s:?}); restore it or delete it to replay the whole wal",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(Error::io(path, e)),
    }
}

fn write_checkpoint(dir: &Path, seq: u64) -> Result<()> {
    let tmp: PathBuf = dir.join(format!("{CHECKPOINT_FILE}.tmp"));
    let path = dir.join(CHECKPOINT_FILE);
    {
        use std::io::Write;
        let mut f = fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        writeln!(f, "{seq}")
            .and_then(|_| f.sync_all())
            .map_err(|e| Error::io(&tmp, e))?;
    }
    fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    sync_dir(dir)
}

fn now_unix_nano() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}
