//! The signals against exact computation on generated spans.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::sync::Arc;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use weft_schemas::span::StatusCode;
use weft_schemas::{AiFields, AiKind, Span, SpanId, SpanKind, TraceId, spans_to_batch};

use crate::sketch::RELATIVE_ERROR;
use crate::{Filter, RouteRequest, Signals, SignalsConfig};

const S: i64 = 1_000_000_000;
const MS: i64 = 1_000_000;
const T0: i64 = 1_800_000_000 * S;

fn id<T: for<'a> TryFrom<&'a [u8]>>(n: u64, len: usize) -> T {
    let mut bytes = vec![0u8; len];
    bytes[len - 8..].copy_from_slice(&n.to_be_bytes());
    bytes[0] = 1;
    T::try_from(&bytes).ok().unwrap()
}

struct Call {
    trace: u64,
    span: u64,
    parent: Option<u64>,
    name: &'static str,
    start: i64,
    end: i64,
    error: bool,
    ai: AiFields,
}

fn span(c: &Call) -> Span {
    Span {
        trace_id: id::<TraceId>(c.trace, 16),
        span_id: id::<SpanId>(c.span, 8),
        parent_span_id: c.parent.map(|p| id::<SpanId>(p, 8)),
        trace_state: String::new(),
        name: c.name.into(),
        kind: SpanKind::Internal,
        start_time_unix_nano: c.start,
        end_time_unix_nano: c.end,
        status_code: if c.error {
            StatusCode::Error
        } else {
            StatusCode::Unset
        },
        status_message: String::new(),
        service_name: Some("fleet".into()),
        resource_attributes: Arc::new(Vec::new()),
        scope_name: String::new(),
        scope_version: String::new(),
        attributes: Vec::new(),
        events: Vec::new(),
        links: Vec::new(),
        ai: c.ai.clone(),
    }
}

fn llm(node: &str, model: &str) -> AiFields {
    AiFields {
        ai_kind: Some(AiKind::Llm),
        node: Some(node.into()),
        gen_ai_model: Some(model.into()),
        ..AiFields::default()
    }
}

fn observe(signals: &Signals, calls: &[Call], now: i64) {
    let spans: Vec<Span> = calls.iter().map(span).collect();
    signals
        .observe_at(&spans_to_batch(&spans).unwrap(), None, now)
        .unwrap();
}

fn exact_quantile(values: &mut [i64], q: f64) -> i64 {
    values.sort_unstable();
    values[(q * (values.len() as f64 - 1.0)) as usize]
}

fn close(got: Option<i64>, want: i64, what: &str) {
    let got = got.unwrap_or_else(|| panic!("{what}: no value"));
    let error = (got - want).abs() as f64 / want.max(1) as f64;
    assert!(
        error <= RELATIVE_ERROR + 1e-9,
        "{what}: {got} vs exact {want}"
    );
}

#[test]
fn every_window_agrees_with_exact_computation_over_the_same_spans() {
    let signals = Signals::new(SignalsConfig::default()).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(22);
    let nodes = ["gpu-a", "gpu-b", "gpu-c"];
    let mut all: Vec<(Call, i64)> = Vec::new();
    // Six minutes of calls, heard 0–2 s after they end, in batches of 50.
    let mut t = T0;
    let mut n = 0u64;
    while t < T0 + 360 * S {
        let mut batch = Vec::new();
        for _ in 0..50 {
            n += 1;
            let node = nodes[rng.random_range(0..3)];
            let duration = rng.random_range(20 * MS..900 * MS);
            let end = t - rng.random_range(0..2 * S);
            let mut ai = llm(node, if n.is_multiple_of(2) { "m-1" } else { "m-2" });
            ai.kv_cache_hit = Some(rng.random_bool(0.4));
            ai.queue_wait_ns = Some(rng.random_range(0..200 * MS));
            ai.time_to_first_token_ns = Some(rng.random_range(5 * MS..400 * MS));
            ai.input_tokens = Some(rng.random_range(10..2000));
            ai.output_tokens = Some(rng.random_range(1..500));
            batch.push(Call {
                trace: n,
                span: n,
                parent: Some(n + 1_000_000),
                name: "chat",
                start: end - duration,
                end,
                error: rng.random_bool(0.05),
                ai,
            });
        }
        observe(&signals, &batch, t);
        all.extend(batch.into_iter().map(|c| (c, t)));
        t += 200 * MS;
    }
    let now = t;
    for window in &signals.config().windows {
        let rows = signals
            .nodes_at(&window.name, Filter::default(), now)
            .unwrap();
        assert_eq!(rows.len(), 3, "{}", window.name);
        let length = i64::try_from(window.length.as_nanos()).unwrap();
        for row in &rows {
            // The ring reads whole slots: from the start of the oldest one.
            let ring = crate::window::Ring::<crate::window::CallAgg>::new(length);
            let start = ring.start_ns(now);
            let mine: Vec<&Call> = all
                .iter()
                .map(|(c, _)| c)
                .filter(|c| c.ai.node.as_deref() == Some(row.node.as_str()))
                .filter(|c| c.end >= start && c.end <= now)
                .collect();
            let what = format!("{} {}", window.name, row.node);
            assert_eq!(row.calls, mine.len() as u64, "{what}");
            assert_eq!(
                row.errors,
                mine.iter().filter(|c| c.error).count() as u64,
                "{what}"
            );
            let hits = mine
                .iter()
                .filter(|c| c.ai.kv_cache_hit == Some(true))
                .count();
            assert!(
                (row.kv_cache_hit_rate.unwrap() - hits as f64 / mine.len() as f64).abs() < 1e-12,
                "{what}"
            );
            let out: i64 = mine.iter().map(|c| c.ai.output_tokens.unwrap()).sum();
            assert_eq!(row.output_tokens, out as u64, "{what}");
            let secs = ring.covered_ns(now) as f64 / 1e9;
            assert!((row.requests_per_second - mine.len() as f64 / secs).abs() < 1e-9);
            for (q, got) in [
                (0.5, row.queue_wait_p50_ns),
                (0.95, row.queue_wait_p95_ns),
                (0.99, row.queue_wait_p99_ns),
            ] {
                let mut v: Vec<i64> = mine.iter().map(|c| c.ai.queue_wait_ns.unwrap()).collect();
                close(
                    got,
                    exact_quantile(&mut v, q),
                    &format!("{what} queue p{q}"),
                );
            }
            for (q, got) in [(0.5, row.ttft_p50_ns), (0.99, row.ttft_p99_ns)] {
                let mut v: Vec<i64> = mine
                    .iter()
                    .map(|c| c.ai.time_to_first_token_ns.unwrap())
                    .collect();
                close(got, exact_quantile(&mut v, q), &format!("{what} ttft p{q}"));
            }
            for (q, got) in [(0.5, row.duration_p50_ns), (0.95, row.duration_p95_ns)] {
                let mut v: Vec<i64> = mine.iter().map(|c| c.end - c.start).collect();
                close(
                    got,
                    exact_quantile(&mut v, q),
                    &format!("{what} duration p{q}"),
                );
            }
            assert!(!row.stale);
        }
        // One model only: the same calls of that model.
        let m1 = signals
            .nodes_at(
                &window.name,
                Filter {
                    model: Some("m-1"),
                    ..Filter::default()
                },
                now,
            )
            .unwrap();
        let ring = crate::window::Ring::<crate::window::CallAgg>::new(length);
        let start = ring.start_ns(now);
        let want = all
            .iter()
            .filter(|(c, _)| c.ai.gen_ai_model.as_deref() == Some("m-1"))
            .filter(|(c, _)| c.end >= start && c.end <= now)
            .count() as u64;
        assert_eq!(m1.iter().map(|r| r.calls).sum::<u64>(), want);
    }
    assert!(signals.nodes_at("2m", Filter::default(), now).is_err());
}

#[test]
fn a_silent_node_is_stale_and_listed_last_never_idle() {
    let signals = Signals::new(SignalsConfig::default()).unwrap();
    let call = |n: u64, node: &'static str, at: i64, hit: bool| {
        let mut ai = llm(node, "m");
        ai.kv_cache_hit = Some(hit);
        Call {
            trace: n,
            span: n,
            parent: Some(99),
            name: "chat",
            start: at - 10 * MS,
            end: at,
            error: false,
            ai,
        }
    };
    // gpu-warm has the warmest cache but goes silent; gpu-cold keeps talking.
    observe(&signals, &[call(1, "gpu-warm", T0, true)], T0);
    for i in 0..40 {
        let at = T0 + i * S;
        observe(&signals, &[call(100 + i as u64, "gpu-cold", at, false)], at);
    }
    let at = |secs: i64| {
        signals
            .nodes_at("5m", Filter::default(), T0 + secs * S)
            .unwrap()
    };
    let fresh = at(29);
    assert_eq!(fresh[0].node, "gpu-warm", "warmest first while fresh");
    assert!(!fresh[0].stale);
    let later = at(40);
    assert_eq!(later.last().unwrap().node, "gpu-warm");
    assert!(later.last().unwrap().stale);
    assert_eq!(
        later.last().unwrap().calls,
        1,
        "its numbers stay, marked stale"
    );
    assert!(!later[0].stale);
}

#[test]
fn keys_past_the_cap_evict_the_least_recently_seen() {
    let config = SignalsConfig {
        max_keys: 2,
        max_open: 3,
        ..SignalsConfig::default()
    };
    let signals = Signals::new(config).unwrap();
    let call = |n: u64, node: &'static str| Call {
        trace: n,
        span: n,
        parent: None,
        name: "chat",
        start: T0,
        end: T0 + MS,
        error: false,
        ai: llm(node, "m"),
    };
    observe(&signals, &[call(1, "a")], T0 + S);
    observe(&signals, &[call(2, "b")], T0 + S);
    observe(&signals, &[call(3, "a")], T0 + S); // a is now the most recent
    observe(&signals, &[call(4, "c")], T0 + S); // b goes
    let rows = signals
        .nodes_at("1m", Filter::default(), T0 + 2 * S)
        .unwrap();
    let mut names: Vec<&str> = rows.iter().map(|r| r.node.as_str()).collect();
    names.sort();
    assert_eq!(names, ["a", "c"]);
    let held = signals.held().unwrap();
    assert!(held.iter().all(|n| *n <= 3), "{held:?}");
    // Many calls in flight on a cap of three: three are counted, no more.
    let phases: Vec<Call> = (10..20)
        .map(|n| Call {
            trace: n,
            span: n + 100,
            parent: Some(n),
            name: "queue",
            start: T0,
            end: T0 + MS,
            error: false,
            ai: AiFields {
                node: Some("a".into()),
                ..AiFields::default()
            },
        })
        .collect();
    observe(&signals, &phases, T0 + 2 * S);
    let rows = signals
        .nodes_at("1m", Filter::default(), T0 + 2 * S)
        .unwrap();
    assert_eq!(rows.iter().find(|r| r.node == "a").unwrap().in_flight, 3);
}

#[test]
fn a_call_is_in_flight_from_its_first_phase_until_it_ends_or_times_out() {
    let config = SignalsConfig {
        in_flight_timeout: Duration::from_secs(10),
        ..SignalsConfig::default()
    };
    let signals = Signals::new(config).unwrap();
    let queue = |trace: u64| Call {
        trace,
        span: trace + 500,
        parent: Some(trace),
        name: "queue",
        start: T0,
        end: T0 + MS,
        error: false,
        ai: AiFields {
            node: Some("gpu-1".into()),
            gen_ai_model: Some("m".into()),
            ..AiFields::default()
        },
    };
    let done = |trace: u64| Call {
        trace,
        span: trace,
        parent: Some(7),
        name: "chat",
        start: T0,
        end: T0 + 2 * S,
        error: false,
        ai: llm("gpu-1", "m"),
    };
    observe(&signals, &[queue(1), queue(2)], T0 + S);
    let in_flight = |at: i64, model: Option<&str>| {
        signals
            .nodes_at(
                "1m",
                Filter {
                    model,
                    ..Filter::default()
                },
                at,
            )
            .unwrap()
            .iter()
            .map(|r| r.in_flight)
            .sum::<u64>()
    };
    observe(&signals, &[done(1)], T0 + 2 * S);
    assert_eq!(in_flight(T0 + 2 * S, None), 1, "one ended, one in flight");
    assert_eq!(in_flight(T0 + 2 * S, Some("m")), 1);
    // A phase arriving after its call ended does not reopen it.
    observe(&signals, &[queue(1)], T0 + 3 * S);
    assert_eq!(in_flight(T0 + 3 * S, None), 1);
    // The other never ends: gone after the timeout.
    assert_eq!(in_flight(T0 + 12 * S, None), 0);
}

#[test]
fn route_advice_prefers_the_node_with_the_prefix_and_puts_stale_nodes_last() {
    let signals = Signals::new(SignalsConfig::default()).unwrap();
    let call = |n: u64, node: &'static str, at: i64, prefix: Option<&str>, hit: bool| {
        let mut ai = llm(node, "llama");
        ai.kv_cache_prefix = prefix.map(str::to_owned);
        ai.kv_cache_hit = Some(hit);
        ai.conversation_id = Some(format!("conv-{n}"));
        Call {
            trace: n,
            span: n,
            parent: Some(1),
            name: "chat",
            start: at - 50 * MS,
            end: at,
            error: false,
            ai,
        }
    };
    observe(&signals, &[call(1, "gpu-old", T0, Some("sys-a"), true)], T0);
    let now = T0 + 60 * S;
    observe(
        &signals,
        &[
            call(2, "gpu-1", now, Some("sys-a"), true),
            call(3, "gpu-2", now, Some("sys-b"), false),
            call(4, "gpu-3", now, None, false),
        ],
        now,
    );
    let advice = signals
        .route_at(
            RouteRequest {
                model: "llama",
                prefix: Some("sys-a"),
                ..RouteRequest::default()
            },
            now + S,
        )
        .unwrap();
    let order: Vec<&str> = advice.iter().map(|a| a.node.as_str()).collect();
    assert_eq!(order[0], "gpu-1", "{advice:?}");
    assert_eq!(*order.last().unwrap(), "gpu-old", "stale last: {advice:?}");
    assert!(advice[0].reasons[0].contains("prefix"), "{advice:?}");
    assert!(advice.last().unwrap().stale);
    // The conversation outweighs the prefix.
    let advice = signals
        .route_at(
            RouteRequest {
                model: "llama",
                prefix: Some("sys-a"),
                conversation: Some("conv-3"),
                tenant: None,
            },
            now + S,
        )
        .unwrap();
    assert_eq!(advice[0].node, "gpu-2", "{advice:?}");
    // Another model: nobody serves it.
    let none = signals
        .route_at(
            RouteRequest {
                model: "other",
                ..RouteRequest::default()
            },
            now,
        )
        .unwrap();
    assert!(none.is_empty());
}

#[test]
fn workflows_report_end_to_end_retries_and_the_dominant_step() {
    let signals = Signals::new(SignalsConfig {
        default_budget: Duration::from_secs(2),
        ..SignalsConfig::default()
    })
    .unwrap();
    let mut calls = Vec::new();
    for trace in 1..=10u64 {
        let root = trace * 100;
        let start = T0 + trace as i64 * S;
        let e2e = if trace <= 3 { 3 * S } else { S };
        // retrieve (100 ms), a failed generate and its retry; generate is the
        // longest step on the critical path.
        let step = |n: u64, name: &'static str, from: i64, to: i64, error: bool| Call {
            trace,
            span: root + n,
            parent: Some(root),
            name,
            start: start + from,
            end: start + to,
            error,
            ai: AiFields::default(),
        };
        calls.push(step(1, "retrieve", 0, 100 * MS, false));
        calls.push(step(2, "generate", 100 * MS, 300 * MS, true));
        calls.push(step(3, "generate", 300 * MS, e2e - 10 * MS, false));
        calls.push(Call {
            trace,
            span: root,
            parent: None,
            name: "answer-question",
            start,
            end: start + e2e,
            error: false,
            ai: AiFields::default(),
        });
    }
    observe(&signals, &calls, T0 + 20 * S);
    let rows = signals.workflows_at("1m", None, T0 + 20 * S).unwrap();
    assert_eq!(rows.len(), 1);
    let w = &rows[0];
    assert_eq!(w.workflow, "answer-question");
    assert_eq!(w.runs, 10);
    assert!((w.over_budget_rate.unwrap() - 0.3).abs() < 1e-12);
    assert!((w.retries_per_run.unwrap() - 1.0).abs() < 1e-12);
    assert!((w.retry_amplification.unwrap() - 1.5).abs() < 1e-12);
    assert_eq!(w.critical_step.as_deref(), Some("generate"));
    close(w.end_to_end_p50_ns, S, "e2e p50");
    close(w.end_to_end_p99_ns, 3 * S, "e2e p99");
}

#[test]
fn the_memory_bound_is_stated_for_the_defaults() {
    let bytes = crate::memory_bound_bytes(&SignalsConfig::default());
    // 512 keys of each kind, 100k calls in flight and locality keys, 10k traces.
    assert!(bytes > 500 << 20 && bytes < 3 << 29, "{bytes}");
}

#[test]
fn a_tenant_sees_only_its_own_nodes_and_advice() {
    let signals = Signals::new(SignalsConfig::default()).unwrap();
    let call = |n: u64, node: &str, tenant: &str| {
        let mut span = span(&Call {
            trace: n,
            span: n,
            parent: Some(1),
            name: "chat",
            start: T0 - MS,
            end: T0,
            error: false,
            ai: {
                let mut ai = llm(node, "m");
                ai.kv_cache_prefix = Some("shared-prefix".into());
                ai
            },
        });
        span.attributes.push((
            weft_schemas::TENANT_KEY.into(),
            weft_schemas::AttrValue::Str(tenant.into()),
        ));
        span
    };
    let spans = [call(1, "gpu-acme", "acme"), call(2, "gpu-globex", "globex")];
    signals
        .observe_at(&spans_to_batch(&spans).unwrap(), None, T0)
        .unwrap();
    let nodes = |tenant| {
        let filter = Filter {
            tenant,
            ..Filter::default()
        };
        let rows = signals.nodes_at("1m", filter, T0).unwrap();
        rows.into_iter().map(|r| r.node).collect::<Vec<_>>()
    };
    assert_eq!(nodes(Some("acme")), ["gpu-acme"]);
    assert_eq!(nodes(Some("nobody")), Vec::<String>::new());
    assert_eq!(nodes(None).len(), 2, "an unscoped caller sees every tenant");
    let advice = signals
        .route_at(
            RouteRequest {
                model: "m",
                prefix: Some("shared-prefix"),
                tenant: Some("globex"),
                ..RouteRequest::default()
            },
            T0,
        )
        .unwrap();
    assert_eq!(advice.len(), 1, "{advice:?}");
    assert_eq!(advice[0].node, "gpu-globex");
    assert!(advice[0].reasons[0].contains("prefix"), "{advice:?}");
}
