//! Recent workflows, newest first, one [`WorkflowSummary`] each: the list the
//! TUI opens on and `GET /api/workflows` answers.
//!
//! Root spans in the time window name candidate traces; each is reconstructed
//! with the one lineage code path ([`reconstruct`]), so a workflow spanning
//! linked traces is listed once, with flags from the same analyses lineage
//! shows. Settled workflows are cached, so a list refreshed every few seconds
//! reconstructs only what is still arriving or new.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::prelude::{SessionContext, col};
use weft_lineage::WorkflowSummary;
use weft_schemas::TraceId;
use weft_schemas::schema::col as column;

use crate::engine::{reconstruct, timestamp};
use crate::error::QueryError;
use crate::lineage::Reach;
use crate::table::{SpanSource, Stored, stored_table};

/// Workflows one list holds at most.
pub const MAX_WORKFLOWS: usize = 1_000;
/// Root spans read per workflow asked for: linked traces share a workflow,
/// so more roots than workflows are needed.
const ROOTS_PER_WORKFLOW: usize = 4;
/// How long a settled workflow's summary is reused; spans that arrive later
/// than lineage's settle time show after this.
const CACHE_TTL: Duration = Duration::from_secs(300);
/// Entries kept before the cache is emptied.
const CACHE_ENTRIES: usize = 10_000;

/// Summaries of settled workflows, by each of their traces.
#[derive(Default)]
pub(crate) struct WorkflowCache(Mutex<HashMap<TraceId, (Instant, Arc<WorkflowSummary>)>>);

impl WorkflowCache {
    fn get(&self, trace: &TraceId) -> Option<Arc<WorkflowSummary>> {
        let map = self.0.lock().ok()?;
        map.get(trace)
            .filter(|(at, _)| at.elapsed() < CACHE_TTL)
            .map(|(_, s)| Arc::clone(s))
    }

    fn put(&self, summary: Arc<WorkflowSummary>) {
        let Ok(mut map) = self.0.lock() else { return };
        if map.len() + summary.traces.len() > CACHE_ENTRIES {
            map.clear();
        }
        let now = Instant::now();
        for t in &summary.traces {
            map.insert(*t, (now, Arc::clone(&summary)));
        }
    }
}

/// The window and size of one list.
#[derive(Debug, Clone, Copy)]
pub struct WorkflowQuery {
    /// Root spans starting at or after this (Unix ns) ...
    pub since_ns: i64,
    /// ... and before this.
    pub until_ns: i64,
    /// Workflows at most (capped at [`MAX_WORKFLOWS`]).
    pub limit: usize,
}

pub(crate) async fn recent_workflows(
    ctx: &SessionContext,
    source: &Arc<dyn SpanSource>,
    write_tools: &HashSet<String>,
    cache: &WorkflowCache,
    query: WorkflowQuery,
) -> Result<Vec<WorkflowSummary>, QueryError> {
    let limit = query.limit.min(MAX_WORKFLOWS);
    if limit == 0 {
        return Ok(Vec::new());
    }
    let batches = ctx
        .read_table(stored_table(source, Stored::Spans))?
        .filter(
            col(column::PARENT_SPAN_ID)
                .is_null()
                .and(col(column::START_TIME).gt_eq(timestamp(query.since_ns)))
                .and(col(column::START_TIME).lt(timestamp(query.until_ns))),
        )?
        .select_columns(&[column::TRACE_ID, column::START_TIME])?
        .sort(vec![col(column::START_TIME).sort(false, false)])?
        .limit(0, Some(limit.saturating_mul(ROOTS_PER_WORKFLOW)))?
        .collect()
        .await?;
    let mut roots = Vec::new();
    for batch in &batches {
        let ids = batch
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::FixedSizeBinaryArray>()
            .ok_or_else(|| QueryError::Internal("trace_id is not fixed-size bytes".into()))?;
        roots.extend(ids.iter().filter_map(|id| TraceId::try_from(id?).ok()));
    }
    let mut listed: HashSet<TraceId> = HashSet::new();
    let mut out = Vec::new();
    for trace in roots {
        if out.len() == limit {
            break;
        }
        if listed.contains(&trace) {
            continue;
        }
        let summary = match cache.get(&trace) {
            Some(s) => s,
            None => {
                let result = reconstruct(ctx, source, trace, Reach::default(), write_tools).await?;
                let Some(summary) = WorkflowSummary::of(&result.lineage) else {
                    continue;
                };
                let summary = Arc::new(summary);
                if !summary.in_flight {
                    cache.put(Arc::clone(&summary));
                }
                summary
            }
        };
        listed.extend(summary.traces.iter().copied());
        listed.insert(trace);
        out.push(WorkflowSummary::clone(&summary));
    }
    Ok(out)
}
