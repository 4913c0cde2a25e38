//! PostgreSQL's wire protocol over Weft's read-only SQL: psql, psycopg,
//! DBeaver, Grafana's PostgreSQL data source and Metabase connect to Weft as
//! to a (read-only) PostgreSQL server.
//!
//! Built on `pgwire` (the protocol) with `datafusion-pg-catalog` (the
//! `pg_catalog` tables and PostgreSQL's SQL rewrites, installed by the query
//! engine) and `arrow-pg` (Arrow values on the wire), rather than on
//! `datafusion-postgres`' ready-made handlers: those run statements on the
//! session directly, so the query API's limits (read-only plans, the query
//! timeout, result caps, the SQL depth check) would not apply, and they carry
//! `SET` through to the shared DataFusion session, where one client's setting
//! would change every other client's. Here every statement goes through
//! [`weft_query::QueryEngine`] like `/api/sql`.
//!
//! - [`serve`]: sessions on the shared accept loop (`weft-listen`: the
//!   connection limit), with keepalive and a bounded shutdown;
//! - `frames`: TLS, a size limit on every client message checked before its
//!   body is read, and an idle deadline, in front of pgwire;
//! - `oversize`: the stand-in for a message over the limit, answered 54000;
//! - `startup`: authentication (a query token as the password) and the tenant;
//! - `session`: simple and extended query protocol (`$n` parameters);
//! - `cancel`: query cancel requests (psql's Ctrl-C);
//! - `local`: what is answered without the engine (`SET`, `SHOW`,
//!   transactions);
//! - `rows`: answers as rows (maps as JSON text) and errors as SQLSTATEs.

mod cancel;
mod frames;

pub use frames::PgLimits;
mod local;
mod oversize;
mod rows;
mod session;
mod startup;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use pgwire::api::PgWireServerHandlers;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use weft_auth::Auth;
use weft_listen::ListenLimits;
use weft_listen::accept::{WhenFull, accept};
use weft_query::QueryEngine;

/// The handlers of every connection (they keep no per-connection state:
/// that is in pgwire's client metadata).
struct Handlers {
    session: Arc<session::Session>,
    startup: Arc<startup::Startup>,
    cancels: Arc<cancel::Cancels>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl pgwire::api::query::SimpleQueryHandler> {
        Arc::clone(&self.session)
    }

    fn extended_query_handler(&self) -> Arc<impl pgwire::api::query::ExtendedQueryHandler> {
        Arc::clone(&self.session)
    }

    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        Arc::clone(&self.startup)
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        Arc::clone(&self.cancels)
    }
}

/// How often an idle connection's peer is probed (TCP keepalive), so a
/// vanished client's connection is closed.
const KEEPALIVE: Duration = Duration::from_secs(60);

/// Serves PostgreSQL's protocol on `listener` until `stop` resolves; then
/// sessions in flight get `limits.shutdown_grace` to finish and are closed.
/// At most `limits.max_connections` sessions at once; a client must finish
/// its startup (TLS, authentication) within pgwire's startup deadline, and
/// each statement runs within the engine's query timeout.
pub async fn serve(
    listener: TcpListener,
    engine: Arc<QueryEngine>,
    auth: Arc<Auth>,
    limits: ListenLimits,
    pg: PgLimits,
    tls: Option<TlsAcceptor>,
    stop: impl Future<Output = ()>,
) {
    let cancels = Arc::new(cancel::Cancels::default());
    let handlers = Arc::new(Handlers {
        session: Arc::new(session::Session::new(engine)),
        startup: Arc::new(startup::Startup::new(auth, Arc::clone(&cancels))),
        cancels,
    });
    // Every session's messages together, in KiB.
    let messages = Arc::new(Semaphore::new(pg.message_budget_bytes.div_ceil(1024)));
    let mut sessions = JoinSet::new();
    // TLS is negotiated inside the protocol (SSLRequest), so connections come plain.
    let mut connections = accept(listener, limits, WhenFull::Close, "PostgreSQL");
    tokio::pin!(stop);
    loop {
        let connection = tokio::select! {
            connection = connections.recv() => match connection {
                Some(connection) => connection,
                None => break,
            },
            Some(_) = sessions.join_next(), if !sessions.is_empty() => continue,
            () = &mut stop => break,
        };
        let (stream, peer) = (connection.stream, connection.peer);
        let keepalive = socket2::TcpKeepalive::new().with_time(KEEPALIVE);
        if let Err(e) = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive) {
            tracing::debug!(%peer, error = %e, "cannot set TCP keepalive");
        }
        let (handlers, tls, messages) = (Arc::clone(&handlers), tls.clone(), Arc::clone(&messages));
        let slot = connection.slot;
        sessions.spawn(async move {
            if let Err(e) = frames::serve_connection(stream, tls, handlers, pg, messages).await {
                tracing::debug!(%peer, error = %e, "PostgreSQL connection ended with an error");
            }
            drop(slot);
        });
    }
    // Closes the listener: new connections are refused from here on.
    drop(connections);
    let drained = async { while sessions.join_next().await.is_some() {} };
    if tokio::time::timeout(limits.shutdown_grace, drained)
        .await
        .is_err()
    {
        tracing::warn!(grace = ?limits.shutdown_grace, "PostgreSQL sessions still open at the shutdown deadline; closing them");
        sessions.shutdown().await;
    }
}
