//! PostgreSQL's wire protocol with real clients: `psql` (Debian
//! postgresql-client) and `psycopg` (PyPI) against `weft serve --postgres`,
//! getting the rows `/api/sql` gets for the README's queries; parameters
//! bound by the extended protocol; the catalog queries Grafana's and
//! DBeaver's PostgreSQL drivers send on connect; DDL refused; tokens as
//! passwords.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use crate::common;

use std::process::{Command, Output};

use common::Server;
use common::python::run_json;
use serde_json::Value;

fn psql(server: &Server, password: Option<&str>, args: &[&str]) -> Output {
    let pg = server.postgres.expect("started with --postgres");
    let mut command = Command::new("psql");
    command
        .arg(format!(
            "host={} port={} user=weft dbname=weft sslmode=disable connect_timeout=10",
            pg.ip(),
            pg.port()
        ))
        .args(["-X", "-A", "-t", "-F", "|", "-v", "ON_ERROR_STOP=1"])
        .args(args)
        .env_remove("PGPASSWORD");
    match password {
        Some(p) => command.env("PGPASSWORD", p),
        None => command.arg("-w"),
    };
    command
        .output()
        .expect("psql is installed (Debian: postgresql-client)")
}

pub(crate) fn psql_lines(server: &Server, sql: &str) -> Vec<String> {
    let out = psql(server, None, &["-c", sql]);
    assert!(
        out.status.success(),
        "psql failed on {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[test]
fn psql_gets_the_rows_the_http_api_gets_and_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--postgres", "127.0.0.1:0"]);
    server.run_demo(12);

    for sql in common::README_QUERIES {
        let http = server.sql(sql);
        let lines = psql_lines(&server, sql);
        assert_eq!(lines.len(), http.len(), "row count of {sql}");
        assert!(!http.is_empty() || sql.contains("span_links"), "{sql}");
    }
    // Values, not only counts: the first query cell by cell.
    let http: Vec<String> = server
        .sql(common::README_QUERIES[0])
        .iter()
        .map(|r| format!("{}|{}", text(&r["ai_kind"]), text(&r["n"])))
        .collect();
    assert_eq!(psql_lines(&server, common::README_QUERIES[0]), http);

    // Maps are JSON text (psycopg's test below checks the other types).
    let typed = psql_lines(
        &server,
        "SELECT attributes FROM spans WHERE ai_kind = 'llm' LIMIT 1",
    );
    let attributes: Value = serde_json::from_str(&typed[0]).unwrap();
    assert!(attributes.is_object(), "{attributes}");

    // psql's own catalog commands.
    let tables = psql_lines(&server, "\\dt");
    assert!(tables.iter().any(|l| l.contains("|spans|")), "{tables:?}");
    // `\l` lists Weft's database (and the `postgres` one tools expect), not
    // DataFusion's catalog name.
    let databases = psql_lines(&server, "\\l");
    assert!(
        databases.iter().any(|l| l.starts_with("weft|")),
        "{databases:?}"
    );
    assert!(
        !databases.iter().any(|l| l.starts_with("datafusion|")),
        "{databases:?}"
    );
    assert_eq!(psql_lines(&server, "SELECT current_database()"), ["weft"]);
    let columns = psql_lines(&server, "\\d spans");
    assert!(
        columns.iter().any(|l| l.starts_with("trace_id|")),
        "{columns:?}"
    );

    // Writes are refused with PostgreSQL's read-only SQLSTATE, on every path.
    for ddl in [
        "CREATE TABLE t (a int)",
        "DROP TABLE spans",
        "INSERT INTO spans (name) VALUES ('x')",
        "CREATE VIEW v AS SELECT 1",
    ] {
        let out = psql(&server, None, &["-v", "VERBOSITY=verbose", "-c", ddl]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{ddl} was accepted");
        assert!(
            stderr.contains("25006") && stderr.contains("read-only"),
            "{ddl}: {stderr}"
        );
    }
    assert_eq!(
        psql_lines(
            &server,
            "SELECT count(*) FROM information_schema.tables WHERE table_name IN ('t', 'v')"
        ),
        vec!["0"]
    );

    // A statement over the message limit is refused with 54000 (the server
    // streams it past, never buffering it, and answers once it has all
    // arrived, so psql always reads the answer), and the same session goes
    // on to the next statement.
    let big = dir.path().join("big.sql");
    let mut text = String::from("SELECT '");
    text.push_str(&"x".repeat(17 * 1024 * 1024));
    text.push_str("' AS x;\nSELECT 'the session went on' AS after;\n");
    std::fs::write(&big, text).unwrap();
    let out = psql(
        &server,
        None,
        &[
            "-v",
            "ON_ERROR_STOP=0",
            "-v",
            "VERBOSITY=verbose",
            "-f",
            big.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("54000") && stderr.contains("over the limit"),
        "{stderr}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("the session went on"),
        "{stderr}"
    );
    assert_eq!(psql_lines(&server, "SELECT 1"), vec!["1"]);
}

/// What psycopg (server-side parameters), DBeaver's JDBC driver and
/// Grafana's PostgreSQL data source send; the script prints one JSON line.
const PSYCOPG_SCRIPT: &str = r#"
import json, sys
import psycopg

host, port, service = sys.argv[1], int(sys.argv[2]), sys.argv[3]
# Grafana's test for "schema on the search path".
SEARCH_PATH = (
    "quote_ident(table_schema) IN (SELECT CASE WHEN trim(s[i]) = '\"$user\"' THEN user "
    "ELSE trim(s[i]) END FROM generate_series("
    "array_lower(string_to_array(current_setting('search_path'),','),1), "
    "array_upper(string_to_array(current_setting('search_path'),','),1)) as i, "
    "string_to_array(current_setting('search_path'),',') s)"
)
out = {}
with psycopg.connect(host=host, port=port, user="weft", dbname="weft") as conn:
    # Not autocommit: psycopg opens a transaction (BEGIN) first.
    cur = conn.cursor()
    cur.execute(
        "SELECT name, duration_ns, start_time, attributes FROM spans "
        "WHERE service_name = %s AND duration_ns > %s ORDER BY start_time, span_id LIMIT 50",
        (service, 0),
    )
    rows = cur.fetchall()
    out["rows"] = len(rows)
    out["types"] = sorted({type(v).__name__ for v in rows[0]})
    out["tz"] = str(rows[0][2].tzinfo)
    out["attributes_json"] = isinstance(json.loads(rows[0][3]), dict)
    # Prepared on the server, run twice with different values.
    counts = []
    for svc in (service, "no-such-service"):
        cur.execute("SELECT count(*) FROM spans WHERE service_name = %s", (svc,), prepare=True)
        counts.append(cur.fetchone()[0])
    out["counts"] = counts
    cur.execute("SELECT count(*) FROM spans WHERE duration_ns > %s::bigint", (1000,))
    out["cast_param"] = cur.fetchone()[0]
    conn.commit()

    catalog = [
        # DBeaver (PostgreSQL JDBC driver) on connect.
        "SET extra_float_digits = 3",
        "SET application_name = 'PostgreSQL JDBC Driver'",
        "SELECT current_schema(), session_user",
        "SHOW search_path",
        "SELECT version()",
        "SELECT n.oid, n.nspname FROM pg_catalog.pg_namespace n ORDER BY nspname",
        "SELECT db.oid, db.datname FROM pg_catalog.pg_database db WHERE datname = 'weft'",
        "SELECT c.oid, c.relname, c.relkind FROM pg_catalog.pg_class c "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'",
        "SELECT * FROM pg_catalog.pg_settings WHERE name = 'standard_conforming_strings'",
        "SHOW TRANSACTION ISOLATION LEVEL",
        # Grafana's PostgreSQL data source (postgresMetaQuery.ts): version,
        # schemas, a schema's tables, then a table's columns (unqualified
        # names resolved on the search path).
        "SELECT current_setting('server_version_num')::int/100 as version",
        "SELECT schema_name AS \"name\" FROM information_schema.schemata "
        "WHERE schema_name NOT IN ('information_schema', 'pg_catalog', 'pg_toast') "
        "ORDER BY schema_name",
        "SELECT quote_ident(table_name) AS \"table\" FROM information_schema.tables "
        "WHERE quote_ident(table_schema) = 'public' ORDER BY 1",
        "SELECT quote_ident(column_name) AS \"column\", data_type AS \"type\" "
        "FROM information_schema.columns WHERE "
        "CASE WHEN array_length(parse_ident('spans'),1) = 2 "
        "THEN quote_ident(table_schema) = (parse_ident('spans'))[1] "
        "AND quote_ident(table_name) = (parse_ident('spans'))[2] "
        "ELSE quote_ident(table_name) = 'spans' AND " + SEARCH_PATH + " END",
        # Grafana's table list with no schema chosen: tables on the search
        # path by name first, then the rest qualified (IN subqueries in the
        # select list and in ORDER BY).
        "SELECT CASE WHEN " + SEARCH_PATH + " THEN quote_ident(table_name) "
        "ELSE quote_ident(table_schema) || '.' || quote_ident(table_name) END AS \"table\" "
        "FROM information_schema.tables WHERE quote_ident(table_schema) NOT IN "
        "('information_schema', 'pg_catalog', '_timescaledb_cache', '_timescaledb_catalog', "
        "'_timescaledb_internal', '_timescaledb_config', 'timescaledb_information', "
        "'timescaledb_experimental') "
        "ORDER BY CASE WHEN " + SEARCH_PATH + " THEN 0 ELSE 1 END, 1",
    ]
    failed = {}
    results = {}
    conn.autocommit = True
    for sql in catalog:
        try:
            cur.execute(sql)
            results[sql] = cur.fetchall() if cur.description else None
        except Exception as e:
            failed[sql] = str(e)
    out["catalog_failed"] = failed
    out["schemas"] = sorted(r[0] for r in results.get(catalog[11]) or [])
    out["tables"] = sorted(r[0] for r in results.get(catalog[12]) or [])
    out["columns"] = len(results.get(catalog[13]) or [])
    out["tables_no_schema"] = [r[0] for r in results.get(catalog[14]) or []]
    out["search_path"] = (results.get("SHOW search_path") or [[None]])[0][0]

    try:
        cur.execute("CREATE TABLE t (a int)")
        out["ddl"] = "accepted"
    except psycopg.errors.ReadOnlySqlTransaction as e:
        out["ddl"] = "read-only: " + str(e)
print(json.dumps(out))
"#;

#[test]
fn psycopg_binds_parameters_and_clients_catalog_queries_answer() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--postgres", "127.0.0.1:0"]);
    server.run_demo(8);
    let service = server.llm_service();
    let pg = server.postgres.unwrap();
    let got = run_json(
        PSYCOPG_SCRIPT,
        &[&pg.ip().to_string(), &pg.port().to_string(), &service],
    );

    let expected_rows = server.count(&format!(
        "SELECT count(*) AS n FROM (SELECT 1 FROM spans WHERE service_name = '{service}' \
         AND duration_ns > 0 LIMIT 50)"
    ));
    assert_eq!(got["rows"], expected_rows, "{got}");
    assert_eq!(
        got["types"],
        serde_json::json!(["datetime", "int", "str"]),
        "{got}"
    );
    assert_eq!(got["tz"], "UTC");
    assert_eq!(got["attributes_json"], true);
    let all = server.count(&format!(
        "SELECT count(*) AS n FROM spans WHERE service_name = '{service}'"
    ));
    assert_eq!(got["counts"], serde_json::json!([all, 0]), "{got}");
    assert_eq!(
        got["cast_param"],
        server.count("SELECT count(*) AS n FROM spans WHERE duration_ns > 1000")
    );
    assert_eq!(got["catalog_failed"], serde_json::json!({}), "{got:#}");
    assert!(
        got["tables"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "spans"),
        "{got}"
    );
    assert!(got["columns"].as_u64().unwrap() > 20, "{got}");
    // Without a schema: the search path's tables by name, none qualified.
    let listed = got["tables_no_schema"].as_array().unwrap();
    assert!(listed.iter().any(|t| t == "spans"), "{got}");
    assert!(
        listed.iter().all(|t| !t.as_str().unwrap().contains('.')),
        "{got}"
    );
    assert!(
        got["schemas"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "public"),
        "{got}"
    );
    assert_eq!(got["search_path"], "public");
    assert!(
        got["ddl"].as_str().unwrap().starts_with("read-only"),
        "{got}"
    );
}

#[test]
fn tokens_are_the_password_and_tenants_see_their_own_spans() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_config(
        dir.path(),
        r#"
[[tokens]]
name = "ingest"
role = "ingest"
token = "ingest-token-0123456789"

[[tokens]]
name = "reader"
role = "query"
token = "query-token-0123456789"

[[tokens]]
name = "acme-reader"
role = "query"
tenant = "acme"
token = "acme-query-token-0123456789"
"#,
        &["--postgres", "127.0.0.1:0"],
    );
    // Spans of no tenant, over OTLP/HTTP with the ingest token.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let body = serde_json::json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
        "scopeSpans": [{"spans": [{
            "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
            "name": "hello", "startTimeUnixNano": now.to_string(),
            "endTimeUnixNano": (now + 100_000_000).to_string()
        }]}]
    }]});
    let sent = reqwest::blocking::Client::new()
        .post(format!("http://{}/v1/traces", server.http))
        .bearer_auth("ingest-token-0123456789")
        .json(&body)
        .send()
        .unwrap();
    assert!(sent.status().is_success());

    let count = "SELECT count(*) FROM spans";
    // No password, a wrong one, an ingest token: refused at startup.
    for password in [
        None,
        Some("wrong-password-0123456789"),
        Some("ingest-token-0123456789"),
    ] {
        let out = psql(&server, password, &["-c", count]);
        assert!(!out.status.success(), "{password:?} was let in");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("password") || stderr.contains("role"),
            "{password:?}: {stderr}"
        );
    }
    let out = psql(&server, Some("query-token-0123456789"), &["-c", count]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
    // The tenant's token sees only the tenant's spans (none here), and
    // cannot widen that with SET.
    let out = psql(
        &server,
        Some("acme-query-token-0123456789"),
        &["-c", "SET \"weft.tenant\" = ''", "-c", count],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "SET\n0");
}

/// psycopg cancels a running statement from another thread (what psql's
/// Ctrl-C sends: a CancelRequest on a new connection with the session's key),
/// over and over until the statement ends, for an aggregate and for rows.
const CANCEL_SCRIPT: &str = r#"
import json, sys, threading
import psycopg

host, port = sys.argv[1], int(sys.argv[2])
out = {}
with psycopg.connect(host=host, port=port, user="weft", dbname="weft", autocommit=True) as conn:
    for name, sql in [
        ("aggregate", "SELECT count(*) FROM generate_series(1, 1000000000000)"),
        ("rows", "SELECT value FROM generate_series(1, 1000000000000)"),
    ]:
        done = threading.Event()
        def cancel_until_done():
            while not done.is_set():
                conn.cancel_safe()
                done.wait(0.05)
        canceller = threading.Thread(target=cancel_until_done)
        canceller.start()
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                for _ in cur:
                    pass
            out[name] = "finished"
        except psycopg.errors.QueryCanceled as e:
            out[name] = "cancelled: " + str(e).strip()
        finally:
            done.set()
            canceller.join()
    # The session goes on.
    out["after"] = conn.execute("SELECT 41 + 1").fetchone()[0]
print(json.dumps(out))
"#;

#[test]
fn a_cancel_request_ends_the_running_statement_and_the_session_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    // A statement that outlives the test unless cancelled.
    let server = Server::start_with_config(
        dir.path(),
        "query_timeout_secs = 3600\n",
        &["--postgres", "127.0.0.1:0"],
    );
    let pg = server.postgres.unwrap();
    let got = run_json(
        CANCEL_SCRIPT,
        &[&pg.ip().to_string(), &pg.port().to_string()],
    );
    for statement in ["aggregate", "rows"] {
        assert_eq!(
            got[statement], "cancelled: canceling statement due to user request",
            "{got}"
        );
    }
    assert_eq!(got["after"], 42, "{got}");
}

#[test]
fn the_message_limit_is_a_config_key() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_config(
        dir.path(),
        "postgres_max_message_bytes = 65536\n",
        &["--postgres", "127.0.0.1:0"],
    );
    let config = dir.path().join("weft.toml");
    let statement = |len: usize| format!("SELECT length('{}') AS n", "x".repeat(len));
    assert_eq!(psql_lines(&server, &statement(10_000)), vec!["10000"]);
    let refused = psql(&server, None, &["-c", &statement(100_000)]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("postgres_max_message_bytes"), "{stderr}");
    assert_eq!(psql_lines(&server, "SELECT 1"), vec!["1"]);

    // A budget that could never hold one message is refused at start.
    std::fs::write(
        &config,
        "postgres_max_message_bytes = 65536\npostgres_message_budget_bytes = 4096\n",
    )
    .unwrap();
    let out = common::weft(&["serve", "--config", config.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("postgres_message_budget_bytes"), "{stderr}");
}
