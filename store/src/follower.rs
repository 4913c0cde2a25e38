//! A read-only view of tables that other processes write (`weft serve
//! --no-ingest`): the latest committed version of each, refreshed on a
//! schedule. It holds no WAL, so it sees spans once their collector flushed.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::Notify;

use crate::error::{Error, Result};
use crate::storage::Storage;
use crate::store::Snapshot;
use crate::tables::Tables;

/// Follows the tables at a location; cheap to clone.
#[derive(Clone)]
pub struct Follower {
    inner: Arc<Inner>,
}

struct Inner {
    storage: Storage,
    tables: tokio::sync::Mutex<Option<Tables>>,
    snapshot: RwLock<Snapshot>,
}

impl Follower {
    /// Opens the tables at `location` (a directory or an `s3://` URL); until
    /// a collector creates them, the view is empty.
    pub async fn open(location: &str) -> Result<Self> {
        let storage = Storage::open(location)?;
        let follower = Self {
            inner: Arc::new(Inner {
                snapshot: RwLock::new(Snapshot {
                    remote: storage.remote(),
                    ..Snapshot::default()
                }),
                storage,
                tables: tokio::sync::Mutex::new(None),
            }),
        };
        follower.refresh().await?;
        Ok(follower)
    }

    /// The tables as of the last refresh.
    pub fn snapshot(&self) -> Result<Snapshot> {
        self.inner
            .snapshot
            .read()
            .map(|s| s.clone())
            .map_err(|_| Error::Internal("follower lock poisoned by an earlier panic".into()))
    }

    /// Loads the latest version of every table.
    pub async fn refresh(&self) -> Result<()> {
        let mut tables = self.inner.tables.lock().await;
        match tables.as_mut() {
            Some(t) => t.refresh().await?,
            None => *tables = Tables::open(&self.inner.storage, false).await?,
        }
        let Some(t) = tables.as_ref() else {
            return Ok(());
        };
        let listing = t.listing().await?;
        let snapshot = Snapshot {
            files: listing.spans,
            batches: Vec::new(),
            structure: listing.structure,
            links: listing.links,
            remote: self.inner.storage.remote(),
        };
        *self
            .inner
            .snapshot
            .write()
            .map_err(|_| Error::Internal("follower lock poisoned by an earlier panic".into()))? =
            snapshot;
        Ok(())
    }

    /// Refreshes every `every` until `stop`.
    pub async fn run_refresh(self, every: Duration, stop: Arc<Notify>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.notified() => return,
            }
            if let Err(e) = self.refresh().await {
                tracing::warn!(error = %e, "cannot refresh the tables; serving the last version");
            }
        }
    }
}
