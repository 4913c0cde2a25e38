//! The query engine: one DataFusion session per span source (and per tenant,
//! sharing one memory pool), and read-only execution within the time, memory
//! and result limits.
//!
//! - [`guard`]: what a statement may be (read-only, bounded depth);
//! - [`answer`]: an answer read as a stream within the result caps;
//! - [`service_graph`]: the `service_calls` view and `/api/graph`;
//! - [`signals`]: the live signals attached to the engine, and their SQL poll.

mod answer;
mod guard;
mod service_graph;
mod signals;

use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::memory_pool::MemoryConsumer;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SessionConfig, SessionContext, col};
use weft_lineage::WorkflowSummary;
use weft_schemas::TraceId;
use weft_schemas::conventions::AI_COLUMNS;
use weft_schemas::schema::col as column;

pub use self::answer::{Answer, QueryResult};
pub use self::guard::{MAX_SQL_NESTING, MAX_SQL_OPERATORS, check_depth};
use self::guard::{read_only, refuse_changes, writes_by_keyword};
use self::service_graph::SERVICE_CALLS_SQL;
pub(crate) use self::signals::SignalsSlot;
use crate::conversation_sql::register_conversation_function;
use crate::error::QueryError;
use crate::ids::trace_id_literal;
use crate::lineage::{LineageResult, LineageRules, Reach, reconstruct};
use crate::lineage_cache::{DataVersion, Freshness, LineageCache};
use crate::lineage_sql::register_lineage_functions;
use crate::table::{SpanSource, Stored, TenantSource, register_stored_tables, stored_table};
use crate::workflows::{
    Conversation, ConversationQuery, WorkflowCache, WorkflowQuery, conversation_workflows,
    recent_workflows, traces_started,
};

/// How an engine answers: its limits and the settings lineage analysis needs.
#[derive(Debug, Clone, Default)]
pub struct QuerySettings {
    pub limits: QueryLimits,
    /// Tools the governance checks treat as writing, besides `weft.tool.effect = write`.
    pub write_tools: Vec<String>,
    /// Which evidence joins spans whose trace context was lost (`evidence_keys`).
    pub evidence: weft_lineage::EvidenceRules,
    /// Run queries over workers (`weft worker`) instead of in this process alone.
    pub distribution: Option<weft_distributed::Distribution>,
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

/// Runs SQL against the `spans` table of one span source.
pub struct QueryEngine {
    ctx: SessionContext,
    source: Arc<dyn SpanSource>,
    /// The event store's rows (log records of spans), for `span_events`.
    events: Arc<dyn SpanSource>,
    limits: QueryLimits,
    rules: Arc<LineageRules>,
    /// The engines of each tenant seen so far (one per configured tenant),
    /// sharing this engine's memory pool.
    tenants: std::sync::Mutex<std::collections::HashMap<String, Arc<QueryEngine>>>,
    /// Recent reconstructions, for paging through big workflows.
    lineage_cache: Arc<LineageCache>,
    /// Settled workflows' summaries, for [`QueryEngine::workflows`],
    /// [`QueryEngine::conversation`] and SQL `conversation()`.
    workflow_cache: Arc<WorkflowCache>,
    /// The live signals, once a server that ingests attaches them (shared
    /// with the tenants' engines).
    signals: SignalsSlot,
    /// Where queries run: here alone (`None`), or over workers.
    distribution: Option<weft_distributed::Distribution>,
}

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
        let rules = Arc::new(LineageRules {
            write_tools: settings.write_tools.into_iter().collect(),
            evidence: settings.evidence,
        });
        // Fair shares for the operators that can spill (sorts, joins,
        // aggregations), so one cannot starve another into failing; the rest
        // (the API's answer among them) take from what is left.
        let pool = datafusion::execution::memory_pool::FairSpillPool::new(limits.memory_bytes);
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(pool))
            .with_max_temp_directory_size(limits.max_spill_bytes)
            .build_arc()?;
        let distribution = settings.distribution;
        Self::build(
            source,
            events,
            limits,
            rules,
            runtime,
            SignalsSlot::default(),
            distribution,
        )
        .await
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
                Arc::clone(&self.rules),
                self.ctx.runtime_env(),
                Arc::clone(&self.signals),
                self.distribution.clone(),
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
        rules: Arc<LineageRules>,
        runtime: Arc<datafusion::execution::runtime_env::RuntimeEnv>,
        signals: SignalsSlot,
        distribution: Option<weft_distributed::Distribution>,
    ) -> Result<Self, QueryError> {
        let config = SessionConfig::new()
            .with_default_catalog_and_schema(crate::pg_catalog::CATALOG, "public")
            .with_information_schema(true)
            .set_bool("datafusion.execution.parquet.pushdown_filters", true)
            .set_bool("datafusion.execution.parquet.reorder_filters", true);
        let mut state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features();
        if let Some(distribution) = &distribution {
            state = weft_distributed::coordinate(state, distribution)
                .map_err(|e| QueryError::Sql(e.to_string()))?;
        }
        let ctx = SessionContext::new_with_state(state.build());
        crate::bounded::register(&ctx);
        crate::pg_catalog::register(&ctx)?;
        register_stored_tables(&ctx, &source)?;
        let calls = ctx.sql(SERVICE_CALLS_SQL).await?.into_view();
        ctx.register_table("service_calls", calls)?;
        crate::table::register_span_events(&ctx, &events)?;
        let lineage_cache = Arc::new(LineageCache::default());
        register_lineage_functions(
            &ctx,
            &source,
            Arc::clone(&rules),
            Arc::clone(&lineage_cache),
        );
        let workflow_cache = Arc::new(WorkflowCache::default());
        register_conversation_function(
            &ctx,
            &source,
            Arc::clone(&rules),
            Arc::clone(&workflow_cache),
        );
        let tenant = source.tenant().map(str::to_owned);
        crate::signals::register(&ctx, Arc::clone(&signals), tenant);
        Ok(Self {
            ctx,
            source,
            events,
            limits,
            rules,
            tenants: Default::default(),
            workflow_cache,
            lineage_cache,
            signals,
            distribution,
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
    /// to it by span links (within `reach`), as an analysed graph, of the
    /// data as it is now.
    pub async fn lineage(
        &self,
        trace_id: &TraceId,
        reach: Reach,
    ) -> Result<Arc<LineageResult>, QueryError> {
        self.lineage_reading(trace_id, reach, Freshness::Current)
            .await
    }

    /// [`QueryEngine::lineage`], where a page past the first of a reading
    /// (`Freshness::NextPage`) comes from the reconstruction its first page
    /// came from (see [`crate::lineage_cache`]).
    pub async fn lineage_reading(
        &self,
        trace_id: &TraceId,
        reach: Reach,
        freshness: Freshness,
    ) -> Result<Arc<LineageResult>, QueryError> {
        let version = DataVersion::of(&self.source);
        if let Some(kept) = self
            .lineage_cache
            .get(trace_id, reach, true, freshness, version)
        {
            return Ok(kept);
        }
        let run = async {
            let mut result =
                reconstruct(&self.ctx, &self.source, *trace_id, reach, &self.rules).await?;
            if !result.lineage.traces.contains(trace_id) {
                return Err(QueryError::trace_not_found(trace_id));
            }
            crate::lineage::attach_events(&self.ctx, &self.events, &mut result.lineage).await?;
            Ok(result)
        };
        let result = Arc::new(self.bounded(run).await?);
        self.lineage_cache
            .put(*trace_id, reach, true, version, &result);
        Ok(result)
    }

    /// What changed between the run reachable from `a` and the one reachable
    /// from `b` (each a whole workflow, as [`QueryEngine::lineage`] builds it).
    pub async fn lineage_diff(
        &self,
        a: &TraceId,
        b: &TraceId,
    ) -> Result<weft_lineage::RunDiff, QueryError> {
        let (run_a, run_b) = tokio::try_join!(
            self.lineage(a, Reach::default()),
            self.lineage(b, Reach::default())
        )?;
        tokio::task::spawn_blocking(move || weft_lineage::diff(&run_a.lineage, &run_b.lineage))
            .await
            .map_err(|e| QueryError::Internal(format!("run diff failed: {e}")))
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
            &self.rules,
            &self.workflow_cache,
            query,
        ))
        .await
    }

    /// One conversation's workflows, oldest first, a page at a time (see
    /// [`crate::workflows`]).
    pub async fn conversation(
        &self,
        query: &ConversationQuery,
    ) -> Result<Conversation, QueryError> {
        self.bounded(conversation_workflows(
            &self.ctx,
            &self.source,
            &self.rules,
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
        Ok(Answer::new(
            schema,
            stream,
            self.limits,
            deadline,
            reservation,
        ))
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
    /// as bytes, for [`weft_otlp::traces_data_json_with_events`].
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
    /// Parquet skip row groups by statistics and bloom filter. The typed AI
    /// columns are not read: OTLP shows the attributes they come from, and
    /// a lookup's cost is a page of every column it reads.
    pub async fn trace(&self, trace_id: &TraceId) -> Result<Vec<RecordBatch>, QueryError> {
        let run = async {
            let schema = weft_schemas::span_schema();
            let otlp_columns: Vec<&str> = schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .filter(|name| !AI_COLUMNS.iter().any(|c| c.name == *name))
                .collect();
            let df = self
                .ctx
                .read_table(stored_table(&self.source, Stored::Spans))?
                .filter(col(column::TRACE_ID).eq(trace_id_literal(trace_id)))?
                .select_columns(&otlp_columns)?
                .sort(vec![col(column::START_TIME).sort(true, false)])?;
            Ok::<_, QueryError>(df.collect().await?)
        };
        self.bounded(run).await
    }
}
