//! Where the tables' files live: a local directory, or an object store
//! (`s3://bucket/prefix`, configured by the standard AWS environment
//! variables). Every file is named by its *location*: an absolute path, or a
//! URL. Local files are written under a temporary name, fsynced and renamed;
//! an object store's put is atomic and durable once it returns.
//!
//! Reads and writes to an object store block on the runtime: call them from
//! blocking threads (`spawn_blocking`), as flushes and maintenance do.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use deltalake::ObjectStore;
use deltalake::Path as ObjectPath;
use object_store::ObjectStoreExt;
use url::Url;

use crate::error::{Error, Result};
use crate::table_kind::TableKind;
use crate::wal::sync_dir;

/// An object store holding a data location, for readers that reach its files
/// by URL (DataFusion registers it under `url`).
#[derive(Debug, Clone)]
pub struct RemoteStore {
    /// The store's URL (`s3://bucket`).
    pub url: Url,
    pub store: Arc<dyn ObjectStore>,
}

/// A data location's files.
#[derive(Debug, Clone)]
pub(crate) enum Storage {
    Local(PathBuf),
    Remote {
        /// The location (`s3://bucket/prefix`), without a trailing slash.
        root: String,
        remote: RemoteStore,
    },
}

impl Storage {
    /// Opens a location: an `s3://` URL, or a local directory.
    pub(crate) fn open(location: &str) -> Result<Self> {
        if !is_url(location) {
            return Ok(Storage::Local(
                std::path::absolute(location).map_err(|e| Error::io(location, e))?,
            ));
        }
        crate::s3::register();
        let root = location.trim_end_matches('/').to_owned();
        let url = Url::parse(&root).map_err(|e| Error::Location {
            location: location.to_owned(),
            reason: format!("not a URL: {e}"),
        })?;
        let table = deltalake::DeltaTableBuilder::from_url(url.clone())
            .and_then(|b| b.build())
            .map_err(|e| Error::table("location", e))?;
        let store = table.log_store().root_object_store(None);
        let bucket = Url::parse(&format!(
            "{}://{}",
            url.scheme(),
            url.host_str().unwrap_or("")
        ))
        .map_err(|e| Error::Internal(format!("bucket url of {location}: {e}")))?;
        Ok(Storage::Remote {
            root,
            remote: RemoteStore { url: bucket, store },
        })
    }

    /// The location itself, as given (a path or a URL).
    pub(crate) fn root(&self) -> String {
        match self {
            Storage::Local(root) => root.to_string_lossy().into_owned(),
            Storage::Remote { root, .. } => root.clone(),
        }
    }

    /// Where a table lives.
    pub(crate) fn table(&self, kind: TableKind) -> String {
        format!("{}/{}", self.root(), kind.dir())
    }

    /// The URL a Delta table builder opens for `kind`.
    pub(crate) fn table_url(&self, kind: TableKind) -> Result<Url> {
        let location = self.table(kind);
        match self {
            Storage::Local(_) => {
                deltalake::ensure_table_uri(&location).map_err(|e| Error::table(kind.name(), e))
            }
            Storage::Remote { .. } => Url::parse(&location)
                .map_err(|e| Error::Internal(format!("{location} is not a URL: {e}"))),
        }
    }

    /// The object store for readers, when the location is remote.
    pub(crate) fn remote(&self) -> Option<RemoteStore> {
        match self {
            Storage::Local(_) => None,
            Storage::Remote { remote, .. } => Some(remote.clone()),
        }
    }

    /// The local directory, when the location is local.
    pub(crate) fn local(&self) -> Option<&Path> {
        match self {
            Storage::Local(root) => Some(root),
            Storage::Remote { .. } => None,
        }
    }

    /// True when the table `kind` has a Delta log (it exists).
    pub(crate) async fn has_log(&self, kind: TableKind) -> Result<bool> {
        let log = format!("{}/_delta_log", self.table(kind));
        match self {
            Storage::Local(_) => Ok(Path::new(&log).is_dir()),
            Storage::Remote { remote, .. } => {
                use futures::StreamExt;
                let prefix = object_path(remote, &log)?;
                match remote.store.list(Some(&prefix)).next().await {
                    None => Ok(false),
                    Some(Ok(_)) => Ok(true),
                    Some(Err(e)) => Err(object_error(&log, e)),
                }
            }
        }
    }

    /// Writes `bytes` at `location` durably and atomically.
    pub(crate) fn write(&self, location: &str, bytes: Vec<u8>) -> Result<()> {
        match self {
            Storage::Local(_) => write_local(Path::new(location), &bytes),
            Storage::Remote { remote, .. } => {
                let path = object_path(remote, location)?;
                block_on(remote.store.put(&path, Bytes::from(bytes).into()))
                    .map(|_| ())
                    .map_err(|e| object_error(location, e))
            }
        }
    }

    /// Reads the whole file at `location`.
    pub(crate) fn read(&self, location: &str) -> Result<Bytes> {
        match self {
            Storage::Local(_) => fs::read(location)
                .map(Bytes::from)
                .map_err(|e| Error::io(location, e)),
            Storage::Remote { remote, .. } => {
                let path = object_path(remote, location)?;
                block_on(async { remote.store.get(&path).await?.bytes().await })
                    .map_err(|e| object_error(location, e))
            }
        }
    }
}

/// True for `scheme://…` locations.
pub(crate) fn is_url(location: &str) -> bool {
    location.contains("://")
}

/// Writes a local file: temporary name, fsync, rename, fsync the directory.
fn write_local(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .ok_or_else(|| Error::Internal(format!("{} has no directory", path.display())))?;
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let result = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(&tmp, e));
    }
    fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    sync_dir(dir)
}

fn object_path(remote: &RemoteStore, location: &str) -> Result<ObjectPath> {
    let relative = location
        .strip_prefix(remote.url.as_str().trim_end_matches('/'))
        .ok_or_else(|| Error::Internal(format!("{location} is not in {}", remote.url)))?;
    ObjectPath::parse(relative.trim_start_matches('/'))
        .map_err(|e| Error::Internal(format!("{location}: {e}")))
}

fn object_error(location: &str, e: deltalake::ObjectStoreError) -> Error {
    Error::io(location, std::io::Error::other(e.to_string()))
}

/// Runs an object-store call from a blocking thread.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Handle::current().block_on(future)
}
