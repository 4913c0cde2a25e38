//! `weft maintain`: retention, compaction and vacuum, once, for operators and
//! tests. The server runs the same on a schedule (`maintain_interval_secs`).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::config::{ServeArgs, ServeConfig};

#[derive(Args, Debug)]
pub struct MaintainArgs {
    /// The data directory (default ./weft-data, or the config file's).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The server's TOML config file: its retention and maintenance settings apply.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Keep spans this many hours by start time (default 168).
    #[arg(long)]
    pub retention_hours: Option<f64>,
    /// Delete unreferenced files once they are this many seconds old (default 3600).
    #[arg(long)]
    pub vacuum_grace_secs: Option<f64>,
}

pub fn run(args: MaintainArgs) -> anyhow::Result<()> {
    let serve = ServeArgs {
        data_dir: args.data_dir,
        config: args.config,
        retention_hours: args.retention_hours,
        vacuum_grace_secs: args.vacuum_grace_secs,
        // Maintenance needs no WAL, wherever the tables are.
        no_ingest: true,
        ..ServeArgs::default()
    };
    let store = ServeConfig::resolve(&serve)?.store;
    let runtime = crate::runtime()?;
    let report = runtime
        .block_on(weft_store::maintain_data_dir(&store))
        .with_context(|| format!("cannot maintain {}", store.tables_location()))?;
    crate::print_out(format!(
        "expired_files={} compacted_files={} compacted_into={} superseded_rows={} vacuumed_files={} log_entries_removed={}\n",
        report.expired_files,
        report.compacted_files,
        report.compacted_into,
        report.superseded_rows,
        report.vacuumed_files,
        report.log_entries_removed
    ))?;
    Ok(())
}
