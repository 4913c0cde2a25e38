//! `weft`: the observability and execution-lineage backend for AI systems.
//!
//! This binary is thin: it parses the command line and wires the crates together.
//! - `serve` ([`serve`]): OTLP receivers, storage and the HTTP API;
//! - `sql` ([`sql`]): run SQL against a server or a data directory;
//! - `lineage` ([`lineage`]): reconstruct a workflow across traces;
//! - `tui` ([`tui`]): the terminal explorer, over the API or a data directory;
//! - `explore` ([`explore`]): the explorer opened on one workflow of a data directory;
//! - `maintain` ([`maintain`]): retention, compaction and vacuum, once;
//! - `worker` ([`worker`]): run parts of distributed queries for `--workers`;
//! - `demo` ([`demo`]): send realistic AI-workflow traces through a real OTLP exporter;
//! - `bench` ([`bench`]): measure ingest rate and bytes per span.

mod bench;
mod client;
mod config;
mod cors;
mod data_dir;
mod demo;
mod demo_export;
mod explore;
mod lineage;
mod maintain;
mod pages;
mod routing;
mod serve;
mod sql;
mod tui;
mod worker;
mod workload;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's malloc: ingest allocates and frees many small
/// values on several threads, where glibc's arenas spent a third of the time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "weft",
    version,
    about = "Observability and execution lineage for AI systems"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Receive OTLP traces, store them, and serve SQL and the HTTP API.
    Serve(config::ServeArgs),
    /// Run a read-only SQL query against a server or a data directory.
    Sql(sql::SqlArgs),
    /// Reconstruct the workflow reachable from a trace: tree, summary, anomalies.
    Lineage(lineage::LineageArgs),
    /// The terminal explorer: recent workflows, lineage, SQL and load signals.
    Tui(tui::TuiArgs),
    /// Walk the workflow reachable from a trace in the terminal (`tui --data-dir --trace`).
    Explore(explore::ExploreArgs),
    /// Run retention, compaction and vacuum once over a data directory's tables.
    Maintain(maintain::MaintainArgs),
    /// Run parts of distributed SQL queries for `serve --workers` / `sql --workers`.
    Worker(worker::WorkerArgs),
    /// Send realistic AI-workflow traces to a Weft (or any OTLP) endpoint.
    Demo(demo::DemoArgs),
    /// Measure durable ingest rate and storage size against baselines from the same run.
    Bench(bench::BenchArgs),
}

/// The async runtime every command runs on. Its threads get 16 MiB stacks:
/// DataFusion plans and evaluates expression trees recursively, and the query
/// API admits trees up to a bounded depth (`weft_query`), which must fit.
pub(crate) fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(16 * 1024 * 1024)
        .build()
}

/// Weft's own events at info; the Delta libraries log every snapshot load at
/// info, which would drown a server's log, and the OpenTelemetry SDK (the
/// demo's exporters) its lifecycle, so only their warnings show. A commit that
/// finds another collector's commit first is routine in a fleet (delta-rs
/// warns of each; `weft_commit_conflicts_total` counts them), so only its
/// errors show.
const DEFAULT_LOG: &str = "info,buoyant_kernel=warn,delta_kernel=warn,deltalake_core=warn,\
                           deltalake_core::kernel::transaction=error,\
                           opentelemetry_sdk=warn,opentelemetry-otlp=warn";

/// Logs go to stderr, filtered by `WEFT_LOG` (default [`DEFAULT_LOG`]): one
/// JSON object per line with `WEFT_LOG_FORMAT=json`, otherwise text, coloured
/// only on a terminal and without `NO_COLOR`.
fn init_logging() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEFT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("WEFT_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        builder.json().with_current_span(false).init();
    } else {
        let colour = std::io::stderr().is_terminal()
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        builder.with_ansi(colour).init();
    }
}

/// Writes a command's output to stdout. A reader that went away (`| head`)
/// comes back as a `BrokenPipe` error, which [`main`] ends on quietly.
pub(crate) fn print_out(text: impl AsRef<[u8]>) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_ref())?;
    out.flush()
}

/// An error and its causes, joined by `: ` as `{:#}` does, leaving out a
/// cause whose words the message already holds (libraries often repeat
/// their source's text in their own, an S3 error body twice over).
fn causes(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(text.as_str()) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// Whether the command failed because its stdout was closed.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Ends as a Unix tool does when its reader goes away: killed by SIGPIPE
/// (the shell's status 141), with nothing printed. Rust ignores SIGPIPE, so
/// the default action is put back and the signal raised.
fn closed_stdout() -> std::process::ExitCode {
    let _ = signal_hook::low_level::emulate_default_handler(signal_hook::consts::SIGPIPE);
    std::process::ExitCode::from(128 + 13)
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging();
    pages::small_pages_only();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Sql(args) => sql::run(args),
        Command::Lineage(args) => lineage::run(args),
        Command::Tui(args) => tui::run(args),
        Command::Explore(args) => explore::run(args),
        Command::Maintain(args) => maintain::run(args),
        Command::Worker(args) => worker::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Bench(args) => bench::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => closed_stdout(),
        Err(e) => {
            // One line, the causes joined, no backtrace: these are messages
            // for a person (RUST_BACKTRACE is for panics, which are bugs).
            eprintln!("weft: {}", causes(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_cause_repeated_in_its_error_is_said_once() {
        let body = "<Error><Code>NoSuchBucket</Code></Error>";
        let source = anyhow::anyhow!("404 Not Found: {body}");
        let e = source
            .context(format!("i/o error: 404 Not Found: {body}"))
            .context("cannot open the data location");
        assert_eq!(
            super::causes(&e),
            format!("cannot open the data location: i/o error: 404 Not Found: {body}")
        );
    }
}
