//! `weft sql`: one read-only query, against a running server or a data directory.

use std::io::Cursor;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use weft_query::QueryResult;
use weft_query::QuerySettings;
use weft_query::output::{OutputFormat, render};

use crate::client::{Client, Target};
use crate::config::query_settings_of;

#[derive(Args, Debug)]
pub struct SqlArgs {
    /// The SQL, e.g. "SELECT ai_kind, count(*) FROM spans GROUP BY 1"; it
    /// may start with a `-- comment` (or any `-`): it is never taken for an option.
    #[arg(allow_hyphen_values = true)]
    pub query: String,
    #[command(flatten)]
    pub target: Target,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// With --data-dir: run the query over these `weft worker`s
    /// (`host:port,host:port`); WEFT_WORKER_TOKEN, if set, is sent to them.
    #[arg(long, requires = "data_dir")]
    pub workers: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

pub fn run(args: SqlArgs) -> anyhow::Result<()> {
    let out = match &args.target.data_dir {
        Some(dir) => {
            let settings =
                query_settings_of(args.target.config.as_deref(), args.workers.as_deref())?;
            embedded(dir.clone(), &args.query, args.format, settings)?
        }
        None => remote(&args.target.client()?, &args.query, args.format)?,
    };
    crate::print_out(&out)?;
    if !out.ends_with(b"\n") {
        crate::print_out(b"\n")?;
    }
    Ok(())
}

fn output_format(format: Format) -> OutputFormat {
    match format {
        Format::Table => OutputFormat::Table,
        Format::Csv => OutputFormat::Csv,
        Format::Json => OutputFormat::Json,
    }
}

fn embedded(
    dir: PathBuf,
    sql: &str,
    format: Format,
    settings: QuerySettings,
) -> anyhow::Result<Vec<u8>> {
    let runtime = crate::runtime()?;
    runtime.block_on(async {
        let engine = crate::data_dir::engine(&dir, settings).await?;
        let result = engine.sql(sql).await?;
        if let Some(why) = &result.truncated {
            eprintln!("weft sql: the answer is cut short: {why}");
        }
        Ok(render(&result, output_format(format))?)
    })
}

fn remote(client: &Client, sql: &str, format: Format) -> anyhow::Result<Vec<u8>> {
    // Tables are drawn here from Arrow, so the types survive the trip.
    let accept = match format {
        Format::Table => "application/vnd.apache.arrow.stream",
        Format::Csv => "text/csv",
        Format::Json => "application/json",
    };
    let answer = client.post_text("/api/sql", accept, sql, "query")?;
    if let Some(why) = &answer.truncated {
        eprintln!("weft sql: the answer is cut short: {why}");
    }
    let body = answer.body;
    if let Format::Table = format {
        let reader = arrow::ipc::reader::StreamReader::try_new(Cursor::new(body), None)?;
        let schema = reader.schema();
        let batches = reader.collect::<Result<Vec<_>, _>>()?;
        return Ok(render(
            &QueryResult {
                schema,
                batches,
                truncated: None,
            },
            OutputFormat::Table,
        )?);
    }
    Ok(body)
}
