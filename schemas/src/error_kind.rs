//! What a caller should do about an error, shared by every crate's error enum
//! so each edge maps kinds, not variants, to its protocol's status.

/// What the caller should do about an error; every edge maps this, not the variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is wrong; sending it again will fail again (4xx, INVALID_ARGUMENT).
    Invalid,
    /// Nothing matches what was asked for (404).
    NotFound,
    /// Weft cannot take it now (disk, memory, time); retry later (503, UNAVAILABLE).
    Overloaded,
    /// Weft is stopping; retry against the restarted process (503, UNAVAILABLE).
    ShuttingDown,
    /// Our bug or corrupt stored data; retrying will not help (500, INTERNAL).
    Internal,
    /// No valid token (401, UNAUTHENTICATED).
    Unauthenticated,
    /// The token's role does not allow this (403, PERMISSION_DENIED).
    Forbidden,
}

impl ErrorKind {
    /// True when the same request may succeed later.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorKind::Overloaded | ErrorKind::ShuttingDown)
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorKind;

    #[test]
    fn only_overload_and_shutdown_are_retryable() {
        assert!(ErrorKind::Overloaded.is_retryable());
        assert!(ErrorKind::ShuttingDown.is_retryable());
        for kind in [
            ErrorKind::Invalid,
            ErrorKind::NotFound,
            ErrorKind::Internal,
            ErrorKind::Unauthenticated,
            ErrorKind::Forbidden,
        ] {
            assert!(!kind.is_retryable(), "{kind:?}");
        }
    }
}
