//! The service and agent dependency graph: the `service_calls` view and
//! `GET /api/graph`'s aggregate of it.

use arrow::record_batch::RecordBatch;
use datafusion::prelude::{col, lit};

use super::QueryEngine;
use crate::error::QueryError;
use crate::time::timestamp;

/// One cross-service or cross-agent call per row: the `service_calls` view,
/// from which `GET /api/graph` aggregates the dependency graph.
pub(super) const SERVICE_CALLS_SQL: &str = "SELECT \
    p.service_name AS caller_service, c.service_name AS callee_service, \
    p.agent_name AS caller_agent, c.agent_name AS callee_agent, \
    c.start_time AS start_time, c.duration_ns AS duration_ns, \
    c.status_code = 'error' AS is_error \
  FROM spans c JOIN spans p ON c.trace_id = p.trace_id AND c.parent_span_id = p.span_id \
  WHERE (p.service_name IS DISTINCT FROM c.service_name) \
     OR (c.agent_name IS NOT NULL AND (p.agent_name IS DISTINCT FROM c.agent_name))";

impl QueryEngine {
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
}
