//! The WAL record format: one span batch in Arrow IPC stream format.

use std::io::Cursor;

use arrow::array::RecordBatch;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use weft_schemas::schema::col;
use weft_schemas::shown::batch_to_current;
use weft_schemas::{SCHEMA_VERSION, SCHEMA_VERSION_KEY, ai_col, span_schema};

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

/// The columns each schema version added to the spans table.
pub(super) const ADDED: [(u32, &[&str]); 3] = [
    (4, &[col::ATTRIBUTE_TYPES]),
    (5, &[ai_col::kv_cache_prefix, ai_col::cost]),
    (
        6,
        &[
            ai_col::requested_tool_call_ids,
            ai_col::approval_action,
            ai_col::message_id,
            ai_col::messaging_operation,
            ai_col::messaging_destination,
        ],
    ),
];

/// Reads a WAL record written by [`encode_batch`], by this version or by an
/// older one (ids as hex in version 1, nanosecond times in version 2, no
/// `attribute_types` before version 4, no `kv_cache_prefix` or `cost` before
/// version 5, no evidence columns before version 6), which it converts.
pub(super) fn decode_batch(payload: &[u8]) -> Result<RecordBatch> {
    let mut reader = StreamReader::try_new(Cursor::new(payload), None)?;
    let schema = reader.schema();
    let current = schema.fields() == span_schema().fields();
    // Older records have the current columns but those added since, which
    // `batch_to_current` fills with nulls.
    let version = schema
        .metadata()
        .get(SCHEMA_VERSION_KEY)
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|v| (1..SCHEMA_VERSION).contains(v));
    let older = version.is_some_and(|version| {
        let added_since = |name: &str| {
            ADDED
                .iter()
                .any(|(v, names)| *v > version && names.contains(&name))
        };
        schema.fields().iter().map(|f| f.name()).eq(span_schema()
            .fields()
            .iter()
            .map(|f| f.name())
            .filter(|name| !added_since(name)))
    });
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
