//! The engine's side of the live signals: attached by a server that ingests
//! (shared with the tenants' engines), polled by SQL over the stored spans
//! (`load_signals`, for `?since=` and `--no-ingest` servers), and rebuilt
//! from the WAL and recent files at restart (`replay_recent`).

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use datafusion::prelude::{col, lit};
use weft_schemas::schema::col as column;
use weft_schemas::{AiKind, ai_col};

use super::QueryEngine;
use crate::error::QueryError;
use crate::time::timestamp;

/// Where an engine and its tenants' engines find the live signals.
pub(crate) type SignalsSlot = Arc<std::sync::OnceLock<Arc<weft_signals::Signals>>>;

impl QueryEngine {
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
}
