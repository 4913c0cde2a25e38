//! The live signals where people and schedulers read them: `/api/signals`
//! (and `?since=`, answered by SQL over the stored spans), its Server-Sent
//! Events stream, `/api/signals/workflows`, `/api/route`, and the
//! `signals('1m')` table function. The numbers come from
//! [`weft_signals::Signals`], kept by a server that ingests; a server that
//! does not (`--no-ingest`) answers `/api/signals` by SQL over the window.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use axum::Extension;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{ScalarValue, plan_err};
use datafusion::datasource::MemTable;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Expr;
use datafusion::prelude::SessionContext;
use serde::Deserialize;
use weft_auth::Caller;
use weft_signals::{Filter, NodeSignals, RouteRequest, Signals, WindowSpec};

use crate::engine::{QueryEngine, SignalsSlot};
use crate::error::QueryError;
use crate::http::{ApiState, Params, json_response};

/// The routes this module serves, under the API's authorisation.
pub(crate) fn routes() -> axum::Router<ApiState> {
    use axum::routing::get;
    axum::Router::new()
        .route("/api/signals", get(nodes))
        .route("/api/signals/stream", get(stream))
        .route("/api/signals/workflows", get(workflows))
        .route("/api/route", get(route))
}

const NO_LIVE_SIGNALS: &str = "this server keeps no live signals (it does not ingest: \
    --no-ingest or a data directory); ask the weft serve that receives the spans";

fn live(engine: &QueryEngine) -> Result<&Arc<Signals>, QueryError> {
    engine
        .signals()
        .ok_or_else(|| QueryError::NotFound(NO_LIVE_SIGNALS.into()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeParams {
    /// One of the configured windows (`10s`, `1m`, `5m`); default `1m`.
    window: Option<String>,
    /// RFC 3339 time or a duration back from now: answered by SQL over the
    /// stored spans instead of the live windows.
    since: Option<String>,
    node: Option<String>,
    model: Option<String>,
}

async fn nodes(
    State(api): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Params(params): Params<NodeParams>,
) -> Result<Response, QueryError> {
    let engine = api.engine(&caller).await?;
    match (
        params.since.as_deref(),
        params.window.as_deref(),
        engine.signals(),
    ) {
        (Some(_), Some(_), _) => Err(QueryError::Sql(
            "give window= (the live windows) or since= (SQL over the stored spans), not both"
                .into(),
        )),
        (Some(since), None, live) => stored(&engine, since, &params, live).await,
        // No live signals here: the window's spans by SQL.
        (None, window, None) => {
            let window = window.unwrap_or("1m");
            WindowSpec::parse(window)?;
            stored(&engine, window, &params, None).await
        }
        (None, window, Some(signals)) => json(&signals.nodes(
            window.unwrap_or(&signals.config().default_window),
            Filter {
                tenant: engine.tenant(),
                node: params.node.as_deref(),
                model: params.model.as_deref(),
            },
        )?),
    }
}

/// `/api/signals` by SQL over the spans stored since `since`, with what only
/// the live state knows (staleness, calls in flight) when there is one.
async fn stored(
    engine: &QueryEngine,
    since: &str,
    params: &NodeParams,
    live: Option<&Arc<Signals>>,
) -> Result<Response, QueryError> {
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
    let since = crate::http::parse_time(since, now)?;
    let batches = engine.load_signals(since, params.model.as_deref()).await?;
    let mut rows: Vec<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_slice(&crate::http::json_rows(batches)?)
            .map_err(|e| QueryError::Internal(format!("signals rows: {e}")))?;
    if let Some(node) = &params.node {
        rows.retain(|r| r.get("node").and_then(|v| v.as_str()) == Some(node));
    }
    if let Some(signals) = live {
        let filter = Filter {
            tenant: engine.tenant(),
            node: None,
            model: params.model.as_deref(),
        };
        let now: HashMap<String, NodeSignals> = signals
            .nodes(&signals.config().default_window, filter)?
            .into_iter()
            .map(|r| (r.node.clone(), r))
            .collect();
        for row in &mut rows {
            let node = row.get("node").and_then(|v| v.as_str()).unwrap_or_default();
            let live = now.get(node);
            row.insert("stale".into(), live.is_none_or(|r| r.stale).into());
            row.insert("in_flight".into(), live.map_or(0, |r| r.in_flight).into());
        }
    }
    json(&rows)
}

fn json<T: serde::Serialize>(value: &T) -> Result<Response, QueryError> {
    Ok(json_response(serde_json::to_vec(value).map_err(|e| {
        QueryError::Internal(format!("signals as JSON: {e}"))
    })?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamParams {
    window: Option<String>,
    node: Option<String>,
    model: Option<String>,
}

/// What one stream remembers between events.
struct Streaming {
    signals: Arc<Signals>,
    tenant: Option<String>,
    params: StreamParams,
    window: String,
    changes: tokio::sync::watch::Receiver<u64>,
    version: u64,
    /// Each node's staleness as last sent: a node turning stale is news.
    stale: HashMap<String, bool>,
    pending: std::collections::VecDeque<NodeSignals>,
    last: Option<tokio::time::Instant>,
    interval: Duration,
}

impl Streaming {
    /// The rows to send now: nodes that changed since the last event and
    /// nodes whose staleness flipped.
    fn due(&mut self) -> Result<(), QueryError> {
        let tenant = self.tenant.as_deref();
        let (version, changed) = self.signals.changed_nodes(self.version, tenant)?;
        self.version = version;
        let rows = self.signals.nodes(
            &self.window,
            Filter {
                tenant,
                node: self.params.node.as_deref(),
                model: self.params.model.as_deref(),
            },
        )?;
        for row in rows {
            let flipped = self.stale.get(&row.node) != Some(&row.stale);
            if flipped || changed.binary_search(&row.node).is_ok() {
                self.stale.insert(row.node.clone(), row.stale);
                self.pending.push_back(row);
            }
        }
        Ok(())
    }

    async fn next(mut self) -> Option<(Result<Event, std::convert::Infallible>, Self)> {
        loop {
            if let Some(row) = self.pending.pop_front() {
                let event = Event::default()
                    .event("node")
                    .json_data(&row)
                    .unwrap_or_else(|_| Event::default().comment("unserialisable row"));
                return Some((Ok(event), self));
            }
            if let Some(last) = self.last {
                // At most one event per node per interval.
                tokio::time::sleep_until(last + self.interval).await;
                // Changes, or a staleness check once a second when quiet.
                let woke =
                    tokio::time::timeout(Duration::from_secs(1), self.changes.changed()).await;
                if matches!(woke, Ok(Err(_))) {
                    return None;
                }
            }
            self.last = Some(tokio::time::Instant::now());
            if let Err(e) = self.due() {
                let event = Event::default().event("error").data(e.to_string());
                return Some((Ok(event), self));
            }
        }
    }
}

/// Server-Sent Events: each node's row (as `/api/signals` gives it) when it
/// changes, at most once per `stream_interval`; the current rows first.
async fn stream(
    State(api): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Params(params): Params<StreamParams>,
) -> Result<Response, QueryError> {
    let engine = api.engine(&caller).await?;
    let signals = Arc::clone(live(&engine)?);
    let window = params
        .window
        .clone()
        .unwrap_or_else(|| signals.config().default_window.clone());
    // An unknown window is refused before the stream starts.
    signals.nodes(&window, Filter::default())?;
    let mut changes = signals.subscribe();
    changes.mark_unchanged();
    let state = Streaming {
        interval: signals.config().stream_interval,
        tenant: engine.tenant().map(str::to_owned),
        signals,
        params,
        window,
        changes,
        version: 0,
        stale: HashMap::new(),
        pending: Default::default(),
        last: None,
    };
    let events = futures::stream::unfold(state, Streaming::next);
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkflowParams {
    window: Option<String>,
}

async fn workflows(
    State(api): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Params(params): Params<WorkflowParams>,
) -> Result<Response, QueryError> {
    let engine = api.engine(&caller).await?;
    let signals = live(&engine)?;
    let window = params
        .window
        .as_deref()
        .unwrap_or(&signals.config().default_window);
    json(&signals.workflows(window, engine.tenant())?)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteParams {
    model: Option<String>,
    prefix: Option<String>,
    conversation: Option<String>,
}

async fn route(
    State(api): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Params(params): Params<RouteParams>,
) -> Result<Response, QueryError> {
    let engine = api.engine(&caller).await?;
    let signals = live(&engine)?;
    let advice = signals.route(RouteRequest {
        model: params.model.as_deref().unwrap_or_default(),
        prefix: params.prefix.as_deref(),
        conversation: params.conversation.as_deref(),
        tenant: engine.tenant(),
    })?;
    json(&advice)
}

/// The columns of `signals()`: a row of `/api/signals`.
fn schema() -> SchemaRef {
    let int = |name: &str| Field::new(name, DataType::Int64, true);
    let float = |name: &str| Field::new(name, DataType::Float64, true);
    let text = |name: &str| Field::new(name, DataType::Utf8, true);
    Arc::new(Schema::new(vec![
        Field::new("node", DataType::Utf8, false),
        text("model"),
        Field::new("window", DataType::Utf8, false),
        int("calls"),
        float("requests_per_second"),
        int("errors"),
        float("error_rate"),
        int("in_flight"),
        float("kv_cache_hit_rate"),
        float("kv_cache_hit_ratio"),
        int("queue_wait_p50_ns"),
        int("queue_wait_p95_ns"),
        int("queue_wait_p99_ns"),
        int("ttft_p50_ns"),
        int("ttft_p95_ns"),
        int("ttft_p99_ns"),
        int("duration_p50_ns"),
        int("duration_p95_ns"),
        int("duration_p99_ns"),
        int("input_tokens"),
        int("output_tokens"),
        float("input_tokens_per_second"),
        float("output_tokens_per_second"),
        float("cost"),
        text("last_seen"),
        Field::new("stale", DataType::Boolean, false),
    ]))
}

/// Registers `signals('1m')` (and `signals('1m', 'model')`) on `ctx`.
pub(crate) fn register(ctx: &SessionContext, slot: SignalsSlot, tenant: Option<String>) {
    ctx.register_udtf("signals", Arc::new(SignalsFunction { slot, tenant }));
}

struct SignalsFunction {
    slot: SignalsSlot,
    tenant: Option<String>,
}

impl std::fmt::Debug for SignalsFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "signals()")
    }
}

fn text_arg(exprs: &[Expr], i: usize) -> DfResult<Option<String>> {
    match exprs.get(i) {
        None => Ok(None),
        Some(Expr::Literal(ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)), _)) => {
            Ok(Some(s.clone()))
        }
        Some(_) => plan_err!(
            "signals() takes a window as text and optionally a model, e.g. signals('1m') or signals('5m', 'llama-3.1-70b-instruct')"
        ),
    }
}

impl TableFunctionImpl for SignalsFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        if exprs.len() > 2 {
            return plan_err!("signals() takes at most two arguments: a window and a model");
        }
        let Some(signals) = self.slot.get() else {
            return plan_err!("signals(): {NO_LIVE_SIGNALS}");
        };
        let window = text_arg(exprs, 0)?.unwrap_or_else(|| signals.config().default_window.clone());
        let model = text_arg(exprs, 1)?;
        let rows = signals
            .nodes(
                &window,
                Filter {
                    tenant: self.tenant.as_deref(),
                    node: None,
                    model: model.as_deref(),
                },
            )
            .map_err(|e| datafusion::error::DataFusionError::Plan(format!("signals(): {e}")))?;
        let schema = schema();
        let mut decoder = arrow::json::ReaderBuilder::new(Arc::clone(&schema)).build_decoder()?;
        decoder.serialize(&rows)?;
        let batch = decoder
            .flush()?
            .unwrap_or_else(|| arrow::record_batch::RecordBatch::new_empty(Arc::clone(&schema)));
        Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
    }
}
