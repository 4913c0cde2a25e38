//! How the process takes memory from the kernel: small pages, not
//! transparent huge pages.
//!
//! mimalloc advises huge pages on its arenas (`madvise(MADV_HUGEPAGE)`), so
//! each first touch of a 2 MiB region makes the kernel zero all of it. A
//! query that builds a large answer once (a million-span lineage touches
//! about a GiB) then spends most of its time in the kernel: on the machine
//! BENCHMARKS.md was measured on, a fresh `weft serve`'s first lineage page
//! of a million spans (spans without attributes) took 2.7–3.4 s with huge
//! pages (2.9 s of it system time) and 1.5–1.6 s without (0.4 s system
//! time); ingest was the same either way. Databases (Redis, MongoDB) advise
//! the same.

/// Turns transparent huge pages off for this process (Linux; inherited by
/// the processes it starts), unless `MIMALLOC_ALLOW_THP` is set: then
/// mimalloc's own setting decides (`1` allows them).
pub fn small_pages_only() {
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none()
        && let Err(e) = rustix::thread::disable_transparent_huge_pages(true)
    {
        tracing::debug!(error = %e, "cannot turn transparent huge pages off; memory is taken as the kernel decides");
    }
}
