//! Durable storage: normalised spans in, Delta tables of Parquet out.
//!
//! The data path, each stage small and testable alone:
//! [`Store::ingest`] (dedup → Arrow batch → `wal` group commit → live buffer)
//! → background flush (`parquet_files`) to day-partitioned Parquet, settling
//! each flushed trace (`settle`: its nested-set structure and link index),
//! committed to Delta Lake tables (`tables`) on local disk or object storage
//! (`storage`); `maintain` runs retention, compaction and vacuum; a
//! [`Follower`] reads what another process writes.
//!
//! Nothing here knows a wire protocol: spans arrive as [`weft_schemas::Span`]s
//! (the OTLP edges in `weft-collector` decode and normalise them), and leave as
//! [`Snapshot`]s of Arrow batches and Parquet files.

mod config;
mod error;
mod file_stats;
mod follower;
mod maintain;
mod metrics;
mod parquet_files;
mod s3;
mod settle;
mod storage;
mod store;
mod table_kind;
mod tables;
mod wal;

pub use config::{EVENTS_DIR, SettleRole, StoreConfig};
pub use error::{Error, ErrorKind, Result};
pub use follower::Follower;
pub use maintain::{MaintainConfig, MaintainReport};
pub use metrics::Metrics;
pub use parquet_files::FileMeta;
pub use storage::RemoteStore;
pub use store::{
    FlushReport, IngestOutcome, Snapshot, SpanObserver, Store, maintain_data_dir, read_snapshot,
};

/// The object store holding a data location's files, for readers that reach
/// them by URL (a worker of a distributed query); `None` for a local directory.
pub fn remote_store(location: &str) -> Result<Option<RemoteStore>> {
    Ok(storage::Storage::open(location)?.remote())
}
