//! Writing the live buffer to hour-partitioned Parquet files, atomically.
//!
//! Layout: `spans/date=YYYY-MM-DD/hour=HH/part-<seq_lo>-<seq_hi>.parquet`, where
//! the sequence numbers are the WAL records the file holds. Rows in a file are
//! sorted by `(trace_id, start_time)` so a trace is a contiguous run; `trace_id`
//! has a bloom filter and every column has page-level statistics, so looking a
//! trace up and scanning a time range both skip most row groups. A file is
//! written under a temporary name, fsynced, renamed, and its directory fsynced.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, RecordBatch, TimestampNanosecondArray, UInt32Array};
use arrow::compute::{SortColumn, lexsort_to_indices, take_record_batch};
use arrow::datatypes::Schema;
use chrono::DateTime;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterPropertiesBuilder};
use parquet::schema::types::ColumnPath;
use weft_schemas::schema::col;
use weft_schemas::{SCHEMA_VERSION, SCHEMA_VERSION_KEY, SpanId, SpanReader, TraceId, span_schema};

use crate::error::{Error, Result};
use crate::wal::sync_dir;

/// Sub-directory of the data dir that holds the Parquet files.
pub const SPANS_DIR: &str = "spans";

const NANOS_PER_HOUR: i64 = 3_600_000_000_000;

/// One Parquet file of spans.
#[derive(Debug, Clone, PartialEq)]
pub struct FileMeta {
    pub path: PathBuf,
    pub rows: usize,
    pub bytes: u64,
    pub seq_hi: u64,
}

/// `part-<lo>-<hi>.parquet` → `(lo, hi)`.
pub fn parse_file_name(name: &str) -> Option<(u64, u64)> {
    let rest = name.strip_prefix("part-")?.strip_suffix(".parquet")?;
    let (lo, hi) = rest.split_once('-')?;
    Some((lo.parse().ok()?, hi.parse().ok()?))
}

fn partition_dir(root: &Path, hour_bucket: i64) -> PathBuf {
    let ns = hour_bucket.saturating_mul(NANOS_PER_HOUR);
    let t = DateTime::from_timestamp_nanos(ns);
    root.join(t.format("date=%Y-%m-%d").to_string())
        .join(t.format("hour=%H").to_string())
}

/// Settings every Weft Parquet file shares: zstd, page statistics, the schema
/// version and the WAL records the file holds in its metadata.
pub fn base_properties(seq_lo: u64, seq_hi: u64) -> WriterPropertiesBuilder {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_key_value_metadata(Some(vec![
            KeyValue::new(SCHEMA_VERSION_KEY.to_owned(), SCHEMA_VERSION.to_string()),
            KeyValue::new("weft.wal_seq_lo".to_owned(), seq_lo.to_string()),
            KeyValue::new("weft.wal_seq_hi".to_owned(), seq_hi.to_string()),
        ]))
}

/// `column` gets a bloom filter, so lookups by its value skip row groups.
pub fn with_bloom_filter(b: WriterPropertiesBuilder, column: &str) -> WriterPropertiesBuilder {
    let path = ColumnPath::from(column);
    b.set_column_bloom_filter_enabled(path.clone(), true)
        .set_column_bloom_filter_fpp(path, 0.01)
}

/// Sorting columns (ascending) as Parquet metadata, by position in `schema`.
pub fn sorted_by(schema: &Schema, columns: &[&str]) -> Vec<SortingColumn> {
    columns
        .iter()
        .filter_map(|c| schema.index_of(c).ok())
        .map(|i| SortingColumn {
            column_idx: i as i32,
            descending: false,
            nulls_first: false,
        })
        .collect()
}

/// Writer settings chosen for trace-by-id lookups and time-range scans.
pub fn writer_properties(row_group_rows: usize, seq_lo: u64, seq_hi: u64) -> WriterProperties {
    let mut b = with_bloom_filter(base_properties(seq_lo, seq_hi), col::TRACE_ID)
        .set_max_row_group_row_count(Some(row_group_rows.max(1)))
        .set_column_dictionary_enabled(ColumnPath::from(col::SPAN_ID), false)
        .set_sorting_columns(Some(sorted_by(
            &span_schema(),
            &[col::TRACE_ID, col::START_TIME],
        )));
    for c in [col::START_TIME, col::END_TIME, col::DURATION_NS] {
        let path = ColumnPath::from(c);
        b = b
            .set_column_dictionary_enabled(path.clone(), false)
            .set_column_encoding(path, Encoding::DELTA_BINARY_PACKED);
    }
    b.build()
}

/// Writes `batches` (WAL records `seq_lo..=seq_hi`) as one file per hour of
/// `start_time`, each sorted by trace id then start time. Returns the files,
/// all durable and under their final names.
pub fn write_partitions(
    root: &Path,
    all: &RecordBatch,
    seq_lo: u64,
    seq_hi: u64,
    row_group_rows: usize,
) -> Result<Vec<FileMeta>> {
    if all.num_rows() == 0 {
        return Ok(Vec::new());
    }
    let starts = all
        .column(6)
        .as_any()
        .downcast_ref::<TimestampNanosecondArray>()
        .ok_or_else(|| Error::Internal("start_time column has an unexpected type".into()))?;
    let mut by_hour: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
    for (row, ns) in starts.values().iter().enumerate() {
        by_hour
            .entry(ns.div_euclid(NANOS_PER_HOUR))
            .or_default()
            .push(row as u32);
    }
    let mut files = Vec::with_capacity(by_hour.len());
    for (hour, rows) in by_hour {
        let part = take_record_batch(all, &UInt32Array::from(rows))?;
        let sorted = sort_for_storage(&part)?;
        let dir = partition_dir(&root.join(SPANS_DIR), hour);
        let props = writer_properties(row_group_rows, seq_lo, seq_hi);
        files.push(write_file(
            &dir,
            &file_name(seq_lo, seq_hi),
            &sorted,
            props,
            seq_hi,
        )?);
    }
    Ok(files)
}

fn sort_for_storage(batch: &RecordBatch) -> Result<RecordBatch> {
    let columns = [
        SortColumn {
            values: Arc::clone(batch.column(0)),
            options: None,
        },
        SortColumn {
            values: Arc::clone(batch.column(6)),
            options: None,
        },
    ];
    let indices = lexsort_to_indices(&columns, None)?;
    Ok(take_record_batch(batch, &indices)?)
}

/// `part-<lo>-<hi>.parquet`, zero-padded so names sort by sequence.
pub fn file_name(seq_lo: u64, seq_hi: u64) -> String {
    format!("part-{seq_lo:020}-{seq_hi:020}.parquet")
}

/// Writes `batch` to `dir/name` atomically: temporary name, fsync, rename, fsync the directory.
pub fn write_file(
    dir: &Path,
    name: &str,
    batch: &RecordBatch,
    props: WriterProperties,
    seq_hi: u64,
) -> Result<FileMeta> {
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(name);
    let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(props))?;
    writer.write(batch)?;
    let file = writer.into_inner()?;
    file.sync_all().map_err(|e| Error::io(&tmp, e))?;
    let bytes = file.metadata().map_err(|e| Error::io(&tmp, e))?.len();
    drop(file);
    fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    sync_dir(dir)?;
    Ok(FileMeta {
        path,
        rows: batch.num_rows(),
        bytes,
        seq_hi,
    })
}

/// Every committed Parquet file under `root/<dir>` (`spans`, or a settled
/// table's directory). Leftovers of an interrupted
/// flush — temporary files, and files past the `checkpoint` (their spans are
/// still in the WAL and will be flushed again) — are skipped, and deleted when
/// `repair` is set.
pub fn recover_files(
    root: &Path,
    dir: &str,
    checkpoint: u64,
    repair: bool,
) -> Result<Vec<FileMeta>> {
    let mut out = Vec::new();
    let mut stack = vec![root.join(dir)];
    while let Some(dir) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(&dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&dir, e))?;
            let path = entry.path();
            let meta = entry.metadata().map_err(|e| Error::io(&path, e))?;
            if meta.is_dir() {
                stack.push(path);
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if !repair
                && (name.ends_with(".tmp")
                    || parse_file_name(&name).is_none_or(|(_, hi)| hi > checkpoint))
            {
                continue;
            }
            if name.ends_with(".tmp") {
                tracing::warn!(file = %path.display(), "removing unfinished parquet file");
                fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
                continue;
            }
            let Some((_, seq_hi)) = parse_file_name(&name) else {
                continue;
            };
            if seq_hi > checkpoint {
                tracing::warn!(file = %path.display(), "removing parquet file of an interrupted flush; its spans replay from the wal");
                fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
                continue;
            }
            out.push(FileMeta {
                path,
                rows: 0,
                bytes: meta.len(),
                seq_hi,
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// The `(trace_id, span_id)` pairs of a file, reading only those two columns.
pub fn read_span_keys(path: &Path) -> Result<Vec<(TraceId, SpanId)>> {
    use parquet::arrow::ProjectionMask;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
    let mask = ProjectionMask::columns(builder.parquet_schema(), [col::TRACE_ID, col::SPAN_ID]);
    let reader = builder.with_projection(mask).build()?;
    let mut keys = Vec::new();
    for batch in reader {
        let r = SpanReader::with_columns(&batch?, &[col::TRACE_ID, col::SPAN_ID]).map_err(|e| {
            Error::Corrupt(format!("{} has unexpected id columns: {e}", path.display()))
        })?;
        keys.extend((0..r.len()).filter_map(|row| Some((r.trace_id(row)?, r.span_id(row)?))));
    }
    Ok(keys)
}
