//! Route advice: the nodes that can serve a model, best first, each with a
//! score and the reasons behind it. Advice only — the scheduler decides.
//!
//! A node's score adds what favours it and takes off what weighs on it,
//! each scaled by a [`RouteWeights`] weight:
//! `conversation · served this conversation + prefix · served this prefix
//!  − queue_wait · q/(q + 100 ms) − in_flight · n/(n + 4) − errors · error rate`,
//! with `q` the median queue wait and the error rate of the shortest window.
//! A conversation or prefix counts while it was served within `locality_ttl`.
//! Stale nodes come last whatever their score.

use serde::Serialize;

use crate::config::RouteWeights;
use crate::state::{Filter, Served, Signals, visible};
use crate::{Error, now_ns};

/// What a scheduler asks: a model, and what it knows of the request.
#[derive(Debug, Clone, Copy, Default)]
pub struct RouteRequest<'a> {
    pub model: &'a str,
    /// The prompt prefix key (`weft.kv_cache.prefix` on the calls).
    pub prefix: Option<&'a str>,
    /// `gen_ai.conversation.id`.
    pub conversation: Option<&'a str>,
    /// Only the spans of this tenant count.
    pub tenant: Option<&'a str>,
}

/// One node's advice.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Advice {
    pub node: String,
    pub score: f64,
    pub reasons: Vec<String>,
    pub stale: bool,
}

const MS: f64 = 1e6;

fn recent<'a>(served: &'a Served, tenant: Option<&str>, now: i64, ttl: i64) -> Option<&'a Served> {
    (visible(&served.tenant, tenant) && now - served.at_ns <= ttl).then_some(served)
}

fn ago(now: i64, at: i64) -> String {
    let secs = (now - at).max(0) as f64 / 1e9;
    if secs < 1.0 {
        format!("{:.0} ms ago", secs * 1e3)
    } else {
        format!("{secs:.1} s ago")
    }
}

fn cache(hit: Option<bool>) -> &'static str {
    match hit {
        Some(true) => " with a KV-cache hit",
        Some(false) => " (a KV-cache miss, which filled it)",
        None => "",
    }
}

impl Signals {
    /// The nodes that served `request.model`, best first.
    pub fn route(&self, request: RouteRequest<'_>) -> Result<Vec<Advice>, Error> {
        self.route_at(request, now_ns())
    }

    pub fn route_at(&self, request: RouteRequest<'_>, now: i64) -> Result<Vec<Advice>, Error> {
        if request.model.is_empty() {
            return Err(Error::Invalid(
                "route advice needs model=<the model to call>".into(),
            ));
        }
        let weights: RouteWeights = self.config.route;
        let ttl = i64::try_from(self.config.locality_ttl.as_nanos()).unwrap_or(i64::MAX);
        let staleness = self.staleness_ns();
        let mut state = self.lock()?;
        let conversation = request
            .conversation
            .and_then(|c| state.conversations.peek(c))
            .and_then(|s| recent(s, request.tenant, now, ttl))
            .cloned();
        let prefix: Vec<Served> = request
            .prefix
            .and_then(|p| state.prefixes.peek(p))
            .map(|nodes| {
                nodes
                    .iter()
                    .filter_map(|s| recent(s, request.tenant, now, ttl))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        // Node load over every model: a node busy with another model is busy.
        let filter = Filter {
            tenant: request.tenant,
            ..Filter::default()
        };
        let load = state.merged_nodes(0, filter, now);
        let serving = state.merged_nodes(
            0,
            Filter {
                model: Some(request.model),
                ..filter
            },
            now,
        );
        // Touch the keys asked for: they stay remembered while asked about.
        if let Some(c) = request.conversation {
            state.conversations.promote(c);
        }
        if let Some(p) = request.prefix {
            state.prefixes.promote(p);
        }
        drop(state);
        let mut advice: Vec<Advice> = serving
            .iter()
            .map(|node| {
                let mut score = 0.0;
                let mut reasons = Vec::new();
                if let Some(c) = conversation.as_ref().filter(|c| c.node == node.node) {
                    score += weights.conversation;
                    reasons.push(format!(
                        "served this conversation {}{} (+{:.2})",
                        ago(now, c.at_ns),
                        cache(c.hit),
                        weights.conversation
                    ));
                }
                if let Some(p) = prefix.iter().find(|p| p.node == node.node) {
                    score += weights.prefix;
                    reasons.push(format!(
                        "served this prefix {}{} (+{:.2})",
                        ago(now, p.at_ns),
                        cache(p.hit),
                        weights.prefix
                    ));
                }
                let all = load.iter().find(|l| l.node == node.node).unwrap_or(node);
                let queue_ms = all.agg.queue_wait.quantile(0.5).unwrap_or(0) as f64 / MS;
                // Under 0.1 ms a queue is not worth a reason.
                if queue_ms >= 0.1 {
                    let cost = weights.queue_wait * queue_ms / (queue_ms + 100.0);
                    score -= cost;
                    reasons.push(format!("median queue wait {queue_ms:.1} ms (-{cost:.2})"));
                }
                if all.in_flight > 0 {
                    let n = all.in_flight as f64;
                    let cost = weights.in_flight * n / (n + 4.0);
                    score -= cost;
                    reasons.push(format!("{} calls in flight (-{cost:.2})", all.in_flight));
                }
                if all.agg.errors > 0 && all.agg.calls > 0 {
                    let rate = all.agg.errors as f64 / all.agg.calls as f64;
                    let cost = weights.errors * rate;
                    score -= cost;
                    reasons.push(format!("error rate {:.1}% (-{cost:.2})", rate * 100.0));
                }
                let stale = now - all.heard_ns > staleness;
                if stale {
                    reasons.push(format!(
                        "stale: not heard from for {:.0} s; its numbers are old",
                        (now - all.heard_ns) as f64 / 1e9
                    ));
                }
                if reasons.is_empty() {
                    reasons.push("no cache locality, no queue, nothing in flight".into());
                }
                Advice {
                    node: node.node.clone(),
                    score: (score * 1e4).round() / 1e4,
                    reasons,
                    stale,
                }
            })
            .collect();
        advice.sort_by(|a, b| {
            a.stale
                .cmp(&b.stale)
                .then(b.score.total_cmp(&a.score))
                .then_with(|| a.node.cmp(&b.node))
        });
        Ok(advice)
    }
}
