//! The HTTP query API. [`error_response`] is the one place query errors become statuses.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use weft_collector::Metrics;
use weft_collector::otlp::export::traces_data_json;
use weft_schemas::TraceId;

use crate::engine::QueryEngine;
use crate::error::QueryError;
use crate::output::{OutputFormat, render};

#[derive(Clone)]
struct ApiState {
    engine: Arc<QueryEngine>,
    metrics: Arc<Metrics>,
}

/// `/api/sql`, `/api/traces/{trace_id}`, `/healthz` and `/metrics`.
pub fn router(engine: Arc<QueryEngine>, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/api/sql", post(sql))
        .route("/api/traces/{trace_id}", get(trace))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(prometheus))
        .with_state(ApiState { engine, metrics })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlBody {
    sql: String,
}

/// The SQL text of a request: JSON `{"sql": "..."}` or the raw body.
fn sql_text(headers: &HeaderMap, body: &[u8]) -> Result<String, QueryError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let text = std::str::from_utf8(body)
        .map_err(|_| QueryError::Sql("request body is not utf-8".into()))?;
    if is_json || text.trim_start().starts_with('{') {
        let parsed: SqlBody = serde_json::from_str(text)
            .map_err(|e| QueryError::Sql(format!("expected {{\"sql\": \"...\"}}: {e}")))?;
        return Ok(parsed.sql);
    }
    Ok(text.to_owned())
}

async fn sql(State(api): State<ApiState>, headers: HeaderMap, body: Bytes) -> Response {
    let format =
        OutputFormat::from_accept(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let result = async {
        let text = sql_text(&headers, &body)?;
        if text.trim().is_empty() {
            return Err(QueryError::Sql(
                "empty query: send SQL such as SELECT count(*) FROM spans".into(),
            ));
        }
        let result = api.engine.sql(&text).await?;
        render(&result, format)
    }
    .await;
    match result {
        Ok(bytes) => ([(header::CONTENT_TYPE, format.content_type())], bytes).into_response(),
        Err(e) => error_response(&e),
    }
}

async fn trace(State(api): State<ApiState>, Path(trace_id): Path<String>) -> Response {
    let result = async {
        let id: TraceId = trace_id.parse()?;
        let batches = api.engine.trace(&id).await?;
        if batches.iter().all(|b| b.num_rows() == 0) {
            return Ok(None);
        }
        Ok::<_, QueryError>(Some(traces_data_json(&batches)?))
    }
    .await;
    match result {
        Ok(Some(json)) => (
            [(header::CONTENT_TYPE, "application/json")],
            json.to_string(),
        )
            .into_response(),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "application/json")],
            json!({"error": format!("trace {trace_id} not found")}).to_string(),
        )
            .into_response(),
        Err(e) => error_response(&e),
    }
}

async fn prometheus(State(api): State<ApiState>) -> Response {
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        api.metrics.render_prometheus(now),
    )
        .into_response()
}

/// Query errors as HTTP: the user's mistakes are 400, our faults 500.
pub fn error_response(e: &QueryError) -> Response {
    let status = match e {
        QueryError::Sql(_) | QueryError::ReadOnly(_) | QueryError::BadId(_) => {
            StatusCode::BAD_REQUEST
        }
        QueryError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
        QueryError::ResourcesExhausted(_) => StatusCode::PAYLOAD_TOO_LARGE,
        QueryError::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
        QueryError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if !e.is_user_error() {
        tracing::error!(error = %e, "query failed");
    }
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"error": e.to_string()}).to_string(),
    )
        .into_response()
}
