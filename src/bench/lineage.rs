//! `weft bench --only lineage`, each figure beside a baseline measured in the same run:
//! - reconstructing a 100k-span workflow that spans ten linked traces, beside
//!   the cheapest possible work over the same spans (index by id, sort by time);
//! - settling those spans at flush (structure + link index), beside writing them;
//! - one structural SQL query over 100k spans in 200 traces via
//!   `span_structure`, beside building each trace's graph in turn.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use weft_store::{Metrics, Store, StoreConfig};

use super::time;
use weft_lineage::PAGE_NODES;
use weft_lineage::{BuildOptions, build};
use weft_lineage::{LineageSpan, StepAi};
use weft_query::lineage::Reach;
use weft_query::{QueryEngine, QuerySettings};
use weft_schemas::{AiFields, AiKind, PolicyVerdict, Span, SpanId, SpanKind, StatusCode, TraceId};

const TRACES: usize = 10;

fn ids(t: usize, i: usize) -> (TraceId, SpanId) {
    let mut tb = [0u8; 16];
    tb[0] = 0xab;
    tb[8..].copy_from_slice(&(t as u64 + 1).to_be_bytes());
    let mut sb = [0u8; 8];
    sb.copy_from_slice(&((t as u64) << 40 | (i as u64 + 1)).to_be_bytes());
    (
        TraceId::try_from(tb.as_slice()).unwrap_or_else(|_| unreachable!("non-zero")),
        SpanId::try_from(sb.as_slice()).unwrap_or_else(|_| unreachable!("non-zero")),
    )
}

/// `traces` traces of an 8-ary span tree, `total` spans in all; when
/// `linked`, each trace's root follows from a span of the previous one.
pub(crate) fn workflow(total: usize, traces: usize, linked: bool) -> Vec<LineageSpan> {
    let per = (total / traces).max(2);
    let base = 1_700_000_000_000_000_000i64;
    let mut spans = Vec::with_capacity(per * traces);
    for t in 0..traces {
        for i in 0..per {
            let (trace_id, span_id) = ids(t, i);
            let parent = (i > 0).then(|| ids(t, (i - 1) / 8).1);
            let links = if linked && i == 0 && t > 0 {
                vec![ids(t - 1, per - 1)]
            } else {
                Vec::new()
            };
            let start = base + (t * per + i) as i64 * 1_000;
            let kind = [
                AiKind::Llm,
                AiKind::Tool,
                AiKind::Policy,
                AiKind::Retrieval,
                AiKind::Workflow,
            ][i % 5];
            spans.push(LineageSpan {
                events: Vec::new(),
                trace_id,
                span_id,
                parent_span_id: parent,
                name: format!("step {i}").into(),
                kind: None,
                service: Some("bench".into()),
                start_ns: start,
                end_ns: start + 500 + (per - i) as i64,
                status: StatusCode::Ok,
                status_message: None,
                links,
                ai: StepAi {
                    fields: AiFields {
                        ai_kind: Some(kind),
                        tool_name: (kind == AiKind::Tool).then(|| "tool".to_owned()),
                        policy_verdict: (kind == AiKind::Policy).then_some(PolicyVerdict::Allow),
                        identity: (i == 0).then(|| "bench-user".to_owned()),
                        ..Default::default()
                    }
                    .into(),
                    tool_effect: (kind == AiKind::Tool && i % 10 == 1).then(|| "write".into()),
                    ..Default::default()
                },
            });
        }
    }
    spans
}

/// What a span of an instrumented agent carries besides its AI columns: the
/// attributes those came from and a few of the application's (eight or nine
/// in all), and `weft.tool.effect` on writing tools. Lineage reads the
/// attribute map of every span it loads, so the workload has one.
fn attributes(l: &LineageSpan) -> weft_schemas::Attributes {
    use weft_schemas::AttrValue::{Int, Str};
    let f = &l.ai.fields;
    let index = i64::from_be_bytes(*l.span_id.as_bytes()) & 0xff_ffff_ffff;
    let mut out = vec![
        (
            "gen_ai.operation.name".to_owned(),
            Str(f
                .ai_kind()
                .map_or("invoke_agent", |k| k.as_str())
                .to_owned()),
        ),
        ("gen_ai.agent.name".to_owned(), Str("support-agent".into())),
        (
            "gen_ai.conversation.id".to_owned(),
            Str(format!("conv-{}", index / 1_000)),
        ),
        (
            "code.function.name".to_owned(),
            Str(format!("agent.step_{}", index % 5)),
        ),
        ("thread.id".to_owned(), Int(index % 16)),
        (
            "app.request.id".to_owned(),
            Str(format!("req-{:010x}", index / 8)),
        ),
        ("app.region".to_owned(), Str("eu-west-1".into())),
        ("app.step.index".to_owned(), Int(index)),
    ];
    if let Some(tool) = f.tool_name() {
        out.push(("gen_ai.tool.name".to_owned(), Str(tool.to_owned())));
    }
    if let Some(effect) = &l.ai.tool_effect {
        out.push((
            weft_lineage::TOOL_EFFECT_KEY.to_owned(),
            Str(effect.to_string()),
        ));
    }
    out
}

fn to_span(l: &LineageSpan) -> Span {
    Span {
        trace_id: l.trace_id,
        span_id: l.span_id,
        parent_span_id: l.parent_span_id,
        trace_state: String::new(),
        name: l.name.to_string(),
        kind: SpanKind::Internal,
        start_time_unix_nano: l.start_ns,
        end_time_unix_nano: l.end_ns,
        status_code: l.status,
        status_message: String::new(),
        service_name: l.service.as_deref().map(str::to_owned),
        resource_attributes: Default::default(),
        scope_name: String::new(),
        scope_version: String::new(),
        attributes: attributes(l),
        events: Vec::new(),
        links: l
            .links
            .iter()
            .map(|(t, s)| weft_schemas::SpanLink {
                trace_id: *t,
                span_id: *s,
                trace_state: String::new(),
                attributes: Vec::new(),
            })
            .collect(),
        ai: l.ai.fields.to_fields(),
    }
}

pub fn run(total: usize) -> anyhow::Result<()> {
    reconstruct(total)?;
    settle_cost(total)?;
    structural(total)
}

fn print_table(title: &str, rows: &[(&str, Duration)]) {
    let baseline = rows[0].1;
    println!();
    println!("| {title} | time | relative to baseline |");
    println!("|---|---:|---:|");
    for (name, d) in rows {
        println!(
            "| {name} | {:.1} ms | {:.2}x |",
            d.as_secs_f64() * 1e3,
            d.as_secs_f64() / baseline.as_secs_f64()
        );
    }
}

fn reconstruct(total: usize) -> anyhow::Result<()> {
    let spans = workflow(total, TRACES, true);
    let n = spans.len();
    eprintln!("lineage workload: {n} spans in {TRACES} linked traces");

    let baseline = time(|| {
        let mut index: HashMap<(TraceId, SpanId), usize> = HashMap::with_capacity(n);
        for (i, s) in spans.iter().enumerate() {
            index.insert((s.trace_id, s.span_id), i);
        }
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|i| spans[*i].start_ns);
        std::hint::black_box((index, order));
        Ok(())
    })?;
    let options = BuildOptions {
        now_ns: i64::MAX,
        write_tools: HashSet::new(),
        evidence: Default::default(),
    };
    let mut copies: Vec<Vec<LineageSpan>> = (0..3).map(|_| spans.clone()).collect();
    let mut nodes = 0;
    let graph = time(|| {
        let lineage = build(copies.pop().unwrap_or_default(), &options);
        nodes = lineage.nodes.len();
        anyhow::ensure!(
            lineage.traces.len() == TRACES,
            "workflow split: {} traces",
            lineage.traces.len()
        );
        std::hint::black_box(lineage);
        Ok(())
    })?;
    anyhow::ensure!(nodes == n, "built {nodes} of {n} nodes");

    eprintln!("storing the workflow and reconstructing it through the query engine ...");
    let dir = std::env::temp_dir().join(format!("weft-bench-lineage-{}", std::process::id()));
    let runtime = crate::runtime()?;
    let (end_to_end, memory, paging) = runtime.block_on(async {
        let store = Store::open(StoreConfig::new(&dir), Arc::new(Metrics::default())).await?;
        let rows: Vec<Span> = spans.iter().map(to_span).collect();
        // The workload is stored: a server does not hold it in memory too.
        drop(spans);
        for chunk in rows.chunks(10_000) {
            store.ingest(chunk).await?;
        }
        drop(rows);
        store.flush().await?;
        let start = ids(0, 0).0;
        let mut best_time = Duration::MAX;
        let mut memory = None;
        let mut kept = None;
        for _ in 0..3 {
            // A fresh engine each round: no reconstruction kept from the last
            // (and the last one's freed before this one starts, as a server
            // frees an answer once it is sent).
            drop(kept.take());
            let engine =
                QueryEngine::new(Arc::new(store.clone()), QuerySettings::default()).await?;
            let before = memory::reset_peak();
            let t = Instant::now();
            let result = engine.lineage(&start, Reach::default()).await?;
            let took = t.elapsed();
            eprintln!("  end to end: {:.1} ms", took.as_secs_f64() * 1e3);
            best_time = best_time.min(took);
            // The first round only: later ones reuse what the allocator kept
            // (and so may the first, from building the workload).
            memory = memory.or(before.and_then(|b| Some(memory::peak()?.saturating_sub(b))));
            anyhow::ensure!(
                result.lineage.nodes.len() == n,
                "engine found {} of {n}",
                result.lineage.nodes.len()
            );
            kept = Some(engine);
        }
        let engine = kept.ok_or_else(|| anyhow::anyhow!("no engine"))?;
        let paging = pages(&engine, &store, start, n).await?;
        drop(engine);
        store.shutdown().await?;
        Ok::<_, anyhow::Error>((best_time, memory, paging))
    })?;
    let served = runtime.block_on(over_http(&dir, ids(0, 0).0, n));
    let _ = std::fs::remove_dir_all(&dir);
    let served = served?;

    print_table(
        &format!("lineage of a {n}-span workflow ({TRACES} linked traces)"),
        &[
            ("baseline: index spans by id and sort by time", baseline),
            ("graph build + anomalies + critical path + summary", graph),
            (
                "end to end: fetch from Parquet via SQL engine + build",
                end_to_end,
            ),
        ],
    );
    if let Some(peak) = memory {
        println!();
        println!(
            "memory of the first end-to-end reconstruction: peak {:.0} MiB above the resident set \
             before it (what the allocator kept from earlier work is not counted: read the \
             server's figures below); a node is {} bytes before its strings and AI slots",
            peak as f64 / MIB,
            std::mem::size_of::<weft_lineage::Node>(),
        );
    }
    let (first, next, all, count) = paging;
    print_table(
        &format!("paging the {n}-span workflow's lineage ({PAGE_NODES} nodes a page, as JSON)"),
        &[
            ("baseline: end to end reconstruction (above)", end_to_end),
            ("first page: reconstruct + page + JSON", first),
            ("a later page (from the kept reconstruction) + JSON", next),
            (&format!("all {count} pages, one after another"), all),
        ],
    );
    println!();
    println!(
        "over HTTP, a fresh `weft serve` on the same data: GET /api/lineage/{{id}} (first page, \
         {PAGE_NODES} nodes, {:.1} MB of JSON) {:.1} ms; every later page {:.1} ms in all; \
         a new reading's first page in the running server {:.1} ms; \
         the server's resident set {:.0} MiB before, peak {:.0} MiB, {:.0} MiB after",
        served.first_bytes as f64 / 1e6,
        served.first.as_secs_f64() * 1e3,
        served.rest.as_secs_f64() * 1e3,
        served.again.as_secs_f64() * 1e3,
        served.rss_before as f64 / MIB,
        served.peak as f64 / MIB,
        served.rss_after as f64 / MIB,
    );
    Ok(())
}

/// What reading the workflow's lineage from a real server took.
struct Served {
    first: Duration,
    first_bytes: usize,
    rest: Duration,
    /// A first page again, reconstructed anew in the running server.
    again: Duration,
    rss_before: u64,
    peak: u64,
    rss_after: u64,
}

/// `weft serve` on `dir` (the stored workflow), then every page of the
/// lineage of `start` over HTTP, as the TUI reads them.
async fn over_http(dir: &std::path::Path, start: TraceId, n: usize) -> anyhow::Result<Served> {
    let server = super::receivers::start_weft(Some(dir.to_path_buf()), None)?;
    let api = server
        .api
        .ok_or_else(|| anyhow::anyhow!("weft serve has no API"))?;
    let client = reqwest::Client::new();
    let get_with = async |query: String| -> anyhow::Result<usize> {
        let response = client
            .get(format!("http://{api}/api/lineage/{start}?{query}"))
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "lineage {query}: {}",
            response.status()
        );
        Ok(response.bytes().await?.len())
    };
    let get = async |offset: usize| get_with(format!("offset={offset}&limit={PAGE_NODES}")).await;
    let rss_before = server.rss_bytes().unwrap_or(0);
    let t = Instant::now();
    let first_bytes = get(0).await?;
    let first = t.elapsed();
    let t = Instant::now();
    let mut offset = PAGE_NODES;
    while offset < n {
        get(offset).await?;
        offset += PAGE_NODES;
    }
    let rest = t.elapsed();
    // A new reading in the running server: another reach (a hop limit the
    // workflow stays within) is not served from the kept reconstruction.
    let t = Instant::now();
    get_with(format!("depth=1000&offset=0&limit={PAGE_NODES}")).await?;
    let again = t.elapsed();
    Ok(Served {
        first,
        first_bytes,
        rest,
        again,
        rss_before,
        peak: server.peak_rss_bytes().unwrap_or(0),
        rss_after: server.rss_bytes().unwrap_or(0),
    })
}

const MIB: f64 = 1024.0 * 1024.0;

/// This process's resident memory, from `/proc/self` (Linux).
mod memory {
    fn status_kb(key: &str) -> Option<u64> {
        super::super::proc_status_bytes("self", key)
    }

    /// Resident bytes now.
    pub fn rss() -> Option<u64> {
        status_kb("VmRSS:")
    }

    /// Peak resident bytes since the last [`reset_peak`].
    pub fn peak() -> Option<u64> {
        status_kb("VmHWM:")
    }

    /// Starts a new peak at the resident set now (Linux's `clear_refs` 5),
    /// and returns that.
    pub fn reset_peak() -> Option<u64> {
        std::fs::write("/proc/self/clear_refs", "5").ok()?;
        rss()
    }
}

/// What the API does for `/api/lineage/{id}?offset=&limit=`: the first page
/// of a reading, a later one, and all of them in turn (as the TUI reads them).
async fn pages(
    engine: &QueryEngine,
    store: &Store,
    start: TraceId,
    n: usize,
) -> anyhow::Result<(Duration, Duration, Duration, usize)> {
    use weft_lineage::LineagePage;
    use weft_query::Freshness;
    let page = async |offset: usize, freshness: Freshness| -> anyhow::Result<usize> {
        let result = engine
            .lineage_reading(&start, Reach::default(), freshness)
            .await?;
        let page = LineagePage::of(&result.lineage, start, false, offset, PAGE_NODES);
        Ok(serde_json::to_vec(&page)?.len())
    };
    // A fresh engine's first page, timed as a reader sees it.
    let fresh = QueryEngine::new(Arc::new(store.clone()), QuerySettings::default()).await?;
    let t = Instant::now();
    let result = fresh.lineage(&start, Reach::default()).await?;
    let first_page = LineagePage::of(&result.lineage, start, false, 0, PAGE_NODES);
    std::hint::black_box(serde_json::to_vec(&first_page)?);
    let first = t.elapsed();
    drop((result, fresh));
    let t = Instant::now();
    page(n / 2, Freshness::NextPage).await?;
    let next = t.elapsed();
    let t = Instant::now();
    let mut count = 0;
    let mut offset = 0;
    while offset < n {
        let freshness = if offset == 0 {
            Freshness::Current
        } else {
            Freshness::NextPage
        };
        page(offset, freshness).await?;
        offset += PAGE_NODES;
        count += 1;
    }
    Ok((first, next, t.elapsed(), count))
}

/// What settling adds to a flush: the structure and link files of `total`
/// spans, beside writing the span files themselves.
fn settle_cost(total: usize) -> anyhow::Result<()> {
    let rows: Vec<Span> = workflow(total, TRACES, true).iter().map(to_span).collect();
    eprintln!("writing and settling {} spans ...", rows.len());
    let runtime = crate::runtime()?;
    // Best of three flushes, each of the same spans into a fresh store; the
    // store's flush report times the span files and the settling apart.
    let (mut write, mut settled) = (Duration::MAX, Duration::MAX);
    for _ in 0..3 {
        let dir = tempfile::tempdir()?;
        let report = runtime.block_on(async {
            let store =
                Store::open(StoreConfig::new(dir.path()), Arc::new(Metrics::default())).await?;
            store.ingest(&rows).await?;
            let report = store.flush().await?;
            store.shutdown().await?;
            Ok::<_, anyhow::Error>(report)
        })?;
        anyhow::ensure!(
            report.traces_settled == TRACES,
            "settled {} of {TRACES} traces",
            report.traces_settled
        );
        write = write.min(report.write);
        settled = settled.min(report.settle);
    }
    print_table(
        &format!("flush of {} spans", rows.len()),
        &[
            ("baseline: write the span Parquet files", write),
            ("settle: span_structure + span_links files", settled),
        ],
    );
    Ok(())
}

const STRUCTURAL_TRACES: usize = 200;

/// Workflow steps and the tool calls beneath them, over every settled trace.
const STRUCTURAL_SQL: &str = "SELECT count(*) FROM span_structure a \
    JOIN span_structure d ON d.trace_id = a.trace_id \
     AND d.nested_left > a.nested_left AND d.nested_right < a.nested_right \
    WHERE a.ai_kind = 'workflow' AND d.ai_kind = 'tool'";

/// One structural question over many traces: a nested-set join over
/// `span_structure`, beside the way without it — a graph build per trace.
fn structural(total: usize) -> anyhow::Result<()> {
    use arrow::array::AsArray;
    use arrow::datatypes::Int64Type;
    use weft_lineage::EdgeKind;

    let spans = workflow(total, STRUCTURAL_TRACES, false);
    let n = spans.len();
    eprintln!("structural query over {n} spans in {STRUCTURAL_TRACES} traces ...");
    let dir = tempfile::tempdir()?;
    let runtime = crate::runtime()?;
    let (per_trace, sql, pairs) = runtime.block_on(async {
        let store = Store::open(StoreConfig::new(dir.path()), Arc::new(Metrics::default())).await?;
        let rows: Vec<Span> = spans.iter().map(to_span).collect();
        for chunk in rows.chunks(10_000) {
            store.ingest(chunk).await?;
        }
        store.flush().await?;
        let engine = QueryEngine::new(Arc::new(store.clone()), QuerySettings::default()).await?;

        let mut per_trace = Duration::MAX;
        let mut walked = 0i64;
        for _ in 0..3 {
            // A fresh engine each round: no reconstruction kept from the last.
            let engine =
                QueryEngine::new(Arc::new(store.clone()), QuerySettings::default()).await?;
            let t = Instant::now();
            walked = 0;
            for trace in 0..STRUCTURAL_TRACES {
                let reach = Reach {
                    max_depth: Some(0),
                    ..Reach::default()
                };
                let result = engine.lineage(&ids(trace, 0).0, reach).await?;
                let l = &result.lineage;
                let mut parent = vec![None; l.nodes.len()];
                for e in l.edges.iter().filter(|e| e.kind == EdgeKind::Child) {
                    parent[e.to] = Some(e.from);
                }
                for (i, node) in l.nodes.iter().enumerate() {
                    if node.span.ai.fields.ai_kind() != Some(AiKind::Tool) {
                        continue;
                    }
                    let mut up = parent[i];
                    while let Some(p) = up {
                        walked += i64::from(
                            l.nodes[p].span.ai.fields.ai_kind() == Some(AiKind::Workflow),
                        );
                        up = parent[p];
                    }
                }
            }
            per_trace = per_trace.min(t.elapsed());
        }

        let mut sql = Duration::MAX;
        let mut counted = 0i64;
        for _ in 0..3 {
            let t = Instant::now();
            let result = engine.sql(STRUCTURAL_SQL).await?;
            sql = sql.min(t.elapsed());
            counted = result
                .batches
                .first()
                .map(|b| b.column(0).as_primitive::<Int64Type>().value(0))
                .unwrap_or(-1);
        }
        anyhow::ensure!(
            counted == walked,
            "span_structure counts {counted} pairs, the graphs {walked}"
        );
        store.shutdown().await?;
        Ok::<_, anyhow::Error>((per_trace, sql, counted))
    })?;
    print_table(
        &format!(
            "structural query over {n} spans in {STRUCTURAL_TRACES} traces ({pairs} workflow→tool pairs)"
        ),
        &[
            (
                "baseline: graph build per trace (QueryEngine::lineage)",
                per_trace,
            ),
            ("one SQL nested-set join over span_structure", sql),
        ],
    );
    Ok(())
}
