//! The store's error type, classified once by [`Error::kind`]: the caller's
//! mistakes, overload (retry later), shutdown, and our bugs. The edges map the
//! kind (a [`weft_schemas::ErrorKind`]) to their protocol's status.

use std::path::PathBuf;

pub use weft_schemas::ErrorKind;

/// Result with the store's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in storage.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // ---- the caller's mistakes ----
    /// The data location is not one Weft can open.
    #[error("data location {location:?}: {reason}")]
    Location { location: String, reason: String },
    /// One WAL record would be larger than a frame can hold.
    #[error("payload exceeds the limit of {limit} bytes; send smaller batches")]
    TooLarge { limit: usize },
    /// The request's rows would take more memory than the whole in-flight
    /// budget: it can never be taken as it is.
    #[error(
        "the request would take about {need} bytes in memory, more than the whole \
         in-flight budget (max_inflight_bytes = {budget}); send fewer spans per request \
         or smaller attributes (resource attributes are copied into every span)"
    )]
    OverBudget { need: usize, budget: usize },

    // ---- the machine's: retry later ----
    /// Reading or writing the data directory failed (a full disk, say).
    #[error("i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Reading or committing to a Delta table failed: its storage (retry
    /// later) or its log (not what Weft wrote).
    #[error("table {table}: {source}")]
    Table {
        table: &'static str,
        #[source]
        source: deltalake::DeltaTableError,
    },

    /// More spans wait to be flushed than `max_unflushed_spans`: storage is
    /// not keeping up (a full disk, an unreachable object store).
    #[error(
        "{waiting} spans are waiting to be written to storage (the limit is {limit}); \
         storage is not keeping up, retry later"
    )]
    Backlog { waiting: usize, limit: usize },

    /// Other requests in flight hold the memory budget this one needs.
    #[error("requests in flight hold the memory this one needs ({need} bytes); retry later")]
    Busy { need: usize },

    // ---- setup ----
    /// The location holds no Weft tables.
    #[error(
        "{location} holds no Weft tables (no spans/_delta_log) and no wal/: pass the location \
         that `weft serve --data-dir` writes"
    )]
    NotWeft { location: String },
    /// Another process holds the WAL directory.
    #[error(
        "the WAL directory {path} is in use by another weft process ({holder}); stop it, \
         or give this process its own --wal-dir (read-only commands such as `weft sql \
         --data-dir` work beside it)"
    )]
    InUse { path: PathBuf, holder: String },

    // ---- stopping ----
    /// The store is shutting down and takes no more spans.
    #[error("weft is shutting down; retry against the restarted server")]
    ShuttingDown,

    // ---- ours: not retryable ----
    /// Building or encoding Arrow data failed.
    #[error("arrow error: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// Writing or reading Parquet failed.
    #[error("parquet error: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// Stored data is not what this version of Weft wrote or expects.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// A broken invariant: a poisoned lock, a panicked task, a missing column.
    #[error("internal error (a bug in weft): {0}")]
    Internal(String),
}

impl Error {
    /// What the caller should do about it.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Location { .. } | Error::TooLarge { .. } | Error::OverBudget { .. } => {
                ErrorKind::Invalid
            }
            Error::Io { .. } | Error::Backlog { .. } | Error::Busy { .. } => ErrorKind::Overloaded,
            Error::InUse { .. } | Error::NotWeft { .. } => ErrorKind::Invalid,
            Error::Table { source, .. } => match source {
                deltalake::DeltaTableError::ObjectStore { .. }
                | deltalake::DeltaTableError::Io { .. }
                | deltalake::DeltaTableError::VersionAlreadyExists(_)
                | deltalake::DeltaTableError::Transaction { .. } => ErrorKind::Overloaded,
                _ => ErrorKind::Internal,
            },
            Error::ShuttingDown => ErrorKind::ShuttingDown,
            Error::Arrow(_) | Error::Parquet(_) | Error::Corrupt(_) | Error::Internal(_) => {
                ErrorKind::Internal
            }
        }
    }

    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A Delta table's error.
    pub(crate) fn table(table: &'static str, source: deltalake::DeltaTableError) -> Self {
        Error::Table { table, source }
    }

    /// An error of the same kind and message, for answering every request of
    /// a failed group with the error that failed it.
    pub(crate) fn duplicate(&self) -> Self {
        match self {
            Error::Io { path, source } => Error::Io {
                path: path.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            Error::TooLarge { limit } => Error::TooLarge { limit: *limit },
            Error::OverBudget { need, budget } => Error::OverBudget {
                need: *need,
                budget: *budget,
            },
            Error::ShuttingDown => Error::ShuttingDown,
            Error::Backlog { waiting, limit } => Error::Backlog {
                waiting: *waiting,
                limit: *limit,
            },
            Error::Corrupt(m) => Error::Corrupt(m.clone()),
            Error::Internal(m) => Error::Internal(m.clone()),
            other => Error::Internal(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_has_one_kind_and_duplicates_keep_it() {
        let cases = [
            (Error::OverBudget { need: 2, budget: 1 }, ErrorKind::Invalid),
            (Error::TooLarge { limit: 1 }, ErrorKind::Invalid),
            (
                Error::io("/x", std::io::Error::other("disk full")),
                ErrorKind::Overloaded,
            ),
            (Error::ShuttingDown, ErrorKind::ShuttingDown),
            (
                Error::Backlog {
                    waiting: 2,
                    limit: 1,
                },
                ErrorKind::Overloaded,
            ),
            (Error::Corrupt("bad".into()), ErrorKind::Internal),
            (Error::Internal("lock".into()), ErrorKind::Internal),
        ];
        for (error, kind) in cases {
            assert_eq!(error.kind(), kind, "{error}");
            assert_eq!(error.duplicate().kind(), kind, "{error}");
            assert_eq!(error.duplicate().to_string(), error.to_string());
        }
    }
}
