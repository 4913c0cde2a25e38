//! The five questions a post-incident review asks, answered from the graph:
//! which sources were retrieved, which identity each step ran as, which policy
//! checks ran with what verdict, which tools were invoked (and what verdict and
//! approval preceded each), and which approvals occurred. Plus governance
//! findings: a tool that writes without a preceding allow, or after a
//! needs_approval verdict with no granted approval before it.

use std::collections::{BTreeMap, HashSet, VecDeque};

use serde::Serialize;
use weft_schemas::{ApprovalState, PolicyVerdict, StatusCode};

use super::graph::{Node, Predecessors};

/// A pointer to a node of the lineage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// Index into `Lineage::nodes`.
    pub node: usize,
    /// `trace_id:span_id`.
    pub span: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Retrieval {
    pub step: Step,
    pub source: Option<String>,
    pub document_ids: Vec<String>,
    pub identity: Option<String>,
    pub time_ns: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IdentityUse {
    pub identity: String,
    /// `identity` (a user or principal) or `workload`.
    pub kind: &'static str,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyCheck {
    pub step: Step,
    pub policy: Option<String>,
    pub verdict: PolicyVerdict,
    pub identity: Option<String>,
    pub time_ns: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolCall {
    pub step: Step,
    pub tool: String,
    pub call_id: Option<String>,
    pub identity: Option<String>,
    pub status: StatusCode,
    pub writes: bool,
    pub time_ns: i64,
    /// The latest policy check that causally preceded the call.
    pub preceding_verdict: Option<PolicyCheck>,
    /// The latest approval that causally preceded the call.
    pub preceding_approval: Option<Approval>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Approval {
    pub step: Step,
    pub state: ApprovalState,
    pub approver: Option<String>,
    pub time_ns: i64,
    /// The action it gated: `weft.approval.action`, else the next tool call it preceded.
    pub gates: Option<String>,
}

/// A governance question the data raises.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub step: Step,
    pub rule: &'static str,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
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
        span: nodes[i].span.key(),
        name: nodes[i].span.name.clone(),
    }
}

/// Every node with a path to `i`.
fn ancestors(preds: &Predecessors, i: usize) -> HashSet<usize> {
    let mut seen = HashSet::new();
    let mut queue: VecDeque<usize> = preds[i].iter().copied().collect();
    while let Some(p) = queue.pop_front() {
        if seen.insert(p) {
            queue.extend(preds[p].iter().copied());
        }
    }
    seen
}

fn roots_of(preds: &Predecessors, i: usize) -> HashSet<usize> {
    let mut all = ancestors(preds, i);
    all.insert(i);
    all.into_iter().filter(|a| preds[*a].is_empty()).collect()
}

/// Happened-before within the workflow: `p` is a causal ancestor of `t`, or
/// ended before `t` started under a common root (sequenced by one coordinator).
struct Causality<'a> {
    nodes: &'a [Node],
    preds: &'a Predecessors,
}

impl Causality<'_> {
    fn precedes(
        &self,
        p: usize,
        t: usize,
        t_ancestors: &HashSet<usize>,
        t_roots: &HashSet<usize>,
    ) -> bool {
        if p == t {
            return false;
        }
        if t_ancestors.contains(&p) {
            return true;
        }
        self.nodes[p].span.end_ns <= self.nodes[t].span.start_ns
            && !roots_of(self.preds, p).is_disjoint(t_roots)
    }
}

/// Builds the summary; `write_tools` names tools that change something even
/// without `weft.tool.effect = write`.
pub fn summarise(nodes: &[Node], preds: &Predecessors, write_tools: &HashSet<String>) -> Summary {
    let mut summary = Summary::default();
    let causality = Causality { nodes, preds };
    let mut identities: BTreeMap<(String, &'static str), Vec<Step>> = BTreeMap::new();

    let mut order: Vec<usize> = (0..nodes.len()).collect();
    order.sort_by_key(|i| (nodes[*i].span.start_ns, *i));

    for &i in &order {
        let n = &nodes[i];
        let ai = &n.span.ai;
        if let Some(id) = &n.effective_identity {
            identities
                .entry((id.clone(), "identity"))
                .or_default()
                .push(step(nodes, i));
        }
        if let Some(w) = &ai.workload_identity {
            identities
                .entry((w.clone(), "workload"))
                .or_default()
                .push(step(nodes, i));
        }
        if ai.ai_kind == Some(weft_schemas::AiKind::Retrieval) || ai.retrieval_source.is_some() {
            summary.retrievals.push(Retrieval {
                step: step(nodes, i),
                source: ai.retrieval_source.clone(),
                document_ids: ai.document_ids.clone(),
                identity: n.effective_identity.clone(),
                time_ns: n.span.start_ns,
            });
        }
        if let Some(verdict) = ai.policy_verdict {
            summary.policy_checks.push(policy_check(nodes, i, verdict));
        }
        if let Some(state) = ai.approval_state {
            summary.approvals.push(Approval {
                step: step(nodes, i),
                state,
                approver: ai.approver.clone(),
                time_ns: n.span.end_ns,
                gates: ai.approval_action.clone(),
            });
        }
    }

    for &i in &order {
        let n = &nodes[i];
        let Some(tool) = n.span.ai.tool_name.clone() else {
            continue;
        };
        let t_ancestors = ancestors(preds, i);
        let t_roots = roots_of(preds, i);
        let before = |p: usize| causality.precedes(p, i, &t_ancestors, &t_roots);
        let verdict = summary
            .policy_checks
            .iter()
            .filter(|c| before(c.step.node))
            .max_by_key(|c| (nodes[c.step.node].span.end_ns, c.step.node))
            .cloned();
        let approval = summary
            .approvals
            .iter()
            .filter(|a| before(a.step.node))
            .filter(|a| a.gates.as_deref().is_none_or(|g| g == tool))
            .max_by_key(|a| (nodes[a.step.node].span.end_ns, a.step.node))
            .cloned();
        let writes =
            n.span.ai.tool_effect.as_deref() == Some("write") || write_tools.contains(&tool);
        if writes && let Some(f) = governance(nodes, i, &tool, verdict.as_ref(), approval.as_ref())
        {
            summary.findings.push(f);
        }
        summary.tool_calls.push(ToolCall {
            step: step(nodes, i),
            tool,
            call_id: n.span.ai.tool_call_id.clone(),
            identity: n.effective_identity.clone(),
            status: n.span.status,
            writes,
            time_ns: n.span.start_ns,
            preceding_verdict: verdict,
            preceding_approval: approval,
        });
    }

    // An approval with no declared action gates the first tool call it preceded.
    for a in &mut summary.approvals {
        if a.gates.is_none() {
            a.gates = summary
                .tool_calls
                .iter()
                .find(|t| {
                    t.preceding_approval
                        .as_ref()
                        .is_some_and(|p| p.step.node == a.step.node)
                })
                .map(|t| t.tool.clone());
        }
    }
    summary.identities = identities
        .into_iter()
        .map(|((identity, kind), steps)| IdentityUse {
            identity,
            kind,
            steps,
        })
        .collect();
    summary
}

fn policy_check(nodes: &[Node], i: usize, verdict: PolicyVerdict) -> PolicyCheck {
    let n = &nodes[i];
    PolicyCheck {
        step: step(nodes, i),
        policy: n.span.ai.policy_name.clone(),
        verdict,
        identity: n.effective_identity.clone(),
        time_ns: n.span.end_ns,
    }
}

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
            rule,
            message,
        })
    };
    match verdict.map(|v| v.verdict) {
        None => finding(
            "write_without_allow",
            format!("tool {tool} changed something with no policy verdict before it"),
        ),
        Some(PolicyVerdict::Deny) => finding(
            "write_after_deny",
            format!("tool {tool} changed something after a deny verdict"),
        ),
        Some(PolicyVerdict::Allow) => None,
        Some(PolicyVerdict::NeedsApproval) => {
            let verdict_end = verdict
                .map(|v| nodes[v.step.node].span.end_ns)
                .unwrap_or(i64::MIN);
            let granted = approval.is_some_and(|a| {
                a.state == ApprovalState::Granted && nodes[a.step.node].span.end_ns >= verdict_end
            });
            if granted {
                None
            } else {
                finding(
                    "needs_approval_without_grant",
                    format!(
                        "tool {tool} ran after a needs_approval verdict with no granted approval before it"
                    ),
                )
            }
        }
    }
}
