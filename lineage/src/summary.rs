//! The five questions a post-incident review asks, answered from the graph:
//! which sources were retrieved, which identity each step ran as, which policy
//! checks ran with what verdict, which tools were invoked (and what verdict and
//! approval preceded each), and which approvals occurred. Plus governance
//! findings: a tool that writes without a preceding allow, or after a
//! needs_approval verdict with no granted approval before it.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;

use foldhash::{HashMap, HashMapExt};

use serde::{Deserialize, Serialize};
use weft_schemas::{ApprovalState, PolicyVerdict, StatusCode};

use crate::node::Node;
use crate::span::SpanKey;

/// For each node, its direct causal predecessors, by index (the summary
/// walks them for every node with a path to it). One allocation for all
/// (compressed rows), not a list per node: `preds[i]` is node `i`'s slice.
#[derive(Debug, Clone, Default)]
pub struct Predecessors {
    /// `items[start[i]..start[i + 1]]` are node `i`'s.
    start: Vec<usize>,
    items: Vec<usize>,
}

impl Predecessors {
    /// From `(from, to)` edges among `nodes` nodes; each list keeps the
    /// edges' order.
    pub(crate) fn from_edges(
        nodes: usize,
        edges: impl Iterator<Item = (usize, usize)> + Clone,
    ) -> Self {
        let mut start = vec![0usize; nodes + 1];
        for (_, to) in edges.clone() {
            start[to + 1] += 1;
        }
        for i in 0..nodes {
            start[i + 1] += start[i];
        }
        let mut fill = start.clone();
        let mut items = vec![0usize; start[nodes]];
        for (from, to) in edges {
            items[fill[to]] = from;
            fill[to] += 1;
        }
        Self { start, items }
    }

    /// How many nodes.
    pub(crate) fn len(&self) -> usize {
        self.start.len().saturating_sub(1)
    }
}

impl std::ops::Index<usize> for Predecessors {
    type Output = [usize];

    fn index(&self, node: usize) -> &[usize] {
        &self.items[self.start[node]..self.start[node + 1]]
    }
}

/// A pointer to a node of the lineage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Index into `Lineage::nodes`.
    pub node: usize,
    /// `trace_id:span_id`.
    pub span: SpanKey,
    pub name: Arc<str>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Retrieval {
    pub step: Step,
    pub source: Option<String>,
    pub document_ids: Vec<String>,
    pub identity: Option<Arc<str>>,
    pub time_ns: i64,
}

/// Steps listed per identity at most: a million-span workflow run for one
/// user would otherwise list every step again.
pub const IDENTITY_STEPS: usize = 100;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdentityUse {
    pub identity: String,
    /// `identity` (a user or principal) or `workload`.
    pub kind: Cow<'static, str>,
    /// The first [`IDENTITY_STEPS`] steps that ran as it, in start order.
    pub steps: Vec<Step>,
    /// How many steps ran as it.
    #[serde(default)]
    pub step_count: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyCheck {
    pub step: Step,
    pub policy: Option<String>,
    pub verdict: PolicyVerdict,
    pub identity: Option<Arc<str>>,
    pub time_ns: i64,
    /// Sent with a token not bound to the span's service: anyone holding an
    /// ingest token could have written it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unverified: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub step: Step,
    pub tool: String,
    pub call_id: Option<String>,
    pub identity: Option<Arc<str>>,
    pub status: StatusCode,
    pub writes: bool,
    pub time_ns: i64,
    /// The latest policy check that causally preceded the call.
    pub preceding_verdict: Option<PolicyCheck>,
    /// The latest approval that causally preceded the call.
    pub preceding_approval: Option<Box<Approval>>,
    /// Which of the above rest on an evidence edge (no trace context or span
    /// link joins them to the call): `preceding_verdict`,
    /// `preceding_approval`, `identity`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rests_on_evidence: Vec<Cow<'static, str>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    pub step: Step,
    pub state: ApprovalState,
    pub approver: Option<String>,
    pub time_ns: i64,
    /// The action it gated: `weft.approval.action`, else the next tool call it preceded.
    pub gates: Option<String>,
    /// Sent with a token not bound to the span's service.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unverified: bool,
}

/// A governance question the data raises.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub step: Step,
    pub rule: Cow<'static, str>,
    pub message: String,
    /// The verdict or approval it judges is joined to the step by evidence
    /// only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rests_on_evidence: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub retrievals: Vec<Retrieval>,
    pub identities: Vec<IdentityUse>,
    pub policy_checks: Vec<PolicyCheck>,
    pub tool_calls: Vec<ToolCall>,
    pub approvals: Vec<Approval>,
    pub findings: Vec<Finding>,
}

fn step(nodes: &[Node], i: usize) -> Step {
    Step {
        node: i,
        span: nodes[i].span.span_key(),
        name: nodes[i].span.name.clone(),
    }
}

/// Finds causal ancestors (every node with a path to a node), reusing one
/// visited-mark array across calls instead of a set per call.
struct Ancestors<'a> {
    preds: &'a Predecessors,
    /// `mark[n] == stamp`: `n` was reached in the current walk.
    mark: Vec<u32>,
    stamp: u32,
    stack: Vec<usize>,
    /// The last walk's answer, reused: a tool call per step would otherwise
    /// allocate a list per step.
    out: Vec<usize>,
}

impl<'a> Ancestors<'a> {
    fn new(preds: &'a Predecessors) -> Self {
        Self {
            preds,
            mark: vec![0; preds.len()],
            stamp: 0,
            stack: Vec::new(),
            out: Vec::new(),
        }
    }

    /// The ancestors of `i`, in no particular order.
    fn of(&mut self, i: usize) -> &[usize] {
        self.stamp += 1;
        self.mark[i] = self.stamp;
        self.out.clear();
        self.stack.clear();
        self.stack.extend(self.preds[i].iter().copied());
        while let Some(p) = self.stack.pop() {
            if self.mark[p] != self.stamp {
                self.mark[p] = self.stamp;
                self.out.push(p);
                self.stack.extend(self.preds[p].iter().copied());
            }
        }
        &self.out
    }
}

/// Finds the latest step of one kind (policy checks, or approvals) that
/// happened before a given step: a causal ancestor, or a step that ended
/// before it started under a common root (sequenced by one coordinator).
/// Steps are indexed per root and sorted by end time, so each lookup is a
/// binary search rather than a scan of the workflow.
struct Preceding<'a> {
    nodes: &'a [Node],
    /// root → (end time, node) of the indexed steps, sorted.
    by_root: HashMap<usize, Vec<(i64, usize)>>,
    /// Per node: one of the indexed steps.
    indexed: Vec<bool>,
}

impl<'a> Preceding<'a> {
    fn new(nodes: &'a [Node], roots: &Roots, steps: impl Iterator<Item = usize>) -> Self {
        let mut by_root: HashMap<usize, Vec<(i64, usize)>> = HashMap::new();
        let mut indexed = vec![false; nodes.len()];
        for n in steps {
            indexed[n] = true;
            for r in &roots[n] {
                by_root
                    .entry(*r)
                    .or_default()
                    .push((nodes[n].span.end_ns, n));
            }
        }
        for list in by_root.values_mut() {
            list.sort_unstable();
        }
        Self {
            nodes,
            by_root,
            indexed,
        }
    }

    /// The latest indexed step before `t` that `accept` takes.
    fn latest(
        &self,
        t: usize,
        t_ancestors: &[usize],
        t_roots: &[usize],
        accept: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let key = |n: usize| (self.nodes[n].span.end_ns, n);
        let from_ancestors = t_ancestors
            .iter()
            .copied()
            .filter(|a| self.indexed[*a] && accept(*a))
            .max_by_key(|a| key(*a));
        let start = self.nodes[t].span.start_ns;
        let from_roots = t_roots
            .iter()
            .filter_map(|r| self.by_root.get(r))
            .filter_map(|list| {
                let upto = list.partition_point(|(end, _)| *end <= start);
                list[..upto]
                    .iter()
                    .rev()
                    .map(|(_, n)| *n)
                    .find(|n| *n != t && accept(*n))
            })
            .max_by_key(|n| key(*n));
        [from_ancestors, from_roots]
            .into_iter()
            .flatten()
            .max_by_key(|n| key(*n))
    }
}

/// For each node, the roots it descends from (ignoring edges that close
/// cycles), sorted: `roots[i]` is node `i`'s. Nodes share sets (most
/// nodes of a workflow descend from the same roots).
#[derive(Debug, Clone, Default)]
pub struct Roots {
    set_of: Vec<u32>,
    sets: Vec<Vec<usize>>,
}

impl Roots {
    /// `nodes` nodes, none assigned yet.
    pub(crate) fn with_nodes(nodes: usize) -> Self {
        Self {
            set_of: vec![u32::MAX; nodes],
            sets: Vec::new(),
        }
    }

    /// The set node `node` has (assigned in topological order, so a node's
    /// predecessors have theirs).
    pub(crate) fn set_of(&self, node: usize) -> u32 {
        self.set_of[node]
    }

    pub(crate) fn set(&self, set: u32) -> &[usize] {
        self.sets.get(set as usize).map_or(&[], Vec::as_slice)
    }

    /// A new set (sorted, deduplicated); its number.
    pub(crate) fn add_set(&mut self, roots: Vec<usize>) -> u32 {
        self.sets.push(roots);
        u32::try_from(self.sets.len() - 1).unwrap_or(u32::MAX)
    }

    pub(crate) fn assign(&mut self, node: usize, set: u32) {
        self.set_of[node] = set;
    }
}

impl std::ops::Index<usize> for Roots {
    type Output = [usize];

    fn index(&self, node: usize) -> &[usize] {
        self.set(self.set_of[node])
    }
}

/// The graph without its evidence edges: what trace context and span links
/// alone say, to tell which conclusions rest on evidence.
pub struct WithoutEvidence {
    pub preds: Predecessors,
    pub roots: Roots,
    pub identities: Vec<Option<Arc<str>>>,
}

impl WithoutEvidence {
    /// Whether `p` precedes `i` without evidence: an ancestor, or under a
    /// common root.
    fn precedes(&self, ancestors: &[usize], p: usize, i: usize) -> bool {
        ancestors.contains(&p) || self.roots[p].iter().any(|r| self.roots[i].contains(r))
    }
}

/// Builds the summary; `write_tools` names tools that change something even
/// without `weft.tool.effect = write`.
pub fn summarise<'a>(
    nodes: &'a [Node],
    preds: &Predecessors,
    roots: &Roots,
    strict: Option<&WithoutEvidence>,
    write_tools: &HashSet<String>,
) -> Summary {
    let mut summary = Summary::default();
    let mut identities: HashMap<(&str, &'static str), (Vec<Step>, usize)> = HashMap::new();
    let mut use_of = |key: (&'a str, &'static str), i: usize| {
        let (steps, count) = identities.entry(key).or_default();
        *count += 1;
        if steps.len() < IDENTITY_STEPS {
            steps.push(step(nodes, i));
        }
    };

    let mut order: Vec<usize> = (0..nodes.len()).collect();
    order.sort_unstable_by_key(|i| (nodes[*i].span.start_ns, *i));

    for &i in &order {
        let n = &nodes[i];
        let ai = &n.span.ai;
        if let Some(id) = &n.effective_identity {
            use_of((&**id, "identity"), i);
        }
        if let Some(w) = ai.fields.workload_identity() {
            use_of((w, "workload"), i);
        }
        if ai.fields.ai_kind() == Some(weft_schemas::AiKind::Retrieval)
            || ai.fields.retrieval_source().is_some()
        {
            summary.retrievals.push(Retrieval {
                step: step(nodes, i),
                source: ai.fields.retrieval_source().map(str::to_owned),
                document_ids: ai
                    .fields
                    .retrieved_document_ids()
                    .map(<[String]>::to_vec)
                    .unwrap_or_default(),
                identity: n.effective_identity.clone(),
                time_ns: n.span.start_ns,
            });
        }
        if let Some(verdict) = ai.fields.policy_verdict() {
            summary.policy_checks.push(policy_check(nodes, i, verdict));
        }
        if let Some(state) = ai.fields.approval_state() {
            summary.approvals.push(Approval {
                step: step(nodes, i),
                state,
                approver: ai.fields.approver().map(str::to_owned),
                time_ns: n.span.end_ns,
                gates: ai.fields.approval_action().map(str::to_owned),
                unverified: ai.origin_verified == Some(false),
            });
        }
    }

    let check_at: HashMap<usize, usize> = summary
        .policy_checks
        .iter()
        .enumerate()
        .map(|(k, c)| (c.step.node, k))
        .collect();
    let approval_at: HashMap<usize, usize> = summary
        .approvals
        .iter()
        .enumerate()
        .map(|(k, a)| (a.step.node, k))
        .collect();
    let checks = Preceding::new(nodes, roots, check_at.keys().copied());
    let approvals = Preceding::new(nodes, roots, approval_at.keys().copied());
    let calls = ToolCalls {
        nodes,
        preds,
        roots,
        strict,
        write_tools,
        checks: &checks,
        approvals: &approvals,
        check_at: &check_at,
        approval_at: &approval_at,
        policy_checks: &summary.policy_checks,
        approval_list: &summary.approvals,
    };
    // Each tool call looks back through its ancestors: many calls are split
    // across two threads, each half in start order.
    let tools: Vec<usize> = order
        .iter()
        .copied()
        .filter(|i| nodes[*i].span.ai.fields.tool_name().is_some())
        .collect();
    let (first, second) = tools.split_at(tools.len() / 2);
    let ((more_calls, more_findings), (mut tool_calls, mut findings)) =
        crate::parallel::both(tools.len(), || calls.of(second), || calls.of(first));
    tool_calls.extend(more_calls);
    findings.extend(more_findings);
    summary.tool_calls = tool_calls;
    summary.findings.extend(findings);

    // An approval with no declared action gates the first tool call it preceded.
    let mut first_gated: HashMap<usize, String> = HashMap::new();
    for t in &summary.tool_calls {
        if let Some(a) = &t.preceding_approval {
            first_gated
                .entry(a.step.node)
                .or_insert_with(|| t.tool.clone());
        }
    }
    for a in &mut summary.approvals {
        if a.gates.is_none() {
            a.gates = first_gated.get(&a.step.node).cloned();
        }
    }
    let mut identities: Vec<_> = identities.into_iter().collect();
    identities.sort_unstable_by_key(|(key, _)| *key);
    summary.identities = identities
        .into_iter()
        .map(|((identity, kind), (steps, step_count))| IdentityUse {
            identity: identity.to_owned(),
            kind: kind.into(),
            steps,
            step_count,
        })
        .collect();
    summary
}

/// What summarising a tool call reads: the graph, and the policy checks and
/// approvals already listed.
struct ToolCalls<'a> {
    nodes: &'a [Node],
    preds: &'a Predecessors,
    roots: &'a Roots,
    strict: Option<&'a WithoutEvidence>,
    write_tools: &'a HashSet<String>,
    checks: &'a Preceding<'a>,
    approvals: &'a Preceding<'a>,
    check_at: &'a HashMap<usize, usize>,
    approval_at: &'a HashMap<usize, usize>,
    policy_checks: &'a [PolicyCheck],
    approval_list: &'a [Approval],
}

impl ToolCalls<'_> {
    /// The tool calls of `steps` (tool steps, in start order), and the
    /// governance findings they raise.
    fn of(&self, steps: &[usize]) -> (Vec<ToolCall>, Vec<Finding>) {
        let (nodes, roots, strict) = (self.nodes, self.roots, self.strict);
        let mut ancestors = Ancestors::new(self.preds);
        let no_preds = Predecessors::default();
        let mut strict_ancestors = Ancestors::new(strict.map_or(&no_preds, |s| &s.preds));
        let mut calls = Vec::with_capacity(steps.len());
        let mut findings = Vec::new();
        for &i in steps {
            let n = &nodes[i];
            let Some(tool) = n.span.ai.fields.tool_name().map(str::to_owned) else {
                continue;
            };
            let t_ancestors = ancestors.of(i);
            let verdict = self
                .checks
                .latest(i, t_ancestors, &roots[i], |_| true)
                .map(|p| self.policy_checks[self.check_at[&p]].clone());
            let call_id = n.span.ai.fields.tool_call_id();
            let gates_this = |a: usize| {
                self.approval_list[self.approval_at[&a]]
                    .gates
                    .as_deref()
                    .is_none_or(|g| g == tool || Some(g) == call_id)
            };
            let approval = self
                .approvals
                .latest(i, t_ancestors, &roots[i], gates_this)
                .map(|a| Box::new(self.approval_list[self.approval_at[&a]].clone()));
            let mut rests_on_evidence = Vec::new();
            let loose = |p: Option<usize>, ancestors: &[usize]| match (p, strict) {
                (Some(p), Some(strict)) => !strict.precedes(ancestors, p, i),
                _ => false,
            };
            let strict_of_i: &[usize] =
                if strict.is_some() && (verdict.is_some() || approval.is_some()) {
                    strict_ancestors.of(i)
                } else {
                    &[]
                };
            let verdict_loose = loose(verdict.as_ref().map(|v| v.step.node), strict_of_i);
            let approval_loose = loose(approval.as_ref().map(|a| a.step.node), strict_of_i);
            if verdict_loose {
                rests_on_evidence.push(Cow::Borrowed("preceding_verdict"));
            }
            if approval_loose {
                rests_on_evidence.push(Cow::Borrowed("preceding_approval"));
            }
            if strict.is_some_and(|s| n.effective_identity != s.identities[i]) {
                rests_on_evidence.push(Cow::Borrowed("identity"));
            }
            let writes = n.span.ai.tool_effect.as_deref() == Some("write")
                || self.write_tools.contains(&tool);
            if writes
                && let Some(mut f) =
                    governance(nodes, i, &tool, verdict.as_ref(), approval.as_deref())
            {
                f.rests_on_evidence = verdict_loose || approval_loose;
                findings.push(f);
            }
            calls.push(ToolCall {
                step: step(nodes, i),
                tool,
                call_id: n.span.ai.fields.tool_call_id().map(str::to_owned),
                identity: n.effective_identity.clone(),
                status: n.span.status,
                writes,
                time_ns: n.span.start_ns,
                preceding_verdict: verdict,
                preceding_approval: approval,
                rests_on_evidence,
            });
        }
        (calls, findings)
    }
}

fn policy_check(nodes: &[Node], i: usize, verdict: PolicyVerdict) -> PolicyCheck {
    let n = &nodes[i];
    PolicyCheck {
        step: step(nodes, i),
        policy: n.span.ai.fields.policy_name().map(str::to_owned),
        verdict,
        identity: n.effective_identity.clone(),
        time_ns: n.span.end_ns,
        unverified: n.span.ai.origin_verified == Some(false),
    }
}

/// Finding rules for a write no allow verdict or granted approval gated.
pub const WRITE_WITHOUT_ALLOW: &str = "write_without_allow";
pub const WRITE_AFTER_DENY: &str = "write_after_deny";
pub const NEEDS_APPROVAL_WITHOUT_GRANT: &str = "needs_approval_without_grant";
/// The rules of an ungated write, together.
pub const UNGATED_WRITE_RULES: [&str; 3] = [
    WRITE_WITHOUT_ALLOW,
    WRITE_AFTER_DENY,
    NEEDS_APPROVAL_WITHOUT_GRANT,
];

fn governance(
    nodes: &[Node],
    i: usize,
    tool: &str,
    verdict: Option<&PolicyCheck>,
    approval: Option<&Approval>,
) -> Option<Finding> {
    let finding = |rule, message| {
        Some(Finding {
            step: step(nodes, i),
            rule: Cow::Borrowed(rule),
            message,
            rests_on_evidence: false,
        })
    };
    match verdict.map(|v| v.verdict) {
        None => finding(
            WRITE_WITHOUT_ALLOW,
            format!("tool {tool} changed something with no policy verdict before it"),
        ),
        Some(PolicyVerdict::Deny) => finding(
            WRITE_AFTER_DENY,
            format!("tool {tool} changed something after a deny verdict"),
        ),
        Some(PolicyVerdict::Allow) if verdict.is_some_and(|v| v.unverified) => finding(
            "unverified_allow",
            format!(
                "tool {tool} changed something after an allow verdict that is unverified: {}",
                unverified(nodes, verdict.map(|v| v.step.node))
            ),
        ),
        Some(PolicyVerdict::Allow) => None,
        Some(PolicyVerdict::NeedsApproval) => {
            let verdict_end = verdict
                .map(|v| nodes[v.step.node].span.end_ns)
                .unwrap_or(i64::MIN);
            let granted = approval.is_some_and(|a| {
                a.state == ApprovalState::Granted && nodes[a.step.node].span.end_ns >= verdict_end
            });
            if granted && let Some(a) = approval.filter(|a| a.unverified) {
                finding(
                    "unverified_approval",
                    format!(
                        "tool {tool} ran on an approval that is unverified: {}",
                        unverified(nodes, Some(a.step.node))
                    ),
                )
            } else if granted {
                None
            } else {
                finding(
                    NEEDS_APPROVAL_WITHOUT_GRANT,
                    format!(
                        "tool {tool} ran after a needs_approval verdict with no granted approval before it"
                    ),
                )
            }
        }
    }
}

/// Why a governance step is not trusted, naming its service.
fn unverified(nodes: &[Node], i: Option<usize>) -> String {
    let service = i
        .and_then(|i| nodes[i].span.service.as_deref())
        .unwrap_or("(no service)");
    format!(
        "it was sent as service {service} with an ingest token not bound to that service \
         (bind it with services = [\"{service}\"] on the token)"
    )
}
