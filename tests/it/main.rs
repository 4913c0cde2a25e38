//! Weft's integration tests, one binary (each module once its own binary:
//! linking the test harness and its clients once, not two dozen times).
//! Most start the real `weft serve` on ephemeral loopback ports
//! ([`common::Server`]); fixtures and sqllogictest files stay in `tests/`.

mod common;

mod ai_columns;
mod auth;
mod bad_input;
mod conversations;
mod crate_edges;
mod distributed;
mod durability;
mod durability_limits;
mod e2e_exporters;
mod events;
mod faults;
mod fleet;
mod flight;
mod fuzz;
mod hostile_input;
mod lineage_agree;
mod lineage_diff;
mod lineage_e2e;
mod lineage_evidence;
mod lineage_paging;
mod listeners;
mod postgres;
mod process;
mod readme;
mod s3;
mod settled;
mod signals;
mod sql_cli;
mod sql_logic;
mod tables;
mod tempo;
mod tui;
mod upgrade;
