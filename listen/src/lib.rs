//! Listeners facing clients, written once for every protocol Weft serves.
//!
//! - [`accept`]: the accept loop: at most `max_connections` connections at
//!   once (each holds a [`Slot`] until it ends), accept errors waited out
//!   rather than spun on, and each TLS handshake on its own task within the
//!   header deadline, so a slow client holds up no one else;
//! - [`http`]: HTTP/1.1 and HTTP/2 (the query API, OTLP/HTTP) with header and
//!   request deadlines, panics answered as 500s, and a graceful shutdown
//!   bounded by `shutdown_grace`;
//! - [`grpc`]: connections for tonic (OTLP/gRPC, Flight SQL), closed once
//!   silent for twice the header deadline.
//!
//! The PostgreSQL listener (`weft-postgres`) takes its connections from
//! [`accept::accept`] too; its TLS is negotiated inside the protocol.

pub mod accept;
pub mod grpc;
pub mod http;

use std::time::Duration;

pub use accept::{Accepted, Slot, WhenFull};

/// How a listener treats its clients.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ListenLimits {
    /// Connections served at once; more are closed on accept.
    pub max_connections: usize,
    /// A request's headers (also the next request's on a kept-alive
    /// connection) must arrive within this, or the connection is closed. On
    /// HTTP/2 (gRPC) idle clients are pinged this often, and a connection
    /// that sends nothing for twice this is closed.
    pub header_timeout: Duration,
    /// A whole request (body, handler) must finish within this: 408 or the
    /// connection is closed.
    pub request_timeout: Duration,
    /// On stop, requests in flight get this long before their connections close.
    pub shutdown_grace: Duration,
}

impl Default for ListenLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}
