//! Evidence joins end to end: generated workflows whose trace context is
//! lost at a tool runner, a queue and a human approval, each next to decoys
//! (the same tool call id in another conversation, a run outside the window,
//! a consumer of another message, the same message on another destination),
//! sent over OTLP/HTTP to a real `weft serve`. The ground truth is known per
//! workflow: `/api/lineage` from any member trace returns exactly the member
//! traces, each evidence edge with its key and value; SQL `lineage()`, the
//! CLI tree and DOT show them; `evidence_keys = []` turns joins off; and
//! evidence never joins two tenants' spans.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::common::{Server, weft_ok};

pub(crate) fn now_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// One span as OTLP/JSON: `(trace, span, parent, name, kind, offset s, attributes)`.
pub(crate) struct S {
    pub trace: u64,
    pub span: u64,
    pub parent: Option<u64>,
    pub name: &'static str,
    pub kind: u8,
    pub at_s: u64,
    pub attrs: Vec<(&'static str, String)>,
}

pub(crate) const INTERNAL: u8 = 1;
const PRODUCER: u8 = 4;
const CONSUMER: u8 = 5;

pub(crate) fn otlp(service: &str, spans: &[S], base: u128) -> Value {
    let spans: Vec<Value> = spans
        .iter()
        .map(|s| {
            let start = base + u128::from(s.at_s) * 1_000_000_000;
            let mut v = json!({
                "traceId": format!("{:032x}", s.trace),
                "spanId": format!("{:016x}", s.span),
                "name": s.name,
                "kind": s.kind,
                "startTimeUnixNano": start.to_string(),
                "endTimeUnixNano": (start + 500_000_000).to_string(),
                "attributes": s.attrs.iter().map(|(k, v)| json!({"key": k, "value": {"stringValue": v}})).collect::<Vec<_>>(),
            });
            if let Some(p) = s.parent {
                v["parentSpanId"] = json!(format!("{p:016x}"));
            }
            v
        })
        .collect();
    json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeSpans": [{"spans": spans}]
    }]})
}

pub(crate) fn hex(trace: u64) -> String {
    format!("{trace:032x}")
}

/// Workflow `w`: its member traces (ground truth) and its spans, decoys included.
fn workflow(w: u64) -> (BTreeSet<String>, Vec<S>) {
    let t = |k: u64| w * 100 + k;
    let call = format!("call_{w}");
    let conversation = format!("conv-{w}");
    let message = format!("msg-{w}");
    let a = |k: &'static str, v: &str| (k, v.to_owned());
    let spans = vec![
        // Trace 1: the agent checks policy, the model asks for a refund tool,
        // and a job is put on a queue.
        S {
            trace: t(1),
            span: 1,
            parent: None,
            name: "agent",
            kind: INTERNAL,
            at_s: 0,
            attrs: vec![
                a("weft.identity", "alice"),
                a("gen_ai.conversation.id", &conversation),
            ],
        },
        S {
            trace: t(1),
            span: 2,
            parent: Some(1),
            name: "policy",
            kind: INTERNAL,
            at_s: 1,
            attrs: vec![
                a("weft.kind", "policy"),
                a("weft.policy.verdict", "needs_approval"),
            ],
        },
        S {
            trace: t(1),
            span: 3,
            parent: Some(1),
            name: "chat",
            kind: INTERNAL,
            at_s: 2,
            attrs: vec![
                a("gen_ai.operation.name", "chat"),
                a("gen_ai.conversation.id", &conversation),
                a(
                    "gen_ai.output.messages",
                    &format!(
                        r#"[{{"role":"assistant","parts":[{{"type":"tool_call","id":"{call}","name":"refund","arguments":{{"order":7}}}}],"finish_reason":"tool_call"}}]"#
                    ),
                ),
            ],
        },
        S {
            trace: t(1),
            span: 4,
            parent: Some(1),
            name: "enqueue",
            kind: PRODUCER,
            at_s: 3,
            attrs: vec![
                a("messaging.operation.type", "send"),
                a("messaging.message.id", &message),
                a("messaging.destination.name", "jobs"),
            ],
        },
        // Trace 2 (context lost at the tool runner): the refund runs.
        S {
            trace: t(2),
            span: 1,
            parent: None,
            name: "execute_tool refund",
            kind: INTERNAL,
            at_s: 10,
            attrs: vec![
                a("gen_ai.operation.name", "execute_tool"),
                a("gen_ai.tool.name", "refund"),
                a("gen_ai.tool.call.id", &call),
                a("gen_ai.conversation.id", &conversation),
                a("weft.tool.effect", "write"),
            ],
        },
        // Trace 3 (decoy): the same call id in another conversation.
        S {
            trace: t(3),
            span: 1,
            parent: None,
            name: "execute_tool refund",
            kind: INTERNAL,
            at_s: 11,
            attrs: vec![
                a("gen_ai.operation.name", "execute_tool"),
                a("gen_ai.tool.name", "refund"),
                a("gen_ai.tool.call.id", &call),
                a("gen_ai.conversation.id", &format!("conv-{}", w + 500)),
            ],
        },
        // Trace 4 (context lost at the queue): the job's consumer.
        S {
            trace: t(4),
            span: 1,
            parent: None,
            name: "process job",
            kind: CONSUMER,
            at_s: 6,
            attrs: vec![
                a("messaging.operation.type", "process"),
                a("messaging.message.id", &message),
                a("messaging.destination.name", "jobs"),
            ],
        },
        // Trace 5 (decoy): the same message id on another destination.
        S {
            trace: t(5),
            span: 1,
            parent: None,
            name: "process job",
            kind: CONSUMER,
            at_s: 7,
            attrs: vec![
                a("messaging.message.id", &message),
                a("messaging.destination.name", "audit"),
            ],
        },
        // Trace 6 (decoy): a consumer of another message.
        S {
            trace: t(6),
            span: 1,
            parent: None,
            name: "process job",
            kind: CONSUMER,
            at_s: 8,
            attrs: vec![
                a("messaging.operation.type", "receive"),
                a("messaging.message.id", &format!("msg-{}", w + 500)),
                a("messaging.destination.name", "jobs"),
            ],
        },
        // Trace 7 (a human hand-off): the approval of that very call.
        S {
            trace: t(7),
            span: 1,
            parent: None,
            name: "approve refund",
            kind: INTERNAL,
            at_s: 5,
            attrs: vec![
                a("weft.kind", "approval"),
                a("weft.approval.state", "granted"),
                a("weft.approval.approver", "bob"),
                a("weft.approval.action", &call),
            ],
        },
    ];
    let members = [t(1), t(2), t(4), t(7)].into_iter().map(hex).collect();
    (members, spans)
}

fn lineage(server: &Server, trace: &str) -> Value {
    let response = server.get(&format!("/api/lineage/{trace}"));
    assert_eq!(response.status(), 200, "{trace}");
    response.json().unwrap()
}

fn traces_of(body: &Value) -> BTreeSet<String> {
    body["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect()
}

const CONFIG: &str = "evidence_window_secs = 60\n";

#[test]
fn evidence_joins_context_less_hops_and_never_a_decoy() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_config(dir.path(), CONFIG, &[]);
    let base = now_ns() - 3_600_000_000_000;
    let workflows: Vec<(BTreeSet<String>, Vec<S>)> = (1..=12).map(workflow).collect();
    // A model call and the run of its call five minutes later, in one
    // conversation: past the window (60 s here), so apart.
    let a = |k: &'static str, v: &str| (k, v.to_owned());
    let asked = S {
        trace: 98,
        span: 1,
        parent: None,
        name: "chat",
        kind: INTERNAL,
        at_s: 0,
        attrs: vec![
            a("gen_ai.operation.name", "chat"),
            a("gen_ai.conversation.id", "conv-late"),
            a(
                "gen_ai.output.messages",
                r#"[{"role":"assistant","parts":[{"type":"tool_call","id":"call_late"}]}]"#,
            ),
        ],
    };
    let ran = S {
        trace: 99,
        span: 1,
        parent: None,
        name: "execute_tool refund",
        kind: INTERNAL,
        at_s: 300,
        attrs: vec![
            a("gen_ai.tool.name", "refund"),
            a("gen_ai.tool.call.id", "call_late"),
            a("gen_ai.conversation.id", "conv-late"),
        ],
    };
    for (_, spans) in &workflows {
        server.send_json(&otlp("agents", spans, base));
    }
    server.send_json(&otlp("agents", &[asked, ran], base));

    for (w, (members, _)) in workflows.iter().enumerate() {
        let w = w as u64 + 1;
        // From every member, the same workflow: exactly its member traces.
        for start in members {
            let body = lineage(&server, start);
            assert_eq!(&traces_of(&body), members, "workflow {w} from {start}");
        }
        let body = lineage(&server, &hex(w * 100 + 1));
        let nodes = body["nodes"].as_array().unwrap();
        let name_of = |i: &Value| {
            let n = &nodes[i.as_u64().unwrap() as usize];
            format!(
                "{}/{}",
                &n["trace_id"].as_str().unwrap()[28..],
                n["name"].as_str().unwrap()
            )
        };
        let mut evidence: Vec<(String, String, String, String)> = body["edges"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "evidence")
            .map(|e| {
                (
                    name_of(&e["from"]),
                    name_of(&e["to"]),
                    e["evidence"]["key"].as_str().unwrap().to_owned(),
                    e["evidence"]["value"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        evidence.sort();
        let t = |k: u64| format!("{:04x}", w * 100 + k);
        assert_eq!(
            evidence,
            vec![
                (
                    format!("{}/chat", t(1)),
                    format!("{}/execute_tool refund", t(2)),
                    "gen_ai.tool.call.id".into(),
                    format!("call_{w}")
                ),
                (
                    format!("{}/enqueue", t(1)),
                    format!("{}/process job", t(4)),
                    "messaging.message.id".into(),
                    format!("msg-{w}")
                ),
                (
                    format!("{}/approve refund", t(7)),
                    format!("{}/execute_tool refund", t(2)),
                    "weft.approval.action".into(),
                    format!("call_{w}")
                ),
            ],
            "workflow {w}"
        );
        // No evidence edge is shown as a parent or a link.
        assert!(
            body["edges"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e["kind"] != "link")
        );

        // The summary: the refund ran after a needs_approval verdict and a
        // granted approval, both joined by evidence alone; it ran for alice.
        let refund = body["summary"]["tool_calls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["tool"] == "refund")
            .unwrap();
        assert_eq!(refund["preceding_verdict"]["verdict"], "needs_approval");
        assert_eq!(refund["preceding_approval"]["approver"], "bob");
        assert_eq!(refund["identity"], "alice");
        assert_eq!(
            refund["rests_on_evidence"],
            json!(["preceding_verdict", "preceding_approval", "identity"])
        );
        assert_eq!(
            body["summary"]["findings"],
            json!([]),
            "the approval gates the write"
        );
    }
    // The decoys stand alone.
    for decoy in [103, 105, 106, 98, 99] {
        let body = lineage(&server, &hex(decoy));
        assert_eq!(
            traces_of(&body),
            BTreeSet::from([hex(decoy)]),
            "decoy {decoy}"
        );
    }

    // SQL: lineage() names the edge that reached each step and its evidence.
    let rows = server.sql(&format!(
        "SELECT name, reached_by, evidence FROM lineage('{}') WHERE reached_by = 'evidence' ORDER BY name",
        hex(101)
    ));
    assert_eq!(
        rows,
        vec![
            json!({"name": "execute_tool refund", "reached_by": "evidence", "evidence": "gen_ai.tool.call.id=call_1"}),
            json!({"name": "process job", "reached_by": "evidence", "evidence": "messaging.message.id=msg-1"}),
        ]
    );
    // The typed columns evidence reads are plain SQL too.
    let rows = server.sql(&format!(
        "SELECT requested_tool_call_ids, message_id, messaging_operation, messaging_destination \
         FROM spans WHERE trace_id IN ('{}') AND (requested_tool_call_ids IS NOT NULL OR message_id IS NOT NULL) \
         ORDER BY span_id",
        hex(101)
    ));
    assert_eq!(rows[0]["requested_tool_call_ids"], json!(["call_1"]));
    assert_eq!(rows[1]["messaging_destination"], "jobs");

    // The CLI tree and DOT mark evidence as such.
    let api = format!("http://{}", server.api);
    let tree = weft_ok(&["lineage", &hex(101), "--server", &api]);
    assert!(tree.contains("≈ "), "{tree}");
    assert!(
        tree.contains("[evidence weft.approval.action=call_1]")
            || tree.contains("[evidence gen_ai.tool.call.id=call_1]"),
        "{tree}"
    );
    let dot = weft_ok(&["lineage", &hex(101), "--server", &api, "--format", "dot"]);
    assert!(
        dot.contains("evidence\\nmessaging.message.id=msg-1"),
        "{dot}"
    );
    drop(server);

    // evidence_keys = [] turns joins off: each hop is a workflow of its own.
    let off = Server::start_with_config(dir.path(), "evidence_keys = []\n", &[]);
    assert_eq!(
        traces_of(&lineage(&off, &hex(101))),
        BTreeSet::from([hex(101)])
    );
    drop(off);
    // Only messages: the queue hop joins, the tool and approval hops do not.
    let messages = Server::start_with_config(
        dir.path(),
        "evidence_keys = [\"messaging.message.id\"]\n",
        &[],
    );
    assert_eq!(
        traces_of(&lineage(&messages, &hex(101))),
        BTreeSet::from([hex(101), hex(104)])
    );
    drop(messages);
    // A key Weft does not know is refused at start, naming the known ones.
    let refused = crate::common::weft(&[
        "serve",
        "--data-dir",
        &dir.path().join("data").to_string_lossy(),
        "--config",
        &{
            let path = dir.path().join("bad.toml");
            std::fs::write(&path, "evidence_keys = [\"tool_call\"]\n").unwrap();
            path.to_string_lossy().into_owned()
        },
    ]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("evidence_keys") && stderr.contains("gen_ai.tool.call.id"),
        "{stderr}"
    );
}

const ACME_INGEST: &str = "acme-ingest-5b2e8f1c7d9a3e64";
const GLOBEX_INGEST: &str = "globex-ingest-9d4a7c2e6f1b8a53";
const ACME_QUERY: &str = "acme-query-2c7f9e4b1a8d6c35";
const ADMIN: &str = "admin-evidence-7e3b9d1f5c2a8e46";

/// Evidence never joins two tenants' spans, for a tenant's token or an admin's.
#[test]
fn evidence_never_joins_two_tenants() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"[[tokens]]
name = "acme-agents"
role = "ingest"
tenant = "acme"
token = "{ACME_INGEST}"

[[tokens]]
name = "globex-agents"
role = "ingest"
tenant = "globex"
token = "{GLOBEX_INGEST}"

[[tokens]]
name = "acme-query"
role = "query"
tenant = "acme"
token = "{ACME_QUERY}"

[[tokens]]
name = "ops"
role = "admin"
token = "{ADMIN}"
"#
    );
    let server = Server::start_with_config(dir.path(), &config, &[]);
    let base = now_ns() - 3_600_000_000_000;
    let (_, spans) = workflow(1);
    let (acme, globex): (Vec<S>, Vec<S>) = spans.into_iter().partition(|s| s.trace == 101);
    let send = |token: &str, body: Value| {
        let response = reqwest::blocking::Client::new()
            .post(format!("http://{}/v1/traces", server.http))
            .bearer_auth(token)
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(response.status(), 200);
    };
    // Acme's agent asked for the call; globex's runner ran, approved and
    // consumed spans with the same ids.
    send(ACME_INGEST, otlp("agents", &acme, base));
    send(GLOBEX_INGEST, otlp("runner", &globex, base));
    for token in [ACME_QUERY, ADMIN] {
        let response = reqwest::blocking::Client::new()
            .get(format!("http://{}/api/lineage/{}", server.api, hex(101)))
            .bearer_auth(token)
            .send()
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().unwrap();
        assert_eq!(
            traces_of(&body),
            BTreeSet::from([hex(101)]),
            "as {token:.4}"
        );
    }
    // Globex's own hops still join each other (approval → tool run).
    let response = reqwest::blocking::Client::new()
        .get(format!("http://{}/api/lineage/{}", server.api, hex(102)))
        .bearer_auth(ADMIN)
        .send()
        .unwrap();
    let body: Value = response.json().unwrap();
    assert_eq!(traces_of(&body), BTreeSet::from([hex(102), hex(107)]));
}
