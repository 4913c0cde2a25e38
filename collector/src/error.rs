//! The collector's error type: the client's mistakes apart from ours.

use std::path::PathBuf;

/// Result with the collector's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in ingest and storage.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // ---- the client's mistakes: answered with 4xx / INVALID_ARGUMENT ----
    /// The payload is not a valid OTLP message.
    #[error("malformed {format} payload: {reason}")]
    Malformed {
        format: &'static str,
        reason: String,
    },
    /// The body (after decompression) is larger than allowed.
    #[error("payload exceeds the limit of {limit} bytes")]
    TooLarge { limit: usize },
    /// The content type or encoding is not one OTLP defines.
    #[error("unsupported {what}: {value:?}; send {expected}")]
    Unsupported {
        what: &'static str,
        value: String,
        expected: &'static str,
    },

    // ---- ours or the machine's: answered with 5xx / UNAVAILABLE ----
    /// Reading or writing the data directory failed.
    #[error("i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Building or encoding Arrow data failed.
    #[error("arrow error: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// Writing or reading Parquet failed.
    #[error("parquet error: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// The store is shutting down or its writer stopped.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

impl Error {
    /// True when the client sent something wrong (and retrying will not help).
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            Error::Malformed { .. } | Error::TooLarge { .. } | Error::Unsupported { .. }
        )
    }

    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
