//! `weft bench --only fleet`: 1, 2 and 3 collectors on one table location (a
//! local directory), each with its own WAL, the first the fleet settler
//! (`settle = "fleet"`, the others `"none"`; a lone collector `"own"`), all
//! flushing every second so their commits contend. The same OTLP/HTTP
//! requests are spread over the collectors round-robin, as a load balancer
//! would, by `--clients` clients in all. Per fleet size: spans/s acknowledged,
//! flush commits per minute that found another collector's commit first (and
//! were checked for conflicts by delta-rs before landing after it), the mean flush, and how long after the last acknowledgement the
//! settler's `span_structure` covered every span. All on this machine's two
//! cores: more collectors add no cores here, so the figures show the cost of
//! sharing a location, not a speed-up.

use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message;

use super::receivers::{Receiver, Transport, send_all, start_weft_with};
use super::to_requests;
use crate::workload::workflows;

pub fn run(workflow_count: usize, clients: usize) -> anyhow::Result<()> {
    let requests = to_requests(&workflows(workflow_count, 11), 512);
    let spans: usize = requests.iter().map(super::count_spans).sum();
    let payloads: Vec<Bytes> = requests.iter().map(|r| r.encode_to_vec().into()).collect();
    let runtime = crate::runtime()?;
    eprintln!(
        "fleet: {spans} spans in {} requests, 1 to 3 collectors ...",
        payloads.len()
    );
    println!(
        "\n## Collectors on one table location ({spans} spans, {} OTLP/HTTP requests, {clients} \
         clients in all, flush every 1 s)\n",
        payloads.len()
    );
    println!(
        "| collectors | spans/s acknowledged | ratio to one | commits after another's, per minute | \
         flushes | mean flush ms | structure complete after last ack, s |\n\
         |---:|---:|---:|---:|---:|---:|---:|"
    );
    let mut alone = None;
    for n in 1..=3usize {
        let temp = super::tempfile_dir()?;
        let dir = temp.path();
        let collectors = (0..n)
            .map(|k| {
                let role = match (n, k) {
                    (1, _) => "own",
                    (_, 0) => "fleet",
                    _ => "none",
                };
                let config = dir.join(format!("collector-{k}.toml"));
                std::fs::write(
                    &config,
                    format!("settle = \"{role}\"\nflush_interval_secs = 1\nrefresh_secs = 1\n"),
                )?;
                let wal = dir.join(format!("wal-{k}"));
                start_weft_with(
                    Some(dir.join("data")),
                    Some(&config),
                    &["--wal-dir", &wal.to_string_lossy()],
                )
            })
            .collect::<anyhow::Result<Vec<Receiver>>>()?;
        let started = Instant::now();
        let (acked, retried_exports) = runtime.block_on(async {
            let sends = collectors.iter().enumerate().map(|(k, c)| {
                let share: Vec<Bytes> = payloads.iter().skip(k).step_by(n).cloned().collect();
                let clients = (clients / n).max(1);
                async move { send_all(c, Transport::Http, &share, clients).await }
            });
            let sent = futures::future::try_join_all(sends).await?;
            let elapsed = sent.iter().map(|s| s.elapsed).max().unwrap_or_default();
            anyhow::Ok((elapsed, sent.iter().map(|s| s.retries).sum::<u64>()))
        })?;
        let after_ack = Instant::now();
        let settled = runtime.block_on(wait_for_structure(&collectors[0], spans))?;
        let settled_after = after_ack.elapsed();
        let whole = started.elapsed();
        let mut totals = [0f64; 3];
        for c in &collectors {
            let text = runtime.block_on(metrics(c))?;
            for (i, name) in [
                "weft_commit_conflicts_total",
                "weft_flushes_total",
                "weft_flush_seconds_total",
            ]
            .into_iter()
            .enumerate()
            {
                totals[i] += read(&text, name);
            }
        }
        let rate = spans as f64 / acked.as_secs_f64();
        let ratio = rate / *alone.get_or_insert(rate);
        println!(
            "| {n} | {rate:.0} | {ratio:.2} | {:.1} | {:.0} | {:.0} | {} |",
            totals[0] / whole.as_secs_f64() * 60.0,
            totals[1],
            totals[2] * 1000.0 / totals[1].max(1.0),
            if settled {
                format!("{:.1}", settled_after.as_secs_f64())
            } else {
                "not within 120".to_owned()
            },
        );
        if retried_exports > 0 {
            eprintln!("fleet: {n} collectors answered {retried_exports} exports 'retry later'");
        }
        drop(collectors);
        drop(temp);
    }
    println!(
        "\nReproduce: `./target/release/weft bench --only fleet [--workflows N] [--clients N]` \
         ({workflow_count} workflows here: four times `--workflows`)."
    );
    Ok(())
}

/// Waits (up to 120 s) until the settler's `span_structure` holds `spans`
/// rows: every span of every collector settled and visible to it.
async fn wait_for_structure(settler: &Receiver, spans: usize) -> anyhow::Result<bool> {
    let api = settler
        .api
        .ok_or_else(|| anyhow::anyhow!("weft serve has an API"))?;
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let rows: serde_json::Value = client
            .post(format!("http://{api}/api/sql"))
            .body("SELECT count(*) AS n FROM span_structure")
            .send()
            .await?
            .json()
            .await?;
        if rows[0]["n"].as_u64() == Some(spans as u64) {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(false)
}

async fn metrics(c: &Receiver) -> anyhow::Result<String> {
    let api = c
        .api
        .ok_or_else(|| anyhow::anyhow!("weft serve has an API"))?;
    Ok(reqwest::get(format!("http://{api}/metrics"))
        .await?
        .text()
        .await?)
}

fn read(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}
