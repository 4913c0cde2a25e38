//! [`Recent`]: a map of keys seen within a time window, in bounded memory —
//! the retry-detection window and the settling horizon.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Keys seen within a time window, kept in two generations of half the window
/// each: memory stays bounded, and a key is forgotten between one and two
/// halves after it was last inserted.
pub(super) struct Recent<K, V> {
    current: HashMap<K, V>,
    previous: HashMap<K, V>,
    rotated: Instant,
    half_window: Duration,
}

impl<K: Hash + Eq, V: Clone> Recent<K, V> {
    pub fn new(window: Duration) -> Self {
        Self {
            current: HashMap::new(),
            previous: HashMap::new(),
            rotated: Instant::now(),
            half_window: window / 2,
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
        if self.rotated.elapsed() >= self.half_window {
            self.previous = std::mem::take(&mut self.current);
            self.rotated = Instant::now();
        }
        self.current.insert(key, value);
    }
}
