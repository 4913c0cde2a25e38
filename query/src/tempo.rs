//! Grafana Tempo's HTTP API, under `/tempo` so Grafana's Tempo data source can
//! point at `http://weft:4319/tempo` (Weft's own `/api/traces/{id}` keeps its
//! shape): trace by id (v1 and v2), search (TraceQL subset or `tags`, with
//! `minDuration`, `maxDuration`, `start`, `end`, `limit`, `spss`), tag names
//! and tag values (v1 and v2), echo and build info. Same authentication,
//! tenants and limits as the rest of the API; queries are expressions, never
//! SQL text ([`crate::traceql`]).

use std::collections::HashMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type, TimeUnit};
use axum::Extension;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use datafusion::functions::core::expr_fn::coalesce;
use datafusion::functions_nested::expr_fn::map_keys;
use datafusion::logical_expr::{Expr, cast};
use datafusion::prelude::{DataFrame, col, lit};
use serde::Deserialize;
use serde_json::{Value, json};
use weft_auth::Caller;
use weft_otlp::{tempo_trace_by_id_protobuf, traces_data_json_with_events, traces_data_protobuf};
use weft_schemas::schema::col as column;

use crate::engine::QueryEngine;
use crate::error::QueryError;
use crate::http::{ApiState, Params, json_response, protobuf_response, trace_rows, wants_protobuf};
use crate::time::timestamp;
use crate::traceql::{self, Condition, Field, Op, Scope, SpanFilter};

/// Traces a search answers unless `limit` says otherwise (Tempo's default).
const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 1_000;
/// Matching spans shown per trace unless `spss` says otherwise.
const DEFAULT_SPSS: usize = 3;
/// Matching spans a search reads at most, newest first.
const MAX_MATCHES: usize = 100_000;
/// Tag names or values one answer lists at most.
const MAX_TAGS: usize = 1_000;
/// The window when a request gives no `start`/`end`: the last day.
const DEFAULT_WINDOW_SECS: i64 = 86_400;
/// The intrinsics this API answers for.
const INTRINSICS: [&str; 5] = ["duration", "kind", "name", "status", "statusMessage"];

/// The routes, nested under `/tempo` by [`crate::api::router`].
pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/echo", get(|| async { "echo" }))
        .route("/api/status/buildinfo", get(buildinfo))
        .route("/api/traces/{trace_id}", get(trace_v1))
        .route("/api/v2/traces/{trace_id}", get(trace_v2))
        .route("/api/search", get(search))
        .route("/api/search/tags", get(tags_v1))
        .route("/api/v2/search/tags", get(tags_v2))
        .route("/api/search/tag/{name}/values", get(values_v1))
        .route("/api/v2/search/tag/{name}/values", get(values_v2))
}

async fn buildinfo() -> Response {
    json_response(
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "revision": "weft",
            "branch": "",
            "buildUser": "",
            "buildDate": "",
            "goVersion": "",
        })
        .to_string(),
    )
}

/// v1: the trace's resource spans as `batches` in JSON; with `Accept:
/// application/protobuf` (what Grafana sends) Tempo's `Trace`, which is laid
/// out as OTLP `TracesData`.
async fn trace_v1(
    State(api): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(trace_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, QueryError> {
    let (batches, events) = trace_rows(&api, &caller, &trace_id).await?;
    if wants_protobuf(&headers) {
        return Ok(protobuf_response(traces_data_protobuf(&batches, &events)?));
    }
    let mut data = traces_data_json_with_events(&batches, &events)?;
    let batches = data["resourceSpans"].take();
    Ok(json_response(json!({ "batches": batches }).to_string()))
}

/// v2: the trace as OTLP `TracesData` under `trace`; with `Accept:
/// application/protobuf` (what Grafana sends first, falling back to v1 on a
/// 404) Tempo's `TraceByIDResponse`.
async fn trace_v2(
    State(api): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(trace_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, QueryError> {
    let (batches, events) = trace_rows(&api, &caller, &trace_id).await?;
    if wants_protobuf(&headers) {
        return Ok(protobuf_response(tempo_trace_by_id_protobuf(
            &batches, &events,
        )?));
    }
    let data = traces_data_json_with_events(&batches, &events)?;
    Ok(json_response(json!({ "trace": data }).to_string()))
}

/// Query parameters of the search endpoints (unknown ones are ignored, as
/// Tempo ignores them: Grafana adds its own).
#[derive(Debug, Deserialize, Default)]
struct SearchParams {
    q: Option<String>,
    tags: Option<String>,
    #[serde(rename = "minDuration")]
    min_duration: Option<String>,
    #[serde(rename = "maxDuration")]
    max_duration: Option<String>,
    limit: Option<usize>,
    spss: Option<usize>,
    start: Option<i64>,
    end: Option<i64>,
    scope: Option<String>,
}

impl SearchParams {
    /// `start`/`end` (Unix seconds) as a filter on `start_time`.
    fn window(&self) -> Expr {
        let now = chrono::Utc::now().timestamp();
        let end = self.end.unwrap_or(now).saturating_add(1);
        let start = self.start.unwrap_or(end - DEFAULT_WINDOW_SECS);
        let ns = |s: i64| s.saturating_mul(1_000_000_000);
        col(column::START_TIME)
            .gt_eq(timestamp(ns(start)))
            .and(col(column::START_TIME).lt(timestamp(ns(end))))
    }

    fn duration(text: &Option<String>, what: &str) -> Result<Option<i64>, QueryError> {
        text.as_deref()
            .filter(|t| !t.is_empty())
            .map(|t| {
                traceql::duration_ns(t).ok_or_else(|| {
                    QueryError::Sql(format!(
                        "{what} {t:?} is not a duration such as 100ms or 2s"
                    ))
                })
            })
            .transpose()
    }
}

/// `tags=service.name=checkout http.status_code=500` (logfmt) as conditions.
fn tag_filter(tags: &str) -> Result<SpanFilter, QueryError> {
    let mut conditions = Vec::new();
    let mut rest = tags.trim();
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once('=')
            .ok_or_else(|| QueryError::Sql(format!("tags: expected key=value in {rest:?}")))?;
        let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
            let close = quoted
                .find('"')
                .ok_or_else(|| QueryError::Sql("tags: a quoted value is not closed".into()))?;
            (&quoted[..close], &quoted[close + 1..])
        } else {
            after.split_once(' ').unwrap_or((after, ""))
        };
        let field = match key.trim() {
            "name" => Field::Name,
            "status.code" | "status" => Field::Status,
            k => Field::Attribute {
                scope: Scope::Any,
                key: k.to_owned(),
            },
        };
        conditions.push(Condition {
            field,
            op: Op::Eq,
            value: traceql::Value::Str(value.to_owned()),
        });
        rest = after.trim_start();
    }
    Ok(SpanFilter { conditions })
}

fn int_column<'a>(
    batch: &'a RecordBatch,
    name: &str,
) -> Result<&'a arrow::array::Int64Array, QueryError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_primitive_opt::<Int64Type>())
        .ok_or_else(|| QueryError::Internal(format!("search: column {name} is not Int64")))
}

fn text_column<'a>(
    batch: &'a RecordBatch,
    name: &str,
) -> Result<&'a arrow::array::StringArray, QueryError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or_else(|| QueryError::Internal(format!("search: column {name} is not text")))
}

/// `ids`, `start_ns`, `duration_ns` of spans, newest first.
async fn spans_frame(engine: &QueryEngine, filter: Expr) -> Result<DataFrame, QueryError> {
    Ok(engine
        .ctx()
        .table("spans")
        .await?
        .filter(filter)?
        .select(vec![
            col(column::TRACE_ID),
            col(column::SPAN_ID),
            col(column::PARENT_SPAN_ID),
            col(column::NAME),
            col(column::SERVICE_NAME),
            // Whatever unit the column keeps, nanoseconds since the epoch.
            cast(
                cast(
                    col(column::START_TIME),
                    DataType::Timestamp(TimeUnit::Nanosecond, None),
                ),
                DataType::Int64,
            )
            .alias("start_ns"),
            cast(col(column::DURATION_NS), DataType::Int64).alias("duration_ns"),
        ])?)
}

struct Matched {
    span_id: String,
    start_ns: i64,
    duration_ns: i64,
    service: Option<String>,
}

async fn search(
    State(api): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Params(params): Params<SearchParams>,
) -> Result<Response, QueryError> {
    let limit = params
        .limit
        .filter(|l| *l > 0)
        .unwrap_or(DEFAULT_LIMIT)
        .min(MAX_LIMIT);
    let spss = params.spss.filter(|s| *s > 0).unwrap_or(DEFAULT_SPSS);
    let min = SearchParams::duration(&params.min_duration, "minDuration")?;
    let max = SearchParams::duration(&params.max_duration, "maxDuration")?;
    let filter = match (&params.q, &params.tags) {
        (Some(q), _) if !q.trim().is_empty() => traceql::parse(q)?,
        (_, Some(tags)) => tag_filter(tags)?,
        _ => SpanFilter::default(),
    };
    let mut expr = params.window();
    if let Some(f) = filter.to_expr()? {
        expr = expr.and(f);
    }
    let engine = api.engine(&caller).await?;
    let run = async {
        // The matching spans, newest first.
        let matches = spans_frame(&engine, expr)
            .await?
            .sort(vec![col("start_ns").sort(false, false)])?
            .limit(0, Some(MAX_MATCHES))?
            .collect()
            .await?;
        let mut order: Vec<String> = Vec::new();
        let mut by_trace: HashMap<String, (Vec<Matched>, usize)> = HashMap::new();
        for b in &matches {
            let (traces, spans, services) = (
                text_column(b, column::TRACE_ID)?,
                text_column(b, column::SPAN_ID)?,
                text_column(b, column::SERVICE_NAME)?,
            );
            let (starts, durations) = (int_column(b, "start_ns")?, int_column(b, "duration_ns")?);
            for row in 0..b.num_rows() {
                let trace = traces.value(row).to_owned();
                let entry = by_trace.entry(trace.clone()).or_insert_with(|| {
                    order.push(trace);
                    (Vec::new(), 0)
                });
                entry.1 += 1;
                if entry.0.len() < spss {
                    entry.0.push(Matched {
                        span_id: spans.value(row).to_owned(),
                        start_ns: starts.value(row),
                        duration_ns: durations.value(row),
                        service: services
                            .is_valid(row)
                            .then(|| services.value(row).to_owned()),
                    });
                }
            }
        }
        // Each candidate trace's root and extent. Without duration bounds the
        // first `limit` traces are the answer; with them, more are read so
        // that enough pass.
        let bounded = min.is_some() || max.is_some();
        let wanted = if bounded { MAX_LIMIT * 4 } else { limit };
        let candidates: Vec<String> = order.iter().take(wanted).cloned().collect();
        let roots = trace_roots(&engine, &candidates).await?;
        let mut traces = Vec::new();
        for id in &order {
            if traces.len() == limit {
                break;
            }
            let Some(root) = roots.get(id) else { continue };
            let took = root.end_ns.saturating_sub(root.start_ns);
            if min.is_some_and(|m| took < m) || max.is_some_and(|m| took > m) {
                continue;
            }
            let (spans, matched) = &by_trace[id];
            let spans: Vec<Value> = spans
                .iter()
                .map(|s| {
                    json!({
                        "spanID": s.span_id,
                        "startTimeUnixNano": s.start_ns.to_string(),
                        "durationNanos": s.duration_ns.to_string(),
                        "attributes": s.service.as_ref().map(|name| vec![json!({
                            "key": "service.name", "value": {"stringValue": name}
                        })]).unwrap_or_default(),
                    })
                })
                .collect();
            let span_set = json!({ "spans": spans, "matched": matched });
            traces.push(json!({
                "traceID": id,
                "rootServiceName": root.service.as_deref().unwrap_or("<root span not yet received>"),
                "rootTraceName": root.name.as_deref().unwrap_or("<root span not yet received>"),
                "startTimeUnixNano": root.start_ns.to_string(),
                "durationMs": took / 1_000_000,
                "spanSet": span_set,
                "spanSets": [span_set],
            }));
        }
        Ok::<_, QueryError>(json!({
            "traces": traces,
            "metrics": {
                "inspectedTraces": by_trace.len(),
                "inspectedSpans": matches.iter().map(RecordBatch::num_rows).sum::<usize>().to_string(),
                "completedJobs": 1,
                "totalJobs": 1,
            },
        }))
    };
    Ok(json_response(engine.bounded(run).await?.to_string()))
}

struct Root {
    name: Option<String>,
    service: Option<String>,
    start_ns: i64,
    end_ns: i64,
}

/// Each trace's root span (name, service) and first start to last end.
async fn trace_roots(
    engine: &QueryEngine,
    traces: &[String],
) -> Result<HashMap<String, Root>, QueryError> {
    let mut out: HashMap<String, Root> = HashMap::new();
    if traces.is_empty() {
        return Ok(out);
    }
    let ids: Vec<Expr> = traces.iter().map(|t| lit(t.as_str())).collect();
    let batches = spans_frame(engine, col(column::TRACE_ID).in_list(ids, false))
        .await?
        .collect()
        .await?;
    for b in &batches {
        let traces = text_column(b, column::TRACE_ID)?;
        let parents = b
            .column_by_name(column::PARENT_SPAN_ID)
            .ok_or_else(|| QueryError::Internal("search: no parent_span_id".into()))?;
        let (names, services) = (
            text_column(b, column::NAME)?,
            text_column(b, column::SERVICE_NAME)?,
        );
        let (starts, durations) = (int_column(b, "start_ns")?, int_column(b, "duration_ns")?);
        for row in 0..b.num_rows() {
            let (start, end) = (
                starts.value(row),
                starts.value(row).saturating_add(durations.value(row)),
            );
            let root = out.entry(traces.value(row).to_owned()).or_insert(Root {
                name: None,
                service: None,
                start_ns: start,
                end_ns: end,
            });
            root.start_ns = root.start_ns.min(start);
            root.end_ns = root.end_ns.max(end);
            if parents.is_null(row) && root.name.is_none() {
                root.name = Some(names.value(row).to_owned());
                root.service = services
                    .is_valid(row)
                    .then(|| services.value(row).to_owned());
            }
        }
    }
    Ok(out)
}

/// Distinct non-null text values of `value`, sorted, at most [`MAX_TAGS`].
async fn distinct(
    engine: &QueryEngine,
    window: Expr,
    value: Expr,
    unnest: bool,
) -> Result<Vec<String>, QueryError> {
    let run = async {
        let mut df = engine
            .ctx()
            .table("spans")
            .await?
            .filter(window)?
            .select(vec![value.alias("v")])?;
        if unnest {
            df = df.unnest_columns(&["v"])?;
        }
        let batches = df
            .filter(col("v").is_not_null())?
            .distinct()?
            .sort(vec![col("v").sort(true, false)])?
            .limit(0, Some(MAX_TAGS))?
            .collect()
            .await?;
        let mut out = Vec::new();
        for b in &batches {
            let v = cast_text(b.column(0))?;
            out.extend(
                (0..v.len())
                    .filter(|i| v.is_valid(*i))
                    .map(|i| v.value(i).to_owned()),
            );
        }
        Ok(out)
    };
    engine.bounded(run).await
}

fn cast_text(array: &arrow::array::ArrayRef) -> Result<arrow::array::StringArray, QueryError> {
    let text = arrow::compute::cast(array, &DataType::Utf8)?;
    Ok(text.as_string::<i32>().clone())
}

async fn tags_v1(
    State(api): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Params(params): Params<SearchParams>,
) -> Result<Response, QueryError> {
    let engine = api.engine(&caller).await?;
    let mut names = distinct(
        &engine,
        params.window(),
        map_keys(col(column::ATTRIBUTES)),
        true,
    )
    .await?;
    names.extend(
        distinct(
            &engine,
            params.window(),
            map_keys(col(column::RESOURCE_ATTRIBUTES)),
            true,
        )
        .await?,
    );
    names.sort();
    names.dedup();
    Ok(json_response(json!({ "tagNames": names }).to_string()))
}

async fn tags_v2(
    State(api): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Params(params): Params<SearchParams>,
) -> Result<Response, QueryError> {
    let engine = api.engine(&caller).await?;
    let wanted = params.scope.as_deref().unwrap_or("all");
    if !matches!(
        wanted,
        "all" | "none" | "" | "span" | "resource" | "intrinsic"
    ) {
        return Err(QueryError::Sql(format!(
            "scope must be span, resource, intrinsic or all, not {wanted:?}"
        )));
    }
    let want = |s: &str| matches!(wanted, "all" | "none" | "") || wanted == s;
    let mut scopes = Vec::new();
    if want("span") {
        let tags = distinct(
            &engine,
            params.window(),
            map_keys(col(column::ATTRIBUTES)),
            true,
        )
        .await?;
        scopes.push(json!({"name": "span", "tags": tags}));
    }
    if want("resource") {
        let mut tags = distinct(
            &engine,
            params.window(),
            map_keys(col(column::RESOURCE_ATTRIBUTES)),
            true,
        )
        .await?;
        if !tags.iter().any(|t| t == "service.name") {
            tags.insert(0, "service.name".into());
        }
        scopes.push(json!({"name": "resource", "tags": tags}));
    }
    if want("intrinsic") {
        scopes.push(json!({"name": "intrinsic", "tags": INTRINSICS}));
    }
    Ok(json_response(json!({ "scopes": scopes }).to_string()))
}

/// The expression a tag name reads: `resource.x`, `span.x`, `.x`, an
/// intrinsic, or (v1) a bare attribute key.
fn tag_value(name: &str) -> (Expr, &'static str) {
    use datafusion::functions::core::expr_fn::get_field;
    let span = |k: &str| get_field(col(column::ATTRIBUTES), k);
    let resource = |k: &str| {
        if k == "service.name" {
            col(column::SERVICE_NAME)
        } else {
            get_field(col(column::RESOURCE_ATTRIBUTES), k)
        }
    };
    match name {
        "name" | "span:name" => (col(column::NAME), "string"),
        "status" | "span:status" => (col(column::STATUS_CODE), "keyword"),
        "kind" | "span:kind" => (col(column::KIND), "keyword"),
        "statusMessage" | "span:statusMessage" => (col(column::STATUS_MESSAGE), "string"),
        n if n.starts_with("resource.") => (resource(&n[9..]), "string"),
        n if n.starts_with("span.") => (span(&n[5..]), "string"),
        n => {
            let key = n.strip_prefix('.').unwrap_or(n);
            (coalesce(vec![span(key), resource(key)]), "string")
        }
    }
}

async fn values_v1(
    State(api): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Params(params): Params<SearchParams>,
) -> Result<Response, QueryError> {
    let engine = api.engine(&caller).await?;
    let (expr, _) = tag_value(&name);
    let values = distinct(&engine, params.window(), expr, false).await?;
    Ok(json_response(json!({ "tagValues": values }).to_string()))
}

async fn values_v2(
    State(api): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Params(params): Params<SearchParams>,
) -> Result<Response, QueryError> {
    let engine = api.engine(&caller).await?;
    let (expr, kind) = tag_value(&name);
    let mut window = params.window();
    // Grafana narrows values by the query typed so far (`q`).
    if let Some(f) = params.q.as_deref().map(traceql::parse).transpose()?
        && let Some(e) = f.to_expr()?
    {
        window = window.and(e);
    }
    let values: Vec<Value> = distinct(&engine, window, expr, false)
        .await?
        .into_iter()
        .map(|v| json!({"type": kind, "value": v}))
        .collect();
    Ok(json_response(json!({ "tagValues": values }).to_string()))
}
