//! Result batches rendered for people and programs: JSON rows, CSV, Arrow IPC, text table.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::json::writer::{JsonArray, LineDelimited};

use crate::engine::QueryResult;
use crate::error::QueryError;

/// Output formats of `/api/sql` and `weft sql`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// A JSON array of row objects.
    Json,
    /// One JSON object per row, one per line.
    NdJson,
    Csv,
    /// Arrow IPC stream.
    Arrow,
    /// An aligned text table.
    Table,
}

impl OutputFormat {
    /// From an HTTP `Accept` header; JSON unless CSV or Arrow is asked for.
    pub fn from_accept(accept: Option<&str>) -> Self {
        let accept = accept.unwrap_or("").to_ascii_lowercase();
        if accept.contains("application/vnd.apache.arrow.stream") {
            OutputFormat::Arrow
        } else if accept.contains("application/x-ndjson") || accept.contains("application/jsonl") {
            OutputFormat::NdJson
        } else if accept.contains("text/csv") {
            OutputFormat::Csv
        } else {
            OutputFormat::Json
        }
    }

    /// The `Content-Type` of this format.
    pub fn content_type(self) -> &'static str {
        match self {
            OutputFormat::Json => "application/json",
            OutputFormat::NdJson => "application/x-ndjson",
            OutputFormat::Csv => "text/csv",
            OutputFormat::Arrow => "application/vnd.apache.arrow.stream",
            OutputFormat::Table => "text/plain; charset=utf-8",
        }
    }
}

/// Renders a result in `format`.
pub fn render(result: &QueryResult, format: OutputFormat) -> Result<Vec<u8>, QueryError> {
    if format == OutputFormat::Table {
        let empty = [RecordBatch::new_empty(Arc::clone(&result.schema))];
        let batches = if result.batches.iter().all(|b| b.num_rows() == 0) {
            &empty[..]
        } else {
            &result.batches[..]
        };
        return Ok(arrow::util::pretty::pretty_format_batches(batches)?
            .to_string()
            .into_bytes());
    }
    let mut encoder = Encoder::new(format, &result.schema)?;
    let mut out = Vec::new();
    for batch in &result.batches {
        out.extend(encoder.batch(batch)?);
    }
    out.extend(encoder.finish()?);
    Ok(out)
}

/// Renders batches one at a time, for answers streamed as they are computed:
/// each call returns the bytes that batch adds, [`Encoder::finish`] the
/// closing bytes. Every format but [`OutputFormat::Table`] (which needs all
/// rows to align them).
pub struct Encoder {
    kind: Kind,
}

enum Kind {
    Json {
        writer: arrow::json::ArrayWriter<Vec<u8>>,
        rows: usize,
    },
    NdJson(arrow::json::LineDelimitedWriter<Vec<u8>>),
    Csv {
        schema: arrow::datatypes::SchemaRef,
        header_written: bool,
    },
    Arrow(arrow::ipc::writer::StreamWriter<Vec<u8>>),
}

impl Encoder {
    pub fn new(
        format: OutputFormat,
        schema: &arrow::datatypes::SchemaRef,
    ) -> Result<Self, QueryError> {
        let kind = match format {
            OutputFormat::Json => Kind::Json {
                writer: json_writer().build::<_, JsonArray>(Vec::new()),
                rows: 0,
            },
            OutputFormat::NdJson => {
                Kind::NdJson(json_writer().build::<_, LineDelimited>(Vec::new()))
            }
            OutputFormat::Csv => Kind::Csv {
                schema: Arc::clone(schema),
                header_written: false,
            },
            OutputFormat::Arrow => Kind::Arrow(arrow::ipc::writer::StreamWriter::try_new(
                Vec::new(),
                schema,
            )?),
            OutputFormat::Table => {
                return Err(QueryError::Internal(
                    "a text table cannot be streamed".into(),
                ));
            }
        };
        Ok(Self { kind })
    }

    /// The bytes `batch` adds (for Arrow, the schema comes with the first).
    pub fn batch(&mut self, batch: &RecordBatch) -> Result<Vec<u8>, QueryError> {
        Ok(match &mut self.kind {
            Kind::Json { writer, rows } => {
                *rows += batch.num_rows();
                writer.write(batch)?;
                std::mem::take(writer.get_mut())
            }
            Kind::NdJson(writer) => {
                writer.write(batch)?;
                std::mem::take(writer.get_mut())
            }
            Kind::Csv { header_written, .. } => {
                let mut writer = arrow::csv::WriterBuilder::new()
                    .with_header(!*header_written)
                    .build(Vec::new());
                writer.write(&flatten(batch)?)?;
                *header_written = true;
                writer.into_inner()
            }
            Kind::Arrow(writer) => {
                writer.write(batch)?;
                std::mem::take(writer.get_mut())
            }
        })
    }

    /// The closing bytes: `]` (or `[]`), a CSV header when no row came, the
    /// Arrow end-of-stream marker.
    pub fn finish(self) -> Result<Vec<u8>, QueryError> {
        Ok(match self.kind {
            Kind::Json { mut writer, rows } => {
                writer.finish()?;
                let rest = writer.into_inner();
                if rows == 0 && rest.is_empty() {
                    b"[]".to_vec()
                } else {
                    rest
                }
            }
            Kind::NdJson(mut writer) => {
                writer.finish()?;
                writer.into_inner()
            }
            Kind::Csv {
                schema,
                header_written,
            } => {
                if header_written {
                    Vec::new()
                } else {
                    let header: Vec<&str> =
                        schema.fields().iter().map(|f| f.name().as_str()).collect();
                    format!("{}\n", header.join(",")).into_bytes()
                }
            }
            Kind::Arrow(mut writer) => {
                writer.finish()?;
                writer.into_inner()?
            }
        })
    }
}

/// JSON rows keep every column: a null is `null`, not a missing key (clients
/// such as pandas then see every column, even one null in every row).
fn json_writer() -> arrow::json::WriterBuilder {
    arrow::json::WriterBuilder::new().with_explicit_nulls(true)
}

/// Each value of a nested column as JSON text (`{"k":"v"}`, `["a","b"]`),
/// `None` for a null.
pub fn json_cells(field: &Field, column: &ArrayRef) -> Result<Vec<Option<String>>, QueryError> {
    let one = RecordBatch::try_new(
        Arc::new(Schema::new(vec![field.clone()])),
        vec![Arc::clone(column)],
    )?;
    let mut writer = json_writer().build::<_, JsonArray>(Vec::new());
    writer.write(&one)?;
    writer.finish()?;
    let rows: Vec<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_slice(&writer.into_inner()).map_err(|e| {
            QueryError::Internal(format!("nested column {} as JSON: {e}", field.name()))
        })?;
    Ok(rows
        .into_iter()
        .map(|mut row| match row.remove(field.name()) {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(v.to_string()),
        })
        .collect())
}

/// CSV cannot hold maps and lists: write nested columns as JSON text.
fn flatten(batch: &RecordBatch) -> Result<RecordBatch, QueryError> {
    let nested = |t: &DataType| t.is_nested();
    if !batch
        .schema()
        .fields()
        .iter()
        .any(|f| nested(f.data_type()))
    {
        return Ok(batch.clone());
    }
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if !nested(field.data_type()) {
            fields.push(field.as_ref().clone());
            columns.push(Arc::clone(column));
            continue;
        }
        let mut text = StringBuilder::new();
        for cell in json_cells(field, column)? {
            text.append_option(cell);
        }
        fields.push(Field::new(field.name(), DataType::Utf8, true));
        columns.push(Arc::new(text.finish()));
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}
