//! The OTLP edges. Both hand decoded requests to [`export_traces`] (and log
//! requests to [`export_logs`]); each maps
//! [`crate::Error`] to its protocol's status in one function (`status::to_status`,
//! `http::error_response`).

mod charged;
pub mod grpc;
pub mod http;
mod status;

use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;

use weft_auth::{Auth, Caller};
use weft_schemas::{AttrValue, ORIGIN_KEY, ORIGIN_TOKEN_KEY, Span, TENANT_KEY};

use crate::error::Result;
use weft_otlp::AttributeLimits;
use weft_otlp::logs::normalise_logs;
use weft_otlp::normalise::{Normalised, estimated_bytes, normalise_with};
use weft_otlp::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use weft_store::Metrics;
use weft_store::{IngestOutcome, Store};

/// Normalises a request, stores its valid spans durably, and builds the OTLP
/// response: partial success when some spans were rejected.
///
/// `decoded` is what decoding the request was charged (`otlp::cost`, before
/// it was decoded); once the request is normalised into spans, their own
/// estimate is charged instead, until they are stored.
pub(crate) async fn export_traces(
    store: &Store,
    limits: &AttributeLimits,
    request: ExportTraceServiceRequest,
    decoded: OwnedSemaphorePermit,
    caller: &Caller,
) -> Result<ExportTraceServiceResponse> {
    let mut normalised = normalise_with(request, limits);
    store.prices().apply(&mut normalised.spans);
    let outcome = store_normalised(store, &mut normalised, decoded, caller).await?;
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

/// What both exports do with their normalised rows: say who sent them, drop
/// those outside the store's time window (as rejections), swap the decode
/// charge for the rows' own estimate — charged before the rows are built,
/// held until they are stored — and store them durably.
async fn store_normalised(
    store: &Store,
    normalised: &mut Normalised,
    decoded: OwnedSemaphorePermit,
    caller: &Caller,
) -> Result<IngestOutcome> {
    stamp_origin(&mut normalised.spans, caller);
    let (earliest, latest) = store.accepted_window();
    normalised.keep_within(earliest, latest, &store.window_text());
    drop(decoded);
    let _charge = store.charge(estimated_bytes(&normalised.spans))?;
    Ok(store.ingest(&normalised.spans).await?)
}

/// Says who sent each span: a client's own `weft.origin*` and `weft.tenant`
/// attributes are dropped; with authentication on, the span gets the token's
/// name, its tenant, and whether that token is bound to the span's service,
/// so lineage can tell governance data a service reported itself from data
/// anyone could forge.
fn stamp_origin(spans: &mut [Span], caller: &Caller) {
    for span in spans {
        span.attributes
            .retain(|(k, _)| k != ORIGIN_KEY && k != ORIGIN_TOKEN_KEY && k != TENANT_KEY);
        if let Some(tenant) = caller.tenant() {
            span.attributes
                .push((TENANT_KEY.into(), AttrValue::Str(tenant.into())));
        }
        if let Some(token) = caller.name() {
            let verified = span
                .service_name
                .as_deref()
                .is_some_and(|s| caller.vouches_for(s));
            let origin = if verified { "verified" } else { "unverified" };
            span.attributes
                .push((ORIGIN_KEY.into(), AttrValue::Str(origin.into())));
            span.attributes
                .push((ORIGIN_TOKEN_KEY.into(), AttrValue::Str(token.into())));
        }
    }
}

/// What both OTLP edges share: who may send, the TLS they speak, and where
/// log records go.
#[derive(Clone, Default)]
pub struct Edge {
    pub auth: Arc<Auth>,
    /// TLS on every connection when set.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// The event store, which keeps log records (GenAI events) as rows of
    /// their span ([`weft_otlp::logs`]); without one, logs are answered,
    /// not stored.
    pub events: Option<Store>,
}

/// Normalises a logs request into event rows, stores them durably in the
/// event store, and builds the OTLP response (partial success for records
/// that belong to no span).
pub(crate) async fn export_logs(
    events: &Store,
    limits: &AttributeLimits,
    request: ExportLogsServiceRequest,
    decoded: OwnedSemaphorePermit,
    caller: &Caller,
) -> Result<ExportLogsServiceResponse> {
    let mut normalised = normalise_logs(request, limits);
    store_normalised(events, &mut normalised, decoded, caller).await?;
    Ok(ExportLogsServiceResponse {
        partial_success: (normalised.rejected > 0).then(|| ExportLogsPartialSuccess {
            rejected_log_records: normalised.rejected as i64,
            error_message: normalised.error_message_of("log record(s)"),
        }),
    })
}
