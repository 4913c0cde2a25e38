//! Keeping the tables healthy over months: retention, compaction, vacuum.
//!
//! - **Retention** removes, from all three tables in one run, every file of a
//!   day partition that ended more than `retention` ago: a metadata-only
//!   commit of `remove` actions.
//! - **Compaction** merges the small files of a day partition into files of
//!   up to `target_file_bytes`, sorted and bloom-filtered as a flush writes
//!   them, committed as one remove + add. In `span_structure` it drops the
//!   rows a later settling replaced (an older row of the same span), so each
//!   settled trace keeps one structure; it merges only structure files older
//!   than the settling horizon, which a later flush no longer reads.
//! - **Vacuum** deletes files that no version within `vacuum_grace` needs:
//!   removed ones, and ones written but never committed. Readers of an older
//!   snapshot keep working until then.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use arrow::array::{AsArray, BooleanArray, RecordBatch};
use arrow::compute::{
    SortColumn, concat_batches, filter_record_batch, lexsort_to_indices, take_record_batch,
};
use arrow::datatypes::Int64Type;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::properties::WriterProperties;
use weft_schemas::settled::col as s;
use weft_schemas::shown::batch_to_current;
use weft_schemas::{SpanId, SpanReader, TraceId};

use crate::error::{Error, Result};
use crate::parquet_files::{FileMeta, file_location, write_file, writer_properties};
use crate::settle::{links_properties, structure_properties};
use crate::storage::Storage;
use crate::tables::{Listing, TableKind, Tables, compact, expire};

/// What maintenance may do.
#[derive(Debug, Clone)]
pub struct MaintainConfig {
    /// Keep data this long, by the day of its start time.
    pub retention: Duration,
    /// Delete unreferenced files only once they are this old.
    pub vacuum_grace: Duration,
    /// Merge files smaller than half of this into files of up to this size.
    pub target_file_bytes: u64,
    /// Structure files younger than this may still be read by a flush.
    pub settle_horizon: Duration,
    /// Rows per row group of merged files.
    pub row_group_rows: usize,
    /// A failure point to fail at (see `StoreConfig::fault`).
    #[doc(hidden)]
    pub fault: Option<String>,
}

impl MaintainConfig {
    fn fault_point(&self, name: &str) -> Result<()> {
        crate::config::fault_point(self.fault.as_deref(), name)
    }
}

/// What one maintenance run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaintainReport {
    /// Files removed because their day is past retention.
    pub expired_files: usize,
    /// Small files merged, and the files they became.
    pub compacted_files: usize,
    pub compacted_into: usize,
    /// Structure rows of superseded generations dropped while merging.
    pub superseded_rows: usize,
    /// Files deleted from storage.
    pub vacuumed_files: usize,
    /// Log entries past the log's retention deleted (see `tables`).
    pub log_entries_removed: usize,
}

/// Runs retention, then compaction, then vacuum over `tables`.
pub(crate) async fn maintain(
    tables: &mut Tables,
    storage: &Storage,
    config: &MaintainConfig,
) -> Result<MaintainReport> {
    let mut report = MaintainReport::default();
    let cutoff = expired_before(config.retention);
    for kind in TableKind::ALL {
        let table = tables.get_mut(kind);
        let expired: Vec<FileMeta> = table
            .files()?
            .into_iter()
            .filter(|f| f.day.as_str() < cutoff.as_str())
            .collect();
        if !expired.is_empty() {
            table.commit(&[], &expired, &[], expire()).await?;
            report.expired_files += expired.len();
            tracing::info!(table = kind.name(), files = expired.len(), before = %cutoff, "expired");
        }
        config.fault_point(&format!("maintain.expired.{}", kind.name()))?;
    }
    // Only files of flushes that reached every table are merged: a merged
    // file names no writer, so a reader could no longer leave it out.
    let Listing {
        spans,
        structure,
        links,
        ..
    } = tables.listing().await?;
    let spans = tables.settled_spans(spans).await?;
    for (kind, files) in [
        (TableKind::Spans, spans),
        (TableKind::Structure, structure),
        (TableKind::Links, links),
    ] {
        let table = tables.get_mut(kind);
        let (storage, settings) = (storage.clone(), config.clone());
        let (removed, added, superseded) =
            tokio::task::spawn_blocking(move || compact_table(kind, &storage, &files, &settings))
                .await
                .map_err(|e| Error::Internal(format!("compaction task failed: {e}")))??;
        if removed.is_empty() {
            continue;
        }
        config.fault_point("maintain.compacted_written")?;
        table
            .commit(&added, &removed, &[], compact(config.target_file_bytes))
            .await?;
        tracing::info!(
            table = kind.name(),
            merged = removed.len(),
            into = added.len(),
            superseded,
            "compacted"
        );
        report.compacted_files += removed.len();
        report.compacted_into += added.len();
        report.superseded_rows += superseded;
        config.fault_point(&format!("maintain.compacted.{}", kind.name()))?;
    }
    for kind in TableKind::ALL {
        report.vacuumed_files += tables.get_mut(kind).vacuum(config.vacuum_grace).await?;
        config.fault_point(&format!("maintain.vacuumed.{}", kind.name()))?;
        report.log_entries_removed += tables.get(kind).clean_log().await?;
    }
    Ok(report)
}

/// Day partitions before this (`YYYY-MM-DD`) ended more than `retention` ago.
fn expired_before(retention: Duration) -> String {
    let cutoff =
        chrono::Utc::now() - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    // A day is expired once all of it is older than the cutoff: days before
    // the cutoff's own day.
    cutoff.format("%Y-%m-%d").to_string()
}

type Compacted = (Vec<FileMeta>, Vec<FileMeta>, usize);

/// Merges the small files of each day of one table; returns the files removed,
/// the files added and the superseded structure rows dropped.
fn compact_table(
    kind: TableKind,
    storage: &Storage,
    files: &[FileMeta],
    config: &MaintainConfig,
) -> Result<Compacted> {
    let small = config.target_file_bytes / 2;
    let settled_long_ago = |f: &FileMeta| f.age() >= config.settle_horizon;
    let mut by_day: BTreeMap<&str, Vec<&FileMeta>> = BTreeMap::new();
    for f in files {
        if f.bytes < small && (kind != TableKind::Structure || settled_long_ago(f)) {
            by_day.entry(f.day.as_str()).or_default().push(f);
        }
    }
    let superseded = if kind == TableKind::Structure && !by_day.is_empty() {
        latest_generations(storage, files)?
    } else {
        HashMap::new()
    };
    let (mut removed, mut added, mut dropped) = (Vec::new(), Vec::new(), 0);
    for (day, candidates) in by_day {
        for group in groups(candidates, config.target_file_bytes) {
            if group.len() < 2 {
                continue;
            }
            let mut batches = Vec::new();
            for f in &group {
                batches.extend(read_file(storage, f, kind)?);
            }
            let all = concat_batches(&kind.schema(), &batches)?;
            let (all, gone) = drop_superseded(kind, all, &superseded)?;
            dropped += gone;
            let sorted = sort(kind, &all)?;
            let name = format!("compact-{}.parquet", uuid::Uuid::new_v4());
            let location = file_location(storage, kind, day, &name);
            let file = write_file(storage, location, &sorted, properties(kind, config), 0, day)?;
            removed.extend(group.into_iter().cloned());
            added.push(file);
        }
    }
    Ok((removed, added, dropped))
}

/// Consecutive runs of files whose sizes add up to at most `target`.
fn groups(files: Vec<&FileMeta>, target: u64) -> Vec<Vec<&FileMeta>> {
    let mut out: Vec<Vec<&FileMeta>> = Vec::new();
    let mut size = 0;
    for f in files {
        match out.last_mut() {
            Some(group) if size + f.bytes <= target => {
                group.push(f);
                size += f.bytes;
            }
            _ => {
                out.push(vec![f]);
                size = f.bytes;
            }
        }
    }
    out
}

/// Reads a file whole, at the current schema: a file of an older schema
/// version (no `attribute_types`) compacts with newer ones.
fn read_file(storage: &Storage, file: &FileMeta, kind: TableKind) -> Result<Vec<RecordBatch>> {
    let schema = kind.schema();
    let reader =
        ParquetRecordBatchReaderBuilder::try_new(storage.read(&file.location)?)?.build()?;
    reader
        .map(|b| Ok(batch_to_current(&b?, &schema)?))
        .collect()
}

fn properties(kind: TableKind, config: &MaintainConfig) -> WriterProperties {
    match kind {
        TableKind::Spans => writer_properties(config.row_group_rows, 0, 0),
        TableKind::Structure => structure_properties(0, 0),
        TableKind::Links => links_properties(0, 0),
    }
}

/// Sorted as a flush writes the table: spans by trace and start, structure
/// by trace and nested-set position, links by the span linked to.
fn sort(kind: TableKind, batch: &RecordBatch) -> Result<RecordBatch> {
    use weft_schemas::schema::col;
    let keys: [&str; 2] = match kind {
        TableKind::Spans => [col::TRACE_ID, col::START_TIME],
        TableKind::Structure => [s::TRACE_ID, s::NESTED_LEFT],
        TableKind::Links => [s::LINKED_TRACE_ID, s::LINKED_SPAN_ID],
    };
    let columns = keys
        .iter()
        .map(|k| {
            Ok(SortColumn {
                values: batch
                    .column_by_name(k)
                    .ok_or_else(|| Error::Internal(format!("{} lacks {k}", kind.name())))?
                    .clone(),
                options: None,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let indices = lexsort_to_indices(&columns, None)?;
    Ok(take_record_batch(batch, &indices)?)
}

/// The latest generation of every `(trace, span)` in the structure files:
/// older rows of a span were replaced by a later settling.
fn latest_generations(
    storage: &Storage,
    files: &[FileMeta],
) -> Result<HashMap<(TraceId, SpanId), i64>> {
    let mut out: HashMap<(TraceId, SpanId), i64> = HashMap::new();
    for file in files {
        let builder = ParquetRecordBatchReaderBuilder::try_new(storage.read(&file.location)?)?;
        let mask = ProjectionMask::columns(
            builder.parquet_schema(),
            [s::TRACE_ID, s::SPAN_ID, s::GENERATION],
        );
        for batch in builder.with_projection(mask).build()? {
            let batch = batch?;
            let ids = SpanReader::with_columns(&batch, &[s::TRACE_ID, s::SPAN_ID])
                .map_err(|e| Error::Corrupt(format!("{}: {e}", file.location)))?;
            let Some(generation) = batch.column_by_name(s::GENERATION) else {
                continue;
            };
            let generation = generation.as_primitive::<Int64Type>();
            for row in 0..batch.num_rows() {
                if let (Some(trace), Some(span)) = (ids.trace_id(row), ids.span_id(row)) {
                    let latest = out.entry((trace, span)).or_insert(i64::MIN);
                    *latest = (*latest).max(generation.value(row));
                }
            }
        }
    }
    Ok(out)
}

/// Drops the structure rows a later settling replaced.
fn drop_superseded(
    kind: TableKind,
    batch: RecordBatch,
    latest: &HashMap<(TraceId, SpanId), i64>,
) -> Result<(RecordBatch, usize)> {
    if kind != TableKind::Structure || latest.is_empty() {
        return Ok((batch, 0));
    }
    let ids = SpanReader::with_columns(&batch, &[s::TRACE_ID, s::SPAN_ID])?;
    let generation = batch
        .column_by_name(s::GENERATION)
        .ok_or_else(|| Error::Internal("span_structure lacks generation".into()))?
        .as_primitive::<Int64Type>()
        .clone();
    let keep: BooleanArray = (0..batch.num_rows())
        .map(|row| {
            let key = ids.trace_id(row).zip(ids.span_id(row));
            Some(key.is_none_or(|k| {
                latest
                    .get(&k)
                    .is_none_or(|newest| *newest <= generation.value(row))
            }))
        })
        .collect();
    let kept = filter_record_batch(&batch, &keep)?;
    let gone = batch.num_rows() - kept.num_rows();
    Ok((kept, gone))
}
