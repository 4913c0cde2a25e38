//! Live load signals: what each GPU node, each (node, model) and each
//! workflow kind did in the last seconds and minutes, kept up to date as spans
//! are acknowledged — no table scan per poll — and route advice from them.
//!
//! - [`Signals::observe`] takes each acknowledged batch (the collector's
//!   `SpanObserver`) and updates sliding windows ([`window`]) of counters and
//!   DDSketch quantile sketches ([`sketch`]: 1 % relative error), calls in
//!   flight, workflows awaiting their root span, and which node last served
//!   each conversation and prompt prefix.
//! - [`Signals::nodes`], [`Signals::workflows`] and [`Signals::route`] answer
//!   from memory; [`Signals::prometheus`] renders the same numbers as gauges;
//!   [`Signals::subscribe`] wakes a stream when something changed.
//!
//! Memory is bounded by [`SignalsConfig`]'s caps (least recently seen key
//! dropped first); see [`memory_bound_bytes`]. This crate sees Arrow batches
//! of the span schema and hands out plain data: no SQL, no storage, no HTTP.

mod config;
mod observe;
mod prometheus;
mod route;
mod rows;
pub mod sketch;
mod state;
#[cfg(test)]
mod tests;
pub mod window;

pub use config::{MIN_STREAM_INTERVAL, RouteWeights, SignalsConfig, WindowSpec};
pub use route::{Advice, RouteRequest};
pub use rows::{NodeSignals, WorkflowSignals};
pub use state::{Filter, Signals, memory_bound_bytes};

/// What went wrong: the caller's request, or our bug.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A parameter the caller can fix (an unknown window, say).
    #[error("{0}")]
    Invalid(String),
    /// Our bug: a lock poisoned by an earlier panic, a batch of another shape.
    #[error("live signals: {0}")]
    Internal(String),
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}
