//! The store: acknowledged spans, first in the WAL and the live buffer, then in Parquet.
//!
//! [`Store::ingest`] hands a batch to the single WAL writer thread, which groups
//! concurrent requests, drops spans it has already stored (client retries),
//! appends one record per request, `fdatasync`s once for the whole group, puts
//! the batches in the live buffer in sequence order, and only then answers.
//! A background task flushes the live buffer to Parquet and settles the traces
//! in it ([`crate::settle`]), commits the files to the three Delta tables
//! ([`crate::tables`]), each commit naming the last WAL record it holds; the
//! WAL is trimmed only after all three commits.
//!
//! Readers take a [`Snapshot`]: the committed Parquet files plus the live
//! batches not in them, taken under one lock, so no span is seen twice or missed.
//!
//! One file per job: this one is the API and the flush; `writer` the WAL writer
//! thread; `recent` the bounded retry and settling windows; `codec` the WAL
//! record format; `recovery` what a directory holds at open (and
//! `read_snapshot`); `legacy` converting the layout before Delta tables, with
//! `upgrade` converting files of an older schema version.

mod codec;
mod fleet;
mod legacy;
mod recent;
mod recovery;
mod upgrade;
mod writer;

use std::collections::{HashMap, HashSet};
use std::fs;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use tokio::sync::{Notify, mpsc, oneshot};
use weft_schemas::{Span, TraceId, span_schema, spans_to_batch};

use self::fleet::{Fleet, Pending};
use self::recent::Recent;
pub use self::recovery::read_snapshot;
use self::recovery::{Recovered, batch_keys, recover};
use self::writer::{Command, WriterContext, run_writer};
use crate::config::{SettleRole, StoreConfig};
use crate::error::{Error, Result};
use crate::maintain::{MaintainReport, maintain};
use crate::metrics::Metrics;
use crate::parquet_files::{FileMeta, write_partitions};
use crate::settle::{Previous, Settling, link_rows, settle, shapes_from_span_file};
use crate::storage::{RemoteStore, Storage};
use crate::tables::{TableKind, Tables, append, collector_id};
use crate::wal::{self, WalWriter};

const WAL_DIR: &str = "wal";

/// What happened to the spans of one ingest call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IngestOutcome {
    /// Spans newly stored.
    pub stored: usize,
    /// Spans already stored earlier (a client retry) and dropped.
    pub duplicates: usize,
}

/// Sees each batch of spans the moment it is acknowledged: live load signals
/// are kept this way, without reading the tables.
pub trait SpanObserver: Send + Sync {
    /// `batch` has the spans schema and holds only newly stored spans. Called
    /// on the WAL writer thread after the clients were answered: keep it short.
    fn acknowledged(&self, batch: &RecordBatch);
}

/// The observer slot the writer thread reads.
pub(crate) type ObserverSlot = Arc<RwLock<Option<Arc<dyn SpanObserver>>>>;

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
    /// The object store holding the files, when they are not local.
    pub remote: Option<RemoteStore>,
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
    /// Committing the files to the three Delta tables.
    pub commit: Duration,
}

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    /// Held until shutdown: no second process (or store) writes this WAL.
    wal_lock: Mutex<Option<wal::DirLock>>,
    /// The in-flight byte budget, in KiB permits.
    inflight: Arc<tokio::sync::Semaphore>,
    config: StoreConfig,
    metrics: Arc<Metrics>,
    state: Arc<RwLock<State>>,
    tx: Mutex<Option<mpsc::Sender<Command>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    flush_lock: tokio::sync::Mutex<()>,
    flush_wanted: Arc<Notify>,
    /// The structure generations holding the current rows of each recently
    /// settled trace, oldest first.
    settled: Mutex<Recent<TraceId, Vec<i64>>>,
    /// The Delta tables and what this store knows of them (flushes hold the lock).
    tables: tokio::sync::Mutex<TableState>,
    /// This collector's id: the `app_id` of its commits.
    app: String,
    /// Where the tables' files are.
    storage: Storage,
    /// Who sees acknowledged spans ([`Store::set_observer`]).
    observer: ObserverSlot,
}

#[derive(Default)]
pub(crate) struct State {
    files: Vec<FileMeta>,
    structure: Vec<FileMeta>,
    links: Vec<FileMeta>,
    live: Vec<LiveBatch>,
    live_rows: usize,
}

/// The tables, the WAL sequence each holds, and the version each was at when
/// `State`'s file lists were taken from it.
struct TableState {
    tables: Tables,
    applied: [u64; 3],
    listed: [Option<u64>; 3],
    /// Whether the last listing left out files of a flush that is not in
    /// every table yet ([`Tables::listing`]); the next flush lists again.
    partial: bool,
    /// When the tables were last re-read for other writers' commits (every
    /// `StoreConfig::refresh`; re-reading lists the Delta log).
    refreshed: Instant,
    /// The other writers of the location, and what is settled of theirs.
    fleet: Fleet,
}

pub(crate) struct LiveBatch {
    seq: u64,
    batch: RecordBatch,
}

fn lock_err<T>(_: T) -> Error {
    Error::Internal("store lock poisoned by an earlier panic".into())
}

impl Store {
    /// Opens the data location: converts an older layout, opens (or creates)
    /// the Delta tables, replays the WAL records they do not all hold into the
    /// live buffer, finishes a flush that was interrupted between its tables'
    /// commits, and starts the WAL writer thread.
    pub async fn open(mut config: StoreConfig, metrics: Arc<Metrics>) -> Result<Self> {
        // Absolute, so readers can turn file paths into URLs.
        config.data_dir =
            std::path::absolute(&config.data_dir).map_err(|e| Error::io(&config.data_dir, e))?;
        let wal_dir = config.wal_dir();
        fs::create_dir_all(&wal_dir).map_err(|e| Error::io(&wal_dir, e))?;
        // One process per WAL: a second `weft serve` on it stops here.
        let wal_lock = wal::lock_dir(&wal_dir)?;
        let app = collector_id(&wal_dir, true)?
            .ok_or_else(|| Error::Internal("collector id not created".into()))?;
        let storage = Storage::open(&config.tables_location())?;
        let mut tables = Tables::open(&storage, true)
            .await?
            .ok_or_else(|| Error::Internal("tables not created".into()))?;
        if storage.local().is_some() && legacy::is_legacy(&config.data_dir) {
            legacy::convert(&config, &storage, &mut tables, &app).await?;
        }
        let applied = tables.applied(&app).await?;
        let held = applied.iter().copied().min().unwrap_or(0);
        let fleet = Fleet::open(config.settle, &app, &tables).await?;
        let listing = tables.listing().await?;
        let partial = listing.partial > 0;
        let state = State {
            files: listing.spans,
            structure: listing.structure,
            links: listing.links,
            live: Vec::new(),
            live_rows: 0,
        };
        let Recovered {
            max_seq,
            live,
            dedup,
            settled,
        } = {
            let (config, storage, app) = (config.clone(), storage.clone(), app.clone());
            let (spans, structure) = (state.files.clone(), state.structure.clone());
            tokio::task::spawn_blocking(move || {
                recover(&config, &storage, &app, held, &spans, &structure)
            })
            .await
            .map_err(|e| Error::Internal(format!("recovery task failed: {e}")))??
        };
        let live_rows = live.iter().map(|l| l.batch.num_rows()).sum::<usize>();
        let state = State {
            live,
            live_rows,
            ..state
        };
        metrics
            .buffered_spans
            .store(state.live_rows as u64, Ordering::Relaxed);
        metrics
            .dedup_spans
            .store(dedup.len() as u64, Ordering::Relaxed);
        metrics
            .settled_traces
            .store(settled.len() as u64, Ordering::Relaxed);
        if state.live_rows > 0 {
            metrics
                .oldest_unflushed_unix_nano
                .store(now_unix_nano(), Ordering::Relaxed);
        }

        let mut writer = WalWriter::open(&wal_dir, max_seq.max(held) + 1)?;
        writer.rotate_and_trim(held)?;
        let state = Arc::new(RwLock::new(state));
        let (tx, rx) = mpsc::channel(4096);
        let flush_wanted = Arc::new(Notify::new());
        let observer = ObserverSlot::default();
        let thread = {
            let ctx = WriterContext {
                observer: Arc::clone(&observer),
                state: Arc::clone(&state),
                metrics: Arc::clone(&metrics),
                flush_wanted: Arc::clone(&flush_wanted),
                flush_max_rows: config.flush_max_rows,
                max_unflushed_spans: config.max_unflushed_spans,
                dedup,
            };
            std::thread::Builder::new()
                .name("weft-wal".into())
                .spawn(move || run_writer(rx, writer, ctx))
                .map_err(|e| Error::io(&wal_dir, e))?
        };
        let store = Self {
            inner: Arc::new(Inner {
                wal_lock: Mutex::new(Some(wal_lock)),
                inflight: Arc::new(tokio::sync::Semaphore::new(
                    (config.max_inflight_bytes / 1024)
                        .clamp(1, tokio::sync::Semaphore::MAX_PERMITS),
                )),
                config,
                metrics,
                state,
                tx: Mutex::new(Some(tx)),
                writer: Mutex::new(Some(thread)),
                flush_lock: tokio::sync::Mutex::new(()),
                flush_wanted,
                settled: Mutex::new(settled),
                tables: tokio::sync::Mutex::new(TableState {
                    listed: TableKind::ALL.map(|k| tables.get(k).version()),
                    tables,
                    applied,
                    partial,
                    refreshed: Instant::now(),
                    fleet,
                }),
                app,
                storage,
                observer,
            }),
        };
        // A full disk or an unreachable object store must not stop a start:
        // queries work meanwhile, and every flush tries this first again.
        if let Err(e) = store.finish_interrupted_flush().await {
            tracing::error!(error = %e, "cannot finish an interrupted flush yet; the next flush retries");
        }
        Ok(store)
    }

    /// The price table that gives each model call its `cost` at ingest.
    pub fn prices(&self) -> &weft_schemas::Prices {
        &self.inner.config.prices
    }

    /// Hands every batch of newly stored spans to `observer` once it is
    /// acknowledged (retries already dropped), from the WAL writer thread.
    /// Replaces the observer set before; spans replayed at open are not
    /// observed (a reader of the store sees them in [`Store::snapshot`]).
    pub fn set_observer(&self, observer: Arc<dyn SpanObserver>) -> Result<()> {
        *self.inner.observer.write().map_err(lock_err)? = Some(observer);
        Ok(())
    }

    /// Charges a request's estimated `bytes` against the in-flight budget,
    /// until the returned permit is dropped. More than the whole budget can
    /// never be taken (the client's to fix); more than what is free now is
    /// retry-later.
    pub fn charge(&self, bytes: usize) -> Result<tokio::sync::OwnedSemaphorePermit> {
        let budget = self.inner.config.max_inflight_bytes;
        if bytes > budget {
            return Err(Error::OverBudget {
                need: bytes,
                budget,
            });
        }
        let kib = u32::try_from(bytes.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
        Arc::clone(&self.inner.inflight)
            .try_acquire_many_owned(kib)
            .map_err(|_| Error::Busy { need: bytes })
    }

    /// The counters this store updates.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// The tables' location: a local directory or an `s3://` URL.
    pub fn location(&self) -> String {
        self.inner.storage.root()
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
            remote: self.inner.storage.remote(),
        })
    }

    /// Writes the live buffer to Parquet, settles its traces, commits the
    /// files to the three tables, then trims the WAL. Says what it wrote and
    /// what each part cost.
    pub async fn flush(&self) -> Result<FlushReport> {
        let _guard = self.inner.flush_lock.lock().await;
        self.finish_interrupted_flush_locked().await?;
        self.flush_through(u64::MAX).await
    }

    /// Finishes a flush that committed to some tables but not all (a crash or
    /// a failed commit between them), so every table holds the same records.
    async fn finish_interrupted_flush(&self) -> Result<()> {
        let _guard = self.inner.flush_lock.lock().await;
        self.finish_interrupted_flush_locked().await
    }

    async fn finish_interrupted_flush_locked(&self) -> Result<()> {
        let applied = self.inner.tables.lock().await.applied;
        let (lo, hi) = (
            applied.iter().copied().min().unwrap_or(0),
            applied.iter().copied().max().unwrap_or(0),
        );
        if lo == hi {
            return Ok(());
        }
        tracing::warn!(
            held_by_all = lo,
            held_by_some = hi,
            "finishing a flush that reached only some tables"
        );
        self.flush_through(hi).await.map(|_| ())
    }

    /// Flushes the live records up to `through` (all of them with `u64::MAX`),
    /// committing to each table that does not hold them yet. A fleet settler
    /// (`SettleRole::Fleet`) also settles the other writers' span files it has
    /// not settled yet, with or without records of its own.
    async fn flush_through(&self, through: u64) -> Result<FlushReport> {
        let mut tables = self.inner.tables.lock().await;
        // Others (`weft maintain`, other collectors) may have committed.
        if tables.refreshed.elapsed() >= self.inner.config.refresh {
            self.relist(&mut tables).await?;
        }
        let (batches, own_seq, structure_files) = {
            let state = self.inner.state.read().map_err(lock_err)?;
            let flushed: Vec<&LiveBatch> =
                state.live.iter().take_while(|l| l.seq <= through).collect();
            let own_seq = flushed
                .first()
                .zip(flushed.last())
                .map(|(f, l)| (f.seq, l.seq));
            let batches: Vec<RecordBatch> = flushed.iter().map(|l| l.batch.clone()).collect();
            // This collector's settlings: each file's upper bound is its generation.
            let mut by_generation: HashMap<i64, Vec<String>> = HashMap::new();
            for f in state
                .structure
                .iter()
                .filter(|f| f.writer == self.inner.app)
            {
                by_generation
                    .entry(f.seq_hi as i64)
                    .or_default()
                    .push(f.location.clone());
            }
            (batches, own_seq, by_generation)
        };
        if own_seq.is_none() && self.inner.config.settle != SettleRole::Fleet {
            return Ok(FlushReport::default());
        }
        let pending = {
            // Other writers' files only (none, for a lone collector).
            let files: Vec<FileMeta> = self
                .inner
                .state
                .read()
                .map_err(lock_err)?
                .files
                .iter()
                .filter(|f| !f.writer.is_empty() && f.writer != self.inner.app)
                .cloned()
                .collect();
            let TableState {
                tables: table_set,
                fleet,
                ..
            } = &mut *tables;
            fleet.pending(&files, table_set).await?
        };
        if own_seq.is_none() && pending.files.is_empty() {
            return Ok(FlushReport::default());
        }
        let (seq_lo, seq_hi) = own_seq.unwrap_or((0, 0));
        let generation = tables.fleet.next_generation(own_seq.map(|(_, hi)| hi));
        let wanted = |kind: TableKind| own_seq.is_some() && tables.applied[kind as usize] < seq_hi;
        let wants = [
            wanted(TableKind::Spans),
            wanted(TableKind::Structure),
            wanted(TableKind::Links),
        ];
        let storage = self.inner.storage.clone();
        let app = self.inner.app.clone();
        let row_group_rows = self.inner.config.row_group_rows;
        let write_structure = self.inner.config.settle != SettleRole::None;
        let inner = Arc::clone(&self.inner);
        let Pending {
            files: foreign_files,
            through: settled_through,
        } = pending;
        let started = Instant::now();
        let (files, settled, write, settling) = tokio::task::spawn_blocking(move || {
            let all = match batches.is_empty() {
                true => RecordBatch::new_empty(span_schema()),
                false => concat_batches(&span_schema(), &batches)?,
            };
            let write_started = Instant::now();
            let files = if wants[TableKind::Spans as usize] {
                write_partitions(&storage, &all, seq_lo, seq_hi, &app, row_group_rows)?
            } else {
                Vec::new()
            };
            let write = write_started.elapsed();
            let settle_started = Instant::now();
            let mut foreign = std::collections::BTreeMap::new();
            for file in &foreign_files {
                for (trace, shapes) in shapes_from_span_file(&storage, &file.location)? {
                    foreign.entry(trace).or_insert_with(Vec::new).extend(shapes);
                }
            }
            let mut traces: HashSet<TraceId> =
                batch_keys(&all).into_iter().map(|(t, _)| t).collect();
            traces.extend(foreign.keys().copied());
            let previous = inner.previous_settlings(&traces, &structure_files)?;
            let settling = Settling {
                spans: &all,
                foreign,
                seq_lo,
                seq_hi,
                generation,
                structure: write_structure,
            };
            let settled = settle(&storage, settling, &previous, &app)?;
            let settling = settle_started.elapsed();
            inner.config.fault_point("flush.files_written")?;
            Ok::<_, Error>((files, settled, write, settling))
        })
        .await
        .map_err(|e| Error::Internal(format!("flush task failed: {e}")))??;

        // Commit to each table that lacks these records; the spans table
        // first, so a reader of the tables alone sees a trace's spans no
        // later than its structure and links. Readers of this store switch
        // from the live buffer to the tables at once, after the last commit.
        let commit_started = Instant::now();
        let TableState {
            tables: table_set,
            applied,
            listed,
            partial,
            fleet,
            ..
        } = &mut *tables;
        let before = TableKind::ALL.map(|k| table_set.get(k).version());
        let mut added: [&[FileMeta]; 3] = [&[], &[], &[]];
        let mut committed = [0u64; 3];
        for (kind, adds) in [
            (TableKind::Spans, &files),
            (TableKind::Links, &settled.links),
            (TableKind::Structure, &settled.structure),
        ] {
            let own = wants[kind as usize];
            let mut txns: Vec<(String, u64)> = Vec::new();
            if own {
                txns.push((self.inner.app.clone(), seq_hi));
            }
            if kind == TableKind::Structure && (own || !settled_through.is_empty()) {
                txns.extend(fleet.structure_txns(generation, own, &settled_through));
            }
            if txns.is_empty() {
                continue;
            }
            let txns: Vec<(&str, u64)> = txns.iter().map(|(a, s)| (a.as_str(), *s)).collect();
            let preceded = table_set
                .get_mut(kind)
                .commit(adds, &[], &txns, append())
                .await?;
            Metrics::add(&self.inner.metrics.commit_conflicts, u64::from(preceded));
            if own {
                applied[kind as usize] = seq_hi;
            }
            if kind == TableKind::Structure {
                fleet.committed(generation, &settled_through);
            }
            added[kind as usize] = adds;
            committed[kind as usize] = 1;
            self.inner
                .config
                .fault_point(&format!("flush.committed.{}", kind.name()))?;
        }
        {
            // Extend the file lists with this flush's files when every table
            // moved by exactly this flush's commit since it was listed;
            // otherwise (another writer, a refresh, a partial listing) list
            // the tables again.
            let moved_by_others = TableKind::ALL.into_iter().any(|kind| {
                let k = kind as usize;
                listed[k] != before[k]
                    || table_set.get(kind).version() != before[k].map(|v| v + committed[k])
            });
            let listing = if moved_by_others || *partial {
                Some(table_set.listing().await?)
            } else {
                None
            };
            *listed = TableKind::ALL.map(|k| table_set.get(k).version());
            let mut state = self.inner.state.write().map_err(lock_err)?;
            match listing {
                Some(listing) => {
                    *partial = listing.partial > 0;
                    state.files = listing.spans;
                    state.structure = listing.structure;
                    state.links = listing.links;
                }
                None => {
                    let state = &mut *state;
                    for (kind, list) in [
                        (TableKind::Spans, &mut state.files),
                        (TableKind::Structure, &mut state.structure),
                        (TableKind::Links, &mut state.links),
                    ] {
                        list.extend(added[kind as usize].iter().cloned());
                    }
                }
            }
            if own_seq.is_some() {
                state.live.retain(|l| l.seq > seq_hi);
            }
            state.live_rows = state.live.iter().map(|l| l.batch.num_rows()).sum();
            let m = &self.inner.metrics;
            m.buffered_spans
                .store(state.live_rows as u64, Ordering::Relaxed);
            if state.live.is_empty() {
                m.oldest_unflushed_unix_nano.store(0, Ordering::Relaxed);
            }
        }
        let commit = commit_started.elapsed();
        drop(tables);

        let rows: usize = files.iter().map(|f| f.rows).sum();
        let bytes: u64 = files.iter().map(|f| f.bytes).sum();
        {
            let mut recent = self.inner.settled.lock().map_err(lock_err)?;
            for trace in &settled.traces {
                let mut generations = recent.get(trace).unwrap_or_default();
                if generations.last() != Some(&(generation as i64)) {
                    generations.push(generation as i64);
                }
                recent.insert(*trace, generations);
            }
            self.inner
                .metrics
                .settled_traces
                .store(recent.len() as u64, Ordering::Relaxed);
        }
        Metrics::add(&self.inner.metrics.flushes, 1);
        Metrics::add(
            &self.inner.metrics.flush_micros,
            started.elapsed().as_micros() as u64,
        );
        Metrics::add(&self.inner.metrics.parquet_bytes, bytes);
        let tx = self.inner.tx.lock().map_err(lock_err)?.clone();
        if let (Some(tx), Some(_)) = (tx, own_seq) {
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
            commit,
        };
        tracing::info!(
            spans = rows,
            files = report.files,
            traces_settled = report.traces_settled,
            bytes,
            write_ms = write.as_millis() as u64,
            settle_ms = settling.as_millis() as u64,
            commit_ms = commit.as_millis() as u64,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "flushed to delta tables"
        );
        Ok(report)
    }

    /// Re-reads the tables for other writers' commits and, if a table moved
    /// since it was listed, lists them again for readers.
    async fn relist(&self, tables: &mut TableState) -> Result<()> {
        tables.tables.refresh().await?;
        tables.refreshed = Instant::now();
        let versions = TableKind::ALL.map(|k| tables.tables.get(k).version());
        if versions == tables.listed && !tables.partial {
            return Ok(());
        }
        let listing = tables.tables.listing().await?;
        tables.listed = versions;
        tables.partial = listing.partial > 0;
        let mut state = self.inner.state.write().map_err(lock_err)?;
        state.files = listing.spans;
        state.structure = listing.structure;
        state.links = listing.links;
        Ok(())
    }

    /// Re-reads the tables for other writers' commits, so this store's
    /// readers see them (every `StoreConfig::refresh`, from
    /// [`Store::run_flusher`], whether or not it flushes); a fleet settler
    /// then settles the span files they added.
    pub async fn refresh(&self) -> Result<()> {
        let _guard = self.inner.flush_lock.lock().await;
        {
            let mut tables = self.inner.tables.lock().await;
            self.relist(&mut tables).await?;
        }
        if self.inner.config.settle == SettleRole::Fleet {
            self.flush_through(0).await?;
        }
        Ok(())
    }

    /// Runs retention, compaction and vacuum once over the tables (flushes
    /// wait), then shows readers the tables as they are now.
    pub async fn maintain(&self) -> Result<MaintainReport> {
        let _guard = self.inner.flush_lock.lock().await;
        let mut tables = self.inner.tables.lock().await;
        tables.tables.refresh().await?;
        tables.refreshed = Instant::now();
        let report = maintain(
            &mut tables.tables,
            &self.inner.storage,
            &self.inner.config.maintenance(),
        )
        .await?;
        let listing = tables.tables.listing().await?;
        tables.listed = TableKind::ALL.map(|k| tables.tables.get(k).version());
        tables.partial = listing.partial > 0;
        let mut state = self.inner.state.write().map_err(lock_err)?;
        state.files = listing.spans;
        state.structure = listing.structure;
        state.links = listing.links;
        Ok(report)
    }

    /// Maintains the tables every `maintain_interval` until `stop`.
    pub async fn run_maintenance(self, stop: Arc<Notify>) {
        let interval = self.inner.config.maintain_interval;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.notified() => return,
            }
            match self.maintain().await {
                Ok(report) => tracing::info!(?report, "maintained the tables"),
                Err(e) => tracing::error!(error = %e, "maintenance failed; the next run retries"),
            }
        }
    }

    /// Flushes every `flush_interval`, or sooner when the buffer fills, and
    /// re-reads the tables every `refresh` in between ([`Store::refresh`]),
    /// until `stop`.
    pub async fn run_flusher(self, stop: Arc<Notify>) {
        let interval = self.inner.config.flush_interval;
        let refresh = self.inner.config.refresh.max(Duration::from_millis(50));
        let mut next_flush = Instant::now() + interval;
        loop {
            let wait = next_flush
                .saturating_duration_since(Instant::now())
                .min(refresh);
            let wanted = tokio::select! {
                _ = tokio::time::sleep(wait) => false,
                _ = self.inner.flush_wanted.notified() => true,
                _ = stop.notified() => return,
            };
            if wanted || Instant::now() >= next_flush {
                next_flush = Instant::now() + interval;
                if let Err(e) = self.flush().await {
                    Metrics::add(&self.inner.metrics.flushes_failed, 1);
                    tracing::error!(error = %e, "flush failed; spans stay in the wal and the next flush retries");
                }
            } else if let Err(e) = self.refresh().await {
                tracing::warn!(error = %e, "cannot re-read the tables; the next refresh retries");
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
        // The WAL is written no more: another store may take it.
        drop(self.inner.wal_lock.lock().map_err(lock_err)?.take());
        Ok(())
    }

    /// The start times (nanoseconds since the Unix epoch) a span may have to
    /// be stored now: within retention, and at most the allowed clock skew ahead.
    pub fn accepted_window(&self) -> (i64, i64) {
        let now = now_unix_nano();
        let config = &self.inner.config;
        let nanos = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        (
            now.saturating_sub(nanos(config.retention)),
            now.saturating_add(nanos(config.max_clock_skew)),
        )
    }

    /// The accepted window in words, for the message of a refusal.
    pub fn window_text(&self) -> String {
        let config = &self.inner.config;
        format!(
            "retention {}h, clock skew {}s",
            config.retention.as_secs() / 3600,
            config.max_clock_skew.as_secs()
        )
    }

    /// Spans acknowledged but not yet in Parquet.
    pub fn buffered_spans(&self) -> usize {
        self.inner.state.read().map(|s| s.live_rows).unwrap_or(0)
    }
}

impl Inner {
    /// The latest settling of each trace in `spans` that the store remembers,
    /// with the files holding its rows (a settling writes only the rows it
    /// moved, so they span generations). Traces settled before the horizon are
    /// not remembered: their new spans settle as a fresh generation.
    fn previous_settlings(
        &self,
        traces: &HashSet<TraceId>,
        files: &HashMap<i64, Vec<String>>,
    ) -> Result<Previous> {
        let recent = self.settled.lock().map_err(lock_err)?;
        Ok(traces
            .iter()
            .copied()
            .filter_map(|t| {
                let generations = recent.get(&t)?;
                let latest = *generations.last()?;
                let holding: Vec<String> = generations
                    .iter()
                    .filter_map(|g| files.get(g))
                    .flatten()
                    .cloned()
                    .collect();
                (!holding.is_empty()).then_some((t, (latest, holding)))
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

/// Runs retention, compaction and vacuum once over the tables of a data
/// location, without a store (`weft maintain`); a running server's next flush
/// sees the result.
pub async fn maintain_data_dir(config: &StoreConfig) -> Result<MaintainReport> {
    let storage = Storage::open(&config.tables_location())?;
    if let Some(dir) = storage.local()
        && legacy::is_legacy(dir)
    {
        return Err(legacy::refuse(dir));
    }
    let Some(mut tables) = Tables::open(&storage, false).await? else {
        return Err(Error::io(
            storage.root(),
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no weft tables here; run `weft serve` first or pass --data-dir",
            ),
        ));
    };
    maintain(&mut tables, &storage, &config.maintenance()).await
}
