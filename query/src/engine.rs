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

use crate::error::QueryError;
use crate::table::{SpanSource, SpansTable};

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

/// Runs SQL against the `spans` table of one span source.
pub struct QueryEngine {
    ctx: SessionContext,
    limits: QueryLimits,
}

impl QueryEngine {
    /// An engine whose `spans` table reads `source` at every query.
    pub fn new(source: Arc<dyn SpanSource>, limits: QueryLimits) -> Result<Self, QueryError> {
        let config = SessionConfig::new()
            .with_information_schema(true)
            .set_bool("datafusion.execution.parquet.pushdown_filters", true)
            .set_bool("datafusion.execution.parquet.reorder_filters", true);
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(limits.memory_bytes, 1.0)
            .build_arc()?;
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        ctx.register_table("spans", Arc::new(SpansTable::new(source)))?;
        Ok(Self { ctx, limits })
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
        tokio::time::timeout(self.limits.timeout, run)
            .await
            .map_err(|_| QueryError::Timeout(self.limits.timeout))?
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
        tokio::time::timeout(self.limits.timeout, run)
            .await
            .map_err(|_| QueryError::Timeout(self.limits.timeout))?
    }
}
