//! What the signals answer: one row per node (or per node of one model) and
//! one per workflow kind, as plain serialisable data.

use serde::Serialize;

use crate::window::{CallAgg, WorkflowAgg};

/// One node's load in one window: a row of `/api/signals`, an event of the
/// stream, a row of `signals('1m')`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeSignals {
    pub node: String,
    /// The model the row is narrowed to, when one was asked for.
    pub model: Option<String>,
    pub window: String,
    /// Model calls that ended in the window, and per second.
    pub calls: u64,
    pub requests_per_second: f64,
    pub errors: u64,
    pub error_rate: Option<f64>,
    /// Calls started (a phase span of theirs arrived) and not yet ended.
    pub in_flight: u64,
    /// Share of calls that hit the KV cache, of those that said.
    pub kv_cache_hit_rate: Option<f64>,
    /// Mean reported share of prompt tokens served from the KV cache.
    pub kv_cache_hit_ratio: Option<f64>,
    pub queue_wait_p50_ns: Option<i64>,
    pub queue_wait_p95_ns: Option<i64>,
    pub queue_wait_p99_ns: Option<i64>,
    pub ttft_p50_ns: Option<i64>,
    pub ttft_p95_ns: Option<i64>,
    pub ttft_p99_ns: Option<i64>,
    pub duration_p50_ns: Option<i64>,
    pub duration_p95_ns: Option<i64>,
    pub duration_p99_ns: Option<i64>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub input_tokens_per_second: f64,
    pub output_tokens_per_second: f64,
    /// What the calls with a price cost; null when none had one.
    pub cost: Option<f64>,
    /// The latest end time of its calls (RFC 3339).
    pub last_seen: Option<String>,
    /// Not heard from for longer than the staleness bound: its numbers are
    /// old, not a sign of an idle node.
    pub stale: bool,
}

/// One workflow kind in one window: `/api/signals/workflows`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkflowSignals {
    /// The root span's `gen_ai.agent.name`, else its name.
    pub workflow: String,
    pub window: String,
    pub runs: u64,
    pub errors: u64,
    pub end_to_end_p50_ns: Option<i64>,
    pub end_to_end_p95_ns: Option<i64>,
    pub end_to_end_p99_ns: Option<i64>,
    pub budget_ns: i64,
    /// Share of runs longer than the budget.
    pub over_budget_rate: Option<f64>,
    /// Steps retried after a failed attempt, per run.
    pub retries_per_run: Option<f64>,
    /// Steps run per step needed (1.0: no retries).
    pub retry_amplification: Option<f64>,
    /// The step with the most time on the runs' critical paths, and its share.
    pub critical_step: Option<String>,
    pub critical_step_share: Option<f64>,
    pub cost: Option<f64>,
}

pub(crate) fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

pub(crate) fn rfc3339(ns: i64) -> Option<String> {
    (ns > 0).then(|| {
        chrono::DateTime::from_timestamp_nanos(ns)
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    })
}

/// What the row is of, besides its numbers.
pub(crate) struct NodeFacts<'a> {
    pub node: &'a str,
    pub model: Option<&'a str>,
    pub window: &'a str,
    pub covered_ns: i64,
    pub in_flight: u64,
    pub last_end_ns: i64,
    pub stale: bool,
}

pub(crate) fn node_row(facts: NodeFacts<'_>, agg: &CallAgg) -> NodeSignals {
    let secs = (facts.covered_ns as f64 / 1e9).max(1e-9);
    NodeSignals {
        node: facts.node.to_owned(),
        model: facts.model.map(str::to_owned),
        window: facts.window.to_owned(),
        calls: agg.calls,
        requests_per_second: agg.calls as f64 / secs,
        errors: agg.errors,
        error_rate: ratio(agg.errors, agg.calls),
        in_flight: facts.in_flight,
        kv_cache_hit_rate: ratio(agg.kv_hits, agg.kv_known),
        kv_cache_hit_ratio: (agg.ratio_n > 0).then(|| agg.ratio_sum / agg.ratio_n as f64),
        queue_wait_p50_ns: agg.queue_wait.quantile(0.5),
        queue_wait_p95_ns: agg.queue_wait.quantile(0.95),
        queue_wait_p99_ns: agg.queue_wait.quantile(0.99),
        ttft_p50_ns: agg.ttft.quantile(0.5),
        ttft_p95_ns: agg.ttft.quantile(0.95),
        ttft_p99_ns: agg.ttft.quantile(0.99),
        duration_p50_ns: agg.duration.quantile(0.5),
        duration_p95_ns: agg.duration.quantile(0.95),
        duration_p99_ns: agg.duration.quantile(0.99),
        input_tokens: agg.input_tokens,
        output_tokens: agg.output_tokens,
        input_tokens_per_second: agg.input_tokens as f64 / secs,
        output_tokens_per_second: agg.output_tokens as f64 / secs,
        cost: (agg.costed > 0).then_some(agg.cost),
        last_seen: rfc3339(facts.last_end_ns),
        stale: facts.stale,
    }
}

pub(crate) fn workflow_row(
    workflow: &str,
    window: &str,
    budget_ns: i64,
    agg: &WorkflowAgg,
) -> WorkflowSignals {
    let critical_total: i64 = agg.critical.iter().map(|(_, n)| *n).sum();
    // A step of no time on the path (a zero-length phase) dominates nothing.
    let critical = agg
        .critical
        .iter()
        .filter(|(_, nanos)| *nanos > 0)
        .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)));
    let needed = agg.steps.saturating_sub(agg.retries);
    WorkflowSignals {
        workflow: workflow.to_owned(),
        window: window.to_owned(),
        runs: agg.runs,
        errors: agg.errors,
        end_to_end_p50_ns: agg.end_to_end.quantile(0.5),
        end_to_end_p95_ns: agg.end_to_end.quantile(0.95),
        end_to_end_p99_ns: agg.end_to_end.quantile(0.99),
        budget_ns,
        over_budget_rate: ratio(agg.over_budget, agg.runs),
        retries_per_run: ratio(agg.retries, agg.runs),
        retry_amplification: ratio(agg.steps, needed),
        critical_step: critical.map(|(n, _)| n.clone()),
        critical_step_share: critical.map(|(_, n)| *n as f64 / critical_total as f64),
        cost: (agg.costed > 0).then_some(agg.cost),
    }
}
