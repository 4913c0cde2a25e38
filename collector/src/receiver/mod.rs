//! The OTLP edges. Both hand decoded requests to [`export_traces`]; each maps
//! [`crate::Error`] to its protocol's status in one function (`grpc::to_status`,
//! `http::error_response`).

pub mod grpc;
pub mod http;

use std::sync::Arc;

use weft_auth::{Auth, Caller};

use crate::error::Result;
use crate::metrics::Metrics;
use crate::otlp::normalise::{estimated_bytes, normalise_with};
use crate::otlp::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use crate::store::Store;

/// What both OTLP edges share: who may send, and the TLS they speak.
#[derive(Clone, Default)]
pub struct Edge {
    pub auth: Arc<Auth>,
    /// TLS on every connection when set.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Normalises a request, stores its valid spans durably, and builds the OTLP
/// response: partial success when some spans were rejected.
pub(crate) async fn export_traces(
    store: &Store,
    request: ExportTraceServiceRequest,
    caller: &Caller,
) -> Result<ExportTraceServiceResponse> {
    let _ = caller;
    let mut normalised = normalise_with(request, &store.attribute_limits());
    let (earliest, latest) = store.accepted_window();
    normalised.keep_within(earliest, latest, &store.window_text());
    // Charged before the rows are built, held until they are stored.
    let _charge = store.charge(estimated_bytes(&normalised.spans))?;
    let outcome = store.ingest(&normalised.spans).await?;
    Metrics::add(&store.metrics().spans_rejected, normalised.rejected);
    if normalised.rejected > 0 {
        tracing::debug!(
            rejected = normalised.rejected,
            stored = outcome.stored,
            message = %normalised.error_message(),
            "spans rejected"
        );
    }
    Ok(ExportTraceServiceResponse {
        partial_success: (normalised.rejected > 0).then(|| ExportTracePartialSuccess {
            rejected_spans: normalised.rejected as i64,
            error_message: normalised.error_message(),
        }),
    })
}
