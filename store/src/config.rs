//! Where and how spans are stored, with the defaults `weft serve` uses.

use std::path::PathBuf;
use std::time::Duration;

/// Where the event store lives, under a store's data location and WAL.
pub const EVENTS_DIR: &str = "events";

/// Where and how spans are stored.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The local directory: the WAL (unless `wal_dir` says otherwise) and,
    /// unless `location` says otherwise, the tables.
    pub data_dir: PathBuf,
    /// Where the tables live when not in `data_dir`: `s3://bucket/prefix`.
    pub location: Option<String>,
    /// The WAL's directory; `data_dir/wal` by default. Always local.
    pub wal_dir: Option<PathBuf>,
    /// Flush the live buffer to Parquet at least this often.
    pub flush_interval: Duration,
    /// Flush early once the live buffer holds this many spans.
    pub flush_max_rows: usize,
    /// Refuse spans (retry later) while this many wait to be flushed, so a
    /// store whose flushes keep failing (a full disk) stops growing in memory.
    pub max_unflushed_spans: usize,
    /// Bytes that requests being normalised and stored may hold at once (an
    /// estimate of their rows, resource attributes counted once per span).
    /// A request that needs more than all of it is refused as too large; one
    /// that must wait for others is refused as retry-later.
    pub max_inflight_bytes: usize,
    /// Rows per Parquet row group.
    pub row_group_rows: usize,
    /// How long span ids are remembered to drop client retries of acknowledged spans.
    pub dedup_window: Duration,
    /// The most span ids remembered for retry detection, whatever the window:
    /// a retry is recognised if it comes within `dedup_window` and within
    /// half this many later spans.
    pub dedup_max_spans: usize,
    /// How long a settled trace's structure is remembered, so later spans of it
    /// extend that structure; later still, they settle as a new generation.
    pub settle_horizon: Duration,
    /// The most settled traces remembered, whatever the horizon: a trace is
    /// extended if its new spans come within `settle_horizon` and within half
    /// this many later settled traces.
    pub settle_max_traces: usize,
    /// How long spans are kept, by start time; older spans are refused at
    /// ingest and removed by maintenance.
    pub retention: Duration,
    /// How far in the future a span may start (senders' clocks drift); later
    /// ones are refused, so no client creates partitions at will.
    pub max_clock_skew: Duration,
    /// Files no table version needs are deleted once this old.
    pub vacuum_grace: Duration,
    /// Compaction merges files smaller than half of this into files of up to this.
    pub target_file_bytes: u64,
    /// The server runs retention, compaction and vacuum this often.
    pub maintain_interval: Duration,
    /// Model prices: each span's `cost` is computed from them at ingest.
    pub prices: std::sync::Arc<weft_schemas::Prices>,
    /// Which traces this collector settles (writes `span_structure` for):
    /// see [`SettleRole`].
    pub settle: SettleRole,
    /// How often the tables are re-read for other writers' commits (other
    /// collectors, `weft maintain`), flushing or not.
    pub refresh: Duration,
    /// A named failure point to fail at, for fault-injection tests
    /// (`WEFT_FAULT` for the binary): `name` fails the step with an I/O
    /// error, `abort:name` kills the process there.
    #[doc(hidden)]
    pub fault: Option<String>,
}

/// Who writes a trace's structure (`span_structure`) when several collectors
/// share one table location. The structure of a trace must be computed from
/// all its spans at once, so exactly one collector per location may settle
/// traces whose spans arrive at several.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SettleRole {
    /// Settle the spans this collector receives (one collector per location).
    #[default]
    Own,
    /// Settle every writer's spans: its own as it flushes them, and the other
    /// collectors' from their committed span files. One per location.
    Fleet,
    /// Settle nothing: commit spans and links only; the location's `Fleet`
    /// collector settles them.
    None,
}

impl SettleRole {
    /// The config file's spelling.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "own" => Some(Self::Own),
            "fleet" => Some(Self::Fleet),
            "none" => Some(Self::None),
            _ => None,
        }
    }
}

impl StoreConfig {
    /// The tables' location: `location`, or the data directory.
    pub fn tables_location(&self) -> String {
        self.location
            .clone()
            .unwrap_or_else(|| self.data_dir.to_string_lossy().into_owned())
    }

    /// The config of this store's event store, which keeps log records
    /// (GenAI events) as rows of their span: the same settings, its tables
    /// under `events/` of the data location and its WAL under `events/` of
    /// the WAL directory.
    pub fn events(&self) -> StoreConfig {
        let mut events = self.clone();
        events.data_dir = self.data_dir.join(EVENTS_DIR);
        events.location = self
            .location
            .as_ref()
            .map(|l| format!("{}/{EVENTS_DIR}", l.trim_end_matches('/')));
        events.wal_dir = Some(self.wal_dir().join(EVENTS_DIR));
        events
    }

    /// The WAL's directory.
    pub fn wal_dir(&self) -> PathBuf {
        self.wal_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("wal"))
    }

    /// Fails (or aborts the process) at the failure point `name` if asked to.
    pub(crate) fn fault_point(&self, name: &str) -> crate::Result<()> {
        fault_point(self.fault.as_deref(), name)
    }

    /// What maintenance of this store's tables may do.
    pub fn maintenance(&self) -> crate::MaintainConfig {
        crate::MaintainConfig {
            retention: self.retention,
            vacuum_grace: self.vacuum_grace,
            target_file_bytes: self.target_file_bytes,
            settle_horizon: self.settle_horizon,
            row_group_rows: self.row_group_rows,
            fault: self.fault.clone(),
        }
    }
}

impl StoreConfig {
    /// Defaults for a data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            location: None,
            wal_dir: None,
            flush_interval: Duration::from_secs(30),
            flush_max_rows: 200_000,
            max_unflushed_spans: 1_000_000,
            max_inflight_bytes: 512 * 1024 * 1024,
            row_group_rows: 65_536,
            dedup_window: Duration::from_secs(600),
            dedup_max_spans: 4_000_000,
            settle_horizon: Duration::from_secs(3600),
            settle_max_traces: 1_000_000,
            retention: Duration::from_secs(168 * 3600),
            max_clock_skew: Duration::from_secs(15 * 60),
            vacuum_grace: Duration::from_secs(3600),
            target_file_bytes: 64 * 1024 * 1024,
            maintain_interval: Duration::from_secs(600),
            prices: Default::default(),
            settle: SettleRole::Own,
            refresh: Duration::from_secs(2),
            fault: std::env::var("WEFT_FAULT").ok(),
        }
    }
}

/// Fails the step `name` with an I/O error if `fault` names it, or aborts the
/// process there if `fault` is `abort:<name>` (a kill -9 at a known point).
pub(crate) fn fault_point(fault: Option<&str>, name: &str) -> crate::Result<()> {
    match fault {
        Some(f) if f == name => Err(crate::Error::io(
            name,
            std::io::Error::other("injected fault"),
        )),
        Some(f) if f.strip_prefix("abort:") == Some(name) => std::process::abort(),
        _ => Ok(()),
    }
}
