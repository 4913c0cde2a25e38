//! The codec's error type: a payload that is not OTLP (the client's to fix),
//! or stored rows that cannot be encoded back (our bug).

pub use weft_schemas::ErrorKind;

/// Result with the codec's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong decoding or encoding OTLP.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The payload is not a valid OTLP message.
    #[error("malformed {format} payload: {reason}")]
    Malformed {
        format: &'static str,
        reason: String,
    },
    /// The body (after decompression) is larger than allowed.
    #[error("payload exceeds the limit of {limit} bytes; send smaller batches")]
    TooLarge { limit: usize },
    /// The content type or encoding is not one OTLP defines.
    #[error("unsupported {what}: {value:?}; send {expected}")]
    Unsupported {
        what: &'static str,
        value: String,
        expected: &'static str,
    },
    /// Stored rows could not be encoded as OTLP: a bug, not the client's.
    #[error("internal error (a bug in weft): {0}")]
    Internal(String),
}

impl Error {
    /// What the caller should do about it.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Malformed { .. } | Error::TooLarge { .. } | Error::Unsupported { .. } => {
                ErrorKind::Invalid
            }
            Error::Internal(_) => ErrorKind::Internal,
        }
    }
}
