//! Writing the live buffer to day-partitioned Parquet files, atomically.
//!
//! Layout: `spans/day=YYYY-MM-DD/part-<seq_lo>-<seq_hi>.parquet`, where the
//! sequence numbers are the WAL records the file holds; `tables` commits the
//! files to the table's Delta log. Rows in a file are
//! sorted by `(trace_id, start_time)` so a trace is a contiguous run; `trace_id`
//! has a bloom filter and every column has page-level statistics, so looking a
//! trace up and scanning a time range both skip most row groups. A file is
//! written under a temporary name, fsynced, renamed, and its directory fsynced.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{RecordBatch, TimestampMicrosecondArray, UInt32Array};
use arrow::compute::{SortColumn, lexsort_to_indices, take_record_batch};
use arrow::datatypes::Schema;
use chrono::DateTime;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterPropertiesBuilder};
use parquet::schema::types::ColumnPath;
use weft_schemas::schema::col;
use weft_schemas::{
    SCHEMA_VERSION, SCHEMA_VERSION_KEY, SpanId, SpanReader, TraceId, ai_col, span_schema,
};

use crate::error::{Error, Result};
use crate::file_stats::file_stats;
use crate::storage::Storage;
use crate::table_kind::{DAY, TableKind};

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// One Parquet file of a table.
#[derive(Debug, Clone, PartialEq)]
pub struct FileMeta {
    /// Where it is: an absolute path, or a URL (`s3://bucket/…`).
    pub location: String,
    pub rows: usize,
    pub bytes: u64,
    /// The last WAL record the file holds (0 for files compaction merged).
    pub seq_hi: u64,
    /// The collector that wrote it (empty for compacted and converted files).
    pub(crate) writer: String,
    /// Its partition: the UTC day (`YYYY-MM-DD`) of its rows' `start_time`.
    pub day: String,
    /// Delta `stats` JSON: row count and the time range.
    pub(crate) stats: Option<String>,
    /// When it was written, in milliseconds since the Unix epoch.
    pub(crate) modified_ms: i64,
}

impl FileMeta {
    /// The first and last `start_time` in the file, in microseconds since
    /// the Unix epoch, from its statistics (`None` when it has none).
    pub fn start_time_range(&self) -> Option<(i64, i64)> {
        let stats: serde_json::Value = serde_json::from_str(self.stats.as_deref()?).ok()?;
        let micros = |bound: &str| {
            let text = stats.get(bound)?.get(col::START_TIME)?.as_str()?;
            Some(DateTime::parse_from_rfc3339(text).ok()?.timestamp_micros())
        };
        Some((micros("minValues")?, micros("maxValues")?))
    }

    /// How long ago it was written.
    pub(crate) fn age(&self) -> std::time::Duration {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        std::time::Duration::from_millis(now.saturating_sub(self.modified_ms).max(0) as u64)
    }
}

/// `part-<lo>-<hi>[-<writer>].parquet` → `(lo, hi, writer)`; the writer is
/// empty in names of the layout before Delta tables.
pub fn parse_file_name(name: &str) -> Option<(u64, u64, &str)> {
    let rest = name.strip_prefix("part-")?.strip_suffix(".parquet")?;
    let mut parts = rest.splitn(3, '-');
    let lo = parts.next()?.parse().ok()?;
    let hi = parts.next()?.parse().ok()?;
    Some((lo, hi, parts.next().unwrap_or("")))
}

/// `YYYY-MM-DD` of a day number (days since the Unix epoch).
fn day_text(day: i64) -> String {
    DateTime::from_timestamp_micros(day.saturating_mul(MICROS_PER_DAY))
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// The rows of `batch` by UTC day of the microsecond timestamp column `time`.
pub fn rows_by_day(batch: &RecordBatch, time: &str) -> Result<BTreeMap<String, RecordBatch>> {
    let times = batch
        .column_by_name(time)
        .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>())
        .ok_or_else(|| Error::Internal(format!("{time} is not a microsecond timestamp column")))?;
    let mut by_day: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
    for (row, micros) in times.values().iter().enumerate() {
        by_day
            .entry(micros.div_euclid(MICROS_PER_DAY))
            .or_default()
            .push(row as u32);
    }
    by_day
        .into_iter()
        .map(|(day, rows)| {
            Ok((
                day_text(day),
                take_record_batch(batch, &UInt32Array::from(rows))?,
            ))
        })
        .collect()
}

/// Writes `batch` into the table `kind` as one file per day of its
/// `start_time`, each named `name` in its `day=` directory and transformed by
/// `prepare` (a sort) first.
pub fn write_by_day(
    storage: &Storage,
    kind: TableKind,
    batch: &RecordBatch,
    name: &str,
    props: impl Fn() -> WriterProperties,
    prepare: impl Fn(&RecordBatch) -> Result<RecordBatch>,
    seq_hi: u64,
) -> Result<Vec<FileMeta>> {
    let mut files = Vec::new();
    for (day, rows) in rows_by_day(batch, col::START_TIME)? {
        let rows = prepare(&rows)?;
        let location = file_location(storage, kind, &day, name);
        files.push(write_file(storage, location, &rows, props(), seq_hi, &day)?);
    }
    Ok(files)
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
    let mut b = base_properties(seq_lo, seq_hi);
    // Trace by id; lineage's evidence lookups by tool call, approved action
    // and message id; a conversation's workflows.
    for c in [
        col::TRACE_ID,
        ai_col::tool_call_id,
        ai_col::approval_action,
        ai_col::message_id,
        ai_col::conversation_id,
    ] {
        b = with_bloom_filter(b, c);
    }
    let mut b = b
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

/// Writes `all` (WAL records `seq_lo..=seq_hi`) into the `spans` table as one
/// file per day of `start_time`, each sorted by trace id then start time.
/// Returns the files, all durable and under their final names.
pub fn write_partitions(
    storage: &Storage,
    all: &RecordBatch,
    seq_lo: u64,
    seq_hi: u64,
    writer: &str,
    row_group_rows: usize,
) -> Result<Vec<FileMeta>> {
    if all.num_rows() == 0 {
        return Ok(Vec::new());
    }
    write_by_day(
        storage,
        TableKind::Spans,
        all,
        &file_name(seq_lo, seq_hi, writer),
        || writer_properties(row_group_rows, seq_lo, seq_hi),
        sort_for_storage,
        seq_hi,
    )
}

pub fn sort_for_storage(batch: &RecordBatch) -> Result<RecordBatch> {
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

/// `part-<lo>-<hi>-<writer>.parquet`: the WAL records the file holds,
/// zero-padded so names sort by sequence, and the collector that wrote it, so
/// collectors sharing a table never write the same name.
pub fn file_name(seq_lo: u64, seq_hi: u64, writer: &str) -> String {
    format!("part-{seq_lo:020}-{seq_hi:020}-{writer}.parquet")
}

/// Where a table's file of `day` named `name` goes.
pub fn file_location(storage: &Storage, kind: TableKind, day: &str, name: &str) -> String {
    format!("{}/{DAY}={day}/{name}", storage.table(kind))
}

/// Writes `batch` as a Parquet file at `location`, durably and atomically.
pub fn write_file(
    storage: &Storage,
    location: String,
    batch: &RecordBatch,
    props: WriterProperties,
    seq_hi: u64,
    day: &str,
) -> Result<FileMeta> {
    let mut buffer = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut buffer, batch.schema(), Some(props))?;
    writer.write(batch)?;
    writer.close()?;
    let bytes = buffer.len() as u64;
    storage.write(&location, buffer)?;
    let writer = parse_file_name(location.rsplit('/').next().unwrap_or_default())
        .map(|(_, _, w)| w.to_owned())
        .unwrap_or_default();
    Ok(FileMeta {
        location,
        rows: batch.num_rows(),
        bytes,
        seq_hi,
        writer,
        day: day.to_owned(),
        stats: Some(file_stats(batch)),
        modified_ms: chrono::Utc::now().timestamp_millis(),
    })
}

/// The `(trace_id, span_id)` pairs of a file, reading only those two columns.
pub fn read_span_keys(storage: &Storage, location: &str) -> Result<Vec<(TraceId, SpanId)>> {
    use parquet::arrow::ProjectionMask;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    let builder = ParquetRecordBatchReaderBuilder::try_new(storage.read(location)?)?;
    let mask = ProjectionMask::columns(builder.parquet_schema(), [col::TRACE_ID, col::SPAN_ID]);
    let reader = builder.with_projection(mask).build()?;
    let mut keys = Vec::new();
    for batch in reader {
        let r = SpanReader::with_columns(&batch?, &[col::TRACE_ID, col::SPAN_ID])
            .map_err(|e| Error::Corrupt(format!("{location} has unexpected id columns: {e}")))?;
        keys.extend((0..r.len()).filter_map(|row| Some((r.trace_id(row)?, r.span_id(row)?))));
    }
    Ok(keys)
}
