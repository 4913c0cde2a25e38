//! OTLP/HTTP: `POST /v1/traces` and `/v1/logs` in protobuf or JSON, gzip or
//! not, chunked or not.
//!
//! `/v1/metrics` is answered too — SDKs send it unasked — with every item
//! rejected as a partial success, so clients neither retry nor log errors
//! forever (and `/v1/logs` the same way when there is no event store). Handlers return `Result<Response, Failure>`; `error_response`
//! (behind `impl IntoResponse for Failure`) is the one place errors become HTTP statuses.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
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
use tokio::sync::OwnedSemaphorePermit;

use weft_auth::{Auth, Caller, Role};

use super::{Edge, export_logs, export_traces};
use crate::config::IngestLimits;
use crate::error::{Error, ErrorKind};
use weft_otlp::ExportTraceServiceRequest;
use weft_otlp::cost::{self, Kind};
use weft_otlp::decode::{Encoding, Format, decode_message, decompress};
use weft_store::Store;

#[derive(Clone)]
struct AppState {
    store: Store,
    events: Option<Store>,
    limits: IngestLimits,
    auth: Arc<Auth>,
}

/// `google.rpc.Status`, the body of OTLP/HTTP error responses.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// The OTLP/HTTP router. Every request must carry a token with the ingest
/// role when tokens are configured; it is checked before the body is read.
/// TLS, when configured, is the listener's (`edge.tls`).
pub fn router(store: Store, limits: IngestLimits, edge: &Edge) -> Router {
    Router::new()
        .route("/v1/traces", post(traces))
        .route(
            "/v1/metrics",
            post(reject_all::<ExportMetricsServiceRequest>),
        )
        .route("/v1/logs", post(logs))
        .fallback(no_such_endpoint)
        .method_not_allowed_fallback(wrong_method)
        .with_state(AppState {
            store,
            events: edge.events.clone(),
            limits,
            auth: Arc::clone(&edge.auth),
        })
}

const ENDPOINTS: &str = "POST /v1/traces and /v1/logs (POST /v1/metrics is answered, not stored)";

async fn no_such_endpoint(method: Method, uri: Uri) -> Response {
    let e = Error::NoEndpoint {
        what: format!("no such endpoint: {method} {uri}; OTLP/HTTP here serves {ENDPOINTS}"),
    };
    error_response(&e, None)
}

async fn wrong_method(method: Method, uri: Uri) -> Response {
    let e = Error::NoEndpoint {
        what: format!("{uri} does not take {method}; OTLP/HTTP here serves {ENDPOINTS}"),
    };
    let mut response = error_response(&e, None);
    *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    response
}

/// Reads, bounds, decompresses and decodes a request body.
/// Reads, decompresses and decodes a request; before decoding, charges
/// what decoding will allocate (`otlp::cost`, for the message `kind`, or a
/// coarse bound for one of no schema here) to `budget`'s in-flight budget.
/// The charge is held until the request is done with it.
async fn read_request<M>(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    budget: (&Store, Option<Kind>),
) -> Result<(M, Format, OwnedSemaphorePermit), (Error, Option<Format>)>
where
    M: Message + Default + serde::de::DeserializeOwned,
{
    let header_str = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let format = Format::from_content_type(header_str(header::CONTENT_TYPE))
        .map_err(|e| (e.into(), None))?;
    let with_format = |e: Error| (e, Some(format));
    let encoding = Encoding::from_header(header_str(header::CONTENT_ENCODING))
        .map_err(|e| with_format(e.into()))?;
    let raw = read_body(body, limit).await.map_err(with_format)?;
    let body = decompress(raw, encoding, limit).map_err(|e| with_format(e.into()))?;
    let (store, kind) = budget;
    let cost = match (format, kind) {
        (Format::Json, _) => cost::json(&body),
        (Format::Protobuf, Some(kind)) => cost::protobuf(kind, &body),
        (Format::Protobuf, None) => cost::protobuf_unknown(&body),
    };
    let charge = store.charge(cost).map_err(|e| with_format(e.into()))?;
    let message = decode_message::<M>(&body, format).map_err(|e| with_format(e.into()))?;
    Ok((message, format, charge))
}

/// What of a refused body is still read, and thrown away, past the limit.
const DRAIN_BYTES: usize = 64 * 1024 * 1024;

/// The body, at most `limit` bytes of it. A longer one is `TooLarge`, but
/// only once the rest of it has been read and dropped (up to
/// [`DRAIN_BYTES`], never held): a client still sending when the answer and
/// the close came would lose the 413 to a broken pipe. A body that cannot
/// be read (the client went away mid-body) is malformed.
async fn read_body(mut body: Body, limit: usize) -> Result<Bytes, Error> {
    use http_body_util::BodyExt;
    let mut kept: Vec<u8> = Vec::new();
    let mut over = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| weft_otlp::Error::Malformed {
            format: "http body",
            reason: e.to_string(),
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if over == 0 && kept.len() + data.len() <= limit {
            kept.extend_from_slice(&data);
            continue;
        }
        if over == 0 {
            kept = Vec::new();
        }
        over = over.saturating_add(data.len());
        if over > DRAIN_BYTES {
            break;
        }
    }
    if over > 0 {
        return Err(weft_otlp::Error::TooLarge { limit }.into());
    }
    Ok(Bytes::from(kept))
}

async fn traces(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Failure> {
    let caller = app.authorize(&headers)?;
    let limit = app.limits.max_http_body_bytes;
    let budget = (&app.store, Some(Kind::TracesRequest));
    let (request, format, decoded) =
        read_request::<ExportTraceServiceRequest>(&headers, body, limit, budget)
            .await
            .map_err(|(e, format)| app.failed(e, format))?;
    let response = export_traces(
        &app.store,
        &app.limits.attributes,
        request,
        decoded,
        &caller,
    )
    .await
    .map_err(|e| app.failed(e, Some(format)))?;
    let partial = response
        .partial_success
        .as_ref()
        .map(|p| (p.rejected_spans, p.error_message.as_str()));
    Ok(exported(format, &response, "rejectedSpans", partial))
}

/// An export's answer: the response message in protobuf, or in OTLP/JSON
/// with the count of rejected items under `field` (as a string, the OTLP/JSON
/// rule for 64-bit integers).
fn exported(
    format: Format,
    response: &impl Message,
    field: &str,
    partial: Option<(i64, &str)>,
) -> Response {
    match format {
        Format::Protobuf => ok(format, response.encode_to_vec()),
        Format::Json => {
            let body = match partial {
                Some((rejected, message)) => json!({"partialSuccess": {
                    field: rejected.to_string(),
                    "errorMessage": message,
                }}),
                None => json!({}),
            };
            ok(format, body.to_string().into_bytes())
        }
    }
}

/// `/v1/logs`: log records of spans (GenAI events) go to the event store.
async fn logs(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Failure> {
    let Some(events) = app.events.clone() else {
        return reject_all::<ExportLogsServiceRequest>(State(app), headers, body).await;
    };
    let caller = app.authorize(&headers)?;
    let limit = app.limits.max_http_body_bytes;
    let budget = (&events, Some(Kind::LogsRequest));
    let (request, format, decoded) =
        read_request::<ExportLogsServiceRequest>(&headers, body, limit, budget)
            .await
            .map_err(|(e, format)| app.failed(e, format))?;
    let response = export_logs(&events, &app.limits.attributes, request, decoded, &caller)
        .await
        .map_err(|e| app.failed(e, Some(format)))?;
    let partial = response
        .partial_success
        .as_ref()
        .map(|p| (p.rejected_log_records, p.error_message.as_str()));
    Ok(exported(format, &response, "rejectedLogRecords", partial))
}

const TRACES_ONLY: &str =
    "weft stores traces and the log records of spans; send metrics to another backend";

/// An OTLP signal Weft does not store: every item is rejected as a partial
/// success, so clients neither retry nor log errors forever.
trait NotStored: Message + Default + serde::de::DeserializeOwned {
    /// The `partialSuccess` field counting rejected items in OTLP/JSON.
    const JSON_FIELD: &'static str;
    fn items(&self) -> i64;
    fn protobuf_response(rejected: i64) -> Vec<u8>;
}

impl NotStored for ExportMetricsServiceRequest {
    const JSON_FIELD: &'static str = "rejectedDataPoints";

    fn items(&self) -> i64 {
        self.resource_metrics
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

    fn protobuf_response(rejected: i64) -> Vec<u8> {
        ExportMetricsServiceResponse {
            partial_success: (rejected > 0).then(|| ExportMetricsPartialSuccess {
                rejected_data_points: rejected,
                error_message: TRACES_ONLY.to_owned(),
            }),
        }
        .encode_to_vec()
    }
}

impl NotStored for ExportLogsServiceRequest {
    const JSON_FIELD: &'static str = "rejectedLogRecords";

    fn items(&self) -> i64 {
        self.resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len() as i64)
            .sum()
    }

    fn protobuf_response(rejected: i64) -> Vec<u8> {
        ExportLogsServiceResponse {
            partial_success: (rejected > 0).then(|| ExportLogsPartialSuccess {
                rejected_log_records: rejected,
                error_message: TRACES_ONLY.to_owned(),
            }),
        }
        .encode_to_vec()
    }
}

async fn reject_all<M: NotStored>(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Failure> {
    app.authorize(&headers)?;
    let limit = app.limits.max_http_body_bytes;
    let (request, format, decoded) = read_request::<M>(&headers, body, limit, (&app.store, None))
        .await
        .map_err(|(e, format)| app.failed(e, format))?;
    let rejected = request.items();
    drop((request, decoded));
    let body = match format {
        Format::Protobuf => M::protobuf_response(rejected),
        Format::Json if rejected == 0 => b"{}".to_vec(),
        Format::Json => json!({"partialSuccess": {
            M::JSON_FIELD: rejected.to_string(),
            "errorMessage": TRACES_ONLY,
        }})
        .to_string()
        .into_bytes(),
    };
    Ok(ok(format, body))
}

fn ok(format: Format, body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, format.content_type())], body).into_response()
}

/// A failed request: the error, and the format the answer is written in
/// (the request's, when it was recognised).
struct Failure {
    error: Box<Error>,
    format: Option<Format>,
}

impl AppState {
    /// The caller, if its token allows ingest; the refusal is written in
    /// the request's format when its content type names one.
    fn authorize(&self, headers: &HeaderMap) -> Result<Caller, Failure> {
        self.auth
            .check_headers(headers, Role::Ingest)
            .map_err(|denied| {
                let format = headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| Format::from_content_type(Some(v)).ok());
                self.failed(Error::Denied(denied), format)
            })
    }

    /// Counts the failure and keeps what the answer needs.
    fn failed(&self, error: Error, format: Option<Format>) -> Failure {
        self.store
            .metrics()
            .requests_failed
            .fetch_add(1, Ordering::Relaxed);
        Failure {
            error: Box::new(error),
            format,
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        error_response(&self.error, self.format)
    }
}

/// The one place collector errors become HTTP statuses, by [`ErrorKind`]: the
/// client's mistakes are 400 (413 for oversize, 415 for unsupported types or
/// encodings), not retryable; overload and shutdown are 503 with `Retry-After`
/// (retryable); our bugs are 500. The body is a `google.rpc.Status` in the
/// request's format.
fn error_response(e: &Error, format: Option<Format>) -> Response {
    let status = match (e.kind(), e) {
        (ErrorKind::Invalid, e) if e.is_too_large() => StatusCode::PAYLOAD_TOO_LARGE,
        (ErrorKind::Invalid, e) if e.is_unsupported() => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        (ErrorKind::Invalid, _) => StatusCode::BAD_REQUEST,
        (ErrorKind::NotFound, _) => StatusCode::NOT_FOUND,
        (ErrorKind::Overloaded | ErrorKind::ShuttingDown, _) => StatusCode::SERVICE_UNAVAILABLE,
        (ErrorKind::Internal, _) => StatusCode::INTERNAL_SERVER_ERROR,
        (ErrorKind::Unauthenticated, _) => StatusCode::UNAUTHORIZED,
        (ErrorKind::Forbidden, _) => StatusCode::FORBIDDEN,
    };
    if e.kind() == ErrorKind::Internal {
        tracing::error!(error = %e, "ingest failed");
    }
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
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

fn grpc_code(e: &Error) -> i32 {
    super::status::to_status(e).code() as i32
}
