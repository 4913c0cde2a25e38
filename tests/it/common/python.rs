//! Python packages the tests use as independent, real clients (the Delta
//! reader, an S3-compatible server), installed on first use under cargo's
//! target directory with pip, so `cargo test` needs no set-up of its own.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The packages, pinned: what the tests were checked against.
/// DuckDB's `delta` extension comes from PyPI too (DuckDB would otherwise
/// download it from its own site, which the test machines cannot reach); it
/// must match DuckDB's version.
const PACKAGES: &[&str] = &[
    "deltalake==1.6.6",
    "pyarrow==26.0.1",
    "moto[server]==5.2.5",
    "polars==1.44.2",
    "duckdb==1.5.5",
    "duckdb-extension-delta==1.5.5",
    "psycopg[binary]==3.3.9",
    "adbc-driver-flightsql==1.13.0",
    "adbc-driver-manager==1.13.0",
    "opentelemetry-sdk==1.45.2",
    "opentelemetry-exporter-otlp-proto-http==1.45.2",
];

/// A `python3` command that imports [`PACKAGES`].
pub fn python() -> Command {
    let site = site_packages();
    let mut command = Command::new("python3");
    command.env("PYTHONPATH", site);
    command
}

/// Runs a Python `script` (`python3 -c`) with `args`, checks it succeeded,
/// and reads the one JSON document it prints.
pub fn run_json(script: &str, args: &[&str]) -> serde_json::Value {
    let out = python()
        .args(["-c", script])
        .args(args)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "python failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "python printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Installs the packages once per target directory (a marker file says done).
pub fn site_packages() -> &'static PathBuf {
    static SITE: OnceLock<PathBuf> = OnceLock::new();
    SITE.get_or_init(|| {
        let site = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("weft-python");
        // One marker per package list (hashed: the list is longer than a file name may be).
        let list = {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::hash::DefaultHasher::new();
            PACKAGES.hash(&mut hasher);
            hasher.finish()
        };
        let marker = site.join(format!(".installed-{list:016x}"));
        if marker.exists() {
            return site;
        }
        let status = Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--upgrade",
                "--target",
            ])
            .arg(&site)
            .args(PACKAGES)
            .status()
            .expect("python3 with pip is installed (Debian: python3-pip)");
        assert!(status.success(), "pip could not install {PACKAGES:?}");
        std::fs::write(&marker, "").unwrap();
        site
    })
}

/// `rows distinct` of the `span_id` column of the `spans` Delta table at
/// `location`, read by the Python `deltalake` package (an independent reader)
/// with `env` (the S3 variables).
pub fn delta_span_ids(location: &str, env: &[(String, String)]) -> String {
    let script = r#"
import os, sys
from deltalake import DeltaTable
t = DeltaTable(sys.argv[1] + "/spans").to_pyarrow_table(columns=["span_id"])
print(t.num_rows, len(set(t["span_id"].to_pylist())))
sys.stdout.flush()
os._exit(0)
"#;
    let out = python()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(["-c", script, location])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
