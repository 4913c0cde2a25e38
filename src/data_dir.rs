//! A data directory read without a server (beside one, or after it): its span
//! tables and, when it has one, its event store (GenAI events, `events/`), so
//! `weft sql`, `weft lineage` and `weft tui` with `--data-dir` show what a
//! server's API shows.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use weft_query::{QueryEngine, QuerySettings, StaticSource};
use weft_store::Snapshot;

/// What the directory's tables hold now.
pub struct Snapshots {
    pub spans: Snapshot,
    /// Empty when the directory has no event store.
    pub events: Snapshot,
}

/// Reads the directory's tables once.
pub async fn read(dir: &Path) -> anyhow::Result<Snapshots> {
    let spans = weft_store::read_snapshot(&dir.to_string_lossy())
        .await
        .with_context(|| format!("cannot read data directory {}", dir.display()))?;
    let events_dir = dir.join(weft_store::EVENTS_DIR);
    let events = if events_dir.is_dir() {
        weft_store::read_snapshot(&events_dir.to_string_lossy())
            .await
            .with_context(|| format!("cannot read the event store {}", events_dir.display()))?
    } else {
        Snapshot::default()
    };
    Ok(Snapshots { spans, events })
}

/// An engine over what the directory holds now.
pub async fn engine(dir: &Path, settings: QuerySettings) -> anyhow::Result<QueryEngine> {
    let Snapshots { spans, events } = read(dir).await?;
    Ok(QueryEngine::with_events(
        Arc::new(StaticSource(spans)),
        Arc::new(StaticSource(events)),
        settings,
    )
    .await?)
}
