//! Run diff end to end: two runs of one support workflow sent over OTLP/HTTP,
//! the second with known differences (another model, other documents, a deny
//! instead of an allow, another node, an extra tool call, a slower critical
//! path); `/api/lineage/diff` and `weft lineage diff` (over the API and on the
//! data directory) report exactly those, each with both values, and a run
//! diffed with itself has none.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use serde_json::{Value, json};

use crate::common::{Server, weft_ok};
use crate::lineage_evidence::{INTERNAL, S, hex, now_ns, otlp};

struct Run {
    model: &'static str,
    docs: &'static str,
    verdict: &'static str,
    node: &'static str,
    tools: &'static [&'static str],
    chat_s: u64,
}

fn spans(trace: u64, r: &Run) -> Vec<S> {
    let a = |k: &'static str, v: &str| (k, v.to_owned());
    let mut out = vec![
        S {
            trace,
            span: 1,
            parent: None,
            name: "support agent",
            kind: INTERNAL,
            at_s: 0,
            attrs: vec![a("weft.kind", "agent"), a("weft.identity", "alice")],
        },
        S {
            trace,
            span: 2,
            parent: Some(1),
            name: "retrieve",
            kind: INTERNAL,
            at_s: 1,
            attrs: vec![
                a("weft.kind", "retrieval"),
                a("weft.retrieval.source", "kb"),
                a("gen_ai.retrieval.documents", r.docs),
            ],
        },
        S {
            trace,
            span: 3,
            parent: Some(1),
            name: "policy",
            kind: INTERNAL,
            at_s: 2,
            attrs: vec![
                a("weft.kind", "policy"),
                a("weft.policy.name", "refunds"),
                a("weft.policy.verdict", r.verdict),
            ],
        },
        S {
            trace,
            span: 4,
            parent: Some(1),
            name: "chat",
            kind: INTERNAL,
            at_s: 3,
            attrs: vec![
                a("gen_ai.operation.name", "chat"),
                a("gen_ai.request.model", r.model),
                a("weft.node", r.node),
            ],
        },
    ];
    for (k, tool) in r.tools.iter().enumerate() {
        out.push(S {
            trace,
            span: 10 + k as u64,
            parent: Some(1),
            name: "execute_tool",
            kind: INTERNAL,
            at_s: 3 + r.chat_s + k as u64,
            attrs: vec![
                a("gen_ai.operation.name", "execute_tool"),
                a("gen_ai.tool.name", tool),
            ],
        });
    }
    out
}

/// The run as OTLP/JSON, its root span lasting until its last step ends.
fn request(trace: u64, r: &Run, base: u128) -> Value {
    let mut body = otlp("support", &spans(trace, r), base);
    let end_s = 3 + r.chat_s + r.tools.len() as u64;
    body["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["endTimeUnixNano"] =
        json!((base + u128::from(end_s) * 1_000_000_000).to_string());
    body
}

#[test]
fn a_run_diff_names_each_difference_with_both_values() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let base = now_ns() - 3_600_000_000_000;
    let worked = Run {
        model: "gpt-4o",
        docs: r#"["kb-1","kb-2"]"#,
        verdict: "allow",
        node: "gpu-1",
        tools: &["lookup_order", "refund"],
        chat_s: 2,
    };
    let failed = Run {
        model: "gpt-4o-mini",
        docs: r#"["kb-1","kb-7"]"#,
        verdict: "deny",
        node: "gpu-2",
        tools: &["lookup_order", "lookup_order", "refund"],
        chat_s: 2,
    };
    server.send_json(&request(1, &worked, base));
    server.send_json(&request(2, &failed, base));
    // The same workflow, run again with a slower tool step at the end.
    let slow = Run {
        chat_s: 20,
        ..Run { ..worked }
    };
    server.send_json(&request(3, &slow, base));

    let get = |a: u64, b: u64| -> Value {
        let response = server.get(&format!("/api/lineage/diff?a={}&b={}", hex(a), hex(b)));
        assert_eq!(response.status(), 200);
        response.json().unwrap()
    };
    let same = get(1, 1);
    assert_eq!(same["added"], json!([]));
    assert_eq!(same["removed"], json!([]));
    assert_eq!(same["changed"], json!([]));
    assert_eq!(same["unchanged"], 6);

    let d = get(1, 2);
    assert_eq!(d["a"]["steps"], 6);
    assert_eq!(d["b"]["steps"], 7);
    assert_eq!(d["b"]["traces"], json!([hex(2)]));
    let changes = |step: &str| -> Vec<Value> {
        d["changed"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["step"] == step)
            .unwrap_or_else(|| panic!("{step} not changed: {d}"))["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| json!([c["field"], c["a"], c["b"]]))
            .collect()
    };
    assert_eq!(
        changes("support agent [agent] / chat [llm]"),
        vec![
            json!(["gen_ai_model", "gpt-4o", "gpt-4o-mini"]),
            json!(["node", "gpu-1", "gpu-2"])
        ]
    );
    assert_eq!(
        changes("support agent [agent] / retrieve [retrieval]"),
        vec![json!([
            "retrieved_document_ids",
            ["kb-1", "kb-2"],
            ["kb-1", "kb-7"]
        ])]
    );
    assert_eq!(
        changes("support agent [agent] / policy [policy]"),
        vec![json!(["policy_verdict", "allow", "deny"])]
    );
    let added: Vec<&str> = d["added"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(added, ["support agent [agent] / execute_tool [tool]#2"]);
    assert_eq!(d["removed"], json!([]));

    // Timing: the slower run's critical path took 18 s longer.
    let t = get(1, 3);
    let agent = t["changed"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["step"] == "support agent [agent]")
        .unwrap();
    assert_eq!(agent["changes"][0]["field"], "duration_ns", "{t}");

    // The CLI, over the API and on the data directory, says the same.
    let api = format!("http://{}", server.api);
    let text = weft_ok(&["lineage", "diff", &hex(1), &hex(2), "--server", &api]);
    for line in [
        "1 added, 0 removed, 4 changed",
        "+ support agent [agent] / execute_tool [tool]#2",
        "    gen_ai_model: gpt-4o → gpt-4o-mini",
        "    policy_verdict: allow → deny",
        "    retrieved_document_ids: [kb-1, kb-2] → [kb-1, kb-7]",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
    let same = weft_ok(&["lineage", "diff", &hex(2), &hex(2), "--server", &api]);
    assert!(same.contains("no differences (7 steps aligned)"), "{same}");
    assert!(server.terminate().success());
    let data = dir.path().to_string_lossy().into_owned();
    let json_out = weft_ok(&[
        "lineage",
        "diff",
        &hex(1),
        &hex(2),
        "--data-dir",
        &data,
        "--format",
        "json",
    ]);
    let local: Value = serde_json::from_str(&json_out).unwrap();
    assert_eq!(local, d, "the data directory gives the API's answer");
}
