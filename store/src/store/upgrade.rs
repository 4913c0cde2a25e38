//! Bringing a data directory written by an older Weft to the current schema.
//!
//! Schema version 1 stored ids as hex text, version 2 nanosecond times; version
//! 3 stores ids as bytes and times in microseconds (Delta Lake's timestamp). At
//! open, every file of an older version is rewritten under its own name
//! (temporary file, fsync, rename: a crash leaves either the old file or the new
//! one), and the `format` file then records the directory's version, so later
//! opens skip the scan. WAL records of older versions are converted as they replay
//! (`codec`). `legacy` runs this before committing the files to Delta tables.

use std::fs::{self, File};
use std::path::Path;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::properties::WriterProperties;
use weft_schemas::shown::batch_to_current;
use weft_schemas::{
    SCHEMA_VERSION, SCHEMA_VERSION_KEY, links_schema, span_schema, structure_schema,
};

use crate::error::{Error, Result};
use crate::parquet_files::{FileMeta, parse_file_name, write_file, writer_properties};
use crate::settle::{links_properties, structure_properties};
use crate::storage::Storage;
use crate::wal::sync_dir;

/// Records the schema version every file of the directory is at.
const FORMAT_FILE: &str = "format";

/// The stored tables, each with its schema and writer settings.
#[derive(Debug, Clone, Copy)]
pub(super) enum Table {
    Spans,
    Structure,
    Links,
}

impl Table {
    fn schema(self) -> SchemaRef {
        match self {
            Table::Spans => span_schema(),
            Table::Structure => structure_schema(),
            Table::Links => links_schema(),
        }
    }

    fn properties(self, seq_lo: u64, seq_hi: u64, row_group_rows: usize) -> WriterProperties {
        match self {
            Table::Spans => writer_properties(row_group_rows, seq_lo, seq_hi),
            Table::Structure => structure_properties(seq_lo, seq_hi),
            Table::Links => links_properties(seq_lo, seq_hi),
        }
    }
}

fn read_format(root: &Path) -> Result<Option<u32>> {
    let path = root.join(FORMAT_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().map(Some).map_err(|_| {
            Error::Corrupt(format!(
                "{} is not a schema version ({text:?}); delete it and weft checks every file again",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

fn write_format(root: &Path) -> Result<()> {
    let path = root.join(FORMAT_FILE);
    let tmp = root.join(format!("{FORMAT_FILE}.tmp"));
    {
        use std::io::Write;
        let mut f = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        writeln!(f, "{SCHEMA_VERSION}")
            .and_then(|_| f.sync_all())
            .map_err(|e| Error::io(&tmp, e))?;
    }
    fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    sync_dir(root)
}

/// The schema version a Parquet file was written with (1 if it does not say).
fn file_version(path: &Path) -> Result<u32> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
    let version = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kvs| kvs.iter().find(|kv| kv.key == SCHEMA_VERSION_KEY))
        .and_then(|kv| kv.value.as_deref()?.parse().ok())
        .unwrap_or(1);
    Ok(version)
}

/// Rewrites one file at the current schema, under the same name.
fn rewrite(storage: &Storage, file: &FileMeta, table: Table, row_group_rows: usize) -> Result<()> {
    let path = Path::new(&file.location);
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let Some((seq_lo, seq_hi, _)) = parse_file_name(name) else {
        return Err(Error::Internal(format!(
            "{} is not a weft data file",
            path.display()
        )));
    };
    let schema = table.schema();
    let reader = ParquetRecordBatchReaderBuilder::try_new(
        File::open(path).map_err(|e| Error::io(path, e))?,
    )?
    .build()?;
    let batches = reader
        .map(|batch| Ok(batch_to_current(&batch?, &schema)?))
        .collect::<Result<Vec<RecordBatch>>>()
        .map_err(|e| Error::Corrupt(format!("cannot convert {}: {e}", path.display())))?;
    let all = concat_batches(&schema, &batches)?;
    let props = table.properties(seq_lo, seq_hi, row_group_rows);
    write_file(
        storage,
        file.location.clone(),
        &all,
        props,
        seq_hi,
        &file.day,
    )?;
    Ok(())
}

/// Converts every file of an older schema version; a no-op once the
/// directory's `format` says it is current.
pub(super) fn upgrade(
    storage: &Storage,
    root: &Path,
    tables: &[(&[FileMeta], Table)],
    row_group_rows: usize,
) -> Result<()> {
    if read_format(root)? == Some(SCHEMA_VERSION) {
        return Ok(());
    }
    let mut converted = 0usize;
    for (files, table) in tables {
        for file in *files {
            if file_version(Path::new(&file.location))? < SCHEMA_VERSION {
                rewrite(storage, file, *table, row_group_rows)?;
                converted += 1;
            }
        }
    }
    if converted > 0 {
        tracing::info!(
            files = converted,
            schema_version = SCHEMA_VERSION,
            "converted files written by an older weft"
        );
    }
    write_format(root)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::ArrayRef;
    use parquet::arrow::ArrowWriter;
    use parquet::file::metadata::KeyValue;
    use weft_schemas::conventions::extract;
    use weft_schemas::schema::col;
    use weft_schemas::shown::{show_ids, shown_schema};
    use weft_schemas::{
        AttrValue, Span, SpanId, SpanKind, SpanReader, StatusCode, TraceId, spans_to_batch,
    };

    use super::*;
    use crate::config::StoreConfig;
    use crate::metrics::Metrics;
    use crate::store::codec::{ADDED, encode_batch};
    use crate::store::{Store, read_snapshot};
    use crate::wal::WalWriter;

    /// A batch as Weft 1 wrote it: ids as hex text, version 1 in the
    /// metadata, none of the columns added since (the codec's `ADDED`).
    fn version_1(spans: &[Span]) -> RecordBatch {
        let batch = spans_to_batch(spans).unwrap();
        let later: Vec<&str> = ADDED
            .iter()
            .flat_map(|(_, names)| names.iter().copied())
            .collect();
        let version_1_columns: Vec<usize> = (0..batch.num_columns())
            .filter(|i| !later.contains(&batch.schema().field(*i).name().as_str()))
            .collect();
        let batch = batch.project(&version_1_columns).unwrap();
        let columns: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .map(|c| show_ids(c).unwrap())
            .collect();
        let schema = shown_schema(&batch.schema());
        let mut metadata = schema.metadata().clone();
        metadata.insert(SCHEMA_VERSION_KEY.to_owned(), "1".to_owned());
        let schema = Arc::new(schema.as_ref().clone().with_metadata(metadata));
        RecordBatch::try_new(schema, columns).unwrap()
    }

    /// `n` model calls of one trace, as the OTLP edge normalises them.
    fn spans(first: u8, n: u8) -> Vec<Span> {
        let resource = vec![
            (
                "service.name".to_owned(),
                AttrValue::Str("support-agent".into()),
            ),
            ("host.name".to_owned(), AttrValue::Str("gpu-2".into())),
        ];
        (first..first + n)
            .map(|i| {
                let attributes = vec![
                    (
                        "gen_ai.operation.name".to_owned(),
                        AttrValue::Str("chat".into()),
                    ),
                    ("gen_ai.usage.input_tokens".to_owned(), AttrValue::Int(100)),
                ];
                Span {
                    trace_id: TraceId::try_from(&[1u8; 16][..]).unwrap(),
                    span_id: SpanId::try_from(&[i.max(1); 8][..]).unwrap(),
                    parent_span_id: None,
                    trace_state: String::new(),
                    name: format!("step {i}"),
                    kind: SpanKind::Client,
                    start_time_unix_nano: 1_700_000_000_000_000_000,
                    end_time_unix_nano: 1_700_000_000_500_000_000,
                    status_code: StatusCode::Unset,
                    status_message: String::new(),
                    service_name: Some("support-agent".into()),
                    ai: extract(&attributes, &resource),
                    resource_attributes: Arc::new(resource.clone()),
                    scope_name: String::new(),
                    scope_version: String::new(),
                    attributes,
                    events: Vec::new(),
                    links: Vec::new(),
                }
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_version_1_directory_is_converted_to_delta_tables_at_open_and_refused_read_only_before()
     {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // A flushed file of version 1 (WAL records 1..=1) and one record still in the WAL.
        let flushed = spans(1, 3);
        let part = root.join("spans/date=2023-11-14/hour=22");
        std::fs::create_dir_all(&part).unwrap();
        let file =
            File::create(part.join("part-00000000000000000001-00000000000000000001.parquet"))
                .unwrap();
        let props = WriterProperties::builder()
            .set_key_value_metadata(Some(vec![KeyValue::new(
                SCHEMA_VERSION_KEY.to_owned(),
                "1".to_owned(),
            )]))
            .build();
        let old = version_1(&flushed);
        let mut writer = ArrowWriter::try_new(file, old.schema(), Some(props)).unwrap();
        writer.write(&old).unwrap();
        writer.close().unwrap();
        std::fs::write(root.join("checkpoint"), "1\n").unwrap();
        let live = spans(4, 2);
        let mut wal = WalWriter::open(&root.join("wal"), 2).unwrap();
        wal.append(&encode_batch(&version_1(&live)).unwrap())
            .unwrap();
        wal.sync().unwrap();
        drop(wal);

        let refused = read_snapshot(root.to_str().unwrap())
            .await
            .unwrap_err()
            .to_string();
        assert!(refused.contains("weft serve --data-dir"), "{refused}");

        {
            let store = Store::open(StoreConfig::new(root), Arc::new(Metrics::default()))
                .await
                .unwrap();
            assert!(!root.join("checkpoint").exists());
            assert!(root.join("spans/_delta_log").is_dir());
            let snapshot = store.snapshot().unwrap();
            assert_eq!(snapshot.files.len(), 1);
            assert_eq!(snapshot.files[0].day, "2023-11-14");
            assert_eq!(
                file_version(Path::new(&snapshot.files[0].location)).unwrap(),
                SCHEMA_VERSION
            );
            let converted = ParquetRecordBatchReaderBuilder::try_new(
                File::open(&snapshot.files[0].location).unwrap(),
            )
            .unwrap()
            .build()
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
            assert_eq!(converted.schema().fields(), span_schema().fields());
            let ids: Vec<_> = {
                let r = SpanReader::new(&converted).unwrap();
                (0..r.len()).map(|row| r.span_id(row).unwrap()).collect()
            };
            let mut expected: Vec<_> = flushed.iter().map(|s| s.span_id).collect();
            let mut got = ids.clone();
            expected.sort();
            got.sort();
            assert_eq!(got, expected);
            // The WAL record of version 1 replays into the live buffer as the current version.
            assert_eq!(snapshot.batches.len(), 1);
            // Types were not recorded then: `attribute_types` is null.
            let current = spans_to_batch(&live).unwrap();
            let types = current.schema().index_of(col::ATTRIBUTE_TYPES).unwrap();
            let mut columns = current.columns().to_vec();
            columns[types] = arrow::array::new_null_array(columns[types].data_type(), live.len());
            let expected = RecordBatch::try_new(span_schema(), columns).unwrap();
            assert_eq!(snapshot.batches[0], expected);
            // A retry of a converted span is still recognised as a duplicate.
            let again = store.ingest(&flushed[..1]).await.unwrap();
            assert_eq!((again.stored, again.duplicates), (0, 1));
            store.shutdown().await.unwrap();
        }
        assert_eq!(read_format(root).unwrap(), Some(SCHEMA_VERSION));
        let after = read_snapshot(root.to_str().unwrap()).await.unwrap();
        assert!(
            after.batches.is_empty(),
            "the WAL records are in the tables"
        );
        let rows: usize = after
            .files
            .iter()
            .map(|f| rows_of(Path::new(&f.location)))
            .sum();
        assert_eq!(rows, 5, "3 converted spans and 2 replayed ones, once each");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_wal_record_no_version_reads_keeps_the_store_closed_and_is_kept() {
        use arrow::datatypes::{DataType, Field, Schema};
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // A newer weft's record: one more column than this version knows.
        let batch = spans_to_batch(&spans(1, 1)).unwrap();
        let mut fields = batch.schema().fields().to_vec();
        fields.push(Arc::new(Field::new(
            "from_the_future",
            DataType::Utf8,
            true,
        )));
        let mut columns = batch.columns().to_vec();
        columns.push(arrow::array::new_null_array(&DataType::Utf8, 1));
        let newer = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
        let mut wal = WalWriter::open(&root.join("wal"), 1).unwrap();
        wal.append(&encode_batch(&newer).unwrap()).unwrap();
        wal.sync().unwrap();
        drop(wal);
        for _ in 0..2 {
            let refused = Store::open(StoreConfig::new(root), Arc::new(Metrics::default()))
                .await
                .map(|_| ())
                .unwrap_err()
                .to_string();
            assert!(
                refused.contains("WAL record 1")
                    && refused.contains("move the WAL directory aside"),
                "{refused}"
            );
        }
    }

    fn rows_of(path: &Path) -> usize {
        ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
            .unwrap()
            .metadata()
            .file_metadata()
            .num_rows() as usize
    }
}
