//! Ingest and storage: OTLP in, durable Parquet out.
//!
//! The data path, each stage small and testable alone:
//! `receiver` (gRPC / HTTP edges) → [`otlp::decode`] (bytes → protobuf types) →
//! [`otlp::normalise`] (validate each span, fold resource and scope in, extract AI
//! columns) → [`store::Store::ingest`] (dedup → Arrow batch → [`wal`] group commit →
//! live buffer) → background flush ([`parquet_files`]) to hour-partitioned Parquet,
//! settling each flushed trace ([`settle`]: its nested-set structure and link index).
//!
//! Protobuf types never leave this crate: everything it hands out is
//! [`weft_schemas::Span`], Arrow batches, or JSON.

pub mod config;
pub mod error;
pub mod metrics;
pub mod otlp;
pub mod parquet_files;
pub mod receiver;
pub mod settle;
pub mod store;
pub mod wal;

pub use config::{IngestLimits, StoreConfig};
pub use error::{Error, Result};
pub use metrics::Metrics;
pub use store::{IngestOutcome, Snapshot, Store, read_snapshot};
