//! [`Recent`]: a map of keys seen within a time window, in bounded memory —
//! the retry-detection window and the settling horizon.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Keys seen within a time window, kept in two generations of half the window
/// (and at most half the entries) each: memory stays bounded by both, and a
/// key is remembered for at least half the window and at least half the
/// entries inserted after it, whichever ends first.
pub(super) struct Recent<K, V> {
    current: HashMap<K, V>,
    previous: HashMap<K, V>,
    rotated: Instant,
    half_window: Duration,
    half_entries: usize,
}

impl<K: Hash + Eq, V: Clone> Recent<K, V> {
    /// Remembers keys for `window`, and never more than `max_entries` at once.
    pub fn new(window: Duration, max_entries: usize) -> Self {
        Self {
            current: HashMap::new(),
            previous: HashMap::new(),
            rotated: Instant::now(),
            half_window: window / 2,
            half_entries: (max_entries / 2).max(1),
        }
    }

    pub fn get(&self, key: &K) -> Option<V> {
        self.current
            .get(key)
            .or_else(|| self.previous.get(key))
            .cloned()
    }

    pub fn contains(&self, key: &K) -> bool {
        self.get(key).is_some()
    }

    pub fn insert(&mut self, key: K, value: V) {
        let full = self.current.len() >= self.half_entries && !self.current.contains_key(&key);
        if full || self.rotated.elapsed() >= self.half_window {
            self.previous = std::mem::take(&mut self.current);
            self.rotated = Instant::now();
        }
        self.current.insert(key, value);
    }

    /// Keys held now (both generations).
    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_at_most_its_entries_and_at_least_half_of_them() {
        let mut recent = Recent::new(Duration::from_secs(3600), 1000);
        for k in 0..10_000u32 {
            recent.insert(k, ());
            assert!(recent.len() <= 1000, "{} keys held", recent.len());
        }
        // The last half of the entries are always remembered.
        assert!((9_500..10_000).all(|k| recent.contains(&k)));
        assert!(!recent.contains(&0));
    }

    #[test]
    fn forgets_keys_after_the_window() {
        let mut recent = Recent::new(Duration::ZERO, 1000);
        recent.insert(1u32, ());
        recent.insert(2, ());
        recent.insert(3, ());
        assert!(!recent.contains(&1));
        assert!(recent.contains(&3));
    }

    #[test]
    fn re_inserting_a_held_key_does_not_rotate() {
        let mut recent = Recent::new(Duration::from_secs(3600), 4);
        recent.insert(1u32, 1);
        recent.insert(2, 2);
        recent.insert(2, 3);
        assert_eq!(recent.get(&1), Some(1));
        assert_eq!(recent.get(&2), Some(3));
    }
}
