//! Arrow Flight SQL with a real client: the ADBC Flight SQL driver (PyPI
//! `adbc-driver-flightsql`, driven from Python) against `weft serve
//! --flight`, getting the rows `/api/sql` gets for the README's queries as
//! Arrow, parameters bound to prepared statements, a large answer in many
//! batches, the catalog (`adbc_get_objects`, `adbc_get_table_schema`),
//! writes refused, tokens and result caps.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use crate::common;

use common::Server;
use common::python::run_json;
use serde_json::{Value, json};

const QUERIES: &[&str] = common::README_QUERIES;

const SCRIPT: &str = r#"
import json, sys
import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as flight_sql

uri, token, service = sys.argv[1], sys.argv[2], sys.argv[3]
QUERIES = json.loads(sys.argv[4])
db_kwargs = {}
if token.startswith("basic:"):
    # Flight's basic-auth handshake: the token is the password.
    db_kwargs["username"] = "weft"
    db_kwargs["password"] = token[len("basic:"):]
elif token:
    db_kwargs[adbc_driver_flightsql.DatabaseOptions.AUTHORIZATION_HEADER.value] = "Bearer " + token
out = {}
def attempt(name, fn):
    try:
        out[name] = fn()
    except Exception as e:
        out[name] = {"error": type(e).__name__ + ": " + str(e)}

try:
    conn = flight_sql.connect(uri, db_kwargs=db_kwargs, autocommit=True)
except Exception as e:
    print(json.dumps({"connect": {"error": type(e).__name__ + ": " + str(e)}}))
    sys.exit(0)
with conn:
    cur = conn.cursor()
    def run(sql):
        cur.execute(sql)
        table = cur.fetch_arrow_table()
        return {"rows": table.num_rows, "types": [str(f.type) for f in table.schema],
                "first": [str(v) for v in table.slice(0, 1).to_pylist()[0].values()] if table.num_rows else []}
    for i, sql in enumerate(QUERIES):
        attempt("q%d" % i, lambda: run(sql))
    def params():
        cur.execute("SELECT count(*) AS n FROM spans WHERE service_name = $1 AND duration_ns > $2",
                    parameters=(service, 0))
        first = cur.fetchone()[0]
        cur.execute("SELECT count(*) AS n FROM spans WHERE service_name = $1 AND duration_ns > $2",
                    parameters=("no-such-service", 0))
        return [first, cur.fetchone()[0]]
    attempt("params", params)
    def large():
        cur.execute("SELECT value FROM generate_series(1, 100000)")
        reader = cur.fetch_record_batch()
        batches = rows = 0
        for batch in reader:
            batches += 1
            rows += batch.num_rows
        return {"batches": batches, "rows": rows}
    attempt("large", large)
    attempt("spans_schema", lambda: conn.adbc_get_table_schema("spans").names)
    def objects():
        found = []
        for catalog in conn.adbc_get_objects(depth="tables").read_all().to_pylist():
            for schema in catalog["catalog_db_schemas"] or []:
                for table in schema["db_schema_tables"] or []:
                    found.append(table["table_name"])
        return sorted(found)
    attempt("tables", objects)
    attempt("ddl", lambda: run("CREATE TABLE t (a int)"))
    attempt("insert", lambda: run("INSERT INTO spans (name) VALUES ('x')"))
print(json.dumps(out))
"#;

/// Runs the ADBC script against the server; its one JSON line.
fn run_adbc(server: &Server, token: Option<&str>, service: &str) -> Value {
    let flight = server.flight.expect("started with --flight");
    run_json(
        SCRIPT,
        &[
            &format!("grpc://{flight}"),
            token.unwrap_or(""),
            service,
            &serde_json::to_string(QUERIES).unwrap(),
        ],
    )
}

#[test]
fn adbc_gets_the_rows_the_http_api_gets_as_arrow() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--flight", "127.0.0.1:0"]);
    server.run_demo(12);
    let service = server.llm_service();
    let got = run_adbc(&server, None, &service);

    for (i, sql) in QUERIES.iter().enumerate() {
        let http = server.sql(sql);
        let answer = &got[format!("q{i}")];
        assert_eq!(answer["rows"], json!(http.len()), "{sql}: {answer}");
    }
    // Values and Arrow types, not only counts.
    let first = &server.sql(QUERIES[0])[0];
    assert_eq!(
        got["q0"]["first"],
        json!([first["ai_kind"], first["n"].to_string()]),
        "{got}"
    );
    assert_eq!(got["q0"]["types"], json!(["string", "int64"]));
    assert!(
        got["q3"]["types"][0]
            .as_str()
            .unwrap()
            .starts_with("timestamp[us, tz=UTC]"),
        "{got}"
    );

    let all = server.count(&format!(
        "SELECT count(*) AS n FROM spans WHERE service_name = '{service}' AND duration_ns > 0"
    ));
    assert_eq!(got["params"], json!([all, 0]), "{got}");
    assert_eq!(got["large"]["rows"], 100_000, "{got}");
    assert!(got["large"]["batches"].as_u64().unwrap() > 1, "{got}");
    let columns = got["spans_schema"].as_array().unwrap();
    assert!(columns.iter().any(|c| c == "trace_id"), "{got}");
    assert!(
        got["tables"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "spans"),
        "{got}"
    );
    for write in ["ddl", "insert"] {
        let error = got[write]["error"].as_str().unwrap_or_default();
        assert!(error.contains("read-only"), "{write}: {got}");
    }
}

#[test]
fn flight_checks_tokens_and_states_a_cut_answer() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_config(
        dir.path(),
        r#"
max_result_rows = 50000

[[tokens]]
name = "reader"
role = "query"
token = "query-token-0123456789"

[[tokens]]
name = "ingest"
role = "ingest"
token = "ingest-token-0123456789"
"#,
        &["--flight", "127.0.0.1:0"],
    );
    for token in [
        None,
        Some("ingest-token-0123456789"),
        Some("wrong-token-0123456789"),
    ] {
        let got = run_adbc(&server, token, "svc");
        let error = got["q0"]["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("UNAUTHENTICATED") || error.contains("role"),
            "{token:?}: {got}"
        );
    }
    let got = run_adbc(&server, Some("query-token-0123456789"), "svc");
    assert_eq!(got["q0"]["rows"], 0, "{got}");
    // The handshake: a token as the basic-auth password, then the bearer
    // header it answers with on every call.
    let basic = run_adbc(&server, Some("basic:query-token-0123456789"), "svc");
    assert_eq!(basic["q0"]["rows"], 0, "{basic}");
    for refused in [
        "basic:wrong-token-0123456789",
        "basic:ingest-token-0123456789",
    ] {
        let got = run_adbc(&server, Some(refused), "svc");
        let error = got["connect"]["error"]
            .as_str()
            .or_else(|| got["q0"]["error"].as_str())
            .unwrap_or_default();
        assert!(
            error.contains("UNAUTHENTICATED") || error.contains("role"),
            "{refused}: {got}"
        );
    }
    let error = got["large"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("result limit"), "{got}");
}
