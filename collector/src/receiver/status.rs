//! Collector errors as gRPC statuses, once for the gRPC edge; below both
//! `grpc` (the service) and `charged` (its codec), which both answer with it.

use tonic::Status;

use crate::error::{Error, ErrorKind};

/// The one place collector errors become gRPC statuses, by [`ErrorKind`]. An
/// oversize message is RESOURCE_EXHAUSTED, as tonic answers before us; the
/// retryable kinds are UNAVAILABLE, so the client keeps the data and retries.
pub(crate) fn to_status(e: &Error) -> Status {
    let msg = e.to_string();
    match e.kind() {
        ErrorKind::Invalid if e.is_too_large() => Status::resource_exhausted(msg),
        ErrorKind::Invalid => Status::invalid_argument(msg),
        ErrorKind::NotFound => Status::not_found(msg),
        ErrorKind::Overloaded | ErrorKind::ShuttingDown => Status::unavailable(msg),
        ErrorKind::Internal => Status::internal(msg),
        ErrorKind::Unauthenticated => Status::unauthenticated(msg),
        ErrorKind::Forbidden => Status::permission_denied(msg),
    }
}
