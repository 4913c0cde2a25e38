//! The three Delta Lake tables a store writes: `spans`, `span_structure` and
//! `span_links`, each in its directory of the data location, partitioned by
//! the UTC day of `start_time`.
//!
//! Weft writes the Parquet files itself (`parquet_files`, `settle`) and
//! commits them here. Every commit that adds a flush's files carries an
//! application transaction (`txn`): this collector's id and the last WAL
//! sequence the files hold. That is how recovery knows exactly which WAL
//! records a table holds ([`Table::applied`]); a file written but never
//! committed is not part of the table, and vacuum deletes it.

mod schema;

use std::collections::HashMap;
use std::path::Path;

use deltalake::TableProperty;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Add, Remove, StructField, Transaction};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};

use crate::error::{Error, Result};
use crate::parquet_files::{FileMeta, parse_file_name};
use crate::storage::Storage;
pub(crate) use crate::table_kind::{DAY, TableKind};

/// Appends to a table an older Weft created the columns later schema
/// versions added. They are nullable, so the table's older files read them
/// as null (other engines too: Delta's schema says so); only a writer does
/// this, readers read older tables as they are.
async fn add_new_columns(delta: DeltaTable, kind: TableKind) -> Result<DeltaTable> {
    let err = |e| Error::table(kind.name(), e);
    let table_schema = delta.snapshot().map_err(err)?.schema();
    let missing: Vec<StructField> = schema::delta_columns(&kind.schema())?
        .into_iter()
        .filter(|c| table_schema.field(c.name()).is_none())
        .collect();
    if missing.is_empty() {
        return Ok(delta);
    }
    if let Some(c) = missing.iter().find(|c| !c.is_nullable()) {
        return Err(Error::Corrupt(format!(
            "the {} table lacks the column {}, which this weft needs and cannot add; \
             was it written by another program?",
            kind.name(),
            c.name()
        )));
    }
    let names: Vec<&str> = missing.iter().map(|c| c.name().as_str()).collect();
    tracing::info!(
        table = kind.name(),
        columns = ?names,
        schema_version = weft_schemas::SCHEMA_VERSION,
        "adding the columns a newer schema version has"
    );
    delta.add_columns().with_fields(missing).await.map_err(err)
}

/// How many versions a table may advance by incremental updates before it
/// is loaded afresh. delta-rs keeps one batch of file actions per version it
/// applied incrementally and replays them all on every later update, so a
/// commit's cost grows with the commits since the last full load; a full load
/// reads the latest checkpoint (written every 100 versions) instead.
const RELOAD_AFTER: u64 = 100;

/// How long the log keeps commits that a checkpoint has made unnecessary
/// (Delta's default is 30 days). Weft needs none of them: readers time-travel
/// at most `vacuum_grace_secs` back. A shorter log lists faster.
const LOG_RETENTION: &str = "interval 2 days";

/// One Delta table, as of the version last loaded or committed.
pub(crate) struct Table {
    kind: TableKind,
    /// Where the table lives (a path or a URL); file locations start with it.
    location: String,
    delta: DeltaTable,
    /// The version of the last full load (see [`RELOAD_AFTER`]).
    loaded_at: u64,
}

impl Table {
    /// Opens the table in `storage`; creates it when `create` is set and it
    /// does not exist yet, and otherwise says it is missing (`None`).
    pub(crate) async fn open(
        storage: &Storage,
        kind: TableKind,
        create: bool,
    ) -> Result<Option<Self>> {
        let location = storage.table(kind);
        let err = |e| Error::table(kind.name(), e);
        let url = storage.table_url(kind)?;
        let mut delta = DeltaTableBuilder::from_url(url)
            .map_err(err)?
            .build()
            .map_err(err)?;
        // Loading a table that does not exist yet logs an error in the
        // kernel: look for its log first.
        let loaded = if storage.has_log(kind).await? {
            delta.load().await
        } else {
            Err(DeltaTableError::NotATable(location.clone()))
        };
        match loaded {
            Ok(()) => {}
            Err(DeltaTableError::NotATable(_)) if create => {
                if storage.local().is_some() {
                    std::fs::create_dir_all(&location).map_err(|e| Error::io(&location, e))?;
                }
                let columns = schema::delta_columns(&kind.schema())?;
                let created = deltalake::operations::create::CreateBuilder::new()
                    .with_log_store(delta.log_store())
                    .with_table_name(kind.name())
                    .with_comment(kind.comment())
                    .with_columns(columns)
                    .with_partition_columns([DAY])
                    .with_configuration_property(
                        TableProperty::LogRetentionDuration,
                        Some(LOG_RETENTION),
                    )
                    .with_save_mode(SaveMode::Ignore)
                    .await;
                delta = match created {
                    Ok(table) => table,
                    // Another collector created it first.
                    Err(_) => {
                        delta.load().await.map_err(err)?;
                        delta
                    }
                };
            }
            Err(DeltaTableError::NotATable(_)) => return Ok(None),
            Err(e) => return Err(err(e)),
        }
        if create {
            delta = add_new_columns(delta, kind).await?;
        }
        let loaded_at = delta.version().unwrap_or(0);
        Ok(Some(Self {
            kind,
            location,
            delta,
            loaded_at,
        }))
    }

    /// The loaded version.
    pub(crate) fn version(&self) -> Option<u64> {
        self.delta.version()
    }

    /// The highest WAL sequence of `app` this table holds (0: none).
    pub(crate) async fn applied(&self, app: &str) -> Result<u64> {
        let err = |e| Error::table(self.kind.name(), e);
        let state = self.delta.snapshot().map_err(err)?;
        let version = state
            .transaction_version(self.delta.log_store().as_ref(), app)
            .await
            .map_err(err)?;
        Ok(version.unwrap_or(0).max(0) as u64)
    }

    /// The table's files as of its loaded version.
    pub(crate) fn files(&self) -> Result<Vec<FileMeta>> {
        let state = self
            .delta
            .snapshot()
            .map_err(|e| Error::table(self.kind.name(), e))?;
        let mut files: Vec<FileMeta> = state
            .log_data()
            .iter()
            .map(|f| {
                let relative = f.path().into_owned();
                let name = relative.rsplit('/').next().unwrap_or_default();
                FileMeta {
                    seq_hi: parse_file_name(name).map_or(0, |(_, hi, _)| hi),
                    writer: parse_file_name(name)
                        .map(|(_, _, w)| w.to_owned())
                        .unwrap_or_default(),
                    rows: f.num_records().unwrap_or(0),
                    bytes: f.size().max(0) as u64,
                    day: f
                        .partition_values_map()
                        .get(DAY)
                        .cloned()
                        .flatten()
                        .unwrap_or_default(),
                    stats: f.stats(),
                    modified_ms: f.modification_time(),
                    location: format!("{}/{relative}", self.location),
                }
            })
            .collect();
        files.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(files)
    }

    /// Commits `adds` and `removes` as one version. `txns` record, per
    /// application id, the sequence the commit brings the table to (the WAL
    /// sequence the added files hold, for recovery; see [`app`]). delta-rs
    /// retries a commit that lost a race with another writer's (up to 15
    /// times), failing only on a real conflict (two removes of one file).
    /// Returns whether another writer's commit came first (the commit was
    /// checked against it and landed after it).
    pub(crate) async fn commit(
        &mut self,
        adds: &[FileMeta],
        removes: &[FileMeta],
        txns: &[(&str, u64)],
        operation: DeltaOperation,
    ) -> Result<bool> {
        let now = now_millis();
        let mut actions = Vec::with_capacity(adds.len() + removes.len());
        for file in adds {
            actions.push(Action::Add(Add {
                path: self.relative(&file.location)?,
                partition_values: partition(&file.day),
                size: file.bytes as i64,
                modification_time: now,
                data_change: true,
                stats: file.stats.clone(),
                ..Default::default()
            }));
        }
        for file in removes {
            actions.push(Action::Remove(Remove {
                path: self.relative(&file.location)?,
                data_change: true,
                deletion_timestamp: Some(now),
                extended_file_metadata: Some(true),
                partition_values: Some(partition(&file.day)),
                size: Some(file.bytes as i64),
                ..Default::default()
            }));
        }
        // Expired log entries are cleaned up by maintenance, not by listing
        // the whole log after every commit.
        let mut properties = CommitProperties::default().with_cleanup_expired_logs(Some(false));
        if !txns.is_empty() {
            properties = properties.with_application_transactions(
                txns.iter()
                    .map(|(app, seq)| Transaction::new(*app, *seq as i64))
                    .collect(),
            );
        }
        let err = |e| Error::table(self.kind.name(), e);
        let finalized = CommitBuilder::from(properties)
            .with_actions(actions)
            .build(
                Some(self.delta.snapshot().map_err(err)?),
                self.delta.log_store(),
                operation,
            )
            .await
            .map_err(err)?;
        let preceded = match self.delta.version() {
            Some(base) => finalized.version > base + 1,
            None => finalized.version > 0,
        } || finalized.metrics.num_retries > 0;
        self.delta.state = Some(finalized.snapshot());
        self.reload_if_long_updated().await?;
        Ok(preceded)
    }

    /// Loads the table afresh once incremental updates have applied
    /// [`RELOAD_AFTER`] versions since the last full load.
    async fn reload_if_long_updated(&mut self) -> Result<()> {
        let version = self.delta.version().unwrap_or(0);
        if version < self.loaded_at + RELOAD_AFTER {
            return Ok(());
        }
        let mut fresh = DeltaTable::new(self.delta.log_store());
        fresh
            .load()
            .await
            .map_err(|e| Error::table(self.kind.name(), e))?;
        self.loaded_at = fresh.version().unwrap_or(version);
        self.delta = fresh;
        Ok(())
    }

    /// Deletes log entries older than the table's log retention that a
    /// checkpoint has made unnecessary. Returns how many it deleted.
    pub(crate) async fn clean_log(&self) -> Result<usize> {
        deltalake::protocol::checkpoints::cleanup_metadata(&self.delta, None)
            .await
            .map_err(|e| Error::table(self.kind.name(), e))
    }

    /// Deletes the files no version within `grace` needs: removed ones, and
    /// ones never committed (a failed flush's). Returns how many it deleted.
    pub(crate) async fn vacuum(&mut self, grace: std::time::Duration) -> Result<usize> {
        let err = |e| Error::table(self.kind.name(), e);
        let grace = chrono::Duration::from_std(grace)
            .map_err(|e| Error::Internal(format!("vacuum grace out of range: {e}")))?;
        let (delta, metrics) = self
            .delta
            .clone()
            .vacuum()
            .with_retention_period(grace)
            .with_enforce_retention_duration(false)
            .with_mode(deltalake::operations::vacuum::VacuumMode::Full)
            .await
            .map_err(err)?;
        self.delta = delta;
        Ok(metrics.files_deleted.len())
    }

    /// Loads the latest version (commits by other writers and maintainers).
    pub(crate) async fn refresh(&mut self) -> Result<()> {
        self.delta
            .update_state()
            .await
            .map_err(|e| Error::table(self.kind.name(), e))?;
        self.reload_if_long_updated().await
    }

    fn relative(&self, location: &str) -> Result<String> {
        location
            .strip_prefix(&self.location)
            .and_then(|r| r.strip_prefix('/'))
            .map(str::to_owned)
            .ok_or_else(|| {
                Error::Internal(format!("{location} is not in the table {}", self.location))
            })
    }
}

/// The operation of a commit that removes expired partitions.
pub(crate) fn expire() -> DeltaOperation {
    DeltaOperation::Delete {
        predicate: Some(format!("{DAY} < retention cutoff")),
    }
}

/// The operation of a commit that merges small files.
pub(crate) fn compact(target_size: u64) -> DeltaOperation {
    DeltaOperation::Optimize {
        predicate: None,
        target_size: target_size as i64,
    }
}

/// The `add` operation of a flush.
pub(crate) fn append() -> DeltaOperation {
    DeltaOperation::Write {
        mode: SaveMode::Append,
        partition_by: Some(vec![DAY.to_owned()]),
        predicate: None,
    }
}

fn partition(day: &str) -> HashMap<String, Option<String>> {
    HashMap::from([(DAY.to_owned(), Some(day.to_owned()))])
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The three tables of a data location.
pub(crate) struct Tables {
    tables: [Table; 3],
}

impl Tables {
    /// Opens (and with `create`, creates) all three; `None` if any is missing.
    /// Read in [`READ_ORDER`], so a reader never sees a flush's structure or
    /// links without its spans.
    pub(crate) async fn open(storage: &Storage, create: bool) -> Result<Option<Self>> {
        let mut opened: [Option<Table>; 3] = [None, None, None];
        for kind in READ_ORDER {
            match Table::open(storage, kind, create).await? {
                Some(table) => opened[kind as usize] = Some(table),
                None => return Ok(None),
            }
        }
        let [Some(spans), Some(structure), Some(links)] = opened else {
            return Err(Error::Internal("three tables expected".into()));
        };
        Ok(Some(Self {
            tables: [spans, structure, links],
        }))
    }

    pub(crate) fn get(&self, kind: TableKind) -> &Table {
        &self.tables[kind as usize]
    }

    pub(crate) fn get_mut(&mut self, kind: TableKind) -> &mut Table {
        &mut self.tables[kind as usize]
    }

    /// The WAL sequence of `app` each table holds, in [`TableKind::ALL`] order.
    pub(crate) async fn applied(&self, app: &str) -> Result<[u64; 3]> {
        let mut applied = [0; 3];
        for (i, table) in self.tables.iter().enumerate() {
            applied[i] = table.applied(app).await?;
        }
        Ok(applied)
    }

    /// Loads every table's latest version.
    pub(crate) async fn refresh(&mut self) -> Result<()> {
        for kind in READ_ORDER {
            self.get_mut(kind).refresh().await?;
        }
        Ok(())
    }

    /// The files of all three tables as of whole flushes: a flush commits to
    /// the tables one after another, so the loaded versions may hold a
    /// writer's newest flush in `spans` (and `span_links`) but not yet in
    /// `span_structure`, its last commit. Files of a flush that
    /// `span_structure` does not hold yet are left out, so every span a
    /// reader sees has its structure and links, and a flush appears whole or
    /// not at all.
    pub(crate) async fn listing(&self) -> Result<Listing> {
        let structure = self.get(TableKind::Structure).files()?;
        let mut spans = self.get(TableKind::Spans).files()?;
        let mut links = self.get(TableKind::Links).files()?;
        let mut whole: HashMap<String, u64> = HashMap::new();
        for file in spans.iter().chain(&links) {
            if !file.writer.is_empty() && !whole.contains_key(&file.writer) {
                let held = self.get(TableKind::Structure).applied(&file.writer).await?;
                whole.insert(file.writer.clone(), held);
            }
        }
        let before = spans.len() + links.len();
        let in_whole_flush = |f: &FileMeta| {
            f.writer.is_empty() || f.seq_hi <= whole.get(&f.writer).copied().unwrap_or(0)
        };
        spans.retain(in_whole_flush);
        links.retain(in_whole_flush);
        Ok(Listing {
            partial: before - spans.len() - links.len(),
            spans,
            structure,
            links,
        })
    }
}

/// The application ids of the `txn` actions in `span_structure` besides a
/// collector's own id (the WAL sequence its flushes reached):
pub(crate) mod app {
    /// The last structure generation a collector wrote (a fleet settler's
    /// generations run ahead of its WAL, see `SettleRole::Fleet`).
    pub(crate) fn generation(collector: &str) -> String {
        format!("{collector}/generation")
    }

    /// The WAL sequence of `writer` through which the fleet settler has
    /// settled `writer`'s span files.
    pub(crate) fn settled(writer: &str) -> String {
        format!("settled/{writer}")
    }

    /// Set (to 1) by a collector whose traces the fleet settler settles.
    pub(crate) fn settles_elsewhere(collector: &str) -> String {
        format!("{collector}/settles-elsewhere")
    }
}

impl Tables {
    /// The span files compaction may merge: a merged file names no writer, so
    /// the files of a collector whose traces another settles (`SettleRole::
    /// None`) are merged only once the fleet settler has read them.
    pub(crate) async fn settled_spans(&self, spans: Vec<FileMeta>) -> Result<Vec<FileMeta>> {
        let structure = self.get(TableKind::Structure);
        let mut through: HashMap<String, u64> = HashMap::new();
        for file in &spans {
            if file.writer.is_empty() || through.contains_key(&file.writer) {
                continue;
            }
            let limit = if structure
                .applied(&app::settles_elsewhere(&file.writer))
                .await?
                > 0
            {
                structure.applied(&app::settled(&file.writer)).await?
            } else {
                u64::MAX
            };
            through.insert(file.writer.clone(), limit);
        }
        Ok(spans
            .into_iter()
            .filter(|f| f.writer.is_empty() || f.seq_hi <= through[&f.writer])
            .collect())
    }
}

/// The files of the three tables as of whole flushes ([`Tables::listing`]).
#[derive(Debug, Default)]
pub(crate) struct Listing {
    pub(crate) spans: Vec<FileMeta>,
    pub(crate) structure: Vec<FileMeta>,
    pub(crate) links: Vec<FileMeta>,
    /// Files left out because their flush is not in every table yet.
    pub(crate) partial: usize,
}

/// The order readers load the tables in: the reverse of a flush's commits
/// (spans, then links, then structure). A table loaded earlier is at most as
/// new as one loaded later, so the structure and links a reader sees belong
/// to spans it sees too; at worst a flush's spans show one read before them.
const READ_ORDER: [TableKind; 3] = [TableKind::Structure, TableKind::Links, TableKind::Spans];

/// This collector's id, the `app_id` of its commits: kept beside its WAL,
/// since it names which WAL a table's `txn` counts in. Created on first use.
pub(crate) fn collector_id(wal_dir: &Path, create: bool) -> Result<Option<String>> {
    let path = wal_dir.join("collector-id");
    match std::fs::read_to_string(&path) {
        Ok(id) => return Ok(Some(id.trim().to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&path, e)),
    }
    let id = format!("weft-{}", uuid::Uuid::new_v4());
    let tmp = wal_dir.join("collector-id.tmp");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        writeln!(f, "{id}")
            .and_then(|_| f.sync_all())
            .map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    crate::wal::sync_dir(wal_dir)?;
    Ok(Some(id))
}
