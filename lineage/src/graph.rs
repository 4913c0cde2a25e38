//! The workflow graph: build, check, and analyse.
//!
//! [`build`] never fails on bad input; what is wrong is reported as
//! [`Anomaly`]s beside a graph that is still usable:
//! - a missing parent: the orphan is attached to its trace's root, flagged;
//! - a duplicate span id: the first copy is kept, the rest counted;
//! - a cycle (through links or corrupt parent ids): reported, and its closing
//!   edge ignored by the analyses that need an acyclic graph;
//! - clock skew: a child that starts before its parent;
//! - a link to a span that is not there;
//! - spans that ended moments ago: the workflow may still be arriving.

use std::collections::HashSet;
use std::sync::Arc;

use foldhash::{HashMap, HashMapExt};
use petgraph::Direction as Dir;
use petgraph::algo::kosaraju_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use serde::{Deserialize, Serialize};
use weft_schemas::{SpanId, TraceId};

use crate::evidence::{self, Evidence, EvidenceRules};
use crate::node::{Edge, EdgeKind, Node};
use crate::span::LineageSpan;
use crate::summary::{Predecessors, Roots, Summary, WithoutEvidence, summarise};

/// Something wrong or unfinished in the input, reported rather than hidden.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Anomaly {
    MissingParent {
        trace_id: TraceId,
        span_id: SpanId,
        parent_span_id: SpanId,
        attached_to: Option<SpanId>,
    },
    DuplicateSpan {
        trace_id: TraceId,
        span_id: SpanId,
        copies: usize,
    },
    Cycle {
        spans: Vec<String>,
    },
    ClockSkew {
        trace_id: TraceId,
        span_id: SpanId,
        parent_span_id: SpanId,
        starts_before_parent_ns: i64,
    },
    DanglingLink {
        trace_id: TraceId,
        span_id: SpanId,
        linked_trace_id: TraceId,
        linked_span_id: SpanId,
    },
    NoRoot {
        trace_id: TraceId,
    },
    MayStillBeArriving {
        trace_id: TraceId,
        newest_end_ns: i64,
    },
}

impl Anomaly {
    /// One line for a person.
    pub fn describe(&self) -> String {
        use crate::units::duration;
        match self {
            Anomaly::MissingParent {
                span_id,
                parent_span_id,
                ..
            } => {
                format!("span {span_id} names missing parent {parent_span_id}")
            }
            Anomaly::DuplicateSpan {
                span_id, copies, ..
            } => format!("span {span_id} arrived {copies} times"),
            Anomaly::Cycle { spans } => format!("cycle through {}", spans.join(" → ")),
            Anomaly::ClockSkew {
                span_id,
                starts_before_parent_ns,
                ..
            } => {
                format!(
                    "span {span_id} starts {} before its parent",
                    duration(*starts_before_parent_ns)
                )
            }
            Anomaly::DanglingLink {
                span_id,
                linked_span_id,
                ..
            } => {
                format!("span {span_id} links to missing span {linked_span_id}")
            }
            Anomaly::NoRoot { trace_id } => format!("trace {trace_id} has no root span"),
            Anomaly::MayStillBeArriving { trace_id, .. } => {
                format!("trace {trace_id} may still be arriving")
            }
        }
    }

    /// The span it is about, when it is about one.
    pub fn span(&self) -> Option<(TraceId, SpanId)> {
        match self {
            Anomaly::MissingParent {
                trace_id, span_id, ..
            }
            | Anomaly::DuplicateSpan {
                trace_id, span_id, ..
            }
            | Anomaly::ClockSkew {
                trace_id, span_id, ..
            }
            | Anomaly::DanglingLink {
                trace_id, span_id, ..
            } => Some((*trace_id, *span_id)),
            Anomaly::Cycle { .. } | Anomaly::NoRoot { .. } | Anomaly::MayStillBeArriving { .. } => {
                None
            }
        }
    }
}

/// A reconstructed workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lineage {
    pub traces: Vec<TraceId>,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    /// Node indices from the first root to the span that ended last.
    pub critical_path: Vec<usize>,
    pub anomalies: Vec<Anomaly>,
    pub summary: Summary,
}

/// Spans newer than this (by end time) may still have siblings in flight.
pub const SETTLE_NS: i64 = 30_000_000_000;

/// Settings of one build.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Now, in Unix nanoseconds: decides which traces may still be arriving.
    pub now_ns: i64,
    /// Tools that change something even without `weft.tool.effect = write`.
    pub write_tools: HashSet<String>,
    /// Which evidence joins spans whose trace context was lost.
    pub evidence: EvidenceRules,
}

/// Builds and analyses the workflow graph of `spans`.
pub fn build(spans: Vec<LineageSpan>, options: &BuildOptions) -> Lineage {
    build_nodes(spans.into_iter().map(Node::new).collect(), options)
}

/// [`build`] on spans already in their nodes ([`Node::new`]), analysed in
/// place: a loader of a million spans allocates them once, not twice.
pub fn build_nodes(nodes: Vec<Node>, options: &BuildOptions) -> Lineage {
    let now_ns = options.now_ns;
    let mut phases = Phases::start(nodes.len());
    let mut anomalies = Vec::new();
    let (mut nodes, index) = dedup(nodes, &mut anomalies);
    phases.done("dedup");

    let mut graph: DiGraph<usize, EdgeKind> = DiGraph::with_capacity(nodes.len(), nodes.len());
    let ids: Vec<NodeIndex> = (0..nodes.len()).map(|i| graph.add_node(i)).collect();
    let mut traces: Vec<TraceId> = Vec::new();
    let roots = trace_roots(&nodes, &mut traces, &mut anomalies);

    for (i, span) in nodes.iter().enumerate() {
        if let Some(parent) = span.parent_span_id {
            match index.get(&(span.trace_id, parent)) {
                Some(&p) => {
                    graph.add_edge(ids[p], ids[i], EdgeKind::Child);
                    if span.start_ns < nodes[p].start_ns {
                        anomalies.push(Anomaly::ClockSkew {
                            trace_id: span.trace_id,
                            span_id: span.span_id,
                            parent_span_id: parent,
                            starts_before_parent_ns: nodes[p]
                                .start_ns
                                .saturating_sub(span.start_ns),
                        });
                    }
                }
                None => {
                    let root = roots.get(&span.trace_id).copied().filter(|r| *r != i);
                    if let Some(r) = root {
                        graph.add_edge(ids[r], ids[i], EdgeKind::Orphan);
                    }
                    anomalies.push(Anomaly::MissingParent {
                        trace_id: span.trace_id,
                        span_id: span.span_id,
                        parent_span_id: parent,
                        attached_to: root.map(|r| nodes[r].span_id),
                    });
                }
            }
        }
        for (t, s) in &span.links {
            match index.get(&(*t, *s)) {
                Some(&target) => {
                    graph.add_edge(ids[target], ids[i], EdgeKind::Link);
                }
                None if traces.contains(t) => anomalies.push(Anomaly::DanglingLink {
                    trace_id: span.trace_id,
                    span_id: span.span_id,
                    linked_trace_id: *t,
                    linked_span_id: *s,
                }),
                // The linked trace was not fetched (depth or direction limit).
                None => {}
            }
        }
    }

    phases.done("edges");
    let mut evidence_of: HashMap<usize, Evidence> = HashMap::new();
    for join in evidence::joins(&nodes, &options.evidence) {
        let e = graph.add_edge(ids[join.from], ids[join.to], EdgeKind::Evidence);
        evidence_of.insert(e.index(), join.evidence);
    }

    phases.done("evidence");
    let dag = acyclic_order(&graph);
    phases.done("order");

    // Kosaraju's search is iterative (petgraph's Tarjan recurses once per
    // node of a chain, and a client decides how long its chains are). A cycle
    // needs an edge back onto the depth-first stack: with none, no search.
    let mut cycles = Vec::new();
    if dag.back.iter().any(|back| *back) {
        for scc in kosaraju_scc(&graph) {
            let self_loop = scc.len() == 1 && graph.contains_edge(scc[0], scc[0]);
            if scc.len() > 1 || self_loop {
                let mut spans: Vec<String> = scc.iter().map(|n| nodes[graph[*n]].key()).collect();
                spans.sort();
                cycles.push(spans);
            }
        }
    }
    cycles.sort();
    anomalies.extend(cycles.into_iter().map(|spans| Anomaly::Cycle { spans }));
    phases.done("cycles");

    let mut newest: HashMap<TraceId, i64> = HashMap::with_capacity(traces.len());
    for s in &nodes {
        let n = newest.entry(s.trace_id).or_insert(i64::MIN);
        *n = (*n).max(s.end_ns);
    }
    for trace in &traces {
        let newest = newest.get(trace).copied().unwrap_or(i64::MIN);
        if now_ns.saturating_sub(newest) < SETTLE_NS {
            anomalies.push(Anomaly::MayStillBeArriving {
                trace_id: *trace,
                newest_end_ns: newest,
            });
        }
    }

    let identity = effective_identities(&graph, &dag, &nodes, |_| true);
    for (node, identity) in nodes.iter_mut().zip(identity) {
        node.effective_identity = identity;
    }
    phases.done("identities");

    // Two halves that share nothing but the graph, on two threads for a
    // large workflow: the timing analyses and the edge list, and the
    // summary (the larger).
    let with_evidence = !evidence_of.is_empty();
    let (analysis, summary) = crate::parallel::both(
        nodes.len(),
        || {
            let (depth, reached_by) = depths(&graph, &dag);
            let self_time = self_times(&graph, &nodes);
            let critical = critical_path(&graph, &dag, &nodes);
            let mut evidence_of = evidence_of;
            let edges: Vec<Edge> = graph
                .edge_references()
                .map(|e| Edge {
                    from: graph[e.source()],
                    to: graph[e.target()],
                    kind: *e.weight(),
                    evidence: evidence_of.remove(&e.id().index()).map(Box::new),
                })
                .collect();
            (depth, reached_by, self_time, critical, edges)
        },
        || {
            // What trace context and links alone say, when evidence added edges.
            let not_evidence = |k: EdgeKind| k != EdgeKind::Evidence;
            let strict = with_evidence.then(|| WithoutEvidence {
                preds: graph_predecessors(&graph, not_evidence),
                roots: roots_of_each(&graph, &dag, not_evidence),
                identities: effective_identities(&graph, &dag, &nodes, not_evidence),
            });
            let roots = roots_of_each(&graph, &dag, |_| true);
            let preds = graph_predecessors(&graph, |_| true);
            summarise(
                &nodes,
                &preds,
                &roots,
                strict.as_ref(),
                &options.write_tools,
            )
        },
    );
    let (depth, reached_by, self_time, critical, edges) = analysis;
    let on_path: HashSet<usize> = critical.iter().copied().collect();
    for (i, node) in nodes.iter_mut().enumerate() {
        node.depth = depth[i];
        node.reached_by = reached_by[i];
        node.self_time_ns = self_time[i];
        node.on_critical_path = on_path.contains(&i);
    }
    phases.done("analyses and summary");
    phases.report();
    Lineage {
        traces,
        nodes,
        edges,
        critical_path: critical,
        anomalies,
        summary,
    }
}

type Index = HashMap<(TraceId, SpanId), usize>;

/// How long each phase of a build took, logged at debug level (`WEFT_LOG=weft_lineage=debug`).
struct Phases {
    nodes: usize,
    last: std::time::Instant,
    took: Vec<(&'static str, std::time::Duration)>,
}

impl Phases {
    fn start(nodes: usize) -> Self {
        Self {
            nodes,
            last: std::time::Instant::now(),
            took: Vec::new(),
        }
    }

    fn done(&mut self, phase: &'static str) {
        let now = std::time::Instant::now();
        self.took.push((phase, now - self.last));
        self.last = now;
    }

    fn report(&self) {
        if tracing::enabled!(tracing::Level::DEBUG) {
            let phases: Vec<String> = self
                .took
                .iter()
                .map(|(p, d)| format!("{p} {:.1} ms", d.as_secs_f64() * 1e3))
                .collect();
            tracing::debug!(nodes = self.nodes, phases = %phases.join(", "), "lineage built");
        }
    }
}

/// Keeps the first copy of each `(trace, span)`, reporting the others, and
/// indexes the spans kept by id.
fn dedup(spans: Vec<Node>, anomalies: &mut Vec<Anomaly>) -> (Vec<Node>, Index) {
    let mut index = Index::with_capacity(spans.len());
    let mut copies: HashMap<(TraceId, SpanId), usize> = HashMap::new();
    for (i, s) in spans.iter().enumerate() {
        let key = (s.trace_id, s.span_id);
        if index.try_insert_first(key, i) {
            continue;
        }
        *copies.entry(key).or_insert(1) += 1;
    }
    if copies.is_empty() {
        return (spans, index);
    }
    let mut dups: Vec<_> = copies.into_iter().collect();
    dups.sort();
    for ((trace_id, span_id), copies) in dups {
        anomalies.push(Anomaly::DuplicateSpan {
            trace_id,
            span_id,
            copies,
        });
    }
    let kept: Vec<Node> = spans
        .into_iter()
        .enumerate()
        .filter(|(i, s)| index.get(&(s.trace_id, s.span_id)) == Some(i))
        .map(|(_, s)| s)
        .collect();
    let index = kept
        .iter()
        .enumerate()
        .map(|(i, s)| ((s.trace_id, s.span_id), i))
        .collect();
    (kept, index)
}

trait InsertFirst<K, V> {
    /// Inserts unless the key is present; true when inserted.
    fn try_insert_first(&mut self, key: K, value: V) -> bool;
}

impl<K: std::hash::Hash + Eq, V> InsertFirst<K, V> for HashMap<K, V> {
    fn try_insert_first(&mut self, key: K, value: V) -> bool {
        match self.entry(key) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(value);
                true
            }
            std::collections::hash_map::Entry::Occupied(_) => false,
        }
    }
}

/// The root of each trace (the earliest span without a parent); a trace with
/// none is reported and gets its earliest span as a stand-in.
fn trace_roots(
    nodes: &[Node],
    traces: &mut Vec<TraceId>,
    anomalies: &mut Vec<Anomaly>,
) -> HashMap<TraceId, usize> {
    let mut roots: HashMap<TraceId, usize> = HashMap::new();
    let mut earliest: HashMap<TraceId, usize> = HashMap::new();
    for (i, s) in nodes.iter().enumerate() {
        if !earliest.contains_key(&s.trace_id) {
            traces.push(s.trace_id);
        }
        let e = earliest.entry(s.trace_id).or_insert(i);
        if s.start_ns < nodes[*e].start_ns {
            *e = i;
        }
        if s.parent_span_id.is_none() {
            let r = roots.entry(s.trace_id).or_insert(i);
            if s.start_ns < nodes[*r].start_ns {
                *r = i;
            }
        }
    }
    for trace in traces.iter() {
        if !roots.contains_key(trace) {
            anomalies.push(Anomaly::NoRoot { trace_id: *trace });
            roots.insert(*trace, earliest[trace]);
        }
    }
    roots
}

/// A depth-first order from the roots and which edges close a cycle. Roots are
/// nodes with no incoming edge, then any node not yet reached (inside a cycle).
struct Dag {
    /// Nodes in DFS pre-order (every node once).
    preorder: Vec<NodeIndex>,
    /// Per edge index: the edge points back to a node on the DFS stack.
    back: Vec<bool>,
    /// Kahn's order of the graph without back edges.
    topological: Vec<NodeIndex>,
}

impl Dag {
    fn is_back(&self, e: petgraph::graph::EdgeIndex) -> bool {
        self.back[e.index()]
    }
}

fn acyclic_order(graph: &DiGraph<usize, EdgeKind>) -> Dag {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let n = graph.node_count();
    let mut mark = vec![Mark::New; n];
    let mut preorder = Vec::with_capacity(n);
    let mut back = vec![false; graph.edge_count()];
    let starts = graph
        .node_indices()
        .filter(|v| graph.neighbors_directed(*v, Dir::Incoming).next().is_none())
        .chain(graph.node_indices());
    for start in starts {
        if mark[start.index()] != Mark::New {
            continue;
        }
        // Iterative DFS: (node, its outgoing edges not yet followed).
        let mut stack = vec![(
            start,
            graph
                .edges(start)
                .map(|e| (e.id(), e.target()))
                .collect::<Vec<_>>(),
        )];
        mark[start.index()] = Mark::Open;
        preorder.push(start);
        while let Some((node, pending)) = stack.last_mut() {
            match pending.pop() {
                Some((edge, next)) => match mark[next.index()] {
                    Mark::New => {
                        mark[next.index()] = Mark::Open;
                        preorder.push(next);
                        let out = graph.edges(next).map(|e| (e.id(), e.target())).collect();
                        stack.push((next, out));
                    }
                    Mark::Open => back[edge.index()] = true,
                    Mark::Done => {}
                },
                None => {
                    mark[node.index()] = Mark::Done;
                    stack.pop();
                }
            }
        }
    }
    let topological = topological(graph, &back);
    Dag {
        preorder,
        back,
        topological,
    }
}

/// Breadth-first distance from the roots, and the kind of edge that got there.
fn depths(graph: &DiGraph<usize, EdgeKind>, dag: &Dag) -> (Vec<u32>, Vec<Option<EdgeKind>>) {
    let n = graph.node_count();
    let mut depth = vec![u32::MAX; n];
    let mut by = vec![None; n];
    let mut queue = std::collections::VecDeque::new();
    for v in graph.node_indices() {
        if graph.neighbors_directed(v, Dir::Incoming).next().is_none() {
            depth[v.index()] = 0;
            queue.push_back(v);
        }
    }
    let mut order = dag.preorder.iter();
    loop {
        while let Some(v) = queue.pop_front() {
            for e in graph.edges(v) {
                let t = e.target().index();
                if depth[t] == u32::MAX {
                    depth[t] = depth[v.index()] + 1;
                    by[t] = Some(*e.weight());
                    queue.push_back(e.target());
                }
            }
        }
        // Nodes only reachable inside a cycle: start from the first unreached.
        match order.find(|v| depth[v.index()] == u32::MAX) {
            Some(v) => {
                depth[v.index()] = 0;
                queue.push_back(*v);
            }
            None => break,
        }
    }
    (depth, by)
}

/// Duration minus the union of its children's intervals (clipped to the span).
fn self_times(graph: &DiGraph<usize, EdgeKind>, nodes: &[Node]) -> Vec<i64> {
    graph
        .node_indices()
        .map(|v| {
            let span = &nodes[graph[v]];
            let mut intervals: Vec<(i64, i64)> = graph
                .edges(v)
                .filter(|e| matches!(e.weight(), EdgeKind::Child | EdgeKind::Orphan))
                .map(|e| {
                    let c = &nodes[graph[e.target()]];
                    (c.start_ns.max(span.start_ns), c.end_ns.min(span.end_ns))
                })
                .filter(|(s, e)| e > s)
                .collect();
            intervals.sort_unstable();
            let mut covered = 0i64;
            let mut cursor = i64::MIN;
            for (s, e) in intervals {
                let s = s.max(cursor);
                if e > s {
                    covered = covered.saturating_add(e.saturating_sub(s));
                    cursor = e;
                }
            }
            span.duration_ns().saturating_sub(covered)
        })
        .collect()
}

/// Each span's identity, else the nearest causal ancestor's (parent first, then link).
fn effective_identities(
    graph: &DiGraph<usize, EdgeKind>,
    dag: &Dag,
    nodes: &[Node],
    follow: impl Fn(EdgeKind) -> bool,
) -> Vec<Option<Arc<str>>> {
    let mut out: Vec<Option<Arc<str>>> = vec![None; nodes.len()];
    for &v in &dag.topological {
        let i = graph[v];
        if let Some(id) = nodes[i].ai.fields.identity() {
            out[i] = Some(Arc::from(id));
            continue;
        }
        // Parents before links before evidence, then the earliest-added edge's source.
        out[i] = graph
            .edges_directed(v, Dir::Incoming)
            .filter(|e| {
                !dag.is_back(e.id()) && follow(*e.weight()) && out[graph[e.source()]].is_some()
            })
            .min_by_key(|e| (e.weight().distance(), e.source().index()))
            .and_then(|e| out[graph[e.source()]].clone());
    }
    out
}

/// Kahn's order on the graph without back edges.
fn topological(graph: &DiGraph<usize, EdgeKind>, back: &[bool]) -> Vec<NodeIndex> {
    let mut indegree = vec![0usize; graph.node_count()];
    for e in graph.edge_references() {
        if !back[e.id().index()] {
            indegree[e.target().index()] += 1;
        }
    }
    let mut ready: Vec<NodeIndex> = graph
        .node_indices()
        .filter(|v| indegree[v.index()] == 0)
        .collect();
    ready.reverse();
    let mut order = Vec::with_capacity(graph.node_count());
    while let Some(v) = ready.pop() {
        order.push(v);
        for e in graph.edges(v) {
            if back[e.id().index()] {
                continue;
            }
            let t = e.target().index();
            indegree[t] -= 1;
            if indegree[t] == 0 {
                ready.push(e.target());
            }
        }
    }
    order
}

/// The chain that determined end-to-end latency: from the root whose reachable
/// work ends last, repeatedly into the successor whose reachable work ends last.
fn critical_path(graph: &DiGraph<usize, EdgeKind>, dag: &Dag, nodes: &[Node]) -> Vec<usize> {
    let order = &dag.topological;
    let mut reach_end: Vec<i64> = nodes.iter().map(|s| s.end_ns).collect();
    for v in order.iter().rev() {
        for e in graph.edges(*v) {
            if !dag.is_back(e.id()) {
                let t = reach_end[graph[e.target()]];
                let r = &mut reach_end[graph[*v]];
                *r = (*r).max(t);
            }
        }
    }
    let Some(mut current) = order
        .iter()
        .filter(|v| {
            graph
                .edges_directed(**v, Dir::Incoming)
                .all(|e| dag.is_back(e.id()))
        })
        .max_by_key(|v| {
            (
                reach_end[graph[**v]],
                std::cmp::Reverse(nodes[graph[**v]].start_ns),
            )
        })
        .copied()
    else {
        return Vec::new();
    };
    let mut path = vec![graph[current]];
    loop {
        let next = graph
            .edges(current)
            .filter(|e| !dag.is_back(e.id()))
            .map(|e| e.target())
            .max_by_key(|t| {
                (
                    reach_end[graph[*t]],
                    nodes[graph[*t]].end_ns,
                    std::cmp::Reverse(t.index()),
                )
            });
        match next {
            Some(t) => {
                path.push(graph[t]);
                current = t;
            }
            None => return path,
        }
    }
}

/// The roots each node descends from through the edges `follow` takes, in
/// topological order without back edges. Nodes share their root set: a
/// node with one way in takes its predecessor's, so a million-span tree
/// holds one set, not a million.
fn roots_of_each(
    graph: &DiGraph<usize, EdgeKind>,
    dag: &Dag,
    follow: impl Fn(EdgeKind) -> bool,
) -> Roots {
    let mut roots = Roots::with_nodes(graph.node_count());
    let mut known: HashMap<Vec<usize>, u32> = HashMap::new();
    let mut ins: Vec<u32> = Vec::new();
    for &v in &dag.topological {
        ins.clear();
        ins.extend(
            graph
                .edges_directed(v, Dir::Incoming)
                .filter(|e| !dag.is_back(e.id()) && follow(*e.weight()))
                .map(|e| roots.set_of(graph[e.source()])),
        );
        ins.sort_unstable();
        ins.dedup();
        let set = match ins.as_slice() {
            [one] => *one,
            _ => {
                let mut mine: Vec<usize> = ins
                    .iter()
                    .flat_map(|s| roots.set(*s).iter().copied())
                    .collect();
                if mine.is_empty() {
                    mine.push(graph[v]);
                }
                mine.sort_unstable();
                mine.dedup();
                match known.get(&mine) {
                    Some(set) => *set,
                    None => {
                        let set = roots.add_set(mine.clone());
                        known.insert(mine, set);
                        set
                    }
                }
            }
        };
        roots.assign(graph[v], set);
    }
    roots
}

fn graph_predecessors(
    graph: &DiGraph<usize, EdgeKind>,
    follow: impl Fn(EdgeKind) -> bool,
) -> Predecessors {
    Predecessors::from_edges(
        graph.node_count(),
        graph
            .edge_references()
            .filter(|e| follow(*e.weight()))
            .map(|e| (graph[e.source()], graph[e.target()])),
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::span::StepAi;
    use weft_schemas::StatusCode;

    pub(crate) fn tid(n: u8) -> TraceId {
        [n; 16].as_slice().try_into().unwrap()
    }
    pub(crate) fn sid(n: u8) -> SpanId {
        [n; 8].as_slice().try_into().unwrap()
    }

    pub(crate) fn span(t: u8, s: u8, parent: Option<u8>, start: i64, end: i64) -> LineageSpan {
        LineageSpan {
            events: Vec::new(),
            trace_id: tid(t),
            span_id: sid(s),
            parent_span_id: parent.map(sid),
            name: format!("s{s}").into(),
            kind: None,
            service: Some("svc".into()),
            start_ns: start,
            end_ns: end,
            status: StatusCode::Ok,
            status_message: None,
            links: Vec::new(),
            ai: StepAi::default(),
        }
    }

    const OLD: i64 = 1_000_000_000_000;

    fn build(spans: Vec<LineageSpan>, now_ns: i64) -> Lineage {
        super::build(
            spans,
            &BuildOptions {
                now_ns,
                ..Default::default()
            },
        )
    }

    fn kinds(l: &Lineage) -> Vec<&'static str> {
        l.anomalies
            .iter()
            .map(|a| match a {
                Anomaly::MissingParent { .. } => "missing_parent",
                Anomaly::DuplicateSpan { .. } => "duplicate_span",
                Anomaly::Cycle { .. } => "cycle",
                Anomaly::ClockSkew { .. } => "clock_skew",
                Anomaly::DanglingLink { .. } => "dangling_link",
                Anomaly::NoRoot { .. } => "no_root",
                Anomaly::MayStillBeArriving { .. } => "may_still_be_arriving",
            })
            .collect()
    }

    #[test]
    fn clean_tree_has_no_anomalies_and_a_critical_path() {
        let l = build(
            vec![
                span(1, 1, None, 0, 100),
                span(1, 2, Some(1), 10, 40),
                span(1, 3, Some(1), 50, 90),
                span(1, 4, Some(3), 55, 85),
            ],
            OLD,
        );
        assert!(l.anomalies.is_empty(), "{:?}", l.anomalies);
        let path: Vec<_> = l
            .critical_path
            .iter()
            .map(|i| &*l.nodes[*i].span.name)
            .collect();
        assert_eq!(path, ["s1", "s3", "s4"]);
        assert_eq!(l.nodes[0].self_time_ns, 100 - 30 - 40);
        assert_eq!(l.nodes[2].self_time_ns, 40 - 30);
        assert_eq!(l.nodes[3].depth, 2);
        assert_eq!(l.nodes[3].reached_by, Some(EdgeKind::Child));
    }

    #[test]
    fn orphan_is_attached_to_the_root_and_reported() {
        let l = build(
            vec![span(1, 1, None, 0, 100), span(1, 5, Some(9), 10, 20)],
            OLD,
        );
        assert_eq!(kinds(&l), ["missing_parent"]);
        assert!(l.edges.contains(&Edge {
            from: 0,
            to: 1,
            kind: EdgeKind::Orphan,
            evidence: None,
        }));
        assert_eq!(l.nodes[1].reached_by, Some(EdgeKind::Orphan));
    }

    #[test]
    fn duplicate_span_ids_keep_the_first_copy() {
        let mut copy = span(1, 2, Some(1), 10, 20);
        copy.name = "copy".into();
        let l = build(
            vec![span(1, 1, None, 0, 100), span(1, 2, Some(1), 10, 20), copy],
            OLD,
        );
        assert_eq!(kinds(&l), ["duplicate_span"]);
        assert_eq!(l.nodes.len(), 2);
        assert_eq!(&*l.nodes[1].span.name, "s2");
    }

    #[test]
    fn link_cycles_are_reported_and_analyses_still_finish() {
        let mut a = span(1, 1, None, 0, 10);
        let mut b = span(2, 2, None, 20, 30);
        a.links.push((tid(2), sid(2)));
        b.links.push((tid(1), sid(1)));
        let l = build(vec![a, b], OLD);
        assert_eq!(kinds(&l), ["cycle"]);
        assert_eq!(l.critical_path.len(), 2);
        assert!(l.nodes.iter().all(|n| n.depth != u32::MAX));
    }

    #[test]
    fn clock_skew_is_reported() {
        let l = build(
            vec![span(1, 1, None, 100, 200), span(1, 2, Some(1), 90, 150)],
            OLD,
        );
        assert_eq!(kinds(&l), ["clock_skew"]);
        assert!(matches!(
            l.anomalies[0],
            Anomaly::ClockSkew {
                starts_before_parent_ns: 10,
                ..
            }
        ));
    }

    #[test]
    fn recent_traces_may_still_be_arriving_and_rootless_traces_are_named() {
        let l = build(vec![span(1, 2, Some(1), 0, OLD - 5)], OLD);
        assert_eq!(
            kinds(&l),
            ["no_root", "missing_parent", "may_still_be_arriving"]
        );
    }

    #[test]
    fn dangling_link_within_fetched_traces_is_reported() {
        let mut a = span(1, 1, None, 0, 10);
        a.links.push((tid(1), sid(7)));
        let l = build(vec![a], OLD);
        assert_eq!(kinds(&l), ["dangling_link"]);
    }

    #[test]
    fn links_join_traces_into_one_workflow_with_inherited_identity() {
        let mut root = span(1, 1, None, 0, 100);
        root.ai.fields.update(|f| f.identity = Some("alice".into()));
        let approval = span(1, 2, Some(1), 10, 20);
        let mut resumed = span(2, 3, None, 1_000, 2_000);
        resumed.links.push((tid(1), sid(2)));
        let tool = span(2, 4, Some(3), 1_100, 1_900);
        let l = build(vec![root, approval, resumed, tool], OLD);
        assert!(l.anomalies.is_empty(), "{:?}", l.anomalies);
        assert_eq!(l.traces, vec![tid(1), tid(2)]);
        assert!(l.edges.contains(&Edge {
            from: 1,
            to: 2,
            kind: EdgeKind::Link,
            evidence: None,
        }));
        assert_eq!(l.nodes[3].effective_identity.as_deref(), Some("alice"));
        assert_eq!(l.nodes[3].depth, 3);
        let path: Vec<_> = l
            .critical_path
            .iter()
            .map(|i| &*l.nodes[*i].span.name)
            .collect();
        assert_eq!(path, ["s1", "s2", "s3", "s4"]);
    }

    #[test]
    fn an_identity_lists_its_first_steps_and_counts_them_all() {
        let mut spans = vec![span(1, 1, None, 0, 1_000)];
        spans[0]
            .ai
            .fields
            .update(|f| f.identity = Some("alice".into()));
        for s in 2..=250u8 {
            spans.push(span(1, s, Some(1), i64::from(s), i64::from(s) + 1));
        }
        let l = build(spans, OLD);
        let alice = &l.summary.identities[0];
        assert_eq!(alice.identity, "alice");
        assert_eq!(alice.step_count, 250, "every step inherits her identity");
        assert_eq!(alice.steps.len(), crate::summary::IDENTITY_STEPS);
        assert_eq!(&*alice.steps[0].name, "s1", "in start order");
        assert!(crate::render::summary_text(&l).contains("alice (identity): 250 step(s)"));
    }

    #[test]
    fn a_workflow_large_enough_for_two_threads_is_summarised_in_start_order() {
        let n = 2 * crate::parallel::PARALLEL_FROM;
        let id = |i: u64| SpanId::try_from(&(i + 1).to_be_bytes()[..]).unwrap();
        let mut root = span(1, 1, None, 0, 10_000_000);
        root.span_id = id(0);
        let mut policy = span(1, 2, None, 1, 2);
        policy.span_id = id(1);
        policy.parent_span_id = Some(id(0));
        policy.ai.fields.update(|f| {
            f.ai_kind = Some(weft_schemas::AiKind::Policy);
            f.policy_verdict = Some(weft_schemas::PolicyVerdict::Allow);
        });
        let mut spans = vec![root, policy];
        // Tool calls added latest first: the summary must sort them.
        for k in (0..n as u64).rev() {
            let mut tool = span(1, 3, None, 10 + k as i64, 11 + k as i64);
            tool.span_id = id(2 + k);
            tool.parent_span_id = Some(id(0));
            tool.ai
                .fields
                .update(|f| f.tool_name = Some(format!("tool-{k}")));
            spans.push(tool);
        }
        let l = build(spans, OLD);
        let calls = &l.summary.tool_calls;
        assert_eq!(calls.len(), n);
        assert!(calls.windows(2).all(|w| w[0].time_ns < w[1].time_ns));
        assert_eq!(calls[0].tool, "tool-0");
        assert_eq!(calls[n - 1].tool, format!("tool-{}", n - 1));
        assert!(calls.iter().all(|c| {
            c.preceding_verdict
                .as_ref()
                .is_some_and(|v| v.verdict == weft_schemas::PolicyVerdict::Allow)
        }));
        assert!(
            l.nodes
                .iter()
                .all(|node| node.depth == u32::from(node.span_id != id(0)))
        );
        assert_eq!(l.edges.len(), n + 1);
    }
}
