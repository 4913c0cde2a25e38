//! Limits and storage settings, with the defaults `weft serve` uses.

use std::path::PathBuf;
use std::time::Duration;

/// Size limits applied at the OTLP edges.
#[derive(Debug, Clone, Copy)]
pub struct IngestLimits {
    /// Largest gRPC message accepted (decompressed); larger gets RESOURCE_EXHAUSTED.
    pub max_grpc_message_bytes: usize,
    /// Largest HTTP body accepted, enforced on the wire and while decompressing; larger gets 413.
    pub max_http_body_bytes: usize,
}

impl Default for IngestLimits {
    fn default() -> Self {
        Self {
            max_grpc_message_bytes: 4 * 1024 * 1024,
            max_http_body_bytes: 20 * 1024 * 1024,
        }
    }
}

/// Where and how spans are stored.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub data_dir: PathBuf,
    /// Flush the live buffer to Parquet at least this often.
    pub flush_interval: Duration,
    /// Flush early once the live buffer holds this many spans.
    pub flush_max_rows: usize,
    /// Rows per Parquet row group.
    pub row_group_rows: usize,
    /// How long span ids are remembered to drop client retries of acknowledged spans.
    pub dedup_window: Duration,
    /// How long a settled trace's structure is remembered, so later spans of it
    /// extend that structure; later still, they settle as a new generation.
    pub settle_horizon: Duration,
}

impl StoreConfig {
    /// Defaults for a data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            flush_interval: Duration::from_secs(30),
            flush_max_rows: 200_000,
            row_group_rows: 65_536,
            dedup_window: Duration::from_secs(600),
            settle_horizon: Duration::from_secs(3600),
        }
    }
}
