//! OTLP wire formats: decoding requests, normalising spans, encoding traces back.
//!
//! - [`decode`]: HTTP bodies (protobuf or JSON, optionally gzip) → request types;
//! - [`cost`]: what decoding a request will allocate, charged before decoding;
//! - [`normalise`]: request → validated [`weft_schemas::Span`]s plus per-span
//!   rejections, within the [`AttributeLimits`];
//! - [`logs`]: log records (GenAI events) → event rows of their span;
//! - [`export`]: stored Arrow rows → OTLP/JSON and protobuf `TracesData`.
//!
//! The protobuf types live here and at the OTLP edges (`weft-collector`) only:
//! what this crate hands the rest of Weft is spans, JSON and bytes.

pub mod cost;
pub mod decode;
mod error;
pub mod export;
mod limits;
pub mod logs;
pub mod normalise;

pub use decode::Format;
pub use error::{Error, ErrorKind, Result};
pub use export::{
    tempo_trace_by_id_protobuf, traces_data_json, traces_data_json_with_events,
    traces_data_protobuf,
};
pub use limits::AttributeLimits;
pub use normalise::Normalised;
pub use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
pub use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};

/// Decodes an OTLP trace export (protobuf or JSON, already decompressed) and
/// normalises its spans: the valid ones, and why the others were rejected.
pub fn decode_spans(body: &[u8], format: Format) -> Result<Normalised> {
    let request = decode::decode_message::<ExportTraceServiceRequest>(body, format)?;
    Ok(normalise::normalise(request))
}
