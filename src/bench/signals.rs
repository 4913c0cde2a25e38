//! `weft bench --only signals`: what live signals cost and how fresh they
//! are, each beside a baseline measured in the same run.
//!
//! - One `/api/signals` poll and one `/api/route` call over real HTTP with
//!   100k spans in the window, beside the SQL aggregation over the same spans
//!   that answered `/api/signals` before (and still answers `?since=`).
//! - The delay from an acknowledged ingest to its Server-Sent Event.
//! - Durable ingest rate with no signals (baseline), with signals kept on the
//!   ingest path, and with a scheduler polling `/api/signals` and
//!   `/api/route` every 50 ms.

use std::io::{BufRead, BufReader};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::{Rng, SeedableRng};
use weft_query::{QueryEngine, QuerySettings, StaticSource};
use weft_schemas::{AiFields, AiKind, Span, SpanId, SpanKind, TraceId, spans_to_batch};
use weft_signals::{Signals, SignalsConfig};
use weft_store::{Metrics, Store, StoreConfig};

const NODES: usize = 16;
const MODELS: [&str; 2] = ["llama-3.1-70b-instruct", "llama-3.1-8b-instruct"];

fn id<T: for<'a> TryFrom<&'a [u8]>>(rng: &mut impl Rng, len: usize) -> anyhow::Result<T> {
    let mut bytes = vec![0u8; len];
    rng.fill(&mut bytes[..]);
    bytes[0] |= 1;
    T::try_from(&bytes).map_err(|_| anyhow::anyhow!("id"))
}

/// `n` model calls that ended over the last `over`, spread over the nodes.
fn calls(n: usize, over: Duration, seed: u64) -> anyhow::Result<Vec<Span>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let now = weft_signals::now_ns();
    let over = over.as_nanos() as i64;
    (0..n)
        .map(|i| {
            let end = now - rng.random_range(0..over);
            let duration = rng.random_range(50_000_000..2_000_000_000);
            Ok(Span {
                trace_id: id::<TraceId>(&mut rng, 16)?,
                span_id: id::<SpanId>(&mut rng, 8)?,
                parent_span_id: Some(id::<SpanId>(&mut rng, 8)?),
                trace_state: String::new(),
                name: "chat".into(),
                kind: SpanKind::Server,
                start_time_unix_nano: end - duration,
                end_time_unix_nano: end,
                status_code: weft_schemas::StatusCode::Unset,
                status_message: String::new(),
                service_name: Some("inference".into()),
                resource_attributes: Arc::new(Vec::new()),
                scope_name: String::new(),
                scope_version: String::new(),
                attributes: Vec::new(),
                events: Vec::new(),
                links: Vec::new(),
                ai: AiFields {
                    ai_kind: Some(AiKind::Llm),
                    node: Some(format!("gpu-{}", i % NODES)),
                    gen_ai_model: Some(MODELS[i % 2].into()),
                    kv_cache_hit: Some(rng.random_bool(0.5)),
                    kv_cache_prefix: Some(format!("system-{}", rng.random_range(0..64))),
                    conversation_id: Some(format!("conv-{}", rng.random_range(0..20_000))),
                    queue_wait_ns: Some(rng.random_range(0..300_000_000)),
                    time_to_first_token_ns: Some(rng.random_range(10_000_000..900_000_000)),
                    input_tokens: Some(rng.random_range(100..4000)),
                    output_tokens: Some(rng.random_range(10..800)),
                    ..AiFields::default()
                },
            })
        })
        .collect()
}

/// Serves `engine`'s API on a loopback port.
async fn serve_api(engine: Arc<QueryEngine>) -> anyhow::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let router = weft_query::api::router(
        engine,
        Arc::new(Metrics::default()),
        None,
        Arc::new(weft_auth::Auth::default()),
    );
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(addr)
}

/// Mean and p99 of `calls` runs of `f`, in microseconds.
async fn timed<F, Fut>(calls: usize, mut f: F) -> anyhow::Result<(f64, f64)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut times = Vec::with_capacity(calls);
    for _ in 0..calls {
        let start = Instant::now();
        f().await?;
        times.push(start.elapsed().as_secs_f64() * 1e6);
    }
    times.sort_by(f64::total_cmp);
    let mean = times.iter().sum::<f64>() / times.len().max(1) as f64;
    Ok((mean, times[(times.len() - 1) * 99 / 100]))
}

pub fn run() -> anyhow::Result<()> {
    crate::runtime()?.block_on(async {
        poll_and_route().await?;
        stream_delay().await?;
        ingest_cost().await
    })
}

async fn poll_and_route() -> anyhow::Result<()> {
    let spans = 100_000;
    eprintln!("signals: {spans} model calls on {NODES} nodes in the last minute ...");
    let calls = calls(spans, Duration::from_secs(50), 1)?;
    let batches: Vec<_> = calls
        .chunks(512)
        .map(spans_to_batch)
        .collect::<Result<_, _>>()?;
    let signals = Arc::new(Signals::new(SignalsConfig::default())?);
    let observe = Instant::now();
    for batch in &batches {
        signals.observe(batch)?;
    }
    let observe = observe.elapsed();
    let snapshot = weft_store::Snapshot {
        batches: batches.clone(),
        ..Default::default()
    };
    let engine = Arc::new(
        QueryEngine::new(Arc::new(StaticSource(snapshot)), QuerySettings::default()).await?,
    );
    engine.attach_signals(Arc::clone(&signals));
    let addr = serve_api(Arc::clone(&engine)).await?;
    let client = reqwest::Client::new();
    let get = |path: &'static str| {
        let client = client.clone();
        async move {
            let response = client.get(format!("http://{addr}{path}")).send().await?;
            anyhow::ensure!(
                response.status().is_success(),
                "{path}: {}",
                response.status()
            );
            let body = response.bytes().await?;
            anyhow::ensure!(body.len() > 2, "{path}: empty answer");
            Ok(())
        }
    };
    // Warm both paths once.
    get("/api/signals?window=1m").await?;
    get("/api/signals?since=1m").await?;
    let live = timed(2_000, || get("/api/signals?window=1m")).await?;
    let route = timed(2_000, || {
        get("/api/route?model=llama-3.1-70b-instruct&prefix=system-7&conversation=conv-42")
    })
    .await?;
    let sql = timed(20, || get("/api/signals?since=1m")).await?;
    let direct = timed(2_000, || async {
        std::hint::black_box(signals.nodes("1m", weft_signals::Filter::default())?);
        Ok(())
    })
    .await?;
    println!();
    println!(
        "### Live signals: one poll, one route call ({spans} spans in the window, {NODES} nodes, real HTTP on loopback)"
    );
    println!();
    println!("| measurement | mean | p99 | relative to the SQL poll |");
    println!("|---|---:|---:|---:|");
    for (what, (mean, p99)) in [
        (
            "`/api/signals?since=1m`: SQL aggregation over the spans (baseline, the old poll)",
            sql,
        ),
        ("`/api/signals?window=1m`: live windows", live),
        ("`/api/route?model=…&prefix=…&conversation=…`", route),
        ("`Signals::nodes` in process (no HTTP, no JSON)", direct),
    ] {
        println!(
            "| {what} | {:.0} µs | {:.0} µs | {:.4}x |",
            mean,
            p99,
            mean / sql.0
        );
    }
    println!();
    println!(
        "Keeping them: {spans} spans observed in {:.1} ms ({:.2} M spans/s on one thread).",
        observe.as_secs_f64() * 1e3,
        spans as f64 / observe.as_secs_f64() / 1e6
    );
    Ok(())
}

/// Opens a store in a temporary directory with the live signals fed from it,
/// and its API on a loopback port.
async fn store_with_signals(
    dir: &std::path::Path,
    signals: Option<SignalsConfig>,
) -> anyhow::Result<(Store, Option<Arc<Signals>>, std::net::SocketAddr)> {
    let mut config = StoreConfig::new(dir);
    config.flush_interval = Duration::from_secs(3600);
    config.fault = None;
    let store = Store::open(config, Arc::new(Metrics::default())).await?;
    let engine =
        Arc::new(QueryEngine::new(Arc::new(store.clone()), QuerySettings::default()).await?);
    let signals = match signals {
        Some(config) => {
            let signals = Arc::new(Signals::new(config)?);
            store.set_observer(Arc::new(crate::serve::Feed::new(Arc::clone(&signals))?))?;
            engine.attach_signals(Arc::clone(&signals));
            Some(signals)
        }
        None => None,
    };
    let addr = serve_api(engine).await?;
    Ok((store, signals, addr))
}

async fn stream_delay() -> anyhow::Result<()> {
    println!();
    println!("### Live signals: acknowledgement to Server-Sent Event");
    println!();
    println!("| stream_interval | samples | p50 | p99 | max |");
    println!("|---:|---:|---:|---:|---:|");
    for interval_ms in [250u64, 50] {
        let dir = tempfile::tempdir()?;
        let config = SignalsConfig {
            stream_interval: Duration::from_millis(interval_ms),
            ..SignalsConfig::default()
        };
        let (store, _, addr) = store_with_signals(dir.path(), Some(config)).await?;
        // A blocking reader on its own thread: each event's arrival time.
        let (tx, rx) = std::sync::mpsc::channel::<Instant>();
        let url = format!("http://{addr}/api/signals/stream?window=10s");
        std::thread::spawn(move || -> anyhow::Result<()> {
            let response = reqwest::blocking::Client::builder()
                .timeout(None)
                .build()?
                .get(url)
                .send()?;
            for line in BufReader::new(response).lines() {
                if line?.starts_with("data: ") {
                    tx.send(Instant::now())?;
                }
            }
            Ok(())
        });
        let mut delays = Vec::new();
        for i in 0..40u64 {
            let spans = calls(1, Duration::from_millis(1), 1000 + i)?;
            // Sparse traffic: the stream is idle when the call arrives.
            tokio::time::sleep(Duration::from_millis(interval_ms + 100)).await;
            while rx.try_recv().is_ok() {}
            store.ingest(&spans).await?;
            let acknowledged = Instant::now();
            let seen = tokio::task::block_in_place(|| rx.recv_timeout(Duration::from_secs(5)))
                .context("no stream event within 5 s of an acknowledgement")?;
            delays.push(seen.saturating_duration_since(acknowledged).as_secs_f64() * 1e3);
        }
        delays.sort_by(f64::total_cmp);
        println!(
            "| {interval_ms} ms | {} | {:.1} ms | {:.1} ms | {:.1} ms |",
            delays.len(),
            delays[delays.len() / 2],
            delays[(delays.len() - 1) * 99 / 100],
            delays[delays.len() - 1]
        );
        store.shutdown().await?;
    }
    Ok(())
}

async fn ingest_cost() -> anyhow::Result<()> {
    let requests = 400;
    let per_request = 512;
    eprintln!("signals: ingest of {requests} x {per_request} spans, three ways ...");
    let all = calls(requests * per_request, Duration::from_secs(30), 3)?;
    let mut rows = Vec::new();
    for (what, keep, poll) in [
        ("durable ingest, no live signals (baseline)", false, false),
        ("durable ingest, live signals kept", true, false),
        (
            "the same, a scheduler polling /api/signals and /api/route every 50 ms",
            true,
            true,
        ),
    ] {
        let dir = tempfile::tempdir()?;
        let (store, _, addr) =
            store_with_signals(dir.path(), keep.then(SignalsConfig::default)).await?;
        let stop = Arc::new(AtomicBool::new(false));
        let poller = poll.then(|| {
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut polls = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for path in [
                        "/api/signals?window=10s",
                        "/api/route?model=llama-3.1-70b-instruct&prefix=system-1",
                    ] {
                        if let Ok(r) = client.get(format!("http://{addr}{path}")).send().await {
                            let _ = r.bytes().await;
                            polls += 1;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                polls
            })
        });
        let start = Instant::now();
        let mut tasks = Vec::new();
        for part in all.chunks(all.len() / 4 + 1) {
            let (store, part) = (store.clone(), part.to_vec());
            tasks.push(tokio::spawn(async move {
                for chunk in part.chunks(per_request) {
                    store.ingest(chunk).await?;
                }
                anyhow::Ok(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        let rate = all.len() as f64 / start.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        if let Some(poller) = poller {
            let polls = poller.await?;
            anyhow::ensure!(polls > 0, "the poller never got an answer");
        }
        store.shutdown().await?;
        rows.push((what, rate));
    }
    println!();
    println!(
        "### Live signals: what keeping and polling them costs durable ingest ({} spans in {per_request}-span requests, 4 writers)",
        all.len()
    );
    println!();
    println!("| measurement | spans/s | relative to the baseline |");
    println!("|---|---:|---:|");
    let baseline = rows[0].1;
    for (what, rate) in rows {
        println!("| {what} | {rate:.0} | {:.2}x |", rate / baseline);
    }
    Ok(())
}
