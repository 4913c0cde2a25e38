//! The storage lifecycle on Delta Lake tables: flushes commit to the tables,
//! a flush interrupted between its tables' commits is finished exactly once,
//! retention removes old days from every table (and so from lineage),
//! compaction merges small files and drops superseded structure, vacuum
//! deletes what no version needs, and an independent reader (the Python
//! `deltalake` package) reads the same spans. Real store, real files.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use crate::common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use weft_query::{QueryEngine, QuerySettings, StaticSource};
use weft_schemas::{AiFields, Span, SpanId, SpanKind, SpanLink, StatusCode, TraceId};
use weft_store::{Metrics, Store, StoreConfig, maintain_data_dir, read_snapshot};

const OLD: &str = "0dd00000000000000000000000000001";
const NEW: &str = "00000000000000000000000000000002";

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

fn span(trace: &str, id: u64, parent: Option<u64>, start: i64) -> Span {
    let sid = |n: u64| format!("{n:016x}").parse::<SpanId>().unwrap();
    Span {
        trace_id: trace.parse::<TraceId>().unwrap(),
        span_id: sid(id),
        parent_span_id: parent.map(sid),
        trace_state: String::new(),
        name: format!("step {id}"),
        kind: SpanKind::Internal,
        start_time_unix_nano: start,
        end_time_unix_nano: start + 1_000,
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

fn config(dir: &Path) -> StoreConfig {
    let mut config = StoreConfig::new(dir);
    config.flush_interval = Duration::from_secs(3600);
    config.fault = None;
    config
}

async fn open(config: StoreConfig) -> Store {
    Store::open(config, Arc::new(Metrics::default()))
        .await
        .unwrap()
}

/// One number from a query over a data directory, as `weft sql --data-dir` runs it.
async fn count_in(dir: &Path, sql: &str) -> i64 {
    let snapshot = read_snapshot(dir.to_str().unwrap()).await.unwrap();
    let engine = QueryEngine::new(Arc::new(StaticSource(snapshot)), QuerySettings::default())
        .await
        .unwrap();
    let result = engine.sql(sql).await.unwrap();
    let batch = &result.batches[0];
    arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Int64)
        .unwrap()
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .unwrap()
        .value(0)
}

/// Runs a Python script on the data directory (`sys.argv[1]`).
fn python(dir: &Path, script: &str) -> String {
    let out = common::python::python()
        .arg("-c")
        .arg(script)
        .arg(dir)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "python failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The rows and the `trace/span` ids the Python `deltalake` package reads
/// from the `spans` table.
fn python_ids(dir: &Path) -> (usize, BTreeSet<String>) {
    let read = python(dir, READ_SPANS);
    let mut lines = read.lines();
    let rows = lines.next().unwrap().parse().unwrap();
    let ids = lines
        .next()
        .unwrap_or_default()
        .split(',')
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect();
    (rows, ids)
}

const READ_SPANS: &str = r#"
import sys
from deltalake import DeltaTable
t = DeltaTable(sys.argv[1] + "/spans").to_pyarrow_table(columns=["trace_id", "span_id", "day"])
print(t.num_rows)
print(",".join(sorted(x.hex() + "/" + y.hex() for x, y in zip(t["trace_id"].to_pylist(), t["span_id"].to_pylist()))))
# deltalake's runtime threads can abort the interpreter's shutdown; the answer is out.
sys.stdout.flush()
import os; os._exit(0)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_compaction_and_vacuum_keep_every_table_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_ns();
    let ten_days_ago = now - 10 * 86_400_000_000_000;
    let store = open(config(dir.path())).await;
    // Four flushes: each adds spans to an old trace and to a recent one that
    // links to the old one, so every table gets small files of both days and
    // the recent trace settles in four generations.
    for flush in 0..4u64 {
        let mut spans = vec![
            span(
                OLD,
                10 + flush,
                (flush > 0).then_some(10),
                ten_days_ago + flush as i64,
            ),
            span(
                NEW,
                20 + flush,
                (flush > 0).then_some(20),
                now + flush as i64,
            ),
        ];
        spans[1].links.push(SpanLink {
            trace_id: OLD.parse().unwrap(),
            span_id: format!("{:016x}", 10).parse().unwrap(),
            trace_state: String::new(),
            attributes: Vec::new(),
        });
        store.ingest(&spans).await.unwrap();
        let report = store.flush().await.unwrap();
        assert_eq!(report.spans, 2);
    }
    store.shutdown().await.unwrap();

    let weft_ids = |dir: &Path| {
        let dir = dir.to_owned();
        async move {
            let snapshot = read_snapshot(dir.to_str().unwrap()).await.unwrap();
            let mut ids = BTreeSet::new();
            for f in &snapshot.files {
                let file = std::fs::File::open(&f.location).unwrap();
                let reader =
                    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                        .unwrap()
                        .build()
                        .unwrap();
                for batch in reader {
                    let r = weft_schemas::SpanReader::new(&batch.unwrap()).unwrap();
                    for row in 0..r.len() {
                        ids.insert(format!(
                            "{}/{}",
                            r.trace_id(row).unwrap(),
                            r.span_id(row).unwrap()
                        ));
                    }
                }
            }
            ids
        }
    };
    // An independent reader sees the spans Weft stored, with the same ids.
    let before = weft_ids(dir.path()).await;
    assert_eq!(before.len(), 8);
    assert_eq!(python_ids(dir.path()), (8, before));

    // A time filter skips the old day's files by their statistics, unopened.
    let snapshot = read_snapshot(dir.path().to_str().unwrap()).await.unwrap();
    let old_day = snapshot.files.iter().map(|f| f.day.clone()).min().unwrap();
    let engine = QueryEngine::new(Arc::new(StaticSource(snapshot)), QuerySettings::default())
        .await
        .unwrap();
    let recent = "SELECT count(*) FROM spans WHERE start_time > now() - INTERVAL '2 days'";
    let plan = engine.sql(&format!("EXPLAIN {recent}")).await.unwrap();
    let plan = arrow::util::pretty::pretty_format_batches(&plan.batches)
        .unwrap()
        .to_string();
    assert!(plan.contains("spans/day="), "{plan}");
    assert!(!plan.contains(&format!("day={old_day}")), "{plan}");
    assert_eq!(count_in(dir.path(), recent).await, 4);
    drop(engine);

    let old_spans = format!("SELECT count(*) FROM spans WHERE trace_id = '{}'", OLD);
    let old_structure = format!(
        "SELECT count(*) FROM span_structure WHERE trace_id = '{}'",
        OLD
    );
    let old_links = format!(
        "SELECT count(*) FROM span_links WHERE linked_trace_id = '{}'",
        OLD
    );
    assert_eq!(count_in(dir.path(), &old_spans).await, 4);
    assert_eq!(count_in(dir.path(), &old_structure).await, 4);
    assert_eq!(count_in(dir.path(), &old_links).await, 4);

    // Retention of a week, compaction of everything small, vacuum at once.
    let mut maintain = config(dir.path());
    maintain.vacuum_grace = Duration::ZERO;
    maintain.settle_horizon = Duration::ZERO;
    let report = maintain_data_dir(&maintain).await.unwrap();
    // Old day: 4 span files, 4 structure files; no links start on it.
    assert_eq!(report.expired_files, 8, "{report:?}");
    // Recent day: 4 small files in each table, merged into one per table.
    assert_eq!(
        (report.compacted_files, report.compacted_into),
        (12, 3),
        "{report:?}"
    );
    // Each settling of the recent trace wrote its new span and the root it
    // moved (a wider nested-set bound): three older rows of the root go.
    assert_eq!(report.superseded_rows, 3, "{report:?}");
    assert_eq!(report.vacuumed_files, 8 + 12, "{report:?}");

    assert_eq!(count_in(dir.path(), &old_spans).await, 0);
    assert_eq!(count_in(dir.path(), &old_structure).await, 0);
    // The recent trace's links to the old one are its own rows: they stay.
    assert_eq!(count_in(dir.path(), &old_links).await, 4);
    let recent = format!("SELECT count(*) FROM spans WHERE trace_id = '{NEW}'");
    assert_eq!(count_in(dir.path(), &recent).await, 4);
    let structure = format!("SELECT count(*) FROM span_structure WHERE trace_id = '{NEW}'");
    assert_eq!(
        count_in(dir.path(), &structure).await,
        4,
        "one whole structure"
    );
    let snapshot = read_snapshot(dir.path().to_str().unwrap()).await.unwrap();
    assert_eq!(
        (
            snapshot.files.len(),
            snapshot.structure.len(),
            snapshot.links.len()
        ),
        (1, 1, 1)
    );
    for f in snapshot
        .files
        .iter()
        .chain(&snapshot.structure)
        .chain(&snapshot.links)
    {
        assert!(
            std::path::Path::new(&f.location).exists(),
            "{} is committed but missing",
            f.location
        );
    }

    // Lineage of the old trace finds nothing stored any more; the recent one is whole.
    let engine = QueryEngine::new(Arc::new(StaticSource(snapshot)), QuerySettings::default())
        .await
        .unwrap();
    let reach = weft_query::lineage::Reach::default();
    // Not found, and for that reason: any other error would be a failure.
    let old = engine.lineage(&OLD.parse().unwrap(), reach).await;
    assert!(
        matches!(old, Err(weft_query::QueryError::NotFound(_))),
        "the expired trace is gone from lineage: {:?}",
        old.map(|l| l.lineage.nodes.len())
    );
    let recent = engine.lineage(&NEW.parse().unwrap(), reach).await.unwrap();
    assert_eq!(recent.lineage.nodes.len(), 4);

    // The other reader agrees after maintenance too.
    let after = weft_ids(dir.path()).await;
    assert_eq!(after.len(), 4);
    assert_eq!(python_ids(dir.path()), (4, after));
}

/// What Weft answers and what DuckDB (its `delta` extension) and Polars
/// answer over the same tables, as the README shows them.
const OTHER_ENGINES: &str = r#"
import os, sys
import duckdb, duckdb_extension_delta, polars as pl
root = sys.argv[1]
# No progress bar: it prints to stdout when a query runs over two seconds.
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
ext = os.path.join(os.path.dirname(duckdb_extension_delta.__file__), "extensions",
                   "v" + duckdb.__version__, "delta.duckdb_extension")
con.execute(f"LOAD '{ext}'")
by_service = con.sql(f"SELECT service_name, count(*) FROM delta_scan('{root}/spans') GROUP BY 1 ORDER BY 1").fetchall()
print(";".join(f"{s}={n}" for s, n in by_service))
# span_structure keeps a row per settling of a span; the latest generation counts.
latest = con.sql(f"""
    SELECT count(*), sum(depth), sum(nested_right - nested_left) FROM (
        SELECT * FROM delta_scan('{root}/structure')
        QUALIFY row_number() OVER (PARTITION BY trace_id, span_id ORDER BY generation DESC) = 1)
""").fetchone()
print(",".join(str(x) for x in latest))
polars = pl.read_delta(f"{root}/spans").group_by("service_name").len().sort("service_name")
print(";".join(f"{s}={n}" for s, n in polars.iter_rows()))
sys.stdout.flush()
os._exit(0)
"#;

#[tokio::test(flavor = "multi_thread")]
async fn duckdb_and_polars_read_what_weft_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(config(dir.path())).await;
    let now = now_ns() - 3_600_000_000_000;
    // One trace growing over three flushes (its structure is settled three
    // times), and a second service's trace.
    for flush in 0..3u64 {
        let mut spans = vec![span(NEW, 10 + flush, (flush > 0).then_some(10), now)];
        let mut other = span(OLD, 20 + flush, None, now + flush as i64);
        other.service_name = Some("other".into());
        spans.push(other);
        store.ingest(&spans).await.unwrap();
        store.flush().await.unwrap();
    }
    store.shutdown().await.unwrap();

    let weft_services = format!(
        "other={};svc={}",
        count_in(
            dir.path(),
            "SELECT count(*) FROM spans WHERE service_name = 'other'"
        )
        .await,
        count_in(
            dir.path(),
            "SELECT count(*) FROM spans WHERE service_name = 'svc'"
        )
        .await,
    );
    assert_eq!(weft_services, "other=3;svc=3");
    let weft_structure = format!(
        "{},{},{}",
        count_in(dir.path(), "SELECT count(*) FROM span_structure").await,
        count_in(dir.path(), "SELECT sum(depth) FROM span_structure").await,
        count_in(
            dir.path(),
            "SELECT sum(nested_right - nested_left) FROM span_structure"
        )
        .await,
    );
    assert_eq!(&weft_structure[..2], "6,");
    let out = python(dir.path(), OTHER_ENGINES);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [weft_services.as_str(), &weft_structure, &weft_services]
    );
}

/// A flush that fails after some of its tables committed is finished by the
/// next flush for exactly the tables that lack it; after a restart too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_interrupted_between_tables_is_finished_exactly_once() {
    for point in [
        "flush.files_written",
        "flush.committed.spans",
        "flush.committed.span_links",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let now = now_ns();
        let mut failing = config(dir.path());
        failing.fault = Some(point.to_owned());
        let store = open(failing).await;
        let mut spans: Vec<Span> = (1..=5)
            .map(|i| span(NEW, i, (i > 1).then_some(1), now + i as i64))
            .collect();
        spans[4].links.push(SpanLink {
            trace_id: NEW.parse().unwrap(),
            span_id: format!("{:016x}", 1).parse().unwrap(),
            trace_state: String::new(),
            attributes: Vec::new(),
        });
        store.ingest(&spans).await.unwrap();
        let failed = store.flush().await;
        assert!(
            failed.is_err(),
            "{point}: the injected fault fails the flush"
        );
        // Readers of the running store still see each span once.
        let engine = QueryEngine::new(Arc::new(store.clone()), QuerySettings::default())
            .await
            .unwrap();
        let spans_sql = "SELECT count(*), count(DISTINCT span_id) FROM spans";
        let result = engine.sql(spans_sql).await.unwrap();
        let counted = arrow::util::pretty::pretty_format_batches(&result.batches)
            .unwrap()
            .to_string();
        assert!(counted.contains("| 5 "), "{point}: {counted}");
        drop(engine);
        // Stop without a clean flush: the writer thread stops, the WAL keeps the records.
        drop(store);

        // Restart without the fault: recovery finishes the flush.
        let store = open(config(dir.path())).await;
        store.flush().await.unwrap();
        store.shutdown().await.unwrap();
        for (sql, want) in [
            ("SELECT count(*) FROM spans", 5),
            ("SELECT count(DISTINCT span_id) FROM spans", 5),
            ("SELECT count(*) FROM span_structure", 5),
            ("SELECT count(*) FROM span_links", 1),
        ] {
            assert_eq!(count_in(dir.path(), sql).await, want, "{point}: {sql}");
        }
    }
}

/// A client cannot make partitions at will: spans older than retention or
/// further ahead than the allowed clock skew are refused as a partial success.
#[test]
fn spans_outside_the_retention_window_are_refused_as_partial_success() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::Server::start(dir.path(), &[]);
    let now = now_ns();
    let day = 86_400_000_000_000i64;
    let span = |id: u8, start: i64| {
        serde_json::json!({
            "traceId": "5b8efff798038103d269b633813fc60c",
            "spanId": format!("eee19b7ec3c1b1{id:02x}"),
            "name": format!("span {id}"),
            "startTimeUnixNano": start.to_string(),
            "endTimeUnixNano": (start + 1_000).to_string(),
        })
    };
    let body = serde_json::json!({"resourceSpans": [{"scopeSpans": [{"spans": [
        span(1, now),
        span(2, now - 30 * day),
        span(3, now + day),
        span(4, now - 3 * day),
    ]}]}]});
    let response = reqwest::blocking::Client::new()
        .post(format!("http://{}/v1/traces", server.http))
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: serde_json::Value = response.json().unwrap();
    assert_eq!(answer["partialSuccess"]["rejectedSpans"], "2", "{answer}");
    let message = answer["partialSuccess"]["errorMessage"].as_str().unwrap();
    assert!(message.contains("before the accepted window"), "{message}");
    assert!(message.contains("after the accepted window"), "{message}");
    assert!(message.contains("retention 168h"), "{message}");
    assert_eq!(server.count("SELECT count(*) AS n FROM spans"), 2);
}

/// A query node reading an old version of the tables, after maintenance
/// compacted them and vacuumed the files it names, answers "retry" (503,
/// the tables changed), never an empty answer as if the spans were gone;
/// once it re-reads the tables, the spans are all there.
#[test]
fn a_query_node_never_answers_from_files_vacuumed_under_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let writer = common::Server::start(&data, &["--flush-interval-secs", "0.3"]);
    writer.run_demo(6);
    // Two flushes at least, so compaction has files to merge: the first
    // is committed (polled for) before the second batch is sent.
    let flushed = || {
        let metrics = writer.get("/metrics").text().unwrap();
        common::metric(&metrics, "weft_flushes_total").unwrap_or(0)
    };
    for _ in 0..300 {
        if flushed() > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(flushed() > 0, "no flush");
    writer.run_demo(6);
    let stored = writer.count("SELECT count(*) AS n FROM spans");
    assert!(writer.terminate().success());

    let config = dir.path().join("query.toml");
    std::fs::write(&config, "refresh_secs = 3600\n").unwrap();
    let location = data.to_string_lossy().into_owned();
    let query = common::Server::start_at(
        &location,
        &["--no-ingest", "--config", &config.to_string_lossy()],
        &[],
    );
    assert_eq!(query.count("SELECT count(*) AS n FROM spans"), stored);

    let report = common::weft_ok(&[
        "maintain",
        "--data-dir",
        &location,
        "--vacuum-grace-secs",
        "0",
    ]);
    assert!(!report.contains("vacuumed_files=0"), "{report}");
    // The span values are in the files, which are gone: "retry". (A bare
    // `count(*)` may be answered from footers the node cached while the
    // files were there; they describe its snapshot, so that count is right.)
    let answer = reqwest::blocking::Client::new()
        .post(format!("http://{}/api/sql", query.api))
        .body("SELECT count(*) AS n, sum(duration_ns) AS d FROM spans")
        .send()
        .unwrap();
    let status = answer.status();
    let text = answer.text().unwrap();
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("the tables changed"), "{text}");

    // A node that reads the tables now has every span.
    drop(query);
    let query = common::Server::start_at(&location, &["--no-ingest"], &[]);
    assert_eq!(query.count("SELECT count(*) AS n FROM spans"), stored);
}
