//! Loading a workflow's spans: walk the `span_links` index from the starting
//! trace, then read every span of the traces reached from `spans` at once.

use std::collections::BTreeSet;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, ListArray, RecordBatch, StringArray,
    TimestampNanosecondArray,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimeUnit};
use datafusion::prelude::{Expr, SessionContext, col, lit};
use weft_schemas::settled::col as link_col;
use weft_schemas::{AiKind, ApprovalState, PolicyVerdict, SpanId, StatusCode, TraceId};

use super::{Direction, LineageSpan, StepAi};
use crate::error::QueryError;

/// Which traces to load, starting from one.
#[derive(Debug, Clone, Copy)]
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

/// The spans of every trace reachable from `start`, and whether a limit cut the walk short.
///
/// The walk reads only the `span_links` index (one bloom-filtered lookup per
/// hop); the spans of all the traces it reaches are then read in one query.
pub async fn workflow_spans(
    ctx: &SessionContext,
    start: TraceId,
    reach: Reach,
) -> Result<(Vec<LineageSpan>, bool), QueryError> {
    let mut visited: BTreeSet<TraceId> = BTreeSet::from([start]);
    let mut frontier: Vec<TraceId> = vec![start];
    let mut hops = 0u32;
    let mut truncated = false;
    loop {
        let next: BTreeSet<TraceId> = linked_traces(ctx, &frontier, reach.direction)
            .await?
            .into_iter()
            .filter(|t| !visited.contains(t))
            .collect();
        if next.is_empty() {
            break;
        }
        if reach.max_depth.is_some_and(|d| hops >= d) || visited.len() >= reach.max_traces {
            truncated = true;
            break;
        }
        hops += 1;
        frontier = next
            .into_iter()
            .take(reach.max_traces - visited.len())
            .collect();
        visited.extend(frontier.iter().copied());
    }
    let traces: Vec<TraceId> = visited.into_iter().collect();
    Ok((spans_of(ctx, &traces).await?, truncated))
}

/// The traces joined to `traces` by a span link, in `direction`: upstream are
/// those their spans link to, downstream those whose spans link to them.
async fn linked_traces(
    ctx: &SessionContext,
    traces: &[TraceId],
    direction: Direction,
) -> Result<BTreeSet<TraceId>, QueryError> {
    let mut out = BTreeSet::new();
    if direction != Direction::Downstream {
        out.extend(link_ends(ctx, traces, link_col::TRACE_ID, link_col::LINKED_TRACE_ID).await?);
    }
    if direction != Direction::Upstream {
        out.extend(link_ends(ctx, traces, link_col::LINKED_TRACE_ID, link_col::TRACE_ID).await?);
    }
    Ok(out)
}

/// The distinct `to` trace ids of the `span_links` rows whose `from` column is
/// one of `traces`. One column per query, so the bloom filter on it prunes.
async fn link_ends(
    ctx: &SessionContext,
    traces: &[TraceId],
    from: &str,
    to: &str,
) -> Result<Vec<TraceId>, QueryError> {
    let ids: Vec<Expr> = traces.iter().map(|t| lit(t.to_hex())).collect();
    let batches = ctx
        .table("span_links")
        .await?
        .filter(col(from).in_list(ids, false))?
        .select_columns(&[to])?
        .distinct()?
        .collect()
        .await?;
    let mut out = Vec::new();
    for batch in &batches {
        let ends = utf8(batch, to)?;
        out.extend((0..batch.num_rows()).filter_map(|row| ends.value(row).parse::<TraceId>().ok()));
    }
    Ok(out)
}

const COLUMNS: &[&str] = &[
    "trace_id",
    "span_id",
    "parent_span_id",
    "name",
    "service_name",
    "start_time",
    "end_time",
    "status_code",
    "status_message",
    "links",
    "ai_kind",
    "identity",
    "workload_identity",
    "policy_name",
    "policy_verdict",
    "tool_name",
    "tool_call_id",
    "attributes",
    "retrieval_source",
    "retrieved_document_ids",
    "approval_state",
    "approver",
    "gen_ai_model",
    "input_tokens",
    "output_tokens",
    "node",
    "kv_cache_hit",
];

/// Every span of the given traces. Ids are compared as literals, never spliced into SQL.
pub async fn spans_of(
    ctx: &SessionContext,
    traces: &[TraceId],
) -> Result<Vec<LineageSpan>, QueryError> {
    if traces.is_empty() {
        return Ok(Vec::new());
    }
    let ids = traces.iter().map(|t| lit(t.to_hex())).collect();
    let batches = ctx
        .table("spans")
        .await?
        .filter(col("trace_id").in_list(ids, false))?
        .select_exprs(COLUMNS)?
        .collect()
        .await?;
    let mut out = Vec::new();
    for batch in &batches {
        read_batch(batch, &mut out)?;
    }
    Ok(out)
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef, QueryError> {
    batch
        .column_by_name(name)
        .ok_or_else(|| QueryError::Internal(format!("lineage query lacks column {name}")))
}

fn utf8(batch: &RecordBatch, name: &str) -> Result<StringArray, QueryError> {
    let c = cast(column(batch, name)?, &DataType::Utf8)?;
    Ok(c.as_string::<i32>().clone())
}

fn list<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ListArray, QueryError> {
    column(batch, name)?
        .as_any()
        .downcast_ref::<ListArray>()
        .ok_or_else(|| QueryError::Internal(format!("{name} is not a list")))
}

fn opt(a: &StringArray, row: usize) -> Option<String> {
    (!a.is_null(row)).then(|| a.value(row).to_owned())
}

/// The `attributes` map flattened once per batch, for reading a few keys per row.
struct FlatMap {
    offsets: Vec<i32>,
    keys: StringArray,
    values: StringArray,
}

impl FlatMap {
    fn new(column: &ArrayRef) -> Result<Self, QueryError> {
        let map = column
            .as_any()
            .downcast_ref::<arrow::array::MapArray>()
            .ok_or_else(|| QueryError::Internal("attributes is not a map".into()))?;
        Ok(Self {
            offsets: map.value_offsets().to_vec(),
            keys: cast(map.keys(), &DataType::Utf8)?
                .as_string::<i32>()
                .clone(),
            values: cast(map.values(), &DataType::Utf8)?
                .as_string::<i32>()
                .clone(),
        })
    }

    fn get(&self, row: usize, key: &str) -> Option<String> {
        let range = self.offsets[row] as usize..self.offsets[row + 1] as usize;
        range
            .into_iter()
            .find(|i| self.keys.value(*i) == key)
            .filter(|i| !self.values.is_null(*i))
            .map(|i| self.values.value(i).to_owned())
    }
}

/// A list column of strings or of structs whose first two fields are ids,
/// flattened once per batch so rows are read by offset, not sliced one by one.
struct Flat {
    offsets: Vec<i32>,
    nulls: Option<arrow::buffer::NullBuffer>,
    first: StringArray,
    second: Option<StringArray>,
}

impl Flat {
    fn new(list: &ListArray) -> Result<Self, QueryError> {
        let values = list.values();
        let (first, second) = match values.data_type() {
            DataType::Struct(_) => {
                let s = values.as_struct();
                (
                    cast(s.column(0), &DataType::Utf8)?
                        .as_string::<i32>()
                        .clone(),
                    Some(
                        cast(s.column(1), &DataType::Utf8)?
                            .as_string::<i32>()
                            .clone(),
                    ),
                )
            }
            _ => (
                cast(values, &DataType::Utf8)?.as_string::<i32>().clone(),
                None,
            ),
        };
        Ok(Self {
            offsets: list.value_offsets().to_vec(),
            nulls: list.nulls().cloned(),
            first,
            second,
        })
    }

    fn range(&self, row: usize) -> std::ops::Range<usize> {
        if self.nulls.as_ref().is_some_and(|n| n.is_null(row)) {
            return 0..0;
        }
        self.offsets[row] as usize..self.offsets[row + 1] as usize
    }

    fn strings(&self, row: usize) -> Vec<String> {
        self.range(row)
            .map(|i| self.first.value(i).to_owned())
            .collect()
    }

    fn pairs(&self, row: usize) -> Vec<(TraceId, SpanId)> {
        let Some(second) = &self.second else {
            return Vec::new();
        };
        self.range(row)
            .filter_map(|i| {
                Some((
                    self.first.value(i).parse().ok()?,
                    second.value(i).parse().ok()?,
                ))
            })
            .collect()
    }
}

fn read_batch(batch: &RecordBatch, out: &mut Vec<LineageSpan>) -> Result<(), QueryError> {
    let s = |name| utf8(batch, name);
    let (trace, span, parent, name, service) = (
        s("trace_id")?,
        s("span_id")?,
        s("parent_span_id")?,
        s("name")?,
        s("service_name")?,
    );
    let (status, status_message, ai_kind, identity, workload) = (
        s("status_code")?,
        s("status_message")?,
        s("ai_kind")?,
        s("identity")?,
        s("workload_identity")?,
    );
    let attributes = FlatMap::new(column(batch, "attributes")?)?;
    let (policy, verdict, tool, call) = (
        s("policy_name")?,
        s("policy_verdict")?,
        s("tool_name")?,
        s("tool_call_id")?,
    );
    let (source, approval, approver, model, node) = (
        s("retrieval_source")?,
        s("approval_state")?,
        s("approver")?,
        s("gen_ai_model")?,
        s("node")?,
    );
    let ts = |name| -> Result<TimestampNanosecondArray, QueryError> {
        let c = cast(
            column(batch, name)?,
            &DataType::Timestamp(TimeUnit::Nanosecond, None),
        )?;
        Ok(c.as_primitive().clone())
    };
    let (start, end) = (ts("start_time")?, ts("end_time")?);
    let int = |name| -> Result<Int64Array, QueryError> {
        Ok(cast(column(batch, name)?, &DataType::Int64)?
            .as_primitive()
            .clone())
    };
    let (input, output) = (int("input_tokens")?, int("output_tokens")?);
    let kv: BooleanArray = cast(column(batch, "kv_cache_hit")?, &DataType::Boolean)?
        .as_boolean()
        .clone();
    let docs = Flat::new(list(batch, "retrieved_document_ids")?)?;
    let links = Flat::new(list(batch, "links")?)?;
    let int_opt = |a: &Int64Array, row: usize| (!a.is_null(row)).then(|| a.value(row));

    for row in 0..batch.num_rows() {
        let (Ok(trace_id), Ok(span_id)) = (
            trace.value(row).parse::<TraceId>(),
            span.value(row).parse::<SpanId>(),
        ) else {
            continue;
        };
        let document_ids = docs.strings(row);
        out.push(LineageSpan {
            trace_id,
            span_id,
            parent_span_id: opt(&parent, row).and_then(|p| p.parse().ok()),
            name: name.value(row).to_owned(),
            service: opt(&service, row),
            start_ns: start.value(row),
            end_ns: end.value(row),
            status: StatusCode::parse(status.value(row)),
            status_message: opt(&status_message, row),
            links: links.pairs(row),
            ai: StepAi {
                ai_kind: opt(&ai_kind, row).and_then(|k| AiKind::parse(&k)),
                identity: opt(&identity, row),
                workload_identity: opt(&workload, row),
                policy_name: opt(&policy, row),
                policy_verdict: opt(&verdict, row).and_then(|v| PolicyVerdict::parse(&v)),
                tool_name: opt(&tool, row),
                tool_call_id: opt(&call, row),
                tool_effect: attributes.get(row, "weft.tool.effect"),
                retrieval_source: opt(&source, row),
                document_ids,
                approval_state: opt(&approval, row).and_then(|a| ApprovalState::parse(&a)),
                approver: opt(&approver, row),
                approval_action: attributes.get(row, "weft.approval.action"),
                model: opt(&model, row),
                input_tokens: int_opt(&input, row),
                output_tokens: int_opt(&output, row),
                node: opt(&node, row),
                kv_cache_hit: (!kv.is_null(row)).then(|| kv.value(row)),
            },
        });
    }
    Ok(())
}
