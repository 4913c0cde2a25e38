//! Run diff: what changed between two runs of one workflow — the question
//! on-call asks of the run that failed and the one that worked.
//!
//! Steps are aligned by their place in the tree: each step's key is the path
//! of `name [ai_kind]` labels from its root down the edges that first reached
//! each step, with an ordinal among same-labelled siblings (in start order),
//! so the second retrieval under the same agent call matches the second.
//! Steps only one run has are `added` or `removed`; aligned steps whose facts
//! differ are `changed`, each fact with both values: retrieval source and
//! documents, identity, policy verdict, approval, model, tool, node, status,
//! and — for steps on either run's critical path — duration, when it moved by
//! at least [`TIMING_SHARE`] of the longer one and [`TIMING_MIN_NS`].

use std::collections::BTreeMap;

use foldhash::HashMap;
use serde::{Deserialize, Serialize};

use crate::graph::Lineage;
use crate::node::Node;

/// A critical-path step's duration counts as changed past this share…
pub const TIMING_SHARE: f64 = 0.2;
/// …and this many nanoseconds.
pub const TIMING_MIN_NS: i64 = 1_000_000;

/// One run, in a line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSide {
    /// The traces of the run.
    pub traces: Vec<String>,
    pub steps: usize,
    /// First start to last end.
    pub duration_ns: i64,
    /// Steps that ended in error.
    pub errors: usize,
}

/// A step one run has and the other does not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OnlyIn {
    /// Its place in the tree (`agent [agent] / chat [llm]#1`).
    pub step: String,
    /// `trace_id:span_id`.
    pub span: String,
    pub name: String,
}

/// A fact's value, as JSON shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    Bool(bool),
    Number(i64),
    Text(String),
    List(Vec<String>),
}

/// One fact of a step that differs, with both values (`null`: absent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub field: String,
    pub a: Option<Value>,
    pub b: Option<Value>,
}

impl Change {
    /// One of its values for a person: `(none)` when absent, a duration as one.
    pub fn shown(&self, v: &Option<Value>) -> String {
        match v {
            None => "(none)".to_owned(),
            Some(Value::Number(n)) if self.field == "duration_ns" => crate::units::duration(*n),
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::Bool(b)) => b.to_string(),
            Some(Value::Text(t)) => t.clone(),
            Some(Value::List(items)) => format!("[{}]", items.join(", ")),
        }
    }
}

/// An aligned step whose facts differ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Changed {
    pub step: String,
    pub a_span: String,
    pub b_span: String,
    pub changes: Vec<Change>,
}

/// What changed between run `a` and run `b`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunDiff {
    pub a: RunSide,
    pub b: RunSide,
    /// Steps only `b` has.
    pub added: Vec<OnlyIn>,
    /// Steps only `a` has.
    pub removed: Vec<OnlyIn>,
    pub changed: Vec<Changed>,
    /// Aligned steps with no difference.
    pub unchanged: usize,
}

impl RunDiff {
    /// No step added, removed or changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// Compares run `a` with run `b`.
pub fn diff(a: &Lineage, b: &Lineage) -> RunDiff {
    let (keys_a, keys_b) = (step_keys(a), step_keys(b));
    let at_b: HashMap<&str, usize> = keys_b
        .iter()
        .enumerate()
        .map(|(i, k)| (k.as_str(), i))
        .collect();
    let at_a: HashMap<&str, usize> = keys_a
        .iter()
        .enumerate()
        .map(|(i, k)| (k.as_str(), i))
        .collect();
    let mut out = RunDiff {
        a: side(a),
        b: side(b),
        added: Vec::new(),
        removed: Vec::new(),
        changed: Vec::new(),
        unchanged: 0,
    };
    for i in order(a) {
        let key = &keys_a[i];
        match at_b.get(key.as_str()) {
            None => out.removed.push(only_in(a, i, key)),
            Some(&j) => {
                let changes = compare(&a.nodes[i], &b.nodes[j]);
                if changes.is_empty() {
                    out.unchanged += 1;
                } else {
                    out.changed.push(Changed {
                        step: key.clone(),
                        a_span: a.nodes[i].span.key(),
                        b_span: b.nodes[j].span.key(),
                        changes,
                    });
                }
            }
        }
    }
    for j in order(b) {
        if !at_a.contains_key(keys_b[j].as_str()) {
            out.added.push(only_in(b, j, &keys_b[j]));
        }
    }
    out
}

fn side(l: &Lineage) -> RunSide {
    let start = l.nodes.iter().map(|n| n.span.start_ns).min().unwrap_or(0);
    let end = l.nodes.iter().map(|n| n.span.end_ns).max().unwrap_or(0);
    RunSide {
        traces: l.traces.iter().map(|t| t.to_hex()).collect(),
        steps: l.nodes.len(),
        duration_ns: end.saturating_sub(start),
        errors: l
            .nodes
            .iter()
            .filter(|n| n.span.status == weft_schemas::StatusCode::Error)
            .count(),
    }
}

fn only_in(l: &Lineage, i: usize, key: &str) -> OnlyIn {
    OnlyIn {
        step: key.to_owned(),
        span: l.nodes[i].span.key(),
        name: l.nodes[i].span.name.to_string(),
    }
}

/// Node indices by start time.
fn order(l: &Lineage) -> Vec<usize> {
    let mut order: Vec<usize> = (0..l.nodes.len()).collect();
    order.sort_by_key(|i| (l.nodes[*i].span.start_ns, *i));
    order
}

fn label(n: &Node) -> String {
    match n.span.ai.fields.ai_kind() {
        Some(kind) => format!("{} [{}]", n.span.name, kind.as_str()),
        None => n.span.name.to_string(),
    }
}

/// Each node's key: its tree path of labels, each with its ordinal among
/// same-labelled siblings. Iterative, in an order where a parent comes
/// before its children, so a deep chain costs no stack.
fn step_keys(l: &Lineage) -> Vec<String> {
    let n = l.nodes.len();
    // The tree parent: of the edges into a node, one from a node a level up,
    // the tightest kind (parent before link before evidence) first.
    let mut parent: Vec<Option<(u8, i64, usize)>> = vec![None; n];
    for e in &l.edges {
        let (from, to) = (&l.nodes[e.from], &l.nodes[e.to]);
        if from.depth.checked_add(1) != Some(to.depth) {
            continue;
        }
        let candidate = (e.kind.distance(), from.span.start_ns, e.from);
        if parent[e.to].is_none_or(|p| candidate < p) {
            parent[e.to] = Some(candidate);
        }
    }
    let mut by_depth: Vec<usize> = order(l);
    by_depth.sort_by_key(|i| l.nodes[*i].depth);
    let mut keys: Vec<String> = vec![String::new(); n];
    // (parent, label) → how many seen so far, in start order.
    let mut seen: BTreeMap<(Option<usize>, String), usize> = BTreeMap::new();
    for i in by_depth {
        let p = parent[i].map(|(_, _, p)| p);
        let label = label(&l.nodes[i]);
        let k = seen.entry((p, label.clone())).or_default();
        let segment = if *k == 0 {
            label
        } else {
            format!("{label}#{k}")
        };
        *k += 1;
        keys[i] = match p {
            Some(p) => format!("{} / {segment}", keys[p]),
            None => segment,
        };
    }
    keys
}

/// The facts of two aligned steps that differ.
fn compare(a: &Node, b: &Node) -> Vec<Change> {
    let mut out = Vec::new();
    let mut fact = |field: &str, x: Option<Value>, y: Option<Value>| {
        if x != y {
            out.push(Change {
                field: field.to_owned(),
                a: x,
                b: y,
            });
        }
    };
    let text = |v: Option<&str>| v.map(|s| Value::Text(s.to_owned()));
    let name = |v: Option<&'static str>| v.map(|s| Value::Text(s.to_owned()));
    let (fa, fb) = (&a.span.ai.fields, &b.span.ai.fields);
    fact(
        "retrieval_source",
        text(fa.retrieval_source()),
        text(fb.retrieval_source()),
    );
    fact(
        "retrieved_document_ids",
        fa.retrieved_document_ids().map(|d| Value::List(d.to_vec())),
        fb.retrieved_document_ids().map(|d| Value::List(d.to_vec())),
    );
    fact(
        "identity",
        text(a.effective_identity.as_deref()),
        text(b.effective_identity.as_deref()),
    );
    fact(
        "workload_identity",
        text(fa.workload_identity()),
        text(fb.workload_identity()),
    );
    fact(
        "policy_name",
        text(fa.policy_name()),
        text(fb.policy_name()),
    );
    fact(
        "policy_verdict",
        name(fa.policy_verdict().map(|v| v.as_str())),
        name(fb.policy_verdict().map(|v| v.as_str())),
    );
    fact(
        "approval_state",
        name(fa.approval_state().map(|v| v.as_str())),
        name(fb.approval_state().map(|v| v.as_str())),
    );
    fact("approver", text(fa.approver()), text(fb.approver()));
    fact(
        "gen_ai_model",
        text(fa.gen_ai_model()),
        text(fb.gen_ai_model()),
    );
    fact("tool_name", text(fa.tool_name()), text(fb.tool_name()));
    fact("node", text(fa.node()), text(fb.node()));
    fact(
        "status",
        name(Some(a.span.status.as_str())),
        name(Some(b.span.status.as_str())),
    );
    fact(
        "on_critical_path",
        Some(Value::Bool(a.on_critical_path)),
        Some(Value::Bool(b.on_critical_path)),
    );
    if a.on_critical_path || b.on_critical_path {
        let (x, y) = (a.span.duration_ns(), b.span.duration_ns());
        let moved = x.abs_diff(y);
        if moved >= TIMING_MIN_NS.unsigned_abs() && moved as f64 >= TIMING_SHARE * x.max(y) as f64 {
            fact(
                "duration_ns",
                Some(Value::Number(x)),
                Some(Value::Number(y)),
            );
        }
    }
    out
}

/// The diff as text: the two runs, then each difference on a line.
pub fn diff_text(d: &RunDiff) -> String {
    use crate::units::duration;
    use std::fmt::Write;
    let mut out = String::new();
    let run = |s: &RunSide| {
        format!(
            "{} step(s), {}, {} error(s), trace(s) {}",
            s.steps,
            duration(s.duration_ns),
            s.errors,
            s.traces.join(" ")
        )
    };
    let _ = writeln!(out, "a: {}", run(&d.a));
    let _ = writeln!(out, "b: {}", run(&d.b));
    if d.is_empty() {
        let _ = writeln!(out, "no differences ({} steps aligned)", d.unchanged);
        return out;
    }
    let _ = writeln!(
        out,
        "{} added, {} removed, {} changed, {} unchanged",
        d.added.len(),
        d.removed.len(),
        d.changed.len(),
        d.unchanged
    );
    for s in &d.removed {
        let _ = writeln!(out, "- {}", s.step);
    }
    for s in &d.added {
        let _ = writeln!(out, "+ {}", s.step);
    }
    for c in &d.changed {
        let _ = writeln!(out, "~ {}", c.step);
        for ch in &c.changes {
            let _ = writeln!(
                out,
                "    {}: {} → {}",
                ch.field,
                ch.shown(&ch.a),
                ch.shown(&ch.b)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::tests::span;
    use crate::{BuildOptions, LineageSpan, build};
    use weft_schemas::{AiKind, PolicyVerdict, StatusCode};

    const MS: i64 = 1_000_000;
    const T0: i64 = 1_000_000_000_000_000;

    /// One run of a support workflow in trace `t`: an agent retrieves,
    /// checks policy, calls the model, then a tool per entry of `tools`.
    fn run(
        t: u8,
        model: &str,
        docs: &[&str],
        verdict: PolicyVerdict,
        chat_ms: i64,
        tools: &[&str],
    ) -> Lineage {
        let at = |ms: i64| T0 + ms * MS;
        let mut spans: Vec<LineageSpan> = Vec::new();
        let mut agent = span(t, 1, None, at(0), at(200 + chat_ms));
        agent.name = "agent".into();
        agent.ai.fields.update(|f| {
            f.ai_kind = Some(AiKind::Agent);
            f.identity = Some("alice".into());
        });
        spans.push(agent);
        let mut retrieve = span(t, 2, Some(1), at(10), at(50));
        retrieve.name = "retrieve".into();
        retrieve.ai.fields.update(|f| {
            f.ai_kind = Some(AiKind::Retrieval);
            f.retrieval_source = Some("kb".into());
            f.retrieved_document_ids = Some(docs.iter().map(|d| d.to_string()).collect());
        });
        spans.push(retrieve);
        let mut policy = span(t, 3, Some(1), at(60), at(70));
        policy.name = "policy".into();
        policy.ai.fields.update(|f| {
            f.ai_kind = Some(AiKind::Policy);
            f.policy_verdict = Some(verdict);
        });
        spans.push(policy);
        let mut chat = span(t, 4, Some(1), at(80), at(80 + chat_ms));
        chat.name = "chat".into();
        chat.ai.fields.update(|f| {
            f.ai_kind = Some(AiKind::Llm);
            f.gen_ai_model = Some(model.into());
        });
        spans.push(chat);
        for (k, tool) in tools.iter().enumerate() {
            let start = 80 + chat_ms + 10 * (k as i64 + 1);
            let mut s = span(t, 10 + k as u8, Some(1), at(start), at(start + 5));
            s.name = "execute_tool".into();
            s.ai.fields.update(|f| {
                f.ai_kind = Some(AiKind::Tool);
                f.tool_name = Some((*tool).into());
            });
            if *tool == "refund" && verdict == PolicyVerdict::Deny {
                s.status = StatusCode::Error;
            }
            spans.push(s);
        }
        build(
            spans,
            &BuildOptions {
                now_ns: i64::MAX,
                ..Default::default()
            },
        )
    }

    #[test]
    fn a_run_diffed_with_itself_has_no_differences() {
        let a = run(
            1,
            "gpt-4o",
            &["d1", "d2"],
            PolicyVerdict::Allow,
            500,
            &["lookup", "refund"],
        );
        let d = diff(&a, &a);
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(d.unchanged, a.nodes.len());
        assert!(diff_text(&d).contains("no differences (6 steps aligned)"));
        // Another run that did the same, with other ids, times within the
        // threshold: no differences either.
        let b = run(
            2,
            "gpt-4o",
            &["d1", "d2"],
            PolicyVerdict::Allow,
            520,
            &["lookup", "refund"],
        );
        assert!(diff(&a, &b).is_empty(), "{:?}", diff(&a, &b));
    }

    #[test]
    fn the_differences_of_two_runs_each_with_both_values() {
        let worked = run(
            1,
            "gpt-4o",
            &["d1", "d2"],
            PolicyVerdict::Allow,
            500,
            &["lookup", "refund"],
        );
        let failed = run(
            2,
            "gpt-4o-mini",
            &["d1", "d9"],
            PolicyVerdict::Deny,
            900,
            &["lookup", "lookup", "refund"],
        );
        let d = diff(&worked, &failed);
        let fields = |step: &str| -> Vec<(String, Option<Value>, Option<Value>)> {
            d.changed
                .iter()
                .find(|c| c.step == step)
                .map(|c| {
                    c.changes
                        .iter()
                        .map(|x| (x.field.clone(), x.a.clone(), x.b.clone()))
                        .collect()
                })
                .unwrap_or_default()
        };
        let text = |s: &str| Some(Value::Text(s.into()));
        assert_eq!(
            fields("agent [agent] / chat [llm]"),
            vec![("gen_ai_model".into(), text("gpt-4o"), text("gpt-4o-mini"))],
            "the chat is not on the critical path: its time is not reported"
        );
        assert_eq!(
            fields("agent [agent]"),
            vec![(
                "duration_ns".into(),
                Some(Value::Number(700 * MS)),
                Some(Value::Number(1100 * MS))
            )]
        );
        assert_eq!(
            fields("agent [agent] / retrieve [retrieval]"),
            vec![(
                "retrieved_document_ids".into(),
                Some(Value::List(vec!["d1".into(), "d2".into()])),
                Some(Value::List(vec!["d1".into(), "d9".into()])),
            )]
        );
        assert_eq!(
            fields("agent [agent] / policy [policy]"),
            vec![("policy_verdict".into(), text("allow"), text("deny"))]
        );
        // The second lookup is new; the refund moved to third place among
        // tool calls but is aligned by its own label: it failed.
        assert_eq!(
            d.added.iter().map(|s| s.step.as_str()).collect::<Vec<_>>(),
            ["agent [agent] / execute_tool [tool]#2"]
        );
        assert!(d.removed.is_empty());
        let tool_changes = fields("agent [agent] / execute_tool [tool]#1");
        assert!(
            tool_changes.contains(&("tool_name".into(), text("refund"), text("lookup"))),
            "{tool_changes:?}"
        );
        let shown = diff_text(&d);
        assert!(
            shown.contains("gen_ai_model: gpt-4o → gpt-4o-mini"),
            "{shown}"
        );
        assert!(
            shown.contains("+ agent [agent] / execute_tool [tool]#2"),
            "{shown}"
        );
        assert!(
            shown.contains("~ agent [agent]\n    duration_ns: 700"),
            "{shown}"
        );
        // And the other way round: added becomes removed.
        let back = diff(&failed, &worked);
        assert_eq!(back.removed.len(), 1);
        assert!(back.added.is_empty());
    }
}
