//! The one span schema of Weft.
//!
//! Everything that describes a stored span lives here and nowhere else:
//! - [`ids`]: `TraceId`/`SpanId` newtypes, checked at the decode boundary;
//! - [`span`]: [`Span`], the plain normalised span every later stage handles;
//! - [`conventions`]: the one table of AI columns — the semantic-convention keys
//!   that fill each typed column — from which [`ai_column`]'s macro generates
//!   the field struct, the builders and the typed reader;
//! - [`schema`]: the versioned Arrow schema and its column names;
//! - [`batch`]: building Arrow `RecordBatch`es from spans;
//! - [`read`]: [`SpanReader`], the one typed reader of span-shaped batches;
//! - [`value_types`]: the OTLP type of each attribute value that is not a
//!   string, kept beside the text maps;
//! - [`error_kind`]: [`ErrorKind`], what a caller should do about any crate's
//!   error (every edge maps kinds to statuses);
//! - [`prices`]: the price table that gives each model call its `cost`;
//! - [`shown`]: ids are bytes until shown; this renders them as hex (and reads
//!   the hex of schema version 1 back);
//! - [`settled`]: the schemas of what is stored when a trace settles (its
//!   nested-set structure and its link index).
//!
//! This crate knows nothing about OTLP protobuf, storage or SQL engines.

pub mod ai_column;
mod ai_values;
mod attr;
pub mod batch;
pub mod conventions;
pub mod error_kind;
pub mod ids;
pub mod prices;
pub mod read;
pub mod schema;
pub mod settled;
pub mod shown;
pub mod span;
pub mod value_types;

pub use batch::spans_to_batch;
pub use conventions::{AiFields, AiKind, ApprovalState, PolicyVerdict, SparseAi, ai_col};
pub use error_kind::ErrorKind;
pub use ids::{IdError, SpanId, TraceId};
pub use prices::{Price, Prices};
pub use read::SpanReader;
pub use schema::{SCHEMA_VERSION, SCHEMA_VERSION_KEY, span_schema};
pub use settled::{links_schema, structure_schema};
pub use span::{
    AttrValue, Attributes, EVENT_BODY_KEY, ORIGIN_KEY, ORIGIN_TOKEN_KEY, Span, SpanEvent, SpanKind,
    SpanLink, StatusCode, TENANT_KEY,
};
