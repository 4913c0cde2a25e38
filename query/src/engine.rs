//! Read-only SQL over the `spans` table, with time and memory limits.

use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SessionConfig, SessionContext, col, lit};
use weft_schemas::schema::col as column;
use weft_schemas::{AiKind, TraceId, ai_col};

use std::collections::HashSet;

use crate::error::QueryError;
use crate::ids::trace_id_literal;
use crate::lineage::{LineageResult, Reach, reconstruct};
use crate::lineage_sql::register_lineage_functions;
use crate::table::{SpanSource, Stored, TenantSource, register_stored_tables, stored_table};
pub(crate) use crate::time::timestamp;
use weft_lineage::WorkflowSummary;

use crate::workflows::{WorkflowCache, WorkflowQuery, recent_workflows, traces_started};

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

/// How an engine answers: its limits and the settings lineage analysis needs.
#[derive(Debug, Clone, Default)]
pub struct QuerySettings {
    pub limits: QueryLimits,
    /// Tools the governance checks treat as writing, besides `weft.tool.effect = write`.
    pub write_tools: Vec<String>,
}

/// A table or view as catalog browsers list it.
#[derive(Debug, Clone)]
pub struct TableEntry {
    pub catalog: String,
    pub schema: String,
    pub name: String,
    /// `TABLE` or `VIEW`.
    pub table_type: &'static str,
    pub arrow_schema: SchemaRef,
}

/// Bounds on one query.
#[derive(Debug, Clone, Copy)]
pub struct QueryLimits {
    pub timeout: Duration,
    pub memory_bytes: usize,
    /// Rows one answer holds at most; reading stops there, which stops the query.
    pub max_result_rows: usize,
    /// Bytes (in memory, as Arrow) one answer holds at most.
    pub max_result_bytes: usize,
    /// Bytes the queries together may spill to the temporary directory
    /// (sorts, joins and aggregations over the memory limit).
    pub max_spill_bytes: u64,
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            memory_bytes: 2 * 1024 * 1024 * 1024,
            max_result_rows: 1_000_000,
            max_result_bytes: 256 * 1024 * 1024,
            max_spill_bytes: 16 * 1024 * 1024 * 1024,
        }
    }
}

/// The rows a query produced and their schema (also when there are no rows).
#[derive(Debug, Clone)]
pub struct QueryResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    /// Why the answer stops short of every row, when it does.
    pub truncated: Option<String>,
}

impl QueryResult {
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// Runs SQL against the `spans` table of one span source.
pub struct QueryEngine {
    ctx: SessionContext,
    source: Arc<dyn SpanSource>,
    /// The event store's rows (log records of spans), for `span_events`.
    events: Arc<dyn SpanSource>,
    limits: QueryLimits,
    write_tools: Arc<HashSet<String>>,
    /// The engines of each tenant seen so far (one per configured tenant),
    /// sharing this engine's memory pool.
    tenants: std::sync::Mutex<std::collections::HashMap<String, Arc<QueryEngine>>>,
    /// Settled workflows' summaries, for [`QueryEngine::workflows`].
    workflow_cache: WorkflowCache,
    /// The live signals, once a server that ingests attaches them (shared
    /// with the tenants' engines).
    signals: SignalsSlot,
}

/// Where an engine and its tenants' engines find the live signals.
pub(crate) type SignalsSlot = Arc<std::sync::OnceLock<Arc<weft_signals::Signals>>>;

impl QueryEngine {
    /// An engine whose `spans` table reads `source` at every query, with the
    /// `service_calls` view and the `lineage`, `ancestors` and `descendants`
    /// table functions.
    pub async fn new(
        source: Arc<dyn SpanSource>,
        settings: QuerySettings,
    ) -> Result<Self, QueryError> {
        let none: Arc<dyn SpanSource> = Arc::new(crate::table::StaticSource(Default::default()));
        Self::with_events(source, none, settings).await
    }

    /// [`QueryEngine::new`] with the event store's rows (log records of
    /// spans, GenAI events) as the `span_events` view.
    pub async fn with_events(
        source: Arc<dyn SpanSource>,
        events: Arc<dyn SpanSource>,
        settings: QuerySettings,
    ) -> Result<Self, QueryError> {
        let limits = settings.limits;
        let write_tools: Arc<HashSet<String>> =
            Arc::new(settings.write_tools.into_iter().collect());
        // Fair shares for the operators that can spill (sorts, joins,
        // aggregations), so one cannot starve another into failing; the rest
        // (the API's answer among them) take from what is left.
        let pool = datafusion::execution::memory_pool::FairSpillPool::new(limits.memory_bytes);
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(pool))
            .with_max_temp_directory_size(limits.max_spill_bytes)
            .build_arc()?;
        Self::build(
            source,
            events,
            limits,
            write_tools,
            runtime,
            SignalsSlot::default(),
        )
        .await
    }

    /// Gives this engine (and its tenants' engines) the live signals a
    /// server that ingests keeps: `/api/signals`, `/api/route` and the
    /// `signals()` table function read them. Once only; later calls are ignored.
    pub fn attach_signals(&self, signals: Arc<weft_signals::Signals>) {
        let _ = self.signals.set(signals);
    }

    /// The live signals, when this server keeps them.
    pub fn signals(&self) -> Option<&Arc<weft_signals::Signals>> {
        self.signals.get()
    }

    /// The tenant whose spans this engine shows, if it shows one tenant's.
    pub fn tenant(&self) -> Option<&str> {
        self.source.tenant()
    }

    /// This engine, or for a tenant the same engine over only that tenant's
    /// spans ([`TenantSource`]), sharing the memory limit.
    pub async fn for_tenant(
        self: &Arc<Self>,
        tenant: Option<&str>,
    ) -> Result<Arc<QueryEngine>, QueryError> {
        let Some(tenant) = tenant else {
            return Ok(Arc::clone(self));
        };
        if let Some(engine) = self.tenant_engines()?.get(tenant) {
            return Ok(Arc::clone(engine));
        }
        let source: Arc<dyn SpanSource> = Arc::new(TenantSource {
            inner: Arc::clone(&self.source),
            tenant: tenant.to_owned(),
        });
        let events: Arc<dyn SpanSource> = Arc::new(TenantSource {
            inner: Arc::clone(&self.events),
            tenant: tenant.to_owned(),
        });
        let engine = Arc::new(
            Self::build(
                source,
                events,
                self.limits,
                Arc::clone(&self.write_tools),
                self.ctx.runtime_env(),
                Arc::clone(&self.signals),
            )
            .await?,
        );
        Ok(Arc::clone(
            self.tenant_engines()?
                .entry(tenant.to_owned())
                .or_insert(engine),
        ))
    }

    fn tenant_engines(
        &self,
    ) -> Result<
        std::sync::MutexGuard<'_, std::collections::HashMap<String, Arc<QueryEngine>>>,
        QueryError,
    > {
        self.tenants
            .lock()
            .map_err(|_| QueryError::Internal("tenant engines lock poisoned".into()))
    }

    async fn build(
        source: Arc<dyn SpanSource>,
        events: Arc<dyn SpanSource>,
        limits: QueryLimits,
        write_tools: Arc<HashSet<String>>,
        runtime: Arc<datafusion::execution::runtime_env::RuntimeEnv>,
        signals: SignalsSlot,
    ) -> Result<Self, QueryError> {
        let config = SessionConfig::new()
            .with_default_catalog_and_schema(crate::pg_catalog::CATALOG, "public")
            .with_information_schema(true)
            .set_bool("datafusion.execution.parquet.pushdown_filters", true)
            .set_bool("datafusion.execution.parquet.reorder_filters", true);
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        crate::bounded::register(&ctx);
        crate::pg_catalog::register(&ctx)?;
        register_stored_tables(&ctx, &source)?;
        let calls = ctx.sql(SERVICE_CALLS_SQL).await?.into_view();
        ctx.register_table("service_calls", calls)?;
        crate::table::register_span_events(&ctx, &events)?;
        register_lineage_functions(&ctx, &source, Arc::clone(&write_tools));
        let tenant = source.tenant().map(str::to_owned);
        crate::signals::register(&ctx, Arc::clone(&signals), tenant);
        Ok(Self {
            ctx,
            source,
            events,
            limits,
            write_tools,
            tenants: Default::default(),
            workflow_cache: WorkflowCache::default(),
            signals,
        })
    }

    /// The session: its tables, functions, memory pool.
    pub(crate) fn ctx(&self) -> &SessionContext {
        &self.ctx
    }

    /// Runs `work` under the query timeout.
    pub(crate) async fn bounded<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, QueryError>>,
    ) -> Result<T, QueryError> {
        tokio::time::timeout(self.limits.timeout, work)
            .await
            .map_err(|_| QueryError::Timeout(self.limits.timeout))?
    }

    /// The workflow reachable from `trace_id`: every span of every trace joined
    /// to it by span links (within `reach`), as an analysed graph.
    pub async fn lineage(
        &self,
        trace_id: &TraceId,
        reach: Reach,
    ) -> Result<LineageResult, QueryError> {
        let run = async {
            let mut result =
                reconstruct(&self.ctx, &self.source, *trace_id, reach, &self.write_tools).await?;
            if !result.lineage.traces.contains(trace_id) {
                return Err(QueryError::trace_not_found(trace_id));
            }
            crate::lineage::attach_events(&self.ctx, &self.events, &mut result.lineage).await?;
            Ok(result)
        };
        self.bounded(run).await
    }

    /// Recent workflows, newest first: one line each, a workflow spanning
    /// linked traces listed once (see [`crate::workflows`]).
    pub async fn workflows(
        &self,
        query: WorkflowQuery,
    ) -> Result<Vec<WorkflowSummary>, QueryError> {
        self.bounded(recent_workflows(
            &self.ctx,
            &self.source,
            &self.write_tools,
            &self.workflow_cache,
            query,
        ))
        .await
    }

    /// How many traces started in the window of `query` (its `limit` aside):
    /// how much of it a list of [`QueryEngine::workflows`] shows.
    pub async fn traces_started(&self, query: WorkflowQuery) -> Result<usize, QueryError> {
        self.bounded(traces_started(&self.ctx, &self.source, query))
            .await
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
                    .and(col(ai_col::ai_kind).eq(lit(AiKind::Llm.as_str())))
                    .and(col(ai_col::node).is_not_null()),
            )?;
            if let Some(model) = model {
                df = df.filter(col(ai_col::gen_ai_model).eq(lit(model)))?;
            }
            let df = df
                .aggregate(
                    vec![col(ai_col::node)],
                    vec![
                        count(lit(1)).alias("calls"),
                        sum(cast(
                            col(column::STATUS_CODE).eq(lit("error")),
                            DataType::Int64,
                        ))
                        .alias("errors"),
                        avg(cast(col(ai_col::kv_cache_hit), DataType::Float64))
                            .alias("kv_cache_hit_rate"),
                        avg(col(ai_col::kv_cache_hit_ratio)).alias("kv_cache_hit_ratio"),
                        p(ai_col::queue_wait_ns, 0.5).alias("queue_wait_p50_ns"),
                        p(ai_col::queue_wait_ns, 0.95).alias("queue_wait_p95_ns"),
                        p(ai_col::queue_wait_ns, 0.99).alias("queue_wait_p99_ns"),
                        p(ai_col::time_to_first_token_ns, 0.5).alias("ttft_p50_ns"),
                        p(ai_col::time_to_first_token_ns, 0.95).alias("ttft_p95_ns"),
                        p(ai_col::time_to_first_token_ns, 0.99).alias("ttft_p99_ns"),
                        sum(col(ai_col::input_tokens)).alias("input_tokens"),
                        sum(col(ai_col::output_tokens)).alias("output_tokens"),
                        sum(col(ai_col::cost)).alias("cost"),
                        max(col(column::END_TIME)).alias("last_seen"),
                    ],
                )?
                .sort(vec![
                    col("kv_cache_hit_rate").sort(false, false),
                    col("queue_wait_p50_ns").sort(true, false),
                    col(ai_col::node).sort(true, false),
                ])?;
            Ok::<_, QueryError>(df.collect().await?)
        };
        self.bounded(run).await
    }

    /// Every span that ended at or after `since_ns` (and started within an
    /// hour before it), oldest end first, handed to `each` batch by batch:
    /// how a restarted server rebuilds its live signals from the WAL and
    /// recent files. Not under the query timeout: the server is not ready
    /// until it is done. Returns the spans read.
    pub async fn replay_recent(
        &self,
        since_ns: i64,
        mut each: impl FnMut(&RecordBatch),
    ) -> Result<usize, QueryError> {
        use futures::StreamExt;
        let df = self
            .ctx
            .table("spans")
            .await?
            .filter(
                col(column::END_TIME)
                    .gt_eq(timestamp(since_ns))
                    .and(col(column::START_TIME).gt_eq(timestamp(since_ns - 3_600_000_000_000))),
            )?
            .sort(vec![col(column::END_TIME).sort(true, false)])?;
        let mut stream = df.execute_stream().await?;
        let mut spans = 0;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            spans += batch.num_rows();
            each(&batch);
        }
        Ok(spans)
    }

    /// Plans one read-only statement (DDL, DML, COPY and SET are rejected).
    /// No LIMIT is added for the result caps: the answer is read as a stream
    /// and reading stops at a cap, which stops the query (a LIMIT would turn a
    /// sort that can spill into a top-k that cannot).
    async fn plan_read_only(&self, sql: &str) -> Result<LogicalPlan, QueryError> {
        check_depth(sql)?;
        let plan = match self.ctx.state().create_logical_plan(sql).await {
            Ok(plan) => plan,
            // A write that does not even plan (`INSERT … VALUES` of the wrong
            // width) is still refused for being a write, not for its mistake.
            Err(e) => return Err(writes_by_keyword(sql).map_or(e.into(), read_only)),
        };
        refuse_changes(&plan)?;
        Ok(plan)
    }

    /// Plans one read-only statement as [`QueryEngine::sql`] does, without
    /// running it (Flight SQL describes a result before fetching it); the
    /// plan may hold `$n` placeholders, bound before [`QueryEngine::run`].
    pub async fn plan_sql(&self, sql: &str) -> Result<LogicalPlan, QueryError> {
        self.bounded(self.plan_read_only(sql)).await
    }

    /// Every table and view a query may name, for clients' catalog browsers.
    pub async fn tables(&self) -> Result<Vec<TableEntry>, QueryError> {
        let mut tables = Vec::new();
        for catalog_name in self.ctx.catalog_names() {
            let Some(catalog) = self.ctx.catalog(&catalog_name) else {
                continue;
            };
            for schema_name in catalog.schema_names() {
                let Some(schema) = catalog.schema(&schema_name) else {
                    continue;
                };
                for name in schema.table_names() {
                    if let Some(table) = schema.table(&name).await? {
                        tables.push(TableEntry {
                            catalog: catalog_name.clone(),
                            schema: schema_name.clone(),
                            table_type: match table.table_type() {
                                datafusion::datasource::TableType::View => "VIEW",
                                _ => "TABLE",
                            },
                            arrow_schema: table.schema(),
                            name,
                        });
                    }
                }
            }
        }
        tables.sort_by(|a, b| {
            (&a.catalog, &a.schema, &a.name).cmp(&(&b.catalog, &b.schema, &b.name))
        });
        Ok(tables)
    }

    /// Plans one statement parsed elsewhere (the PostgreSQL listener parses
    /// with PostgreSQL's rewrites), read-only like [`QueryEngine::sql`]. The
    /// plan may hold `$n` placeholders, to be bound before [`QueryEngine::run`].
    pub async fn plan_statement(
        &self,
        mut statement: datafusion::sql::sqlparser::ast::Statement,
    ) -> Result<LogicalPlan, QueryError> {
        use datafusion::sql::parser::Statement;
        crate::pg_catalog::functions_in_from(&mut statement, &self.ctx);
        crate::pg_catalog::in_subqueries_outside_filters(&mut statement);
        let plan = self
            .bounded(async {
                Ok(self
                    .ctx
                    .state()
                    .statement_to_plan(Statement::Statement(Box::new(statement)))
                    .await?)
            })
            .await?;
        refuse_changes(&plan)?;
        Ok(plan)
    }

    /// Starts a plan from [`QueryEngine::plan_statement`] (its placeholders
    /// bound): the answer is read batch by batch, within the same result caps,
    /// deadline and memory pool as [`QueryEngine::sql`]'s.
    pub async fn run(&self, plan: LogicalPlan) -> Result<Answer, QueryError> {
        refuse_changes(&plan)?;
        self.start(plan, tokio::time::Instant::now() + self.limits.timeout)
            .await
    }

    async fn start(
        &self,
        plan: LogicalPlan,
        deadline: tokio::time::Instant,
    ) -> Result<Answer, QueryError> {
        let start = async {
            let df = self.ctx.execute_logical_plan(plan).await?;
            let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
            Ok::<_, QueryError>((schema, df.execute_stream().await?))
        };
        let (schema, stream) = tokio::time::timeout_at(deadline, start)
            .await
            .map_err(|_| QueryError::Timeout(self.limits.timeout))??;
        let reservation =
            MemoryConsumer::new("query API answer").register(&self.ctx.runtime_env().memory_pool);
        Ok(Answer {
            schema,
            stream,
            caps: Caps::new(self.limits),
            deadline,
            timeout: self.limits.timeout,
            done: false,
            reservation,
        })
    }

    /// Runs one read-only statement and collects its answer, within the
    /// result caps; the batches held count against the memory limit.
    pub async fn sql(&self, sql: &str) -> Result<QueryResult, QueryError> {
        let mut answer = self.sql_stream(sql).await?;
        let mut batches = Vec::new();
        let mut held = 0usize;
        while let Some(batch) = answer.next_batch().await? {
            held = held.saturating_add(batch.get_array_memory_size());
            answer.reservation.try_resize(held)?;
            batches.push(batch);
        }
        Ok(QueryResult {
            schema: Arc::clone(&answer.schema),
            batches,
            truncated: answer.truncated().map(str::to_owned),
        })
    }

    /// Starts one read-only statement whose answer is read batch by batch
    /// ([`Answer::next_batch`]), within the result caps and by the deadline
    /// of the query timeout; `reserve` charges what the reader holds to the
    /// same memory pool as the query.
    pub(crate) async fn sql_stream(&self, sql: &str) -> Result<Answer, QueryError> {
        let deadline = tokio::time::Instant::now() + self.limits.timeout;
        let plan = tokio::time::timeout_at(deadline, self.plan_read_only(sql))
            .await
            .map_err(|_| QueryError::Timeout(self.limits.timeout))??;
        self.start(plan, deadline).await
    }

    /// The event store's rows of one trace (log records of its spans), ids
    /// as bytes, for [`weft_collector::traces_data_json_with_events`].
    pub async fn trace_events(&self, trace_id: &TraceId) -> Result<Vec<RecordBatch>, QueryError> {
        let run = async {
            let df = self
                .ctx
                .read_table(stored_table(&self.events, Stored::Spans))?
                .filter(col(column::TRACE_ID).eq(trace_id_literal(trace_id)))?;
            Ok::<_, QueryError>(df.collect().await?)
        };
        self.bounded(run).await
    }

    /// Every span of one trace, ordered by start time, ids as bytes (for
    /// `traces_data_json`, which shows them). The filter on `trace_id` lets
    /// Parquet skip row groups by statistics and bloom filter.
    pub async fn trace(&self, trace_id: &TraceId) -> Result<Vec<RecordBatch>, QueryError> {
        let run = async {
            let df = self
                .ctx
                .read_table(stored_table(&self.source, Stored::Spans))?
                .filter(col(column::TRACE_ID).eq(trace_id_literal(trace_id)))?
                .sort(vec![col(column::START_TIME).sort(true, false)])?;
            Ok::<_, QueryError>(df.collect().await?)
        };
        self.bounded(run).await
    }
}

/// The caps on one answer: at most `max_result_rows` rows and about
/// `max_result_bytes` (in memory, as Arrow); says which cut the answer.
struct Caps {
    max_rows: usize,
    max_bytes: usize,
    rows: usize,
    bytes: usize,
    truncated: Option<String>,
}

impl Caps {
    fn new(limits: QueryLimits) -> Self {
        Self {
            max_rows: limits.max_result_rows,
            max_bytes: limits.max_result_bytes,
            rows: 0,
            bytes: 0,
            truncated: None,
        }
    }

    /// What of `batch` the answer keeps, and whether the answer is complete
    /// (a cap was reached) after it.
    fn admit(&mut self, batch: RecordBatch) -> (Option<RecordBatch>, bool) {
        let (max_rows, max_bytes) = (self.max_rows, self.max_bytes);
        let room_rows = max_rows - self.rows;
        if batch.num_rows() > room_rows {
            self.rows = max_rows;
            self.truncated = Some(format!(
                "the first {max_rows} rows (max_result_rows); narrow the query or add a LIMIT"
            ));
            return ((room_rows > 0).then(|| batch.slice(0, room_rows)), true);
        }
        let size = batch.get_array_memory_size();
        if self.bytes.saturating_add(size) > max_bytes && self.rows > 0 {
            self.truncated = Some(format!(
                "the first {} rows, about {} bytes (max_result_bytes is {max_bytes}); \
                 narrow the query or select fewer columns",
                self.rows, self.bytes
            ));
            return (None, true);
        }
        self.rows += batch.num_rows();
        self.bytes = self.bytes.saturating_add(size);
        (Some(batch), false)
    }
}

/// An answer being read: the running query's batches within the caps.
pub struct Answer {
    pub schema: SchemaRef,
    stream: SendableRecordBatchStream,
    caps: Caps,
    deadline: tokio::time::Instant,
    timeout: Duration,
    done: bool,
    /// What the reader of this answer holds, charged to the query memory pool.
    pub reservation: MemoryReservation,
}

impl Answer {
    /// The next batch of the answer; `None` once it is whole or cut short.
    pub async fn next_batch(&mut self) -> Result<Option<RecordBatch>, QueryError> {
        use futures::StreamExt;
        while !self.done {
            let next = tokio::time::timeout_at(self.deadline, self.stream.next())
                .await
                .map_err(|_| QueryError::Timeout(self.timeout))?;
            let Some(batch) = next else {
                self.done = true;
                break;
            };
            let (kept, done) = self.caps.admit(batch?);
            self.done = done;
            if let Some(kept) = kept.filter(|b| b.num_rows() > 0) {
                return Ok(Some(kept));
            }
        }
        Ok(None)
    }

    /// Why the answer stops short of every row, once it does.
    pub fn truncated(&self) -> Option<&str> {
        self.caps.truncated.as_deref()
    }
}

/// Operators one statement may hold. DataFusion parses `a + b + c …`
/// iteratively but plans, optimises, drops and evaluates the resulting tree
/// recursively, one stack frame per level: an unbounded chain aborts the
/// process on a stack overflow. Bounded here, before DataFusion sees it, so
/// such a query gets a clear error; the runtime's 16 MiB thread stacks hold
/// trees of this depth with room to spare.
pub const MAX_SQL_OPERATORS: usize = 1_000;
/// How deeply brackets may nest (function calls, subqueries, parentheses).
pub const MAX_SQL_NESTING: usize = 128;

/// Refuses SQL whose expression trees could be deeper than the limits above,
/// counting on the token stream (the tokenizer is iterative).
pub fn check_depth(sql: &str) -> Result<(), QueryError> {
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::keywords::Keyword;
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        .tokenize()
        .map_err(|e| QueryError::Sql(e.to_string()))?;
    let (mut operators, mut depth, mut deepest) = (0usize, 0usize, 0usize);
    for token in &tokens {
        match token {
            Token::LParen | Token::LBracket => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            Token::RParen | Token::RBracket => depth = depth.saturating_sub(1),
            Token::Plus
            | Token::Minus
            | Token::Mul
            | Token::Div
            | Token::Mod
            | Token::StringConcat
            | Token::Eq
            | Token::DoubleEq
            | Token::Neq
            | Token::Lt
            | Token::Gt
            | Token::LtEq
            | Token::GtEq
            | Token::Spaceship
            | Token::Ampersand
            | Token::Pipe
            | Token::Caret
            | Token::ShiftLeft
            | Token::ShiftRight
            | Token::Arrow
            | Token::LongArrow => operators += 1,
            Token::Word(w)
                if matches!(
                    w.keyword,
                    Keyword::AND | Keyword::OR | Keyword::NOT | Keyword::CASE | Keyword::WHEN
                ) =>
            {
                operators += 1
            }
            _ => {}
        }
    }
    if operators > MAX_SQL_OPERATORS {
        return Err(QueryError::Sql(format!(
            "the query has {operators} operators; at most {MAX_SQL_OPERATORS} are allowed in one \
             statement: use IN (…) for long lists of alternatives, or split the query"
        )));
    }
    if deepest > MAX_SQL_NESTING {
        return Err(QueryError::Sql(format!(
            "brackets nest {deepest} deep; at most {MAX_SQL_NESTING} levels are allowed"
        )));
    }
    Ok(())
}

/// Refuses `plan` if it would change something.
fn refuse_changes(plan: &LogicalPlan) -> Result<(), QueryError> {
    match changes_something(plan)? {
        Some(refused) => Err(read_only(refused)),
        None => Ok(()),
    }
}

fn read_only(refused: &str) -> QueryError {
    QueryError::ReadOnly(format!(
        "{refused} is not allowed; Weft's SQL is read-only (SELECT, WITH, EXPLAIN)"
    ))
}

/// What the statement's first keyword says it would change, if anything
/// (for statements that fail to plan, so [`changes_something`] never sees them).
fn writes_by_keyword(sql: &str) -> Option<&'static str> {
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::keywords::Keyword;
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    let tokens = Tokenizer::new(&GenericDialect {}, sql).tokenize().ok()?;
    let first = tokens.iter().find_map(|t| match t {
        Token::Whitespace(_) => None,
        Token::Word(w) => Some(Some(w.keyword)),
        _ => Some(None),
    })??;
    match first {
        Keyword::INSERT | Keyword::UPDATE | Keyword::DELETE | Keyword::MERGE => {
            Some("DML (INSERT, UPDATE, DELETE)")
        }
        Keyword::CREATE | Keyword::DROP | Keyword::ALTER | Keyword::TRUNCATE => {
            Some("DDL (CREATE, DROP)")
        }
        Keyword::COPY => Some("COPY"),
        Keyword::SET | Keyword::PREPARE | Keyword::BEGIN | Keyword::COMMIT => {
            Some("a statement (SET, PREPARE, transactions)")
        }
        _ => None,
    }
}

/// What in `plan` would change state, if anything: DDL (CREATE, DROP), DML
/// (INSERT, UPDATE, DELETE), COPY, or a statement (SET, PREPARE, transactions).
/// Checked on the plan's variants, anywhere in the tree (inside EXPLAIN too).
fn changes_something(plan: &LogicalPlan) -> Result<Option<&'static str>, QueryError> {
    let mut refused = None;
    plan.apply(|node| {
        refused = match node {
            LogicalPlan::Ddl(_) => Some("DDL (CREATE, DROP)"),
            LogicalPlan::Dml(_) => Some("DML (INSERT, UPDATE, DELETE)"),
            LogicalPlan::Copy(_) => Some("COPY"),
            LogicalPlan::Statement(_) => Some("a statement (SET, PREPARE, transactions)"),
            _ => None,
        };
        Ok(if refused.is_some() {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    })?;
    Ok(refused)
}
