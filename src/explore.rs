//! `weft explore <trace_id>`: the shortcut for `weft tui --data-dir DIR
//! --trace ID` — the terminal explorer opened on one workflow, read from a
//! data directory (a running server may keep writing to it).

use std::path::PathBuf;

use clap::Args;

use crate::client::Target;
use crate::tui::TuiArgs;

#[derive(Args, Debug)]
pub struct ExploreArgs {
    /// Any trace of the workflow (32 hex digits).
    pub trace_id: String,
    /// The data directory to read.
    #[arg(long, default_value = "./weft-data")]
    pub data_dir: PathBuf,
    /// The config file whose query limits and `write_tools` apply.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

pub fn run(args: ExploreArgs) -> anyhow::Result<()> {
    crate::tui::run(TuiArgs {
        target: Target {
            data_dir: Some(args.data_dir),
            config: args.config,
            ..Target::default()
        },
        trace: Some(args.trace_id),
    })
}
