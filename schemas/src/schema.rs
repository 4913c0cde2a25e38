//! The versioned Arrow schema of the `spans` table.
//!
//! Column names are constants in [`col`]; the AI columns come from
//! [`crate::conventions::AI_COLUMNS`], so the mapping table and the schema
//! cannot drift apart. Ids are stored as bytes ([`trace_id_type`],
//! [`span_id_type`]); [`crate::shown`] renders them as hex where people see them.

use std::sync::{Arc, OnceLock};

use arrow::array::{ArrayRef, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

use crate::conventions::AI_COLUMNS;
use crate::ids::{SpanId, TraceId};

/// Bumped whenever a column is added, removed or changes type.
/// 2: ids as bytes (`FixedSizeBinary`), where version 1 stored hex text.
/// 3: times in microseconds, Delta Lake's timestamp (version 2 stored nanoseconds).
/// 4: `attribute_types`, the OTLP type of every value that is not a string
///    (null in older rows: their values read back as strings).
/// 5: the AI columns `kv_cache_prefix` and `cost` (null in older rows).
/// 6: the AI columns `requested_tool_call_ids`, `approval_action`, `message_id`,
///    `messaging_operation` and `messaging_destination` (lineage's evidence
///    joins; null in older rows).
pub const SCHEMA_VERSION: u32 = 6;

/// Key under which [`SCHEMA_VERSION`] is written into schema and Parquet metadata.
pub const SCHEMA_VERSION_KEY: &str = "weft.schema_version";

/// Core column names.
pub mod col {
    pub const TRACE_ID: &str = "trace_id";
    pub const SPAN_ID: &str = "span_id";
    pub const PARENT_SPAN_ID: &str = "parent_span_id";
    pub const TRACE_STATE: &str = "trace_state";
    pub const NAME: &str = "name";
    pub const KIND: &str = "kind";
    pub const START_TIME: &str = "start_time";
    pub const END_TIME: &str = "end_time";
    pub const DURATION_NS: &str = "duration_ns";
    pub const STATUS_CODE: &str = "status_code";
    pub const STATUS_MESSAGE: &str = "status_message";
    pub const SERVICE_NAME: &str = "service_name";
    pub const SCOPE_NAME: &str = "scope_name";
    pub const SCOPE_VERSION: &str = "scope_version";
    pub const RESOURCE_ATTRIBUTES: &str = "resource_attributes";
    pub const ATTRIBUTES: &str = "attributes";
    pub const EVENTS: &str = "events";
    pub const LINKS: &str = "links";
    /// See [`crate::value_types`]; the last column, so tables of schema
    /// version 3 gain it by appending.
    pub const ATTRIBUTE_TYPES: &str = "attribute_types";
}

/// A trace id column: 16 bytes.
pub fn trace_id_type() -> DataType {
    DataType::FixedSizeBinary(TraceId::LEN as i32)
}

/// A span id column: 8 bytes.
pub fn span_id_type() -> DataType {
    DataType::FixedSizeBinary(SpanId::LEN as i32)
}

/// UTC microsecond timestamps: Delta Lake's `timestamp`, which every engine
/// that reads Delta tables reads. Exact durations are in `duration_ns`.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// A column of [`timestamp_type`] from nanoseconds since the Unix epoch
/// (rounded down to the microsecond).
pub fn timestamps_from_nanos(nanos: impl IntoIterator<Item = i64>) -> ArrayRef {
    let micros: Vec<i64> = nanos.into_iter().map(|ns| ns.div_euclid(1_000)).collect();
    Arc::new(TimestampMicrosecondArray::from(micros).with_timezone("UTC"))
}

/// The struct inside the attribute maps: `key` (never null) and `value`.
pub fn map_entry_fields() -> Fields {
    Fields::from(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, true),
    ])
}

/// `Map<Utf8, Utf8>`: attributes with values rendered as text.
pub fn attribute_map_type() -> DataType {
    DataType::Map(
        Arc::new(Field::new(
            "key_value",
            DataType::Struct(map_entry_fields()),
            false,
        )),
        false,
    )
}

/// Fields of one element of the `events` list.
pub fn event_fields() -> Fields {
    Fields::from(vec![
        Field::new("time", timestamp_type(), false),
        Field::new("name", DataType::Utf8, false),
        Field::new("attributes", attribute_map_type(), false),
    ])
}

/// Fields of one element of the `links` list.
pub fn link_fields() -> Fields {
    Fields::from(vec![
        Field::new("trace_id", trace_id_type(), false),
        Field::new("span_id", span_id_type(), false),
        Field::new("trace_state", DataType::Utf8, true),
        Field::new("attributes", attribute_map_type(), false),
    ])
}

fn list_of(fields: Fields) -> DataType {
    DataType::List(Arc::new(Field::new(
        "item",
        DataType::Struct(fields),
        false,
    )))
}

/// `List<Utf8>` as used by list-valued AI columns.
pub fn utf8_list_type() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, false)))
}

/// The schema of the `spans` table, with its version in the metadata.
pub fn span_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let mut fields = vec![
                Field::new(col::TRACE_ID, trace_id_type(), false),
                Field::new(col::SPAN_ID, span_id_type(), false),
                Field::new(col::PARENT_SPAN_ID, span_id_type(), true),
                Field::new(col::TRACE_STATE, DataType::Utf8, true),
                Field::new(col::NAME, DataType::Utf8, false),
                Field::new(col::KIND, DataType::Utf8, false),
                Field::new(col::START_TIME, timestamp_type(), false),
                Field::new(col::END_TIME, timestamp_type(), false),
                Field::new(col::DURATION_NS, DataType::Int64, false),
                Field::new(col::STATUS_CODE, DataType::Utf8, false),
                Field::new(col::STATUS_MESSAGE, DataType::Utf8, true),
                Field::new(col::SERVICE_NAME, DataType::Utf8, true),
                Field::new(col::SCOPE_NAME, DataType::Utf8, true),
                Field::new(col::SCOPE_VERSION, DataType::Utf8, true),
                Field::new(col::RESOURCE_ATTRIBUTES, attribute_map_type(), false),
                Field::new(col::ATTRIBUTES, attribute_map_type(), false),
                Field::new(col::EVENTS, list_of(event_fields()), false),
                Field::new(col::LINKS, list_of(link_fields()), false),
            ];
            fields.extend(
                AI_COLUMNS
                    .iter()
                    .map(|c| Field::new(c.name, c.ty.data_type(), true)),
            );
            fields.push(Field::new(col::ATTRIBUTE_TYPES, attribute_map_type(), true));
            let metadata = [(SCHEMA_VERSION_KEY.to_owned(), SCHEMA_VERSION.to_string())]
                .into_iter()
                .collect();
            Arc::new(Schema::new_with_metadata(fields, metadata))
        })
        .clone()
}
