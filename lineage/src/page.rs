//! [`LineagePage`]: a lineage as the HTTP API sends it, a page of nodes at a
//! time. The same serde model on both ends: the API serialises a page, a
//! remote reader (the TUI) deserialises it and gets the lineage back.

use serde::{Deserialize, Serialize};
use weft_schemas::TraceId;

use crate::graph::{Anomaly, Lineage};
use crate::node::{Edge, Node};
use crate::summary::Summary;

/// Nodes per page unless asked otherwise.
pub const PAGE_NODES: usize = 10_000;
/// Entries of each summary list the first page carries at most: a
/// million-span workflow's 200,000 tool calls would be 170 MB of JSON.
pub const SUMMARY_ITEMS: usize = 1_000;

/// How many entries each summary list holds in all, when the page carries
/// only the first [`SUMMARY_ITEMS`] of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SummaryCounts {
    pub retrievals: usize,
    pub identities: usize,
    pub policy_checks: usize,
    pub tool_calls: usize,
    pub approvals: usize,
    pub findings: usize,
}

impl SummaryCounts {
    fn of(s: &Summary) -> Self {
        Self {
            retrievals: s.retrievals.len(),
            identities: s.identities.len(),
            policy_checks: s.policy_checks.len(),
            tool_calls: s.tool_calls.len(),
            approvals: s.approvals.len(),
            findings: s.findings.len(),
        }
    }

    fn any_over(&self, cap: usize) -> bool {
        [
            self.retrievals,
            self.identities,
            self.policy_checks,
            self.tool_calls,
            self.approvals,
            self.findings,
        ]
        .into_iter()
        .any(|n| n > cap)
    }
}

/// The first `cap` entries of each list of `s`.
fn first_of(s: &Summary, cap: usize) -> Summary {
    fn head<T: Clone>(v: &[T], cap: usize) -> Vec<T> {
        v[..v.len().min(cap)].to_vec()
    }
    Summary {
        retrievals: head(&s.retrievals, cap),
        identities: head(&s.identities, cap),
        policy_checks: head(&s.policy_checks, cap),
        tool_calls: head(&s.tool_calls, cap),
        approvals: head(&s.approvals, cap),
        findings: head(&s.findings, cap),
    }
}

/// One page of a lineage: `nodes` from `offset` (at most a page) and the
/// edges into them, so each edge is on exactly one page; the first page
/// (offset 0) also carries the analysis of the whole workflow (critical path,
/// anomalies, summary), which later pages leave out — a million-span
/// workflow's summary is sent once, not once a page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineagePage {
    /// The trace asked for.
    pub trace_id: TraceId,
    pub traces: Vec<TraceId>,
    /// This page is not the whole workflow: nodes are on other pages, or
    /// linked traces past the depth asked for were not followed. `left_out`
    /// says which.
    pub truncated: bool,
    /// More linked traces exist past the depth asked for.
    #[serde(default)]
    pub more_traces: bool,
    /// What this page leaves out, for a person; absent on a whole lineage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left_out: Option<String>,
    /// The `offset` of the next page, when nodes follow this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<usize>,
    pub total_nodes: usize,
    pub offset: usize,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    /// The analysis: on the first page only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical_path: Option<Vec<usize>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anomalies: Option<Vec<Anomaly>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<Summary>,
    /// Each summary list's full length, when `summary` holds only the first
    /// [`SUMMARY_ITEMS`] of one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary_counts: Option<SummaryCounts>,
}

impl LineagePage {
    /// The page of `lineage` from `offset`, at most `limit` nodes;
    /// `more_traces` when the walk stopped at the depth asked for.
    pub fn of(
        lineage: &Lineage,
        trace_id: TraceId,
        more_traces: bool,
        offset: usize,
        limit: usize,
    ) -> Self {
        let total = lineage.nodes.len();
        let offset = offset.min(total);
        let end = offset.saturating_add(limit).min(total);
        let first = offset == 0;
        let mut left_out = Vec::new();
        if offset > 0 || end < total {
            left_out.push(if end > offset {
                format!(
                    "this page holds nodes {offset}..{end} of {total}; the others are on \
                     other pages (?offset= and ?limit=)"
                )
            } else {
                format!("this page holds no nodes: offset {offset} is past the {total} nodes")
            });
        }
        let counts = SummaryCounts::of(&lineage.summary);
        let summary_cut = first && counts.any_over(SUMMARY_ITEMS);
        if summary_cut {
            left_out.push(format!(
                "the summary lists the first {SUMMARY_ITEMS} of each kind; summary_counts has how many there are \
                 (lineage() in SQL has every step's finding)"
            ));
        }
        if more_traces {
            left_out.push(
                "linked traces past the depth asked for were not followed (raise ?depth=)".into(),
            );
        }
        Self {
            trace_id,
            traces: lineage.traces.clone(),
            truncated: !left_out.is_empty(),
            more_traces,
            left_out: (!left_out.is_empty()).then(|| left_out.join("; ")),
            next_offset: (end < total).then_some(end),
            total_nodes: total,
            offset,
            nodes: lineage.nodes[offset..end].to_vec(),
            edges: lineage
                .edges
                .iter()
                .filter(|e| (offset..end).contains(&e.to))
                .cloned()
                .collect(),
            critical_path: first.then(|| lineage.critical_path.clone()),
            anomalies: first.then(|| lineage.anomalies.clone()),
            summary: first.then(|| first_of(&lineage.summary, SUMMARY_ITEMS)),
            summary_counts: summary_cut.then_some(counts),
        }
    }

    /// The lineage back, when this page holds all of it; `None` for a part
    /// (fetch the rest with `?offset=`).
    pub fn into_lineage(self) -> Option<Lineage> {
        if self.offset != 0 || self.nodes.len() != self.total_nodes {
            return None;
        }
        Some(Lineage {
            traces: self.traces,
            nodes: self.nodes,
            edges: self.edges,
            critical_path: self.critical_path?,
            anomalies: self.anomalies?,
            summary: self.summary?,
        })
    }

    /// The lineage back from its pages in order (`offset` 0, then each next
    /// offset); `None` when a page is missing or from another lineage.
    pub fn assemble(pages: Vec<LineagePage>) -> Option<Lineage> {
        let mut pages = pages.into_iter();
        let first = pages.next()?;
        let total = first.total_nodes;
        let mut nodes = first.nodes;
        let mut edges = first.edges;
        if first.offset != 0 {
            return None;
        }
        for page in pages {
            if page.offset != nodes.len() || page.total_nodes != total {
                return None;
            }
            nodes.extend(page.nodes);
            // Each edge is on the page of the node it leads to: no repeats.
            edges.extend(page.edges);
        }
        (nodes.len() == total).then_some(Lineage {
            traces: first.traces,
            nodes,
            edges,
            critical_path: first.critical_path?,
            anomalies: first.anomalies?,
            summary: first.summary?,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::graph::tests::span;
    use crate::{BuildOptions, build};
    use weft_schemas::{ApprovalState, PolicyVerdict, SpanId};

    /// A workflow with every part the JSON carries: two linked traces, a
    /// missing parent, AI fields, a governance finding.
    fn lineage() -> Lineage {
        let mut spans = vec![
            span(1, 1, None, 0, 100),
            span(1, 2, Some(1), 10, 40),
            span(1, 3, Some(9), 20, 30),
            span(2, 4, None, 50, 90),
        ];
        spans[1].ai.fields.update(|f| {
            f.policy_verdict = Some(PolicyVerdict::Deny);
            f.identity = Some("alice".into());
        });
        spans[2]
            .ai
            .fields
            .update(|f| f.tool_name = Some("refund".into()));
        spans[2].ai.tool_effect = Some("write".into());
        spans[2]
            .ai
            .fields
            .update(|f| f.approval_state = Some(ApprovalState::Granted));
        spans[3].links = vec![(spans[0].trace_id, spans[0].span_id)];
        build(
            spans,
            &BuildOptions {
                now_ns: 1_000_000_000_000,
                ..Default::default()
            },
        )
    }

    #[test]
    fn a_whole_page_round_trips_into_the_lineage() {
        let lineage = lineage();
        assert!(!lineage.summary.findings.is_empty() && !lineage.anomalies.is_empty());
        let page = LineagePage::of(&lineage, lineage.traces[0], false, 0, PAGE_NODES);
        let json = serde_json::to_string(&page).unwrap();
        let back: LineagePage = serde_json::from_str(&json).unwrap();
        assert_eq!(back, page);
        assert_eq!(back.into_lineage().unwrap(), lineage);
        let whole: Lineage =
            serde_json::from_str(&serde_json::to_string(&lineage).unwrap()).unwrap();
        assert_eq!(whole, lineage);
    }

    #[test]
    fn a_part_is_not_taken_for_the_whole() {
        let lineage = lineage();
        let whole = LineagePage::of(&lineage, lineage.traces[0], false, 0, PAGE_NODES);
        assert!(!whole.truncated && whole.left_out.is_none() && whole.next_offset.is_none());
        let page = LineagePage::of(&lineage, lineage.traces[0], false, 1, 2);
        assert_eq!((page.offset, page.nodes.len(), page.total_nodes), (1, 2, 4));
        assert!(page.truncated && !page.more_traces);
        assert_eq!(page.next_offset, Some(3));
        assert!(
            page.left_out
                .as_deref()
                .unwrap()
                .contains("nodes 1..3 of 4"),
            "{:?}",
            page.left_out
        );
        let deep = LineagePage::of(&lineage, lineage.traces[0], true, 0, PAGE_NODES);
        assert!(deep.truncated && deep.more_traces && deep.next_offset.is_none());
        assert!(deep.left_out.as_deref().unwrap().contains("depth"));
        assert!(!page.edges.is_empty());
        assert!(page.edges.iter().all(|e| (1..3).contains(&e.to)));
        // The analysis is the first page's: later pages leave it out.
        assert!(page.summary.is_none() && page.critical_path.is_none());
        assert!(deep.summary.is_some() && deep.anomalies.is_some());
        let json = serde_json::to_value(&page).unwrap();
        assert!(json.get("summary").is_none(), "{json}");
        assert!(page.into_lineage().is_none());
    }

    #[test]
    fn pages_assemble_into_the_lineage() {
        let lineage = lineage();
        let id = lineage.traces[0];
        let pages: Vec<LineagePage> = (0..4)
            .step_by(3)
            .map(|offset| LineagePage::of(&lineage, id, false, offset, 3))
            .collect();
        let mut back = LineagePage::assemble(pages.clone()).unwrap();
        let key = |e: &Edge| (e.from, e.to, e.kind as u8);
        back.edges.sort_by_key(key);
        let mut want = lineage.clone();
        want.edges.sort_by_key(key);
        assert_eq!(back, want);
        let edges: usize = pages.iter().map(|p| p.edges.len()).sum();
        assert_eq!(edges, lineage.edges.len(), "each edge on one page");
        assert!(
            LineagePage::assemble(pages[..1].to_vec()).is_none(),
            "a page short"
        );
        assert!(
            LineagePage::assemble(pages[1..].to_vec()).is_none(),
            "no first page"
        );
    }

    #[test]
    fn a_long_summary_is_cut_on_the_page_and_counted() {
        let mut spans = vec![span(1, 1, None, 0, 10_000)];
        for i in 0..1_200u64 {
            let mut s = span(1, 2, Some(1), i as i64, i as i64 + 1);
            s.span_id = SpanId::try_from(&(i + 100).to_be_bytes()[..]).unwrap();
            s.ai.fields.update(|f| f.tool_name = Some("lookup".into()));
            spans.push(s);
        }
        let lineage = build(
            spans,
            &BuildOptions {
                now_ns: 1_000_000_000_000,
                ..Default::default()
            },
        );
        assert_eq!(lineage.summary.tool_calls.len(), 1_200);
        let page = LineagePage::of(&lineage, lineage.traces[0], false, 0, PAGE_NODES);
        let summary = page.summary.as_ref().unwrap();
        assert_eq!(summary.tool_calls.len(), SUMMARY_ITEMS);
        assert_eq!(
            summary.tool_calls[..],
            lineage.summary.tool_calls[..SUMMARY_ITEMS]
        );
        assert_eq!(page.summary_counts.unwrap().tool_calls, 1_200);
        assert!(page.truncated);
        assert!(page.left_out.as_deref().unwrap().contains("summary_counts"));
        // A short summary goes whole, uncounted.
        let small = LineagePage::of(&self::lineage(), lineage.traces[0], false, 0, PAGE_NODES);
        assert!(small.summary_counts.is_none() && !small.truncated);
    }
}
