//! Evidence joins: edges between spans whose trace context was lost on the
//! way (a queue, a batch job, a webhook, a human hand-off), drawn from an id
//! the conventions put on both ends:
//!
//! - `gen_ai.tool.call.id`: the model call that asked for a tool (the id as
//!   its attribute, or in a `tool_call` part of its output messages) → the
//!   span that ran it, within one `gen_ai.conversation.id` when both carry one;
//! - `messaging.message.id`: the producer of a message → its consumer, on the
//!   same destination, when no span link joins them already;
//! - `weft.approval.action`: an approval naming a tool call id → the span that
//!   ran that call.
//!
//! Both ends must be in different traces (within a trace the context was
//! kept), of the same tenant, and no more than the window apart. Each span is
//! joined at most once per key: to the nearest candidate that started before
//! it, else the nearest after; and a tool call runs once, so a model call or
//! an approval keeps only its nearest run of each call id. The same rule decides which traces the loader
//! fetches ([`joins`] over the spans it has and the candidates it found), so a
//! decoy is never loaded as part of a workflow.

use foldhash::{HashMap, HashMapExt};
use serde::{Deserialize, Serialize};
use weft_schemas::AiKind;

use crate::span::LineageSpan;

/// The model call → tool evidence key.
pub const TOOL_CALL_KEY: &str = "gen_ai.tool.call.id";
/// The producer → consumer evidence key.
pub const MESSAGE_KEY: &str = "messaging.message.id";
/// The approval → tool evidence key.
pub const APPROVAL_KEY: &str = "weft.approval.action";
/// Every evidence key, the default of `evidence_keys`.
pub const ALL_KEYS: [&str; 3] = [TOOL_CALL_KEY, MESSAGE_KEY, APPROVAL_KEY];

/// What an evidence edge rests on: the key and the value both ends carry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Evidence {
    pub key: String,
    pub value: String,
}

/// Which evidence joins spans, and how far apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceRules {
    tool_calls: bool,
    messages: bool,
    approvals: bool,
    /// Ends further apart than this (start to start) never join.
    pub window_ns: i64,
}

/// The default window: a day, long enough for a human approval.
pub const DEFAULT_WINDOW_NS: i64 = 24 * 3_600 * 1_000_000_000;

impl Default for EvidenceRules {
    /// Every key, a day's window.
    fn default() -> Self {
        Self {
            tool_calls: true,
            messages: true,
            approvals: true,
            window_ns: DEFAULT_WINDOW_NS,
        }
    }
}

impl EvidenceRules {
    /// No evidence joins.
    pub fn off() -> Self {
        Self {
            tool_calls: false,
            messages: false,
            approvals: false,
            window_ns: 0,
        }
    }

    /// From the keys to join by (an empty list turns joins off) and the
    /// window; an unknown key is the caller's mistake, named.
    pub fn new(keys: &[impl AsRef<str>], window_ns: i64) -> Result<Self, String> {
        let mut rules = Self::off();
        rules.window_ns = window_ns.max(0);
        for key in keys {
            match key.as_ref() {
                TOOL_CALL_KEY => rules.tool_calls = true,
                MESSAGE_KEY => rules.messages = true,
                APPROVAL_KEY => rules.approvals = true,
                other => {
                    return Err(format!(
                        "unknown evidence key {other:?}; the keys are {}",
                        ALL_KEYS.join(", ")
                    ));
                }
            }
        }
        Ok(rules)
    }

    /// Whether any key joins.
    pub fn enabled(&self) -> bool {
        self.tool_calls || self.messages || self.approvals
    }

    /// The keys that join, for showing.
    pub fn keys(&self) -> Vec<&'static str> {
        [
            (self.tool_calls, TOOL_CALL_KEY),
            (self.messages, MESSAGE_KEY),
            (self.approvals, APPROVAL_KEY),
        ]
        .into_iter()
        .filter_map(|(on, k)| on.then_some(k))
        .collect()
    }
}

/// One evidence join: `from` (the cause) → `to`, indices into the spans given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Join {
    pub from: usize,
    pub to: usize,
    pub evidence: Evidence,
}

/// Which end of a message a span is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Producer,
    Consumer,
}

fn message_role(span: &LineageSpan) -> Option<Role> {
    match span.ai.fields.messaging_operation() {
        Some("create" | "send" | "publish") => return Some(Role::Producer),
        Some("receive" | "process" | "deliver" | "settle") => return Some(Role::Consumer),
        _ => {}
    }
    match span.kind.as_deref() {
        Some("producer") => Some(Role::Producer),
        Some("consumer") => Some(Role::Consumer),
        _ => None,
    }
}

/// Whether `a` and `b` may be joined at all: other traces, one tenant, one
/// conversation when both name one, within the window.
fn compatible(a: &LineageSpan, b: &LineageSpan, rules: &EvidenceRules) -> bool {
    let conversation = match (a.ai.fields.conversation_id(), b.ai.fields.conversation_id()) {
        (Some(x), Some(y)) => x == y,
        _ => true,
    };
    a.trace_id != b.trace_id
        && a.ai.tenant == b.ai.tenant
        && conversation
        && a.start_ns.abs_diff(b.start_ns) <= rules.window_ns.unsigned_abs()
}

/// Of `candidates` (indices of causes), the one to join `to` to: compatible,
/// the latest that started no later than it, else the earliest after it.
fn nearest(
    spans: &[&LineageSpan],
    candidates: &[usize],
    to: usize,
    rules: &EvidenceRules,
) -> Option<usize> {
    let t = &spans[to];
    let ok = candidates
        .iter()
        .copied()
        .filter(|c| *c != to && compatible(spans[*c], t, rules));
    let key = |c: &usize| (spans[*c].start_ns, *c);
    let (before, after): (Vec<usize>, Vec<usize>) =
        ok.partition(|c| spans[*c].start_ns <= t.start_ns);
    before
        .into_iter()
        .max_by_key(key)
        .or_else(|| after.into_iter().min_by_key(key))
}

/// Every evidence join among `spans` under `rules`, in span order.
pub fn joins<S: AsRef<LineageSpan>>(spans: &[S], rules: &EvidenceRules) -> Vec<Join> {
    if !rules.enabled() {
        return Vec::new();
    }
    let spans: Vec<&LineageSpan> = spans.iter().map(AsRef::as_ref).collect();
    joins_in(&spans, rules)
}

fn joins_in(spans: &[&LineageSpan], rules: &EvidenceRules) -> Vec<Join> {
    let mut out = Vec::new();
    if !rules.enabled() {
        return out;
    }
    // Causes indexed by value; effects looked up in them.
    let mut requested: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut approving: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut produced: HashMap<(&str, Option<&str>), Vec<usize>> = HashMap::new();
    for (i, s) in spans.iter().enumerate() {
        let f = &s.ai.fields;
        if rules.tool_calls && f.ai_kind() == Some(AiKind::Llm) {
            let ids = f.tool_call_id().into_iter().chain(
                f.requested_tool_call_ids()
                    .into_iter()
                    .flatten()
                    .map(String::as_str),
            );
            for id in ids {
                let list = requested.entry(id).or_default();
                if list.last() != Some(&i) {
                    list.push(i);
                }
            }
        }
        if rules.approvals
            && let Some(action) = f.approval_action()
        {
            approving.entry(action).or_default().push(i);
        }
        if rules.messages
            && let Some(id) = f.message_id()
            && message_role(s) == Some(Role::Producer)
        {
            produced
                .entry((id, f.messaging_destination()))
                .or_default()
                .push(i);
        }
    }
    for (i, s) in spans.iter().enumerate() {
        let f = &s.ai.fields;
        if let Some(id) = f.tool_call_id()
            && f.ai_kind() != Some(AiKind::Llm)
        {
            if rules.tool_calls
                && let Some(from) = requested.get(id).and_then(|c| nearest(spans, c, i, rules))
            {
                out.push(join(from, i, TOOL_CALL_KEY, id));
            }
            if rules.approvals
                && let Some(from) = approving.get(id).and_then(|c| nearest(spans, c, i, rules))
            {
                out.push(join(from, i, APPROVAL_KEY, id));
            }
        }
        if rules.messages
            && let Some(id) = f.message_id()
            && message_role(s) == Some(Role::Consumer)
            && let Some(from) = produced
                .get(&(id, f.messaging_destination()))
                .and_then(|c| nearest(spans, c, i, rules))
        {
            let p = &spans[from];
            if !s.links.contains(&(p.trace_id, p.span_id)) {
                out.push(join(from, i, MESSAGE_KEY, id));
            }
        }
    }
    one_run_per_call(spans, out)
}

/// A tool call runs once: of the spans a model call (or an approval) would
/// join by one call id, only the nearest that started after it (else the
/// nearest before) keeps the edge. A message may have many consumers.
fn one_run_per_call(spans: &[&LineageSpan], joins: Vec<Join>) -> Vec<Join> {
    let distance = |j: &Join| {
        let gap = spans[j.to].start_ns.saturating_sub(spans[j.from].start_ns);
        (gap < 0, gap.unsigned_abs(), j.to)
    };
    let mut best: HashMap<(usize, &str), (bool, u64, usize)> = HashMap::new();
    for j in joins.iter().filter(|j| j.evidence.key != MESSAGE_KEY) {
        let d = distance(j);
        best.entry((j.from, j.evidence.key.as_str()))
            .and_modify(|b| *b = (*b).min(d))
            .or_insert(d);
    }
    let keep: Vec<bool> = joins
        .iter()
        .map(|j| {
            j.evidence.key == MESSAGE_KEY
                || best.get(&(j.from, j.evidence.key.as_str())) == Some(&distance(j))
        })
        .collect();
    joins
        .into_iter()
        .zip(keep)
        .filter_map(|(j, k)| k.then_some(j))
        .collect()
}

fn join(from: usize, to: usize, key: &str, value: &str) -> Join {
    Join {
        from,
        to,
        evidence: Evidence {
            key: key.to_owned(),
            value: value.to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::tests::{sid, span, tid};
    use crate::node::EdgeKind;
    use crate::{BuildOptions, build};
    use weft_schemas::PolicyVerdict;

    const SEC: i64 = 1_000_000_000;
    const T0: i64 = 1_000_000 * SEC;

    /// A root span of its own trace `t`, starting `at` seconds after T0.
    fn root(t: u8, at: i64, kind: Option<AiKind>) -> LineageSpan {
        let mut s = span(t, t, None, T0 + at * SEC, T0 + at * SEC + SEC / 2);
        s.ai.fields.update(|f| f.ai_kind = kind);
        s
    }

    fn model_asking(t: u8, at: i64, call: &str, conversation: Option<&str>) -> LineageSpan {
        let mut s = root(t, at, Some(AiKind::Llm));
        s.ai.fields.update(|f| {
            f.requested_tool_call_ids = Some(vec![call.to_owned()]);
            f.conversation_id = conversation.map(str::to_owned);
        });
        s
    }

    fn tool_running(t: u8, at: i64, call: &str, conversation: Option<&str>) -> LineageSpan {
        let mut s = root(t, at, Some(AiKind::Tool));
        s.ai.fields.update(|f| {
            f.tool_call_id = Some(call.to_owned());
            f.conversation_id = conversation.map(str::to_owned);
        });
        s
    }

    fn message(t: u8, at: i64, op: &str, id: &str, destination: &str) -> LineageSpan {
        let mut s = root(t, at, None);
        s.ai.fields.update(|f| {
            f.messaging_operation = Some(op.to_owned());
            f.message_id = Some(id.to_owned());
            f.messaging_destination = Some(destination.to_owned());
        });
        s
    }

    /// `(from trace, to trace, key, value)` of each join.
    fn joined(spans: &[LineageSpan], rules: &EvidenceRules) -> Vec<(u8, u8, &'static str, String)> {
        let trace = |i: usize| spans[i].trace_id.as_bytes()[0];
        let mut out: Vec<_> = joins(spans, rules)
            .into_iter()
            .map(|j| {
                let key = ALL_KEYS.into_iter().find(|k| *k == j.evidence.key).unwrap();
                (trace(j.from), trace(j.to), key, j.evidence.value)
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn each_kind_of_evidence_joins_and_its_decoys_do_not() {
        let day = 24 * 3_600;
        let mut linked_consumer = message(9, 40, "process", "m-1", "orders");
        linked_consumer.links.push((tid(7), sid(7)));
        let mut approval = root(10, 5, Some(AiKind::Approval));
        approval
            .ai
            .fields
            .update(|f| f.approval_action = Some("call-1".into()));
        let mut other_tenant = tool_running(11, 12, "call-1", Some("c-1"));
        other_tenant.ai.tenant = Some("globex".into());
        let spans = vec![
            model_asking(1, 0, "call-1", Some("c-1")),
            tool_running(2, 10, "call-1", Some("c-1")),
            // The same call id in another conversation: a decoy.
            tool_running(3, 11, "call-1", Some("c-2")),
            // Two days later: outside the window.
            tool_running(4, 2 * day, "call-1", Some("c-1")),
            // A producer and its consumer on one destination.
            message(5, 20, "send", "m-1", "orders"),
            message(6, 25, "process", "m-1", "orders"),
            // Another message; the same message on another destination.
            message(8, 26, "receive", "m-2", "orders"),
            message(12, 27, "receive", "m-1", "refunds"),
            // A consumer already linked to its producer (trace 7).
            message(7, 30, "send", "m-1", "orders"),
            linked_consumer,
            approval,
            other_tenant,
        ];
        let found = joined(&spans, &EvidenceRules::default());
        assert_eq!(
            found,
            vec![
                (1, 2, TOOL_CALL_KEY, "call-1".into()),
                (5, 6, MESSAGE_KEY, "m-1".into()),
                (10, 2, APPROVAL_KEY, "call-1".into()),
            ],
            "the decoys (3: other conversation, 4: two days later, 8: other message, \
             12: other destination, 9: already linked, 11: other tenant) stay apart"
        );
        // The window is the rule's: three days cover a run two days later.
        let late = vec![
            model_asking(1, 0, "call-1", Some("c-1")),
            tool_running(4, 2 * day, "call-1", Some("c-1")),
        ];
        assert!(joined(&late, &EvidenceRules::default()).is_empty());
        let wide = EvidenceRules::new(&ALL_KEYS, 3 * day * SEC).unwrap();
        assert_eq!(
            joined(&late, &wide),
            vec![(1, 4, TOOL_CALL_KEY, "call-1".into())]
        );
        // Keys can be chosen, and none turns joins off.
        let messages_only = EvidenceRules::new(&[MESSAGE_KEY], DEFAULT_WINDOW_NS).unwrap();
        assert_eq!(
            joined(&spans, &messages_only),
            vec![(5, 6, MESSAGE_KEY, "m-1".into())]
        );
        assert!(
            joined(
                &spans,
                &EvidenceRules::new(&[] as &[&str], DEFAULT_WINDOW_NS).unwrap()
            )
            .is_empty()
        );
        assert!(
            EvidenceRules::new(&["gen_ai.tool.call"], 1)
                .unwrap_err()
                .contains("gen_ai.tool.call.id")
        );
    }

    #[test]
    fn the_nearest_earlier_request_wins_and_one_trace_never_joins_itself() {
        let spans = vec![
            model_asking(1, 0, "call-9", None),
            model_asking(2, 50, "call-9", None),
            tool_running(3, 60, "call-9", None),
            // A model call carrying the id as its own attribute asks too.
            {
                let mut s = root(4, 100, Some(AiKind::Llm));
                s.ai.fields
                    .update(|f| f.tool_call_id = Some("call-8".into()));
                s
            },
            tool_running(5, 101, "call-8", None),
        ];
        assert_eq!(
            joined(&spans, &EvidenceRules::default()),
            vec![
                (2, 3, TOOL_CALL_KEY, "call-9".into()),
                (4, 5, TOOL_CALL_KEY, "call-8".into()),
            ]
        );
        // Within one trace the context was kept: no evidence edge.
        let mut child = span(1, 2, Some(1), T0 + SEC, T0 + 2 * SEC);
        child.ai.fields.update(|f| {
            f.ai_kind = Some(AiKind::Tool);
            f.tool_call_id = Some("call-9".into());
        });
        let same_trace = vec![model_asking(1, 0, "call-9", None), child];
        assert!(joined(&same_trace, &EvidenceRules::default()).is_empty());
    }

    #[test]
    fn the_graph_marks_evidence_edges_and_what_rests_on_them() {
        // Trace 1: the agent checks policy (allow), then the model asks for a
        // refund tool; trace 2 (context lost at a queue) runs the refund.
        let mut agent = span(1, 1, None, T0, T0 + 10 * SEC);
        agent
            .ai
            .fields
            .update(|f| f.identity = Some("alice".into()));
        let mut policy = span(1, 2, Some(1), T0 + SEC, T0 + 2 * SEC);
        policy
            .ai
            .fields
            .update(|f| f.policy_verdict = Some(PolicyVerdict::Allow));
        let mut model = span(1, 3, Some(1), T0 + 3 * SEC, T0 + 4 * SEC);
        model.ai.fields.update(|f| {
            f.ai_kind = Some(AiKind::Llm);
            f.requested_tool_call_ids = Some(vec!["call-7".into()]);
        });
        let mut tool = span(2, 4, None, T0 + 5 * SEC, T0 + 6 * SEC);
        tool.ai.fields.update(|f| {
            f.ai_kind = Some(AiKind::Tool);
            f.tool_name = Some("refund".into());
            f.tool_call_id = Some("call-7".into());
        });
        tool.ai.tool_effect = Some("write".into());
        let spans = vec![agent, policy, model, tool];

        let l = build(
            spans.clone(),
            &BuildOptions {
                now_ns: i64::MAX,
                ..Default::default()
            },
        );
        let evidence: Vec<_> = l
            .edges
            .iter()
            .filter(|e| e.kind == EdgeKind::Evidence)
            .collect();
        assert_eq!(evidence.len(), 1);
        let (from, to) = (
            &l.nodes[evidence[0].from].span,
            &l.nodes[evidence[0].to].span,
        );
        assert_eq!((from.span_id, to.span_id), (sid(3), sid(4)));
        assert_eq!(
            evidence[0].evidence,
            Some(Box::new(Evidence {
                key: TOOL_CALL_KEY.into(),
                value: "call-7".into()
            }))
        );
        let t = l
            .nodes
            .iter()
            .position(|n| n.span.trace_id == tid(2))
            .unwrap();
        assert_eq!(l.nodes[t].reached_by, Some(EdgeKind::Evidence));
        let call = &l.summary.tool_calls[0];
        assert_eq!(
            call.preceding_verdict.as_ref().map(|v| v.verdict),
            Some(PolicyVerdict::Allow)
        );
        assert_eq!(call.rests_on_evidence, ["preceding_verdict", "identity"]);
        assert_eq!(call.identity.as_deref(), Some("alice"));
        assert!(l.summary.findings.is_empty(), "{:?}", l.summary.findings);
        let tree = crate::render::text_tree(&l, 0);
        assert!(tree.contains("≈ "), "{tree}");
        assert!(
            tree.contains("[evidence gen_ai.tool.call.id=call-7]"),
            "{tree}"
        );
        assert!(crate::render::dot(&l).contains("evidence\\ngen_ai.tool.call.id=call-7"));
        let json = serde_json::to_value(&l).unwrap();
        let edge = json["edges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["kind"] == "evidence")
            .unwrap();
        assert_eq!(edge["evidence"]["key"], TOOL_CALL_KEY);
        assert_eq!(edge["evidence"]["value"], "call-7");

        // Without evidence the refund is a workflow of its own, a write with
        // no verdict before it.
        let alone = build(
            spans,
            &BuildOptions {
                now_ns: i64::MAX,
                evidence: EvidenceRules::off(),
                ..Default::default()
            },
        );
        assert!(alone.edges.iter().all(|e| e.kind != EdgeKind::Evidence));
        assert_eq!(alone.summary.findings.len(), 1);
        assert_eq!(alone.summary.findings[0].rule, "write_without_allow");
    }
}
