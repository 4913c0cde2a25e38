//! What the OTLP edges accept, with the defaults `weft serve` uses.

use weft_otlp::AttributeLimits;

/// Size limits applied at the OTLP edges.
#[derive(Debug, Clone, Copy)]
pub struct IngestLimits {
    /// Largest gRPC message accepted (decompressed); larger gets RESOURCE_EXHAUSTED.
    pub max_grpc_message_bytes: usize,
    /// Largest HTTP body accepted, enforced on the wire and while decompressing; larger gets 413.
    pub max_http_body_bytes: usize,
    /// What one span and one resource may carry once normalised.
    pub attributes: AttributeLimits,
}

impl Default for IngestLimits {
    fn default() -> Self {
        Self {
            max_grpc_message_bytes: 4 * 1024 * 1024,
            max_http_body_bytes: 20 * 1024 * 1024,
            attributes: AttributeLimits::default(),
        }
    }
}
