//! What every HTTP route shares, below the routes themselves (`api`,
//! `tempo`, `signals`): the state they are served with, query-string
//! parameters that fail as JSON, response bodies, times in parameters.

use std::sync::Arc;

use arrow::array::RecordBatch;
use axum::extract::Query;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use weft_auth::Caller;
use weft_schemas::TraceId;
use weft_store::Metrics;

use crate::engine::QueryEngine;
use crate::error::QueryError;
use crate::output::{OutputFormat, render};

#[derive(Clone)]
pub(crate) struct ApiState {
    pub(crate) engine: Arc<QueryEngine>,
    pub(crate) metrics: Arc<Metrics>,
    /// The event store's counters, when this server ingests events.
    pub(crate) events_metrics: Option<Arc<Metrics>>,
}

impl ApiState {
    /// The engine that shows the caller what it may see: its tenant's spans
    /// only, when its token has a tenant.
    pub(crate) async fn engine(&self, caller: &Caller) -> Result<Arc<QueryEngine>, QueryError> {
        self.engine.for_tenant(caller.tenant()).await
    }
}

/// A trace's span rows and its event rows (the two tables read side by
/// side); not found when it has no spans.
pub(crate) async fn trace_rows(
    api: &ApiState,
    caller: &Caller,
    trace_id: &str,
) -> Result<(Vec<RecordBatch>, Vec<RecordBatch>), QueryError> {
    let id: TraceId = trace_id.parse()?;
    let engine = api.engine(caller).await?;
    let (batches, events) = tokio::try_join!(engine.trace(&id), engine.trace_events(&id))?;
    if batches.iter().all(|b| b.num_rows() == 0) {
        return Err(QueryError::trace_not_found(trace_id));
    }
    Ok((batches, events))
}

/// Query-string parameters whose rejection is a JSON error like every other
/// (axum's own is plain text).
pub(crate) struct Params<T>(pub(crate) T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequestParts<S>
    for Params<T>
{
    type Rejection = QueryError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, QueryError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(params)| Params(params))
            .map_err(|rejection| {
                QueryError::Sql(format!("bad query parameters: {}", rejection.body_text()))
            })
    }
}

/// Whether the `Accept` header asks for protobuf (`application/protobuf`,
/// as Grafana sends it, or `application/x-protobuf`).
pub(crate) fn wants_protobuf(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/protobuf") || a.contains("application/x-protobuf"))
}

pub(crate) fn protobuf_response(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/x-protobuf")], body).into_response()
}

pub(crate) fn json_response(body: impl Into<axum::body::Body>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body.into()).into_response()
}

/// `15m`, `6h`, `7d`, `30s` → nanoseconds; or an RFC 3339 timestamp → Unix ns.
pub(crate) fn parse_time(text: &str, now_ns: i64) -> Result<i64, QueryError> {
    let bad = || {
        QueryError::Sql(format!(
            "{text:?} is neither an RFC 3339 time nor a duration like 15m, 6h or 7d"
        ))
    };
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return t.timestamp_nanos_opt().ok_or_else(bad);
    }
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
    let n: i64 = number.parse().map_err(|_| bad())?;
    let unit_ns: i64 = match unit {
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "d" => 86_400_000_000_000,
        _ => return Err(bad()),
    };
    Ok(now_ns - n.saturating_mul(unit_ns))
}

/// Batches as a JSON array of row objects (`[]` when there are none).
pub(crate) fn json_rows(
    batches: Vec<arrow::record_batch::RecordBatch>,
) -> Result<Vec<u8>, QueryError> {
    let schema = batches
        .first()
        .map(|b| b.schema())
        .unwrap_or_else(|| Arc::new(arrow::datatypes::Schema::empty()));
    render(
        &crate::engine::QueryResult {
            schema,
            batches,
            truncated: None,
        },
        OutputFormat::Json,
    )
}
