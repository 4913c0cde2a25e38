//! SQL behaviour of the `spans` table, in sqllogictest files under `tests/slt/`.
//!
//! The fixture traces (`tests/fixtures/trace_{a,b}.json`, OTLP/JSON) go through
//! the real pipeline — decode, normalise, WAL, store — into a temporary data
//! directory; trace A is flushed to Parquet and trace B stays in the live
//! buffer, so every query reads both.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use sqllogictest::{DBOutput, DefaultColumnType};
use weft_otlp::{Format as OtlpFormat, Normalised, decode_spans};
use weft_query::{QueryEngine, QueryError, QuerySettings};
use weft_store::{Metrics, Store, StoreConfig};

struct Weft {
    engine: Arc<QueryEngine>,
}

#[derive(Debug)]
struct SltError(QueryError);

impl std::fmt::Display for SltError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}
impl std::error::Error for SltError {}

fn column_type(t: &DataType) -> DefaultColumnType {
    match t {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => DefaultColumnType::Integer,
        DataType::Float32 | DataType::Float64 | DataType::Decimal128(_, _) => {
            DefaultColumnType::FloatingPoint
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => DefaultColumnType::Text,
        _ => DefaultColumnType::Any,
    }
}

fn rows(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let options = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for batch in batches {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).expect("formattable column"))
            .collect();
        for row in 0..batch.num_rows() {
            out.push(
                formatters
                    .iter()
                    .zip(batch.columns())
                    .map(|(f, c)| {
                        let text = f.value(row).to_string();
                        if !c.is_null(row) && text.is_empty() {
                            "(empty)".to_owned()
                        } else {
                            text
                        }
                    })
                    .collect(),
            );
        }
    }
    out
}

#[async_trait::async_trait]
impl sqllogictest::AsyncDB for Weft {
    type Error = SltError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SltError> {
        let result = self.engine.sql(sql).await.map_err(SltError)?;
        if result.schema.fields().is_empty() {
            return Ok(DBOutput::StatementComplete(0));
        }
        Ok(DBOutput::Rows {
            types: result
                .schema
                .fields()
                .iter()
                .map(|f| column_type(f.data_type()))
                .collect(),
            rows: rows(&result.batches),
        })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "weft"
    }
}

fn fixture(name: &str) -> Normalised {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let bytes = std::fs::read(&path).expect("fixture exists");
    decode_spans(&bytes, OtlpFormat::Json).expect("fixture is valid OTLP/JSON")
}

async fn load(dir: &Path) -> Store {
    let store = Store::open(StoreConfig::new(dir), Arc::new(Metrics::default()))
        .await
        .expect("store opens");
    for (name, flush) in [("trace_a.json", true), ("trace_b.json", false)] {
        let normalised = fixture(name);
        assert_eq!(normalised.rejected, 0, "{}", normalised.error_message());
        store.ingest(&normalised.spans).await.expect("ingest");
        if flush {
            store.flush().await.expect("flush");
        }
    }
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqllogictest_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = load(dir.path()).await;
    assert_eq!(
        store.snapshot().unwrap().files.len(),
        1,
        "trace A is in parquet"
    );
    assert_eq!(store.buffered_spans(), 3, "trace B is live");
    let engine = Arc::new(
        QueryEngine::new(Arc::new(store.clone()), QuerySettings::default())
            .await
            .unwrap(),
    );

    let slt_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let mut files: Vec<_> = std::fs::read_dir(&slt_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files in {}", slt_dir.display());
    for file in files {
        let engine = Arc::clone(&engine);
        let mut runner = sqllogictest::Runner::new(move || {
            let engine = Arc::clone(&engine);
            async move { Ok(Weft { engine }) }
        });
        // The type letters of each `query` are checked (T text, I integer,
        // R float, ? anything else), not accepted whatever they say.
        runner.with_column_validator(sqllogictest::strict_column_validator);
        runner
            .run_file_async(&file)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        eprintln!("ok: {}", file.display());
    }
    store.shutdown().await.unwrap();
}
