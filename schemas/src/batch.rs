//! Building Arrow record batches of the span schema from [`Span`]s.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, FixedSizeBinaryBuilder, Int64Builder, ListArray, MapArray, StringBuilder, StructArray,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use crate::conventions::AiBuilders;
use crate::ids::{SpanId, TraceId};
use crate::schema::{
    attribute_map_type, event_fields, link_fields, map_entry_fields, span_schema,
    timestamps_from_nanos,
};
use crate::span::{AttrValue, Span};
use crate::value_types::{Place, ValueType};

/// Accumulates one `Map<Utf8, Utf8>` column (or nested field).
#[derive(Default)]
struct MapColumn {
    keys: StringBuilder,
    values: StringBuilder,
    offsets: Vec<i32>,
}

impl MapColumn {
    fn new() -> Self {
        Self {
            offsets: vec![0],
            ..Default::default()
        }
    }

    fn push(&mut self, attrs: &[(String, AttrValue)]) {
        for (k, v) in attrs {
            self.keys.append_value(k);
            match v {
                // Most values are strings: copy them in without an intermediate String.
                AttrValue::Str(s) => self.values.append_value(s),
                other => self.values.append_value(other.to_text()),
            }
        }
        let last = self.offsets.last().copied().unwrap_or(0);
        self.offsets.push(last + attrs.len() as i32);
    }

    /// Appends one map of `attribute_types`: the type of every value of the
    /// span that is not a string, keyed by its place.
    fn push_types(&mut self, span: &Span) {
        let places = [
            (Place::Resource, span.resource_attributes.as_slice()),
            (Place::Span, span.attributes.as_slice()),
        ]
        .into_iter()
        .chain(
            span.events
                .iter()
                .enumerate()
                .map(|(i, e)| (Place::Event(i), e.attributes.as_slice())),
        )
        .chain(
            span.links
                .iter()
                .enumerate()
                .map(|(i, l)| (Place::Link(i), l.attributes.as_slice())),
        );
        let mut n = 0;
        for (place, attrs) in places {
            for (k, v) in attrs {
                if let Some(t) = ValueType::of(v) {
                    self.keys.append_value(place.key(k));
                    self.values.append_value(t.as_str());
                    n += 1;
                }
            }
        }
        let last = self.offsets.last().copied().unwrap_or(0);
        self.offsets.push(last + n);
    }

    fn finish(mut self) -> Result<MapArray, ArrowError> {
        let entries = StructArray::try_new(
            map_entry_fields(),
            vec![
                Arc::new(self.keys.finish()) as ArrayRef,
                Arc::new(self.values.finish()) as ArrayRef,
            ],
            None,
        )?;
        let DataType::Map(entry_field, _) = attribute_map_type() else {
            unreachable!("attribute_map_type is a map")
        };
        MapArray::try_new(
            entry_field,
            OffsetBuffer::new(self.offsets.into()),
            entries,
            None,
            false,
        )
    }
}

fn list_field(fields: arrow::datatypes::Fields) -> Arc<Field> {
    Arc::new(Field::new("item", DataType::Struct(fields), false))
}

fn next_offset(offsets: &[i32], n: usize) -> i32 {
    offsets.last().copied().unwrap_or(0) + n as i32
}

/// Builds one record batch of [`span_schema`] from spans, in order.
pub fn spans_to_batch(spans: &[Span]) -> Result<RecordBatch, ArrowError> {
    let n = spans.len();
    let mut trace_id = FixedSizeBinaryBuilder::with_capacity(n, TraceId::LEN as i32);
    let mut span_id = FixedSizeBinaryBuilder::with_capacity(n, SpanId::LEN as i32);
    let mut parent = FixedSizeBinaryBuilder::with_capacity(n, SpanId::LEN as i32);
    let mut trace_state = StringBuilder::new();
    let mut name = StringBuilder::new();
    let mut kind = StringBuilder::new();
    let mut start = Vec::with_capacity(n);
    let mut end = Vec::with_capacity(n);
    let mut duration = Int64Builder::with_capacity(n);
    let mut status_code = StringBuilder::new();
    let mut status_message = StringBuilder::new();
    let mut service = StringBuilder::new();
    let mut scope_name = StringBuilder::new();
    let mut scope_version = StringBuilder::new();
    let mut resource_attrs = MapColumn::new();
    let mut attrs = MapColumn::new();
    let mut value_types = MapColumn::new();

    let mut event_offsets = vec![0i32];
    let mut event_time = Vec::new();
    let mut event_name = StringBuilder::new();
    let mut event_attrs = MapColumn::new();

    let mut link_offsets = vec![0i32];
    let mut link_trace = FixedSizeBinaryBuilder::new(TraceId::LEN as i32);
    let mut link_span = FixedSizeBinaryBuilder::new(SpanId::LEN as i32);
    let mut link_state = StringBuilder::new();
    let mut link_attrs = MapColumn::new();

    let mut ai = AiBuilders::new(n);

    for s in spans {
        trace_id.append_value(s.trace_id.as_bytes())?;
        span_id.append_value(s.span_id.as_bytes())?;
        match s.parent_span_id {
            Some(p) => parent.append_value(p.as_bytes())?,
            None => parent.append_null(),
        }
        trace_state.append_option(non_empty(&s.trace_state));
        name.append_value(&s.name);
        kind.append_value(s.kind.as_str());
        start.push(s.start_time_unix_nano);
        end.push(s.end_time_unix_nano);
        duration.append_value(s.duration_ns());
        status_code.append_value(s.status_code.as_str());
        status_message.append_option(non_empty(&s.status_message));
        service.append_option(s.service_name.as_deref());
        scope_name.append_option(non_empty(&s.scope_name));
        scope_version.append_option(non_empty(&s.scope_version));
        resource_attrs.push(&s.resource_attributes);
        attrs.push(&s.attributes);
        value_types.push_types(s);

        for e in &s.events {
            event_time.push(e.time_unix_nano);
            event_name.append_value(&e.name);
            event_attrs.push(&e.attributes);
        }
        event_offsets.push(next_offset(&event_offsets, s.events.len()));

        for l in &s.links {
            link_trace.append_value(l.trace_id.as_bytes())?;
            link_span.append_value(l.span_id.as_bytes())?;
            link_state.append_option(non_empty(&l.trace_state));
            link_attrs.push(&l.attributes);
        }
        link_offsets.push(next_offset(&link_offsets, s.links.len()));

        ai.push(&s.ai);
    }

    let ts = timestamps_from_nanos;
    let events = StructArray::try_new(
        event_fields(),
        vec![
            ts(event_time),
            Arc::new(event_name.finish()),
            Arc::new(event_attrs.finish()?),
        ],
        None,
    )?;
    let events = ListArray::try_new(
        list_field(event_fields()),
        OffsetBuffer::new(event_offsets.into()),
        Arc::new(events),
        None,
    )?;
    let links = StructArray::try_new(
        link_fields(),
        vec![
            Arc::new(link_trace.finish()),
            Arc::new(link_span.finish()),
            Arc::new(link_state.finish()),
            Arc::new(link_attrs.finish()?),
        ],
        None,
    )?;
    let links = ListArray::try_new(
        list_field(link_fields()),
        OffsetBuffer::new(link_offsets.into()),
        Arc::new(links),
        None,
    )?;

    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(trace_id.finish()),
        Arc::new(span_id.finish()),
        Arc::new(parent.finish()),
        Arc::new(trace_state.finish()),
        Arc::new(name.finish()),
        Arc::new(kind.finish()),
        ts(start),
        ts(end),
        Arc::new(duration.finish()),
        Arc::new(status_code.finish()),
        Arc::new(status_message.finish()),
        Arc::new(service.finish()),
        Arc::new(scope_name.finish()),
        Arc::new(scope_version.finish()),
        Arc::new(resource_attrs.finish()?),
        Arc::new(attrs.finish()?),
        Arc::new(events),
        Arc::new(links),
    ];
    columns.extend(ai.finish());
    columns.push(Arc::new(value_types.finish()?));
    RecordBatch::try_new(span_schema(), columns)
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::conventions::{AiFields, AiKind};
    use crate::span::{SpanEvent, SpanKind, SpanLink, StatusCode};

    pub(crate) fn span(i: u8) -> Span {
        Span {
            trace_id: [i; 16].as_slice().try_into().unwrap(),
            span_id: [i; 8].as_slice().try_into().unwrap(),
            parent_span_id: None,
            trace_state: String::new(),
            name: format!("span-{i}"),
            kind: SpanKind::Client,
            start_time_unix_nano: 1_000,
            end_time_unix_nano: 3_500,
            status_code: StatusCode::Ok,
            status_message: String::new(),
            service_name: Some("svc".into()),
            resource_attributes: vec![("host.name".into(), AttrValue::Str("gpu-1".into()))].into(),
            scope_name: "scope".into(),
            scope_version: String::new(),
            attributes: vec![("n".into(), AttrValue::Int(7))],
            events: vec![SpanEvent {
                time_unix_nano: 2_000,
                name: "first token".into(),
                attributes: vec![],
            }],
            links: vec![SpanLink {
                trace_id: [9; 16].as_slice().try_into().unwrap(),
                span_id: [9; 8].as_slice().try_into().unwrap(),
                trace_state: String::new(),
                attributes: vec![("why".into(), AttrValue::Str("resume".into()))],
            }],
            ai: AiFields {
                ai_kind: Some(AiKind::Llm),
                input_tokens: Some(10),
                retrieved_document_ids: Some(vec!["a".into()]),
                ..Default::default()
            },
        }
    }

    #[test]
    fn batch_matches_schema_and_values() {
        let batch = spans_to_batch(&[span(1), span(2)]).unwrap();
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.schema(), span_schema());
        let dur = batch
            .column_by_name("duration_ns")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .unwrap();
        assert_eq!(dur.value(1), 2_500);
        let links = batch.column_by_name("links").unwrap();
        assert_eq!(links.len(), 2);
    }

    #[test]
    fn empty_batch_is_valid() {
        let batch = spans_to_batch(&[]).unwrap();
        assert_eq!(batch.num_rows(), 0);
    }
}
