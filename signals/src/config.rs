//! What the live signals keep, and for how long.

use std::collections::HashMap;
use std::time::Duration;

use crate::Error;

/// One sliding window, named as the API takes it (`10s`, `1m`, `5m`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowSpec {
    pub name: String,
    pub length: Duration,
}

impl WindowSpec {
    /// `30s`, `1m`, `5m`, `1h`: a number and one of s, m, h.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let bad = || {
            Error::Invalid(format!(
                "{text:?} is not a window: write a number of seconds, minutes or hours, like 10s, 1m or 5m"
            ))
        };
        let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (number, unit) = text.split_at(split);
        let n: u64 = number.parse().map_err(|_| bad())?;
        let secs = match unit {
            "s" => n,
            "m" => n.saturating_mul(60),
            "h" => n.saturating_mul(3600),
            _ => return Err(bad()),
        };
        if secs == 0 || secs > 24 * 3600 {
            return Err(Error::Invalid(format!(
                "window {text:?} must be between 1s and 24h"
            )));
        }
        Ok(Self {
            name: text.to_owned(),
            length: Duration::from_secs(secs),
        })
    }
}

/// How much each reason counts in route advice ([`crate::Signals::route`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RouteWeights {
    /// The node last served this conversation.
    pub conversation: f64,
    /// The node served this prompt prefix recently (hit its KV cache, or
    /// filled it).
    pub prefix: f64,
    /// Median queue wait in the shortest window, as `q / (q + 100 ms)`.
    pub queue_wait: f64,
    /// Calls in flight, as `n / (n + 4)`.
    pub in_flight: f64,
    /// Error rate in the shortest window.
    pub errors: f64,
}

impl Default for RouteWeights {
    fn default() -> Self {
        Self {
            conversation: 3.0,
            prefix: 2.0,
            queue_wait: 2.0,
            in_flight: 1.0,
            errors: 2.0,
        }
    }
}

/// The live signals' settings (`[signals]` in the config file).
#[derive(Debug, Clone, PartialEq)]
pub struct SignalsConfig {
    /// The sliding windows kept, shortest first.
    pub windows: Vec<WindowSpec>,
    /// The window `/api/signals` answers without `window=`.
    pub default_window: String,
    /// A node not heard from for longer is reported `stale`, never idle.
    pub staleness: Duration,
    /// A call seen started (a child span of it arrived) but not ended is in
    /// flight for at most this long.
    pub in_flight_timeout: Duration,
    /// Nodes, (node, model) pairs and workflow kinds kept, each; the least
    /// recently seen is dropped past it.
    pub max_keys: usize,
    /// Conversations and prompt prefixes remembered for route advice, each.
    pub max_locality_keys: usize,
    /// Calls in flight remembered.
    pub max_open: usize,
    /// Traces awaiting their root span (for workflow signals) remembered.
    pub max_traces: usize,
    /// How long a node that served a conversation or prefix counts as holding it.
    pub locality_ttl: Duration,
    /// `/api/signals/stream` sends each changed node at most this often.
    pub stream_interval: Duration,
    /// End-to-end budget of a workflow kind not in `budgets`.
    pub default_budget: Duration,
    pub budgets: HashMap<String, Duration>,
    pub route: RouteWeights,
}

/// The shortest stream interval allowed.
pub const MIN_STREAM_INTERVAL: Duration = Duration::from_millis(50);

impl Default for SignalsConfig {
    fn default() -> Self {
        let windows = ["10s", "1m", "5m"]
            .iter()
            .filter_map(|w| WindowSpec::parse(w).ok())
            .collect();
        Self {
            windows,
            default_window: "1m".into(),
            staleness: Duration::from_secs(30),
            in_flight_timeout: Duration::from_secs(60),
            max_keys: 512,
            max_locality_keys: 100_000,
            max_open: 100_000,
            max_traces: 10_000,
            locality_ttl: Duration::from_secs(300),
            stream_interval: Duration::from_millis(250),
            default_budget: Duration::from_secs(30),
            budgets: HashMap::new(),
            route: RouteWeights::default(),
        }
    }
}

impl SignalsConfig {
    /// Checks the settings hold together; windows sorted shortest first.
    pub fn validated(mut self) -> Result<Self, Error> {
        if self.windows.is_empty() {
            return Err(Error::Invalid(
                "signals.windows needs at least one window".into(),
            ));
        }
        self.windows.sort_by_key(|w| w.length);
        self.windows.dedup_by(|a, b| a.length == b.length);
        if !self.windows.iter().any(|w| w.name == self.default_window) {
            return Err(Error::Invalid(format!(
                "signals.default_window {:?} is not one of signals.windows ({})",
                self.default_window,
                self.window_names()
            )));
        }
        if self.stream_interval < MIN_STREAM_INTERVAL {
            return Err(Error::Invalid(format!(
                "signals.stream_interval_ms is at least {} ms",
                MIN_STREAM_INTERVAL.as_millis()
            )));
        }
        if [
            self.max_keys,
            self.max_open,
            self.max_traces,
            self.max_locality_keys,
        ]
        .contains(&0)
        {
            return Err(Error::Invalid(
                "signals.max_keys, max_open, max_traces and max_locality_keys must be at least 1"
                    .into(),
            ));
        }
        Ok(self)
    }

    /// The windows' names, for messages.
    pub fn window_names(&self) -> String {
        self.windows
            .iter()
            .map(|w| w.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The budget of one workflow kind.
    pub fn budget(&self, kind: &str) -> Duration {
        self.budgets
            .get(kind)
            .copied()
            .unwrap_or(self.default_budget)
    }
}
