//! A crash at every step of a flush, a compaction, a retention run and a
//! vacuum, on local disk and on S3: `WEFT_FAULT=abort:<point>` makes the
//! `weft` process abort at that named point, as a kill -9 would. After a
//! restart (or the next `weft maintain`), every acknowledged span is present
//! exactly once, expired ones are gone, and no committed file is missing.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use crate::common;

use std::process::Command;

use common::Server;
use common::s3::S3;

const FLUSH: [&str; 4] = [
    "flush.files_written",
    "flush.committed.spans",
    "flush.committed.span_links",
    "flush.committed.span_structure",
];

const MAINTAIN: [&str; 10] = [
    "maintain.expired.spans",
    "maintain.expired.span_structure",
    "maintain.expired.span_links",
    "maintain.compacted_written",
    "maintain.compacted.spans",
    "maintain.compacted.span_structure",
    "maintain.compacted.span_links",
    "maintain.vacuumed.spans",
    "maintain.vacuumed.span_structure",
    "maintain.vacuumed.span_links",
];

const DAY_NS: u64 = 86_400_000_000_000;

/// Where a test's tables live, and what every `weft` process there needs.
struct World {
    location: String,
    env: Vec<(String, String)>,
    /// `--wal-dir` when the location is not a directory.
    wal: Option<String>,
    dir: tempfile::TempDir,
}

impl World {
    fn local() -> World {
        let dir = tempfile::tempdir().unwrap();
        World {
            location: dir.path().join("data").to_string_lossy().into_owned(),
            env: Vec::new(),
            wal: None,
            dir,
        }
    }

    fn s3(s3: &S3, prefix: &str) -> World {
        let dir = tempfile::tempdir().unwrap();
        World {
            location: format!("s3://faults/{prefix}"),
            env: s3.env(),
            wal: Some(dir.path().join("wal").to_string_lossy().into_owned()),
            dir,
        }
    }

    fn serve(&self, extra: &[&str], fault: Option<&str>) -> Server {
        let mut args: Vec<&str> = extra.to_vec();
        if let Some(wal) = &self.wal {
            args.extend(["--wal-dir", wal.as_str()]);
        }
        let mut env = self.env.clone();
        if let Some(point) = fault {
            env.push(("WEFT_FAULT".into(), format!("abort:{point}")));
        }
        Server::start_at(&self.location, &args, &env)
    }

    fn weft(&self, args: &[&str], fault: Option<&str>) -> std::process::Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_weft"));
        command
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("WEFT_LOG", "error");
        if let Some(point) = fault {
            command.env("WEFT_FAULT", format!("abort:{point}"));
        }
        command.output().unwrap()
    }

    /// One number from `weft sql --data-dir`.
    fn count(&self, sql: &str) -> i64 {
        let out = self.weft(
            &["sql", "--data-dir", &self.location, "--format", "csv", sql],
            None,
        );
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        text.lines().nth(1).unwrap().trim().parse().unwrap()
    }
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// `n` spans of trace `trace` starting at `start`; with `link`, each links to
/// the first span of the old trace 1.
fn spans(trace: u8, n: u8, start: u64, link: bool) -> serde_json::Value {
    let spans: Vec<_> = (0..n)
        .map(|i| {
            let mut span = serde_json::json!({
                "traceId": format!("{trace:02x}{}", "cd".repeat(15)),
                "spanId": format!("{trace:02x}{i:02x}000000000000"),
                "name": format!("trace {trace} span {i}"),
                "startTimeUnixNano": (start + u64::from(i)).to_string(),
                "endTimeUnixNano": (start + u64::from(i) + 1_000).to_string(),
            });
            if link {
                span["links"] = serde_json::json!([{
                    "traceId": format!("{:02x}{}", 1, "cd".repeat(15)),
                    "spanId": format!("{:02x}{:02x}000000000000", 1, 0),
                }]);
            }
            span
        })
        .collect();
    serde_json::json!({"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]})
}

/// Acknowledged spans, then a crash inside the flush that stores them.
fn crash_in_flush(world: &World, point: &str) {
    let server = world.serve(&["--flush-interval-secs", "0.1"], Some(point));
    server.send_json(&spans(7, 40, now_ns(), true));
    let status = server.wait_exit();
    assert!(!status.success(), "{point}: weft should have aborted");
    let all = "SELECT count(*) FROM spans";
    let distinct = "SELECT count(DISTINCT span_id) FROM spans";
    let structure = "SELECT count(*) FROM span_structure";
    let links = "SELECT count(*) FROM span_links";
    // Before the restart: a reader of the tables alone sees the interrupted
    // flush whole or not at all (its spans, structure and links together);
    // one that also reads the WAL (a local directory) sees every span once.
    let seen = world.count(all);
    if world.wal.is_some() {
        assert!(seen == 0 || seen == 40, "{point}: {seen} spans");
        assert_eq!(world.count(structure), seen, "{point}: structure");
        assert_eq!(world.count(links), seen, "{point}: links");
    } else {
        assert_eq!(seen, 40, "{point}");
        assert_eq!(world.count(distinct), 40, "{point}");
    }
    // Restart; the clean stop flushes whatever is left.
    let server = world.serve(&[], None);
    assert!(server.terminate().success());
    assert_eq!(world.count(all), 40, "{point}");
    assert_eq!(world.count(distinct), 40, "{point}");
    assert_eq!(world.count(structure), 40, "{point}");
    assert_eq!(world.count(links), 40, "{point}");
}

/// Three flushes of an old trace and of a recent one linking to it, then a
/// crash inside maintenance, then maintenance again.
fn crash_in_maintenance(world: &World, point: &str) {
    let ten_days_ago = now_ns() - 10 * DAY_NS;
    for round in 0..3u8 {
        let server = world.serve(&["--retention-hours", "1000000"], None);
        server.send_json(&spans(1 + 2 * round, 5, ten_days_ago, false));
        server.send_json(&spans(2 + 2 * round, 5, now_ns(), true));
        assert!(server.terminate().success());
    }
    let config = world.dir.path().join("maintain.toml");
    std::fs::write(&config, "settle_horizon_secs = 0\n").unwrap();
    let maintain = [
        "maintain",
        "--data-dir",
        &world.location,
        "--config",
        config.to_str().unwrap(),
        "--retention-hours",
        "168",
        "--vacuum-grace-secs",
        "0",
    ];
    let crashed = world.weft(&maintain, Some(point));
    assert!(
        !crashed.status.success(),
        "{point}: weft maintain should have aborted"
    );
    let again = world.weft(&maintain, None);
    assert!(
        again.status.success(),
        "{point}: {}",
        String::from_utf8_lossy(&again.stderr)
    );
    // Every committed file is readable (a full scan of each table), the old
    // day is gone from all three, the recent spans are there once each.
    assert_eq!(world.count("SELECT count(*) FROM spans"), 15, "{point}");
    assert_eq!(
        world.count("SELECT count(DISTINCT span_id) FROM spans"),
        15,
        "{point}"
    );
    assert_eq!(
        world.count("SELECT count(*) FROM spans WHERE start_time < now() - INTERVAL '7 days'"),
        0,
        "{point}"
    );
    assert_eq!(
        world.count("SELECT count(*) FROM span_structure"),
        15,
        "{point}"
    );
    assert_eq!(
        world.count("SELECT count(*) FROM span_links"),
        15,
        "{point}"
    );
}

#[test]
fn a_crash_at_any_step_of_a_flush_loses_and_duplicates_nothing_on_local_disk() {
    for point in FLUSH {
        crash_in_flush(&World::local(), point);
    }
}

#[test]
fn a_crash_at_any_step_of_maintenance_loses_nothing_on_local_disk() {
    for point in MAINTAIN {
        crash_in_maintenance(&World::local(), point);
    }
}

#[test]
fn a_crash_at_any_step_of_a_flush_or_maintenance_loses_nothing_on_s3() {
    let s3 = S3::start();
    s3.create_bucket("faults");
    for (i, point) in FLUSH.iter().enumerate() {
        crash_in_flush(&World::s3(&s3, &format!("flush-{i}")), point);
    }
    for (i, point) in MAINTAIN.iter().enumerate() {
        crash_in_maintenance(&World::s3(&s3, &format!("maintain-{i}")), point);
    }
}
