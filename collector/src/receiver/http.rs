//! OTLP/HTTP: `POST /v1/traces` in protobuf or JSON, gzip or not, chunked or not.
//!
//! `/v1/metrics` and `/v1/logs` are answered too — SDKs send them unasked — with
//! every item rejected as a partial success, so clients neither retry nor log
//! errors forever. [`error_response`] is the one place errors become HTTP statuses.

use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use prost::Message;
use serde_json::json;

use super::export_traces;
use crate::config::IngestLimits;
use crate::error::Error;
use crate::otlp::ExportTraceServiceRequest;
use crate::otlp::decode::{Encoding, Format, decode_message, decompress};
use crate::store::Store;

#[derive(Clone)]
struct AppState {
    store: Store,
    limits: IngestLimits,
}

/// `google.rpc.Status`, the body of OTLP/HTTP error responses.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// The OTLP/HTTP router.
pub fn router(store: Store, limits: IngestLimits) -> Router {
    Router::new()
        .route("/v1/traces", post(traces))
        .route("/v1/metrics", post(metrics))
        .route("/v1/logs", post(logs))
        .with_state(AppState { store, limits })
}

/// Reads, bounds, decompresses and decodes a request body.
async fn read_request<M>(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<(M, Format), (Error, Option<Format>)>
where
    M: Message + Default + serde::de::DeserializeOwned,
{
    let header_str = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let format =
        Format::from_content_type(header_str(header::CONTENT_TYPE)).map_err(|e| (e, None))?;
    let with_format = |e| (e, Some(format));
    let encoding =
        Encoding::from_header(header_str(header::CONTENT_ENCODING)).map_err(with_format)?;
    let raw = axum::body::to_bytes(body, limit)
        .await
        .map_err(|e| with_format(body_error(e, limit)))?;
    let body = decompress(raw, encoding, limit).map_err(with_format)?;
    let message = decode_message::<M>(&body, format).map_err(with_format)?;
    Ok((message, format))
}

/// Over the limit, or the body could not be read (the client went away mid-body).
fn body_error(e: axum::Error, limit: usize) -> Error {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return Error::TooLarge { limit };
        }
        source = err.source();
    }
    Error::Malformed {
        format: "http body",
        reason: e.to_string(),
    }
}

async fn traces(State(app): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let (request, format) = match read_request::<ExportTraceServiceRequest>(
        &headers,
        body,
        app.limits.max_http_body_bytes,
    )
    .await
    {
        Ok(r) => r,
        Err((e, format)) => return fail(&app, &e, format),
    };
    match export_traces(&app.store, &request).await {
        Ok(response) => match format {
            Format::Protobuf => ok(format, response.encode_to_vec()),
            Format::Json => {
                let body = match response.partial_success {
                    Some(p) => json!({"partialSuccess": {
                        "rejectedSpans": p.rejected_spans.to_string(),
                        "errorMessage": p.error_message,
                    }}),
                    None => json!({}),
                };
                ok(format, body.to_string().into_bytes())
            }
        },
        Err(e) => fail(&app, &e, Some(format)),
    }
}

const TRACES_ONLY: &str = "weft stores traces only; send metrics and logs to another backend";

async fn metrics(State(app): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let (request, format) = match read_request::<ExportMetricsServiceRequest>(
        &headers,
        body,
        app.limits.max_http_body_bytes,
    )
    .await
    {
        Ok(r) => r,
        Err((e, format)) => return fail(&app, &e, format),
    };
    let points = count_data_points(&request);
    let partial = (points > 0).then(|| ExportMetricsPartialSuccess {
        rejected_data_points: points,
        error_message: TRACES_ONLY.to_owned(),
    });
    match format {
        Format::Protobuf => ok(
            format,
            ExportMetricsServiceResponse {
                partial_success: partial,
            }
            .encode_to_vec(),
        ),
        Format::Json => ok(
            format,
            partial_json("rejectedDataPoints", points).into_bytes(),
        ),
    }
}

async fn logs(State(app): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let (request, format) = match read_request::<ExportLogsServiceRequest>(
        &headers,
        body,
        app.limits.max_http_body_bytes,
    )
    .await
    {
        Ok(r) => r,
        Err((e, format)) => return fail(&app, &e, format),
    };
    let records: i64 = request
        .resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len() as i64)
        .sum();
    let partial = (records > 0).then(|| ExportLogsPartialSuccess {
        rejected_log_records: records,
        error_message: TRACES_ONLY.to_owned(),
    });
    match format {
        Format::Protobuf => ok(
            format,
            ExportLogsServiceResponse {
                partial_success: partial,
            }
            .encode_to_vec(),
        ),
        Format::Json => ok(
            format,
            partial_json("rejectedLogRecords", records).into_bytes(),
        ),
    }
}

fn partial_json(field: &str, rejected: i64) -> String {
    if rejected == 0 {
        return "{}".to_owned();
    }
    json!({"partialSuccess": {field: rejected.to_string(), "errorMessage": TRACES_ONLY}})
        .to_string()
}

fn count_data_points(request: &ExportMetricsServiceRequest) -> i64 {
    request
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| match &m.data {
            Some(Data::Gauge(g)) => g.data_points.len(),
            Some(Data::Sum(s)) => s.data_points.len(),
            Some(Data::Histogram(h)) => h.data_points.len(),
            Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
            Some(Data::Summary(s)) => s.data_points.len(),
            None => 0,
        } as i64)
        .sum()
}

fn ok(format: Format, body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, format.content_type())], body).into_response()
}

fn fail(app: &AppState, e: &Error, format: Option<Format>) -> Response {
    app.store
        .metrics()
        .requests_failed
        .fetch_add(1, Ordering::Relaxed);
    error_response(e, format)
}

/// The one place collector errors become HTTP statuses: 400 for malformed
/// payloads, 413 for oversize, 415 for unsupported types or encodings (all not
/// retryable), 503 with `Retry-After` when storage is unavailable (retryable),
/// 500 for our bugs. The body is a `google.rpc.Status` in the request's format.
pub fn error_response(e: &Error, format: Option<Format>) -> Response {
    let status = match e {
        Error::Malformed { .. } => StatusCode::BAD_REQUEST,
        Error::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        Error::Unsupported { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Error::Io { .. } | Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        Error::Arrow(_) | Error::Parquet(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let rpc = RpcStatus {
        code: grpc_code(e),
        message: e.to_string(),
    };
    let format = format.unwrap_or(Format::Json);
    let body = match format {
        Format::Protobuf => Bytes::from(rpc.encode_to_vec()),
        Format::Json => Bytes::from(json!({"code": rpc.code, "message": rpc.message}).to_string()),
    };
    let mut response = (
        status,
        [(header::CONTENT_TYPE, format.content_type())],
        body,
    )
        .into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

fn grpc_code(e: &Error) -> i32 {
    super::grpc::to_status(e).code() as i32
}
