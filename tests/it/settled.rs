//! Settling across flushes and restarts: a trace whose spans arrive in several
//! flushes is numbered whole again, and a new generation holds the spans it
//! placed anew (the new ones and the ones it moved); older rows of those spans
//! are hidden from `span_structure`, and the link index carries lineage across
//! traces. Real store, real WAL and Parquet files in a temporary directory.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::sync::Arc;

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use weft_query::lineage::Reach;
use weft_query::{QueryEngine, QuerySettings};
use weft_schemas::{AiFields, Span, SpanId, SpanKind, SpanLink, StatusCode, TraceId};
use weft_store::{Metrics, Store, StoreConfig};

const T: &str = "11111111111111111111111111111111";
const U: &str = "22222222222222222222222222222222";

fn span(trace: &str, id: u64, parent: Option<u64>, start: i64) -> Span {
    let sid = |n: u64| format!("{n:016x}").parse::<SpanId>().unwrap();
    Span {
        trace_id: trace.parse::<TraceId>().unwrap(),
        span_id: sid(id),
        parent_span_id: parent.map(sid),
        trace_state: String::new(),
        name: format!("step {id}"),
        kind: SpanKind::Internal,
        start_time_unix_nano: 1_700_000_000_000_000_000 + start,
        end_time_unix_nano: 1_700_000_000_000_000_000 + start + 100,
        status_code: StatusCode::Ok,
        status_message: String::new(),
        service_name: Some("svc".into()),
        resource_attributes: Default::default(),
        scope_name: String::new(),
        scope_version: String::new(),
        attributes: Vec::new(),
        events: Vec::new(),
        links: Vec::new(),
        ai: AiFields::default(),
    }
}

async fn rows(engine: &QueryEngine, sql: &str) -> Vec<String> {
    let result = engine.sql(sql).await.unwrap();
    let mut out = Vec::new();
    for batch in &result.batches {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| {
                arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &Default::default())
                    .unwrap()
            })
            .collect();
        for row in 0..batch.num_rows() {
            let cells: Vec<String> = formatters
                .iter()
                .map(|f| f.value(row).to_string())
                .collect();
            out.push(cells.join(" "));
        }
    }
    out
}

const STRUCTURE: &str = "SELECT span_id, depth, nested_left, nested_right, orphan, \
     previous_generation IS NOT NULL FROM span_structure ORDER BY nested_left";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_settled_in_pieces_has_one_whole_structure() {
    let dir = tempfile::tempdir().unwrap();
    let open = || async {
        Store::open(StoreConfig::new(dir.path()), Arc::new(Metrics::default()))
            .await
            .unwrap()
    };
    let store = open().await;
    let engine = |s: &Store| QueryEngine::new(Arc::new(s.clone()), QuerySettings::default());

    // Children end first, so exporters send them first: flush them before the root arrives.
    store
        .ingest(&[span(T, 2, Some(1), 10), span(T, 3, Some(1), 20)])
        .await
        .unwrap();
    store.flush().await.unwrap();
    let e = engine(&store).await.unwrap();
    assert_eq!(
        rows(&e, STRUCTURE).await,
        [
            "0000000000000002 0 0 1 true false",
            "0000000000000003 0 2 3 true false",
        ],
        "without their parent, the first spans settle as orphans"
    );

    store
        .ingest(&[span(T, 1, None, 0), span(T, 4, Some(2), 15)])
        .await
        .unwrap();
    store.flush().await.unwrap();
    assert_eq!(
        rows(&e, STRUCTURE).await,
        [
            "0000000000000001 0 0 7 false true",
            "0000000000000002 1 1 4 false true",
            "0000000000000004 2 2 3 false true",
            "0000000000000003 1 5 6 false true",
        ],
        "the second settling replaces the first, whole"
    );
    let raw_files = store.snapshot().unwrap().structure.len();
    assert_eq!(raw_files, 2, "both generations stay on disk");

    // After a restart the store still knows where T's structure is.
    store.shutdown().await.unwrap();
    drop(e);
    let store = open().await;
    store.ingest(&[span(T, 5, Some(1), 50)]).await.unwrap();
    store.flush().await.unwrap();
    let e = engine(&store).await.unwrap();
    let after = rows(&e, STRUCTURE).await;
    assert_eq!(after.len(), 5, "{after:?}");
    assert_eq!(after[0], "0000000000000001 0 0 9 false true");
    assert_eq!(after[4], "0000000000000005 1 7 8 false true");
    let generations = e
        .sql("SELECT DISTINCT generation FROM span_structure")
        .await
        .unwrap();
    let gens: Vec<i64> = generations
        .batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    // The third settling wrote only what changed: the new span and the root,
    // whose bound widened; the other spans keep their rows of the second.
    assert_eq!(gens.len(), 2, "{gens:?}");
    let latest = *gens.iter().max().unwrap();
    let written = rows(
        &e,
        &format!("SELECT span_id FROM span_structure WHERE generation = {latest} ORDER BY span_id"),
    )
    .await;
    assert_eq!(written, ["0000000000000001", "0000000000000005"]);
    store.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lineage_follows_the_link_index_both_ways_live_and_settled() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(dir.path()), Arc::new(Metrics::default()))
        .await
        .unwrap();
    let e = QueryEngine::new(Arc::new(store.clone()), QuerySettings::default())
        .await
        .unwrap();
    store.ingest(&[span(T, 1, None, 0)]).await.unwrap();
    store.flush().await.unwrap();
    let mut resumed = span(U, 9, None, 1_000);
    resumed.links.push(SpanLink {
        trace_id: T.parse().unwrap(),
        span_id: "0000000000000001".parse().unwrap(),
        trace_state: String::new(),
        attributes: Vec::new(),
    });
    store.ingest(&[resumed]).await.unwrap();

    for flushed in [false, true] {
        if flushed {
            store.flush().await.unwrap();
            assert_eq!(
                store.snapshot().unwrap().links.len(),
                1,
                "a link index file"
            );
        }
        let links = rows(&e, "SELECT linked_trace_id, trace_id FROM span_links").await;
        assert_eq!(links, [format!("{T} {U}")], "flushed: {flushed}");
        for (start, direction) in [
            (T, weft_query::lineage::Direction::Downstream),
            (U, weft_query::lineage::Direction::Upstream),
            (T, weft_query::lineage::Direction::Both),
        ] {
            let reach = Reach {
                direction,
                ..Reach::default()
            };
            let result = e.lineage(&start.parse().unwrap(), reach).await.unwrap();
            assert_eq!(
                result.lineage.traces.len(),
                2,
                "from {start} {direction:?}, flushed: {flushed}"
            );
        }
        let against = Reach {
            direction: weft_query::lineage::Direction::Upstream,
            ..Reach::default()
        };
        let alone = e.lineage(&T.parse().unwrap(), against).await.unwrap();
        assert_eq!(alone.lineage.traces.len(), 1, "T links to nothing upstream");
    }
    store.shutdown().await.unwrap();
}
