//! Loading a workflow's spans for `weft-lineage`: walk the `span_links` index
//! from the starting trace, then read every span of the traces reached from
//! `spans` at once, as plain [`LineageSpan`]s. It reads the tables as stored,
//! ids as bytes: nothing here is shown to anyone, so nothing is hex. The graph, its analyses and its
//! renderings live in `weft-lineage`, which knows nothing of DataFusion.

use std::collections::BTreeSet;

use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use datafusion::prelude::{DataFrame, Expr, SessionContext, col};
use futures::StreamExt;
use std::collections::HashSet;

use datafusion::functions_nested::expr_fn::{array_has_any, make_array};
use datafusion::prelude::lit;
use weft_lineage::evidence::{self, EvidenceRules};
use weft_lineage::{BuildOptions, Lineage, LineageSpan, Node, StepAi, build_nodes};
use weft_schemas::conventions::AI_COLUMNS;
use weft_schemas::schema::col as col_name;
use weft_schemas::settled::col as link_col;
use weft_schemas::{SpanKind, SpanReader, TraceId, ai_col};

use crate::error::QueryError;
use crate::ids::trace_id_literal;
use crate::table::{SpanSource, Stored, stored_table};

/// Which way to follow span links from the starting trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// Both ways: the whole workflow.
    #[default]
    Both,
    /// Toward causes: follow links a span holds to earlier spans.
    Upstream,
    /// Toward effects: follow links other spans hold to these.
    Downstream,
}

impl Direction {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "both" => Some(Direction::Both),
            "upstream" => Some(Direction::Upstream),
            "downstream" => Some(Direction::Downstream),
            _ => None,
        }
    }
}

/// Which traces to load, starting from one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reach {
    pub direction: Direction,
    /// Link hops across traces to follow; `None` follows until nothing new.
    pub max_depth: Option<u32>,
    /// Stop adding traces past this many.
    pub max_traces: usize,
}

impl Default for Reach {
    fn default() -> Self {
        Self {
            direction: Direction::Both,
            max_depth: None,
            max_traces: 1_000,
        }
    }
}

/// The spans of every trace reachable from `start` (by span links, and by
/// evidence under `evidence`), and whether a limit cut the walk short.
///
/// The link walk reads only the `span_links` index (one bloom-filtered lookup
/// per hop); the spans of all the traces it reaches are then read in one
/// query. Evidence then looks for the spans elsewhere carrying the ids these
/// spans carry, keeps the traces of those [`evidence::joins`] joins to them,
/// and walks their links in turn, until nothing new joins.
pub(crate) async fn workflow_spans(
    ctx: &SessionContext,
    source: &Arc<dyn SpanSource>,
    start: TraceId,
    reach: Reach,
    evidence: &EvidenceRules,
) -> Result<(Vec<Node>, bool), QueryError> {
    let mut visited: BTreeSet<TraceId> = BTreeSet::from([start]);
    let mut walk = Walk {
        hops: 0,
        truncated: false,
    };
    walk_links(ctx, source, vec![start], &mut visited, reach, &mut walk).await?;
    let mut spans = spans_of(ctx, source, &visited.iter().copied().collect::<Vec<_>>()).await?;
    if !evidence.enabled() {
        return Ok((spans, walk.truncated));
    }
    loop {
        let joined = evidence_traces(ctx, source, &spans, &visited, evidence, &mut walk).await?;
        if joined.is_empty() {
            break;
        }
        if reach.max_depth.is_some_and(|d| walk.hops >= d) || visited.len() >= reach.max_traces {
            walk.truncated = true;
            break;
        }
        walk.hops += 1;
        let frontier: Vec<TraceId> = joined
            .into_iter()
            .take(reach.max_traces - visited.len())
            .collect();
        let before: BTreeSet<TraceId> = visited.clone();
        visited.extend(frontier.iter().copied());
        walk_links(ctx, source, frontier, &mut visited, reach, &mut walk).await?;
        let added: Vec<TraceId> = visited.difference(&before).copied().collect();
        spans.extend(spans_of(ctx, source, &added).await?);
    }
    Ok((spans, walk.truncated))
}

/// How far a walk went, and whether a limit stopped it.
struct Walk {
    hops: u32,
    truncated: bool,
}

/// Adds to `visited` every trace joined to `frontier` by span links, hop by
/// hop, within `reach`.
async fn walk_links(
    ctx: &SessionContext,
    source: &Arc<dyn SpanSource>,
    mut frontier: Vec<TraceId>,
    visited: &mut BTreeSet<TraceId>,
    reach: Reach,
    walk: &mut Walk,
) -> Result<(), QueryError> {
    loop {
        let next: BTreeSet<TraceId> = linked_traces(ctx, source, &frontier, reach.direction)
            .await?
            .into_iter()
            .filter(|t| !visited.contains(t))
            .collect();
        if next.is_empty() {
            return Ok(());
        }
        if reach.max_depth.is_some_and(|d| walk.hops >= d) || visited.len() >= reach.max_traces {
            walk.truncated = true;
            return Ok(());
        }
        walk.hops += 1;
        frontier = next
            .into_iter()
            .take(reach.max_traces - visited.len())
            .collect();
        visited.extend(frontier.iter().copied());
    }
}

/// Ids looked up per evidence query at most; past it the walk is reported
/// cut short.
const MAX_EVIDENCE_IDS: usize = 10_000;
/// Candidate spans read per evidence query at most (an id on very many
/// spans is no evidence of anything).
const MAX_EVIDENCE_CANDIDATES: usize = 10_000;

/// The traces outside `visited` that evidence joins to `spans`.
async fn evidence_traces(
    ctx: &SessionContext,
    source: &Arc<dyn SpanSource>,
    spans: &[Node],
    visited: &BTreeSet<TraceId>,
    rules: &EvidenceRules,
    walk: &mut Walk,
) -> Result<BTreeSet<TraceId>, QueryError> {
    let mut tool_ids: BTreeSet<&str> = BTreeSet::new();
    let mut message_ids: BTreeSet<&str> = BTreeSet::new();
    for s in spans {
        let f = &s.ai.fields;
        tool_ids.extend(f.tool_call_id());
        tool_ids.extend(f.approval_action());
        tool_ids.extend(
            f.requested_tool_call_ids()
                .into_iter()
                .flatten()
                .map(String::as_str),
        );
        message_ids.extend(f.message_id());
    }
    if tool_ids.len() + message_ids.len() > MAX_EVIDENCE_IDS {
        walk.truncated = true;
    }
    let text = |ids: &BTreeSet<&str>| -> Vec<Expr> {
        ids.iter()
            .take(MAX_EVIDENCE_IDS)
            .map(|v| lit(v.to_string()))
            .collect()
    };
    let (tools, messages) = (text(&tool_ids), text(&message_ids));
    let mut wanted: Vec<Expr> = Vec::new();
    if !tools.is_empty() {
        wanted.push(col(ai_col::tool_call_id).in_list(tools.clone(), false));
        wanted.push(col(ai_col::approval_action).in_list(tools.clone(), false));
        wanted.push(array_has_any(
            col(ai_col::requested_tool_call_ids),
            make_array(tools),
        ));
    }
    if !messages.is_empty() {
        wanted.push(col(ai_col::message_id).in_list(messages, false));
    }
    let Some(any) = wanted.into_iter().reduce(Expr::or) else {
        return Ok(BTreeSet::new());
    };
    let known: Vec<TraceId> = visited.iter().copied().collect();
    let batches = ctx
        .read_table(stored_table(source, Stored::Spans))?
        .filter(any.and(col(col_name::TRACE_ID).in_list(id_literals(&known), true)))?
        .select_exprs(&lineage_columns())?
        .limit(0, Some(MAX_EVIDENCE_CANDIDATES + 1))?
        .collect()
        .await?;
    let mut candidates = Vec::new();
    let mut texts = Interned::default();
    for batch in &batches {
        read_batch(batch, &mut candidates, &mut texts)?;
    }
    if candidates.len() > MAX_EVIDENCE_CANDIDATES {
        candidates.truncate(MAX_EVIDENCE_CANDIDATES);
        walk.truncated = true;
    }
    if candidates.is_empty() {
        return Ok(BTreeSet::new());
    }
    // The rule that draws the edges decides which candidates belong: one end
    // already in the workflow, the other a candidate.
    let have = spans.len();
    let all: Vec<&LineageSpan> = spans.iter().chain(&candidates).map(|n| &n.span).collect();
    Ok(evidence::joins(&all, rules)
        .into_iter()
        .filter_map(|j| match (j.from < have, j.to < have) {
            (true, false) => Some(all[j.to].trace_id),
            (false, true) => Some(all[j.from].trace_id),
            _ => None,
        })
        .collect())
}

/// The traces joined to `traces` by a span link, in `direction`: upstream are
/// those their spans link to, downstream those whose spans link to them.
async fn linked_traces(
    ctx: &SessionContext,
    source: &Arc<dyn SpanSource>,
    traces: &[TraceId],
    direction: Direction,
) -> Result<BTreeSet<TraceId>, QueryError> {
    let links = ctx.read_table(stored_table(source, Stored::Links))?;
    // The two directions are two queries (each filters one bloom-filtered
    // column), run side by side.
    let upstream = async {
        if direction == Direction::Downstream {
            return Ok(Vec::new());
        }
        link_ends(
            &links,
            traces,
            link_col::TRACE_ID,
            link_col::LINKED_TRACE_ID,
        )
        .await
    };
    let downstream = async {
        if direction == Direction::Upstream {
            return Ok(Vec::new());
        }
        link_ends(
            &links,
            traces,
            link_col::LINKED_TRACE_ID,
            link_col::TRACE_ID,
        )
        .await
    };
    let (up, down) = tokio::try_join!(upstream, downstream)?;
    Ok(up.into_iter().chain(down).collect())
}

/// Trace ids as literals of the stored id column: compared as bytes, never as text.
fn id_literals(traces: &[TraceId]) -> Vec<Expr> {
    traces.iter().map(trace_id_literal).collect()
}

/// The distinct `to` trace ids of the `span_links` rows whose `from` column is
/// one of `traces`. One column per query, so the bloom filter on it prunes.
async fn link_ends(
    links: &DataFrame,
    traces: &[TraceId],
    from: &str,
    to: &str,
) -> Result<Vec<TraceId>, QueryError> {
    let batches = links
        .clone()
        .filter(col(from).in_list(id_literals(traces), false))?
        .select_columns(&[to])?
        .distinct()?
        .collect()
        .await?;
    let mut out = Vec::new();
    for batch in &batches {
        let ends = batch
            .column_by_name(to)
            .ok_or_else(|| QueryError::Internal(format!("link query lacks column {to}")))?;
        let ends = ends
            .as_fixed_size_binary_opt()
            .ok_or_else(|| QueryError::Internal(format!("link column {to} is not bytes")))?;
        out.extend(ends.iter().filter_map(|end| TraceId::try_from(end?).ok()));
    }
    Ok(out)
}

/// The columns lineage reads of each span besides the AI columns, which it
/// reads all of (the schema's list, [`AI_COLUMNS`]).
const COLUMNS: &[&str] = &[
    col_name::TRACE_ID,
    col_name::SPAN_ID,
    col_name::PARENT_SPAN_ID,
    col_name::NAME,
    col_name::KIND,
    col_name::SERVICE_NAME,
    col_name::START_TIME,
    col_name::END_TIME,
    col_name::STATUS_CODE,
    col_name::STATUS_MESSAGE,
    col_name::LINKS,
    col_name::ATTRIBUTES,
];

/// Every column lineage reads: [`COLUMNS`], then every AI column.
fn lineage_columns() -> Vec<&'static str> {
    COLUMNS
        .iter()
        .copied()
        .chain(AI_COLUMNS.iter().map(|c| c.name))
        .collect()
}

/// Every span of the given traces. Ids are compared as literals, never spliced into SQL.
pub(crate) async fn spans_of(
    ctx: &SessionContext,
    source: &Arc<dyn SpanSource>,
    traces: &[TraceId],
) -> Result<Vec<Node>, QueryError> {
    if traces.is_empty() {
        return Ok(Vec::new());
    }
    let matching = ctx
        .read_table(stored_table(source, Stored::Spans))?
        .filter(col(col_name::TRACE_ID).in_list(id_literals(traces), false))?;
    // Sized once, in the nodes the graph is analysed in: a span is almost a
    // kilobyte, and growing by doubling (or moving into nodes later) would
    // copy a million of them again. Counting reads the id column only.
    let rows = matching.clone().count().await?;
    let mut out = Vec::with_capacity(rows);
    // Batch by batch as the scan decodes them: the scan runs on the other
    // core meanwhile, and no batch outlives its conversion (collecting
    // them first held every column of every span beside the nodes).
    let mut batches = matching
        .select_exprs(&lineage_columns())?
        .execute_stream()
        .await?;
    let mut texts = Interned::default();
    while let Some(batch) = batches.next().await {
        read_batch(&batch?, &mut out, &mut texts)?;
    }
    Ok(out)
}

/// One shared copy of each distinct text: a million spans name a few
/// services, span kinds, tenants and tool effects.
#[derive(Default)]
struct Interned(HashSet<Arc<str>>);

impl Interned {
    fn get(&mut self, text: &str) -> Arc<str> {
        if let Some(shared) = self.0.get(text) {
            return Arc::clone(shared);
        }
        let shared: Arc<str> = Arc::from(text);
        self.0.insert(Arc::clone(&shared));
        shared
    }
}

fn read_batch(
    batch: &RecordBatch,
    out: &mut Vec<Node>,
    texts: &mut Interned,
) -> Result<(), QueryError> {
    let r = SpanReader::with_columns(batch, COLUMNS)
        .map_err(|e| QueryError::Internal(format!("lineage query: {e}")))?;
    for row in 0..r.len() {
        let (Some(trace_id), Some(span_id)) = (r.trace_id(row), r.span_id(row)) else {
            continue;
        };
        out.push(Node::new(LineageSpan {
            events: Vec::new(),
            trace_id,
            span_id,
            parent_span_id: r.parent_span_id(row),
            name: r.name(row).into(),
            kind: match r.kind(row) {
                SpanKind::Internal | SpanKind::Unspecified => None,
                kind => Some(texts.get(kind.as_str())),
            },
            service: r.service_name(row).map(|s| texts.get(s)),
            start_ns: r.start_ns(row),
            end_ns: r.end_ns(row),
            status: r.status(row),
            status_message: r.status_message(row).map(str::to_owned),
            links: r
                .links(row)
                .filter_map(|l| Some((l.trace_id?, l.span_id?)))
                .collect(),
            ai: StepAi::from_fields(r.ai(row), |key| r.attribute(row, key).map(|v| texts.get(v))),
        }));
    }
    Ok(())
}

/// Puts the event store's rows of `lineage`'s traces (log records of spans,
/// such as GenAI events) on the spans they belong to, in time order.
pub(crate) async fn attach_events(
    ctx: &SessionContext,
    events: &Arc<dyn SpanSource>,
    lineage: &mut weft_lineage::Lineage,
) -> Result<(), QueryError> {
    use std::collections::HashMap;
    use weft_schemas::SpanId;
    let traces = &lineage.traces;
    if traces.is_empty() {
        return Ok(());
    }
    let columns = &[
        col_name::TRACE_ID,
        col_name::PARENT_SPAN_ID,
        col_name::START_TIME,
        col_name::NAME,
        col_name::ATTRIBUTES,
    ];
    let batches = ctx
        .read_table(stored_table(events, Stored::Spans))?
        .filter(col(col_name::TRACE_ID).in_list(id_literals(traces), false))?
        .select_columns(columns)?
        .collect()
        .await?;
    let mut by_span: HashMap<(TraceId, SpanId), Vec<weft_lineage::StepEvent>> = HashMap::new();
    for batch in &batches {
        let r = SpanReader::with_columns(batch, columns)
            .map_err(|e| QueryError::Internal(format!("reading events for lineage: {e}")))?;
        for row in 0..r.len() {
            let (Some(trace), Some(span)) = (r.trace_id(row), r.parent_span_id(row)) else {
                continue;
            };
            by_span
                .entry((trace, span))
                .or_default()
                .push(weft_lineage::StepEvent {
                    time_ns: r.start_ns(row),
                    name: r.name(row).to_owned(),
                    body: r
                        .attribute(row, weft_schemas::EVENT_BODY_KEY)
                        .map(str::to_owned),
                });
        }
    }
    for node in &mut lineage.nodes {
        if let Some(mut events) = by_span.remove(&(node.span.trace_id, node.span.span_id)) {
            events.sort_by_key(|e| e.time_ns);
            node.span.events = events;
        }
    }
    Ok(())
}

/// What lineage analysis is told besides the spans: which tools write, and
/// which evidence joins spans whose trace context was lost.
#[derive(Debug, Clone, Default)]
pub struct LineageRules {
    pub write_tools: HashSet<String>,
    pub evidence: EvidenceRules,
}

/// A reconstructed workflow and whether a depth or size limit cut it short.
#[derive(Debug, Clone)]
pub struct LineageResult {
    pub lineage: Lineage,
    pub truncated: bool,
}

/// The one way a workflow is reconstructed — for `/api/lineage`, `weft lineage`
/// and the `lineage()`/`ancestors()`/`descendants()` table functions alike:
/// walk the link index and load the spans through `ctx` (so its memory pool
/// bounds the reads), then build and analyse the graph off the async threads.
/// A trace with no spans gives an empty lineage; callers decide if that is an error.
pub(crate) async fn reconstruct(
    ctx: &SessionContext,
    source: &Arc<dyn SpanSource>,
    trace_id: TraceId,
    reach: Reach,
    rules: &LineageRules,
) -> Result<LineageResult, QueryError> {
    let started = std::time::Instant::now();
    let (spans, truncated) = workflow_spans(ctx, source, trace_id, reach, &rules.evidence).await?;
    let fetched = started.elapsed();
    let options = BuildOptions {
        now_ns: chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX),
        write_tools: rules.write_tools.clone(),
        evidence: rules.evidence.clone(),
    };
    let lineage = tokio::task::spawn_blocking(move || build_nodes(spans, &options))
        .await
        .map_err(|e| QueryError::Internal(format!("lineage build failed: {e}")))?;
    tracing::debug!(
        spans = lineage.nodes.len(),
        traces = lineage.traces.len(),
        fetch_ms = fetched.as_millis() as u64,
        build_ms = (started.elapsed() - fetched).as_millis() as u64,
        "lineage reconstructed"
    );
    Ok(LineageResult { lineage, truncated })
}
