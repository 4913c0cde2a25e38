//! `weft demo --routing`: a simulated inference fleet reporting to a real
//! `weft serve`, routed three ways — round-robin, least-loaded (from
//! `/api/signals`) and Weft's `/api/route` — on the same workload, to measure
//! what routing on Weft's signals buys.
//!
//! The fleet runs in real time on this machine: N nodes, each with `slots`
//! requests served at once, a FIFO queue before them, and a KV cache of
//! `cache_tokens` (LRU over prompt prefixes: a system prompt, or a
//! conversation's context so far). A request's prefill skips the tokens its
//! node has cached; TTFT is queue wait plus prefill. Sessions share system
//! prompts and continue conversations (2–6 turns, 0.5–2 s apart), arriving
//! at `load` times the fleet's capacity without any cache hit. Each request
//! is reported over OTLP/HTTP as an instrumented server would: an `enqueue`
//! phase span when it is queued (so Weft counts it in flight) and its `chat`
//! span when it ends, with `weft.node`, `weft.kv_cache.hit`,
//! `weft.kv_cache.prefix`, `gen_ai.conversation.id`, `weft.queue.wait_ms`
//! and `weft.ttft_ms`. Each policy gets a fresh fleet (its own node names,
//! cold caches) and only considers its own nodes.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::Args;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span};
use prost::Message;
use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, oneshot};

/// What `weft demo --routing` simulates.
#[derive(Args, Debug, Clone)]
pub struct RoutingArgs {
    /// Run the routing comparison instead of the demo workload.
    #[arg(long)]
    pub routing: bool,
    /// Weft's query API, for /api/signals and /api/route.
    #[arg(long, default_value = "http://127.0.0.1:4319")]
    pub api: String,
    /// Inference nodes in the fleet.
    #[arg(long, default_value_t = 4)]
    pub nodes: usize,
    /// Seconds of traffic per policy.
    #[arg(long, default_value_t = 30)]
    pub policy_secs: u64,
    /// Requests a node serves at once.
    #[arg(long, default_value_t = 4)]
    pub slots: usize,
    /// Each node's KV cache, in tokens.
    #[arg(long, default_value_t = 24_576)]
    pub cache_tokens: usize,
    /// Distinct system prompts the sessions share.
    #[arg(long, default_value_t = 16)]
    pub system_prompts: usize,
    /// Tokens of each system prompt.
    #[arg(long, default_value_t = 3_000)]
    pub system_tokens: usize,
    /// Request rate as a share of the fleet's capacity when nothing is cached.
    #[arg(long, default_value_t = 0.9)]
    pub load: f64,
    /// Hold every span this long before sending it: Weft's signals lag by it.
    #[arg(long, default_value_t = 0)]
    pub signal_delay_ms: u64,
    /// The token, when the server wants one (or set WEFT_TOKEN): an ingest
    /// token for the demo; with --routing, one that may also query (admin).
    #[arg(long, env = "WEFT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Prefill cost per uncached prompt token, and decode cost per output token.
const PREFILL_PER_TOKEN: Duration = Duration::from_micros(50);
const DECODE_PER_TOKEN: Duration = Duration::from_millis(1);
const MODEL: &str = "llama-3.1-8b-instruct";
/// How often least-loaded re-reads /api/signals (llm-d's picker: 50 ms).
const POLL: Duration = Duration::from_millis(50);
/// How often the span sender exports.
const EXPORT_EVERY: Duration = Duration::from_millis(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Policy {
    RoundRobin,
    LeastLoaded,
    Weft,
}

impl Policy {
    fn name(self) -> &'static str {
        match self {
            Policy::RoundRobin => "round-robin",
            Policy::LeastLoaded => "least-loaded",
            Policy::Weft => "weft",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Policy::RoundRobin => "rr",
            Policy::LeastLoaded => "ll",
            Policy::Weft => "weft",
        }
    }
}

/// A node's KV cache: prefixes (system prompts, conversation contexts) by
/// key, least recently used first out.
struct KvCache {
    capacity: usize,
    used: usize,
    /// Key → tokens, most recent at the back.
    entries: VecDeque<(String, usize)>,
}

impl KvCache {
    fn touch(&mut self, key: &str) -> Option<usize> {
        let at = self.entries.iter().position(|(k, _)| k == key)?;
        let entry = self.entries.remove(at)?;
        let tokens = entry.1;
        self.entries.push_back(entry);
        Some(tokens)
    }

    fn insert(&mut self, key: String, tokens: usize) {
        if let Some(at) = self.entries.iter().position(|(k, _)| *k == key)
            && let Some((_, old)) = self.entries.remove(at)
        {
            self.used -= old;
        }
        self.used += tokens;
        self.entries.push_back((key, tokens));
        while self.used > self.capacity {
            match self.entries.pop_front() {
                Some((_, t)) => self.used -= t,
                None => break,
            }
        }
    }
}

/// One request: a conversation's turn.
struct Job {
    conversation: String,
    turn: usize,
    system: String,
    system_tokens: usize,
    /// Tokens of the conversation before this turn (past turns and answers).
    history: usize,
    prompt: usize,
    output: usize,
    queued: Instant,
    queued_ns: i64,
    trace: [u8; 16],
    span: [u8; 8],
    done: oneshot::Sender<Served>,
}

/// What a node did with a request.
#[derive(Debug, Clone, Copy)]
struct Served {
    queue_wait: Duration,
    ttft: Duration,
    hit: bool,
    completed: Instant,
}

struct Node {
    name: String,
    queue: mpsc::UnboundedSender<Job>,
}

fn unix_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn text(key: &str, value: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(value.into()))
}

fn int(key: &str, value: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(value))
}

fn float(key: &str, value: f64) -> KeyValue {
    kv(key, any_value::Value::DoubleValue(value))
}

/// A span and when it may be sent.
type Outgoing = (Instant, Span);

/// Where the fleet's spans go: held for the signal delay, counted.
#[derive(Clone)]
struct Spans {
    tx: mpsc::UnboundedSender<Outgoing>,
    sent: Arc<AtomicUsize>,
    delay: Duration,
}

impl Spans {
    fn send(&self, span: Span) {
        if self.tx.send((Instant::now() + self.delay, span)).is_ok() {
            self.sent.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Serves one node's queue with `slots` workers.
fn start_node(name: String, args: &RoutingArgs, spans: Spans, closing: Arc<AtomicBool>) -> Node {
    let (tx, rx) = mpsc::unbounded_channel::<Job>();
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let cache = Arc::new(Mutex::new(KvCache {
        capacity: args.cache_tokens,
        used: 0,
        entries: VecDeque::new(),
    }));
    for _ in 0..args.slots {
        let (rx, cache, spans, name, closing) = (
            Arc::clone(&rx),
            Arc::clone(&cache),
            spans.clone(),
            name.clone(),
            Arc::clone(&closing),
        );
        tokio::spawn(async move {
            loop {
                let Some(job) = rx.lock().await.recv().await else {
                    return;
                };
                if closing.load(Ordering::Relaxed) {
                    // The run is over: what still waits is not served.
                    continue;
                }
                let started = Instant::now();
                let queue_wait = started - job.queued;
                let context_key = |turn: usize| format!("{}#{turn}", job.conversation);
                let cached = {
                    let Ok(mut cache) = cache.lock() else { return };
                    // A conversation's context extends its system prompt: both
                    // must be there for the context to count.
                    let system_hit = cache.touch(&job.system).is_some();
                    let context_hit =
                        system_hit && cache.touch(&context_key(job.turn - 1)).is_some();
                    // What this turn leaves in the cache once prefilled: the
                    // system prompt, and the conversation past it.
                    cache.insert(job.system.clone(), job.system_tokens);
                    cache.insert(
                        context_key(job.turn),
                        job.prompt - job.system_tokens + job.output,
                    );
                    match (system_hit, context_hit) {
                        (_, true) => job.system_tokens + job.history,
                        (true, false) => job.system_tokens,
                        _ => 0,
                    }
                };
                let prefill = PREFILL_PER_TOKEN * (job.prompt - cached) as u32;
                let decode = DECODE_PER_TOKEN * job.output as u32;
                tokio::time::sleep(prefill + decode).await;
                let ttft = queue_wait + prefill;
                let end_ns = job.queued_ns + (Instant::now() - job.queued).as_nanos() as i64;
                let attributes = vec![
                    text("gen_ai.operation.name", "chat"),
                    text("gen_ai.request.model", MODEL),
                    text("weft.node", &name),
                    kv("weft.kv_cache.hit", any_value::Value::BoolValue(cached > 0)),
                    float("weft.kv_cache.hit_ratio", cached as f64 / job.prompt as f64),
                    text("weft.kv_cache.prefix", &job.system),
                    text("gen_ai.conversation.id", &job.conversation),
                    float("weft.queue.wait_ms", queue_wait.as_secs_f64() * 1e3),
                    float("weft.ttft_ms", ttft.as_secs_f64() * 1e3),
                    int("gen_ai.usage.input_tokens", job.prompt as i64),
                    int("gen_ai.usage.cache_read.input_tokens", cached as i64),
                    int("gen_ai.usage.output_tokens", job.output as i64),
                ];
                let span = Span {
                    trace_id: job.trace.to_vec(),
                    span_id: job.span.to_vec(),
                    name: format!("chat {MODEL}"),
                    kind: span::SpanKind::Server as i32,
                    start_time_unix_nano: job.queued_ns as u64,
                    end_time_unix_nano: end_ns as u64,
                    attributes,
                    ..Default::default()
                };
                spans.send(span);
                let _ = job.done.send(Served {
                    queue_wait,
                    ttft,
                    hit: cached > 0,
                    completed: Instant::now(),
                });
            }
        });
    }
    Node { name, queue: tx }
}

/// Sends spans over OTLP/HTTP protobuf as they become due; counts what the
/// server acknowledged.
struct Sender {
    client: reqwest::Client,
    url: String,
    token: Option<String>,
    acknowledged: usize,
    refused: Vec<String>,
}

impl Sender {
    async fn send(&mut self, spans: Vec<Span>) {
        let count = spans.len();
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![text("service.name", "inference-fleet")],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let mut call = self
            .client
            .post(&self.url)
            .header("content-type", "application/x-protobuf")
            .body(request.encode_to_vec());
        if let Some(token) = &self.token {
            call = call.bearer_auth(token);
        }
        match call.send().await {
            Ok(response) if response.status().is_success() => {
                let rejected = response
                    .bytes()
                    .await
                    .ok()
                    .and_then(|b| ExportTraceServiceResponse::decode(b.as_ref()).ok())
                    .and_then(|r| r.partial_success)
                    .map_or(0, |p| p.rejected_spans as usize);
                self.acknowledged += count - rejected.min(count);
                if rejected > 0 {
                    self.refused.push(format!("{rejected} spans rejected"));
                }
            }
            Ok(response) => {
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                self.refused.push(format!("{status}: {}", body.trim()));
            }
            Err(e) => self.refused.push(e.to_string()),
        }
    }

    /// Exports due spans every few milliseconds until the channel closes,
    /// then what is left.
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Outgoing>) -> Self {
        let mut waiting: VecDeque<Outgoing> = VecDeque::new();
        let mut open = true;
        while open || !waiting.is_empty() {
            let deadline = tokio::time::sleep(EXPORT_EVERY);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    item = rx.recv(), if open => match item {
                        Some(item) => waiting.push_back(item),
                        None => open = false,
                    },
                    _ = &mut deadline => break,
                }
            }
            let now = Instant::now();
            let mut due = Vec::new();
            // Spans are queued in due order but for a few microseconds.
            while waiting.front().is_some_and(|(at, _)| *at <= now || !open) {
                if let Some((_, span)) = waiting.pop_front() {
                    due.push(span);
                }
            }
            for chunk in due.chunks(512) {
                self.send(chunk.to_vec()).await;
            }
        }
        self
    }
}

/// What a policy knows of the fleet to choose a node.
struct Chooser {
    policy: Policy,
    nodes: Vec<String>,
    next: AtomicUsize,
    client: reqwest::Client,
    api: String,
    token: Option<String>,
    /// Least-loaded's view: node → (in flight, median queue wait ns).
    load: Mutex<HashMap<String, (u64, i64)>>,
    /// Time spent asking /api/route, per call.
    advice_micros: Mutex<Vec<u64>>,
    fallbacks: AtomicUsize,
}

impl Chooser {
    fn round_robin(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % self.nodes.len()
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> anyhow::Result<serde_json::Value> {
        let mut call = self.client.get(format!("{}{path}", self.api)).query(query);
        if let Some(token) = &self.token {
            call = call.bearer_auth(token);
        }
        let response = call.send().await?;
        let status = response.status();
        anyhow::ensure!(
            status.is_success(),
            "{path} answered {status}: {}",
            response.text().await.unwrap_or_default()
        );
        Ok(response.json().await?)
    }

    /// Least-loaded's poll of /api/signals.
    async fn refresh_load(&self) -> anyhow::Result<()> {
        let rows = self.get("/api/signals", &[("window", "10s")]).await?;
        let mut view = HashMap::new();
        for row in rows.as_array().into_iter().flatten() {
            if let Some(node) = row["node"].as_str() {
                view.insert(
                    node.to_owned(),
                    (
                        row["in_flight"].as_u64().unwrap_or(0),
                        row["queue_wait_p50_ns"].as_i64().unwrap_or(0),
                    ),
                );
            }
        }
        if let Ok(mut load) = self.load.lock() {
            *load = view;
        }
        Ok(())
    }

    async fn choose(&self, system: &str, conversation: &str) -> anyhow::Result<usize> {
        match self.policy {
            Policy::RoundRobin => Ok(self.round_robin()),
            Policy::LeastLoaded => {
                let start = self.round_robin();
                let load = self.load.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                let n = self.nodes.len();
                Ok((0..n)
                    .map(|i| (start + i) % n)
                    .min_by_key(|i| load.get(&self.nodes[*i]).copied().unwrap_or((0, 0)))
                    .unwrap_or(start))
            }
            Policy::Weft => {
                let asked = Instant::now();
                let advice = self
                    .get(
                        "/api/route",
                        &[
                            ("model", MODEL),
                            ("prefix", system),
                            ("conversation", conversation),
                        ],
                    )
                    .await?;
                if let Ok(mut times) = self.advice_micros.lock() {
                    times.push(asked.elapsed().as_micros() as u64);
                }
                let best = advice.as_array().into_iter().flatten().find_map(|a| {
                    let node = a["node"].as_str()?;
                    self.nodes.iter().position(|n| n == node)
                });
                Ok(best.unwrap_or_else(|| {
                    self.fallbacks.fetch_add(1, Ordering::Relaxed);
                    self.round_robin()
                }))
            }
        }
    }
}

/// One policy's outcome.
#[derive(Debug, Default)]
struct Outcome {
    requests: usize,
    completed: usize,
    hits: usize,
    ttft_ms: Vec<f64>,
    queue_ms: Vec<f64>,
    acknowledged: usize,
    sent: usize,
    refused: Vec<String>,
    advice_micros: Vec<u64>,
    fallbacks: usize,
}

fn quantile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    values[((values.len() - 1) as f64 * q).round() as usize]
}

struct Workload {
    /// Start offsets of the conversations, their system prompt and turns.
    conversations: Vec<(Duration, usize, usize)>,
    seed: u64,
}

fn workload(args: &RoutingArgs, seed: u64) -> (Workload, f64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // Mean service time with nothing cached: the mean prompt of a mean turn.
    let mean_turns = 4.0;
    let mean_prompt = args.system_tokens as f64 + (mean_turns - 1.0) / 2.0 * 350.0 + 200.0;
    let service =
        mean_prompt * PREFILL_PER_TOKEN.as_secs_f64() + 150.0 * DECODE_PER_TOKEN.as_secs_f64();
    let capacity = (args.nodes * args.slots) as f64 / service;
    let rate = args.load * capacity / mean_turns;
    let mut conversations = Vec::new();
    let mut at = 0.0;
    let end = args.policy_secs as f64;
    loop {
        at += -(1.0 - rng.random::<f64>()).ln() / rate;
        if at >= end {
            break;
        }
        conversations.push((
            Duration::from_secs_f64(at),
            rng.random_range(0..args.system_prompts),
            rng.random_range(2..=6),
        ));
    }
    (
        Workload {
            conversations,
            seed,
        },
        capacity * args.load,
    )
}

async fn run_policy(
    args: &RoutingArgs,
    policy: Policy,
    work: &Workload,
    otlp: &str,
) -> anyhow::Result<Outcome> {
    let delay = Duration::from_millis(args.signal_delay_ms);
    let (spans_tx, spans_rx) = mpsc::unbounded_channel();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let sender = tokio::spawn(
        Sender {
            client: client.clone(),
            url: format!("{}/v1/traces", otlp.trim_end_matches('/')),
            token: args.token.clone(),
            acknowledged: 0,
            refused: Vec::new(),
        }
        .run(spans_rx),
    );
    let spans = Spans {
        tx: spans_tx,
        sent: Arc::default(),
        delay,
    };
    let closing = Arc::new(AtomicBool::new(false));
    let nodes: Vec<Node> = (0..args.nodes)
        .map(|i| {
            let name = format!("{}-gpu-{i}", policy.short());
            start_node(name, args, spans.clone(), Arc::clone(&closing))
        })
        .collect();
    let chooser = Arc::new(Chooser {
        policy,
        nodes: nodes.iter().map(|n| n.name.clone()).collect(),
        next: AtomicUsize::new(0),
        client,
        api: args.api.trim_end_matches('/').to_owned(),
        token: args.token.clone(),
        load: Mutex::new(HashMap::new()),
        advice_micros: Mutex::new(Vec::new()),
        fallbacks: AtomicUsize::new(0),
    });
    let queues: Arc<Vec<mpsc::UnboundedSender<Job>>> =
        Arc::new(nodes.iter().map(|n| n.queue.clone()).collect());
    let names: Arc<Vec<String>> = Arc::new(nodes.iter().map(|n| n.name.clone()).collect());
    let begin = Instant::now();
    let end = begin + Duration::from_secs(args.policy_secs);
    let poller = (policy == Policy::LeastLoaded).then(|| {
        let chooser = Arc::clone(&chooser);
        tokio::spawn(async move {
            while Instant::now() < end {
                if let Err(e) = chooser.refresh_load().await {
                    eprintln!("  least-loaded could not read /api/signals: {e}");
                }
                tokio::time::sleep(POLL).await;
            }
        })
    });
    let served: Arc<Mutex<Vec<(Served, Instant)>>> = Arc::default();
    let requests = Arc::new(AtomicUsize::new(0));
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut sessions = Vec::new();
    for (n, (offset, system, turns)) in work.conversations.iter().copied().enumerate() {
        let (chooser, queues, names, spans, served, requests, failures) = (
            Arc::clone(&chooser),
            Arc::clone(&queues),
            Arc::clone(&names),
            spans.clone(),
            Arc::clone(&served),
            Arc::clone(&requests),
            Arc::clone(&failures),
        );
        let args = args.clone();
        let seed = work.seed ^ (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        sessions.push(tokio::spawn(async move {
            tokio::time::sleep_until((begin + offset).into()).await;
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let conversation = format!("{}-conv-{n}", policy.short());
            let system_key = format!("{}-system-{system}", policy.short());
            let mut history = 0usize;
            for turn in 1..=turns {
                if Instant::now() >= end {
                    return;
                }
                let user = rng.random_range(100..300);
                let output = rng.random_range(50..250);
                let prompt = args.system_tokens + history + user;
                let node = match chooser.choose(&system_key, &conversation).await {
                    Ok(node) => node,
                    Err(e) => {
                        if let Ok(mut f) = failures.lock() {
                            f.push(e.to_string());
                        }
                        chooser.round_robin()
                    }
                };
                // Ids fresh for every run: the workload repeats, the spans do not
                // (the same ids again would be dropped as a client's retries).
                let (trace, span, phase): ([u8; 16], [u8; 8], [u8; 8]) = {
                    let mut ids = rand::rng();
                    (ids.random(), ids.random(), ids.random())
                };
                let queued_ns = unix_ns();
                // The server's queue phase: Weft counts the call in flight.
                spans.send(Span {
                    trace_id: trace.to_vec(),
                    span_id: phase.to_vec(),
                    parent_span_id: span.to_vec(),
                    name: "enqueue".into(),
                    kind: span::SpanKind::Internal as i32,
                    start_time_unix_nano: queued_ns as u64,
                    end_time_unix_nano: queued_ns as u64,
                    attributes: vec![
                        text("weft.kind", "other"),
                        text("weft.node", &names[node]),
                        text("gen_ai.request.model", MODEL),
                    ],
                    ..Default::default()
                });
                let (done, outcome) = oneshot::channel();
                requests.fetch_add(1, Ordering::Relaxed);
                let queued = Instant::now();
                let job = Job {
                    conversation: conversation.clone(),
                    turn,
                    system: system_key.clone(),
                    system_tokens: args.system_tokens,
                    history,
                    prompt,
                    output,
                    queued,
                    queued_ns,
                    trace,
                    span,
                    done,
                };
                if queues[node].send(job).is_err() {
                    return;
                }
                let Ok(result) = outcome.await else { return };
                if let Ok(mut s) = served.lock() {
                    s.push((result, queued));
                }
                history = prompt - args.system_tokens + output;
                let think = Duration::from_millis(rng.random_range(500..2_000));
                tokio::time::sleep(think).await;
            }
        }));
    }
    tokio::time::sleep_until(end.into()).await;
    // Requests queued by the end finish (their spans are sent); the table
    // counts what completed in time.
    let drain = Instant::now() + Duration::from_secs(10);
    for session in &mut sessions {
        let _ = tokio::time::timeout_at(drain.into(), session).await;
    }
    // Past the drain: requests still queued are dropped, sessions ended.
    closing.store(true, Ordering::Relaxed);
    for session in &sessions {
        session.abort();
    }
    if let Some(poller) = poller {
        poller.abort();
    }
    let sent = Arc::clone(&spans.sent);
    drop(nodes);
    drop(queues);
    drop(spans);
    let sender = tokio::time::timeout(Duration::from_secs(30), sender)
        .await
        .context("the span sender did not finish")??;
    let served = served.lock().map(|s| s.clone()).unwrap_or_default();
    let mut outcome = Outcome {
        requests: requests.load(Ordering::Relaxed),
        acknowledged: sender.acknowledged,
        refused: sender.refused,
        advice_micros: chooser
            .advice_micros
            .lock()
            .map(|t| t.clone())
            .unwrap_or_default(),
        fallbacks: chooser.fallbacks.load(Ordering::Relaxed),
        ..Outcome::default()
    };
    outcome.sent = sent.load(Ordering::Relaxed);
    for (s, _) in &served {
        outcome.completed += usize::from(s.completed <= end);
        outcome.hits += usize::from(s.hit);
        outcome.ttft_ms.push(s.ttft.as_secs_f64() * 1e3);
        outcome.queue_ms.push(s.queue_wait.as_secs_f64() * 1e3);
    }
    if let Ok(f) = failures.lock()
        && let Some(first) = f.first()
    {
        outcome
            .refused
            .push(format!("{} routing calls failed, first: {first}", f.len()));
    }
    Ok(outcome)
}

/// Runs the three policies one after the other and prints the table.
pub async fn run(args: RoutingArgs, otlp: String, seed: u64) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.nodes >= 1 && args.slots >= 1,
        "--nodes and --slots must be at least 1"
    );
    anyhow::ensure!(
        args.load > 0.0 && args.load.is_finite(),
        "--load must be positive"
    );
    let (work, rate) = workload(&args, seed);
    let turns: usize = work.conversations.iter().map(|c| c.2).sum();
    println!(
        "fleet: {} nodes x {} slots, KV cache {} tokens each; {} system prompts of {} tokens; \
         prefill {} us/token, decode {} ms/token",
        args.nodes,
        args.slots,
        args.cache_tokens,
        args.system_prompts,
        args.system_tokens,
        PREFILL_PER_TOKEN.as_micros(),
        DECODE_PER_TOKEN.as_millis()
    );
    println!(
        "workload: {} conversations ({turns} turns at most) over {} s per policy, ~{rate:.1} requests/s \
         ({:.0}% of the uncached capacity); signal delay {} ms; seed {seed}",
        work.conversations.len(),
        args.policy_secs,
        args.load * 100.0,
        args.signal_delay_ms
    );
    let mut rows = Vec::new();
    for policy in [Policy::RoundRobin, Policy::LeastLoaded, Policy::Weft] {
        eprintln!("routing {} for {} s ...", policy.name(), args.policy_secs);
        let outcome = run_policy(&args, policy, &work, &otlp).await?;
        if outcome.acknowledged < outcome.sent || !outcome.refused.is_empty() {
            anyhow::bail!(
                "{}: Weft acknowledged {} of {} spans: {}",
                policy.name(),
                outcome.acknowledged,
                outcome.sent,
                outcome.refused.join("; ")
            );
        }
        rows.push((policy, outcome));
    }
    println!();
    println!(
        "| policy       | KV-cache hit rate | TTFT p50 | TTFT p99 | queue wait p99 | completed requests |"
    );
    println!(
        "|--------------|------------------:|---------:|---------:|---------------:|-------------------:|"
    );
    for (policy, o) in &mut rows {
        let hit = 100.0 * o.hits as f64 / o.ttft_ms.len().max(1) as f64;
        println!(
            "| {:<12} | {:>16.1}% | {:>5.0} ms | {:>5.0} ms | {:>11.0} ms | {:>18} |",
            policy.name(),
            hit,
            quantile(&mut o.ttft_ms, 0.5),
            quantile(&mut o.ttft_ms, 0.99),
            quantile(&mut o.queue_ms, 0.99),
            o.completed
        );
    }
    println!();
    for (policy, o) in &mut rows {
        let mut advice: Vec<f64> = o.advice_micros.iter().map(|m| *m as f64).collect();
        let extra = if advice.is_empty() {
            String::new()
        } else {
            format!(
                "; /api/route round trip p50 {:.0} us, p99 {:.0} us; {} calls without advice (round-robin)",
                quantile(&mut advice, 0.5),
                quantile(&mut advice, 0.99),
                o.fallbacks
            )
        };
        println!(
            "{}: {} requests, {} spans acknowledged by Weft{extra}",
            policy.name(),
            o.requests,
            o.acknowledged
        );
    }
    Ok(())
}
