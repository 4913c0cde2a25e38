//! Lineage in SQL: `lineage('<trace_id>')`, `ancestors('<trace_id>', '<span_id>')`
//! and `descendants('<trace_id>', '<span_id>')` table functions, one row per
//! span with its depth, the edge that reached it and the governance finding it
//! raised, so lineage composes with every other query. They reconstruct the
//! workflow through [`crate::lineage::reconstruct`], the same entry point as
//! `/api/lineage` and `weft lineage`, with the engine's settings and limits.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{ScalarValue, plan_err};
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use weft_schemas::schema::{timestamp_type, timestamps_from_nanos};
use weft_schemas::{SpanId, TraceId};

use datafusion::execution::SessionState;
use weft_lineage::{EdgeKind, Lineage};

use crate::error::QueryError;
use crate::lineage::{LineageRules, Reach, reconstruct};
use crate::lineage_cache::{DataVersion, Freshness, LineageCache};
use crate::table::SpanSource;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Whole,
    Ancestors,
    Descendants,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Whole => "lineage",
            Mode::Ancestors => "ancestors",
            Mode::Descendants => "descendants",
        }
    }
}

/// Registers the three table functions on `ctx`.
pub(crate) fn register_lineage_functions(
    ctx: &SessionContext,
    source: &Arc<dyn SpanSource>,
    rules: Arc<LineageRules>,
    cache: Arc<LineageCache>,
) {
    for mode in [Mode::Whole, Mode::Ancestors, Mode::Descendants] {
        ctx.register_udtf(
            mode.name(),
            Arc::new(LineageFunction {
                source: Arc::clone(source),
                rules: Arc::clone(&rules),
                cache: Arc::clone(&cache),
                mode,
            }),
        );
    }
}

struct LineageFunction {
    source: Arc<dyn SpanSource>,
    rules: Arc<LineageRules>,
    cache: Arc<LineageCache>,
    mode: Mode,
}

impl std::fmt::Debug for LineageFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}()", self.mode.name())
    }
}

fn text_arg(exprs: &[Expr], i: usize, what: &str, function: &str) -> Result<String> {
    match exprs.get(i) {
        Some(Expr::Literal(ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)), _)) => {
            Ok(s.clone())
        }
        _ => plan_err!(
            "{function}() expects a {what} as text, e.g. {function}('0af7651916cd43dd8448eb211c80319c'{})",
            if function == "lineage" {
                ""
            } else {
                ", 'b7ad6b7169203331'"
            }
        ),
    }
}

impl TableFunctionImpl for LineageFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let name = self.mode.name();
        let exprs = args.exprs();
        let expected = if self.mode == Mode::Whole { 1 } else { 2 };
        if exprs.len() != expected {
            return plan_err!("{name}() takes {expected} argument(s), got {}", exprs.len());
        }
        let trace: TraceId = text_arg(exprs, 0, "trace id", name)?
            .parse()
            .map_err(|e| DataFusionError::Plan(format!("{name}(): {e}")))?;
        let span = if self.mode == Mode::Whole {
            None
        } else {
            Some(
                text_arg(exprs, 1, "span id", name)?
                    .parse::<SpanId>()
                    .map_err(|e| DataFusionError::Plan(format!("{name}(): {e}")))?,
            )
        };
        Ok(Arc::new(LineageTable {
            source: Arc::clone(&self.source),
            rules: Arc::clone(&self.rules),
            cache: Arc::clone(&self.cache),
            mode: self.mode,
            trace,
            span,
        }))
    }
}

struct LineageTable {
    source: Arc<dyn SpanSource>,
    rules: Arc<LineageRules>,
    cache: Arc<LineageCache>,
    mode: Mode,
    trace: TraceId,
    span: Option<SpanId>,
}

impl std::fmt::Debug for LineageTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}({})", self.mode.name(), self.trace)
    }
}

/// Columns of the lineage table functions.
pub fn lineage_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("trace_id", DataType::Utf8, false),
        Field::new("span_id", DataType::Utf8, false),
        Field::new("parent_span_id", DataType::Utf8, true),
        Field::new("name", DataType::Utf8, false),
        Field::new("service_name", DataType::Utf8, true),
        Field::new("ai_kind", DataType::Utf8, true),
        Field::new("depth", DataType::Int64, false),
        Field::new("reached_by", DataType::Utf8, true),
        Field::new("start_time", timestamp_type(), false),
        Field::new("end_time", timestamp_type(), false),
        Field::new("duration_ns", DataType::Int64, false),
        Field::new("self_time_ns", DataType::Int64, false),
        Field::new("on_critical_path", DataType::Boolean, false),
        Field::new("effective_identity", DataType::Utf8, true),
        Field::new("status_code", DataType::Utf8, false),
        Field::new("finding", DataType::Utf8, true),
        Field::new("evidence", DataType::Utf8, true),
    ]))
}

fn edge_name(kind: EdgeKind) -> &'static str {
    match kind {
        EdgeKind::Child => "child",
        EdgeKind::Orphan => "orphan",
        EdgeKind::Link => "link",
        EdgeKind::Evidence => "evidence",
    }
}

/// One output row: node index, distance, and the edge that reached it.
type Row = (usize, i64, Option<EdgeKind>);

/// `(node, distance, edge that reached it)` for the rows of `mode`.
fn select(lineage: &Lineage, mode: Mode, span: Option<(TraceId, SpanId)>) -> Vec<Row> {
    if mode == Mode::Whole {
        return (0..lineage.nodes.len())
            .map(|i| {
                (
                    i,
                    i64::from(lineage.nodes[i].depth),
                    lineage.nodes[i].reached_by,
                )
            })
            .collect();
    }
    let Some(start) = span.and_then(|(t, s)| {
        lineage
            .nodes
            .iter()
            .position(|n| n.span.trace_id == t && n.span.span_id == s)
    }) else {
        return Vec::new();
    };
    let mut next: Vec<Vec<(usize, EdgeKind)>> = vec![Vec::new(); lineage.nodes.len()];
    for e in &lineage.edges {
        match mode {
            Mode::Ancestors => next[e.to].push((e.from, e.kind)),
            _ => next[e.from].push((e.to, e.kind)),
        }
    }
    let mut seen = HashSet::from([start]);
    let mut queue = VecDeque::from([(start, 0i64)]);
    let mut rows = Vec::new();
    while let Some((v, d)) = queue.pop_front() {
        for (t, kind) in &next[v] {
            if seen.insert(*t) {
                rows.push((*t, d + 1, Some(*kind)));
                queue.push_back((*t, d + 1));
            }
        }
    }
    rows
}

fn to_batch(lineage: &Lineage, rows: &[Row]) -> Result<RecordBatch> {
    let n = |i: usize| &lineage.nodes[i];
    let finding = |i: usize| {
        let rules: Vec<&str> = lineage
            .summary
            .findings
            .iter()
            .filter(|f| f.step.node == i)
            .map(|f| f.rule.as_ref())
            .collect();
        (!rules.is_empty()).then(|| rules.join(","))
    };
    // `key=value` of the evidence edge into a node reached by one.
    let mut evidence: std::collections::HashMap<usize, String> = Default::default();
    for e in &lineage.edges {
        if let Some(ev) = &e.evidence {
            evidence
                .entry(e.to)
                .or_insert_with(|| format!("{}={}", ev.key, ev.value));
        }
    }
    let strs = |f: &dyn Fn(usize) -> Option<String>| -> ArrayRef {
        Arc::new(rows.iter().map(|(i, _, _)| f(*i)).collect::<StringArray>())
    };
    let ints = |f: &dyn Fn(&Row) -> i64| -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<Int64Array>())
    };
    let ts = |f: &dyn Fn(usize) -> i64| -> ArrayRef {
        timestamps_from_nanos(rows.iter().map(|(i, _, _)| f(*i)))
    };
    let columns: Vec<ArrayRef> = vec![
        strs(&|i| Some(n(i).span.trace_id.to_hex())),
        strs(&|i| Some(n(i).span.span_id.to_hex())),
        strs(&|i| n(i).span.parent_span_id.map(|p| p.to_hex())),
        strs(&|i| Some(n(i).span.name.to_string())),
        strs(&|i| n(i).span.service.as_deref().map(str::to_owned)),
        strs(&|i| n(i).span.ai.fields.ai_kind().map(|k| k.as_str().to_owned())),
        ints(&|r| r.1),
        Arc::new(
            rows.iter()
                .map(|r| r.2.map(edge_name))
                .collect::<StringArray>(),
        ),
        ts(&|i| n(i).span.start_ns),
        ts(&|i| n(i).span.end_ns),
        ints(&|r| n(r.0).span.duration_ns()),
        ints(&|r| n(r.0).self_time_ns),
        Arc::new(
            rows.iter()
                .map(|r| Some(n(r.0).on_critical_path))
                .collect::<BooleanArray>(),
        ),
        strs(&|i| n(i).effective_identity.as_deref().map(str::to_owned)),
        strs(&|i| Some(n(i).span.status.as_str().to_owned())),
        strs(&finding),
        Arc::new(
            rows.iter()
                .map(|r| match r.2 {
                    Some(EdgeKind::Evidence) => evidence.get(&r.0).cloned(),
                    _ => None,
                })
                .collect::<StringArray>(),
        ),
    ];
    Ok(RecordBatch::try_new(lineage_schema(), columns)?)
}

/// The session running a table function's query — its tables, memory pool
/// and settings — to reconstruct workflows on.
pub(crate) fn session_context(state: &dyn Session, function: &str) -> Result<SessionContext> {
    let session = state
        .as_any()
        .downcast_ref::<SessionState>()
        .ok_or_else(|| DataFusionError::Internal(format!("{function}(): not a SessionState")))?;
    Ok(SessionContext::new_with_state(session.clone()))
}

#[async_trait]
impl TableProvider for LineageTable {
    fn schema(&self) -> SchemaRef {
        lineage_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let ctx = session_context(state, self.mode.name())?;
        // Paging with LIMIT/OFFSET asks again: a reconstruction of exactly
        // this data is reused (see `lineage_cache`).
        let reach = Reach::default();
        let version = DataVersion::of(&self.source);
        let result = match self
            .cache
            .get(&self.trace, reach, false, Freshness::Current, version)
        {
            Some(kept) => kept,
            None => {
                let result = Arc::new(
                    reconstruct(&ctx, &self.source, self.trace, reach, &self.rules)
                        .await
                        .map_err(QueryError::into_datafusion)?,
                );
                self.cache.put(self.trace, reach, false, version, &result);
                result
            }
        };
        let lineage = &result.lineage;
        let rows = select(lineage, self.mode, self.span.map(|s| (self.trace, s)));
        let batch = to_batch(lineage, &rows)?;
        MemTable::try_new(lineage_schema(), vec![vec![batch]])?
            .scan(state, projection, filters, limit)
            .await
    }
}
