//! [`WorkflowSummary`]: one line about a whole workflow — what a list of
//! recent workflows shows (the TUI's first screen, `GET /api/workflows`).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use weft_schemas::{PolicyVerdict, StatusCode, TraceId};

use crate::graph::{Anomaly, Lineage};
use crate::summary::UNGATED_WRITE_RULES;

/// What deserves an operator's eye in a workflow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flags {
    /// A step failed.
    pub error: bool,
    /// A policy said no.
    pub policy_deny: bool,
    /// The governance summary has a finding.
    pub finding: bool,
    /// A write ran without an allow verdict or a granted approval.
    pub ungated_write: bool,
    /// The graph is malformed: missing parents, duplicates, cycles, clock
    /// skew, dangling links, a trace without a root.
    pub anomaly: bool,
}

/// A workflow in one line: its first root, its size, its time, its flags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowSummary {
    /// The trace of the first root span; opens the workflow's lineage.
    pub trace_id: TraceId,
    /// Every trace of the workflow (joined by span links).
    pub traces: Vec<TraceId>,
    /// The name of the first root span.
    pub name: String,
    pub service: Option<String>,
    /// The first agent named in the workflow.
    pub agent: Option<String>,
    /// The first root's (effective) identity.
    pub identity: Option<String>,
    /// Every identity and service that took part, sorted.
    pub identities: Vec<String>,
    pub services: Vec<String>,
    /// First start and last end over every span, Unix nanoseconds.
    pub start_ns: i64,
    pub end_ns: i64,
    pub spans: usize,
    pub errors: usize,
    /// `error` when a step failed, else `ok`.
    pub status: StatusCode,
    pub flags: Flags,
    /// Spans may still be arriving (something ended in the last 30 s).
    pub in_flight: bool,
    /// The conversation (`gen_ai.conversation.id`, `session.id`) its first
    /// step naming one belongs to: its turn in a conversation's list.
    #[serde(default)]
    pub conversation: Option<String>,
    /// Every model that answered a step, sorted.
    #[serde(default)]
    pub models: Vec<String>,
    /// Prompt and completion tokens over every step.
    #[serde(default)]
    pub input_tokens: i64,
    #[serde(default)]
    pub output_tokens: i64,
}

impl WorkflowSummary {
    /// The summary of a reconstructed workflow; `None` when it has no spans.
    pub fn of(lineage: &Lineage) -> Option<Self> {
        let nodes = &lineage.nodes;
        let first_root = nodes
            .iter()
            .filter(|n| n.reached_by.is_none())
            .min_by_key(|n| (n.span.start_ns, n.span.trace_id, n.span.span_id))
            .or_else(|| nodes.iter().min_by_key(|n| n.span.start_ns))?;
        let errors = nodes
            .iter()
            .filter(|n| n.span.status == StatusCode::Error)
            .count();
        let summary = &lineage.summary;
        let set = |f: &dyn Fn(&crate::node::Node) -> Option<&str>| {
            nodes
                .iter()
                .filter_map(f)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        let mut in_flight = false;
        let mut anomaly = false;
        for a in &lineage.anomalies {
            match a {
                Anomaly::MayStillBeArriving { .. } => in_flight = true,
                _ => anomaly = true,
            }
        }
        Some(Self {
            trace_id: first_root.span.trace_id,
            traces: lineage.traces.clone(),
            name: first_root.span.name.to_string(),
            service: first_root.span.service.as_deref().map(str::to_owned),
            agent: nodes
                .iter()
                .find_map(|n| n.span.ai.fields.agent_name().map(str::to_owned)),
            identity: first_root.effective_identity.as_deref().map(str::to_owned),
            identities: set(&|n| n.effective_identity.as_deref()),
            services: set(&|n| n.span.service.as_deref()),
            start_ns: nodes.iter().map(|n| n.span.start_ns).min().unwrap_or(0),
            end_ns: nodes.iter().map(|n| n.span.end_ns).max().unwrap_or(0),
            spans: nodes.len(),
            errors,
            status: if errors > 0 {
                StatusCode::Error
            } else {
                StatusCode::Ok
            },
            flags: Flags {
                error: errors > 0,
                policy_deny: summary
                    .policy_checks
                    .iter()
                    .any(|c| c.verdict == PolicyVerdict::Deny),
                finding: !summary.findings.is_empty(),
                ungated_write: summary
                    .findings
                    .iter()
                    .any(|f| UNGATED_WRITE_RULES.contains(&f.rule.as_ref())),
                anomaly,
            },
            in_flight,
            conversation: nodes
                .iter()
                .filter(|n| n.span.ai.fields.conversation_id().is_some())
                .min_by_key(|n| (n.span.start_ns, n.span.trace_id, n.span.span_id))
                .and_then(|n| n.span.ai.fields.conversation_id().map(str::to_owned)),
            models: set(&|n| n.span.ai.fields.gen_ai_model()),
            input_tokens: nodes
                .iter()
                .filter_map(|n| n.span.ai.fields.input_tokens())
                .fold(0i64, i64::saturating_add),
            output_tokens: nodes
                .iter()
                .filter_map(|n| n.span.ai.fields.output_tokens())
                .fold(0i64, i64::saturating_add),
        })
    }

    pub fn duration_ns(&self) -> i64 {
        self.end_ns.saturating_sub(self.start_ns)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::graph::tests::span;
    use crate::{BuildOptions, build};

    #[test]
    fn one_line_per_workflow_with_its_flags() {
        let mut spans = vec![
            span(1, 1, None, 0, 100),
            span(1, 2, Some(1), 10, 40),
            span(1, 3, Some(1), 50, 60),
            span(2, 4, None, 200, 300),
        ];
        spans[0]
            .ai
            .fields
            .update(|f| f.identity = Some("alice".into()));
        spans[1]
            .ai
            .fields
            .update(|f| f.policy_verdict = Some(PolicyVerdict::Deny));
        spans[2]
            .ai
            .fields
            .update(|f| f.tool_name = Some("refund".into()));
        spans[2].ai.tool_effect = Some("write".into());
        spans[2].status = StatusCode::Error;
        spans[3].links = vec![(spans[0].trace_id, spans[0].span_id)];
        spans[3]
            .ai
            .fields
            .update(|f| f.agent_name = Some("refunder".into()));
        // The conversation is named by a later step, not the root.
        spans[3]
            .ai
            .fields
            .update(|f| f.conversation_id = Some("conv-9".into()));
        spans[1].ai.fields.update(|f| {
            f.gen_ai_model = Some("m-small".into());
            f.input_tokens = Some(120);
            f.output_tokens = Some(30);
        });
        spans[3].ai.fields.update(|f| {
            f.gen_ai_model = Some("m-large".into());
            f.input_tokens = Some(80);
        });
        let settled = BuildOptions {
            now_ns: i64::MAX,
            ..Default::default()
        };
        let w = WorkflowSummary::of(&build(spans.clone(), &settled)).unwrap();
        assert_eq!(w.trace_id, spans[0].trace_id, "the first root opens it");
        assert_eq!(w.traces.len(), 2, "linked traces are one workflow");
        assert_eq!((w.start_ns, w.end_ns, w.spans, w.errors), (0, 300, 4, 1));
        assert_eq!(w.identity.as_deref(), Some("alice"));
        assert_eq!(w.agent.as_deref(), Some("refunder"));
        assert_eq!(w.status, StatusCode::Error);
        let f = w.flags;
        assert!(f.error && f.policy_deny && f.finding && f.ungated_write && !f.anomaly);
        assert!(!w.in_flight);
        assert_eq!(w.conversation.as_deref(), Some("conv-9"));
        assert_eq!(w.models, ["m-large", "m-small"]);
        assert_eq!((w.input_tokens, w.output_tokens), (200, 30));
        let json = serde_json::to_string(&w).unwrap();
        assert_eq!(serde_json::from_str::<WorkflowSummary>(&json).unwrap(), w);

        // A missing parent is an anomaly; recent spans are in flight.
        spans.push(span(1, 5, Some(9), 20, 30));
        let fresh = BuildOptions {
            now_ns: 310,
            ..Default::default()
        };
        let w = WorkflowSummary::of(&build(spans, &fresh)).unwrap();
        assert!(w.flags.anomaly && w.in_flight);
        assert!(WorkflowSummary::of(&build(Vec::new(), &settled)).is_none());
    }
}
