//! The WAL record format: one span batch in Arrow IPC stream format.

use std::io::Cursor;

use arrow::array::RecordBatch;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use weft_schemas::span_schema;

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

/// Reads a WAL record written by [`encode_batch`].
pub(super) fn decode_batch(payload: &[u8]) -> Result<RecordBatch> {
    let mut reader = StreamReader::try_new(Cursor::new(payload), None)?;
    if reader.schema().fields() != span_schema().fields() {
        return Err(Error::Corrupt(
            "wal record has a different span schema (written by another weft version)".into(),
        ));
    }
    match reader.next() {
        Some(batch) => Ok(batch?.with_schema(span_schema())?),
        None => Err(Error::Corrupt("wal record holds no batch".into())),
    }
}
