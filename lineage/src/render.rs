//! Lineage for people: a compact text tree with the summary, and Graphviz DOT.

use std::collections::HashSet;
use std::fmt::Write;

use crate::graph::Lineage;
use crate::node::{EdgeKind, Node};

pub use crate::units::duration;

fn details(node: &Node) -> String {
    let s = &node.span;
    let ai = &s.ai;
    let mut parts: Vec<String> = Vec::new();
    if let Some(k) = ai.fields.ai_kind() {
        parts.push(format!("[{}]", k.as_str()));
    }
    parts.push(duration(s.duration_ns()));
    if let Some(m) = ai.fields.gen_ai_model() {
        parts.push(m.to_owned());
    }
    if let Some(n) = ai.fields.node() {
        let kv = match ai.fields.kv_cache_hit() {
            Some(true) => " kv=hit",
            Some(false) => " kv=miss",
            None => "",
        };
        parts.push(format!("on {n}{kv}"));
    }
    if let (Some(i), Some(o)) = (ai.fields.input_tokens(), ai.fields.output_tokens()) {
        parts.push(format!("tokens={i}/{o}"));
    }
    if let Some(src) = ai.fields.retrieval_source() {
        parts.push(format!(
            "source={src} docs={}",
            ai.fields
                .retrieved_document_ids()
                .map_or(0, <[String]>::len)
        ));
    }
    if let Some(t) = ai.fields.tool_name() {
        let effect = ai
            .tool_effect
            .as_deref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        parts.push(format!("tool={t}{effect}"));
    }
    if let Some(v) = ai.fields.policy_verdict() {
        parts.push(format!(
            "{}={}",
            ai.fields.policy_name().unwrap_or("policy"),
            v.as_str()
        ));
    }
    if let Some(a) = ai.fields.approval_state() {
        let by = ai
            .fields
            .approver()
            .map(|p| format!(" by {p}"))
            .unwrap_or_default();
        parts.push(format!("approval={}{by}", a.as_str()));
    }
    if let Some(id) = ai.fields.identity() {
        parts.push(format!("as {id}"));
    }
    if s.status == weft_schemas::StatusCode::Error {
        parts.push(format!(
            "ERROR {}",
            s.status_message.as_deref().unwrap_or("")
        ));
    }
    parts.join("  ")
}

/// How many children of one name a parent shows before folding the rest into
/// one line, unless asked otherwise.
pub const DEFAULT_FOLD: usize = 10;

/// The workflow as an indented tree: `*` marks the critical path, `⇢` a link
/// (follows-from, possibly into another trace), `?` an orphan attached to its
/// trace's root. A span reached twice is printed once.
///
/// So that huge workflows stay readable, a parent shows at most `fold`
/// children of each name (0: no limit) and folds the others, with their
/// subtrees, into one counted line; children on the critical path or with an
/// error are always shown.
pub fn text_tree(lineage: &Lineage, fold: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "workflow: {} span(s) in {} trace(s); * critical path, ⇢ link, ≈ evidence, ? orphan",
        lineage.nodes.len(),
        lineage.traces.len()
    );
    let mut children: Vec<Vec<(usize, EdgeKind)>> = vec![Vec::new(); lineage.nodes.len()];
    let mut has_parent = vec![false; lineage.nodes.len()];
    for e in &lineage.edges {
        children[e.from].push((e.to, e.kind));
        has_parent[e.to] = true;
    }
    let start = |i: &(usize, EdgeKind)| (lineage.nodes[i.0].span.start_ns, i.0);
    for c in &mut children {
        c.sort_by_key(start);
    }
    let mut roots: Vec<usize> = (0..lineage.nodes.len())
        .filter(|i| !has_parent[*i])
        .collect();
    roots.sort_by_key(|i| (lineage.nodes[*i].span.start_ns, *i));
    let evidence = lineage
        .edges
        .iter()
        .filter_map(|e| Some(((e.from, e.to), e.evidence.as_deref()?)))
        .collect();
    let mut tree = Tree {
        lineage,
        children,
        evidence,
        fold,
        printed: HashSet::new(),
        folded: HashSet::new(),
        current_trace: None,
        out,
    };
    for r in roots {
        tree.walk(r, None, "", true);
    }
    // Nodes inside a cycle with no root (folded ones stay folded).
    for i in 0..lineage.nodes.len() {
        if !tree.printed.contains(&i) && !tree.folded.contains(&i) {
            tree.walk(i, None, "", true);
        }
    }
    tree.out
}

/// How much of an event's body the tree shows (the JSON has all of it).
const EVENT_BODY_CHARS: usize = 80;

/// `text` cut to `max` characters, with `…` when cut; on one line.
fn shorten(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match flat.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &flat[..at]),
        None => flat,
    }
}

/// The state of one text-tree rendering.
struct Tree<'a> {
    lineage: &'a Lineage,
    children: Vec<Vec<(usize, EdgeKind)>>,
    /// What each evidence edge `(from, to)` rests on.
    evidence: std::collections::HashMap<(usize, usize), &'a crate::evidence::Evidence>,
    fold: usize,
    printed: HashSet<usize>,
    /// Spans folded into a count, with their subtrees.
    folded: HashSet<usize>,
    current_trace: Option<weft_schemas::TraceId>,
    out: String,
}

impl Tree<'_> {
    /// Splits `i`'s children into those shown and those folded away.
    fn shown_children(&self, i: usize) -> (Vec<(usize, EdgeKind)>, Vec<usize>) {
        let nodes = &self.lineage.nodes;
        let mut per_name: std::collections::HashMap<&str, usize> = Default::default();
        let mut shown = Vec::new();
        let mut hidden = Vec::new();
        for &(c, kind) in &self.children[i] {
            let n = &nodes[c];
            let seen = per_name.entry(&*n.span.name).or_default();
            *seen += 1;
            let keep = self.fold == 0
                || *seen <= self.fold
                || n.on_critical_path
                || n.span.status == weft_schemas::StatusCode::Error;
            if keep {
                shown.push((c, kind));
            } else {
                hidden.push(c);
            }
        }
        (shown, hidden)
    }

    /// Marks `roots` and everything beneath them folded; returns how many.
    fn fold_away(&mut self, roots: &[usize]) -> usize {
        let mut stack = roots.to_vec();
        let mut count = 0;
        while let Some(n) = stack.pop() {
            if self.printed.contains(&n) || !self.folded.insert(n) {
                continue;
            }
            count += 1;
            stack.extend(self.children[n].iter().map(|(c, _)| *c));
        }
        count
    }

    /// Prints `i` and what is beneath it. Iterative (an explicit stack), so a
    /// chain as deep as a client cares to send cannot overflow the thread's
    /// stack; indentation stops growing at [`MAX_INDENT`] levels, so the
    /// output stays proportional to the spans shown.
    fn walk(&mut self, i: usize, via: Option<EdgeKind>, prefix: &str, last: bool) {
        enum Work {
            Node {
                i: usize,
                from: Option<usize>,
                via: Option<EdgeKind>,
                prefix: String,
                last: bool,
            },
            Folded {
                hidden: Vec<usize>,
                prefix: String,
            },
        }
        let mut stack = vec![Work::Node {
            i,
            from: None,
            via,
            prefix: prefix.to_owned(),
            last,
        }];
        while let Some(work) = stack.pop() {
            match work {
                Work::Node {
                    i,
                    from,
                    via,
                    prefix,
                    last,
                } => {
                    let evidence = from.and_then(|f| self.evidence.get(&(f, i)).copied());
                    let Some(child_prefix) = self.line(i, via, evidence, &prefix, last) else {
                        continue;
                    };
                    let (kids, hidden) = self.shown_children(i);
                    // The folded line, if any, comes after the children.
                    let folded_after = !hidden.is_empty();
                    if folded_after {
                        stack.push(Work::Folded {
                            hidden,
                            prefix: child_prefix.clone(),
                        });
                    }
                    for (k, (c, kind)) in kids.iter().enumerate().rev() {
                        let last = k + 1 == kids.len() && !folded_after;
                        stack.push(Work::Node {
                            i: *c,
                            from: Some(i),
                            via: Some(*kind),
                            prefix: child_prefix.clone(),
                            last,
                        });
                    }
                }
                Work::Folded { hidden, prefix } => self.folded_line(&hidden, &prefix),
            }
        }
    }

    /// Prints the line of node `i`; returns the prefix of its children, or
    /// `None` when it was shown above already.
    fn line(
        &mut self,
        i: usize,
        via: Option<EdgeKind>,
        evidence: Option<&crate::evidence::Evidence>,
        prefix: &str,
        last: bool,
    ) -> Option<String> {
        let node = &self.lineage.nodes[i];
        let branch = match (via, last) {
            (None, _) => "",
            (Some(_), true) => "└─ ",
            (Some(_), false) => "├─ ",
        };
        let mark = match via {
            Some(EdgeKind::Link) => "⇢ ",
            Some(EdgeKind::Orphan) => "? ",
            Some(EdgeKind::Evidence) => "≈ ",
            _ => "",
        };
        let because = evidence
            .map(|e| format!("  [evidence {}={}]", e.key, shorten(&e.value, 40)))
            .unwrap_or_default();
        let star = if node.on_critical_path { "* " } else { "" };
        let trace = if self.current_trace != Some(node.span.trace_id) {
            self.current_trace = Some(node.span.trace_id);
            format!("  (trace {})", node.span.trace_id)
        } else {
            String::new()
        };
        if !self.printed.insert(i) {
            let _ = writeln!(
                self.out,
                "{prefix}{branch}{mark}{} (shown above)",
                node.span.name
            );
            return None;
        }
        let _ = writeln!(
            self.out,
            "{prefix}{branch}{mark}{star}{}  {}{trace}{because}",
            node.span.name,
            details(node)
        );
        let child = match via {
            None => prefix.to_owned(),
            Some(_) if prefix.chars().count() >= 3 * MAX_INDENT => prefix.to_owned(),
            Some(_) => format!("{prefix}{}", if last { "   " } else { "│  " }),
        };
        for event in &node.span.events {
            let body = event
                .body
                .as_deref()
                .map(|b| format!(": {}", shorten(b, EVENT_BODY_CHARS)))
                .unwrap_or_default();
            let _ = writeln!(self.out, "{child}  ✉ {}{body}", event.name);
        }
        Some(child)
    }

    /// The line that stands for children folded away.
    fn folded_line(&mut self, hidden: &[usize], prefix: &str) {
        let mut names: Vec<&str> = hidden
            .iter()
            .map(|c| &*self.lineage.nodes[*c].span.name)
            .collect();
        names.sort_unstable();
        names.dedup();
        let names = names
            .iter()
            .map(|n| format!("\"{n}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let spans = self.fold_away(hidden);
        let _ = writeln!(
            self.out,
            "{prefix}└─ … {} more {names} folded ({spans} span(s) with their subtrees)",
            hidden.len(),
        );
    }
}

/// Levels of the text tree that indent; deeper ones print at that indentation.
const MAX_INDENT: usize = 64;

/// The summary and anomalies as text, for `weft lineage` and snapshot tests.
pub fn summary_text(lineage: &Lineage) -> String {
    let mut out = review_text(lineage);
    let _ = writeln!(out, "findings:");
    none_if_empty(&mut out, &lineage.summary.findings);
    for f in &lineage.summary.findings {
        let _ = writeln!(out, "  {}: {}", f.rule, f.message);
    }
    let _ = writeln!(out, "anomalies:");
    none_if_empty(&mut out, &lineage.anomalies);
    for a in &lineage.anomalies {
        let _ = writeln!(out, "  {}", a.describe());
    }
    out
}

/// A section with nothing in it says so, rather than leaving a bare header.
fn none_if_empty<T>(out: &mut String, items: &[T]) {
    if items.is_empty() {
        out.push_str("  none\n");
    }
}

/// The five review questions as text: retrievals, identities, policy
/// checks, tool calls, approvals.
pub fn review_text(lineage: &Lineage) -> String {
    let s = &lineage.summary;
    let mut out = String::new();
    let _ = writeln!(out, "retrievals:");
    none_if_empty(&mut out, &s.retrievals);
    for r in &s.retrievals {
        let _ = writeln!(
            out,
            "  {} from {} [{}] as {}",
            r.step.name,
            r.source.as_deref().unwrap_or("?"),
            r.document_ids.join(", "),
            r.identity.as_deref().unwrap_or("?")
        );
    }
    let _ = writeln!(out, "identities:");
    none_if_empty(&mut out, &s.identities);
    for id in &s.identities {
        let _ = writeln!(
            out,
            "  {} ({}): {} step(s)",
            id.identity, id.kind, id.step_count
        );
    }
    let _ = writeln!(out, "policy checks:");
    none_if_empty(&mut out, &s.policy_checks);
    for p in &s.policy_checks {
        let _ = writeln!(
            out,
            "  {} -> {} as {}",
            p.policy.as_deref().unwrap_or("?"),
            p.verdict.as_str(),
            p.identity.as_deref().unwrap_or("?")
        );
    }
    let _ = writeln!(out, "tool calls:");
    none_if_empty(&mut out, &s.tool_calls);
    for t in &s.tool_calls {
        let verdict = t
            .preceding_verdict
            .as_ref()
            .map(|v| {
                format!(
                    "{}={}",
                    v.policy.as_deref().unwrap_or("?"),
                    v.verdict.as_str()
                )
            })
            .unwrap_or_else(|| "no verdict".into());
        let approval = t
            .preceding_approval
            .as_ref()
            .map(|a| format!(", approval {}", a.state.as_str()))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {}{} as {} [{}] after {verdict}{approval}",
            t.tool,
            if t.writes { " (writes)" } else { "" },
            t.identity.as_deref().unwrap_or("?"),
            t.status.as_str()
        );
    }
    let _ = writeln!(out, "approvals:");
    none_if_empty(&mut out, &s.approvals);
    for a in &s.approvals {
        let _ = writeln!(
            out,
            "  {} by {} gating {}",
            a.state.as_str(),
            a.approver.as_deref().unwrap_or("?"),
            a.gates.as_deref().unwrap_or("?")
        );
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Graphviz DOT: solid parent→child, dashed links, dotted orphans, orange
/// dashed evidence labelled with its key and value; the critical path in bold.
pub fn dot(lineage: &Lineage) -> String {
    let mut out =
        String::from("digraph lineage {\n  rankdir=LR;\n  node [shape=box, fontsize=10];\n");
    for (i, n) in lineage.nodes.iter().enumerate() {
        let kind = n
            .span
            .ai
            .fields
            .ai_kind()
            .map(|k| k.as_str())
            .unwrap_or("span");
        let style = if n.on_critical_path {
            ", style=bold"
        } else {
            ""
        };
        let color = if n.span.status == weft_schemas::StatusCode::Error {
            ", color=red"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  n{i} [label=\"{}\\n{kind} {}\"{style}{color}];",
            escape(&n.span.name),
            duration(n.span.duration_ns())
        );
    }
    let on_path: HashSet<(usize, usize)> = lineage
        .critical_path
        .windows(2)
        .map(|w| (w[0], w[1]))
        .collect();
    for e in &lineage.edges {
        let evidence_label;
        let mut attrs = Vec::new();
        match e.kind {
            EdgeKind::Child => {}
            EdgeKind::Link => attrs.push("style=dashed, label=\"link\""),
            EdgeKind::Orphan => attrs.push("style=dotted, label=\"orphan\""),
            EdgeKind::Evidence => {}
        }
        if let Some(ev) = &e.evidence {
            evidence_label = format!(
                "style=dashed, color=darkorange, label=\"evidence\\n{}={}\"",
                escape(&ev.key),
                escape(&ev.value)
            );
            attrs.push(&evidence_label);
        }
        if on_path.contains(&(e.from, e.to)) {
            attrs.push("penwidth=2");
        }
        let attrs = if attrs.is_empty() {
            String::new()
        } else {
            format!(" [{}]", attrs.join(", "))
        };
        let _ = writeln!(out, "  n{} -> n{}{attrs};", e.from, e.to);
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::tests::span;
    use crate::graph::{BuildOptions, build};

    /// A root with 25 `chat` children (each with one child of its own) and a `tool`.
    fn wide() -> Lineage {
        let mut spans = vec![span(1, 1, None, 0, 1_000)];
        for c in 0..25u8 {
            // The last chat ends last: it is on the critical path.
            let end = if c == 24 { 995 } else { 100 };
            let mut chat = span(1, 10 + c, Some(1), i64::from(c), end);
            chat.name = "chat".into();
            spans.push(chat);
            spans.push(span(1, 100 + c, Some(10 + c), i64::from(c), 50));
        }
        let mut tool = span(1, 200, Some(1), 500, 990);
        tool.name = "tool".into();
        spans.push(tool);
        build(spans, &BuildOptions::default())
    }

    #[test]
    fn wide_parents_fold_same_named_children_but_keep_the_critical_path() {
        let tree = text_tree(&wide(), 10);
        let lines: Vec<&str> = tree.lines().collect();
        assert!(
            lines.contains(&"└─ … 14 more \"chat\" folded (28 span(s) with their subtrees)"),
            "{tree}"
        );
        let shown_chats = lines.iter().filter(|l| l.contains("chat  ")).count();
        assert_eq!(
            shown_chats, 11,
            "ten, plus the one on the critical path: {tree}"
        );
        assert!(tree.contains("├─ * chat"), "{tree}");
        assert!(
            tree.contains("├─ tool"),
            "other names are not folded: {tree}"
        );
        // Header, root, 11 chats with a child each, the tool, the folded line.
        assert_eq!(lines.len(), 1 + 1 + 11 * 2 + 1 + 1, "{tree}");
    }

    #[test]
    fn fold_zero_shows_everything() {
        let tree = text_tree(&wide(), 0);
        assert_eq!(tree.lines().count(), 1 + 1 + 25 * 2 + 1, "{tree}");
        assert!(!tree.contains("folded"));
    }
}
