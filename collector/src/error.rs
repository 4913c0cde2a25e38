//! The OTLP edges' error type: the edge's own refusals (no such endpoint, no
//! token), the codec's ([`weft_otlp::Error`]) and the store's
//! ([`weft_store::Error`]), each classified by its [`ErrorKind`]. Each edge
//! maps the kind to its protocol's status in one place
//! (`receiver::status::to_status`, `receiver::http::error_response`).

pub use weft_schemas::ErrorKind;

/// Result with the edges' [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything an OTLP request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Nothing is served at the path, or not with that method.
    #[error("{what}")]
    NoEndpoint { what: String },
    /// The caller has no token that allows sending spans.
    #[error("{0}")]
    Denied(#[from] weft_auth::Denied),
    /// The payload is not OTLP the codec accepts.
    #[error(transparent)]
    Otlp(#[from] weft_otlp::Error),
    /// Storing the spans failed, or must wait.
    #[error(transparent)]
    Store(#[from] weft_store::Error),
}

impl Error {
    /// What the caller should do about it.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NoEndpoint { .. } => ErrorKind::NotFound,
            Error::Denied(d) if d.is_unauthenticated() => ErrorKind::Unauthenticated,
            Error::Denied(_) => ErrorKind::Forbidden,
            Error::Otlp(e) => e.kind(),
            Error::Store(e) => e.kind(),
        }
    }

    /// A payload over a size limit (413, RESOURCE_EXHAUSTED).
    pub(crate) fn is_too_large(&self) -> bool {
        matches!(
            self,
            Error::Otlp(weft_otlp::Error::TooLarge { .. })
                | Error::Store(weft_store::Error::TooLarge { .. })
        )
    }

    /// A content type or encoding OTLP does not define (415).
    pub(crate) fn is_unsupported(&self) -> bool {
        matches!(self, Error::Otlp(weft_otlp::Error::Unsupported { .. }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_keeps_the_kind_of_what_it_wraps() {
        let cases = [
            (Error::NoEndpoint { what: "x".into() }, ErrorKind::NotFound),
            (
                Error::from(weft_otlp::Error::Malformed {
                    format: "protobuf",
                    reason: "x".into(),
                }),
                ErrorKind::Invalid,
            ),
            (
                Error::from(weft_store::Error::Busy { need: 1 }),
                ErrorKind::Overloaded,
            ),
            (
                Error::from(weft_store::Error::ShuttingDown),
                ErrorKind::ShuttingDown,
            ),
        ];
        for (error, kind) in cases {
            assert_eq!(error.kind(), kind, "{error}");
        }
        let too_large = Error::from(weft_otlp::Error::TooLarge { limit: 1 });
        assert!(too_large.is_too_large());
        assert_eq!(
            too_large.to_string(),
            "payload exceeds the limit of 1 bytes; send smaller batches"
        );
    }
}
