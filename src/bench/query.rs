//! `weft bench --only query`: what a user of `weft serve`'s HTTP API waits
//! for, each beside a baseline on the same stored files in the same run.
//!
//! - `POST /api/sql` for the README's questions and typical group-bys,
//!   beside DuckDB (the `duckdb` Python package) reading the same Parquet
//!   files; both answers are fetched whole and their row counts compared.
//! - `GET /api/traces/{id}` beside the same lookup through `POST /api/sql`.
//! - Bytes per span: the span files per column, and the whole data location.
//!
//! The store is filled as `weft bench --only storage` fills it (the demo
//! workload, flushes of 100,000 spans, one maintenance run), then `weft serve`
//! opens it as a separate process, so every figure includes what the server
//! adds: HTTP, planning, the table snapshot, encoding the answer.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use weft_schemas::TraceId;
use weft_store::read_snapshot;

use super::receivers::start_weft;
use super::storage::{fill, ms, percentile};

/// Runs of each query after one warm-up, both engines.
const RUNS: usize = 5;
/// Trace-by-id lookups, each way.
const LOOKUPS: usize = 100;

/// The questions, as both engines accept them (ids are not touched: Weft
/// shows them as hex, DuckDB would read the stored bytes).
pub(super) const QUERIES: &[(&str, &str)] = &[
    (
        "README: calls and TTFT per node and cache state",
        "SELECT node, kv_cache_hit, count(*) AS calls, avg(time_to_first_token_ns)/1e6 AS ttft_ms \
         FROM spans WHERE ai_kind = 'llm' GROUP BY 1, 2 ORDER BY 1, 2",
    ),
    (
        "README: spans per AI kind",
        "SELECT ai_kind, count(*) AS n FROM spans GROUP BY 1 ORDER BY 1",
    ),
    (
        "README: tokens and hit rate per node, last hour",
        "SELECT node, sum(input_tokens) AS input, sum(output_tokens) AS output, \
         avg(CASE WHEN kv_cache_hit THEN 1.0 ELSE 0.0 END) AS hit_rate \
         FROM spans WHERE ai_kind = 'llm' AND start_time > now() - INTERVAL '1 hour' \
         GROUP BY node ORDER BY node",
    ),
    (
        "slowest operations per service",
        "SELECT service_name, name, count(*) AS n, avg(duration_ns) AS mean_ns, \
         max(duration_ns) AS max_ns FROM spans GROUP BY 1, 2 ORDER BY 4 DESC, 1, 2 LIMIT 20",
    ),
    (
        "spans and errors per minute",
        "SELECT date_trunc('minute', start_time) AS minute, count(*) AS n, \
         sum(CASE WHEN status_code = 'error' THEN 1 ELSE 0 END) AS errors \
         FROM spans GROUP BY 1 ORDER BY 1",
    ),
    (
        "tokens per model and tool",
        "SELECT gen_ai_model, tool_name, count(*) AS n, sum(input_tokens + output_tokens) AS tokens \
         FROM spans GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2",
    ),
];

/// DuckDB's side: reads `{"files": [...], "queries": [...], "runs": N}` on
/// stdin, prints `[{"ms": [...], "rows": N}, ...]`.
const DUCKDB_SCRIPT: &str = r#"
import json, sys, time
import duckdb
cfg = json.load(sys.stdin)
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")  # stdout carries the JSON
files = ", ".join("'" + f.replace("'", "''") + "'" for f in cfg["files"])
con.execute("CREATE VIEW spans AS SELECT * FROM read_parquet([" + files + "])")
out = []
for q in cfg["queries"]:
    rows = len(con.execute(q).fetchall())
    times = []
    for _ in range(cfg["runs"]):
        t = time.perf_counter()
        rows = len(con.execute(q).fetchall())
        times.append((time.perf_counter() - t) * 1e3)
    out.append({"ms": times, "rows": rows})
print(json.dumps({"version": duckdb.__version__, "threads": con.execute("SELECT current_setting('threads')").fetchone()[0], "results": out}))
"#;

pub fn run(total: usize) -> anyhow::Result<()> {
    let temp = super::tempfile_dir()?;
    let dir = temp.path().to_path_buf();
    let runtime = crate::runtime()?;
    let (traces, stored, _) = runtime.block_on(fill(&dir, total, 5))?;
    let snapshot = runtime.block_on(read_snapshot(&dir.to_string_lossy()))?;
    let files: Vec<String> = snapshot.files.iter().map(|f| f.location.clone()).collect();
    storage_report(&dir, &files, stored)?;

    eprintln!("starting weft serve on the stored tables ...");
    let server = start_weft(Some(dir.clone()), None)?;
    let api = server.api.context("weft serve announced no API address")?;
    let client = reqwest::Client::new();
    let rss_before = server.rss_bytes();

    eprintln!("DuckDB on the same {} span files ...", files.len());
    let duck = duckdb(&files)?;
    eprintln!("POST /api/sql ...");
    let mut weft = Vec::new();
    for (_, sql) in QUERIES {
        weft.push(runtime.block_on(timed_sql(&client, api, sql))?);
    }
    println!(
        "\n## SQL over {stored} spans: POST /api/sql beside DuckDB {} on the same {} files \
         (median of {RUNS} after a warm-up; DuckDB threads: {})\n",
        duck.version,
        files.len(),
        duck.threads
    );
    println!("| query | DuckDB ms | /api/sql ms | ratio | rows |");
    println!("|---|---:|---:|---:|---:|");
    let mut log_sum = 0.0;
    for (((name, _), (weft_times, weft_rows)), d) in QUERIES.iter().zip(&weft).zip(&duck.results) {
        ensure!(
            *weft_rows == d.rows,
            "{name}: /api/sql answered {weft_rows} rows, DuckDB {}",
            d.rows
        );
        let (w, b) = (median(weft_times), median_ms(&d.ms));
        let ratio = w.as_secs_f64() / b.as_secs_f64().max(f64::MIN_POSITIVE);
        log_sum += ratio.ln();
        println!(
            "| {name} | {} | {} | {ratio:.2} | {weft_rows} |",
            ms(b),
            ms(w)
        );
    }
    println!(
        "\nGeometric mean of the ratios: **{:.2}** (the target is 1.2).",
        (log_sum / QUERIES.len() as f64).exp()
    );

    eprintln!("EXPLAIN ANALYZE of each query ...");
    println!("\n### Where each query's time goes (EXPLAIN ANALYZE through /api/sql)\n");
    for (name, sql) in QUERIES {
        let plan = runtime.block_on(explain_analyze(&client, api, sql))?;
        println!("{name}:\n\n```text\n{plan}```\n");
    }

    eprintln!("trace by id, {LOOKUPS} lookups each way ...");
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut picked = traces;
    picked.shuffle(&mut rng);
    picked.truncate(LOOKUPS);
    let [api_times, sql_times, narrow_times] = runtime.block_on(lookups(&client, api, &picked))?;
    let s = percentile(&sql_times, 0.5);
    let ratio =
        |t: &[Duration]| percentile(t, 0.5).as_secs_f64() / s.as_secs_f64().max(f64::MIN_POSITIVE);
    println!(
        "\n## Trace by id over {stored} spans, over HTTP\n\n\
         | lookup | p50 ms | p99 ms | ratio of p50s |\n|---|---:|---:|---:|\n\
         | baseline: POST /api/sql `SELECT * FROM spans WHERE trace_id = '…' ORDER BY start_time` | {} | {} | 1.00 |\n\
         | GET /api/traces/{{id}} (OTLP JSON, with events) | {} | {} | {:.2} |\n\
         | POST /api/sql `SELECT span_id, name, start_time, duration_ns … WHERE trace_id = '…'` (four columns) | {} | {} | {:.2} |",
        ms(s),
        ms(percentile(&sql_times, 0.99)),
        ms(percentile(&api_times, 0.5)),
        ms(percentile(&api_times, 0.99)),
        ratio(&api_times),
        ms(percentile(&narrow_times, 0.5)),
        ms(percentile(&narrow_times, 0.99)),
        ratio(&narrow_times),
    );
    let mib = |b: Option<u64>| b.map_or("?".into(), |b| format!("{:.0}", b as f64 / 1048576.0));
    println!(
        "\nweft serve's resident memory: {} MiB after opening the tables, {} MiB after the queries.",
        mib(rss_before),
        mib(server.rss_bytes())
    );
    Ok(())
}

/// Bytes per span in the span files, per top-level column (from the
/// Parquet footers), and in the whole data location.
fn storage_report(dir: &Path, files: &[String], spans: usize) -> anyhow::Result<()> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let mut per_column: BTreeMap<String, i64> = BTreeMap::new();
    let mut file_bytes = 0u64;
    for file in files {
        let f = std::fs::File::open(file).with_context(|| format!("cannot open {file}"))?;
        file_bytes += f.metadata()?.len();
        let reader = SerializedFileReader::new(f)?;
        for group in reader.metadata().row_groups() {
            for column in group.columns() {
                let top = column.column_path().parts()[0].clone();
                *per_column.entry(top).or_default() += column.compressed_size();
            }
        }
    }
    let mut by_dir: BTreeMap<String, u64> = BTreeMap::new();
    for (path, bytes) in walk(dir)? {
        let top = path
            .strip_prefix(dir)
            .ok()
            .and_then(|p| p.components().next())
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .unwrap_or_default();
        *by_dir.entry(top).or_default() += bytes;
    }
    let per_span = |b: f64| b / spans.max(1) as f64;
    let whole: u64 = by_dir.values().sum();
    println!(
        "\n## Bytes per span after compaction ({spans} spans)\n\n\
         Span files: **{:.1}** bytes per span (target 35); the whole data location: **{:.1}** \
         (target 50).\n\n| in the data location | bytes/span |\n|---|---:|",
        per_span(file_bytes as f64),
        per_span(whole as f64)
    );
    for (name, bytes) in &by_dir {
        println!("| {name}/ | {:.1} |", per_span(*bytes as f64));
    }
    let mut columns: Vec<_> = per_column.into_iter().collect();
    columns.sort_by_key(|(_, b)| std::cmp::Reverse(*b));
    println!("\n| span file column (compressed) | bytes/span | share |\n|---|---:|---:|");
    let sum: i64 = columns.iter().map(|(_, b)| b).sum();
    for (name, bytes) in columns.iter().filter(|(_, b)| *b * 200 >= sum) {
        println!(
            "| {name} | {:.2} | {:.1}% |",
            per_span(*bytes as f64),
            100.0 * *bytes as f64 / sum.max(1) as f64
        );
    }
    let rest: i64 = columns
        .iter()
        .filter(|(_, b)| *b * 200 < sum)
        .map(|(_, b)| b)
        .sum();
    println!(
        "| the other {} columns (each under 0.5%) | {:.2} | {:.1}% |",
        columns.iter().filter(|(_, b)| *b * 200 < sum).count(),
        per_span(rest as f64),
        100.0 * rest as f64 / sum.max(1) as f64
    );
    println!(
        "| (footers, page headers and indexes) | {:.2} | |",
        per_span(file_bytes as f64 - sum as f64)
    );
    Ok(())
}

/// Every file under `dir` with its size (no symlinks followed).
fn walk(dir: &Path) -> anyhow::Result<Vec<(PathBuf, u64)>> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                todo.push(entry.path());
            } else {
                out.push((entry.path(), meta.len()));
            }
        }
    }
    Ok(out)
}

struct Duck {
    version: String,
    threads: serde_json::Value,
    results: Vec<DuckResult>,
}

#[derive(serde::Deserialize)]
struct DuckResult {
    ms: Vec<f64>,
    rows: usize,
}

fn duckdb(files: &[String]) -> anyhow::Result<Duck> {
    let input = serde_json::json!({
        "files": files,
        "queries": QUERIES.iter().map(|(_, q)| *q).collect::<Vec<_>>(),
        "runs": RUNS,
    });
    let mut child = Command::new("python3")
        .args(["-c", DUCKDB_SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot run python3 (the DuckDB baseline needs `pip install duckdb`)")?;
    serde_json::to_writer(child.stdin.take().context("no stdin")?, &input)?;
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "the DuckDB baseline failed ({}); it needs `pip install duckdb`",
        out.status
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok(Duck {
        version: v["version"].as_str().unwrap_or("?").to_owned(),
        threads: v["threads"].clone(),
        results: serde_json::from_value(v["results"].clone())?,
    })
}

/// `RUNS` timings of one query through `/api/sql` (after a warm-up), and
/// the rows of its JSON answer.
pub(super) async fn timed_sql(
    client: &reqwest::Client,
    api: SocketAddr,
    sql: &str,
) -> anyhow::Result<(Vec<Duration>, usize)> {
    let mut rows = sql_rows(client, api, sql).await?.1;
    let mut times = Vec::new();
    for _ in 0..RUNS {
        let (t, n) = sql_rows(client, api, sql).await?;
        times.push(t);
        rows = n;
    }
    Ok((times, rows))
}

async fn sql_rows(
    client: &reqwest::Client,
    api: SocketAddr,
    sql: &str,
) -> anyhow::Result<(Duration, usize)> {
    let t = Instant::now();
    let response = client
        .post(format!("http://{api}/api/sql"))
        .body(sql.to_owned())
        .send()
        .await?;
    let status = response.status();
    let body = response.bytes().await?;
    let elapsed = t.elapsed();
    ensure!(
        status.is_success(),
        "/api/sql answered {status}: {}",
        String::from_utf8_lossy(&body)
    );
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&body)?;
    Ok((elapsed, rows.len()))
}

/// The executed plan of `sql` with DataFusion's per-operator metrics (the
/// `plan` column of `EXPLAIN ANALYZE`).
pub(super) async fn explain_analyze(
    client: &reqwest::Client,
    api: SocketAddr,
    sql: &str,
) -> anyhow::Result<String> {
    let response = client
        .post(format!("http://{api}/api/sql"))
        .body(format!("EXPLAIN ANALYZE {sql}"))
        .send()
        .await?;
    let status = response.status();
    let body = response.bytes().await?;
    ensure!(
        status.is_success(),
        "/api/sql answered {status} to EXPLAIN ANALYZE: {}",
        String::from_utf8_lossy(&body)
    );
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&body)?;
    Ok(rows
        .iter()
        .filter_map(|r| r.get("plan")?.as_str())
        .map(|p| format!("{p}\n"))
        .collect())
}

/// Each trace looked up three ways in turn (`/api/traces`, `SELECT *`, four
/// columns); the answers must agree on the number of spans.
async fn lookups(
    client: &reqwest::Client,
    api: SocketAddr,
    traces: &[TraceId],
) -> anyhow::Result<[Vec<Duration>; 3]> {
    let (mut by_api, mut by_sql, mut narrow) = (Vec::new(), Vec::new(), Vec::new());
    for (i, trace) in traces.iter().enumerate() {
        let hex = trace.to_hex();
        let sql = format!("SELECT * FROM spans WHERE trace_id = '{hex}' ORDER BY start_time");
        let t = Instant::now();
        let response = client
            .get(format!("http://{api}/api/traces/{hex}"))
            .send()
            .await?;
        let status = response.status();
        let body = response.bytes().await?;
        let api_time = t.elapsed();
        ensure!(status.is_success(), "/api/traces/{hex} answered {status}");
        let (sql_time, rows) = sql_rows(client, api, &sql).await?;
        let four = format!(
            "SELECT span_id, name, start_time, duration_ns FROM spans WHERE trace_id = '{hex}'"
        );
        let (narrow_time, narrow_rows) = sql_rows(client, api, &four).await?;
        let json: serde_json::Value = serde_json::from_slice(&body)?;
        let spans: usize = json["resourceSpans"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|r| r["scopeSpans"].as_array().into_iter().flatten())
            .map(|s| s["spans"].as_array().map_or(0, Vec::len))
            .sum();
        ensure!(
            spans == rows && rows == narrow_rows && rows > 0,
            "trace {hex}: /api/traces gave {spans} spans, SQL {rows} and {narrow_rows} rows"
        );
        // The first of each is a warm-up.
        if i > 0 {
            by_api.push(api_time);
            by_sql.push(sql_time);
            narrow.push(narrow_time);
        }
    }
    for t in [&mut by_api, &mut by_sql, &mut narrow] {
        t.sort();
    }
    Ok([by_api, by_sql, narrow])
}

pub(super) fn median(times: &[Duration]) -> Duration {
    let mut t = times.to_vec();
    t.sort();
    percentile(&t, 0.5)
}

fn median_ms(times: &[f64]) -> Duration {
    let mut t = times.to_vec();
    t.sort_by(f64::total_cmp);
    Duration::from_secs_f64(t.get(t.len() / 2).copied().unwrap_or(0.0) / 1e3)
}
