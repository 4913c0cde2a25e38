//! Read-only SQL over the `spans` table, with time and memory limits.

use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext, col, lit};
use weft_schemas::TraceId;
use weft_schemas::schema::col as column;

use std::collections::HashSet;

use crate::error::QueryError;
use crate::lineage::fetch::{Reach, workflow_spans};
use crate::lineage::graph::{BuildOptions, Lineage, build};
use crate::lineage_sql::register_lineage_functions;
use crate::table::{SpanSource, register_stored_tables};

/// One cross-service or cross-agent call per row: the `service_calls` view,
/// from which `GET /api/graph` aggregates the dependency graph.
pub const SERVICE_CALLS_SQL: &str = "SELECT \
    p.service_name AS caller_service, c.service_name AS callee_service, \
    p.agent_name AS caller_agent, c.agent_name AS callee_agent, \
    c.start_time AS start_time, c.duration_ns AS duration_ns, \
    c.status_code = 'error' AS is_error \
  FROM spans c JOIN spans p ON c.trace_id = p.trace_id AND c.parent_span_id = p.span_id \
  WHERE (p.service_name IS DISTINCT FROM c.service_name) \
     OR (c.agent_name IS NOT NULL AND (p.agent_name IS DISTINCT FROM c.agent_name))";

/// Bounds on one query.
#[derive(Debug, Clone, Copy)]
pub struct QueryLimits {
    pub timeout: Duration,
    pub memory_bytes: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            memory_bytes: 2 * 1024 * 1024 * 1024,
        }
    }
}

/// The rows a query produced and their schema (also when there are no rows).
#[derive(Debug, Clone)]
pub struct QueryResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl QueryResult {
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// A reconstructed workflow and whether a depth or size limit cut it short.
#[derive(Debug, Clone)]
pub struct LineageResult {
    pub lineage: Lineage,
    pub truncated: bool,
}

/// Runs SQL against the `spans` table of one span source.
pub struct QueryEngine {
    ctx: SessionContext,
    limits: QueryLimits,
    write_tools: HashSet<String>,
}

impl QueryEngine {
    /// An engine whose `spans` table reads `source` at every query, with the
    /// `service_calls` view and the `lineage`, `ancestors` and `descendants`
    /// table functions.
    pub async fn new(source: Arc<dyn SpanSource>, limits: QueryLimits) -> Result<Self, QueryError> {
        let config = SessionConfig::new()
            .with_information_schema(true)
            .set_bool("datafusion.execution.parquet.pushdown_filters", true)
            .set_bool("datafusion.execution.parquet.reorder_filters", true);
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(limits.memory_bytes, 1.0)
            .build_arc()?;
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        register_stored_tables(&ctx, &source)?;
        let calls = ctx.sql(SERVICE_CALLS_SQL).await?.into_view();
        ctx.register_table("service_calls", calls)?;
        register_lineage_functions(&ctx, source);
        Ok(Self {
            ctx,
            limits,
            write_tools: HashSet::new(),
        })
    }

    /// Runs `work` under the query timeout.
    async fn bounded<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, QueryError>>,
    ) -> Result<T, QueryError> {
        tokio::time::timeout(self.limits.timeout, work)
            .await
            .map_err(|_| QueryError::Timeout(self.limits.timeout))?
    }

    /// Tools the governance checks treat as writing, besides `weft.tool.effect = write`.
    pub fn with_write_tools(mut self, tools: impl IntoIterator<Item = String>) -> Self {
        self.write_tools = tools.into_iter().collect();
        self
    }

    /// The workflow reachable from `trace_id`: every span of every trace joined
    /// to it by span links (within `reach`), as an analysed graph.
    pub async fn lineage(
        &self,
        trace_id: &TraceId,
        reach: Reach,
    ) -> Result<LineageResult, QueryError> {
        let run = async {
            let (spans, truncated) = workflow_spans(&self.ctx, *trace_id, reach).await?;
            if !spans.iter().any(|s| s.trace_id == *trace_id) {
                return Err(QueryError::NotFound(format!("trace {trace_id} not found")));
            }
            let options = BuildOptions {
                now_ns: chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX),
                write_tools: self.write_tools.clone(),
            };
            let lineage = tokio::task::spawn_blocking(move || build(spans, &options))
                .await
                .map_err(|e| QueryError::Internal(format!("lineage build failed: {e}")))?;
            Ok(LineageResult { lineage, truncated })
        };
        self.bounded(run).await
    }

    /// The service and agent dependency graph from `since` to `until` (Unix ns):
    /// who calls whom, how often, how often it failed, how long it took.
    pub async fn service_graph(
        &self,
        since_ns: i64,
        until_ns: i64,
    ) -> Result<Vec<RecordBatch>, QueryError> {
        use arrow::datatypes::DataType;
        use datafusion::functions_aggregate::expr_fn::{avg, count, sum};
        use datafusion::logical_expr::cast;
        let ts = timestamp;
        let run = async {
            let df = self
                .ctx
                .table("service_calls")
                .await?
                .filter(
                    col("start_time")
                        .gt_eq(ts(since_ns))
                        .and(col("start_time").lt(ts(until_ns))),
                )?
                .aggregate(
                    vec![
                        col("caller_service"),
                        col("callee_service"),
                        col("caller_agent"),
                        col("callee_agent"),
                    ],
                    vec![
                        count(lit(1)).alias("calls"),
                        sum(cast(col("is_error"), DataType::Int64)).alias("errors"),
                        avg(col("duration_ns")).alias("avg_duration_ns"),
                    ],
                )?
                .sort(vec![
                    col("calls").sort(false, false),
                    col("caller_service").sort(true, true),
                ])?;
            Ok::<_, QueryError>(df.collect().await?)
        };
        self.bounded(run).await
    }

    /// Live load per GPU node since `since_ns` (Unix ns), for schedulers that
    /// poll: one row per node that served LLM calls, warmest KV cache first
    /// (then shortest median queue wait). `model` narrows it to one model.
    pub async fn load_signals(
        &self,
        since_ns: i64,
        model: Option<&str>,
    ) -> Result<Vec<RecordBatch>, QueryError> {
        use arrow::datatypes::DataType;
        use datafusion::functions_aggregate::expr_fn::{
            approx_percentile_cont, avg, count, max, sum,
        };
        use datafusion::logical_expr::cast;
        let p = |c: &str, q: f64| {
            let percentile = approx_percentile_cont(col(c).sort(true, false), lit(q), None);
            cast(percentile, DataType::Int64)
        };
        let run = async {
            let mut df = self.ctx.table("spans").await?.filter(
                col(column::START_TIME)
                    .gt_eq(timestamp(since_ns))
                    .and(col("ai_kind").eq(lit("llm")))
                    .and(col("node").is_not_null()),
            )?;
            if let Some(model) = model {
                df = df.filter(col("gen_ai_model").eq(lit(model)))?;
            }
            let df = df
                .aggregate(
                    vec![col("node")],
                    vec![
                        count(lit(1)).alias("calls"),
                        sum(cast(
                            col(column::STATUS_CODE).eq(lit("error")),
                            DataType::Int64,
                        ))
                        .alias("errors"),
                        avg(cast(col("kv_cache_hit"), DataType::Float64))
                            .alias("kv_cache_hit_rate"),
                        avg(col("kv_cache_hit_ratio")).alias("kv_cache_hit_ratio"),
                        p("queue_wait_ns", 0.5).alias("queue_wait_p50_ns"),
                        p("queue_wait_ns", 0.95).alias("queue_wait_p95_ns"),
                        p("time_to_first_token_ns", 0.5).alias("ttft_p50_ns"),
                        p("time_to_first_token_ns", 0.95).alias("ttft_p95_ns"),
                        sum(col("input_tokens")).alias("input_tokens"),
                        sum(col("output_tokens")).alias("output_tokens"),
                        max(col(column::END_TIME)).alias("last_seen"),
                    ],
                )?
                .sort(vec![
                    col("kv_cache_hit_rate").sort(false, false),
                    col("queue_wait_p50_ns").sort(true, false),
                    col("node").sort(true, false),
                ])?;
            Ok::<_, QueryError>(df.collect().await?)
        };
        self.bounded(run).await
    }

    /// Runs one read-only statement. DDL, DML, COPY and SET are rejected.
    pub async fn sql(&self, sql: &str) -> Result<QueryResult, QueryError> {
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let run = async {
            let df = self.ctx.sql_with_options(sql, options).await?;
            let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
            let batches = df.collect().await?;
            Ok::<_, QueryError>(QueryResult { schema, batches })
        };
        self.bounded(run).await
    }

    /// Every span of one trace, ordered by start time. The filter on `trace_id`
    /// lets Parquet skip row groups by statistics and bloom filter.
    pub async fn trace(&self, trace_id: &TraceId) -> Result<Vec<RecordBatch>, QueryError> {
        let run = async {
            let df = self
                .ctx
                .table("spans")
                .await?
                .filter(col(column::TRACE_ID).eq(lit(trace_id.to_hex())))?
                .sort(vec![col(column::START_TIME).sort(true, false)])?;
            Ok::<_, QueryError>(df.collect().await?)
        };
        self.bounded(run).await
    }
}

/// A Unix-nanosecond literal as a UTC timestamp, comparable with the time columns.
fn timestamp(ns: i64) -> datafusion::prelude::Expr {
    datafusion::logical_expr::cast(lit(ns), weft_schemas::schema::timestamp_type())
}
