//! The nodes and edges of a workflow graph: what [`crate::build`] produces and
//! [`crate::summary`] and [`crate::render`] read. Kept apart from `graph` so the
//! analyses depend on the data, not on the builder.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::evidence::Evidence;
use crate::span::LineageSpan;

/// How one span reaches another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EdgeKind {
    /// Parent → child in one trace.
    Child,
    /// A missing parent's orphan, attached to its trace's root.
    Orphan,
    /// Linked span → the span holding the link (follows-from), maybe across traces.
    Link,
    /// Cause → effect across traces whose context was lost, joined by an id
    /// both carry ([`crate::evidence`]); never a parent or a link.
    Evidence,
}

impl EdgeKind {
    /// How loosely the edge ties its ends: trace context (0), a span link
    /// the sender recorded (1), evidence Weft inferred (2).
    pub fn distance(self) -> u8 {
        match self {
            EdgeKind::Child | EdgeKind::Orphan => 0,
            EdgeKind::Link => 1,
            EdgeKind::Evidence => 2,
        }
    }
}

/// A directed edge between two nodes (indices into [`Lineage::nodes`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Edge {
    pub from: usize,
    pub to: usize,
    pub kind: EdgeKind,
    /// What an [`EdgeKind::Evidence`] edge rests on.
    /// Boxed: one edge in a million carries it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Box<Evidence>>,
}

/// One node of the workflow graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    #[serde(flatten)]
    pub span: LineageSpan,
    /// Edges from the nearest root (0 for roots).
    pub depth: u32,
    /// The kind of edge that first reached this node, `None` for roots.
    pub reached_by: Option<EdgeKind>,
    /// Duration not covered by its children.
    pub self_time_ns: i64,
    /// Its own identity, else the nearest causal ancestor's (shared with
    /// it, not copied).
    pub effective_identity: Option<Arc<str>>,
    pub on_critical_path: bool,
}

impl Node {
    /// A span not analysed yet: what a loader hands to [`crate::build_nodes`].
    pub fn new(span: LineageSpan) -> Self {
        Self {
            span,
            depth: 0,
            reached_by: None,
            self_time_ns: 0,
            effective_identity: None,
            on_critical_path: false,
        }
    }
}

/// A node is its span, analysed: its span's fields read through it.
impl std::ops::Deref for Node {
    type Target = LineageSpan;

    fn deref(&self) -> &LineageSpan {
        &self.span
    }
}

impl AsRef<LineageSpan> for Node {
    fn as_ref(&self) -> &LineageSpan {
        &self.span
    }
}
