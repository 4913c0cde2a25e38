//! `weft explore <trace_id>`: the terminal lineage explorer on a workflow read
//! from the data directory (a running server may keep writing to it).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use weft_schemas::TraceId;

use crate::lineage::{Way, from_data_dir};

#[derive(Args, Debug)]
pub struct ExploreArgs {
    /// Any trace of the workflow (32 hex digits).
    pub trace_id: String,
    /// The data directory to read.
    #[arg(long, default_value = "./weft-data")]
    pub data_dir: PathBuf,
    /// Link hops across traces to follow (default: all).
    #[arg(long)]
    pub depth: Option<u32>,
    /// Follow links toward causes, effects, or both.
    #[arg(long, value_enum, default_value_t = Way::Both)]
    pub direction: Way,
    /// The config file whose query limits and `write_tools` apply.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

pub fn run(args: ExploreArgs) -> anyhow::Result<()> {
    let trace: TraceId = args
        .trace_id
        .parse()
        .with_context(|| format!("{:?} is not a trace id", args.trace_id))?;
    eprintln!("reconstructing the workflow of trace {trace} ...");
    let settings = crate::config::query_settings_of(args.config.as_deref())?;
    let result = from_data_dir(&args.data_dir, trace, args.direction, args.depth, settings)?;
    weft_tui::run(result.lineage).context("terminal error")
}
