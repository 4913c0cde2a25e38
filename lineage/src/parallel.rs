//! Two independent pieces of work, on two threads when they are big enough
//! to pay for one: a million-span build splits, a five-span one does not.

/// Work below this many items runs on the calling thread alone.
pub(crate) const PARALLEL_FROM: usize = 10_000;

/// Runs `a` and `b`, `a` on a second thread when `items` reaches
/// [`PARALLEL_FROM`]; a panic in either is the caller's.
pub(crate) fn both<A: Send, B>(
    items: usize,
    a: impl FnOnce() -> A + Send,
    b: impl FnOnce() -> B,
) -> (A, B) {
    if items < PARALLEL_FROM {
        return (a(), b());
    }
    std::thread::scope(|scope| {
        let a = scope.spawn(a);
        let b = b();
        let a = a
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (a, b)
    })
}
