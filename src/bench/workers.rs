//! `weft bench --only workers`: SQL over 0 (in `weft serve` alone), 1, 2 and
//! 3 `weft worker` processes on the same stored spans (filled as `--only
//! query` fills them), through `POST /api/sql` of a `weft serve --workers`,
//! each query's median of five after a warm-up, rows compared with the
//! in-process answer. On this machine's two cores workers add no CPU: the
//! figures are the cost of distributing (planning stages, Arrow Flight
//! between processes), not a speed-up.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, ensure};

use super::query::{QUERIES, explain_analyze, median, timed_sql};
use super::receivers::start_weft_with;
use super::storage::{fill, ms};

/// The group-bys of `--only query` that read the most (the others filter
/// to a few rows first).
const PICKED: [usize; 3] = [1, 3, 5];

struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_worker(data_dir: &str) -> anyhow::Result<(Worker, String)> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(["worker", "--listen", "127.0.0.1:0", "--data-dir", data_dir])
        .env("WEFT_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start weft worker")?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        BufReader::new(out).read_line(&mut line)?;
    }
    let addr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("addr="))
        .with_context(|| format!("weft worker did not announce its address: {line:?}"))?
        .to_owned();
    Ok((Worker(child), addr))
}

pub fn run(total: usize) -> anyhow::Result<()> {
    let temp = super::tempfile_dir()?;
    let dir = temp.path().to_path_buf();
    let runtime = crate::runtime()?;
    let (_, stored, _) = runtime.block_on(fill(&dir, total, 5))?;
    let data = dir.to_string_lossy().into_owned();
    let client = reqwest::Client::new();
    let mut table: Vec<Vec<(std::time::Duration, usize)>> = Vec::new();
    let mut stages = None;
    for n in 0..=3usize {
        eprintln!("SQL over {n} workers ...");
        let workers = (0..n)
            .map(|_| start_worker(&data))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let list: Vec<&str> = workers.iter().map(|(_, a)| a.as_str()).collect();
        let list = list.join(",");
        let extra: Vec<&str> = if n == 0 {
            Vec::new()
        } else {
            vec!["--workers", &list]
        };
        let server = start_weft_with(Some(dir.clone()), None, &extra)?;
        let api = server.api.context("weft serve announced no API address")?;
        let mut row = Vec::new();
        for i in PICKED {
            let (times, rows) = runtime.block_on(timed_sql(&client, api, QUERIES[i].1))?;
            row.push((median(&times), rows));
        }
        if n == 3 {
            stages = Some(runtime.block_on(explain_analyze(&client, api, QUERIES[PICKED[1]].1))?);
        }
        drop(server);
        drop(workers);
        table.push(row);
    }
    println!(
        "\n## SQL over workers: {stored} spans, POST /api/sql of weft serve --workers \
         (median of 5 after a warm-up)\n"
    );
    println!(
        "| query | in weft serve ms | 1 worker ms | 2 workers ms | 3 workers ms | 3 workers / in serve |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (k, i) in PICKED.iter().enumerate() {
        let alone = table[0][k];
        for row in &table[1..] {
            ensure!(
                row[k].1 == alone.1,
                "{}: {} rows over workers, {} in one process",
                QUERIES[*i].0,
                row[k].1,
                alone.1
            );
        }
        println!(
            "| {} | {} | {} | {} | {} | {:.2} |",
            QUERIES[*i].0,
            ms(alone.0),
            ms(table[1][k].0),
            ms(table[2][k].0),
            ms(table[3][k].0),
            table[3][k].0.as_secs_f64() / alone.0.as_secs_f64().max(f64::MIN_POSITIVE)
        );
    }
    if let Some(plan) = stages {
        println!(
            "\nThe stages of \"{}\" over 3 workers (EXPLAIN ANALYZE):\n\n```text\n{plan}```",
            QUERIES[PICKED[1]].0
        );
    }
    println!(
        "\nReproduce: `./target/release/weft bench --only workers [--query-spans N]`. With one \
         worker datafusion-distributed plans no network stage (the query runs in weft serve)."
    );
    Ok(())
}
