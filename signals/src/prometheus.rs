//! The signals as Prometheus gauges, one series per (node, model) and
//! window: what an endpoint picker or KEDA scraping model-server metrics
//! reads unchanged.

use std::fmt::Write;

use crate::state::{Filter, Signals};
use crate::{Error, now_ns};

/// A label value with `\`, `"` and newlines escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

const GAUGES: [(&str, &str); 12] = [
    (
        "weft_node_requests_per_second",
        "model calls ended per second in the window",
    ),
    ("weft_node_in_flight", "calls started and not yet ended"),
    (
        "weft_node_error_rate",
        "share of calls that failed in the window",
    ),
    (
        "weft_node_kv_cache_hit_rate",
        "share of calls that hit the KV cache in the window",
    ),
    (
        "weft_node_queue_wait_seconds",
        "queue wait quantiles in the window",
    ),
    (
        "weft_node_ttft_seconds",
        "time-to-first-token quantiles in the window",
    ),
    (
        "weft_node_duration_seconds",
        "call duration quantiles in the window",
    ),
    (
        "weft_node_input_tokens_per_second",
        "input tokens per second in the window",
    ),
    (
        "weft_node_output_tokens_per_second",
        "output tokens per second in the window",
    ),
    ("weft_node_cost", "cost of the priced calls in the window"),
    (
        "weft_node_last_seen_timestamp_seconds",
        "end time of the latest call",
    ),
    (
        "weft_node_stale",
        "1 when not heard from for longer than the staleness bound",
    ),
];

impl Signals {
    /// Every (node, model) series in every window, as gauges.
    pub fn prometheus(&self) -> Result<String, Error> {
        self.prometheus_at(now_ns())
    }

    pub fn prometheus_at(&self, now: i64) -> Result<String, Error> {
        let mut models: Vec<String> = {
            let state = self.lock()?;
            state.models.iter().map(|(k, _)| k.model.clone()).collect()
        };
        models.sort();
        models.dedup();
        let mut lines: Vec<Vec<String>> = vec![Vec::new(); GAUGES.len()];
        for window in &self.config.windows {
            for model in &models {
                let filter = Filter {
                    model: Some(model),
                    ..Filter::default()
                };
                for row in self.nodes_at(&window.name, filter, now)? {
                    let labels = format!(
                        "node=\"{}\",model=\"{}\",window=\"{}\"",
                        label(&row.node),
                        label(model),
                        label(&window.name)
                    );
                    let mut put = |i: usize, extra: &str, value: f64| {
                        lines[i].push(format!("{}{{{labels}{extra}}} {value}", GAUGES[i].0));
                    };
                    put(0, "", row.requests_per_second);
                    put(1, "", row.in_flight as f64);
                    if let Some(v) = row.error_rate {
                        put(2, "", v);
                    }
                    if let Some(v) = row.kv_cache_hit_rate {
                        put(3, "", v);
                    }
                    let quantiles = [
                        (
                            4,
                            [
                                row.queue_wait_p50_ns,
                                row.queue_wait_p95_ns,
                                row.queue_wait_p99_ns,
                            ],
                        ),
                        (5, [row.ttft_p50_ns, row.ttft_p95_ns, row.ttft_p99_ns]),
                        (
                            6,
                            [
                                row.duration_p50_ns,
                                row.duration_p95_ns,
                                row.duration_p99_ns,
                            ],
                        ),
                    ];
                    for (i, values) in quantiles {
                        for (q, v) in ["0.5", "0.95", "0.99"].iter().zip(values) {
                            if let Some(ns) = v {
                                put(i, &format!(",quantile=\"{q}\""), ns as f64 / 1e9);
                            }
                        }
                    }
                    put(7, "", row.input_tokens_per_second);
                    put(8, "", row.output_tokens_per_second);
                    if let Some(cost) = row.cost {
                        put(9, "", cost);
                    }
                    if let Some(seen) = row
                        .last_seen
                        .as_deref()
                        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    {
                        put(10, "", seen.timestamp_micros() as f64 / 1e6);
                    }
                    put(11, "", f64::from(u8::from(row.stale)));
                }
            }
        }
        let mut out = String::new();
        for ((name, help), series) in GAUGES.iter().zip(lines) {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            for line in series {
                out.push_str(&line);
                out.push('\n');
            }
        }
        Ok(out)
    }
}
