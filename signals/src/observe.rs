//! Reads what the signals need from a batch of the span schema: ids, name,
//! times, status, the tenant and the AI columns. Other columns (attributes
//! but the tenant, events, links) are not read.

use arrow::record_batch::RecordBatch;
use weft_schemas::conventions::AI_COLUMNS;
use weft_schemas::schema::col;
use weft_schemas::span::StatusCode;
use weft_schemas::{AiFields, SpanId, SpanReader, TENANT_KEY, TraceId};

use crate::Error;

/// One acknowledged span, as the signals see it.
pub(crate) struct Seen {
    pub trace: TraceId,
    pub span: SpanId,
    pub parent: Option<SpanId>,
    pub name: String,
    pub start_ns: i64,
    pub end_ns: i64,
    pub error: bool,
    pub tenant: Option<String>,
    pub ai: AiFields,
}

impl Seen {
    pub fn duration_ns(&self) -> i64 {
        self.end_ns.saturating_sub(self.start_ns).max(0)
    }
}

const CORE: [&str; 8] = [
    col::TRACE_ID,
    col::SPAN_ID,
    col::PARENT_SPAN_ID,
    col::NAME,
    col::START_TIME,
    col::END_TIME,
    col::STATUS_CODE,
    col::ATTRIBUTES,
];

/// The rows of `batch` with valid ids.
pub(crate) fn read(batch: &RecordBatch) -> Result<Vec<Seen>, Error> {
    let schema = batch.schema();
    let wanted: Vec<usize> = CORE
        .iter()
        .copied()
        .chain(AI_COLUMNS.iter().map(|c| c.name))
        .filter_map(|name| schema.index_of(name).ok())
        .collect();
    let projected = batch
        .project(&wanted)
        .map_err(|e| Error::Internal(format!("span batch: {e}")))?;
    let reader = SpanReader::with_columns(&projected, &CORE[..6])
        .map_err(|e| Error::Internal(format!("span batch: {e}")))?;
    let mut rows = Vec::with_capacity(reader.len());
    for row in 0..reader.len() {
        let (Some(trace), Some(span)) = (reader.trace_id(row), reader.span_id(row)) else {
            continue;
        };
        let tenant = reader
            .attributes(row)
            .find(|(k, _)| *k == TENANT_KEY)
            .and_then(|(_, v)| v.map(str::to_owned));
        rows.push(Seen {
            trace,
            span,
            parent: reader.parent_span_id(row),
            name: reader.name(row).to_owned(),
            start_ns: reader.start_ns(row),
            end_ns: reader.end_ns(row),
            error: reader.status(row) == StatusCode::Error,
            tenant,
            ai: reader.ai(row),
        });
    }
    Ok(rows)
}
