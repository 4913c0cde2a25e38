//! The signals view's state: the latest per-node load and, per node, the
//! samples of the last minutes that the sparklines draw.

use std::collections::{BTreeMap, VecDeque};

use crate::data::NodeSignal;

/// Samples kept per node: five minutes at one a second.
pub const SAMPLES: usize = 300;

/// One refresh's figures for a node.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    pub calls: u64,
    /// KV-cache hit rate in percent.
    pub kv_hit_pct: Option<u64>,
    pub ttft_p50_ms: Option<u64>,
    pub queue_p50_ms: Option<u64>,
}

#[derive(Debug, Default)]
pub struct Signals {
    latest: Vec<NodeSignal>,
    history: BTreeMap<String, VecDeque<Sample>>,
    selected: usize,
    loaded: bool,
    error: Option<String>,
}

impl Signals {
    pub fn latest(&self) -> &[NodeSignal] {
        &self.latest
    }

    pub fn history(&self, node: &str) -> Option<&VecDeque<Sample>> {
        self.history.get(node)
    }

    pub fn selected(&self) -> usize {
        self.selected
    }

    pub fn loaded(&self) -> bool {
        self.loaded
    }

    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    pub fn move_by(&mut self, delta: isize) {
        let last = self.latest.len().saturating_sub(1);
        self.selected = self.selected.saturating_add_signed(delta).min(last);
    }

    /// One refresh: every node seen before gets a sample (zero calls when it
    /// has gone quiet), so the sparklines stay aligned in time.
    pub fn receive(&mut self, answer: Result<Vec<NodeSignal>, String>) {
        self.loaded = true;
        let latest = match answer {
            Ok(latest) => latest,
            Err(e) => {
                self.error = Some(e);
                return;
            }
        };
        self.error = None;
        let keep = self.latest.get(self.selected).map(|s| s.node.clone());
        for s in &latest {
            self.history.entry(s.node.clone()).or_default();
        }
        let ms = |ns: Option<i64>| ns.map(|n| (n.max(0) / 1_000_000) as u64);
        for (node, samples) in &mut self.history {
            let sample = latest
                .iter()
                .find(|s| &s.node == node)
                .map(|s| Sample {
                    calls: s.calls,
                    kv_hit_pct: s.kv_cache_hit_rate.map(|r| (r * 100.0).round() as u64),
                    ttft_p50_ms: ms(s.ttft_p50_ns),
                    queue_p50_ms: ms(s.queue_wait_p50_ns),
                })
                .unwrap_or_default();
            if samples.len() == SAMPLES {
                samples.pop_front();
            }
            samples.push_back(sample);
        }
        self.latest = latest;
        self.selected = keep
            .and_then(|k| self.latest.iter().position(|s| s.node == k))
            .unwrap_or(self.selected)
            .min(self.latest.len().saturating_sub(1));
    }
}
