//! Reconstructions kept a short while, so a big workflow is built once per
//! reading rather than once per page.
//!
//! A million-span workflow takes seconds to fetch and analyse, and a reader
//! takes it a page at a time (`/api/lineage/{id}?offset=`, the TUI, SQL
//! `LIMIT … OFFSET …`). Two rules keep reuse honest:
//! - **Same data**: a reconstruction is reused while the span source holds
//!   exactly what it held then (the same committed files and the same live
//!   batches: [`DataVersion`]), for at most [`SAME_DATA_TTL`] (an in-flight
//!   workflow's flags depend on the clock).
//! - **A reading's next page**: a request for a page past the first
//!   (`Freshness::NextPage`) takes the reconstruction the first page came
//!   from, if it is at most [`NEXT_PAGE_TTL`] old, even if spans arrived
//!   since — the pages of one reading then agree, as a cursor's would.
//!
//! Memory is bounded by nodes: entries hold at most [`MAX_NODES`] nodes
//! together (the oldest go first), and a workflow bigger than that alone is
//! not kept.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use weft_schemas::TraceId;

use crate::lineage::{Direction, LineageResult, Reach};
use crate::table::SpanSource;

/// How long a reconstruction answers for unchanged data.
pub const SAME_DATA_TTL: Duration = Duration::from_secs(10);
/// How long a reading's later pages come from its first page's reconstruction.
pub const NEXT_PAGE_TTL: Duration = Duration::from_secs(120);
/// Nodes kept over every entry.
pub const MAX_NODES: usize = 2_000_000;
/// Entries kept at most.
const MAX_ENTRIES: usize = 16;

/// What a request may be answered from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// The data as it is now (a reconstruction of exactly this data will do).
    Current,
    /// A page after the first of a reading begun within [`NEXT_PAGE_TTL`].
    NextPage,
}

/// An identity of what a span source holds: its committed files and live
/// batches. Equal versions hold equal spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DataVersion(u64);

impl DataVersion {
    pub(crate) fn of(source: &Arc<dyn SpanSource>) -> Option<Self> {
        let snapshot = source.snapshot().ok()?;
        let mut h = DefaultHasher::new();
        for f in snapshot
            .files
            .iter()
            .chain(&snapshot.links)
            .chain(&snapshot.structure)
        {
            f.location.hash(&mut h);
        }
        snapshot.batches.len().hash(&mut h);
        for b in &snapshot.batches {
            b.num_rows().hash(&mut h);
            // Live batches are immutable and shared: the address of a
            // batch's first buffer names it.
            if b.num_columns() > 0 {
                let data = b.column(0).to_data();
                if let Some(buffer) = data.buffers().first() {
                    (buffer.as_ptr() as usize).hash(&mut h);
                }
            }
        }
        Some(Self(h.finish()))
    }
}

struct Entry {
    trace: TraceId,
    reach: Reach,
    /// Whether the lineage carries its span events (the API's does; SQL's
    /// table functions need none).
    events: bool,
    at: Instant,
    version: Option<DataVersion>,
    result: Arc<LineageResult>,
}

/// The kept reconstructions of one engine (one tenant).
#[derive(Default)]
pub(crate) struct LineageCache(Mutex<Vec<Entry>>);

impl LineageCache {
    /// A kept reconstruction reachable from `trace` with `reach` that may
    /// answer: events attached if `events`, by the rules above.
    pub(crate) fn get(
        &self,
        trace: &TraceId,
        reach: Reach,
        events: bool,
        freshness: Freshness,
        now: Option<DataVersion>,
    ) -> Option<Arc<LineageResult>> {
        let entries = self.0.lock().ok()?;
        entries
            .iter()
            .rev()
            .filter(|e| e.reach == reach && (e.events || !events))
            // From any trace of the workflow, when the walk goes everywhere.
            .filter(|e| {
                e.trace == *trace
                    || (reach.direction == Direction::Both
                        && reach.max_depth.is_none()
                        && !e.result.truncated
                        && e.result.lineage.traces.contains(trace))
            })
            .find(|e| {
                let same = now.is_some() && e.version == now && e.at.elapsed() < SAME_DATA_TTL;
                let next_page = freshness == Freshness::NextPage && e.at.elapsed() < NEXT_PAGE_TTL;
                same || next_page
            })
            .map(|e| Arc::clone(&e.result))
    }

    /// Keeps `result`, made from the data at `version`.
    pub(crate) fn put(
        &self,
        trace: TraceId,
        reach: Reach,
        events: bool,
        version: Option<DataVersion>,
        result: &Arc<LineageResult>,
    ) {
        let nodes = result.lineage.nodes.len();
        if nodes > MAX_NODES {
            return;
        }
        let Ok(mut entries) = self.0.lock() else {
            return;
        };
        entries
            .retain(|e| e.at.elapsed() < NEXT_PAGE_TTL && !(e.trace == trace && e.reach == reach));
        let mut held: usize = entries.iter().map(|e| e.result.lineage.nodes.len()).sum();
        while !entries.is_empty() && (held + nodes > MAX_NODES || entries.len() >= MAX_ENTRIES) {
            held -= entries.remove(0).result.lineage.nodes.len();
        }
        entries.push(Entry {
            trace,
            reach,
            events,
            at: Instant::now(),
            version,
            result: Arc::clone(result),
        });
    }
}
