//! The terminal lineage explorer: walk a reconstructed workflow step by step.
//!
//! Shaped like ratatui's demo2 and gitui:
//! - [`app`]: the state ([`App`]), a closed set of [`Action`]s, and
//!   [`App::update`], the only place state changes;
//! - [`view`]: `impl Widget for &App`, which only draws;
//! - [`terminal`]: the event loop — keys become actions — with the terminal
//!   restored on exit and on panic.
//!
//! It sees plain data ([`weft_lineage::Lineage`]), never
//! DataFusion types: whoever calls [`run`] has already fetched the workflow.

pub mod app;
pub mod terminal;
pub mod view;

pub use app::{Action, App, Tab};
pub use terminal::{action_for, run};

#[cfg(test)]
mod tests {
    /// The explorer gets a workflow someone else fetched: it must not link the
    /// query engine (and with it DataFusion) or the store.
    #[test]
    fn depends_on_no_query_engine() {
        let manifest = include_str!("../Cargo.toml");
        let dependencies = manifest
            .split("[dependencies]")
            .nth(1)
            .and_then(|rest| rest.split("\n[").next())
            .unwrap_or_default();
        for forbidden in ["weft-query", "weft-collector", "datafusion"] {
            assert!(
                !dependencies.contains(forbidden),
                "weft-tui depends on {forbidden}"
            );
        }
        assert!(dependencies.contains("weft-lineage"));
    }
}
