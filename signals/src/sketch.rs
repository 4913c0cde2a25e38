//! Quantile sketches: DDSketch (the `sketches-ddsketch` crate).
//!
//! Error bound: a quantile read from a [`Sketch`] is within **1 % relative
//! error** ([`RELATIVE_ERROR`]) of the exact value at the same rank — the
//! value of rank `floor(q · (n − 1))` among the `n` values added, in order —
//! for every value between 1 ns and about 5 · 10⁸ times the smallest value
//! the sketch holds ([`MAX_BINS`] logarithmic bins of ratio 1.02). Past that
//! range the lowest bins are merged, which only coarsens the lowest quantiles.
//! Merging sketches (windows of slots, nodes across tenants) keeps the bound.
//! Memory: at most `MAX_BINS` × 8 bytes of bins per sketch, allocated as the
//! values spread.

use sketches_ddsketch::{Config, DDSketch};

/// The relative error of every quantile read.
pub const RELATIVE_ERROR: f64 = 0.01;
/// Bins per sketch at most.
pub const MAX_BINS: u32 = 1024;

/// Durations in nanoseconds; empty until the first value.
#[derive(Clone, Default)]
pub struct Sketch(Option<DDSketch>);

impl std::fmt::Debug for Sketch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sketch({} values)", self.count())
    }
}

fn config() -> Config {
    Config::new(RELATIVE_ERROR, MAX_BINS, 1.0)
}

impl Sketch {
    pub fn add(&mut self, nanos: i64) {
        self.0
            .get_or_insert_with(|| DDSketch::new(config()))
            .add(nanos.max(0) as f64);
    }

    pub fn merge(&mut self, other: &Sketch) {
        let Some(theirs) = &other.0 else { return };
        match &mut self.0 {
            // Both sketches share one config, so merging cannot fail.
            Some(ours) => {
                let _ = ours.merge(theirs);
            }
            None => self.0 = Some(theirs.clone()),
        }
    }

    pub fn count(&self) -> usize {
        self.0.as_ref().map_or(0, |s| s.count())
    }

    /// The `q` quantile (0..=1) in nanoseconds; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<i64> {
        let value = self.0.as_ref()?.quantile(q).ok()??;
        Some(value.round() as i64)
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;

    /// The exact value of the rank DDSketch reads.
    fn exact(sorted: &[i64], q: f64) -> i64 {
        sorted[(q * (sorted.len() as f64 - 1.0)) as usize]
    }

    #[test]
    fn quantiles_are_within_the_stated_relative_error_of_exact_ones() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        // Three shapes: uniform, long-tailed (log-uniform over five decades),
        // and two clusters (a cache hit and a miss).
        type Draw = Box<dyn Fn(&mut rand::rngs::StdRng) -> i64>;
        let shapes: [Draw; 3] = [
            Box::new(|r| r.random_range(1_000_000..50_000_000)),
            Box::new(|r| 10f64.powf(r.random_range(4.0..9.0)) as i64),
            Box::new(|r| {
                if r.random_bool(0.7) {
                    r.random_range(2_000_000..3_000_000)
                } else {
                    r.random_range(200_000_000..400_000_000)
                }
            }),
        ];
        for (shape, draw) in shapes.iter().enumerate() {
            let values: Vec<i64> = (0..20_000).map(|_| draw(&mut rng)).collect();
            // Split across slots and merged, as a window reads them.
            let mut merged = Sketch::default();
            for part in values.chunks(3_000) {
                let mut slot = Sketch::default();
                part.iter().for_each(|v| slot.add(*v));
                merged.merge(&slot);
            }
            let mut sorted = values.clone();
            sorted.sort_unstable();
            assert_eq!(merged.count(), values.len());
            for q in [0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999] {
                let (got, want) = (merged.quantile(q).unwrap(), exact(&sorted, q));
                let error = (got - want).abs() as f64 / want as f64;
                assert!(
                    error <= RELATIVE_ERROR + 1e-9,
                    "shape {shape}, q {q}: sketch {got} vs exact {want} ({error:.4})"
                );
            }
        }
        assert_eq!(Sketch::default().quantile(0.5), None);
    }
}
