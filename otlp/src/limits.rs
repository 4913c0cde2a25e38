//! What one span and one resource may carry once normalised.

/// Caps on the attributes one span (its events and links too) and one
/// resource may carry, as OpenTelemetry's attribute limits: longer values are
/// cut (strings at a character boundary), attributes past the count are
/// dropped, and the span says how many with `weft.attributes_truncated` (the
/// resource with `weft.resource_attributes_truncated`). Resource attributes
/// are copied into every span's row, so their caps are tighter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttributeLimits {
    pub max_value_bytes: usize,
    pub max_attributes: usize,
    pub max_resource_value_bytes: usize,
    pub max_resource_attributes: usize,
    /// Drop message content (prompts, completions, GenAI event bodies) at
    /// ingest, keeping everything else about the call.
    pub drop_message_content: bool,
}

impl Default for AttributeLimits {
    fn default() -> Self {
        Self {
            max_value_bytes: 256 * 1024,
            max_attributes: 128,
            max_resource_value_bytes: 4 * 1024,
            max_resource_attributes: 64,
            drop_message_content: false,
        }
    }
}
