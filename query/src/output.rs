//! Result batches rendered for people and programs: JSON rows, CSV, Arrow IPC, text table.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::engine::QueryResult;
use crate::error::QueryError;

/// Output formats of `/api/sql` and `weft sql`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// A JSON array of row objects.
    Json,
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
            OutputFormat::Csv => "text/csv",
            OutputFormat::Arrow => "application/vnd.apache.arrow.stream",
            OutputFormat::Table => "text/plain; charset=utf-8",
        }
    }
}

/// Renders a result in `format`.
pub fn render(result: &QueryResult, format: OutputFormat) -> Result<Vec<u8>, QueryError> {
    match format {
        OutputFormat::Json => {
            let mut writer = arrow::json::ArrayWriter::new(Vec::new());
            for batch in &result.batches {
                writer.write(batch)?;
            }
            writer.finish()?;
            let mut out = writer.into_inner();
            if out.is_empty() {
                out.extend_from_slice(b"[]");
            }
            Ok(out)
        }
        OutputFormat::Csv => {
            let mut writer = arrow::csv::Writer::new(Vec::new());
            if result.batches.is_empty() {
                let header: Vec<&str> = result
                    .schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect();
                return Ok(format!("{}\n", header.join(",")).into_bytes());
            }
            for batch in &result.batches {
                writer.write(&flatten(batch)?)?;
            }
            Ok(writer.into_inner())
        }
        OutputFormat::Arrow => {
            let mut out = Vec::new();
            let mut writer = arrow::ipc::writer::StreamWriter::try_new(&mut out, &result.schema)?;
            for batch in &result.batches {
                writer.write(batch)?;
            }
            writer.finish()?;
            drop(writer);
            Ok(out)
        }
        OutputFormat::Table => {
            if result.batches.iter().all(|b| b.num_rows() == 0) {
                let empty = RecordBatch::new_empty(Arc::clone(&result.schema));
                return Ok(arrow::util::pretty::pretty_format_batches(&[empty])?
                    .to_string()
                    .into_bytes());
            }
            Ok(arrow::util::pretty::pretty_format_batches(&result.batches)?
                .to_string()
                .into_bytes())
        }
    }
}

/// CSV cannot hold maps and lists: render nested columns as text.
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
    let options = FormatOptions::default();
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if !nested(field.data_type()) {
            fields.push(field.as_ref().clone());
            columns.push(Arc::clone(column));
            continue;
        }
        let formatter = ArrayFormatter::try_new(column.as_ref(), &options)?;
        let mut text = StringBuilder::new();
        for row in 0..column.len() {
            if column.is_null(row) {
                text.append_null();
            } else {
                text.append_value(formatter.value(row).to_string());
            }
        }
        fields.push(Field::new(field.name(), DataType::Utf8, true));
        columns.push(Arc::new(text.finish()));
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}
