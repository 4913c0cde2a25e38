//! What the `weft` process asks of the kernel: small pages, not transparent
//! huge pages (`src/pages.rs`), unless `MIMALLOC_ALLOW_THP` says otherwise.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use crate::common::Server;

/// The `THP_enabled:` line of a process's status: `None` where the kernel
/// has no such line (not Linux, or no transparent huge pages).
fn thp_enabled(pid: u32) -> Option<bool> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("THP_enabled:"))?;
    Some(line.split_whitespace().nth(1)? == "1")
}

#[test]
fn a_server_takes_small_pages_unless_told_otherwise() {
    // Where the kernel reports nothing there is nothing to check.
    if thp_enabled(std::process::id()).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let default = Server::start(&dir.path().join("a"), &[]);
    assert_eq!(
        thp_enabled(default.pid()),
        Some(false),
        "weft serve leaves transparent huge pages on"
    );
    drop(default);

    let allowed = Server::start_at(
        &dir.path().join("b").to_string_lossy(),
        &[],
        &[("MIMALLOC_ALLOW_THP".into(), "1".into())],
    );
    assert_eq!(
        thp_enabled(allowed.pid()),
        thp_enabled(std::process::id()),
        "MIMALLOC_ALLOW_THP=1 is the kernel's and mimalloc's default again"
    );
}
