//! The HTTP query API. Handlers return `Result<_, QueryError>`; the
//! `IntoResponse` impl of [`QueryError`] is the one place query errors become statuses.

use std::sync::Arc;

use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use weft_auth::{Auth, Caller, Role};
use weft_otlp::{traces_data_json_with_events, traces_data_protobuf};
use weft_schemas::TraceId;
use weft_store::Metrics;

use crate::engine::QueryEngine;
use crate::error::{ErrorKind, QueryError};
use crate::http::{
    ApiState, Params, json_response, json_rows, parse_time, protobuf_response, trace_rows,
    wants_protobuf,
};
use crate::lineage::{Direction, Reach};
use crate::lineage_cache::Freshness;
use crate::output::OutputFormat;
use crate::workflows::{ConversationQuery, MAX_WORKFLOWS, WorkflowQuery};
use weft_lineage::render::{DEFAULT_FOLD, dot, summary_text, text_tree};
use weft_lineage::{LineagePage, PAGE_NODES};

/// `/api/sql`, `/api/traces/{trace_id}`, `/api/lineage/{trace_id}[/dot|/tree]`,
/// `/api/workflows`, `/api/graph`, `/api/signals`, `/healthz` and `/metrics`. Everything but
/// `/healthz` needs a token with the query role when tokens are configured.
/// `/metrics` shows `metrics` (the span store's) and, labelled
/// `store="events"`, `events_metrics`.
pub fn router(
    engine: Arc<QueryEngine>,
    metrics: Arc<Metrics>,
    events_metrics: Option<Arc<Metrics>>,
    auth: Arc<Auth>,
) -> Router {
    let open = Router::new().route("/healthz", get(|| async { "ok\n" }));
    Router::new()
        .route("/api/sql", post(sql))
        .route("/api/traces/{trace_id}", get(trace))
        .route("/api/lineage/diff", get(lineage_diff))
        .route("/api/lineage/{trace_id}", get(lineage_json))
        .route("/api/lineage/{trace_id}/dot", get(lineage_dot))
        .route("/api/lineage/{trace_id}/tree", get(lineage_tree))
        .route("/api/workflows", get(workflows))
        .route("/api/graph", get(graph))
        .route("/metrics", get(prometheus))
        .merge(crate::signals::routes())
        .nest("/tempo", crate::tempo::routes())
        .fallback(no_such_endpoint)
        .method_not_allowed_fallback(wrong_method)
        .with_state(ApiState {
            engine,
            metrics,
            events_metrics,
        })
        .layer(axum::middleware::from_fn_with_state(auth, authorize))
        .merge(open)
}

/// Lets a request through with its [`Caller`] in its extensions, if its
/// token allows queries.
async fn authorize(
    State(auth): State<Arc<Auth>>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match auth.check_headers(request.headers(), Role::Query) {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(denied) => QueryError::Denied(denied).into_response(),
    }
}

/// The endpoints, as error messages name them.
const ENDPOINTS: &str = "POST /api/sql, GET /api/traces/{trace_id}, \
    GET /api/lineage/{trace_id}[/dot|/tree], GET /api/lineage/diff?a=&b=, GET /api/workflows[?conversation=], GET /api/graph, GET /api/signals[/stream|/workflows], \
    GET /api/route, GET /healthz, GET /metrics, and Grafana Tempo's API under /tempo";

async fn no_such_endpoint(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    error_json(
        StatusCode::NOT_FOUND,
        format!("no such endpoint: {method} {uri}; the query API serves {ENDPOINTS}"),
    )
}

async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    error_json(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{uri} does not take {method}; the query API serves {ENDPOINTS}"),
    )
}

fn error_json(status: StatusCode, message: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({ "error": message }).to_string(),
    )
        .into_response()
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

/// The header (or trailer) that says an answer was cut short, and why.
pub use crate::streamed::TRUNCATED;

async fn sql(
    State(api): State<ApiState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, QueryError> {
    let format =
        OutputFormat::from_accept(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let text = sql_text(&headers, &body)?;
    if text.trim().is_empty() {
        return Err(QueryError::Sql(
            "empty query: send SQL such as SELECT count(*) FROM spans".into(),
        ));
    }
    let answer = api.engine(&caller).await?.sql_stream(&text).await?;
    crate::streamed::respond(answer, format).await
}

/// A trace as OTLP `TracesData`: JSON, or protobuf when the `Accept`
/// header asks for `application/protobuf` (or `application/x-protobuf`).
async fn trace(
    State(api): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(trace_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, QueryError> {
    let (batches, events) = trace_rows(&api, &caller, &trace_id).await?;
    if wants_protobuf(&headers) {
        return Ok(protobuf_response(traces_data_protobuf(&batches, &events)?));
    }
    Ok(json_response(
        traces_data_json_with_events(&batches, &events)?.to_string(),
    ))
}

async fn prometheus(State(api): State<ApiState>, Extension(caller): Extension<Caller>) -> Response {
    if let (Some(_), Some(name)) = (caller.tenant(), caller.name()) {
        // The counters are every tenant's together.
        return QueryError::Denied(weft_auth::Denied::TenantScoped {
            name: name.to_owned(),
            what: "/metrics",
        })
        .into_response();
    }
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
    let mut text = api
        .metrics
        .render_prometheus(now, api.events_metrics.as_deref());
    if let Some(signals) = api.engine.signals() {
        match signals.prometheus() {
            Ok(gauges) => text.push_str(&gauges),
            Err(e) => return QueryError::from(e).into_response(),
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// Query parameters of the lineage endpoints.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LineageParams {
    /// Link hops across traces to follow.
    depth: Option<u32>,
    /// `both` (default), `upstream` or `downstream`.
    direction: Option<String>,
    /// Paging of `nodes` in the JSON answer.
    offset: Option<usize>,
    limit: Option<usize>,
    /// In `/tree`: children of one name shown per parent before folding (0: all).
    fold: Option<usize>,
}

impl LineageParams {
    fn reach(&self) -> Result<Reach, QueryError> {
        let direction = match self.direction.as_deref() {
            None => Direction::Both,
            Some(d) => Direction::parse(d).ok_or_else(|| {
                QueryError::Sql(format!(
                    "direction must be both, upstream or downstream, not {d:?}"
                ))
            })?,
        };
        Ok(Reach {
            direction,
            max_depth: self.depth,
            ..Reach::default()
        })
    }
}

async fn run_lineage(
    api: &ApiState,
    caller: &Caller,
    trace_id: &str,
    params: &LineageParams,
) -> Result<Arc<crate::lineage::LineageResult>, QueryError> {
    let id: TraceId = trace_id.parse()?;
    // A page past the first continues a reading: it comes from the same
    // reconstruction as the first page, so the pages agree.
    let freshness = if params.offset.unwrap_or(0) > 0 {
        Freshness::NextPage
    } else {
        Freshness::Current
    };
    api.engine(caller)
        .await?
        .lineage_reading(&id, params.reach()?, freshness)
        .await
}

async fn lineage_json(
    State(api): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(trace_id): Path<String>,
    Params(params): Params<LineageParams>,
) -> Result<Response, QueryError> {
    let result = run_lineage(&api, &caller, &trace_id, &params).await?;
    let page = LineagePage::of(
        &result.lineage,
        trace_id.parse()?,
        result.truncated,
        params.offset.unwrap_or(0),
        params.limit.unwrap_or(PAGE_NODES),
    );
    let body = serde_json::to_vec(&page)
        .map_err(|e| QueryError::Internal(format!("lineage as JSON: {e}")))?;
    Ok(json_response(body))
}

async fn lineage_dot(
    State(api): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(trace_id): Path<String>,
    Params(params): Params<LineageParams>,
) -> Result<Response, QueryError> {
    let result = run_lineage(&api, &caller, &trace_id, &params).await?;
    Ok((
        [(header::CONTENT_TYPE, "text/vnd.graphviz")],
        dot(&result.lineage),
    )
        .into_response())
}

async fn lineage_tree(
    State(api): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(trace_id): Path<String>,
    Params(params): Params<LineageParams>,
) -> Result<Response, QueryError> {
    let result = run_lineage(&api, &caller, &trace_id, &params).await?;
    let mut text = text_tree(&result.lineage, params.fold.unwrap_or(DEFAULT_FOLD));
    if result.truncated {
        text.push_str("(truncated: more linked traces exist past the depth limit)\n");
    }
    text.push('\n');
    text.push_str(&summary_text(&result.lineage));
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DiffParams {
    /// Any trace of each run.
    a: String,
    b: String,
    /// `json` (default) or `text`.
    format: Option<String>,
}

/// What changed between two runs of a workflow (`weft_lineage::RunDiff`).
async fn lineage_diff(
    State(api): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Params(params): Params<DiffParams>,
) -> Result<Response, QueryError> {
    let (a, b): (TraceId, TraceId) = (params.a.parse()?, params.b.parse()?);
    let diff = api.engine(&caller).await?.lineage_diff(&a, &b).await?;
    match params.format.as_deref() {
        None | Some("json") => {
            Ok(json_response(serde_json::to_vec(&diff).map_err(|e| {
                QueryError::Internal(format!("diff as JSON: {e}"))
            })?))
        }
        Some("text") => Ok((
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            weft_lineage::diff::diff_text(&diff),
        )
            .into_response()),
        Some(other) => Err(QueryError::Sql(format!(
            "format must be json or text, not {other:?}"
        ))),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GraphParams {
    /// RFC 3339 time or a duration back from now (`15m`, `6h`, `7d`); default 1h.
    since: Option<String>,
    until: Option<String>,
}

async fn graph(
    State(api): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Params(params): Params<GraphParams>,
) -> Result<Response, QueryError> {
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
    let since = parse_time(params.since.as_deref().unwrap_or("1h"), now)?;
    let until = match params.until.as_deref() {
        Some(u) => parse_time(u, now)?,
        None => i64::MAX,
    };
    Ok(json_response(json_rows(
        api.engine(&caller)
            .await?
            .service_graph(since, until)
            .await?,
    )?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkflowParams {
    /// RFC 3339 time or a duration back from now; default 1h.
    since: Option<String>,
    until: Option<String>,
    /// One conversation's workflows, oldest first, instead of the recent ones.
    conversation: Option<String>,
    /// Workflows passed over first (paging); default 0.
    offset: Option<usize>,
    /// Workflows at most; default 100, at most 1000.
    limit: Option<usize>,
}

/// The header of `/api/workflows` saying how many traces started in the
/// window (or, for a conversation, took part in it): a list of fewer
/// workflows than that may be capped.
pub const TRACES_IN_WINDOW: &str = "weft-traces-in-window";

/// Recent workflows as a JSON array of `weft_lineage::WorkflowSummary`, newest
/// first, or with `conversation` one conversation's, oldest first; with how
/// many traces the list draws from ([`TRACES_IN_WINDOW`]).
async fn workflows(
    State(api): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Params(params): Params<WorkflowParams>,
) -> Result<Response, QueryError> {
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
    let limit = params.limit.unwrap_or(100);
    if limit > MAX_WORKFLOWS {
        return Err(QueryError::Sql(format!(
            "limit is at most {MAX_WORKFLOWS}, not {limit}; page with offset, or narrow the time range with since/until"
        )));
    }
    let offset = params.offset.unwrap_or(0);
    let engine = api.engine(&caller).await?;
    let (list, traces) = match params.conversation {
        Some(id) => {
            if params.since.is_some() || params.until.is_some() {
                return Err(QueryError::Sql(
                    "since/until do not apply to a conversation, which lists all its workflows; page it with offset and limit".into(),
                ));
            }
            let page = engine
                .conversation(&ConversationQuery { id, offset, limit })
                .await?;
            (page.workflows, page.traces)
        }
        None => {
            let query = WorkflowQuery {
                since_ns: parse_time(params.since.as_deref().unwrap_or("1h"), now)?,
                until_ns: match params.until.as_deref() {
                    Some(u) => parse_time(u, now)?,
                    None => i64::MAX,
                },
                offset,
                limit,
            };
            let list = engine.workflows(query).await?;
            (list, engine.traces_started(query).await?)
        }
    };
    let body = serde_json::to_vec(&list)
        .map_err(|e| QueryError::Internal(format!("workflows as JSON: {e}")))?;
    let mut response = json_response(body);
    response
        .headers_mut()
        .insert(TRACES_IN_WINDOW, http::HeaderValue::from(traces));
    Ok(response)
}

/// The one place query errors become HTTP statuses, by [`ErrorKind`]: the
/// user's mistakes are 400, a missing trace 404, overload and shutdown 503 with
/// `Retry-After` (retry later), our bugs 500 (logged). The body is
/// `{"error": "..."}`.
impl IntoResponse for QueryError {
    fn into_response(self) -> Response {
        let kind = self.kind();
        let status = match kind {
            ErrorKind::Invalid => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Overloaded | ErrorKind::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        };
        if kind == ErrorKind::Internal {
            tracing::error!(error = %self, "query failed");
        }
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            json!({"error": self.to_string()}).to_string(),
        )
            .into_response();
        if kind == ErrorKind::Unauthenticated {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        if kind.is_retryable() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        response
    }
}
