//! `weft demo`: sends the demo workload through the OpenTelemetry SDK and a
//! real OTLP exporter (gRPC, HTTP protobuf or HTTP JSON), as an application
//! would: spans, and the GenAI content events of its model calls as OTLP log
//! records. It waits for the exporters every few workflows, so their queues
//! never overflow, and reports what the server acknowledged.

use std::collections::HashMap;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::bail;
use clap::Args;
use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _};
use opentelemetry::trace::{
    Link, SpanContext, SpanKind, Status, TraceContextExt, Tracer, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{BatchLogProcessor, SdkLoggerProvider};
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider};

pub use crate::demo_export::DemoProtocol;
use crate::demo_export::{Counted, Destination, Tally};
use crate::workload::{Kind, PlannedSpan, Value, Workflow, workflows};

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// OTLP endpoint (default http://127.0.0.1:4317 for grpc, http://127.0.0.1:4318 for http;
    /// https://… for a server with TLS).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Number of workflows to send.
    #[arg(long, default_value_t = 30)]
    pub workflows: usize,
    /// Exporter protocol.
    #[arg(long, value_enum, default_value_t = DemoProtocol::Grpc)]
    pub protocol: DemoProtocol,
    /// Seed for the generated workload.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// With an https:// endpoint: the CA certificate (PEM) the server's
    /// certificate is checked against, besides the system's (or set WEFT_CA_CERT).
    #[arg(long, env = "WEFT_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    #[command(flatten)]
    pub routing: crate::routing::RoutingArgs,
}

/// Workflows emitted between waits for the exporters: few enough that the
/// spans of one round always fit the exporters' queues ([`QUEUE`]).
const ROUND: usize = 20;
/// The exporters' queue, in spans or events per service.
const QUEUE: usize = 8_192;

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    if args.routing.routing {
        let otlp = args
            .endpoint
            .clone()
            .unwrap_or_else(|| "http://127.0.0.1:4318".into());
        return crate::runtime()?.block_on(crate::routing::run(args.routing, otlp, args.seed));
    }
    let endpoint = args
        .endpoint
        .clone()
        .unwrap_or_else(|| match args.protocol {
            DemoProtocol::Grpc => "http://127.0.0.1:4317".into(),
            _ => "http://127.0.0.1:4318".into(),
        });
    let destination = Destination::new(
        endpoint,
        args.protocol,
        args.routing.token.clone(),
        args.ca_cert.as_deref(),
    )?;
    let plan = workflows(args.workflows, args.seed);
    let runtime = crate::runtime()?;
    // tonic needs a runtime; the blocking HTTP client must not run inside one.
    let _guard = (args.protocol == DemoProtocol::Grpc).then(|| runtime.enter());
    let total_spans: usize = plan.iter().map(|w| w.spans.len()).sum();
    let total_events: usize = plan
        .iter()
        .flat_map(|w| &w.spans)
        .map(|s| s.events.len())
        .sum();
    eprintln!(
        "sending {} workflows ({total_spans} spans, {total_events} content events) to {} over {}",
        plan.len(),
        destination.endpoint,
        destination.protocol
    );
    let mut services = Services::new(&destination);
    let progress = progress_bar(plan.len() as u64);
    let epoch = SystemTime::now() - span_of(&plan);
    let mut trace_ids = Vec::new();
    for (i, workflow) in plan.iter().enumerate() {
        let start = epoch + Duration::from_millis(200 * i as u64);
        trace_ids.extend(emit(workflow, start, &mut services)?);
        progress.inc(1);
        if (i + 1) % ROUND == 0 {
            services.wait(&destination)?;
        }
    }
    services.wait(&destination)?;
    progress.finish_and_clear();
    services.shutdown();

    let mut kinds = std::collections::BTreeMap::<&str, usize>::new();
    for w in &plan {
        *kinds.entry(w.name).or_default() += 1;
    }
    let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let (spans, events) = (
        services.spans.acknowledged(),
        services.events.acknowledged(),
    );
    eprintln!(
        "sent {total_spans} spans in {} traces ({}); the server acknowledged {spans} spans \
         and {events} content events",
        trace_ids.len(),
        kinds.join(", ")
    );
    if spans != total_spans || events != total_events {
        bail!(
            "the server acknowledged {spans} of {total_spans} spans and {events} of \
             {total_events} content events{}",
            services
                .refusal()
                .map(|r| format!("; it answered: {r}"))
                .unwrap_or_default()
        );
    }
    if let Some(first) = trace_ids.first() {
        eprintln!(
            "try: weft sql \"SELECT name, ai_kind, gen_ai_model, node, kv_cache_hit FROM spans WHERE trace_id = '{first}'\""
        );
        eprintln!("     weft lineage {first}");
        eprintln!("     weft tui");
    }
    Ok(())
}

/// One bar on a terminal; nothing when stderr is not one (the summary says it all).
fn progress_bar(workflows: u64) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(workflows);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:40} {pos}/{len} workflows  {per_sec}  eta {eta}",
    ) {
        bar.set_style(style);
    }
    bar
}

/// Each service's tracer (and logger, for services with content events),
/// created as the workload first names the service.
struct Services<'d> {
    destination: &'d Destination,
    tracers: HashMap<&'static str, SdkTracerProvider>,
    loggers: HashMap<&'static str, SdkLoggerProvider>,
    spans: Arc<Tally>,
    events: Arc<Tally>,
}

impl<'d> Services<'d> {
    fn new(destination: &'d Destination) -> Self {
        Self {
            destination,
            tracers: HashMap::new(),
            loggers: HashMap::new(),
            spans: Arc::default(),
            events: Arc::default(),
        }
    }

    fn resource(service: &'static str) -> Resource {
        Resource::builder()
            .with_service_name(service)
            .with_attributes([
                KeyValue::new("deployment.environment.name", "demo"),
                KeyValue::new("weft.workload.id", format!("spiffe://weft.demo/{service}")),
            ])
            .build()
    }

    fn tracer(&mut self, service: &'static str) -> anyhow::Result<&SdkTracerProvider> {
        if !self.tracers.contains_key(service) {
            let exporter = Counted {
                inner: self.destination.spans(&self.spans)?,
                tally: self.spans.clone(),
            };
            let config = opentelemetry_sdk::trace::BatchConfigBuilder::default()
                .with_max_queue_size(QUEUE)
                .build();
            let processor = BatchSpanProcessor::builder(exporter)
                .with_batch_config(config)
                .build();
            let provider = SdkTracerProvider::builder()
                .with_span_processor(processor)
                .with_resource(Self::resource(service))
                .build();
            self.tracers.insert(service, provider);
        }
        Ok(&self.tracers[service])
    }

    fn logger(&mut self, service: &'static str) -> anyhow::Result<&SdkLoggerProvider> {
        if !self.loggers.contains_key(service) {
            let exporter = Counted {
                inner: self.destination.logs(&self.events)?,
                tally: self.events.clone(),
            };
            let config = opentelemetry_sdk::logs::BatchConfigBuilder::default()
                .with_max_queue_size(QUEUE)
                .build();
            let processor = BatchLogProcessor::builder(exporter)
                .with_batch_config(config)
                .build();
            let provider = SdkLoggerProvider::builder()
                .with_log_processor(processor)
                .with_resource(Self::resource(service))
                .build();
            self.loggers.insert(service, provider);
        }
        Ok(&self.loggers[service])
    }

    /// Waits until every exporter has sent what it holds: the demo's
    /// backpressure. A refusal ends the demo with the server's answer.
    fn wait(&self, destination: &Destination) -> anyhow::Result<()> {
        let flushed: Vec<OTelSdkResult> = self
            .tracers
            .values()
            .map(SdkTracerProvider::force_flush)
            .chain(self.loggers.values().map(SdkLoggerProvider::force_flush))
            .collect();
        if flushed.iter().all(Result::is_ok) {
            return Ok(());
        }
        let answer = self
            .refusal()
            .or_else(|| {
                flushed
                    .into_iter()
                    .find_map(Result::err)
                    .map(|e| e.to_string())
            })
            .unwrap_or_default();
        bail!(
            "{} did not acknowledge what the demo sent: {answer}{}",
            destination.endpoint,
            advice(&answer)
        )
    }

    fn refusal(&self) -> Option<String> {
        self.spans
            .last_refusal()
            .or_else(|| self.events.last_refusal())
    }

    fn shutdown(&self) {
        for provider in self.tracers.values() {
            let _ = provider.shutdown();
        }
        for provider in self.loggers.values() {
            let _ = provider.shutdown();
        }
    }
}

/// What to do about a refusal, judged from the answer's words.
fn advice(answer: &str) -> &'static str {
    let lower = answer.to_ascii_lowercase();
    if ["unauthenticated", "401", "unauthorized"]
        .iter()
        .any(|w| lower.contains(w))
    {
        " (pass an ingest token with --token or WEFT_TOKEN)"
    } else if ["permission", "403", "forbidden"]
        .iter()
        .any(|w| lower.contains(w))
    {
        " (the token is not an ingest token: use one with role = \"ingest\" or \"admin\")"
    } else if ["certificate", "tls", "handshake", "unknownissuer"]
        .iter()
        .any(|w| lower.contains(w))
    {
        " (for a server with a private CA, pass --ca-cert ca.pem)"
    } else if [
        "connect",
        "refused",
        "transport",
        "dns",
        "timed out",
        "unavailable",
    ]
    .iter()
    .any(|w| lower.contains(w))
    {
        " (is `weft serve` running there, and is it the OTLP port: 4317 for grpc, 4318 for http?)"
    } else {
        ""
    }
}

fn key_value(key: &'static str, value: &Value) -> KeyValue {
    match value {
        Value::Str(s) => KeyValue::new(key, s.clone()),
        Value::Int(i) => KeyValue::new(key, *i),
        Value::Float(f) => KeyValue::new(key, *f),
        Value::Bool(b) => KeyValue::new(key, *b),
    }
}

/// `offset_ns` after (or, for a skewed clock, before) `base`.
fn at(base: SystemTime, offset_ns: i64) -> SystemTime {
    let offset = Duration::from_nanos(offset_ns.unsigned_abs());
    if offset_ns >= 0 {
        base + offset
    } else {
        base - offset
    }
}

/// Emits one workflow; returns the hex ids of its traces.
fn emit(
    workflow: &Workflow,
    start: SystemTime,
    services: &mut Services,
) -> anyhow::Result<Vec<String>> {
    let mut contexts: Vec<SpanContext> = Vec::with_capacity(workflow.spans.len());
    let mut traces = Vec::new();
    for planned in &workflow.spans {
        let tracer = services.tracer(planned.service)?.tracer("weft-demo");
        let parent_cx = match planned.parent {
            Some(p) => Context::new().with_remote_span_context(contexts[p].clone()),
            None => Context::new(),
        };
        let begin = at(start, planned.start_ns);
        let kind = match planned.kind {
            Kind::Server => SpanKind::Server,
            Kind::Client => SpanKind::Client,
            Kind::Internal => SpanKind::Internal,
        };
        let links = planned
            .links
            .iter()
            .map(|l| Link::with_context(contexts[*l].clone()))
            .collect();
        let mut span = tracer
            .span_builder(planned.name.clone())
            .with_kind(kind)
            .with_start_time(begin)
            .with_attributes(planned.attributes.iter().map(|(k, v)| key_value(k, v)))
            .with_links(links)
            .start_with_context(&tracer, &parent_cx);
        if let Some(message) = &planned.error {
            opentelemetry::trace::Span::set_status(&mut span, Status::error(message.clone()));
        }
        let context = opentelemetry::trace::Span::span_context(&span).clone();
        if planned.parent.is_none() {
            traces.push(context.trace_id().to_string());
        }
        opentelemetry::trace::Span::end_with_timestamp(
            &mut span,
            begin + Duration::from_nanos(planned.duration_ns as u64),
        );
        if !planned.events.is_empty() {
            content_events(planned, begin, &context, services)?;
        }
        contexts.push(context);
    }
    Ok(traces)
}

/// The span's GenAI content events, as the OpenTelemetry GenAI
/// instrumentations send them: log records carrying the span's context.
fn content_events(
    planned: &PlannedSpan,
    begin: SystemTime,
    span: &SpanContext,
    services: &mut Services,
) -> anyhow::Result<()> {
    let logger = services.logger(planned.service)?.logger("weft-demo");
    let provider = planned
        .attributes
        .iter()
        .find(|(k, _)| *k == "gen_ai.provider.name")
        .map(|(_, v)| match v {
            Value::Str(s) => s.clone(),
            _ => String::new(),
        });
    for event in &planned.events {
        let mut record = logger.create_log_record();
        let time = at(begin, event.offset_ns);
        record.set_event_name(event.name);
        record.set_timestamp(time);
        record.set_observed_timestamp(time);
        record.set_body(any_value(&event.body));
        record.set_trace_context(span.trace_id(), span.span_id(), Some(span.trace_flags()));
        if let Some(p) = &provider {
            record.add_attribute("gen_ai.provider.name", p.clone());
        }
        logger.emit(record);
    }
    Ok(())
}

/// A JSON body as an OTLP value (the workload's bodies are two levels deep).
fn any_value(json: &serde_json::Value) -> AnyValue {
    match json {
        serde_json::Value::Null => AnyValue::String("".into()),
        serde_json::Value::Bool(b) => AnyValue::Boolean(*b),
        serde_json::Value::Number(n) => n
            .as_i64()
            .map(AnyValue::Int)
            .unwrap_or_else(|| AnyValue::Double(n.as_f64().unwrap_or(0.0))),
        serde_json::Value::String(s) => AnyValue::String(s.clone().into()),
        serde_json::Value::Array(items) => {
            AnyValue::ListAny(Box::new(items.iter().map(any_value).collect()))
        }
        serde_json::Value::Object(fields) => AnyValue::Map(Box::new(
            fields
                .iter()
                .map(|(k, v)| (k.clone().into(), any_value(v)))
                .collect(),
        )),
    }
}

/// How long before now the first workflow starts so that the last one ends
/// now: workflows start 200 ms apart, so the demo reads as work that just
/// happened (`/api/signals?since=5m` right after it shows it).
fn span_of(plan: &[Workflow]) -> Duration {
    let longest = plan
        .iter()
        .flat_map(|w| &w.spans)
        .map(|s| s.start_ns.saturating_add(s.duration_ns))
        .max()
        .unwrap_or(0);
    let stagger = 200 * plan.len().saturating_sub(1) as u64;
    Duration::from_millis(stagger) + Duration::from_nanos(longest.max(0) as u64)
}
