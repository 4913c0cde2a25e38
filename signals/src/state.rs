//! [`Signals`]: the live state behind one lock, updated per acknowledged
//! batch and read by every interface.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::{Mutex, MutexGuard};

use arrow::record_batch::RecordBatch;
use lru::LruCache;
use tokio::sync::watch;
use weft_schemas::{AiKind, SpanId, TraceId};

use crate::config::SignalsConfig;
use crate::observe::{Seen, read};
use crate::rows::{NodeFacts, NodeSignals, WorkflowSignals, node_row, workflow_row};
use crate::sketch::MAX_BINS;
use crate::window::{CallAgg, Merge, Ring, SLOTS, WorkflowAgg};
use crate::{Error, now_ns};

pub(crate) type Tenant = Option<String>;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct NodeKey {
    pub tenant: Tenant,
    pub node: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ModelKey {
    pub tenant: Tenant,
    pub node: String,
    pub model: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct WorkflowKey {
    tenant: Tenant,
    kind: String,
}

/// One key's windows, and when it was last heard from.
pub(crate) struct Series<A> {
    pub rings: Vec<Ring<A>>,
    /// When a span of it last arrived (Unix ns; its end time when rebuilt).
    pub heard_ns: i64,
    /// The latest end time of its spans.
    pub last_end_ns: i64,
    /// [`State::version`] when it last changed.
    pub changed: u64,
}

impl<A: Merge> Series<A> {
    fn new(config: &SignalsConfig) -> Self {
        Self {
            rings: config
                .windows
                .iter()
                .map(|w| Ring::new(i64::try_from(w.length.as_nanos()).unwrap_or(i64::MAX)))
                .collect(),
            heard_ns: 0,
            last_end_ns: 0,
            changed: 0,
        }
    }

    fn record(&mut self, end_ns: i64, heard_ns: i64, version: u64, f: impl Fn(&mut A)) {
        for ring in &mut self.rings {
            if let Some(slot) = ring.slot(end_ns, heard_ns) {
                f(slot);
            }
        }
        self.heard_ns = self.heard_ns.max(heard_ns);
        self.last_end_ns = self.last_end_ns.max(end_ns);
        self.changed = version;
    }
}

/// A call seen started (a phase span of it arrived) and not yet ended.
struct Open {
    node: NodeKey,
    model: Option<String>,
    since_ns: i64,
}

/// A step of a trace whose root span has not arrived.
struct Step {
    span: SpanId,
    parent: SpanId,
    name: String,
    start_ns: i64,
    end_ns: i64,
    error: bool,
    cost: Option<f64>,
}

/// Steps kept per pending trace.
const MAX_STEPS: usize = 64;

/// Who served a conversation or a prompt prefix, and when.
#[derive(Clone)]
pub(crate) struct Served {
    pub tenant: Tenant,
    pub node: String,
    pub at_ns: i64,
    pub hit: Option<bool>,
}

/// Nodes remembered per prompt prefix.
const NODES_PER_PREFIX: usize = 8;

pub(crate) struct State {
    pub nodes: LruCache<NodeKey, Series<CallAgg>>,
    pub models: LruCache<ModelKey, Series<CallAgg>>,
    workflows: LruCache<WorkflowKey, Series<WorkflowAgg>>,
    open: LruCache<(TraceId, SpanId), Open>,
    ended: LruCache<(TraceId, SpanId), ()>,
    pub in_flight_nodes: HashMap<NodeKey, u64>,
    pub in_flight_models: HashMap<ModelKey, u64>,
    traces: LruCache<TraceId, Vec<Step>>,
    pub conversations: LruCache<String, Served>,
    pub prefixes: LruCache<String, Vec<Served>>,
    /// Bumped by every batch observed.
    version: u64,
}

fn cap(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN)
}

/// The most memory the state can hold with `config`'s caps, in bytes, when
/// every sketch is full ([`MAX_BINS`] bins); typical use is a tenth of it.
pub fn memory_bound_bytes(config: &SignalsConfig) -> u64 {
    let sketch = u64::from(MAX_BINS) * 8 + 128;
    let rings = (config.windows.len() * SLOTS) as u64;
    // Nodes and (node, model) pairs: three sketches a slot; workflows one,
    // plus up to 32 critical-path names.
    let call_key = rings * (3 * sketch + 128);
    let workflow_key = rings * (sketch + 32 * 48 + 128);
    let keys = config.max_keys as u64 * (2 * call_key + workflow_key);
    // A call in flight: its key and node in two maps; a pending trace: its
    // steps (ids, times, a name).
    let open = config.max_open as u64 * 256;
    let traces = config.max_traces as u64 * (64 + MAX_STEPS as u64 * 112);
    let locality = config.max_locality_keys as u64 * (2 * 160 + NODES_PER_PREFIX as u64 * 80);
    keys + open + traces + locality
}

/// Narrows node rows: to one tenant's spans, one node, one model.
#[derive(Debug, Clone, Copy, Default)]
pub struct Filter<'a> {
    pub tenant: Option<&'a str>,
    pub node: Option<&'a str>,
    pub model: Option<&'a str>,
}

/// The live signals; share one per server.
pub struct Signals {
    pub(crate) config: SignalsConfig,
    state: Mutex<State>,
    version: watch::Sender<u64>,
}

impl std::fmt::Debug for Signals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signals")
            .field("windows", &self.config.window_names())
            .finish_non_exhaustive()
    }
}

impl Signals {
    pub fn new(config: SignalsConfig) -> Result<Self, Error> {
        let config = config.validated()?;
        let state = State {
            nodes: LruCache::new(cap(config.max_keys)),
            models: LruCache::new(cap(config.max_keys)),
            workflows: LruCache::new(cap(config.max_keys)),
            open: LruCache::new(cap(config.max_open)),
            ended: LruCache::new(cap(config.max_open)),
            in_flight_nodes: HashMap::new(),
            in_flight_models: HashMap::new(),
            traces: LruCache::new(cap(config.max_traces)),
            conversations: LruCache::new(cap(config.max_locality_keys)),
            prefixes: LruCache::new(cap(config.max_locality_keys)),
            version: 0,
        };
        Ok(Self {
            config,
            state: Mutex::new(state),
            version: watch::channel(0).0,
        })
    }

    pub fn config(&self) -> &SignalsConfig {
        &self.config
    }

    pub(crate) fn lock(&self) -> Result<MutexGuard<'_, State>, Error> {
        self.state
            .lock()
            .map_err(|_| Error::Internal("lock poisoned by an earlier panic".into()))
    }

    /// Takes in a batch of newly acknowledged spans, heard now.
    pub fn observe(&self, batch: &RecordBatch) -> Result<(), Error> {
        self.observe_at(batch, None, now_ns())
    }

    /// Takes in spans read back from storage after a restart: each is taken
    /// as heard at its end time, so nodes silent since stay stale.
    pub fn rebuild(&self, batch: &RecordBatch) -> Result<(), Error> {
        let now = now_ns();
        self.observe_at(batch, Some(now), now)
    }

    /// [`Signals::observe`] at a given time (tests, benchmarks). With
    /// `replayed`, spans are heard at their end time (not after `replayed`).
    pub fn observe_at(
        &self,
        batch: &RecordBatch,
        replayed: Option<i64>,
        now_ns: i64,
    ) -> Result<(), Error> {
        let rows = read(batch)?;
        if rows.is_empty() {
            return Ok(());
        }
        let version = {
            let mut state = self.lock()?;
            state.version += 1;
            let version = state.version;
            state.expire(now_ns, &self.config);
            let in_batch: HashSet<(TraceId, SpanId)> =
                rows.iter().map(|r| (r.trace, r.span)).collect();
            // Steps before roots: a root arriving with its children settles them.
            let (roots, steps): (Vec<&Seen>, Vec<&Seen>) =
                rows.iter().partition(|r| r.parent.is_none());
            for seen in steps.into_iter().chain(roots) {
                let heard = replayed.map_or(now_ns, |limit| seen.end_ns.min(limit));
                state.take(seen, heard, version, &in_batch, &self.config);
            }
            version
        };
        self.version.send_replace(version);
        Ok(())
    }

    /// Wakes when something was observed; the value is a version to pass to
    /// [`Signals::changed_nodes`].
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// The nodes (of `tenant`'s spans, if given) that changed after `since`,
    /// and the current version.
    pub fn changed_nodes(
        &self,
        since: u64,
        tenant: Option<&str>,
    ) -> Result<(u64, Vec<String>), Error> {
        let state = self.lock()?;
        let mut nodes: Vec<String> = state
            .nodes
            .iter()
            .filter(|(k, s)| s.changed > since && visible(&k.tenant, tenant))
            .map(|(k, _)| k.node.clone())
            .collect();
        nodes.sort();
        nodes.dedup();
        Ok((state.version, nodes))
    }

    fn window_index(&self, window: &str) -> Result<usize, Error> {
        self.config
            .windows
            .iter()
            .position(|w| w.name == window)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "window must be one of {}, not {window:?}",
                    self.config.window_names()
                ))
            })
    }

    /// One row per node (per node of `filter.model`), warmest KV cache
    /// first, then shortest median queue wait; stale nodes last.
    pub fn nodes(&self, window: &str, filter: Filter<'_>) -> Result<Vec<NodeSignals>, Error> {
        self.nodes_at(window, filter, now_ns())
    }

    pub fn nodes_at(
        &self,
        window: &str,
        filter: Filter<'_>,
        now_ns: i64,
    ) -> Result<Vec<NodeSignals>, Error> {
        let w = self.window_index(window)?;
        let mut state = self.lock()?;
        state.expire(now_ns, &self.config);
        let mut rows: Vec<NodeSignals> = state
            .merged_nodes(w, filter, now_ns)
            .into_iter()
            .map(|m| {
                node_row(
                    NodeFacts {
                        node: &m.node,
                        model: filter.model,
                        window,
                        covered_ns: m.covered_ns,
                        in_flight: m.in_flight,
                        last_end_ns: m.last_end_ns,
                        stale: now_ns - m.heard_ns > self.staleness_ns(),
                    },
                    &m.agg,
                )
            })
            .collect();
        drop(state);
        rows.sort_by(|a, b| {
            a.stale
                .cmp(&b.stale)
                .then(desc(a.kv_cache_hit_rate, b.kv_cache_hit_rate))
                .then(
                    a.queue_wait_p50_ns
                        .unwrap_or(i64::MAX)
                        .cmp(&b.queue_wait_p50_ns.unwrap_or(i64::MAX)),
                )
                .then_with(|| a.node.cmp(&b.node))
        });
        Ok(rows)
    }

    pub(crate) fn staleness_ns(&self) -> i64 {
        i64::try_from(self.config.staleness.as_nanos()).unwrap_or(i64::MAX)
    }

    /// One row per workflow kind, most runs first.
    pub fn workflows(
        &self,
        window: &str,
        tenant: Option<&str>,
    ) -> Result<Vec<WorkflowSignals>, Error> {
        self.workflows_at(window, tenant, now_ns())
    }

    pub fn workflows_at(
        &self,
        window: &str,
        tenant: Option<&str>,
        now_ns: i64,
    ) -> Result<Vec<WorkflowSignals>, Error> {
        let w = self.window_index(window)?;
        let state = self.lock()?;
        let mut merged: HashMap<&str, WorkflowAgg> = HashMap::new();
        for (key, series) in state.workflows.iter() {
            if visible(&key.tenant, tenant) {
                merged
                    .entry(key.kind.as_str())
                    .or_default()
                    .merge(&series.rings[w].read(now_ns));
            }
        }
        let mut rows: Vec<WorkflowSignals> = merged
            .into_iter()
            .filter(|(_, agg)| agg.runs > 0)
            .map(|(kind, agg)| {
                let budget = self.config.budget(kind);
                workflow_row(
                    kind,
                    window,
                    i64::try_from(budget.as_nanos()).unwrap_or(i64::MAX),
                    &agg,
                )
            })
            .collect();
        rows.sort_by(|a, b| {
            b.runs
                .cmp(&a.runs)
                .then_with(|| a.workflow.cmp(&b.workflow))
        });
        Ok(rows)
    }

    /// Keys held now: nodes, (node, model) pairs, workflow kinds, calls in
    /// flight, pending traces, conversations, prefixes.
    pub fn held(&self) -> Result<[usize; 7], Error> {
        let s = self.lock()?;
        Ok([
            s.nodes.len(),
            s.models.len(),
            s.workflows.len(),
            s.open.len(),
            s.traces.len(),
            s.conversations.len(),
            s.prefixes.len(),
        ])
    }
}

fn desc(a: Option<f64>, b: Option<f64>) -> std::cmp::Ordering {
    b.unwrap_or(-1.0).total_cmp(&a.unwrap_or(-1.0))
}

/// Whether a key of `owner` is shown to a caller of `tenant` (`None`: every
/// tenant's).
pub(crate) fn visible(owner: &Tenant, tenant: Option<&str>) -> bool {
    tenant.is_none() || owner.as_deref() == tenant
}

/// A node's window, merged across the keys the filter lets through.
pub(crate) struct Merged {
    pub node: String,
    pub agg: CallAgg,
    pub covered_ns: i64,
    pub in_flight: u64,
    pub heard_ns: i64,
    pub last_end_ns: i64,
}

impl State {
    /// Ends what timed out: calls in flight too long.
    fn expire(&mut self, now_ns: i64, config: &SignalsConfig) {
        let timeout = i64::try_from(config.in_flight_timeout.as_nanos()).unwrap_or(i64::MAX);
        while let Some((_, open)) = self.open.peek_lru() {
            if now_ns - open.since_ns <= timeout {
                break;
            }
            if let Some((_, open)) = self.open.pop_lru() {
                self.release(&open);
            }
        }
    }

    fn release(&mut self, open: &Open) {
        decrement(&mut self.in_flight_nodes, &open.node);
        if let Some(model) = &open.model {
            decrement(
                &mut self.in_flight_models,
                &ModelKey {
                    tenant: open.node.tenant.clone(),
                    node: open.node.node.clone(),
                    model: model.clone(),
                },
            );
        }
    }

    fn take(
        &mut self,
        seen: &Seen,
        heard: i64,
        version: u64,
        in_batch: &HashSet<(TraceId, SpanId)>,
        config: &SignalsConfig,
    ) {
        let id = (seen.trace, seen.span);
        self.ended.put(id, ());
        if let Some(open) = self.open.pop(&id) {
            self.release(&open);
        }
        let ai = &seen.ai;
        let is_call = ai.ai_kind == Some(AiKind::Llm);
        // A phase of a call (queue, prefill, decode: a child that is not a
        // model call itself) on a node says its call is in flight there.
        if let (Some(parent), Some(node), false) = (seen.parent, &ai.node, is_call) {
            let parent_id = (seen.trace, parent);
            if !in_batch.contains(&parent_id)
                && !self.ended.contains(&parent_id)
                && !self.open.contains(&parent_id)
            {
                let node = NodeKey {
                    tenant: seen.tenant.clone(),
                    node: node.clone(),
                };
                *self.in_flight_nodes.entry(node.clone()).or_default() += 1;
                if let Some(model) = &ai.gen_ai_model {
                    let key = ModelKey {
                        tenant: node.tenant.clone(),
                        node: node.node.clone(),
                        model: model.clone(),
                    };
                    *self.in_flight_models.entry(key).or_default() += 1;
                }
                let open = Open {
                    node,
                    model: ai.gen_ai_model.clone(),
                    since_ns: heard,
                };
                // Not there before (checked above): what comes back was evicted.
                if let Some((_, evicted)) = self.open.push(parent_id, open) {
                    self.release(&evicted);
                }
            }
        }
        if is_call && let Some(node) = &ai.node {
            self.take_call(seen, node, heard, version, config);
        }
        match seen.parent {
            Some(parent) => {
                let steps = self.traces.get_or_insert_mut(seen.trace, Vec::new);
                if steps.len() < MAX_STEPS {
                    steps.push(Step {
                        span: seen.span,
                        parent,
                        name: seen.name.clone(),
                        start_ns: seen.start_ns,
                        end_ns: seen.end_ns,
                        error: seen.error,
                        cost: ai.cost,
                    });
                }
            }
            None => self.take_workflow(seen, heard, version, config),
        }
    }

    fn take_call(
        &mut self,
        seen: &Seen,
        node: &str,
        heard: i64,
        version: u64,
        config: &SignalsConfig,
    ) {
        let ai = &seen.ai;
        let add = |agg: &mut CallAgg| {
            agg.calls += 1;
            agg.errors += u64::from(seen.error);
            if let Some(hit) = ai.kv_cache_hit {
                agg.kv_known += 1;
                agg.kv_hits += u64::from(hit);
            }
            if let Some(ratio) = ai.kv_cache_hit_ratio {
                agg.ratio_sum += ratio;
                agg.ratio_n += 1;
            }
            agg.input_tokens += ai.input_tokens.unwrap_or(0).max(0) as u64;
            agg.output_tokens += ai.output_tokens.unwrap_or(0).max(0) as u64;
            if let Some(cost) = ai.cost {
                agg.cost += cost;
                agg.costed += 1;
            }
            if let Some(q) = ai.queue_wait_ns {
                agg.queue_wait.add(q);
            }
            if let Some(t) = ai.time_to_first_token_ns {
                agg.ttft.add(t);
            }
            agg.duration.add(seen.duration_ns());
        };
        let key = NodeKey {
            tenant: seen.tenant.clone(),
            node: node.to_owned(),
        };
        self.nodes
            .get_or_insert_mut(key, || Series::new(config))
            .record(seen.end_ns, heard, version, add);
        if let Some(model) = &ai.gen_ai_model {
            let key = ModelKey {
                tenant: seen.tenant.clone(),
                node: node.to_owned(),
                model: model.clone(),
            };
            self.models
                .get_or_insert_mut(key, || Series::new(config))
                .record(seen.end_ns, heard, version, add);
        }
        let served = Served {
            tenant: seen.tenant.clone(),
            node: node.to_owned(),
            at_ns: heard,
            hit: ai.kv_cache_hit,
        };
        if let Some(conversation) = &ai.conversation_id {
            self.conversations.put(conversation.clone(), served.clone());
        }
        if let Some(prefix) = &ai.kv_cache_prefix {
            let nodes = self.prefixes.get_or_insert_mut(prefix.clone(), Vec::new);
            nodes.retain(|s| !(s.node == served.node && s.tenant == served.tenant));
            if nodes.len() >= NODES_PER_PREFIX
                && let Some(oldest) = (0..nodes.len()).min_by_key(|i| nodes[*i].at_ns)
            {
                nodes.swap_remove(oldest);
            }
            nodes.push(served);
        }
    }

    /// A root span: its trace's run of its workflow kind.
    fn take_workflow(&mut self, root: &Seen, heard: i64, version: u64, config: &SignalsConfig) {
        let steps = self.traces.pop(&root.trace).unwrap_or_default();
        let kind = root
            .ai
            .agent_name
            .clone()
            .unwrap_or_else(|| root.name.clone());
        let budget = i64::try_from(config.budget(&kind).as_nanos()).unwrap_or(i64::MAX);
        let duration = root.duration_ns();
        let retries = retries(&steps);
        let critical = critical_path(root, &steps);
        let costs: Vec<f64> = steps
            .iter()
            .filter_map(|s| s.cost)
            .chain(root.ai.cost)
            .collect();
        let key = WorkflowKey {
            tenant: root.tenant.clone(),
            kind,
        };
        self.workflows
            .get_or_insert_mut(key, || Series::new(config))
            .record(root.end_ns, heard, version, |agg: &mut WorkflowAgg| {
                agg.runs += 1;
                agg.errors += u64::from(root.error);
                agg.over_budget += u64::from(duration > budget);
                agg.retries += retries;
                agg.steps += steps.len() as u64;
                if !costs.is_empty() {
                    agg.cost += costs.iter().sum::<f64>();
                    agg.costed += 1;
                }
                agg.end_to_end.add(duration);
                for (name, nanos) in &critical {
                    agg.add_critical(name, *nanos);
                }
            });
    }

    /// Every node's window `w`, merged across the keys `filter` lets through.
    pub(crate) fn merged_nodes(&self, w: usize, filter: Filter<'_>, now_ns: i64) -> Vec<Merged> {
        let mut merged: HashMap<String, Merged> = HashMap::new();
        let mut add = |node: &str, series: &Series<CallAgg>, in_flight: u64| {
            let ring = &series.rings[w];
            let m = merged.entry(node.to_owned()).or_insert_with(|| Merged {
                node: node.to_owned(),
                agg: CallAgg::default(),
                covered_ns: ring.covered_ns(now_ns),
                in_flight: 0,
                heard_ns: 0,
                last_end_ns: 0,
            });
            m.agg.merge(&ring.read(now_ns));
            m.in_flight += in_flight;
            m.heard_ns = m.heard_ns.max(series.heard_ns);
            m.last_end_ns = m.last_end_ns.max(series.last_end_ns);
        };
        match filter.model {
            Some(model) => {
                for (key, series) in self.models.iter() {
                    if key.model == model
                        && visible(&key.tenant, filter.tenant)
                        && filter.node.is_none_or(|n| n == key.node)
                    {
                        let in_flight = self.in_flight_models.get(key).copied().unwrap_or(0);
                        add(&key.node, series, in_flight);
                    }
                }
            }
            None => {
                for (key, series) in self.nodes.iter() {
                    if visible(&key.tenant, filter.tenant)
                        && filter.node.is_none_or(|n| n == key.node)
                    {
                        let in_flight = self.in_flight_nodes.get(key).copied().unwrap_or(0);
                        add(&key.node, series, in_flight);
                    }
                }
            }
        }
        merged.into_values().collect()
    }
}

fn decrement<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, u64>, key: &K) {
    if let Some(n) = counts.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            counts.remove(key);
        }
    }
}

/// Steps run again after an attempt of the same name under the same parent
/// failed.
fn retries(steps: &[Step]) -> u64 {
    let mut attempts: HashMap<(SpanId, &str), Vec<(i64, bool)>> = HashMap::new();
    for s in steps {
        attempts
            .entry((s.parent, s.name.as_str()))
            .or_default()
            .push((s.start_ns, s.error));
    }
    let mut retries = 0;
    for list in attempts.values_mut() {
        list.sort_by_key(|a| a.0);
        let mut failed_before = false;
        for (_, error) in list.iter() {
            retries += u64::from(failed_before);
            failed_before |= *error;
        }
    }
    retries
}

/// Time on the critical path by step name: from the root, follow the child
/// that ended last; each step holds the path for its duration less its
/// critical child's. The root's own time is not a step's.
fn critical_path(root: &Seen, steps: &[Step]) -> Vec<(String, i64)> {
    let mut children: HashMap<SpanId, Vec<&Step>> = HashMap::new();
    for s in steps {
        children.entry(s.parent).or_default().push(s);
    }
    let last_child = |of: SpanId| -> Option<&Step> {
        children
            .get(&of)?
            .iter()
            .copied()
            .max_by_key(|s| (s.end_ns, s.start_ns))
    };
    let mut path = Vec::new();
    let mut current = last_child(root.span);
    // Each step is visited once at most: a cycle of parents cannot loop.
    let mut visited = HashSet::new();
    while let Some(step) = current {
        if !visited.insert(step.span) {
            break;
        }
        let next = last_child(step.span);
        let own = (step.end_ns - step.start_ns).max(0);
        let child = next.map_or(0, |n| (n.end_ns - n.start_ns).max(0));
        path.push((step.name.clone(), (own - child).max(0)));
        current = next;
    }
    path
}
