//! `weft demo`: sends the demo workload through the OpenTelemetry SDK and a
//! real OTLP exporter (gRPC, HTTP protobuf or HTTP JSON), as an application would.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use opentelemetry::trace::{
    Link, SpanContext, SpanKind, Status, TraceContextExt, Tracer, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;

use crate::workload::{Kind, Value, Workflow, workflows};

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// OTLP endpoint (default http://127.0.0.1:4317 for grpc, http://127.0.0.1:4318 for http).
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
    #[command(flatten)]
    pub routing: crate::routing::RoutingArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum DemoProtocol {
    Grpc,
    HttpProto,
    HttpJson,
}

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
    let plan = workflows(args.workflows, args.seed);
    let runtime = crate::runtime()?;
    // tonic needs a runtime; the blocking HTTP client must not run inside one.
    let _guard = (args.protocol == DemoProtocol::Grpc).then(|| runtime.enter());
    let mut providers: HashMap<&'static str, SdkTracerProvider> = HashMap::new();
    let epoch = SystemTime::now() - span_of(&plan);
    let total_spans: usize = plan.iter().map(|w| w.spans.len()).sum();
    eprintln!(
        "sending {} workflows ({total_spans} spans) to {endpoint} over {:?}",
        plan.len(),
        args.protocol
    );
    let mut trace_ids = Vec::new();
    for (i, workflow) in plan.iter().enumerate() {
        let start = epoch + Duration::from_millis(200 * i as u64);
        for service in workflow.spans.iter().map(|s| s.service) {
            if !providers.contains_key(service) {
                providers.insert(service, provider(service, &endpoint, args.protocol)?);
            }
        }
        trace_ids.extend(emit(workflow, start, &providers));
        if (i + 1) % 25 == 0 || i + 1 == plan.len() {
            eprintln!("  {}/{} workflows", i + 1, plan.len());
        }
    }
    for (service, provider) in providers {
        provider.force_flush().with_context(|| {
            format!(
                "could not export {service} spans to {endpoint}; is `weft serve` running there?"
            )
        })?;
        provider.shutdown().ok();
    }
    let mut kinds = std::collections::BTreeMap::<&str, usize>::new();
    for w in &plan {
        *kinds.entry(w.name).or_default() += 1;
    }
    let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
    eprintln!(
        "sent {total_spans} spans in {} traces ({})",
        trace_ids.len(),
        kinds.join(", ")
    );
    if let Some(first) = trace_ids.first() {
        eprintln!(
            "try: weft sql \"SELECT name, ai_kind, gen_ai_model, node, kv_cache_hit FROM spans WHERE trace_id = '{first}'\""
        );
    }
    Ok(())
}

fn provider(
    service: &'static str,
    endpoint: &str,
    protocol: DemoProtocol,
) -> anyhow::Result<SdkTracerProvider> {
    let exporter = match protocol {
        DemoProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build(),
        DemoProtocol::HttpProto | DemoProtocol::HttpJson => {
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(if protocol == DemoProtocol::HttpJson {
                    Protocol::HttpJson
                } else {
                    Protocol::HttpBinary
                })
                .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
                .build()
        }
    }
    .with_context(|| format!("cannot build an OTLP exporter for {endpoint}"))?;
    let resource = Resource::builder()
        .with_service_name(service)
        .with_attributes([
            KeyValue::new("deployment.environment.name", "demo"),
            KeyValue::new("weft.workload.id", format!("spiffe://weft.demo/{service}")),
        ])
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

fn key_value(key: &'static str, value: &Value) -> KeyValue {
    match value {
        Value::Str(s) => KeyValue::new(key, s.clone()),
        Value::Int(i) => KeyValue::new(key, *i),
        Value::Float(f) => KeyValue::new(key, *f),
        Value::Bool(b) => KeyValue::new(key, *b),
    }
}

/// Emits one workflow; returns the hex ids of its traces.
fn emit(
    workflow: &Workflow,
    start: SystemTime,
    providers: &HashMap<&'static str, SdkTracerProvider>,
) -> Vec<String> {
    let mut contexts: Vec<SpanContext> = Vec::with_capacity(workflow.spans.len());
    let mut traces = Vec::new();
    for planned in &workflow.spans {
        let Some(provider) = providers.get(planned.service) else {
            continue;
        };
        let tracer = provider.tracer("weft-demo");
        let parent_cx = match planned.parent {
            Some(p) => Context::new().with_remote_span_context(contexts[p].clone()),
            None => Context::new(),
        };
        let begin = start + Duration::from_nanos(planned.start_ns as u64);
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
        contexts.push(context);
    }
    traces
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
