//! OTLP/gRPC: `TraceService/Export` on tonic, gzip accepted.
//!
//! tonic answers two failures before our handler runs, with codes the OTLP
//! spec does not use: an oversize message (OUT_OF_RANGE) and an undecodable
//! one (INTERNAL). [`otlp_status_codes`] rewrites them to RESOURCE_EXHAUSTED
//! and INVALID_ARGUMENT, so every status this edge returns is mapped here.

use std::sync::atomic::Ordering;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};

use super::export_traces;
use crate::config::IngestLimits;
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
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let service = TraceServiceServer::new(OtlpGrpc { store })
        .max_decoding_message_size(limits.max_grpc_message_bytes)
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip);
    tonic::transport::Server::builder()
        .layer(tower::util::MapResponseLayer::new(otlp_status_codes))
        .add_service(service)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
}
