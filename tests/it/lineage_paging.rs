//! Paging a workflow's lineage against a real `weft serve`: the pages of one
//! reading come from one reconstruction (a later page does not change under
//! the reader when spans arrive), a new reading sees the new spans, each edge
//! is on exactly one page, the analysis is on the first page only, and SQL's
//! `lineage()` pages with LIMIT/OFFSET.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use serde_json::Value;

use crate::common::Server;
use crate::lineage_evidence::{INTERNAL, S, hex, now_ns, otlp};

fn spans(first: u64, n: u64) -> Vec<S> {
    (first..first + n)
        .map(|span| S {
            trace: 7,
            span,
            parent: (span > 1).then_some(1),
            name: "step",
            kind: INTERNAL,
            at_s: span,
            attrs: Vec::new(),
        })
        .collect()
}

fn page(server: &Server, query: &str) -> Value {
    let response = server.get(&format!("/api/lineage/{}?{query}", hex(7)));
    assert_eq!(response.status(), 200, "{query}");
    response.json().unwrap()
}

#[test]
fn pages_of_one_reading_agree_and_a_new_reading_sees_new_spans() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let base = now_ns() - 3_600_000_000_000;
    server.send_json(&otlp("agent", &spans(1, 5), base));
    assert_eq!(
        server.wait_for_count("SELECT count(*) AS n FROM spans", 5),
        5
    );

    let first = page(&server, "offset=0&limit=2");
    assert_eq!(first["total_nodes"], 5);
    assert_eq!(first["next_offset"], 2);
    assert!(first["summary"].is_object() && first["critical_path"].is_array());

    // Spans arrive between two pages of the reading.
    server.send_json(&otlp("agent", &spans(6, 2), base));
    assert_eq!(
        server.wait_for_count("SELECT count(*) AS n FROM spans", 7),
        7
    );
    let second = page(&server, "offset=2&limit=2");
    assert_eq!(second["total_nodes"], 5, "the reading's own reconstruction");
    assert!(
        second.get("summary").is_none(),
        "the analysis is on page one"
    );
    let third = page(&server, "offset=4&limit=2");
    assert_eq!(third["total_nodes"], 5);
    assert!(third.get("next_offset").is_none(), "{third}");
    // Each edge once, on the page of the node it leads to: the 4 children's.
    let edges: usize = [&first, &second, &third]
        .iter()
        .map(|p| p["edges"].as_array().unwrap().len())
        .sum();
    assert_eq!(edges, 4);

    // A new reading starts from the data as it is now.
    let fresh = page(&server, "offset=0&limit=2");
    assert_eq!(fresh["total_nodes"], 7);
    let whole = page(&server, "");
    assert_eq!(whole["total_nodes"], 7);
    assert_eq!(whole["nodes"].as_array().unwrap().len(), 7);

    // SQL pages the same workflow with LIMIT/OFFSET.
    let trace = hex(7);
    let all = server.count(&format!("SELECT count(*) AS n FROM lineage('{trace}')"));
    assert_eq!(all, 7);
    let rows = server.sql(&format!(
        "SELECT span_id FROM lineage('{trace}') ORDER BY start_time LIMIT 3 OFFSET 5"
    ));
    assert_eq!(rows.len(), 2, "{rows:?}");
}
