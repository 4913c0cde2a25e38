//! The terminal lineage explorer: walk a reconstructed workflow step by step.
//!
//! Shaped like ratatui's demo2 and gitui:
//! - [`app`]: the state ([`App`]), a closed set of [`Action`]s, and
//!   [`App::update`], the only place state changes;
//! - [`view`]: `impl Widget for &App`, which only draws;
//! - [`terminal`]: the event loop — keys become actions — with the terminal
//!   restored on exit and on panic.
//!
//! It sees plain data ([`weft_query::lineage::graph::Lineage`]), never
//! DataFusion types: whoever calls [`run`] has already fetched the workflow.

pub mod app;
pub mod terminal;
pub mod view;

pub use app::{Action, App, Tab};
pub use terminal::{action_for, run};
