//! `weft bench --only soak`: `weft serve`'s resident memory while it ingests
//! as fast as `--clients` (4) OTLP/HTTP clients can send, for `--soak-secs`
//! (600), with its default configuration or `--soak-config FILE` (to try the
//! settings memory depends on: `max_unflushed_spans`, `max_inflight_bytes`,
//! `dedup_window_secs`/`dedup_max_spans`,
//! `settle_horizon_secs`/`settle_max_traces`). Every pass sends the same
//! requests with the trace ids changed (so nothing is dropped as a
//! duplicate), and an export answered "retry later" (the server's backlog
//! limit) is sent again as an OTLP exporter would; the table shows, per
//! interval, the spans acknowledged and the server's RSS, then the growth
//! from the first full minute to the end.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message;

use super::receivers::{Transport, send_all, start_weft};
use super::to_requests;
use crate::workload::workflows;

pub fn run(seconds: u64, clients: usize, config: Option<&Path>) -> anyhow::Result<()> {
    let mut requests = to_requests(&workflows(25_000, 7), 512);
    let spans_per_pass: usize = requests.iter().map(super::count_spans).sum();
    let server = start_weft(None, config)?;
    let runtime = crate::runtime()?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let report_every = Duration::from_secs(60.min(seconds.max(1)));
    let mut next_report = started + report_every;
    let (mut acked, mut acked_at_report, mut retries) = (0usize, 0usize, 0u64);
    let mut samples: Vec<(Duration, usize, u64)> = Vec::new();
    eprintln!(
        "soak: {seconds} s of OTLP/HTTP from {clients} clients, {spans_per_pass} spans per pass ..."
    );
    println!(
        "\n## Memory while ingesting: weft serve, {}, {clients} OTLP/HTTP clients\n",
        config.map_or("default configuration".to_owned(), |c| format!(
            "configuration {}",
            c.display()
        ))
    );
    println!(
        "| minute | spans/s in it | RSS MiB | unflushed spans | retry ids held | settled traces held |\n\
         |---:|---:|---:|---:|---:|---:|"
    );
    let mut pass = 0u32;
    while Instant::now() < deadline {
        pass += 1;
        renumber(&mut requests, pass);
        let payloads: Vec<Bytes> = requests.iter().map(|r| r.encode_to_vec().into()).collect();
        retries += runtime
            .block_on(send_all(&server, Transport::Http, &payloads, clients))?
            .retries;
        acked += spans_per_pass;
        let now = Instant::now();
        if now >= next_report || now >= deadline {
            let rss = server.rss_bytes().unwrap_or(0);
            let gauges = runtime.block_on(gauges(&server))?;
            let elapsed = now - started;
            let interval = elapsed - samples.last().map_or(Duration::ZERO, |s| s.0);
            println!(
                "| {:.1} | {:.0} | {:.0} | {} | {} | {} |",
                elapsed.as_secs_f64() / 60.0,
                (acked - acked_at_report) as f64 / interval.as_secs_f64(),
                rss as f64 / 1048576.0,
                gauges[0],
                gauges[1],
                gauges[2],
            );
            samples.push((elapsed, acked, rss));
            acked_at_report = acked;
            next_report = now + report_every;
        }
    }
    let peak = samples.iter().map(|s| s.2).max().unwrap_or(0);
    if let (Some(first), Some(last)) = (samples.first(), samples.last()) {
        println!(
            "\n{acked} spans acknowledged in {:.0} s ({:.0} spans/s; {retries} exports answered \
             \"retry later\" and sent again); RSS {:.0} MiB after the first interval, {:.0} MiB \
             at the end (peak {:.0} MiB, growth {:+.1}%).",
            last.0.as_secs_f64(),
            acked as f64 / last.0.as_secs_f64(),
            first.2 as f64 / 1048576.0,
            last.2 as f64 / 1048576.0,
            peak as f64 / 1048576.0,
            100.0 * (last.2 as f64 - first.2 as f64) / (first.2 as f64).max(1.0)
        );
    }
    Ok(())
}

/// What the server holds in memory by its own count: unflushed spans, span
/// ids for retry detection, settled traces (from `/metrics`).
async fn gauges(server: &super::receivers::Receiver) -> anyhow::Result<[u64; 3]> {
    let api = server
        .api
        .ok_or_else(|| anyhow::anyhow!("weft serve has an API"))?;
    let text = reqwest::get(format!("http://{api}/metrics"))
        .await?
        .text()
        .await?;
    let read = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or(0)
    };
    Ok([
        read("weft_buffered_spans"),
        read("weft_dedup_spans"),
        read("weft_settled_traces"),
    ])
}

/// Gives every trace (and link target) of the requests ids of their own for
/// pass `pass`: the first four bytes of each trace id become the pass number.
fn renumber(
    requests: &mut [opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest],
    pass: u32,
) {
    let mark = |id: &mut Vec<u8>| {
        if id.len() == 16 {
            id[..4].copy_from_slice(&pass.to_be_bytes());
        }
    };
    for r in requests {
        for rs in &mut r.resource_spans {
            for ss in &mut rs.scope_spans {
                for span in &mut ss.spans {
                    mark(&mut span.trace_id);
                    for link in &mut span.links {
                        mark(&mut link.trace_id);
                    }
                }
            }
        }
    }
}
