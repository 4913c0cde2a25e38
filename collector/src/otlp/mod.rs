//! OTLP wire formats: decoding requests, normalising spans, encoding traces back.
//!
//! - [`decode`]: HTTP bodies (protobuf or JSON, optionally gzip) → request types;
//! - `cost`: what decoding a request will allocate, charged before decoding;
//! - [`normalise`]: request → validated [`weft_schemas::Span`]s plus per-span rejections;
//! - [`logs`]: log records (GenAI events) → event rows of their span;
//! - [`export`]: stored Arrow rows → OTLP/JSON `TracesData`.

pub(crate) mod cost;
pub mod decode;
pub mod export;
pub mod logs;
pub mod normalise;

pub use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
pub use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
