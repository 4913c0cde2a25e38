//! Schemas of what Weft stores about a trace once it settles (is flushed):
//! its shape — `span_structure`, Tempo-style nested-set bounds so "is an
//! ancestor of" is two integer comparisons — and its links — `span_links`,
//! one row per span link, so following links never scans every span.
//!
//! A trace can settle more than once (spans arriving after a flush); each
//! settling writes the trace's whole structure again under a new `generation`
//! that names the one it replaces in `previous_generation`.

use std::sync::{Arc, OnceLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::schema::{
    SCHEMA_VERSION, SCHEMA_VERSION_KEY, span_id_type, timestamp_type, trace_id_type,
};

/// Column names of `span_structure` and `span_links`.
pub mod col {
    pub use crate::schema::col::{
        END_TIME, NAME, PARENT_SPAN_ID, SERVICE_NAME, SPAN_ID, START_TIME, STATUS_CODE, TRACE_ID,
    };
    pub const AI_KIND: &str = "ai_kind";
    pub const ROOT_SPAN_ID: &str = "root_span_id";
    pub const DEPTH: &str = "depth";
    pub const NESTED_LEFT: &str = "nested_left";
    pub const NESTED_RIGHT: &str = "nested_right";
    pub const ORPHAN: &str = "orphan";
    pub const GENERATION: &str = "generation";
    pub const PREVIOUS_GENERATION: &str = "previous_generation";
    pub const LINKED_TRACE_ID: &str = "linked_trace_id";
    pub const LINKED_SPAN_ID: &str = "linked_span_id";
}

fn with_version(fields: Vec<Field>) -> SchemaRef {
    let metadata = [(SCHEMA_VERSION_KEY.to_owned(), SCHEMA_VERSION.to_string())]
        .into_iter()
        .collect();
    Arc::new(Schema::new_with_metadata(fields, metadata))
}

/// One row per span of a settled trace.
///
/// - `root_span_id`: the top of the span's tree — the trace root, or for an
///   orphan (its parent never arrived) the orphan itself;
/// - `depth`: parent→child steps from that top (0 at the top);
/// - `nested_left`/`nested_right`: a depth-first numbering of the trace, so
///   `d` descends from `a` exactly when `a.nested_left < d.nested_left` and
///   `d.nested_right < a.nested_right` (same trace);
/// - `orphan`: the span's parent is not in the trace (or closes a cycle).
pub fn structure_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            with_version(vec![
                Field::new(col::TRACE_ID, trace_id_type(), false),
                Field::new(col::SPAN_ID, span_id_type(), false),
                Field::new(col::PARENT_SPAN_ID, span_id_type(), true),
                Field::new(col::ROOT_SPAN_ID, span_id_type(), false),
                Field::new(col::DEPTH, DataType::Int32, false),
                Field::new(col::NESTED_LEFT, DataType::Int32, false),
                Field::new(col::NESTED_RIGHT, DataType::Int32, false),
                Field::new(col::ORPHAN, DataType::Boolean, false),
                Field::new(col::NAME, DataType::Utf8, false),
                Field::new(col::SERVICE_NAME, DataType::Utf8, true),
                Field::new(col::AI_KIND, DataType::Utf8, true),
                Field::new(col::STATUS_CODE, DataType::Utf8, false),
                Field::new(col::START_TIME, timestamp_type(), false),
                Field::new(col::END_TIME, timestamp_type(), false),
                Field::new(col::GENERATION, DataType::Int64, false),
                Field::new(col::PREVIOUS_GENERATION, DataType::Int64, true),
            ])
        })
        .clone()
}

/// One row per span link: the span holding it and the span it follows from.
pub fn links_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            with_version(vec![
                Field::new(col::LINKED_TRACE_ID, trace_id_type(), false),
                Field::new(col::LINKED_SPAN_ID, span_id_type(), false),
                Field::new(col::TRACE_ID, trace_id_type(), false),
                Field::new(col::SPAN_ID, span_id_type(), false),
                Field::new(col::START_TIME, timestamp_type(), false),
            ])
        })
        .clone()
}
