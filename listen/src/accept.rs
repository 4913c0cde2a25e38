//! The accept loop every listener shares: a connection limit, accept errors
//! waited out, and TLS handshakes that cannot hold up other clients.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;

use crate::ListenLimits;

/// What a listener does with a new connection while `max_connections` are open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Accept it and close it at once (the client sees the refusal).
    Close,
    /// Leave it in the kernel's accept queue until a connection ends.
    Wait,
}

/// A connection's place under the connection limit, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

/// An accepted connection, holding its [`Slot`] (drop it when the connection ends).
#[derive(Debug)]
pub struct Accepted<S> {
    pub stream: S,
    pub peer: SocketAddr,
    pub local: Option<SocketAddr>,
    pub slot: Slot,
}

/// A connection's byte stream: plain TCP, or TLS over it.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// Connections waiting to be taken from [`accept`] (each already holds its slot).
const QUEUE: usize = 16;

/// Accepts connections on `listener` on a task of their own, at most
/// `limits.max_connections` at once, until the receiver is dropped (which
/// closes the listener). `what` names the protocol in log lines.
pub fn accept(
    listener: TcpListener,
    limits: ListenLimits,
    full: WhenFull,
    what: &'static str,
) -> mpsc::Receiver<Accepted<TcpStream>> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(async move {
        loop {
            // Waiting for room first leaves new connections in the kernel's queue.
            let waited = match full {
                WhenFull::Wait => tokio::select! {
                    permit = Arc::clone(&slots).acquire_owned() => match permit {
                        Ok(permit) => Some(permit),
                        Err(_) => return,
                    },
                    () = tx.closed() => return,
                },
                WhenFull::Close => None,
            };
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = tx.closed() => return,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::warn!(error = %e, "cannot accept a {what} connection");
                    drop(waited);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let permit = match waited {
                Some(permit) => permit,
                None => match Arc::clone(&slots).try_acquire_owned() {
                    Ok(permit) => permit,
                    Err(_) => {
                        tracing::warn!(%peer, limit = limits.max_connections, "connection limit reached; closing a new {what} connection");
                        drop(stream);
                        continue;
                    }
                },
            };
            let local = stream.local_addr().ok();
            let accepted = Accepted {
                stream,
                peer,
                local,
                slot: Slot { _permit: permit },
            };
            if tx.send(accepted).await.is_err() {
                return;
            }
        }
    });
    rx
}

/// [`accept`], then with `tls` each connection's handshake on its own task,
/// which must finish within `limits.header_timeout` (a failed or slow one is
/// closed and logged at debug level).
pub fn accept_tls(
    listener: TcpListener,
    limits: ListenLimits,
    tls: Option<TlsAcceptor>,
    full: WhenFull,
    what: &'static str,
) -> mpsc::Receiver<Accepted<Box<dyn Io>>> {
    let mut tcp = accept(listener, limits, full, what);
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = tcp.recv() => match accepted {
                    Some(accepted) => accepted,
                    None => return,
                },
                () = tx.closed() => return,
            };
            let Some(acceptor) = &tls else {
                let plain = Accepted {
                    stream: Box::new(accepted.stream) as Box<dyn Io>,
                    peer: accepted.peer,
                    local: accepted.local,
                    slot: accepted.slot,
                };
                if tx.send(plain).await.is_err() {
                    return;
                }
                continue;
            };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            let deadline = limits.header_timeout;
            tokio::spawn(async move {
                let peer = accepted.peer;
                match tokio::time::timeout(deadline, acceptor.accept(accepted.stream)).await {
                    Ok(Ok(stream)) => {
                        let secured = Accepted {
                            stream: Box::new(stream) as Box<dyn Io>,
                            peer,
                            local: accepted.local,
                            slot: accepted.slot,
                        };
                        let _ = tx.send(secured).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    rx
}
