//! Durations as people read them; below `graph` (its anomalies' words) and
//! `render` (the tree), which both use them.

/// `1.25s`, `85ms`, `120µs`, `900ns`.
pub fn duration(ns: i64) -> String {
    let n = ns.unsigned_abs();
    let sign = if ns < 0 { "-" } else { "" };
    if n >= 1_000_000_000 {
        format!("{sign}{:.2}s", n as f64 / 1e9)
    } else if n >= 1_000_000 {
        format!("{sign}{}ms", n / 1_000_000)
    } else if n >= 1_000 {
        format!("{sign}{}µs", n / 1_000)
    } else {
        format!("{sign}{n}ns")
    }
}
