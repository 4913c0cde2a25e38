//! Serving HTTP (an axum `Router`) with the limits a listener facing clients
//! needs: the shared accept loop's connection limit and TLS handshakes, a
//! deadline for each request's headers (slow or idle clients cannot hold
//! connections open), a deadline for each whole request, and a graceful
//! shutdown that waits at most `shutdown_grace` for requests in flight, then
//! closes what is left (so a stop always gets to the final flush).

use std::future::Future;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::ListenLimits;
use crate::accept::{WhenFull, accept_tls};

/// Serves `router` on `listener` until `stop` resolves, then shuts down
/// within `limits.shutdown_grace`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ListenLimits,
    tls: Option<TlsAcceptor>,
    stop: impl Future<Output = ()>,
) {
    let router = router
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .layer(axum::middleware::map_response(explain_timeout))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked));
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.header_timeout)
        .keep_alive_timeout(limits.header_timeout);
    let mut connections = accept_tls(listener, limits, tls, WhenFull::Close, "HTTP");
    tokio::pin!(stop);
    loop {
        let connection = tokio::select! {
            connection = connections.recv() => match connection {
                Some(connection) => connection,
                None => break,
            },
            () = &mut stop => break,
        };
        let service = TowerToHyperService::new(router.clone());
        let served = builder
            .serve_connection_with_upgrades(TokioIo::new(connection.stream), service)
            .into_owned();
        let watched = graceful.watch(served);
        tokio::spawn(async move {
            let _ = watched.await;
            drop(connection.slot);
        });
    }
    // Closes the listener: new connections are refused from here on.
    drop(connections);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!(grace = ?limits.shutdown_grace, "requests still in flight at the shutdown deadline; closing their connections");
        }
    }
}

/// The timeout layer answers 408 with an empty body; say what happened.
async fn explain_timeout(response: axum::response::Response) -> axum::response::Response {
    if response.status() != axum::http::StatusCode::REQUEST_TIMEOUT {
        return response;
    }
    error_response(
        axum::http::StatusCode::REQUEST_TIMEOUT,
        4,
        "the request took longer than request_timeout_secs (body and handling); \
         send smaller requests or raise the limit",
    )
}

/// An error answered by the listener itself, in JSON both edges' clients
/// read: `error` for the query API; `code` (a gRPC code) and `message`, a
/// `google.rpc.Status`, for OTLP/HTTP.
fn error_response(
    status: axum::http::StatusCode,
    code: i32,
    message: &str,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        serde_json::json!({"error": message, "code": code, "message": message}).to_string(),
    )
        .into_response()
}

/// A request that hit a panic (a bug, ours or a library's) gets a 500 that
/// says so, instead of a dropped connection; the server keeps serving.
fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    let what = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown");
    tracing::error!(panic = what, "a request panicked");
    error_response(
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        13,
        &format!("internal error: the request hit a bug ({what}); please report it"),
    )
}
