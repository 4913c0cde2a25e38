//! Execution lineage: reconstruct what a workflow did, across traces, from
//! plain spans.
//!
//! A workflow is the connected set of spans reachable through parent→child
//! edges and span links (follows-from), which may cross into other traces — an
//! approval that resumes work in a new trace, a queued job, a retry.
//!
//! - [`LineageSpan`] (`span`): one span as lineage sees it, filled in by
//!   whoever fetched it (the query engine reads them from storage);
//! - [`evidence`]: joins between spans whose trace context was lost, by the
//!   ids both ends carry (tool call, message, approved action);
//! - [`build`] (`graph`): the petgraph graph and its analyses — anomalies,
//!   critical path, self time, effective identity;
//! - [`node`]: the nodes and edges the build produces;
//! - [`summary`]: the five review questions (retrievals, identities, policy
//!   checks, tool calls, approvals) and governance findings;
//! - [`render`]: a compact text tree, the summary as text, and Graphviz DOT;
//! - [`WorkflowSummary`] (`workflow`): a whole workflow in one line, for lists;
//! - [`diff`]: what changed between two runs of one workflow.
//!
//! This crate depends on `weft-schemas` only: no DataFusion, no storage, so it
//! is tested on hand-built span sets and used by the terminal UI as it is.

pub mod diff;
pub mod evidence;
mod graph;
pub mod node;
mod page;
mod parallel;
pub mod render;
mod span;
pub mod summary;
mod units;
mod workflow;

pub use diff::{RunDiff, diff};
pub use evidence::{Evidence, EvidenceRules};
pub use graph::{Anomaly, BuildOptions, Lineage, SETTLE_NS, build, build_nodes};
pub use node::{Edge, EdgeKind, Node};
pub use page::{LineagePage, PAGE_NODES, SUMMARY_ITEMS, SummaryCounts};
pub use span::{LineageSpan, SpanKey, StepAi, StepEvent, TOOL_EFFECT_KEY};
pub use workflow::{Flags, WorkflowSummary};
