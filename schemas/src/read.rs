//! [`SpanReader`]: the one typed reader of span-shaped Arrow batches.
//!
//! It reads a batch of [`crate::span_schema`], any projection of it, or a
//! table that names its columns alike (`span_structure`): a column the batch
//! lacks reads as null or empty, a column of the wrong type is an error.
//! Text may arrive as `Utf8` or `Utf8View` (DataFusion reads Parquet as views);
//! ids as hex text or as bytes. Everything that reads spans back — OTLP/JSON
//! export, settling, lineage, retry detection — goes through here.

use arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeBinaryArray, MapArray, RecordBatch, StringArray,
    StructArray, TimestampNanosecondArray,
};
use arrow::buffer::OffsetBuffer;
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimeUnit};
use arrow::error::ArrowError;

use crate::conventions::{AiFields, AiReader};
use crate::ids::{SpanId, TraceId};
use crate::schema::col;
use crate::span::{SpanKind, StatusCode};

fn text(array: &ArrayRef) -> Result<StringArray, ArrowError> {
    Ok(cast(array, &DataType::Utf8)?.as_string::<i32>().clone())
}

fn text_column(batch: &RecordBatch, name: &str) -> Result<Option<StringArray>, ArrowError> {
    batch.column_by_name(name).map(text).transpose()
}

fn opt(column: Option<&StringArray>, row: usize) -> Option<&str> {
    column.filter(|c| !c.is_null(row)).map(|c| c.value(row))
}

/// An id column: hex text, or raw bytes.
enum Ids {
    Hex(StringArray),
    Bytes(FixedSizeBinaryArray),
}

impl Ids {
    fn new(array: &ArrayRef) -> Result<Self, ArrowError> {
        match array.data_type() {
            DataType::FixedSizeBinary(_) => Ok(Ids::Bytes(array.as_fixed_size_binary().clone())),
            _ => Ok(Ids::Hex(text(array)?)),
        }
    }

    fn of(batch: &RecordBatch, name: &str) -> Result<Option<Self>, ArrowError> {
        batch.column_by_name(name).map(Ids::new).transpose()
    }

    fn get<T>(&self, row: usize) -> Option<T>
    where
        T: for<'a> TryFrom<&'a [u8]> + std::str::FromStr,
    {
        match self {
            Ids::Hex(a) if !a.is_null(row) => a.value(row).parse().ok(),
            Ids::Bytes(a) if !a.is_null(row) => T::try_from(a.value(row)).ok(),
            _ => None,
        }
    }
}

fn times(batch: &RecordBatch, name: &str) -> Result<Option<TimestampNanosecondArray>, ArrowError> {
    batch
        .column_by_name(name)
        .map(|c| {
            let c = cast(c, &DataType::Timestamp(TimeUnit::Nanosecond, None))?;
            Ok(c.as_primitive().clone())
        })
        .transpose()
}

/// The entries of a `Map<Utf8, Utf8>` column, flattened once.
pub struct KeyValues {
    offsets: OffsetBuffer<i32>,
    keys: StringArray,
    values: StringArray,
}

impl KeyValues {
    fn new(array: &ArrayRef) -> Result<Self, ArrowError> {
        let map = array
            .as_any()
            .downcast_ref::<MapArray>()
            .ok_or_else(|| ArrowError::CastError("expected a map of attributes".into()))?;
        Ok(Self {
            offsets: map.offsets().clone(),
            keys: text(map.keys())?,
            values: text(map.values())?,
        })
    }

    /// `(key, value)` of one row's map.
    pub fn row(&self, row: usize) -> impl Iterator<Item = (&str, Option<&str>)> {
        let range = self.offsets[row] as usize..self.offsets[row + 1] as usize;
        range.map(|i| (self.keys.value(i), opt(Some(&self.values), i)))
    }
}

/// A list-of-struct column (`events`, `links`), flattened once.
struct Items {
    offsets: OffsetBuffer<i32>,
    nulls: Option<arrow::buffer::NullBuffer>,
    items: StructArray,
}

impl Items {
    fn new(array: &ArrayRef, what: &str) -> Result<Self, ArrowError> {
        let list = array
            .as_list_opt::<i32>()
            .ok_or_else(|| ArrowError::CastError(format!("{what} is not a list")))?;
        let items = list
            .values()
            .as_struct_opt()
            .ok_or_else(|| ArrowError::CastError(format!("{what} items are not structs")))?
            .clone();
        Ok(Self {
            offsets: list.offsets().clone(),
            nulls: list.nulls().cloned(),
            items,
        })
    }

    fn field(&self, name: &str) -> Option<&ArrayRef> {
        self.items.column_by_name(name)
    }

    fn range(&self, row: usize) -> std::ops::Range<usize> {
        if self.nulls.as_ref().is_some_and(|n| n.is_null(row)) {
            return 0..0;
        }
        self.offsets[row] as usize..self.offsets[row + 1] as usize
    }
}

/// The `links` column: per link the span it follows from, its state and attributes.
struct Links {
    items: Items,
    trace_id: Ids,
    span_id: Ids,
    trace_state: Option<StringArray>,
    attributes: Option<KeyValues>,
}

/// The `events` column.
struct Events {
    items: Items,
    time: Option<TimestampNanosecondArray>,
    name: Option<StringArray>,
    attributes: Option<KeyValues>,
}

/// One link of a span, as read.
pub struct LinkRef<'a> {
    pub trace_id: Option<TraceId>,
    pub span_id: Option<SpanId>,
    pub trace_state: Option<&'a str>,
    /// Index of the link's attributes, for [`SpanReader::link_attributes`].
    index: usize,
}

/// One event of a span, as read.
pub struct EventRef<'a> {
    pub time_unix_nano: i64,
    pub name: &'a str,
    index: usize,
}

/// Typed, row-wise access to a span-shaped batch.
pub struct SpanReader {
    rows: usize,
    trace_id: Option<Ids>,
    span_id: Option<Ids>,
    parent_span_id: Option<Ids>,
    trace_state: Option<StringArray>,
    name: Option<StringArray>,
    kind: Option<StringArray>,
    start: Option<TimestampNanosecondArray>,
    end: Option<TimestampNanosecondArray>,
    status_code: Option<StringArray>,
    status_message: Option<StringArray>,
    service_name: Option<StringArray>,
    scope_name: Option<StringArray>,
    scope_version: Option<StringArray>,
    resource_attributes: Option<KeyValues>,
    attributes: Option<KeyValues>,
    attribute_types: Option<KeyValues>,
    events: Option<Events>,
    links: Option<Links>,
    ai: AiReader,
}

impl SpanReader {
    /// Reads the columns `batch` has; fails if one has an unexpected type.
    pub fn new(batch: &RecordBatch) -> Result<Self, ArrowError> {
        let kv = |name| batch.column_by_name(name).map(KeyValues::new).transpose();
        let links = match batch.column_by_name(col::LINKS) {
            None => None,
            Some(c) => {
                let items = Items::new(c, col::LINKS)?;
                let ids = |name: &str| {
                    items
                        .field(name)
                        .map(Ids::new)
                        .transpose()?
                        .ok_or_else(|| ArrowError::SchemaError(format!("links lack {name}")))
                };
                Some(Links {
                    trace_id: ids("trace_id")?,
                    span_id: ids("span_id")?,
                    trace_state: items.field("trace_state").map(text).transpose()?,
                    attributes: items.field("attributes").map(KeyValues::new).transpose()?,
                    items,
                })
            }
        };
        let events = match batch.column_by_name(col::EVENTS) {
            None => None,
            Some(c) => {
                let items = Items::new(c, col::EVENTS)?;
                let time = match items.field("time") {
                    Some(t) => {
                        let t = cast(t, &DataType::Timestamp(TimeUnit::Nanosecond, None))?;
                        Some(t.as_primitive().clone())
                    }
                    None => None,
                };
                Some(Events {
                    time,
                    name: items.field("name").map(text).transpose()?,
                    attributes: items.field("attributes").map(KeyValues::new).transpose()?,
                    items,
                })
            }
        };
        Ok(Self {
            rows: batch.num_rows(),
            trace_id: Ids::of(batch, col::TRACE_ID)?,
            span_id: Ids::of(batch, col::SPAN_ID)?,
            parent_span_id: Ids::of(batch, col::PARENT_SPAN_ID)?,
            trace_state: text_column(batch, col::TRACE_STATE)?,
            name: text_column(batch, col::NAME)?,
            kind: text_column(batch, col::KIND)?,
            start: times(batch, col::START_TIME)?,
            end: times(batch, col::END_TIME)?,
            status_code: text_column(batch, col::STATUS_CODE)?,
            status_message: text_column(batch, col::STATUS_MESSAGE)?,
            service_name: text_column(batch, col::SERVICE_NAME)?,
            scope_name: text_column(batch, col::SCOPE_NAME)?,
            scope_version: text_column(batch, col::SCOPE_VERSION)?,
            resource_attributes: kv(col::RESOURCE_ATTRIBUTES)?,
            attributes: kv(col::ATTRIBUTES)?,
            attribute_types: kv(col::ATTRIBUTE_TYPES)?,
            events,
            links,
            ai: AiReader::new(batch)?,
        })
    }

    /// Like [`Self::new`], and fails unless the batch has every column named.
    pub fn with_columns(batch: &RecordBatch, required: &[&str]) -> Result<Self, ArrowError> {
        if let Some(missing) = required.iter().find(|c| batch.column_by_name(c).is_none()) {
            return Err(ArrowError::SchemaError(format!(
                "span batch lacks column {missing}"
            )));
        }
        Self::new(batch)
    }

    /// Rows in the batch.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// True when the batch has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The trace id; `None` if the column is absent or the value invalid.
    pub fn trace_id(&self, row: usize) -> Option<TraceId> {
        self.trace_id.as_ref()?.get(row)
    }

    pub fn span_id(&self, row: usize) -> Option<SpanId> {
        self.span_id.as_ref()?.get(row)
    }

    pub fn parent_span_id(&self, row: usize) -> Option<SpanId> {
        self.parent_span_id.as_ref()?.get(row)
    }

    pub fn trace_state(&self, row: usize) -> Option<&str> {
        opt(self.trace_state.as_ref(), row)
    }

    pub fn name(&self, row: usize) -> &str {
        opt(self.name.as_ref(), row).unwrap_or_default()
    }

    pub fn kind(&self, row: usize) -> SpanKind {
        SpanKind::parse(opt(self.kind.as_ref(), row).unwrap_or_default())
    }

    /// Start, Unix nanoseconds (0 if absent).
    pub fn start_ns(&self, row: usize) -> i64 {
        self.start.as_ref().map_or(0, |a| a.value(row))
    }

    /// End, Unix nanoseconds (0 if absent).
    pub fn end_ns(&self, row: usize) -> i64 {
        self.end.as_ref().map_or(0, |a| a.value(row))
    }

    pub fn status(&self, row: usize) -> StatusCode {
        StatusCode::parse(opt(self.status_code.as_ref(), row).unwrap_or_default())
    }

    pub fn status_message(&self, row: usize) -> Option<&str> {
        opt(self.status_message.as_ref(), row)
    }

    pub fn service_name(&self, row: usize) -> Option<&str> {
        opt(self.service_name.as_ref(), row)
    }

    pub fn scope_name(&self, row: usize) -> Option<&str> {
        opt(self.scope_name.as_ref(), row)
    }

    pub fn scope_version(&self, row: usize) -> Option<&str> {
        opt(self.scope_version.as_ref(), row)
    }

    /// The span's attributes, as stored (values as text).
    pub fn attributes(&self, row: usize) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.attributes.iter().flat_map(move |kv| kv.row(row))
    }

    /// One attribute's value.
    pub fn attribute(&self, row: usize, key: &str) -> Option<&str> {
        self.attributes(row)
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v)
    }

    /// The span's `attribute_types` entries (see [`crate::value_types`]);
    /// none when the column is absent or null (types not recorded).
    pub fn attribute_types(&self, row: usize) -> Vec<(&str, Option<&str>)> {
        self.attribute_types
            .iter()
            .flat_map(move |kv| kv.row(row))
            .collect()
    }

    /// The span's resource attributes.
    pub fn resource_attributes(&self, row: usize) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.resource_attributes
            .iter()
            .flat_map(move |kv| kv.row(row))
    }

    /// The span's links.
    pub fn links(&self, row: usize) -> impl Iterator<Item = LinkRef<'_>> {
        self.links.iter().flat_map(move |l| {
            l.items.range(row).map(move |i| LinkRef {
                trace_id: l.trace_id.get(i),
                span_id: l.span_id.get(i),
                trace_state: opt(l.trace_state.as_ref(), i),
                index: i,
            })
        })
    }

    /// The attributes of one link.
    pub fn link_attributes(
        &self,
        link: &LinkRef<'_>,
    ) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.links
            .iter()
            .filter_map(|l| l.attributes.as_ref())
            .flat_map(move |kv| kv.row(link.index))
    }

    /// The span's events.
    pub fn events(&self, row: usize) -> impl Iterator<Item = EventRef<'_>> {
        self.events.iter().flat_map(move |e| {
            e.items.range(row).map(move |i| EventRef {
                time_unix_nano: e.time.as_ref().map_or(0, |t| t.value(i)),
                name: opt(e.name.as_ref(), i).unwrap_or_default(),
                index: i,
            })
        })
    }

    /// The attributes of one event.
    pub fn event_attributes(
        &self,
        event: &EventRef<'_>,
    ) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.events
            .iter()
            .filter_map(|e| e.attributes.as_ref())
            .flat_map(move |kv| kv.row(event.index))
    }

    /// The AI columns of one row; those the batch lacks are `None`.
    pub fn ai(&self, row: usize) -> AiFields {
        self.ai.read(row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::spans_to_batch;
    use crate::batch::tests::span;

    #[test]
    fn reads_back_what_the_batch_builder_wrote() {
        let spans = [span(1), span(2)];
        let batch = spans_to_batch(&spans).unwrap();
        let r = SpanReader::new(&batch).unwrap();
        assert_eq!(r.len(), 2);
        for (row, s) in spans.iter().enumerate() {
            assert_eq!(r.trace_id(row), Some(s.trace_id));
            assert_eq!(r.span_id(row), Some(s.span_id));
            assert_eq!(r.parent_span_id(row), s.parent_span_id);
            assert_eq!(r.name(row), s.name);
            assert_eq!(r.kind(row), s.kind);
            // Times are stored in microseconds (Delta's timestamp); the
            // duration column keeps the exact 2,500 ns.
            assert_eq!((r.start_ns(row), r.end_ns(row)), (1_000, 3_000));
            assert_eq!(r.status(row), s.status_code);
            assert_eq!(r.service_name(row), Some("svc"));
            assert_eq!(r.attribute(row, "n"), Some("7"));
            assert_eq!(
                r.resource_attributes(row).collect::<Vec<_>>(),
                vec![("host.name", Some("gpu-1"))]
            );
            let links: Vec<_> = r.links(row).collect();
            assert_eq!(links.len(), 1);
            assert_eq!(links[0].trace_id, Some(s.links[0].trace_id));
            assert_eq!(
                r.link_attributes(&links[0]).collect::<Vec<_>>(),
                vec![("why", Some("resume"))]
            );
            let events: Vec<_> = r.events(row).collect();
            assert_eq!(
                (events[0].time_unix_nano, events[0].name),
                (2_000, "first token")
            );
            assert_eq!(r.ai(row), s.ai);
        }
    }

    #[test]
    fn a_projection_reads_absent_columns_as_null_and_checks_required_ones() {
        let batch = spans_to_batch(&[span(3)]).unwrap();
        let projected = batch.project(&[0, 1]).unwrap();
        let r = SpanReader::new(&projected).unwrap();
        assert!(r.trace_id(0).is_some());
        assert_eq!(r.name(0), "");
        assert_eq!(r.ai(0), AiFields::default());
        assert!(SpanReader::with_columns(&projected, &[col::NAME]).is_err());
    }
}
