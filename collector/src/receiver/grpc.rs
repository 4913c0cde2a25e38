//! OTLP/gRPC: `TraceService/Export` on tonic, gzip accepted.
//!
//! tonic answers two failures before our handler runs, with codes the OTLP
//! spec does not use: an oversize message (OUT_OF_RANGE) and an undecodable
//! one (INTERNAL). [`otlp_status_codes`] rewrites them to RESOURCE_EXHAUSTED
//! and INVALID_ARGUMENT, so every status this edge returns is mapped here.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tonic::codec::CompressionEncoding;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::{Request, Response, Status};

use super::export_traces;
use crate::config::{IngestLimits, ListenLimits};
use crate::error::{Error, ErrorKind};
use crate::otlp::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use crate::store::Store;

/// The gRPC trace service.
struct OtlpGrpc {
    store: Store,
}

#[tonic::async_trait]
impl TraceService for OtlpGrpc {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        match export_traces(&self.store, request.into_inner()).await {
            Ok(response) => Ok(Response::new(response)),
            Err(e) => {
                self.store
                    .metrics()
                    .requests_failed
                    .fetch_add(1, Ordering::Relaxed);
                Err(to_status(&e))
            }
        }
    }
}

/// The one place collector errors become gRPC statuses, by [`ErrorKind`]. An
/// oversize message is RESOURCE_EXHAUSTED, as tonic answers before us; the
/// retryable kinds are UNAVAILABLE, so the client keeps the data and retries.
pub(crate) fn to_status(e: &Error) -> Status {
    let msg = e.to_string();
    match e.kind() {
        ErrorKind::Invalid if matches!(e, Error::TooLarge { .. }) => {
            Status::resource_exhausted(msg)
        }
        ErrorKind::Invalid => Status::invalid_argument(msg),
        ErrorKind::NotFound => Status::not_found(msg),
        ErrorKind::Overloaded | ErrorKind::ShuttingDown => Status::unavailable(msg),
        ErrorKind::Internal => Status::internal(msg),
    }
}

/// Rewrites tonic's own pre-handler statuses to the codes OTLP specifies.
fn otlp_status_codes(
    mut response: http::Response<tonic::body::Body>,
) -> http::Response<tonic::body::Body> {
    let headers = response.headers_mut();
    let status = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let message = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let replacement = match status.as_deref() {
        Some("11")
            if message.contains("message%20length%20too%20large")
                || message.contains("message length too large") =>
        {
            Some(tonic::Code::ResourceExhausted)
        }
        Some("13") if message.contains("decode") || message.contains("decompress") => {
            Some(tonic::Code::InvalidArgument)
        }
        _ => None,
    };
    if let Some(code) = replacement {
        headers.insert("grpc-status", http::HeaderValue::from(code as i32));
    }
    response
}

/// Serves OTLP/gRPC on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    store: Store,
    limits: IngestLimits,
    listen: ListenLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let service = TraceServiceServer::new(OtlpGrpc { store })
        .max_decoding_message_size(limits.max_grpc_message_bytes)
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip);
    tonic::transport::Server::builder()
        .timeout(listen.request_timeout)
        .http2_keepalive_interval(Some(listen.header_timeout))
        .http2_keepalive_timeout(Some(listen.header_timeout))
        .layer(tower::util::MapResponseLayer::new(otlp_status_codes))
        .add_service(service)
        .serve_with_incoming_shutdown(limited(listener, listen), shutdown)
        .await
}

/// Accepts connections while fewer than `max_connections` are open (others
/// wait in the kernel's queue), each closed once it has sent nothing for
/// twice `header_timeout` (clients answer the server's keep-alive pings, so
/// only silent or dead ones are).
fn limited(
    listener: TcpListener,
    listen: ListenLimits,
) -> impl futures::Stream<Item = std::io::Result<Limited>> {
    let permits = Arc::new(Semaphore::new(listen.max_connections.max(1)));
    let idle = listen.header_timeout.saturating_mul(2);
    futures::stream::unfold((listener, permits), move |(listener, permits)| async move {
        loop {
            let permit = Arc::clone(&permits).acquire_owned().await.ok()?;
            match listener.accept().await {
                Ok((io, _)) => {
                    let conn = Limited {
                        io,
                        idle,
                        silent: Box::pin(tokio::time::sleep(idle)),
                        _permit: permit,
                    };
                    return Some((Ok(conn), (listener, permits)));
                }
                Err(e) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::warn!(error = %e, "cannot accept a gRPC connection");
                    drop(permit);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    })
}

/// A gRPC connection holding its place under the connection limit.
struct Limited {
    io: TcpStream,
    idle: Duration,
    /// Fires when the client has sent nothing for `idle`.
    silent: Pin<Box<Sleep>>,
    _permit: OwnedSemaphorePermit,
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
        self.io.connect_info()
    }
}
