//! Settling traces: what the flush stores besides the spans themselves.
//!
//! When the live buffer is flushed, every trace in it settles: its whole shape
//! so far — the spans of its previous settlings plus the new ones — is numbered
//! depth-first ([`place`]), and the spans whose place is new (new spans, and
//! those the new ones moved, such as an ancestor whose bound widened) are
//! written as one `span_structure` file per flush and day: a trace that keeps
//! growing at its end costs writes in proportion to its new spans;
//! the flushed spans' links go to one `span_links` file, sorted by the span they
//! point at. Both are committed by the same flush as the spans, with the same
//! WAL sequence in their `txn`, so recovery treats them exactly like span files.
//!
//! Each stage is a plain function: [`shapes_from_spans`] and
//! [`placed_from_structure`] read Arrow, [`place`] numbers one trace,
//! [`structure_batch`] and [`link_rows`] build Arrow, [`settle`] writes files.

use std::collections::{BTreeMap, HashMap, HashSet};

use foldhash::{HashMap as FastMap, HashSet as FastSet, HashSetExt};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, FixedSizeBinaryBuilder, Int32Array, Int64Array, RecordBatch,
    StringArray,
};
use arrow::compute::{SortColumn, lexsort_to_indices, take_record_batch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use weft_schemas::schema::col::LINKS;
use weft_schemas::schema::timestamps_from_nanos;
use weft_schemas::settled::col;
use weft_schemas::{
    AiKind, SpanId, SpanReader, StatusCode, TraceId, links_schema, structure_schema,
};

use crate::error::{Error, Result};
use crate::parquet_files::{
    FileMeta, base_properties, file_name, sorted_by, with_bloom_filter, write_by_day,
};
use crate::storage::Storage;
use crate::tables::TableKind;

/// What structure needs of one span.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    pub span_id: SpanId,
    pub parent: Option<SpanId>,
    pub name: String,
    pub service: Option<String>,
    pub ai_kind: Option<AiKind>,
    pub status: StatusCode,
    pub start_ns: i64,
    pub end_ns: i64,
}

/// Where one span sits in its trace (index-aligned with the shapes placed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// Index of the top of this span's tree.
    pub root: usize,
    pub depth: i32,
    pub left: i32,
    pub right: i32,
    /// The parent is missing from the trace, or following parents loops.
    pub orphan: bool,
}

/// Keeps the first shape of each span id.
pub fn dedup_shapes(shapes: Vec<Shape>) -> Vec<Shape> {
    let mut seen = FastSet::with_capacity(shapes.len());
    shapes
        .into_iter()
        .filter(|s| seen.insert(s.span_id))
        .collect()
}

/// Numbers one trace depth-first: true roots first, then orphans, each list
/// and every span's children in start order. Span ids must be unique.
pub fn place(shapes: &[Shape]) -> Vec<Placement> {
    let n = shapes.len();
    let index: FastMap<SpanId, usize> = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| (s.span_id, i))
        .collect();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut tops: Vec<(bool, i64, usize)> = Vec::new();
    for (i, s) in shapes.iter().enumerate() {
        match s.parent.and_then(|p| index.get(&p)) {
            Some(&p) if p != i => children[p].push(i),
            Some(_) => tops.push((true, s.start_ns, i)),
            None => tops.push((s.parent.is_some(), s.start_ns, i)),
        }
    }
    for list in &mut children {
        list.sort_by_key(|c| (shapes[*c].start_ns, *c));
    }
    tops.sort_unstable();

    let unplaced = Placement {
        root: usize::MAX,
        depth: -1,
        left: -1,
        right: -1,
        orphan: false,
    };
    let mut out = vec![unplaced; n];
    let mut counter = 0i32;
    let mut visit = |top: usize, orphan: bool, out: &mut Vec<Placement>| {
        // Iterative DFS: (node, next child to enter).
        let mut stack = vec![(top, 0usize)];
        out[top] = Placement {
            root: top,
            depth: 0,
            left: counter,
            right: -1,
            orphan,
        };
        counter += 1;
        while let Some((node, next)) = stack.last_mut() {
            let node = *node;
            match children[node].get(*next) {
                Some(&c) => {
                    *next += 1;
                    if out[c].depth >= 0 {
                        continue;
                    }
                    out[c] = Placement {
                        root: top,
                        depth: out[node].depth + 1,
                        left: counter,
                        right: -1,
                        orphan: false,
                    };
                    counter += 1;
                    stack.push((c, 0));
                }
                None => {
                    out[node].right = counter;
                    counter += 1;
                    stack.pop();
                }
            }
        }
    };
    for (orphan, _, top) in tops {
        visit(top, orphan, &mut out);
    }
    // Whatever is left hangs off a parent cycle: break it at its earliest span.
    let mut rest: Vec<usize> = (0..n).filter(|i| out[*i].depth < 0).collect();
    rest.sort_by_key(|i| (shapes[*i].start_ns, *i));
    for i in rest {
        if out[i].depth < 0 {
            visit(i, true, &mut out);
        }
    }
    out
}

/// The shape of every span in a `spans` batch, by trace, in row order.
pub fn shapes_from_spans(batch: &RecordBatch) -> Result<BTreeMap<TraceId, Vec<Shape>>> {
    read_shapes(batch, None)
}

/// Both tables name these columns alike; rows with unparsable ids are skipped
/// (normalise already refused them, so there are none in practice).
fn read_shapes(
    batch: &RecordBatch,
    wanted: Option<&HashSet<TraceId>>,
) -> Result<BTreeMap<TraceId, Vec<Shape>>> {
    let r = reader(
        batch,
        &[col::TRACE_ID, col::SPAN_ID, col::NAME, col::START_TIME],
    )?;
    let mut out: BTreeMap<TraceId, Vec<Shape>> = BTreeMap::new();
    for row in 0..r.len() {
        let (Some(trace), Some(span_id)) = (r.trace_id(row), r.span_id(row)) else {
            continue;
        };
        if wanted.is_some_and(|w| !w.contains(&trace)) {
            continue;
        }
        out.entry(trace).or_default().push(Shape {
            span_id,
            parent: r.parent_span_id(row),
            name: r.name(row).to_owned(),
            service: r.service_name(row).map(str::to_owned),
            ai_kind: r.ai(row).ai_kind,
            status: r.status(row),
            start_ns: r.start_ns(row),
            end_ns: r.end_ns(row),
        });
    }
    Ok(out)
}

/// Where a stored `span_structure` row placed its span, and in which generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    pub root: SpanId,
    pub depth: i32,
    pub left: i32,
    pub right: i32,
    pub orphan: bool,
    pub generation: i64,
}

impl Placed {
    /// Same place (the generation aside).
    fn same_place(&self, other: &Placed) -> bool {
        (self.root, self.depth, self.left, self.right, self.orphan)
            == (
                other.root,
                other.depth,
                other.left,
                other.right,
                other.orphan,
            )
    }
}

/// The rows of `wanted` traces in a `span_structure` batch: shape and place.
pub fn placed_from_structure(
    batch: &RecordBatch,
    wanted: &HashSet<TraceId>,
) -> Result<Vec<(TraceId, Shape, Placed)>> {
    let shapes = read_shapes(batch, Some(wanted))?;
    let r = reader(batch, &[col::TRACE_ID, col::SPAN_ID])?;
    let int = |name: &str| -> Result<Int32Array> {
        let column = batch
            .column_by_name(name)
            .ok_or_else(|| Error::Internal(format!("span_structure lacks {name}")))?;
        arrow::compute::cast(column, &arrow::datatypes::DataType::Int32)?
            .as_any()
            .downcast_ref::<Int32Array>()
            .cloned()
            .ok_or_else(|| Error::Internal(format!("{name} is not an integer")))
    };
    let (depth, left, right) = (
        int(col::DEPTH)?,
        int(col::NESTED_LEFT)?,
        int(col::NESTED_RIGHT)?,
    );
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .cloned()
            .ok_or_else(|| Error::Internal(format!("span_structure lacks {name}")))
    };
    let orphan = column(col::ORPHAN)?;
    let orphan = orphan
        .as_any()
        .downcast_ref::<BooleanArray>()
        .ok_or_else(|| Error::Internal("orphan is not a boolean".into()))?;
    let generation = column(col::GENERATION)?;
    let generation = generation
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or_else(|| Error::Internal("generation is not an integer".into()))?;
    let roots = column(col::ROOT_SPAN_ID)?;
    let roots = roots
        .as_any()
        .downcast_ref::<arrow::array::FixedSizeBinaryArray>()
        .ok_or_else(|| Error::Internal("root_span_id is not an id".into()))?;
    // `read_shapes` keeps row order per trace; walk the rows the same way.
    let mut next: HashMap<TraceId, usize> = HashMap::new();
    let mut out = Vec::new();
    for row in 0..r.len() {
        let (Some(trace), Some(_)) = (r.trace_id(row), r.span_id(row)) else {
            continue;
        };
        let Some(trace_shapes) = shapes.get(&trace) else {
            continue;
        };
        let i = next.entry(trace).or_default();
        let shape = trace_shapes[*i].clone();
        *i += 1;
        let root = SpanId::try_from(roots.value(row)).unwrap_or(shape.span_id);
        out.push((
            trace,
            shape,
            Placed {
                root,
                depth: depth.value(row),
                left: left.value(row),
                right: right.value(row),
                orphan: orphan.value(row),
                generation: generation.value(row),
            },
        ));
    }
    Ok(out)
}

fn reader(batch: &RecordBatch, required: &[&str]) -> Result<SpanReader> {
    SpanReader::with_columns(batch, required).map_err(|e| Error::Internal(format!("settling: {e}")))
}

/// `span_structure` rows for `traces` (each deduplicated and placed), all
/// of `generation`; `previous` names the generation each trace replaces.
/// Spans whose place is the one `stored` already holds are not written again:
/// a settling writes the new spans and the ones it moved.
pub fn structure_batch(
    traces: &BTreeMap<TraceId, Vec<Shape>>,
    previous: &HashMap<TraceId, i64>,
    stored: &HashMap<TraceId, HashMap<SpanId, Placed>>,
    generation: i64,
) -> Result<RecordBatch> {
    let rows: usize = traces.values().map(Vec::len).sum();
    let ids = |len: usize| FixedSizeBinaryBuilder::with_capacity(rows, len as i32);
    let (mut trace_id, mut span_id) = (ids(TraceId::LEN), ids(SpanId::LEN));
    let (mut parent, mut root) = (ids(SpanId::LEN), ids(SpanId::LEN));
    let mut depth = Vec::with_capacity(rows);
    let mut left = Vec::with_capacity(rows);
    let mut right = Vec::with_capacity(rows);
    let mut orphan = Vec::with_capacity(rows);
    let mut name = Vec::with_capacity(rows);
    let mut service = Vec::with_capacity(rows);
    let mut ai_kind = Vec::with_capacity(rows);
    let mut status = Vec::with_capacity(rows);
    let mut start = Vec::with_capacity(rows);
    let mut end = Vec::with_capacity(rows);
    let mut prev = Vec::with_capacity(rows);
    for (trace, shapes) in traces {
        let placed = place(shapes);
        // Rows in nested-set order, so a subtree is a contiguous run.
        let mut order: Vec<usize> = (0..shapes.len()).collect();
        order.sort_by_key(|i| placed[*i].left);
        let before = stored.get(trace);
        for i in order {
            let (s, p) = (&shapes[i], placed[i]);
            let now = Placed {
                root: shapes[p.root].span_id,
                depth: p.depth,
                left: p.left,
                right: p.right,
                orphan: p.orphan,
                generation,
            };
            if before
                .and_then(|b| b.get(&s.span_id))
                .is_some_and(|b| b.same_place(&now))
            {
                continue;
            }
            trace_id.append_value(trace.as_bytes())?;
            span_id.append_value(s.span_id.as_bytes())?;
            match s.parent {
                Some(id) => parent.append_value(id.as_bytes())?,
                None => parent.append_null(),
            }
            root.append_value(shapes[p.root].span_id.as_bytes())?;
            depth.push(p.depth);
            left.push(p.left);
            right.push(p.right);
            orphan.push(p.orphan);
            name.push(s.name.as_str());
            service.push(s.service.as_deref());
            ai_kind.push(s.ai_kind.map(AiKind::as_str));
            status.push(s.status.as_str());
            start.push(s.start_ns);
            end.push(s.end_ns);
            prev.push(previous.get(trace).copied());
        }
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(trace_id.finish()),
        Arc::new(span_id.finish()),
        Arc::new(parent.finish()),
        Arc::new(root.finish()),
        Arc::new(Int32Array::from(depth)),
        Arc::new(Int32Array::from(left)),
        Arc::new(Int32Array::from(right)),
        Arc::new(BooleanArray::from(orphan)),
        Arc::new(StringArray::from(name)),
        Arc::new(StringArray::from(service)),
        Arc::new(StringArray::from(ai_kind)),
        Arc::new(StringArray::from(status)),
        timestamps_from_nanos(start),
        timestamps_from_nanos(end),
        Arc::new(Int64Array::from(vec![generation; prev.len()])),
        Arc::new(Int64Array::from(prev)),
    ];
    Ok(RecordBatch::try_new(structure_schema(), columns)?)
}

/// One `span_links` row per link held by a span of `spans`, sorted by the
/// span linked to, so "who follows from this trace" reads one run of rows.
pub fn link_rows(spans: &RecordBatch) -> Result<RecordBatch> {
    let r = reader(
        spans,
        &[col::TRACE_ID, col::SPAN_ID, col::START_TIME, LINKS],
    )?;
    let ids = |len: usize| FixedSizeBinaryBuilder::new(len as i32);
    let (mut linked_trace, mut linked_span) = (ids(TraceId::LEN), ids(SpanId::LEN));
    let (mut trace, mut span) = (ids(TraceId::LEN), ids(SpanId::LEN));
    let mut start = Vec::new();
    for row in 0..r.len() {
        let (Some(t), Some(s)) = (r.trace_id(row), r.span_id(row)) else {
            continue;
        };
        for link in r.links(row) {
            let (Some(lt), Some(ls)) = (link.trace_id, link.span_id) else {
                continue;
            };
            linked_trace.append_value(lt.as_bytes())?;
            linked_span.append_value(ls.as_bytes())?;
            trace.append_value(t.as_bytes())?;
            span.append_value(s.as_bytes())?;
            start.push(r.start_ns(row));
        }
    }
    let unsorted = RecordBatch::try_new(
        links_schema(),
        vec![
            Arc::new(linked_trace.finish()),
            Arc::new(linked_span.finish()),
            Arc::new(trace.finish()),
            Arc::new(span.finish()),
            timestamps_from_nanos(start),
        ],
    )?;
    sort(&unsorted, &[0, 1])
}

fn sort(batch: &RecordBatch, columns: &[usize]) -> Result<RecordBatch> {
    if batch.num_rows() == 0 {
        return Ok(batch.clone());
    }
    let keys: Vec<SortColumn> = columns
        .iter()
        .map(|c| SortColumn {
            values: Arc::clone(batch.column(*c)),
            options: None,
        })
        .collect();
    let indices = lexsort_to_indices(&keys, None)?;
    Ok(take_record_batch(batch, &indices)?)
}

/// Reads a `span_structure` file whole.
fn read_structure_file(storage: &Storage, location: &str) -> Result<Vec<RecordBatch>> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(storage.read(location)?)?.build()?;
    reader.map(|b| b.map_err(Error::from)).collect()
}

/// The traces settled by one flush and the files written for them.
#[derive(Debug, Default)]
pub struct Settled {
    pub structure: Vec<FileMeta>,
    pub links: Vec<FileMeta>,
    pub traces: Vec<TraceId>,
}

/// Where a trace's latest structure is: its generation and the files (one
/// per day) holding it.
pub type Previous = HashMap<TraceId, (i64, Vec<String>)>;

/// Writer settings of a `span_structure` file: sorted by trace and nested-set
/// position, a bloom filter on the trace id.
pub fn structure_properties(seq_lo: u64, seq_hi: u64) -> WriterProperties {
    with_bloom_filter(base_properties(seq_lo, seq_hi), col::TRACE_ID)
        .set_sorting_columns(Some(sorted_by(
            &structure_schema(),
            &[col::TRACE_ID, col::NESTED_LEFT],
        )))
        // Unique per row: a dictionary would only be built to be thrown away.
        .set_column_dictionary_enabled(ColumnPath::from(col::SPAN_ID), false)
        .set_column_dictionary_enabled(ColumnPath::from(col::PARENT_SPAN_ID), false)
        .build()
}

/// Writer settings of a `span_links` file: sorted by the span linked to, bloom
/// filters on both trace ids.
pub fn links_properties(seq_lo: u64, seq_hi: u64) -> WriterProperties {
    with_bloom_filter(
        with_bloom_filter(base_properties(seq_lo, seq_hi), col::LINKED_TRACE_ID),
        col::TRACE_ID,
    )
    .set_sorting_columns(Some(sorted_by(
        &links_schema(),
        &[col::LINKED_TRACE_ID, col::LINKED_SPAN_ID],
    )))
    .build()
}

/// What one flush settles.
pub struct Settling<'a> {
    /// This collector's flushed spans (WAL records `seq_lo..=seq_hi`): their
    /// links are written, and their traces settle.
    pub spans: &'a RecordBatch,
    /// Other collectors' spans whose traces settle here too (`SettleRole::Fleet`).
    pub foreign: BTreeMap<TraceId, Vec<Shape>>,
    pub seq_lo: u64,
    pub seq_hi: u64,
    /// The generation of the structure rows written; their file names carry it
    /// as their upper bound.
    pub generation: u64,
    /// Write `span_structure` at all (not for `SettleRole::None`).
    pub structure: bool,
}

/// Settles every trace in `settling` (its spans and foreign spans): their
/// structure, merged with `previous` settlings, and the new spans' links.
/// A previous structure file that cannot be read is reported and skipped: the
/// trace is settled from what is left, its early spans' children marked orphans.
pub fn settle(
    storage: &Storage,
    settling: Settling<'_>,
    previous: &Previous,
    writer: &str,
) -> Result<Settled> {
    let Settling {
        spans,
        foreign,
        seq_lo,
        seq_hi,
        generation,
        structure,
    } = settling;
    let name = file_name(seq_lo, seq_hi, writer);
    let links = write_by_day(
        storage,
        TableKind::Links,
        &link_rows(spans)?,
        &name,
        || links_properties(seq_lo, seq_hi),
        |b| Ok(b.clone()),
        seq_hi,
    )?;
    if !structure {
        return Ok(Settled {
            links,
            ..Settled::default()
        });
    }
    let mut fresh = shapes_from_spans(spans)?;
    for (trace, shapes) in foreign {
        fresh.entry(trace).or_default().extend(shapes);
    }
    if fresh.is_empty() {
        return Ok(Settled {
            links,
            ..Settled::default()
        });
    }
    let mut by_file: BTreeMap<&str, HashSet<TraceId>> = BTreeMap::new();
    let mut replaces: HashMap<TraceId, i64> = HashMap::new();
    for trace in fresh.keys() {
        if let Some((generation, paths)) = previous.get(trace) {
            for path in paths {
                by_file.entry(path.as_str()).or_default().insert(*trace);
            }
            replaces.insert(*trace, *generation);
        }
    }
    // The latest stored row of each span of the traces settling again.
    let mut latest: HashMap<TraceId, HashMap<SpanId, (Shape, Placed)>> = HashMap::new();
    for (path, wanted) in by_file {
        let batches = match read_structure_file(storage, path) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(file = %path, error = %e, "cannot read a trace's previous structure; settling it from its new spans");
                continue;
            }
        };
        for batch in &batches {
            for (trace, shape, placed) in placed_from_structure(batch, &wanted)? {
                let spans = latest.entry(trace).or_default();
                match spans.get(&shape.span_id) {
                    Some((_, p)) if p.generation >= placed.generation => {}
                    _ => {
                        spans.insert(shape.span_id, (shape, placed));
                    }
                }
            }
        }
    }
    let mut merged: BTreeMap<TraceId, Vec<Shape>> = BTreeMap::new();
    let mut stored: HashMap<TraceId, HashMap<SpanId, Placed>> = HashMap::new();
    for (trace, spans) in latest {
        // In stored nested-set order, so ties place as they did before.
        let mut rows: Vec<(Shape, Placed)> = spans.into_values().collect();
        rows.sort_by_key(|(_, p)| (p.orphan, p.left));
        stored.insert(trace, rows.iter().map(|(s, p)| (s.span_id, *p)).collect());
        merged.insert(trace, rows.into_iter().map(|(s, _)| s).collect());
    }
    for (trace, shapes) in fresh {
        let all = merged.entry(trace).or_default();
        all.extend(shapes);
        *all = dedup_shapes(std::mem::take(all));
    }

    let structure = structure_batch(&merged, &replaces, &stored, generation as i64)?;
    let (lo, hi) = (seq_lo.min(generation), generation);
    let structure = write_by_day(
        storage,
        TableKind::Structure,
        &structure,
        &file_name(lo, hi, writer),
        || structure_properties(lo, hi),
        |b| Ok(b.clone()),
        hi,
    )?;
    Ok(Settled {
        structure,
        links,
        traces: merged.into_keys().collect(),
    })
}

/// What settling needs of the spans in a span file another collector wrote.
pub fn shapes_from_span_file(
    storage: &Storage,
    location: &str,
) -> Result<BTreeMap<TraceId, Vec<Shape>>> {
    use weft_schemas::schema::col as c;
    let builder = ParquetRecordBatchReaderBuilder::try_new(storage.read(location)?)?;
    let wanted = [
        c::TRACE_ID,
        c::SPAN_ID,
        c::PARENT_SPAN_ID,
        c::NAME,
        c::SERVICE_NAME,
        col::AI_KIND,
        c::STATUS_CODE,
        c::START_TIME,
        c::END_TIME,
    ];
    let schema = builder.parquet_schema();
    let roots: Vec<usize> = (0..schema.root_schema().get_fields().len())
        .filter(|i| wanted.contains(&schema.root_schema().get_fields()[*i].name()))
        .collect();
    let mask = parquet::arrow::ProjectionMask::roots(schema, roots);
    let mut out: BTreeMap<TraceId, Vec<Shape>> = BTreeMap::new();
    for batch in builder.with_projection(mask).build()? {
        for (trace, shapes) in read_shapes(&batch?, None)? {
            out.entry(trace).or_default().extend(shapes);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sid(n: u8) -> SpanId {
        SpanId::try_from([0, 0, 0, 0, 0, 0, 0, n].as_slice()).unwrap()
    }

    fn shape(id: u8, parent: Option<u8>, start: i64) -> Shape {
        Shape {
            span_id: sid(id),
            parent: parent.map(sid),
            name: format!("s{id}"),
            service: None,
            ai_kind: None,
            status: StatusCode::Unset,
            start_ns: start,
            end_ns: start + 10,
        }
    }

    /// `(span, depth, left, right, orphan, root)` per span, in input order.
    fn placed(shapes: &[Shape]) -> Vec<(u8, i32, i32, i32, bool, u8)> {
        let p = place(shapes);
        shapes
            .iter()
            .zip(&p)
            .map(|(s, p)| {
                let id = |s: SpanId| s.to_hex()[14..].parse::<u8>().unwrap();
                (
                    id(s.span_id),
                    p.depth,
                    p.left,
                    p.right,
                    p.orphan,
                    id(shapes[p.root].span_id),
                )
            })
            .collect()
    }

    #[test]
    fn nested_sets_number_a_tree_depth_first_in_start_order() {
        // 1 ─┬─ 2 ── 4
        //    └─ 3          (3 starts before 2, so it is numbered first)
        let shapes = [
            shape(4, Some(2), 30),
            shape(2, Some(1), 20),
            shape(1, None, 0),
            shape(3, Some(1), 10),
        ];
        assert_eq!(
            placed(&shapes),
            vec![
                (4, 2, 4, 5, false, 1),
                (2, 1, 3, 6, false, 1),
                (1, 0, 0, 7, false, 1),
                (3, 1, 1, 2, false, 1),
            ]
        );
    }

    #[test]
    fn orphans_are_numbered_after_the_roots_and_flagged() {
        let shapes = [
            shape(5, Some(9), 0),
            shape(1, None, 10),
            shape(2, Some(1), 11),
        ];
        assert_eq!(
            placed(&shapes),
            vec![
                (5, 0, 4, 5, true, 5),
                (1, 0, 0, 3, false, 1),
                (2, 1, 1, 2, false, 1)
            ]
        );
    }

    #[test]
    fn parent_cycles_and_self_parents_are_broken_not_looped() {
        // 1 → 2 → 1 (a cycle) and 3 is its own parent.
        let shapes = [
            shape(1, Some(2), 0),
            shape(2, Some(1), 5),
            shape(3, Some(3), 1),
        ];
        let p = placed(&shapes);
        assert_eq!(p[2], (3, 0, 0, 1, true, 3));
        assert_eq!(p[0], (1, 0, 2, 5, true, 1));
        assert_eq!(p[1], (2, 1, 3, 4, false, 1));
    }

    #[test]
    fn dedup_keeps_the_first_copy() {
        let kept = dedup_shapes(vec![shape(1, None, 0), shape(1, None, 99)]);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].start_ns, 0);
    }
}
