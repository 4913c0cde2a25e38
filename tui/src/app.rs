//! Explorer state and the one function that changes it.

use std::collections::HashSet;

use weft_lineage::{EdgeKind, Lineage, Node};

/// What the body of the screen shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    /// The span tree beside the selected step's details.
    Tree,
    /// The five questions, governance findings and anomalies.
    Summary,
}

/// Everything a key can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Up,
    Down,
    PageUp,
    PageDown,
    Home,
    End,
    /// Fold or unfold the selected step's children.
    Toggle,
    Expand,
    Collapse,
    /// Jump to the next step on the critical path.
    NextCritical,
    NextTab,
    Quit,
}

/// Rows a page key moves.
pub const PAGE: usize = 20;

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

/// The explorer's state.
#[derive(Debug)]
pub struct App {
    lineage: Lineage,
    /// Children of each node in start order, with the edge kind.
    children: Vec<Vec<(usize, EdgeKind)>>,
    /// Where the tree starts: nodes without a parent, then one node of each
    /// cycle no root reaches.
    roots: Vec<usize>,
    collapsed: HashSet<usize>,
    rows: Vec<Row>,
    selected: usize,
    tab: Tab,
    /// First line shown on the summary tab.
    summary_scroll: usize,
    quit: bool,
}

impl App {
    pub fn new(lineage: Lineage) -> Self {
        let n = lineage.nodes.len();
        let mut children: Vec<Vec<(usize, EdgeKind)>> = vec![Vec::new(); n];
        let mut has_parent = vec![false; n];
        for e in &lineage.edges {
            children[e.from].push((e.to, e.kind));
            has_parent[e.to] = true;
        }
        let start = |i: usize| (lineage.nodes[i].span.start_ns, i);
        for c in &mut children {
            c.sort_by_key(|(i, _)| start(*i));
        }
        let mut roots: Vec<usize> = (0..n).filter(|i| !has_parent[*i]).collect();
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
        let mut app = Self {
            lineage,
            children,
            roots,
            collapsed: HashSet::new(),
            rows: Vec::new(),
            selected: 0,
            tab: Tab::Tree,
            summary_scroll: 0,
            quit: false,
        };
        app.rebuild_rows();
        app
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

    pub fn tab(&self) -> Tab {
        self.tab
    }

    pub fn summary_scroll(&self) -> usize {
        self.summary_scroll
    }

    pub fn should_quit(&self) -> bool {
        self.quit
    }

    pub fn is_collapsed(&self, node: usize) -> bool {
        self.collapsed.contains(&node)
    }

    pub fn has_children(&self, node: usize) -> bool {
        !self.children[node].is_empty()
    }

    /// Applies one action. Nothing else mutates the explorer.
    pub fn update(&mut self, action: Action) {
        let last = self.rows.len().saturating_sub(1);
        match (self.tab, action) {
            (_, Action::Quit) => self.quit = true,
            (_, Action::NextTab) => {
                self.tab = match self.tab {
                    Tab::Tree => Tab::Summary,
                    Tab::Summary => Tab::Tree,
                }
            }
            (Tab::Summary, Action::Up) => {
                self.summary_scroll = self.summary_scroll.saturating_sub(1)
            }
            (Tab::Summary, Action::Down) => self.summary_scroll += 1,
            (Tab::Summary, Action::PageUp) => {
                self.summary_scroll = self.summary_scroll.saturating_sub(PAGE)
            }
            (Tab::Summary, Action::PageDown) => self.summary_scroll += PAGE,
            (Tab::Summary, Action::Home) => self.summary_scroll = 0,
            (Tab::Summary, _) => {}
            (Tab::Tree, Action::Up) => self.selected = self.selected.saturating_sub(1),
            (Tab::Tree, Action::Down) => self.selected = (self.selected + 1).min(last),
            (Tab::Tree, Action::PageUp) => self.selected = self.selected.saturating_sub(PAGE),
            (Tab::Tree, Action::PageDown) => self.selected = (self.selected + PAGE).min(last),
            (Tab::Tree, Action::Home) => self.selected = 0,
            (Tab::Tree, Action::End) => self.selected = last,
            (Tab::Tree, Action::Toggle) => {
                if let Some(row) = self.rows.get(self.selected).copied() {
                    self.set_collapsed(row.node, !self.collapsed.contains(&row.node));
                }
            }
            (Tab::Tree, Action::Expand) => {
                if let Some(row) = self.rows.get(self.selected).copied() {
                    self.set_collapsed(row.node, false);
                }
            }
            (Tab::Tree, Action::Collapse) => self.collapse_or_go_to_parent(),
            (Tab::Tree, Action::NextCritical) => {
                let next = self.rows[self.selected.saturating_add(1).min(self.rows.len())..]
                    .iter()
                    .position(|r| !r.repeat && self.lineage.nodes[r.node].on_critical_path);
                if let Some(k) = next {
                    self.selected += 1 + k;
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::tests::workflow;

    #[test]
    fn moving_folding_and_the_critical_path() {
        let mut app = App::new(workflow());
        let total = app.rows().len();
        assert_eq!(
            total,
            app.lineage().nodes.len(),
            "everything starts unfolded"
        );
        app.update(Action::Up);
        assert_eq!(app.selected(), 0, "the top is the top");
        app.update(Action::End);
        assert_eq!(app.selected(), total - 1);
        app.update(Action::Home);
        app.update(Action::Toggle);
        assert_eq!(app.rows().len(), 1, "the root folded hides everything");
        app.update(Action::Expand);
        assert_eq!(app.rows().len(), total);

        // Left on a leaf goes to its parent; on an open parent it folds it.
        app.update(Action::End);
        let leaf_depth = app.rows()[app.selected()].depth;
        app.update(Action::Collapse);
        assert!(app.rows()[app.selected()].depth < leaf_depth);
        let parent = app.rows()[app.selected()].node;
        app.update(Action::Collapse);
        assert!(app.is_collapsed(parent));
        assert!(app.rows().len() < total);

        app.update(Action::Home);
        app.update(Action::Expand);
        let mut visited = Vec::new();
        for _ in 0..total {
            app.update(Action::NextCritical);
            visited.push(app.selected());
        }
        visited.dedup();
        let on_path = app.lineage().critical_path.len();
        assert_eq!(
            visited.len(),
            on_path - 1,
            "every later step of the path, once"
        );
        assert!(
            visited
                .iter()
                .all(|i| app.lineage().nodes[app.rows()[*i].node].on_critical_path)
        );
    }

    #[test]
    fn tabs_and_quit() {
        let mut app = App::new(workflow());
        app.update(Action::NextTab);
        assert_eq!(app.tab(), Tab::Summary);
        app.update(Action::Down);
        app.update(Action::Down);
        assert_eq!(app.summary_scroll(), 2);
        app.update(Action::Toggle);
        assert_eq!(app.selected(), 0, "tree keys do nothing on the summary");
        app.update(Action::NextTab);
        assert_eq!(app.tab(), Tab::Tree);
        assert!(!app.should_quit());
        app.update(Action::Quit);
        assert!(app.should_quit());
    }
}
