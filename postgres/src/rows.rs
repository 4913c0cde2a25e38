//! Answers on the wire: the engine's batches as PostgreSQL rows (columns
//! PostgreSQL has no type for — maps, lists of maps — as JSON text), and
//! Weft's errors as PostgreSQL errors with the SQLSTATE a client acts on.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch, into_pg_type};
use futures::Stream;
use pgwire::api::portal::Format;
use pgwire::api::results::FieldInfo;
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;
use pgwire::types::format::FormatOptions;
use weft_query::{Answer, QueryError};

use crate::cancel::StatementCancel;

/// Whether a column goes on the wire as JSON text: PostgreSQL (and arrow-pg)
/// has no type for it.
fn as_json(data_type: &DataType) -> bool {
    into_pg_type(data_type).is_err()
}

/// The schema clients are told: [`as_json`] columns as text.
pub(crate) fn wire_schema(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| {
                if as_json(f.data_type()) {
                    Field::new(f.name(), DataType::Utf8, true)
                } else {
                    f.as_ref().clone()
                }
            })
            .collect::<Vec<_>>(),
    ))
}

/// `batch` with its [`as_json`] columns as JSON text.
fn wire_batch(batch: RecordBatch) -> Result<RecordBatch, QueryError> {
    if !batch
        .schema()
        .fields()
        .iter()
        .any(|f| as_json(f.data_type()))
    {
        return Ok(batch);
    }
    let schema = batch.schema();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        if !as_json(field.data_type()) {
            columns.push(Arc::clone(column));
            continue;
        }
        let mut text = StringBuilder::new();
        for cell in weft_query::output::json_cells(field, column)? {
            text.append_option(cell);
        }
        columns.push(Arc::new(text.finish()));
    }
    Ok(RecordBatch::try_new(wire_schema(&schema), columns)?)
}

/// The row description of `schema` in `format`.
pub(crate) fn fields(
    schema: &Schema,
    format: &Format,
    options: Arc<FormatOptions>,
) -> PgWireResult<Vec<FieldInfo>> {
    arrow_schema_to_pg_fields(&wire_schema(schema), format, Some(options))
}

type Rows = Box<dyn Iterator<Item = PgWireResult<DataRow>> + Send>;

struct Reading {
    answer: Answer,
    cancel: StatementCancel,
    fields: Arc<Vec<FieldInfo>>,
    rows: Option<Rows>,
    finished: bool,
}

/// The rows of `answer`, read as the client takes them (so a large answer
/// is never held whole). An answer cut short by a result cap ends with an
/// error saying so rather than looking complete.
pub(crate) fn stream(
    answer: Answer,
    fields: Arc<Vec<FieldInfo>>,
    cancel: StatementCancel,
) -> impl Stream<Item = PgWireResult<DataRow>> + Send + 'static {
    let reading = Reading {
        answer,
        cancel,
        fields,
        rows: None,
        finished: false,
    };
    futures::stream::unfold(reading, |mut r| async move {
        loop {
            if let Some(row) = r.rows.as_mut().and_then(Iterator::next) {
                return Some((row, r));
            }
            r.rows = None;
            if r.finished {
                return None;
            }
            let next = tokio::select! {
                next = r.answer.next_batch() => next,
                () = r.cancel.cancelled() => {
                    r.finished = true;
                    return Some((Err(cancelled()), r));
                }
            };
            match next {
                Ok(Some(batch)) => match wire_batch(batch) {
                    Ok(batch) => {
                        let rows: Rows = encode_recordbatch(Arc::clone(&r.fields), batch);
                        r.rows = Some(rows);
                    }
                    Err(e) => {
                        r.finished = true;
                        return Some((Err(error(e)), r));
                    }
                },
                Ok(None) => {
                    r.finished = true;
                    let cut = r.answer.truncated()?.to_owned();
                    return Some((Err(truncated(&cut)), r));
                }
                Err(e) => {
                    r.finished = true;
                    return Some((Err(error(e)), r));
                }
            }
        }
    })
}

pub(crate) fn user_error(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        code.to_owned(),
        message,
    )))
}

/// A statement ended by a cancel request (57014: query_canceled, with
/// PostgreSQL's own words).
pub(crate) fn cancelled() -> PgWireError {
    user_error(
        "57014",
        "canceling statement due to user request".to_owned(),
    )
}

/// The answer stopped at a result cap (54000: program_limit_exceeded).
fn truncated(why: &str) -> PgWireError {
    user_error(
        "54000",
        format!("the answer stopped at a result limit: {why}"),
    )
}

/// A query error as PostgreSQL reports it; the SQLSTATE class says whether
/// retrying can help (53: insufficient resources, 57: operator intervention).
pub(crate) fn error(e: QueryError) -> PgWireError {
    let code = match &e {
        QueryError::Sql(_) => "42000",
        QueryError::ReadOnly(_) => "25006",
        QueryError::BadId(_) => "22023",
        QueryError::NotFound(_) => "42704",
        QueryError::Denied(_) => "42501",
        QueryError::Timeout(_) => "57014",
        // serialization_failure: the client may retry the statement.
        QueryError::Changed(_) => "40001",
        // cannot_connect_now: a worker of a distributed query is gone; retry.
        QueryError::WorkerLost(_) => "57P03",
        QueryError::ResourcesExhausted(_) => "53000",
        QueryError::Storage(_) => "58030",
        QueryError::Encode(_) | QueryError::Internal(_) => "XX000",
    };
    user_error(code, e.to_string())
}

/// A DataFusion error met outside the engine (binding parameters).
pub(crate) fn datafusion_error(e: datafusion::error::DataFusionError) -> PgWireError {
    error(QueryError::from(e))
}
