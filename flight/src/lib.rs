//! Arrow Flight SQL over Weft's read-only SQL: ADBC (`adbc-driver-flightsql`)
//! and the Flight SQL JDBC driver get answers as Arrow record batches,
//! streamed as the query runs, with the same read-only plans, query timeout,
//! result caps, memory pool and tokens as `/api/sql`.
//!
//! Built on `arrow-flight`'s `FlightSqlService` (no `protoc`: its protobuf
//! code is generated ahead of time). The service keeps no state between
//! calls: a statement's ticket carries its SQL, and a prepared statement's
//! handle carries its SQL and its bound parameters (`handle`), so any
//! connection can redeem them and nothing is left behind by clients that
//! never close a statement.
//!
//! - [`serve`]: the gRPC listener, with the OTLP/gRPC edge's connection
//!   limit, idle deadline, TLS and request timeout;
//! - `service`: the Flight SQL calls;
//! - `handle`: prepared-statement handles and their parameters.

mod handle;
mod service;

use std::future::Future;
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightServiceServer;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use weft_auth::Auth;
use weft_listen::ListenLimits;
use weft_query::QueryEngine;

/// The largest request message a client may send (parameters of a
/// prepared statement, mostly): decoded only after this check.
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// Serves Flight SQL on `listener` until `stop` resolves.
pub async fn serve(
    listener: TcpListener,
    engine: Arc<QueryEngine>,
    auth: Arc<Auth>,
    limits: ListenLimits,
    tls: Option<TlsAcceptor>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let service = FlightServiceServer::new(service::FlightSql::new(engine, auth))
        .max_decoding_message_size(MAX_REQUEST_BYTES);
    tonic::transport::Server::builder()
        .timeout(limits.request_timeout)
        .max_concurrent_streams(Some(weft_listen::grpc::MAX_STREAMS_PER_CONNECTION))
        .http2_keepalive_interval(Some(limits.header_timeout))
        .http2_keepalive_timeout(Some(limits.header_timeout))
        .add_service(service)
        .serve_with_incoming_shutdown(weft_listen::grpc::limited(listener, limits, tls), stop)
        .await
}
