//! One workflow's state in the lineage view: the folded tree laid out as
//! rows, the selection, the detail pane's scroll, and the summary pane whose
//! findings and anomalies jump to their spans.

use std::collections::HashSet;

use weft_lineage::render::review_text;
use weft_lineage::{EdgeKind, Lineage, Node};
use weft_schemas::TraceId;

/// Rows a page key moves.
pub const PAGE: usize = 20;

/// Which half of the lineage view has the keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    /// The tree and waterfall, beside the selected step's details.
    Steps,
    /// Findings and anomalies (selectable), then the review questions.
    Summary,
}

/// What a key asks of the lineage view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Move {
    Up,
    Down,
    PageUp,
    PageDown,
    Home,
    End,
    /// Fold or unfold the selected step's children.
    Toggle,
    Expand,
    /// Fold an open step, or go to its parent.
    Collapse,
    /// The next step on the critical path.
    NextCritical,
    /// The other end of the selected step's span link (into the linked trace).
    FollowLink,
    /// On the summary: jump to the selected finding's or anomaly's span.
    Jump,
    DetailUp,
    DetailDown,
    SwitchPane,
}

/// One visible line of the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    pub node: usize,
    pub depth: usize,
    /// The edge that led here; `None` for a root.
    pub via: Option<EdgeKind>,
    /// Already shown above (reached a second time, e.g. by a link).
    pub repeat: bool,
}

/// A line of the summary pane; `target` is the node it is about.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryLine {
    pub text: String,
    pub target: Option<usize>,
    /// A finding or anomaly (drawn as a warning).
    pub alert: bool,
}

/// The lineage view's state.
#[derive(Debug)]
pub struct Explorer {
    /// The trace that was opened.
    trace: TraceId,
    lineage: Lineage,
    /// Children of each node in start order, with the edge kind.
    children: Vec<Vec<(usize, EdgeKind)>>,
    /// The node that first reached each node (for revealing folded steps).
    parent: Vec<Option<usize>>,
    /// Nodes joined to each node by a span link or evidence, either way.
    links: Vec<Vec<usize>>,
    /// The first root by start time: the workflow's name.
    first_root: Option<usize>,
    /// Where the tree starts: nodes without a parent, then one node of each
    /// cycle no root reaches.
    roots: Vec<usize>,
    collapsed: HashSet<usize>,
    rows: Vec<Row>,
    selected: usize,
    pane: Pane,
    detail_scroll: usize,
    summary: Vec<SummaryLine>,
    summary_selected: usize,
    /// First start and last end, for the waterfall's scale.
    span_ns: (i64, i64),
}

impl Explorer {
    pub fn new(trace: TraceId, lineage: Lineage) -> Self {
        let n = lineage.nodes.len();
        let mut children: Vec<Vec<(usize, EdgeKind)>> = vec![Vec::new(); n];
        let mut parent = vec![None; n];
        let mut links: Vec<Vec<usize>> = vec![Vec::new(); n];
        for e in &lineage.edges {
            children[e.from].push((e.to, e.kind));
            parent[e.to].get_or_insert(e.from);
            if matches!(e.kind, EdgeKind::Link | EdgeKind::Evidence) {
                links[e.from].push(e.to);
                links[e.to].push(e.from);
            }
        }
        let start = |i: usize| (lineage.nodes[i].span.start_ns, i);
        for c in &mut children {
            c.sort_by_key(|(i, _)| start(*i));
        }
        let mut roots: Vec<usize> = (0..n).filter(|i| parent[*i].is_none()).collect();
        roots.sort_by_key(|i| start(*i));
        let mut reached = vec![false; n];
        let mut stack = roots.clone();
        let mut i = 0;
        loop {
            while let Some(v) = stack.pop() {
                if !std::mem::replace(&mut reached[v], true) {
                    stack.extend(children[v].iter().map(|(c, _)| *c));
                }
            }
            // A node inside a cycle that no root reaches starts a tree of its own.
            match (i..n).find(|v| !reached[*v]) {
                Some(v) => {
                    roots.push(v);
                    stack.push(v);
                    i = v + 1;
                }
                None => break,
            }
        }
        let first = lineage.nodes.iter().map(|n| n.span.start_ns).min();
        let last = lineage.nodes.iter().map(|n| n.span.end_ns).max();
        let summary = summary_lines(&lineage);
        // The cursor starts on the first line Enter acts on, if any.
        let summary_selected = summary.iter().position(|l| l.target.is_some()).unwrap_or(0);
        let first_root = roots.first().copied();
        let mut explorer = Self {
            trace,
            lineage,
            children,
            parent,
            links,
            first_root,
            roots,
            collapsed: HashSet::new(),
            rows: Vec::new(),
            selected: 0,
            pane: Pane::Steps,
            detail_scroll: 0,
            summary,
            summary_selected,
            span_ns: (first.unwrap_or(0), last.unwrap_or(0)),
        };
        explorer.rebuild_rows();
        explorer
    }

    pub fn trace(&self) -> TraceId {
        self.trace
    }

    pub fn lineage(&self) -> &Lineage {
        &self.lineage
    }

    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    pub fn selected(&self) -> usize {
        self.selected
    }

    pub fn selected_node(&self) -> Option<&Node> {
        self.rows
            .get(self.selected)
            .map(|r| &self.lineage.nodes[r.node])
    }

    pub fn pane(&self) -> Pane {
        self.pane
    }

    pub fn detail_scroll(&self) -> usize {
        self.detail_scroll
    }

    pub fn summary(&self) -> &[SummaryLine] {
        &self.summary
    }

    pub fn summary_selected(&self) -> usize {
        self.summary_selected
    }

    /// The workflow's first start and last end (Unix ns).
    pub fn time_span(&self) -> (i64, i64) {
        self.span_ns
    }

    pub fn is_collapsed(&self, node: usize) -> bool {
        self.collapsed.contains(&node)
    }

    pub fn has_children(&self, node: usize) -> bool {
        !self.children[node].is_empty()
    }

    /// Nodes joined to `node` by a span link, either way.
    pub fn linked(&self, node: usize) -> &[usize] {
        self.links.get(node).map_or(&[], Vec::as_slice)
    }

    /// The first root by start time (the workflow's own first step).
    pub fn first_root(&self) -> Option<&Node> {
        self.first_root.map(|i| &self.lineage.nodes[i])
    }

    /// Applies one move.
    pub fn update(&mut self, m: Move) {
        match (self.pane, m) {
            (_, Move::SwitchPane) => {
                self.pane = match self.pane {
                    Pane::Steps => Pane::Summary,
                    Pane::Summary => Pane::Steps,
                }
            }
            (_, Move::DetailUp) => self.detail_scroll = self.detail_scroll.saturating_sub(1),
            (_, Move::DetailDown) => self.detail_scroll = self.detail_scroll.saturating_add(1),
            (Pane::Summary, m) => self.summary_move(m),
            (Pane::Steps, m) => self.steps_move(m),
        }
    }

    /// The summary's cursor moves among the lines Enter acts on (findings
    /// and anomalies); with none, it moves line by line to scroll.
    fn summary_move(&mut self, m: Move) {
        let targets: Vec<usize> = (0..self.summary.len())
            .filter(|i| self.summary[*i].target.is_some())
            .collect();
        let stops: Vec<usize> = if targets.is_empty() {
            (0..self.summary.len()).collect()
        } else {
            targets
        };
        let at = stops
            .iter()
            .position(|i| *i >= self.summary_selected)
            .unwrap_or(stops.len().saturating_sub(1));
        let last = stops.len().saturating_sub(1);
        let to = |k: usize| stops.get(k.min(last)).copied().unwrap_or(0);
        let s = &mut self.summary_selected;
        match m {
            Move::Up => *s = to(at.saturating_sub(1)),
            Move::Down => *s = to(at + 1),
            Move::PageUp => *s = to(at.saturating_sub(PAGE)),
            Move::PageDown => *s = to(at + PAGE),
            Move::Home => *s = to(0),
            Move::End => *s = to(last),
            Move::Jump | Move::Toggle | Move::Expand => {
                if let Some(node) = self.summary.get(*s).and_then(|l| l.target) {
                    self.reveal(node);
                    self.pane = Pane::Steps;
                }
            }
            _ => {}
        }
    }

    fn steps_move(&mut self, m: Move) {
        let last = self.rows.len().saturating_sub(1);
        let before = self.selected;
        match m {
            Move::Up => self.selected = self.selected.saturating_sub(1),
            Move::Down => self.selected = (self.selected + 1).min(last),
            Move::PageUp => self.selected = self.selected.saturating_sub(PAGE),
            Move::PageDown => self.selected = (self.selected + PAGE).min(last),
            Move::Home => self.selected = 0,
            Move::End => self.selected = last,
            Move::Toggle | Move::Jump => {
                if let Some(row) = self.rows.get(self.selected).copied() {
                    self.set_collapsed(row.node, !self.collapsed.contains(&row.node));
                }
            }
            Move::Expand => {
                if let Some(row) = self.rows.get(self.selected).copied() {
                    self.set_collapsed(row.node, false);
                }
            }
            Move::Collapse => self.collapse_or_go_to_parent(),
            Move::NextCritical => {
                let from = self.selected.saturating_add(1).min(self.rows.len());
                let next = self.rows[from..]
                    .iter()
                    .position(|r| !r.repeat && self.lineage.nodes[r.node].on_critical_path);
                if let Some(k) = next {
                    self.selected = from + k;
                }
            }
            Move::FollowLink => {
                if let Some(row) = self.rows.get(self.selected).copied()
                    && let Some(&other) = self.linked(row.node).first()
                {
                    self.reveal(other);
                }
            }
            Move::DetailUp | Move::DetailDown | Move::SwitchPane => {}
        }
        if self.selected != before {
            self.detail_scroll = 0;
        }
    }

    /// Selects `node`, unfolding the steps above it.
    pub fn reveal(&mut self, node: usize) {
        let mut up = self.parent.get(node).copied().flatten();
        let mut guard = 0;
        while let Some(p) = up {
            self.collapsed.remove(&p);
            up = self.parent[p];
            guard += 1;
            if guard > self.parent.len() {
                break; // a cycle
            }
        }
        self.rebuild_rows();
        if let Some(i) = self.rows.iter().position(|r| r.node == node && !r.repeat) {
            self.selected = i;
            self.detail_scroll = 0;
        }
    }

    fn set_collapsed(&mut self, node: usize, collapsed: bool) {
        if !self.has_children(node) {
            return;
        }
        if collapsed {
            self.collapsed.insert(node);
        } else {
            self.collapsed.remove(&node);
        }
        self.rebuild_rows();
    }

    /// Left: fold an open step, or else move to the step above it.
    fn collapse_or_go_to_parent(&mut self) {
        let Some(row) = self.rows.get(self.selected).copied() else {
            return;
        };
        if !row.repeat && self.has_children(row.node) && !self.collapsed.contains(&row.node) {
            self.set_collapsed(row.node, true);
            return;
        }
        if let Some(parent) = self.rows[..self.selected]
            .iter()
            .rposition(|r| r.depth < row.depth)
        {
            self.selected = parent;
        }
    }

    /// Lays the tree out as rows, keeping the selected step selected.
    fn rebuild_rows(&mut self) {
        let keep = self.rows.get(self.selected).map(|r| r.node);
        let n = self.lineage.nodes.len();
        let mut rows = Vec::with_capacity(n);
        let mut shown = vec![false; n];
        for &start in &self.roots {
            if shown[start] {
                continue;
            }
            // Iterative DFS, children pushed in reverse so they pop in start order.
            let mut stack = vec![(start, 0usize, None)];
            while let Some((node, depth, via)) = stack.pop() {
                let repeat = shown[node];
                rows.push(Row {
                    node,
                    depth,
                    via,
                    repeat,
                });
                shown[node] = true;
                if repeat || self.collapsed.contains(&node) {
                    continue;
                }
                for (c, kind) in self.children[node].iter().rev() {
                    stack.push((*c, depth + 1, Some(*kind)));
                }
            }
        }
        self.rows = rows;
        self.selected = keep
            .and_then(|k| self.rows.iter().position(|r| r.node == k && !r.repeat))
            .unwrap_or(0)
            .min(self.rows.len().saturating_sub(1));
    }
}

/// Findings and anomalies first, each pointing at its span, then the review
/// questions as text.
fn summary_lines(lineage: &Lineage) -> Vec<SummaryLine> {
    let plain = |text: String| SummaryLine {
        text,
        target: None,
        alert: false,
    };
    let mut out = Vec::new();
    let findings = &lineage.summary.findings;
    out.push(plain(format!("findings ({}):", findings.len())));
    for f in findings {
        out.push(SummaryLine {
            text: format!("  {}: {}", f.rule, f.message),
            target: Some(f.step.node).filter(|n| *n < lineage.nodes.len()),
            alert: true,
        });
    }
    out.push(plain(format!("anomalies ({}):", lineage.anomalies.len())));
    for a in &lineage.anomalies {
        let target = a.span().and_then(|(t, s)| {
            lineage
                .nodes
                .iter()
                .position(|n| n.span.trace_id == t && n.span.span_id == s)
        });
        out.push(SummaryLine {
            text: format!("  {}", a.describe()),
            target,
            alert: true,
        });
    }
    out.push(plain(String::new()));
    out.extend(review_text(lineage).lines().map(|l| plain(l.to_owned())));
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::view::tests::workflow;

    fn explorer() -> Explorer {
        let lineage = workflow();
        Explorer::new(lineage.traces[0], lineage)
    }

    #[test]
    fn moving_folding_and_the_critical_path() {
        let mut x = explorer();
        let total = x.rows().len();
        assert_eq!(total, x.lineage().nodes.len(), "everything starts unfolded");
        x.update(Move::Up);
        assert_eq!(x.selected(), 0, "the top is the top");
        x.update(Move::End);
        assert_eq!(x.selected(), total - 1);
        x.update(Move::Home);
        x.update(Move::Toggle);
        assert_eq!(x.rows().len(), 1, "the root folded hides everything");
        x.update(Move::Expand);
        assert_eq!(x.rows().len(), total);

        // Left on a leaf goes to its parent; on an open parent it folds it.
        x.update(Move::End);
        let leaf_depth = x.rows()[x.selected()].depth;
        x.update(Move::Collapse);
        assert!(x.rows()[x.selected()].depth < leaf_depth);
        let parent = x.rows()[x.selected()].node;
        x.update(Move::Collapse);
        assert!(x.is_collapsed(parent));
        assert!(x.rows().len() < total);

        x.update(Move::Home);
        x.update(Move::Expand);
        let mut visited = Vec::new();
        for _ in 0..total {
            x.update(Move::NextCritical);
            visited.push(x.selected());
        }
        visited.dedup();
        let on_path = x.lineage().critical_path.len();
        assert_eq!(
            visited.len(),
            on_path - 1,
            "every later step of the path, once"
        );
        assert!(
            visited
                .iter()
                .all(|i| x.lineage().nodes[x.rows()[*i].node].on_critical_path)
        );
    }

    fn select(x: &mut Explorer, name: &str) {
        x.update(Move::Home);
        while x.selected_node().is_some_and(|n| &*n.span.name != name) {
            let before = x.selected();
            x.update(Move::Down);
            assert_ne!(before, x.selected(), "no step named {name}");
        }
    }

    #[test]
    fn a_link_jumps_into_the_linked_trace_and_back() {
        let mut x = explorer();
        select(&mut x, "approval");
        let approval_trace = x.selected_node().unwrap().span.trace_id;
        // Fold the root first: following the link must unfold what hides it.
        x.update(Move::Home);
        x.update(Move::Toggle);
        select(&mut x, "support ticket");
        x.update(Move::FollowLink);
        assert_eq!(
            &*x.selected_node().unwrap().span.name,
            "support ticket",
            "no link here"
        );
        x.update(Move::Expand);
        select(&mut x, "approval");
        x.update(Move::FollowLink);
        let there = x.selected_node().unwrap();
        assert_eq!(&*there.span.name, "resume refund");
        assert_ne!(there.span.trace_id, approval_trace, "into the other trace");
        x.update(Move::FollowLink);
        assert_eq!(&*x.selected_node().unwrap().span.name, "approval");
    }

    #[test]
    fn a_finding_on_the_summary_jumps_to_its_span() {
        let mut x = explorer();
        x.update(Move::Home);
        x.update(Move::Toggle); // everything folded under the root
        x.update(Move::SwitchPane);
        assert_eq!(x.pane(), Pane::Summary);
        let finding = x
            .summary()
            .iter()
            .position(|l| l.alert && l.target.is_some())
            .expect("the fixture has a finding or anomaly with a span");
        // The cursor starts on it (not on a header Enter cannot act on),
        // and moves only among the lines Enter acts on.
        assert_eq!(x.summary_selected(), finding);
        x.update(Move::Up);
        assert_eq!(x.summary_selected(), finding);
        x.update(Move::End);
        assert!(x.summary()[x.summary_selected()].target.is_some());
        x.update(Move::Home);
        assert_eq!(x.summary_selected(), finding);
        let target = x.summary()[finding].target.unwrap();
        x.update(Move::Jump);
        assert_eq!(x.pane(), Pane::Steps);
        assert_eq!(x.rows()[x.selected()].node, target, "unfolded and selected");
    }

    #[test]
    fn the_detail_scroll_resets_on_a_new_step() {
        let mut x = explorer();
        x.update(Move::DetailDown);
        x.update(Move::DetailDown);
        assert_eq!(x.detail_scroll(), 2);
        x.update(Move::Down);
        assert_eq!(x.detail_scroll(), 0);
    }
}
