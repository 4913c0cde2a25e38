//! OTLP/gRPC: `TraceService/Export` (and `LogsService/Export` with an event
//! store) on tonic, gzip accepted. The services are `charged::ExportServer`s,
//! which charge each message's decode cost before decoding it and answer an
//! undecodable one with INVALID_ARGUMENT.
//!
//! tonic answers an oversize message before our code runs, with a code the
//! OTLP spec does not use (OUT_OF_RANGE; INTERNAL for a failed
//! decompression); [`otlp_status_codes`] rewrites them to RESOURCE_EXHAUSTED
//! and INVALID_ARGUMENT, so every status this edge returns is mapped here.

use tokio::net::TcpListener;
use tonic::Request;
use tonic::service::interceptor::InterceptedService;
use weft_auth::{Caller, Role};
use weft_listen::ListenLimits;
use weft_listen::grpc::{MAX_STREAMS_PER_CONNECTION, limited};
use weft_otlp::AttributeLimits;

use super::charged::{Charged, Export, ExportServer};
use super::status::to_status;
use super::{Edge, export_logs, export_traces};
use crate::config::IngestLimits;
use crate::error::Error;
use weft_otlp::cost::Kind;
use weft_otlp::{
    ExportLogsServiceRequest, ExportLogsServiceResponse, ExportTraceServiceRequest,
    ExportTraceServiceResponse,
};
use weft_store::Store;

/// `TraceService/Export`: spans go to the store.
#[derive(Clone)]
struct Traces(Store, AttributeLimits);

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
        export_traces(&self.0, &self.1, request.message, request.charge, &caller).await
    }
}

/// `LogsService/Export`: log records of spans go to the event store.
#[derive(Clone)]
struct Logs(Store, AttributeLimits);

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
        export_logs(&self.0, &self.1, request.message, request.charge, &caller).await
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
    let attributes = limits.attributes;
    let service = ExportServer::new(Traces(store, attributes), max);
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
    let logs = edge.events.map(|events| {
        InterceptedService::new(
            ExportServer::new(Logs(events, attributes), max),
            check.clone(),
        )
    });
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
