//! Sliding windows: a ring of [`SLOTS`] time slots per window, each slot an
//! aggregate that merges. A window of length `w` has slots `w / SLOTS` wide,
//! aligned to the Unix epoch; it is read as the slot holding `now` and the
//! `SLOTS - 1` before it, so it covers between `w · (SLOTS−1)/SLOTS` and `w`
//! back from now ([`Ring::covered_ns`] says exactly how much).

use crate::sketch::Sketch;

/// Slots per window.
pub const SLOTS: usize = 10;

/// An aggregate of one slot: adds up, merges with another.
pub trait Merge: Default + Clone {
    fn merge(&mut self, other: &Self);
}

#[derive(Clone, Default)]
struct Slot<A> {
    /// `start / width` of the slot this holds; `i64::MIN` when unused.
    index: i64,
    agg: A,
}

/// One window of a key.
#[derive(Clone)]
pub struct Ring<A> {
    width_ns: i64,
    slots: Vec<Slot<A>>,
}

impl<A: Merge> Ring<A> {
    pub fn new(length_ns: i64) -> Self {
        let width_ns = (length_ns / SLOTS as i64).max(1);
        Self {
            width_ns,
            slots: vec![
                Slot {
                    index: i64::MIN,
                    agg: A::default(),
                };
                SLOTS
            ],
        }
    }

    fn index(&self, at_ns: i64) -> i64 {
        at_ns.div_euclid(self.width_ns)
    }

    /// The slot aggregate for time `at_ns`, or `None` when that time is
    /// outside the window ending at `now_ns` (too old: not counted).
    pub fn slot(&mut self, at_ns: i64, now_ns: i64) -> Option<&mut A> {
        let now = self.index(now_ns);
        let index = self.index(at_ns.min(now_ns));
        if index <= now - SLOTS as i64 {
            return None;
        }
        let slot = &mut self.slots[index.rem_euclid(SLOTS as i64) as usize];
        if slot.index != index {
            if slot.index > index {
                // The ring already moved past this time.
                return None;
            }
            slot.index = index;
            slot.agg = A::default();
        }
        Some(&mut slot.agg)
    }

    /// Every slot of the window ending at `now_ns`, merged.
    pub fn read(&self, now_ns: i64) -> A {
        let now = self.index(now_ns);
        let mut total = A::default();
        for slot in &self.slots {
            if slot.index > now - SLOTS as i64 && slot.index <= now {
                total.merge(&slot.agg);
            }
        }
        total
    }

    /// How far back from `now_ns` the window reads, in nanoseconds: from the
    /// start of its oldest slot.
    pub fn covered_ns(&self, now_ns: i64) -> i64 {
        let oldest = self.index(now_ns) - (SLOTS as i64 - 1);
        now_ns - oldest * self.width_ns
    }

    /// The earliest time the window ending at `now_ns` counts.
    pub fn start_ns(&self, now_ns: i64) -> i64 {
        now_ns - self.covered_ns(now_ns)
    }
}

/// What a node (or a node's model) did in one slot.
#[derive(Clone, Default)]
pub struct CallAgg {
    pub calls: u64,
    pub errors: u64,
    /// Calls that said whether they hit the KV cache, and those that did.
    pub kv_known: u64,
    pub kv_hits: u64,
    pub ratio_sum: f64,
    pub ratio_n: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Cost of the calls that have one, and how many had one.
    pub cost: f64,
    pub costed: u64,
    pub queue_wait: Sketch,
    pub ttft: Sketch,
    pub duration: Sketch,
}

impl Merge for CallAgg {
    fn merge(&mut self, o: &Self) {
        self.calls += o.calls;
        self.errors += o.errors;
        self.kv_known += o.kv_known;
        self.kv_hits += o.kv_hits;
        self.ratio_sum += o.ratio_sum;
        self.ratio_n += o.ratio_n;
        self.input_tokens += o.input_tokens;
        self.output_tokens += o.output_tokens;
        self.cost += o.cost;
        self.costed += o.costed;
        self.queue_wait.merge(&o.queue_wait);
        self.ttft.merge(&o.ttft);
        self.duration.merge(&o.duration);
    }
}

/// What the workflows of one kind did in one slot.
#[derive(Clone, Default)]
pub struct WorkflowAgg {
    pub runs: u64,
    pub errors: u64,
    pub over_budget: u64,
    /// Steps retried after a failed attempt, over all runs.
    pub retries: u64,
    /// Steps seen, over all runs (retry amplification is steps over steps
    /// less retries).
    pub steps: u64,
    pub cost: f64,
    pub costed: u64,
    pub end_to_end: Sketch,
    /// Time on the critical path by step name (nanoseconds), at most
    /// [`MAX_CRITICAL_STEPS`] names per slot.
    pub critical: Vec<(String, i64)>,
}

/// Step names a workflow slot remembers critical-path time for.
pub const MAX_CRITICAL_STEPS: usize = 32;

impl WorkflowAgg {
    pub fn add_critical(&mut self, name: &str, nanos: i64) {
        if let Some(entry) = self.critical.iter_mut().find(|(n, _)| n == name) {
            entry.1 += nanos;
        } else if self.critical.len() < MAX_CRITICAL_STEPS {
            self.critical.push((name.to_owned(), nanos));
        }
    }
}

impl Merge for WorkflowAgg {
    fn merge(&mut self, o: &Self) {
        self.runs += o.runs;
        self.errors += o.errors;
        self.over_budget += o.over_budget;
        self.retries += o.retries;
        self.steps += o.steps;
        self.cost += o.cost;
        self.costed += o.costed;
        self.end_to_end.merge(&o.end_to_end);
        for (name, nanos) in &o.critical {
            self.add_critical(name, *nanos);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Count(u64);
    impl Merge for Count {
        fn merge(&mut self, o: &Self) {
            self.0 += o.0;
        }
    }

    #[test]
    fn a_window_counts_what_falls_in_its_slots_and_forgets_the_rest() {
        const S: i64 = 1_000_000_000;
        let mut ring: Ring<Count> = Ring::new(10 * S);
        let mut now = 1_000 * S;
        // One event per 100 ms for 30 s: the window holds the last 10 s.
        let mut times = Vec::new();
        for i in 0..300 {
            let at = now + i * S / 10;
            ring.slot(at, at).unwrap().0 += 1;
            times.push(at);
        }
        now += 30 * S - S / 10;
        let start = ring.start_ns(now);
        let exact = times.iter().filter(|t| **t >= start && **t <= now).count() as u64;
        assert_eq!(ring.read(now).0, exact);
        let covered = ring.covered_ns(now);
        assert!(covered > 9 * S && covered <= 10 * S, "{covered}");
        // Too old for the window: not counted.
        assert!(ring.slot(now - 11 * S, now).is_none());
        // Much later, the window is empty.
        assert_eq!(ring.read(now + 60 * S).0, 0);
    }
}
