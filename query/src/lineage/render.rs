//! Lineage for people: a compact text tree with the summary, and Graphviz DOT.

use std::collections::HashSet;
use std::fmt::Write;

use super::graph::{Anomaly, EdgeKind, Lineage, Node};

/// `1.25s`, `85ms`, `120µs`, `900ns`.
pub fn duration(ns: i64) -> String {
    let n = ns.unsigned_abs();
    let sign = if ns < 0 { "-" } else { "" };
    if n >= 1_000_000_000 {
        format!("{sign}{:.2}s", n as f64 / 1e9)
    } else if n >= 1_000_000 {
        format!("{sign}{}ms", n / 1_000_000)
    } else if n >= 1_000 {
        format!("{sign}{}µs", n / 1_000)
    } else {
        format!("{sign}{n}ns")
    }
}

fn details(node: &Node) -> String {
    let s = &node.span;
    let ai = &s.ai;
    let mut parts: Vec<String> = Vec::new();
    if let Some(k) = ai.ai_kind {
        parts.push(format!("[{}]", k.as_str()));
    }
    parts.push(duration(s.duration_ns()));
    if let Some(m) = &ai.model {
        parts.push(m.clone());
    }
    if let Some(n) = &ai.node {
        let kv = match ai.kv_cache_hit {
            Some(true) => " kv=hit",
            Some(false) => " kv=miss",
            None => "",
        };
        parts.push(format!("on {n}{kv}"));
    }
    if let (Some(i), Some(o)) = (ai.input_tokens, ai.output_tokens) {
        parts.push(format!("tokens={i}/{o}"));
    }
    if let Some(src) = &ai.retrieval_source {
        parts.push(format!("source={src} docs={}", ai.document_ids.len()));
    }
    if let Some(t) = &ai.tool_name {
        let effect = ai
            .tool_effect
            .as_deref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        parts.push(format!("tool={t}{effect}"));
    }
    if let Some(v) = ai.policy_verdict {
        parts.push(format!(
            "{}={}",
            ai.policy_name.as_deref().unwrap_or("policy"),
            v.as_str()
        ));
    }
    if let Some(a) = ai.approval_state {
        let by = ai
            .approver
            .as_deref()
            .map(|p| format!(" by {p}"))
            .unwrap_or_default();
        parts.push(format!("approval={}{by}", a.as_str()));
    }
    if let Some(id) = &ai.identity {
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

/// The workflow as an indented tree: `*` marks the critical path, `⇢` a link
/// (follows-from, possibly into another trace), `?` an orphan attached to its
/// trace's root. A span reached twice is printed once.
pub fn text_tree(lineage: &Lineage) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "workflow: {} span(s) in {} trace(s); * critical path, ⇢ link, ? orphan",
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
    let mut printed = HashSet::new();
    let mut current_trace = None;
    for r in roots {
        walk(
            lineage,
            &children,
            r,
            None,
            "",
            true,
            &mut printed,
            &mut current_trace,
            &mut out,
        );
    }
    // Nodes inside a cycle with no root.
    for i in 0..lineage.nodes.len() {
        if !printed.contains(&i) {
            walk(
                lineage,
                &children,
                i,
                None,
                "",
                true,
                &mut printed,
                &mut current_trace,
                &mut out,
            );
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn walk(
    lineage: &Lineage,
    children: &[Vec<(usize, EdgeKind)>],
    i: usize,
    via: Option<EdgeKind>,
    prefix: &str,
    last: bool,
    printed: &mut HashSet<usize>,
    current_trace: &mut Option<weft_schemas::TraceId>,
    out: &mut String,
) {
    let node = &lineage.nodes[i];
    let branch = match (via, last) {
        (None, _) => "",
        (Some(_), true) => "└─ ",
        (Some(_), false) => "├─ ",
    };
    let mark = match via {
        Some(EdgeKind::Link) => "⇢ ",
        Some(EdgeKind::Orphan) => "? ",
        _ => "",
    };
    let star = if node.on_critical_path { "* " } else { "" };
    let trace = if *current_trace != Some(node.span.trace_id) {
        *current_trace = Some(node.span.trace_id);
        format!("  (trace {})", node.span.trace_id)
    } else {
        String::new()
    };
    if !printed.insert(i) {
        let _ = writeln!(
            out,
            "{prefix}{branch}{mark}{} (shown above)",
            node.span.name
        );
        return;
    }
    let _ = writeln!(
        out,
        "{prefix}{branch}{mark}{star}{}  {}{trace}",
        node.span.name,
        details(node)
    );
    let child_prefix = match via {
        None => prefix.to_owned(),
        Some(_) => format!("{prefix}{}", if last { "   " } else { "│  " }),
    };
    let kids = &children[i];
    for (k, (c, kind)) in kids.iter().enumerate() {
        walk(
            lineage,
            children,
            *c,
            Some(*kind),
            &child_prefix,
            k + 1 == kids.len(),
            printed,
            current_trace,
            out,
        );
    }
}

/// The summary and anomalies as text, for `weft lineage` and snapshot tests.
pub fn summary_text(lineage: &Lineage) -> String {
    let s = &lineage.summary;
    let mut out = String::new();
    let _ = writeln!(out, "retrievals:");
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
    for id in &s.identities {
        let _ = writeln!(
            out,
            "  {} ({}): {} step(s)",
            id.identity,
            id.kind,
            id.steps.len()
        );
    }
    let _ = writeln!(out, "policy checks:");
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
    for a in &s.approvals {
        let _ = writeln!(
            out,
            "  {} by {} gating {}",
            a.state.as_str(),
            a.approver.as_deref().unwrap_or("?"),
            a.gates.as_deref().unwrap_or("?")
        );
    }
    let _ = writeln!(out, "findings:");
    for f in &s.findings {
        let _ = writeln!(out, "  {}: {}", f.rule, f.message);
    }
    let _ = writeln!(out, "anomalies:");
    for a in &lineage.anomalies {
        let text = match a {
            Anomaly::MissingParent {
                span_id,
                parent_span_id,
                ..
            } => {
                format!("span {span_id} names missing parent {parent_span_id}")
            }
            Anomaly::DuplicateSpan {
                span_id, copies, ..
            } => format!("span {span_id} arrived {copies} times"),
            Anomaly::Cycle { spans } => format!("cycle through {}", spans.join(" → ")),
            Anomaly::ClockSkew {
                span_id,
                starts_before_parent_ns,
                ..
            } => {
                format!(
                    "span {span_id} starts {} before its parent",
                    duration(*starts_before_parent_ns)
                )
            }
            Anomaly::DanglingLink {
                span_id,
                linked_span_id,
                ..
            } => {
                format!("span {span_id} links to missing span {linked_span_id}")
            }
            Anomaly::NoRoot { trace_id } => format!("trace {trace_id} has no root span"),
            Anomaly::MayStillBeArriving { trace_id, .. } => {
                format!("trace {trace_id} may still be arriving")
            }
        };
        let _ = writeln!(out, "  {text}");
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Graphviz DOT: solid parent→child, dashed links, dotted orphans; the
/// critical path in bold.
pub fn dot(lineage: &Lineage) -> String {
    let mut out =
        String::from("digraph lineage {\n  rankdir=LR;\n  node [shape=box, fontsize=10];\n");
    for (i, n) in lineage.nodes.iter().enumerate() {
        let kind = n.span.ai.ai_kind.map(|k| k.as_str()).unwrap_or("span");
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
        let mut attrs = Vec::new();
        match e.kind {
            EdgeKind::Child => {}
            EdgeKind::Link => attrs.push("style=dashed, label=\"link\""),
            EdgeKind::Orphan => attrs.push("style=dotted, label=\"orphan\""),
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
