//! `weft tui`: the terminal explorer — recent workflows, a workflow's lineage
//! with its waterfall and details, SQL, and live load signals.
//!
//! Shaped like ratatui's demo2 and gitui:
//! - [`app`]: the state ([`App`]), a closed set of messages ([`Msg`]: a key's
//!   [`Action`], an answer, a tick) and [`App::update`], the only place state
//!   changes; each view's own state lives in [`workflows`], [`conversation`],
//!   [`explorer`], [`sql`] and [`signals`];
//! - [`action`]: the screens and the actions keys ask for (below `app` and `keys`);
//! - [`view`]: `impl Widget for &App`, which only draws;
//! - [`keys`]: the key tables, read to map keys and to draw the help;
//! - [`data`]: what is asked ([`Request`]) and answered ([`Fetched`]), as plain
//!   data, and the [`Source`] trait the `weft` binary implements over HTTP
//!   and over a data directory;
//! - [`fetch`]: the background thread that asks the source, so the screen
//!   never waits on the network;
//! - [`terminal`]: the event loop, with the terminal restored on exit and on
//!   panic.
//!
//! It sees plain data ([`weft_lineage`] values, strings), never DataFusion,
//! Arrow or HTTP types.

pub mod action;
pub mod app;
pub mod conversation;
pub mod data;
pub mod explorer;
pub mod fetch;
pub mod keys;
pub mod signals;
pub mod sql;
pub mod terminal;
pub mod view;
pub mod workflows;

pub use app::{Action, App, Msg, View};
pub use data::{Failure, Fetched, Listed, NodeSignal, Request, Source, SpanDetail, Table};
pub use fetch::Fetcher;
pub use terminal::run;

#[cfg(test)]
mod tests {
    /// The explorer gets data someone else fetched: it must not link the
    /// query engine (and with it DataFusion), the store, or an HTTP client.
    #[test]
    fn depends_on_no_query_engine() {
        let manifest = include_str!("../Cargo.toml");
        let dependencies = manifest
            .split("[dependencies]")
            .nth(1)
            .and_then(|rest| rest.split("\n[").next())
            .unwrap_or_default();
        for forbidden in [
            "weft-query",
            "weft-collector",
            "weft-store",
            "datafusion",
            "arrow",
            "reqwest",
        ] {
            assert!(
                !dependencies.contains(forbidden),
                "weft-tui depends on {forbidden}"
            );
        }
        assert!(dependencies.contains("weft-lineage"));
    }
}
