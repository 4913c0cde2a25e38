//! OTLP/gRPC: `TraceService/Export` (and `LogsService/Export` with an event
//! store) on tonic, gzip accepted. The services are `charged::ExportServer`s,
//! which charge each message's decode cost before decoding it and answer an
//! undecodable one with INVALID_ARGUMENT.
//!
//! tonic answers an oversize message before our code runs, with a code the
//! OTLP spec does not use (OUT_OF_RANGE; INTERNAL for a failed
//! decompression); [`otlp_status_codes`] rewrites them to RESOURCE_EXHAUSTED
//! and INVALID_ARGUMENT, so every status this edge returns is mapped here.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tokio_rustls::TlsAcceptor;
use tonic::Request;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::{Connected, TcpConnectInfo};
use weft_auth::{Caller, Role};

use super::charged::{Charged, Export, ExportServer};
use super::status::to_status;
use super::{Edge, export_logs, export_traces};
use crate::config::{IngestLimits, ListenLimits};
use crate::error::Error;
use crate::otlp::cost::Kind;
use crate::otlp::{
    ExportLogsServiceRequest, ExportLogsServiceResponse, ExportTraceServiceRequest,
    ExportTraceServiceResponse,
};
use crate::store::Store;

/// `TraceService/Export`: spans go to the store.
#[derive(Clone)]
struct Traces(Store);

impl Export for Traces {
    const SERVICE: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
    const PATH: &'static str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
    const KIND: Kind = Kind::TracesRequest;
    type Request = ExportTraceServiceRequest;
    type Response = ExportTraceServiceResponse;

    fn store(&self) -> &Store {
        &self.0
    }

    async fn export(
        &self,
        request: Charged<ExportTraceServiceRequest>,
        caller: Caller,
    ) -> crate::Result<ExportTraceServiceResponse> {
        export_traces(&self.0, request.message, request.charge, &caller).await
    }
}

/// `LogsService/Export`: log records of spans go to the event store.
#[derive(Clone)]
struct Logs(Store);

impl Export for Logs {
    const SERVICE: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
    const PATH: &'static str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
    const KIND: Kind = Kind::LogsRequest;
    type Request = ExportLogsServiceRequest;
    type Response = ExportLogsServiceResponse;

    fn store(&self) -> &Store {
        &self.0
    }

    async fn export(
        &self,
        request: Charged<ExportLogsServiceRequest>,
        caller: Caller,
    ) -> crate::Result<ExportLogsServiceResponse> {
        export_logs(&self.0, request.message, request.charge, &caller).await
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

/// Serves OTLP/gRPC on `listener` until `shutdown` resolves: each request
/// must carry a token with the ingest role (when tokens are configured), and
/// connections speak TLS when `tls` is given.
pub async fn serve(
    listener: TcpListener,
    store: Store,
    limits: IngestLimits,
    listen: ListenLimits,
    edge: Edge,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let max = limits.max_grpc_message_bytes;
    let service = ExportServer::new(Traces(store), max);
    // Runs on the request's headers, before its message is read or decoded.
    let auth = edge.auth;
    let check = move |mut request: Request<()>| {
        let token = request
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes());
        let caller = auth
            .check(token, Role::Ingest)
            .map_err(|denied| to_status(&Error::Denied(denied)))?;
        request.extensions_mut().insert(caller);
        Ok(request)
    };
    let logs = edge
        .events
        .map(|events| InterceptedService::new(ExportServer::new(Logs(events), max), check.clone()));
    let service = InterceptedService::new(service, check);
    tonic::transport::Server::builder()
        .timeout(listen.request_timeout)
        .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
        .http2_keepalive_interval(Some(listen.header_timeout))
        .http2_keepalive_timeout(Some(listen.header_timeout))
        .layer(tower::util::MapResponseLayer::new(otlp_status_codes))
        .add_service(service)
        .add_optional_service(logs)
        .serve_with_incoming_shutdown(limited(listener, listen, edge.tls), shutdown)
        .await
}

/// Requests one gRPC connection may have in flight at once. tonic holds a
/// request's message (up to `max_grpc_message_bytes`) before our codec
/// charges it, so this bounds that per connection (h2 sets no limit).
pub const MAX_STREAMS_PER_CONNECTION: u32 = 32;

/// Accepts connections while fewer than `max_connections` are open (others
/// wait in the kernel's queue), each closed once it has sent nothing for
/// twice `header_timeout` (clients answer the server's keep-alive pings, so
/// only silent or dead ones are). With TLS, each handshake runs on its own
/// task and must finish within `header_timeout`, so a slow client holds up
/// no one else.
pub fn limited(
    listener: TcpListener,
    listen: ListenLimits,
    tls: Option<TlsAcceptor>,
) -> impl futures::Stream<Item = std::io::Result<Limited>> {
    let permits = Arc::new(Semaphore::new(listen.max_connections.max(1)));
    let idle = listen.header_timeout.saturating_mul(2);
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let permit = tokio::select! {
                permit = Arc::clone(&permits).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
                () = tx.closed() => return,
            };
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = tx.closed() => return,
            };
            let (tcp, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::warn!(error = %e, "cannot accept a gRPC connection");
                    drop(permit);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let info = TcpConnectInfo {
                local_addr: tcp.local_addr().ok(),
                remote_addr: Some(peer),
            };
            let conn = move |io: Box<dyn Io>| Limited {
                io,
                info,
                idle,
                silent: Box::pin(tokio::time::sleep(idle)),
                _permit: permit,
            };
            match &tls {
                None => {
                    if tx.send(Ok(conn(Box::new(tcp)))).await.is_err() {
                        return;
                    }
                }
                Some(acceptor) => {
                    let (acceptor, tx) = (acceptor.clone(), tx.clone());
                    let deadline = listen.header_timeout;
                    tokio::spawn(async move {
                        match tokio::time::timeout(deadline, acceptor.accept(tcp)).await {
                            Ok(Ok(stream)) => {
                                let _ = tx.send(Ok(conn(Box::new(stream)))).await;
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed")
                            }
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        }
                    });
                }
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// A connection's byte stream: plain TCP or TLS over it.
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// A gRPC connection holding its place under the connection limit.
pub struct Limited {
    io: Box<dyn Io>,
    info: TcpConnectInfo,
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
        self.info.clone()
    }
}
