//! Connections for tonic servers (OTLP/gRPC, Flight SQL): the shared accept
//! loop, with a connection closed once its client has sent nothing for twice
//! the header deadline (clients answer the server's keep-alive pings, so only
//! silent or dead ones are).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::time::Sleep;
use tokio_rustls::TlsAcceptor;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::ListenLimits;
use crate::accept::{Io, Slot, WhenFull, accept_tls};

/// Requests one gRPC connection may have in flight at once. tonic holds a
/// request's message (up to its message limit) before a service's codec can
/// charge it, so this bounds that per connection (h2 sets no limit).
pub const MAX_STREAMS_PER_CONNECTION: u32 = 32;

/// Accepts connections while fewer than `max_connections` are open (others
/// wait in the kernel's queue), each closed once it has sent nothing for
/// twice `header_timeout`. With TLS, each handshake runs on its own task and
/// must finish within `header_timeout`. Hand it to tonic's
/// `serve_with_incoming_shutdown`.
pub fn limited(
    listener: TcpListener,
    listen: ListenLimits,
    tls: Option<TlsAcceptor>,
) -> impl futures::Stream<Item = std::io::Result<Limited>> {
    let idle = listen.header_timeout.saturating_mul(2);
    let accepted = accept_tls(listener, listen, tls, WhenFull::Wait, "gRPC");
    tokio_stream::wrappers::ReceiverStream::new(accepted).map(move |conn| {
        Ok(Limited {
            io: conn.stream,
            info: TcpConnectInfo {
                local_addr: conn.local,
                remote_addr: Some(conn.peer),
            },
            idle,
            silent: Box::pin(tokio::time::sleep(idle)),
            _slot: conn.slot,
        })
    })
}

/// A gRPC connection holding its place under the connection limit.
pub struct Limited {
    io: Box<dyn Io>,
    info: TcpConnectInfo,
    idle: Duration,
    /// Fires when the client has sent nothing for `idle`.
    silent: Pin<Box<Sleep>>,
    _slot: Slot,
}

impl AsyncRead for Limited {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    let deadline = tokio::time::Instant::now() + this.idle;
                    this.silent.as_mut().reset(deadline);
                }
                Poll::Ready(result)
            }
            Poll::Pending => match this.silent.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the client sent nothing for too long",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for Limited {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl Connected for Limited {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.info.clone()
    }
}
