//! The WAL record format: one span batch in Arrow IPC stream format.

use std::io::Cursor;

use arrow::array::RecordBatch;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use weft_schemas::schema::col;
use weft_schemas::shown::batch_to_current;
use weft_schemas::{SCHEMA_VERSION_KEY, span_schema};

use crate::error::{Error, Result};

/// One WAL record: a span batch in Arrow IPC stream format.
pub(super) fn encode_batch(batch: &RecordBatch) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut writer = StreamWriter::try_new(&mut out, &batch.schema())?;
    writer.write(batch)?;
    writer.finish()?;
    drop(writer);
    Ok(out)
}

/// Reads a WAL record written by [`encode_batch`], by this version or by an
/// older one (ids as hex in version 1, nanosecond times in version 2, no
/// `attribute_types` before version 4), which it converts.
pub(super) fn decode_batch(payload: &[u8]) -> Result<RecordBatch> {
    let mut reader = StreamReader::try_new(Cursor::new(payload), None)?;
    let schema = reader.schema();
    let current = schema.fields() == span_schema().fields();
    // Older records have the current columns up to those added since, which
    // `batch_to_current` fills with nulls.
    let older = matches!(
        schema
            .metadata()
            .get(SCHEMA_VERSION_KEY)
            .map(String::as_str),
        Some("1" | "2" | "3")
    ) && schema.fields().iter().map(|f| f.name()).eq(span_schema()
        .fields()
        .iter()
        .map(|f| f.name())
        .filter(|name| name.as_str() != col::ATTRIBUTE_TYPES));
    if !current && !older {
        return Err(Error::Corrupt(
            "wal record has a different span schema (written by another weft version)".into(),
        ));
    }
    let batch = match reader.next() {
        Some(batch) => batch?,
        None => return Err(Error::Corrupt("wal record holds no batch".into())),
    };
    if current {
        Ok(batch.with_schema(span_schema())?)
    } else {
        Ok(batch_to_current(&batch, &span_schema())?)
    }
}
