//! `weft lineage <trace_id>`: the workflow reachable from a trace — a tree with
//! the AI columns, the critical path, anomalies and the governance summary;
//! `weft lineage diff A B`: what changed between two runs.

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use weft_lineage::render::{DEFAULT_FOLD, dot, summary_text, text_tree};
use weft_query::lineage::Direction;
use weft_query::lineage::Reach;
use weft_query::{LineageResult, QuerySettings};
use weft_schemas::TraceId;

use crate::client::Target;

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct LineageArgs {
    #[command(subcommand)]
    pub compare: Option<Compare>,
    /// Any trace of the workflow (32 hex digits).
    #[arg(required = true)]
    pub trace_id: Option<String>,
    #[command(flatten)]
    pub target: Target,
    /// Link hops across traces to follow (default: all).
    #[arg(long)]
    pub depth: Option<u32>,
    /// Follow links toward causes, effects, or both.
    #[arg(long, value_enum, default_value_t = Way::Both)]
    pub direction: Way,
    /// Output: tree with summary, JSON, or Graphviz DOT.
    #[arg(long, value_enum, default_value_t = Output::Tree)]
    pub format: Output,
    /// In the tree, show at most this many children of one name per parent
    /// and fold the rest into a counted line (0: show everything).
    #[arg(long, default_value_t = DEFAULT_FOLD)]
    pub fold: usize,
}

#[derive(Subcommand, Debug)]
pub enum Compare {
    /// What changed between two runs of a workflow: steps added, removed and
    /// changed (retrievals, identities, verdicts, approvals, models, nodes,
    /// status, critical-path timing), each with both values.
    Diff(DiffArgs),
}

#[derive(Args, Debug)]
pub struct DiffArgs {
    /// Any trace of the first run (the one that worked, say).
    pub a: String,
    /// Any trace of the second run.
    pub b: String,
    #[command(flatten)]
    pub target: Target,
    /// Output: the differences as text, or JSON.
    #[arg(long, value_enum, default_value_t = DiffOutput::Text)]
    pub format: DiffOutput,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DiffOutput {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Way {
    Both,
    Upstream,
    Downstream,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Output {
    Tree,
    Json,
    Dot,
}

impl Way {
    pub fn as_str(self) -> &'static str {
        match self {
            Way::Both => "both",
            Way::Upstream => "upstream",
            Way::Downstream => "downstream",
        }
    }
}

pub fn run(args: LineageArgs) -> anyhow::Result<()> {
    if let Some(Compare::Diff(diff)) = &args.compare {
        return Ok(crate::print_out(run_diff(diff)?)?);
    }
    let id = args.trace_id.as_deref().unwrap_or_default();
    let trace = parse_trace(id)?;
    let text = match &args.target.data_dir {
        Some(dir) => embedded(dir, trace, &args)?,
        None => remote(&args, id)?,
    };
    crate::print_out(text)?;
    Ok(())
}

fn parse_trace(id: &str) -> anyhow::Result<TraceId> {
    id.parse()
        .with_context(|| format!("{id:?} is not a trace id (32 hex digits)"))
}

fn run_diff(args: &DiffArgs) -> anyhow::Result<String> {
    let (a, b) = (parse_trace(&args.a)?, parse_trace(&args.b)?);
    let diff = match &args.target.data_dir {
        Some(dir) => {
            let settings = crate::config::query_settings_of(args.target.config.as_deref(), None)?;
            crate::runtime()?.block_on(async {
                let engine = crate::data_dir::engine(dir, settings).await?;
                anyhow::Ok(engine.lineage_diff(&a, &b).await?)
            })?
        }
        None => {
            let path = format!("/api/lineage/diff?a={}&b={}", a.to_hex(), b.to_hex());
            let answer = args.target.client()?.get(&path, "run diff")?;
            serde_json::from_slice(&answer.body).context("the run diff answer is not its JSON")?
        }
    };
    Ok(match args.format {
        DiffOutput::Text => weft_lineage::diff::diff_text(&diff),
        DiffOutput::Json => serde_json::to_string_pretty(&diff)? + "\n",
    })
}

/// The workflow reachable from `trace`, read from a data directory (beside a
/// running server or without one).
pub fn from_data_dir(
    dir: &std::path::Path,
    trace: TraceId,
    direction: Way,
    depth: Option<u32>,
    settings: QuerySettings,
) -> anyhow::Result<LineageResult> {
    let runtime = crate::runtime()?;
    runtime.block_on(async {
        let engine = crate::data_dir::engine(dir, settings).await?;
        let reach = Reach {
            direction: Direction::parse(direction.as_str()).unwrap_or_default(),
            max_depth: depth,
            ..Reach::default()
        };
        let result = engine.lineage(&trace, reach).await?;
        // The engine is dropped here: the result is ours alone.
        Ok(std::sync::Arc::unwrap_or_clone(result))
    })
}

fn embedded(dir: &std::path::Path, trace: TraceId, args: &LineageArgs) -> anyhow::Result<String> {
    let settings = crate::config::query_settings_of(args.target.config.as_deref(), None)?;
    let result = from_data_dir(dir, trace, args.direction, args.depth, settings)?;
    Ok(match args.format {
        Output::Tree => format!(
            "{}\n{}",
            text_tree(&result.lineage, args.fold),
            summary_text(&result.lineage)
        ),
        Output::Json => serde_json::to_string_pretty(&result.lineage)? + "\n",
        Output::Dot => dot(&result.lineage),
    })
}

fn remote(args: &LineageArgs, trace_id: &str) -> anyhow::Result<String> {
    let suffix = match args.format {
        Output::Tree => "/tree",
        Output::Json => "",
        Output::Dot => "/dot",
    };
    let mut path = format!(
        "/api/lineage/{}{suffix}?direction={}",
        trace_id,
        args.direction.as_str()
    );
    if let Some(d) = args.depth {
        path.push_str(&format!("&depth={d}"));
    }
    if matches!(args.format, Output::Tree) {
        path.push_str(&format!("&fold={}", args.fold));
    }
    let answer = args.target.client()?.get(&path, "lineage")?;
    String::from_utf8(answer.body).context("the lineage answer is not UTF-8")
}
