//! The crate edges ARCHITECTURE.md's invariants rest on, read from
//! `cargo tree` (every normal dependency, however indirect): storage knows no
//! wire protocol, the SQL edges do not depend on ingest, and the explorer and
//! lineage see no query engine.

use std::process::Command;

/// Every package `krate` depends on for its normal build, by name.
fn dependencies(krate: &str) -> Vec<String> {
    let output = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "--locked",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .args(["-f", "{p}", "-p", krate])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo tree -p {krate}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut names: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    names
}

fn assert_without(krate: &str, forbidden: &[&str]) {
    let deps = dependencies(krate);
    assert!(
        deps.iter().any(|d| d == krate),
        "cargo tree -p {krate} listed {deps:?}"
    );
    for name in forbidden {
        assert!(
            !deps.iter().any(|d| d == name),
            "{krate} depends on {name}, which its invariant forbids"
        );
    }
}

#[test]
fn storage_knows_no_wire_protocol() {
    assert_without(
        "weft-store",
        &[
            "tonic",
            "prost",
            "axum",
            "opentelemetry-proto",
            "weft-otlp",
            "weft-listen",
        ],
    );
}

#[test]
fn the_sql_edges_and_the_query_engine_do_not_depend_on_ingest() {
    for krate in ["weft-query", "weft-postgres", "weft-flight"] {
        assert_without(krate, &["weft-collector"]);
    }
}

#[test]
fn plain_data_crates_see_no_query_engine_or_storage() {
    for krate in ["weft-tui", "weft-lineage", "weft-signals"] {
        assert_without(
            krate,
            &["datafusion", "deltalake", "weft-query", "weft-store"],
        );
    }
    assert_without("weft-schemas", &["prost", "deltalake", "datafusion"]);
}
