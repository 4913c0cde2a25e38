//! The demo workload as plain data: realistic AI workflows (customer support,
//! code assistant, incident triage), emitted by `weft demo` through the
//! OpenTelemetry SDK and by `weft bench` as OTLP protobuf.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// An attribute value in the plan.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

/// Span kinds the workload uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Server,
    Client,
    Internal,
}

/// One span of a workflow; references are indices into [`Workflow::spans`].
#[derive(Debug, Clone)]
pub struct PlannedSpan {
    /// Which trace of the workflow (0, or 1 for work resumed later).
    pub trace: usize,
    pub parent: Option<usize>,
    pub links: Vec<usize>,
    pub name: String,
    pub kind: Kind,
    pub service: &'static str,
    /// Offset from the workflow's start, nanoseconds.
    pub start_ns: i64,
    pub duration_ns: i64,
    pub attributes: Vec<(&'static str, Value)>,
    pub error: Option<String>,
    /// GenAI content events of the span (sent as OTLP log records).
    pub events: Vec<PlannedEvent>,
}

/// A GenAI content event (`gen_ai.user.message`, `gen_ai.choice`) of a span.
#[derive(Debug, Clone)]
pub struct PlannedEvent {
    pub name: &'static str,
    /// Offset from the span's start, nanoseconds.
    pub offset_ns: i64,
    /// The event body, as the GenAI conventions shape it.
    pub body: serde_json::Value,
}

/// A workflow: spans in creation order (parents and link targets first).
#[derive(Debug, Clone)]
pub struct Workflow {
    pub name: &'static str,
    pub spans: Vec<PlannedSpan>,
}

const MS: i64 = 1_000_000;
const NODES: [&str; 4] = ["gpu-a1", "gpu-a2", "gpu-b1", "gpu-b2"];
const MODELS: [(&str, &str); 3] = [
    ("openai", "gpt-4o-2024-08-06"),
    ("anthropic", "claude-sonnet-4"),
    ("vllm", "llama-3.1-70b-instruct"),
];

struct Builder<'r> {
    rng: &'r mut StdRng,
    spans: Vec<PlannedSpan>,
    cursor: i64,
    trace: usize,
    service: &'static str,
}

fn s(v: impl Into<String>) -> Value {
    Value::Str(v.into())
}

impl<'r> Builder<'r> {
    fn new(rng: &'r mut StdRng, service: &'static str) -> Self {
        Self {
            rng,
            spans: Vec::new(),
            cursor: 0,
            trace: 0,
            service,
        }
    }

    fn root(&mut self, name: &str, attrs: Vec<(&'static str, Value)>) -> usize {
        self.spans.push(PlannedSpan {
            trace: self.trace,
            parent: None,
            links: Vec::new(),
            name: name.into(),
            kind: Kind::Server,
            service: self.service,
            start_ns: self.cursor,
            duration_ns: 0,
            attributes: attrs,
            error: None,
            events: Vec::new(),
        });
        self.cursor += MS;
        self.spans.len() - 1
    }

    /// A child step that runs after the previous one.
    fn step(
        &mut self,
        parent: usize,
        name: &str,
        kind: Kind,
        ms: i64,
        attrs: Vec<(&'static str, Value)>,
    ) -> usize {
        let jitter = self.rng.random_range(0..=ms / 4 + 1);
        let duration = (ms + jitter) * MS;
        self.spans.push(PlannedSpan {
            trace: self.trace,
            parent: Some(parent),
            links: Vec::new(),
            name: name.into(),
            kind,
            service: self.service,
            start_ns: self.cursor,
            duration_ns: duration,
            attributes: attrs,
            error: None,
            events: Vec::new(),
        });
        self.cursor += duration + MS;
        self.spans.len() - 1
    }

    fn close(&mut self, root: usize) {
        let end = self.cursor;
        let r = &mut self.spans[root];
        r.duration_ns = end - r.start_ns;
    }

    /// An LLM call on a GPU node, with KV-cache behaviour; sometimes it fails
    /// and is retried on another node.
    fn llm(&mut self, parent: usize, purpose: &str, identity: &str) -> usize {
        let (provider, model) = MODELS[self.rng.random_range(0..MODELS.len())];
        let mut attempt = 1;
        loop {
            let node = NODES[self.rng.random_range(0..NODES.len())];
            let hit = self.rng.random_bool(0.6);
            let ratio = if hit {
                self.rng.random_range(0.5..1.0)
            } else {
                0.0
            };
            let input = self.rng.random_range(800..6000);
            let cached = (input as f64 * ratio) as i64;
            let ttft = if hit {
                self.rng.random_range(40..120)
            } else {
                self.rng.random_range(180..900)
            };
            let queue = self.rng.random_range(0..250);
            let fails = attempt == 1 && self.rng.random_bool(0.1);
            let generation = self.rng.random_range(300..2500);
            let output = if fails {
                0
            } else {
                self.rng.random_range(50..900)
            };
            let id = self.step(
                parent,
                &format!("chat {model}"),
                Kind::Client,
                ttft + queue + generation,
                vec![
                    ("gen_ai.operation.name", s("chat")),
                    ("gen_ai.provider.name", s(provider)),
                    ("gen_ai.request.model", s(model)),
                    ("gen_ai.response.model", s(model)),
                    ("gen_ai.usage.input_tokens", Value::Int(input)),
                    ("gen_ai.usage.output_tokens", Value::Int(output)),
                    ("gen_ai.usage.cache_read.input_tokens", Value::Int(cached)),
                    ("weft.node", s(node)),
                    ("weft.kv_cache.hit", Value::Bool(hit)),
                    ("weft.kv_cache.hit_ratio", Value::Float(ratio)),
                    ("weft.queue.wait_ms", Value::Int(queue)),
                    ("weft.ttft_ms", Value::Int(ttft)),
                    ("weft.identity", s(identity)),
                    ("weft.llm.purpose", s(purpose)),
                    ("weft.retry.attempt", Value::Int(attempt)),
                ],
            );
            self.spans[id].service = "llm-gateway";
            self.spans[id].events.push(PlannedEvent {
                name: "gen_ai.user.message",
                offset_ns: queue * MS,
                body: serde_json::json!({ "content": prompt(purpose) }),
            });
            if !fails {
                let end = self.spans[id].duration_ns;
                self.spans[id].events.push(PlannedEvent {
                    name: "gen_ai.choice",
                    offset_ns: end,
                    body: serde_json::json!({
                        "index": 0,
                        "finish_reason": "stop",
                        "message": { "role": "assistant", "content": answer(purpose) },
                    }),
                });
            }
            if fails {
                self.spans[id].error = Some(format!("upstream timeout on {node}"));
                attempt += 1;
                continue;
            }
            return id;
        }
    }

    fn policy(&mut self, parent: usize, policy: &str, verdict: &str, identity: &str) -> usize {
        self.step(
            parent,
            &format!("policy {policy}"),
            Kind::Internal,
            3,
            vec![
                ("weft.kind", s("policy")),
                ("weft.policy.name", s(policy)),
                ("weft.policy.verdict", s(verdict)),
                ("weft.identity", s(identity)),
            ],
        )
    }

    fn tool(&mut self, parent: usize, tool: &str, write: bool, identity: &str, ms: i64) -> usize {
        let call = format!("call_{:08x}", self.rng.random::<u32>());
        self.step(
            parent,
            &format!("execute_tool {tool}"),
            Kind::Client,
            ms,
            vec![
                ("gen_ai.operation.name", s("execute_tool")),
                ("gen_ai.tool.name", s(tool)),
                ("gen_ai.tool.call.id", s(call)),
                ("weft.tool.effect", s(if write { "write" } else { "read" })),
                ("weft.identity", s(identity)),
            ],
        )
    }

    /// A retrieval, served by the shared retriever service.
    fn retrieval(&mut self, parent: usize, source: &str, identity: &str) -> usize {
        let n = self.rng.random_range(2..6);
        let docs: Vec<String> = (0..n)
            .map(|_| format!("{{\"id\":\"{source}-{}\"}}", self.rng.random_range(1..5000)))
            .collect();
        let ms = self.rng.random_range(20..120);
        let id = self.step(
            parent,
            &format!("retrieval {source}"),
            Kind::Client,
            ms,
            vec![
                ("gen_ai.operation.name", s("retrieval")),
                ("weft.retrieval.source", s(source)),
                (
                    "gen_ai.retrieval.documents",
                    s(format!("[{}]", docs.join(","))),
                ),
                ("weft.identity", s(identity)),
            ],
        );
        self.spans[id].service = "retriever";
        id
    }

    fn approval(
        &mut self,
        parent: usize,
        state: &str,
        approver: Option<&str>,
        gated: &str,
    ) -> usize {
        let mut attrs = vec![
            ("weft.kind", s("approval")),
            ("weft.approval.state", s(state)),
            ("weft.approval.action", s(gated)),
        ];
        if let Some(a) = approver {
            attrs.push(("weft.approval.approver", s(a)));
        }
        self.step(
            parent,
            &format!("approval {state}"),
            Kind::Internal,
            5,
            attrs,
        )
    }
}

/// What the workflow asked the model, by the step's purpose.
fn prompt(purpose: &str) -> &'static str {
    match purpose {
        "draft answer" => {
            "The customer says their order arrived damaged and asks for a refund. Draft a reply."
        }
        "write patch" => {
            "Fix the failing pagination test in api/orders.rs without changing the public API."
        }
        "summarise incident" => {
            "Summarise the alerts for checkout-service in the last 30 minutes and suggest a remediation."
        }
        _ => "Help with this step.",
    }
}

/// What the model answered, by the step's purpose.
fn answer(purpose: &str) -> &'static str {
    match purpose {
        "draft answer" => {
            "Sorry your order arrived damaged. I have asked for a full refund; you will hear back within a day."
        }
        "write patch" => {
            "The cursor skipped the last page when the count was a multiple of the page size; patch attached."
        }
        "summarise incident" => {
            "Error rate on checkout-service rose after deploy 4812; roll back the deployment."
        }
        _ => "Done.",
    }
}

fn customer_support(rng: &mut StdRng, i: usize) -> Workflow {
    let customer = format!("customer-{}", rng.random_range(1000..9999));
    let mut b = Builder::new(rng, "support-agent");
    let root = b.root(
        "support ticket",
        vec![
            ("weft.kind", s("workflow")),
            ("gen_ai.agent.name", s("support-agent")),
            ("enduser.id", s(customer.clone())),
            ("gen_ai.conversation.id", s(format!("conv-{i}"))),
            ("weft.workload.id", s("spiffe://weft.demo/support-agent")),
        ],
    );
    b.retrieval(root, "kb-articles", &customer);
    b.policy(root, "entitlement", "allow", &customer);
    b.tool(root, "crm.case_history", false, &customer, 40);
    b.llm(root, "draft answer", &customer);
    // Every twelfth ticket the agent refunds although the lead denied it: the
    // governance finding lineage exists to catch.
    let rogue = i.is_multiple_of(12);
    let refund = rogue || b.rng.random_bool(0.4);
    if refund {
        b.policy(root, "refund-limit", "needs_approval", &customer);
        let granted = !rogue && b.rng.random_bool(0.8);
        b.approval(
            root,
            if granted { "granted" } else { "denied" },
            Some("lead@support.example"),
            "payments.refund",
        );
        if granted || rogue {
            b.tool(root, "payments.refund", true, &customer, 120);
        }
    }
    b.close(root);
    Workflow {
        name: "customer-support",
        spans: b.spans,
    }
}

fn code_assistant(rng: &mut StdRng, i: usize) -> Workflow {
    let dev = format!("dev-{}", rng.random_range(10..99));
    let mut b = Builder::new(rng, "code-assistant");
    let root = b.root(
        "code change request",
        vec![
            ("weft.kind", s("agent")),
            ("gen_ai.agent.name", s("code-assistant")),
            ("enduser.id", s(dev.clone())),
            ("weft.workload.id", s("spiffe://weft.demo/code-assistant")),
        ],
    );
    b.tool(root, "repo.inspect", false, &dev, 60);
    b.retrieval(root, "code-index", &dev);
    let build = b.tool(root, "ci.build_pipeline", false, &dev, 900);
    if b.rng.random_bool(0.15) {
        b.spans[build].error = Some("build failed: 3 tests failing".into());
        b.tool(root, "ci.build_pipeline", false, &dev, 900);
    }
    let scan = b.tool(root, "security.vulnerability_scan", false, &dev, 300);
    // Every twelfth request's scanner runs on a host whose clock is 2 s
    // behind: the scan appears to start before the request did (an anomaly
    // lineage reports as clock skew).
    if i % 12 == 1 {
        b.spans[scan].start_ns -= 2_000 * MS;
    }
    b.llm(root, "write patch", &dev);
    b.policy(root, "protected-branch", "allow", &dev);
    b.tool(root, "git.open_pull_request", true, &dev, 80);
    b.close(root);
    Workflow {
        name: "code-assistant",
        spans: b.spans,
    }
}

fn incident_triage(rng: &mut StdRng, _i: usize) -> Workflow {
    let oncall = "sre-oncall";
    let mut b = Builder::new(rng, "incident-triage");
    let root = b.root(
        "incident triage",
        vec![
            ("weft.kind", s("workflow")),
            ("gen_ai.agent.name", s("triage-agent")),
            ("weft.identity", s(oncall)),
            ("weft.workload.id", s("spiffe://weft.demo/triage-agent")),
        ],
    );
    b.retrieval(root, "alert-history", oncall);
    b.tool(root, "cmdb.asset_inventory", false, oncall, 50);
    b.llm(root, "summarise incident", oncall);
    b.policy(root, "production-change", "needs_approval", oncall);
    let requested = b.approval(root, "requested", None, "k8s.rollback_deployment");
    b.close(root);

    // A human answers later; the workflow resumes in a new trace linked to the request.
    b.trace = 1;
    b.cursor += 60_000 * MS;
    let resume = b.root(
        "remediation resumed",
        vec![
            ("weft.kind", s("workflow")),
            ("gen_ai.agent.name", s("triage-agent")),
            ("weft.identity", s(oncall)),
        ],
    );
    b.spans[resume].links.push(requested);
    b.approval(
        resume,
        "granted",
        Some("incident-commander@ops.example"),
        "k8s.rollback_deployment",
    );
    b.tool(resume, "k8s.rollback_deployment", true, oncall, 400);
    b.close(resume);
    Workflow {
        name: "incident-triage",
        spans: b.spans,
    }
}

/// `n` workflows cycling through the three kinds, reproducible from `seed`.
pub fn workflows(n: usize, seed: u64) -> Vec<Workflow> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| match i % 3 {
            0 => customer_support(&mut rng, i),
            1 => code_assistant(&mut rng, i),
            _ => incident_triage(&mut rng, i),
        })
        .collect()
}

/// Test fixtures built from the plan, shared by this module's snapshots and
/// the TUI's.
#[cfg(test)]
pub(crate) mod fixtures {
    #![allow(clippy::unwrap_used)]

    use weft_lineage::{LineageSpan, StepAi};
    use weft_schemas::conventions::extract;
    use weft_schemas::{AttrValue, SpanId, StatusCode, TraceId};

    use super::{Value, Workflow};

    /// The plan as lineage input, with ids and times fixed so snapshots are stable.
    pub(crate) fn lineage_spans(w: &Workflow, n: u8) -> Vec<LineageSpan> {
        let trace = |t: usize| TraceId::try_from([n * 2 + t as u8 + 1; 16].as_slice()).unwrap();
        let span = |i: usize| {
            let mut b = [0u8; 8];
            b[0] = n + 1;
            b[7] = i as u8 + 1;
            SpanId::try_from(b.as_slice()).unwrap()
        };
        let base = 1_700_000_000_000_000_000i64;
        w.spans
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let attrs: Vec<(String, AttrValue)> = p
                    .attributes
                    .iter()
                    .map(|(k, v)| {
                        let v = match v {
                            Value::Str(s) => AttrValue::Str(s.clone()),
                            Value::Int(i) => AttrValue::Int(*i),
                            Value::Float(f) => AttrValue::Double(*f),
                            Value::Bool(b) => AttrValue::Bool(*b),
                        };
                        ((*k).to_owned(), v)
                    })
                    .collect();
                let text = |key: &str| {
                    attrs
                        .iter()
                        .find(|(k, _)| k == key)
                        .map(|(_, v)| v.to_text().into())
                };
                LineageSpan {
                    events: Vec::new(),
                    trace_id: trace(p.trace),
                    span_id: span(i),
                    parent_span_id: p.parent.map(span),
                    name: p.name.as_str().into(),
                    kind: None,
                    service: Some(p.service.into()),
                    start_ns: base + p.start_ns,
                    end_ns: base + p.start_ns + p.duration_ns,
                    status: if p.error.is_some() {
                        StatusCode::Error
                    } else {
                        StatusCode::Ok
                    },
                    status_message: p.error.clone(),
                    links: p
                        .links
                        .iter()
                        .map(|l| (trace(w.spans[*l].trace), span(*l)))
                        .collect(),
                    ai: StepAi::from_fields(extract(&attrs, &[]), text),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_reference_only_earlier_spans() {
        for w in workflows(30, 7) {
            for (i, span) in w.spans.iter().enumerate() {
                assert!(span.parent.is_none_or(|p| p < i), "{}", w.name);
                assert!(span.links.iter().all(|l| *l < i));
                assert!(span.duration_ns >= 0);
            }
        }
    }

    use super::fixtures::lineage_spans;
    use weft_lineage::render::{DEFAULT_FOLD, summary_text, text_tree};
    use weft_lineage::{BuildOptions, build};

    #[test]
    fn demo_workflow_lineage_snapshots() {
        for (n, w) in workflows(3, 42).iter().enumerate() {
            let options = BuildOptions {
                now_ns: i64::MAX,
                ..Default::default()
            };
            let lineage = build(lineage_spans(w, n as u8), &options);
            let text = format!(
                "{}\n{}",
                text_tree(&lineage, DEFAULT_FOLD),
                summary_text(&lineage)
            );
            insta::assert_snapshot!(w.name, text);
        }
    }

    #[test]
    fn triage_resumes_in_a_linked_second_trace() {
        let w = &workflows(3, 1)[2];
        let resumed = w
            .spans
            .iter()
            .find(|s| s.trace == 1 && s.parent.is_none())
            .unwrap();
        let target = &w.spans[resumed.links[0]];
        assert_eq!(target.trace, 0);
        assert!(
            target
                .attributes
                .contains(&("weft.approval.state", Value::Str("requested".into())))
        );
    }
}
