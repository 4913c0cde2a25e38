//! Workflows one [`WorkflowSummary`] each: the recent ones, newest first (the
//! list the TUI opens on and `GET /api/workflows` answers), and one
//! conversation's, oldest first (`GET /api/workflows?conversation=`, SQL
//! `conversation()`, the TUI's conversation view).
//!
//! Root spans in the time window name candidate traces; each is reconstructed
//! with the one lineage code path ([`reconstruct`]), so a workflow spanning
//! linked traces is listed once, with flags from the same analyses lineage
//! shows. Summaries are cached with the span count and last end of each of
//! their traces; one aggregate query per list checks them, so a list
//! refreshed every few seconds reconstructs only the workflows that changed.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::prelude::{DataFrame, SessionContext, col};
use weft_lineage::{SETTLE_NS, WorkflowSummary};
use weft_schemas::TraceId;
use weft_schemas::schema::col as column;

use crate::error::QueryError;
use crate::lineage::{LineageRules, Reach, reconstruct};
use crate::table::{SpanSource, Stored, stored_table};
use crate::time::timestamp;

/// Workflows one list holds at most.
pub const MAX_WORKFLOWS: usize = 1_000;
/// Root spans read per workflow asked for: linked traces share a workflow,
/// so more roots than workflows are needed.
const ROOTS_PER_WORKFLOW: usize = 4;
/// How long a summary is kept at most, even unchanged (bounds the memory of
/// workflows no list shows any more).
const CACHE_TTL: Duration = Duration::from_secs(300);
/// Entries kept before the cache is emptied.
const CACHE_ENTRIES: usize = 10_000;

/// What a workflow's traces held when it was summarised: per trace, its span
/// count and last end (Unix ns), sorted by trace.
type Signature = Vec<(TraceId, i64, i64)>;

/// A summary and the signature it was made from.
struct Cached {
    at: Instant,
    summary: Arc<WorkflowSummary>,
    signature: Signature,
}

/// Workflow summaries, by each of their traces.
#[derive(Default)]
pub(crate) struct WorkflowCache(Mutex<HashMap<TraceId, Arc<Cached>>>);

impl WorkflowCache {
    fn get(&self, trace: &TraceId) -> Option<Arc<Cached>> {
        let map = self.0.lock().ok()?;
        map.get(trace)
            .filter(|c| c.at.elapsed() < CACHE_TTL)
            .map(Arc::clone)
    }

    fn put(&self, summary: Arc<WorkflowSummary>, signature: Signature) {
        let Ok(mut map) = self.0.lock() else { return };
        if map.len() + summary.traces.len() > CACHE_ENTRIES {
            map.clear();
        }
        let cached = Arc::new(Cached {
            at: Instant::now(),
            summary,
            signature,
        });
        for t in &cached.summary.traces {
            map.insert(*t, Arc::clone(&cached));
        }
    }
}

/// The signature of a reconstructed workflow, from its nodes.
fn signature_of(lineage: &weft_lineage::Lineage) -> Signature {
    let mut per: HashMap<TraceId, (i64, i64)> = HashMap::new();
    for n in &lineage.nodes {
        let e = per.entry(n.span.trace_id).or_insert((0, i64::MIN));
        e.0 += 1;
        e.1 = e.1.max(n.span.end_ns);
    }
    let mut out: Signature = per.into_iter().map(|(t, (n, end))| (t, n, end)).collect();
    out.sort_unstable_by_key(|(t, _, _)| *t);
    out
}

/// The current span count and last end of each of `traces`, as stored.
async fn signatures(
    ctx: &SessionContext,
    source: &Arc<dyn SpanSource>,
    traces: &[TraceId],
) -> Result<HashMap<TraceId, (i64, i64)>, QueryError> {
    use arrow::array::AsArray;
    use arrow::datatypes::{DataType, Int64Type, TimeUnit};
    use datafusion::functions_aggregate::expr_fn::{count, max};
    use datafusion::logical_expr::cast;
    use datafusion::prelude::lit;
    let mut out = HashMap::new();
    if traces.is_empty() {
        return Ok(out);
    }
    let ids: Vec<_> = traces.iter().map(crate::ids::trace_id_literal).collect();
    let end_ns = cast(
        cast(
            col(column::END_TIME),
            DataType::Timestamp(TimeUnit::Nanosecond, None),
        ),
        DataType::Int64,
    );
    let batches = ctx
        .read_table(stored_table(source, Stored::Spans))?
        .filter(col(column::TRACE_ID).in_list(ids, false))?
        .aggregate(
            vec![col(column::TRACE_ID)],
            vec![count(lit(1)).alias("n"), max(end_ns).alias("end_ns")],
        )?
        .collect()
        .await?;
    for b in &batches {
        let bad = || QueryError::Internal("workflow signatures: unexpected columns".into());
        let ids = b.column(0).as_fixed_size_binary_opt().ok_or_else(bad)?;
        let n = b
            .column(1)
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(bad)?;
        let end = b
            .column(2)
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(bad)?;
        for row in 0..b.num_rows() {
            if let Ok(id) = TraceId::try_from(ids.value(row)) {
                out.insert(id, (n.value(row), end.value(row)));
            }
        }
    }
    Ok(out)
}

/// The window and page of one list.
#[derive(Debug, Clone, Copy)]
pub struct WorkflowQuery {
    /// Root spans starting at or after this (Unix ns) ...
    pub since_ns: i64,
    /// ... and before this.
    pub until_ns: i64,
    /// Workflows passed over first, newest first (paging).
    pub offset: usize,
    /// Workflows at most (capped at [`MAX_WORKFLOWS`]).
    pub limit: usize,
}

/// One conversation's page of workflows.
#[derive(Debug, Clone)]
pub struct ConversationQuery {
    /// The conversation: `gen_ai.conversation.id` or `session.id` as sent.
    pub id: String,
    /// Workflows passed over first, oldest first (paging).
    pub offset: usize,
    /// Workflows at most (interfaces cap it at [`MAX_WORKFLOWS`]).
    pub limit: usize,
}

/// Traces of one conversation read at most: what a conversation lists.
pub const MAX_CONVERSATION_TRACES: usize = 100_000;

/// A page of a conversation's workflows, oldest first.
#[derive(Debug, Clone)]
pub struct Conversation {
    pub workflows: Vec<WorkflowSummary>,
    /// Traces with a span in the conversation (capped at
    /// [`MAX_CONVERSATION_TRACES`]): what the pages cover.
    pub traces: usize,
}

/// The root spans that started in the query's window.
fn roots_in_window(
    ctx: &SessionContext,
    source: &Arc<dyn SpanSource>,
    query: WorkflowQuery,
) -> Result<DataFrame, QueryError> {
    Ok(ctx
        .read_table(stored_table(source, Stored::Spans))?
        .filter(
            col(column::PARENT_SPAN_ID)
                .is_null()
                .and(col(column::START_TIME).gt_eq(timestamp(query.since_ns)))
                .and(col(column::START_TIME).lt(timestamp(query.until_ns))),
        )?)
}

/// How many traces started (root spans) in the query's window: what a
/// capped list is a part of.
pub(crate) async fn traces_started(
    ctx: &SessionContext,
    source: &Arc<dyn SpanSource>,
    query: WorkflowQuery,
) -> Result<usize, QueryError> {
    Ok(roots_in_window(ctx, source, query)?.count().await?)
}

/// The trace ids of column 0 of `batches`, in order.
fn trace_ids(batches: &[arrow::array::RecordBatch]) -> Result<Vec<TraceId>, QueryError> {
    let mut out = Vec::new();
    for batch in batches {
        let ids = batch
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::FixedSizeBinaryArray>()
            .ok_or_else(|| QueryError::Internal("trace_id is not fixed-size bytes".into()))?;
        out.extend(ids.iter().filter_map(|id| TraceId::try_from(id?).ok()));
    }
    Ok(out)
}

pub(crate) async fn recent_workflows(
    ctx: &SessionContext,
    source: &Arc<dyn SpanSource>,
    rules: &LineageRules,
    cache: &WorkflowCache,
    query: WorkflowQuery,
) -> Result<Vec<WorkflowSummary>, QueryError> {
    let limit = query.limit.min(MAX_WORKFLOWS);
    if limit == 0 {
        return Ok(Vec::new());
    }
    let wanted = query.offset.saturating_add(limit);
    let batches = roots_in_window(ctx, source, query)?
        .select_columns(&[column::TRACE_ID, column::START_TIME])?
        .sort(vec![col(column::START_TIME).sort(false, false)])?
        .limit(0, Some(wanted.saturating_mul(ROOTS_PER_WORKFLOW)))?
        .collect()
        .await?;
    let roots = trace_ids(&batches)?;
    summarise(ctx, source, rules, cache, roots, query.offset, limit).await
}

/// The traces with a span in conversation `id`, by their first such span's
/// start (then id), at most [`MAX_CONVERSATION_TRACES`].
async fn conversation_traces(
    ctx: &SessionContext,
    source: &Arc<dyn SpanSource>,
    id: &str,
) -> Result<Vec<TraceId>, QueryError> {
    use datafusion::functions_aggregate::expr_fn::min;
    use datafusion::prelude::lit;
    use weft_schemas::ai_col;
    let batches = ctx
        .read_table(stored_table(source, Stored::Spans))?
        .filter(col(ai_col::conversation_id).eq(lit(id)))?
        .aggregate(
            vec![col(column::TRACE_ID)],
            vec![min(col(column::START_TIME)).alias("first")],
        )?
        .sort(vec![
            col("first").sort(true, false),
            col(column::TRACE_ID).sort(true, false),
        ])?
        .limit(0, Some(MAX_CONVERSATION_TRACES))?
        .collect()
        .await?;
    trace_ids(&batches)
}

/// A conversation's workflows in order (by the first step of each that names
/// the conversation), one summary each, a page at a time.
pub(crate) async fn conversation_workflows(
    ctx: &SessionContext,
    source: &Arc<dyn SpanSource>,
    rules: &LineageRules,
    cache: &WorkflowCache,
    query: &ConversationQuery,
) -> Result<Conversation, QueryError> {
    if query.id.is_empty() {
        return Err(QueryError::Sql(
            "a conversation id is not empty; name one as sent in gen_ai.conversation.id or session.id".into(),
        ));
    }
    let traces = conversation_traces(ctx, source, &query.id).await?;
    let count = traces.len();
    let workflows = summarise(ctx, source, rules, cache, traces, query.offset, query.limit).await?;
    Ok(Conversation {
        workflows,
        traces: count,
    })
}

/// The summaries of the workflows `traces` open, in their order: a trace that
/// belongs to an earlier workflow opens none; the first `skip` workflows are
/// passed over (still reconstructed, to know their traces), and at most
/// `limit` follow. Cached summaries whose traces hold what they held are reused.
async fn summarise(
    ctx: &SessionContext,
    source: &Arc<dyn SpanSource>,
    rules: &LineageRules,
    cache: &WorkflowCache,
    traces: Vec<TraceId>,
    skip: usize,
    limit: usize,
) -> Result<Vec<WorkflowSummary>, QueryError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let roots = traces;
    // The cached summaries still true: every trace they cover holds what it held.
    let cached: HashMap<TraceId, Arc<Cached>> = roots
        .iter()
        .filter_map(|t| Some((*t, cache.get(t)?)))
        .collect();
    let members: Vec<TraceId> = cached
        .values()
        .flat_map(|c| c.summary.traces.iter().copied())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let now = signatures(ctx, source, &members).await?;
    let unchanged = |c: &Cached| {
        c.signature
            .iter()
            .all(|(t, n, end)| now.get(t) == Some(&(*n, *end)))
    };
    let now_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
    let settled_before = now_ns.saturating_sub(SETTLE_NS);
    let mut listed: HashSet<TraceId> = HashSet::new();
    let mut passed_over = 0;
    let mut out = Vec::new();
    for trace in roots {
        if out.len() == limit {
            break;
        }
        if listed.contains(&trace) {
            continue;
        }
        let summary = match cached.get(&trace).filter(|c| unchanged(c)) {
            // Unchanged, but time has passed: it may have settled since.
            Some(c) if c.summary.in_flight && c.summary.end_ns < settled_before => {
                let mut s = WorkflowSummary::clone(&c.summary);
                s.in_flight = false;
                Arc::new(s)
            }
            Some(c) => Arc::clone(&c.summary),
            None => {
                let result = reconstruct(ctx, source, trace, Reach::default(), rules).await?;
                let Some(summary) = WorkflowSummary::of(&result.lineage) else {
                    continue;
                };
                let summary = Arc::new(summary);
                cache.put(Arc::clone(&summary), signature_of(&result.lineage));
                summary
            }
        };
        listed.extend(summary.traces.iter().copied());
        listed.insert(trace);
        if passed_over < skip {
            passed_over += 1;
            continue;
        }
        out.push(WorkflowSummary::clone(&summary));
    }
    Ok(out)
}
