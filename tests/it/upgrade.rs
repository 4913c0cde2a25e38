//! A data directory an older Weft wrote opens in this one, whole.
//!
//! `tests/fixtures/schema-v3` was written by the `weft` of commit af2e58c
//! (schema version 3: attribute values as text, no `attribute_types`), with
//! the OTLP/JSON of `tests/fixtures/schema-v3-trace.py` at 2026-11-29T12:00Z:
//! trace `…0a` and a GenAI event of its chat span were flushed to the Delta
//! tables by a clean stop; trace `…0b` was acknowledged, then the server was
//! killed with SIGKILL, so it is only in the WAL, in version 3 records.
//! Both servers ran with `--retention-hours 876000`.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use crate::common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::Server;
use serde_json::{Value, json};
use weft_query::{QueryEngine, QuerySettings, StaticSource};
use weft_store::{StoreConfig, maintain_data_dir, read_snapshot};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/schema-v3");
const OLD_TABLE: &str = "0000000000000000000000000000000a";
const OLD_WAL: &str = "0000000000000000000000000000000b";
const NEW: &str = "0000000000000000000000000000000c";
/// The fixture's spans are from 2026-11-29; keep them.
const RETENTION: [&str; 2] = ["--retention-hours", "876000"];

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn kv(key: &str, value: Value) -> Value {
    json!({"key": key, "value": value})
}

/// The fixture's trace shape, sent to this version: values of every common type.
fn typed_trace(trace: &str) -> Value {
    let base: u64 = 1_795_953_600_000_000_000;
    json!({"resourceSpans": [{
        "resource": {"attributes": [
            kv("service.name", json!({"stringValue": "new-weft"})),
            kv("host.cores", json!({"intValue": "8"})),
        ]},
        "scopeSpans": [{"scope": {"name": "fixture"}, "spans": [{
            "traceId": trace, "spanId": "000000000000000c", "name": "chat", "kind": 3,
            "startTimeUnixNano": base.to_string(),
            "endTimeUnixNano": (base + 1_000_000_000).to_string(),
            "attributes": [
                kv("gen_ai.operation.name", json!({"stringValue": "chat"})),
                kv("gen_ai.usage.input_tokens", json!({"intValue": "120"})),
                kv("gen_ai.request.temperature", json!({"doubleValue": 0.5})),
                kv("weft.kv_cache.hit", json!({"boolValue": true})),
                kv("tags", json!({"arrayValue": {"values": [{"stringValue": "a"}, {"intValue": "2"}]}})),
                kv("digest", json!({"bytesValue": "AP8H"})),
            ],
            "events": [{"timeUnixNano": (base + 5).to_string(), "name": "first_token",
                        "attributes": [kv("n", json!({"intValue": "1"}))]}],
            "status": {"code": 1},
        }]}],
    }]})
}

/// The first span's attribute `key` in `/api/traces/{trace}`, and the trace.
fn attribute(server: &Server, trace: &str, span: &str, key: &str) -> (Value, Value) {
    let data: Value = server.get(&format!("/api/traces/{trace}")).json().unwrap();
    let span = data["resourceSpans"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|rs| rs["scopeSpans"].as_array().unwrap())
        .flat_map(|ss| ss["spans"].as_array().unwrap())
        .find(|s| s["spanId"] == span)
        .unwrap_or_else(|| panic!("no span {span} in {data}"))
        .clone();
    let value = span["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|kv| kv["key"] == key)
        .map(|kv| kv["value"].clone())
        .unwrap_or_else(|| panic!("no {key} in {span}"));
    (value, data)
}

/// What the Python `deltalake` package reads: the `spans` table's columns,
/// its rows, and how many have no `attribute_types`.
const READ_TYPES: &str = r#"
import os, sys
from deltalake import DeltaTable
t = DeltaTable(sys.argv[1] + "/spans")
names = [f.name for f in t.schema().fields]
rows = t.to_pyarrow_table(columns=["span_id", "attribute_types"])
print("attribute_types" in names, rows.num_rows, rows["attribute_types"].null_count)
sys.stdout.flush()
os._exit(0)
"#;

async fn count_in(dir: &Path, sql: &str) -> i64 {
    let snapshot = read_snapshot(dir.to_str().unwrap()).await.unwrap();
    let engine = QueryEngine::new(Arc::new(StaticSource(snapshot)), QuerySettings::default())
        .await
        .unwrap();
    let rows = engine.sql(sql).await.unwrap();
    let column = arrow::compute::cast(
        rows.batches[0].column(0),
        &arrow::datatypes::DataType::Int64,
    )
    .unwrap();
    column
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .unwrap()
        .value(0)
}

#[test]
fn a_schema_version_3_directory_opens_reads_new_types_and_compacts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    copy_dir(Path::new(FIXTURE), &dir);

    let server = Server::start(&dir, &RETENTION);
    // Trace …0a from the tables, …0b from version 3 WAL records.
    let per_trace = server.sql(
        "SELECT trace_id, count(*) AS n, count(attribute_types) AS typed \
         FROM spans GROUP BY trace_id ORDER BY trace_id",
    );
    assert_eq!(
        per_trace,
        vec![
            json!({"trace_id": OLD_TABLE, "n": 2, "typed": 0}),
            json!({"trace_id": OLD_WAL, "n": 2, "typed": 0}),
        ]
    );
    // Their types were never recorded: the text comes back as strings.
    for trace in [OLD_TABLE, OLD_WAL] {
        let (tokens, _) = attribute(
            &server,
            trace,
            if trace == OLD_TABLE {
                "0000000000000002"
            } else {
                "0000000000000004"
            },
            "gen_ai.usage.input_tokens",
        );
        assert_eq!(tokens, json!({"stringValue": "120"}));
    }
    // The old event store's GenAI event is still with its span.
    let events = server.sql("SELECT event_name, body FROM span_events");
    assert_eq!(
        events,
        vec![json!({"event_name": "gen_ai.choice", "body": "{\"message\":\"hello\"}"})]
    );

    // A span sent to this version keeps every value's type.
    server.send_json(&typed_trace(NEW));
    let span = "000000000000000c";
    let typed = [
        ("gen_ai.usage.input_tokens", json!({"intValue": "120"})),
        ("gen_ai.request.temperature", json!({"doubleValue": 0.5})),
        ("weft.kv_cache.hit", json!({"boolValue": true})),
        (
            "tags",
            json!({"arrayValue": {"values": [{"stringValue": "a"}, {"intValue": "2"}]}}),
        ),
        ("digest", json!({"bytesValue": "AP8H"})),
        ("gen_ai.operation.name", json!({"stringValue": "chat"})),
    ];
    for (key, expected) in &typed {
        assert_eq!(&attribute(&server, NEW, span, key).0, expected, "{key}");
    }
    let (_, data) = attribute(&server, NEW, span, "tags");
    let resource = &data["resourceSpans"][0]["resource"]["attributes"];
    assert!(
        resource
            .as_array()
            .unwrap()
            .contains(&kv("host.cores", json!({"intValue": "8"}))),
        "{resource}"
    );
    let event = &data["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["events"][0];
    assert_eq!(event["attributes"][0], kv("n", json!({"intValue": "1"})));
    // SQL reads the types beside the text.
    assert_eq!(
        server.sql(
            "SELECT attributes['gen_ai.usage.input_tokens'] AS text, \
             attribute_types['span.gen_ai.usage.input_tokens'] AS type \
             FROM spans WHERE trace_id = '0000000000000000000000000000000c'"
        ),
        vec![json!({"text": "120", "type": "int"})]
    );
    assert_eq!(server.terminate().code(), Some(0));

    // The Delta table gained the column; another reader sees it, null in
    // the version 3 file, filled in the new one.
    let read = common::python::python()
        .arg("-c")
        .arg(READ_TYPES)
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&read.stdout).trim(), "True 5 4");

    // Compaction merges the version 3 file with the newer ones.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut config = StoreConfig::new(&dir);
        config.retention = Duration::from_secs(876_000 * 3600);
        config.vacuum_grace = Duration::ZERO;
        config.settle_horizon = Duration::ZERO;
        let before = read_snapshot(dir.to_str().unwrap()).await.unwrap();
        assert!(before.files.len() >= 2, "{:?}", before.files);
        let report = maintain_data_dir(&config).await.unwrap();
        assert!(report.compacted_files >= 2, "{report:?}");
        let after = read_snapshot(dir.to_str().unwrap()).await.unwrap();
        assert_eq!(after.files.len(), 1, "{:?}", after.files);
        assert_eq!(count_in(&dir, "SELECT count(*) FROM spans").await, 5);
        assert_eq!(
            count_in(
                &dir,
                "SELECT count(*) FROM spans WHERE attribute_types['span.digest'] = 'bytes'"
            )
            .await,
            1
        );
    });

    // And the server reopens what maintenance left, types and all.
    let server = Server::start(&dir, &RETENTION);
    assert_eq!(
        attribute(&server, NEW, span, "gen_ai.usage.input_tokens").0,
        json!({"intValue": "120"})
    );
    assert_eq!(server.count("SELECT count(*) AS n FROM spans"), 5);
}
