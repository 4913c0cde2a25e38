//! What a data directory's Arrow rows become for the explorer: node
//! signals, SQL answers as text cells, and a trace's span details, with no
//! trip through JSON text.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use weft_schemas::schema::col;
use weft_schemas::value_types::{Place, ValueTypes};
use weft_schemas::{SpanId, SpanKind, SpanReader};
use weft_tui::Failure;
use weft_tui::data::{NodeSignal, SpanDetail, SpanEvent, SpanLink, Table};

use super::shown::shown;

/// The signals' rows straight from Arrow into the explorer's plain data
/// (what [`node_signals`] reads from `/api/signals`' JSON, without the trip
/// through JSON text).
pub(super) fn signals_of_batches(
    batches: &[RecordBatch],
) -> Result<Vec<NodeSignal>, arrow::error::ArrowError> {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{DataType, Float64Type, Int64Type};
    let mut out = Vec::new();
    for batch in batches {
        let column = |name: &str,
                      to: &DataType|
         -> Result<Option<Arc<dyn Array>>, arrow::error::ArrowError> {
            batch
                .column_by_name(name)
                .map(|c| arrow::compute::cast(c, to))
                .transpose()
        };
        let Some(node) = column("node", &DataType::Utf8)? else {
            continue;
        };
        let int = |name: &str| column(name, &DataType::Int64);
        let (calls, errors) = (int("calls")?, int("errors")?);
        let (q50, q95, t50, t95) = (
            int("queue_wait_p50_ns")?,
            int("queue_wait_p95_ns")?,
            int("ttft_p50_ns")?,
            int("ttft_p95_ns")?,
        );
        let hit = column("kv_cache_hit_rate", &DataType::Float64)?;
        let at = |c: &Option<Arc<dyn Array>>, row: usize| {
            c.as_ref()
                .filter(|c| c.is_valid(row))
                .map(|c| c.as_primitive::<Int64Type>().value(row))
        };
        let node = node.as_string::<i32>();
        for row in 0..batch.num_rows() {
            if node.is_null(row) {
                continue;
            }
            out.push(NodeSignal {
                node: node.value(row).to_owned(),
                calls: at(&calls, row).map_or(0, |n| n.max(0) as u64),
                errors: at(&errors, row).map_or(0, |n| n.max(0) as u64),
                kv_cache_hit_rate: hit
                    .as_ref()
                    .filter(|c| c.is_valid(row))
                    .map(|c| c.as_primitive::<Float64Type>().value(row)),
                queue_wait_p50_ns: at(&q50, row),
                queue_wait_p95_ns: at(&q95, row),
                ttft_p50_ns: at(&t50, row),
                ttft_p95_ns: at(&t95, row),
            });
        }
    }
    Ok(out)
}

/// Record batches as text cells, the way `weft sql` prints them.
pub(super) fn table(
    schema: &arrow::datatypes::Schema,
    batches: &[RecordBatch],
    truncated: Option<String>,
) -> Result<Table, Failure> {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Failure::answer(format!("cannot show the result: {e}")))?;
        for row in 0..batch.num_rows() {
            rows.push(
                formatters
                    .iter()
                    .map(|f| f.value(row).to_string())
                    .collect(),
            );
        }
    }
    Ok(Table {
        columns: schema.fields().iter().map(|f| f.name().clone()).collect(),
        rows,
        truncated,
    })
}

/// Everything stored about each span of a trace, straight from its rows,
/// with the event store's rows (log records of its spans) among their events
/// in time order: what [`super::from_json::span_details`] reads from
/// `/api/traces/{id}`, without the trip through OTLP/JSON.
pub(super) fn span_details(
    batches: &[RecordBatch],
    events: &[RecordBatch],
) -> Result<Vec<SpanDetail>, ArrowError> {
    let mut logged: HashMap<SpanId, Vec<SpanEvent>> = HashMap::new();
    for batch in events {
        let r = SpanReader::with_columns(batch, &[col::PARENT_SPAN_ID, col::START_TIME])?;
        for row in 0..r.len() {
            let Some(span) = r.parent_span_id(row) else {
                continue;
            };
            let types = r.attribute_types(row);
            let types = ValueTypes::new(&types);
            logged.entry(span).or_default().push(SpanEvent {
                time_ns: r.start_ns(row),
                name: r.name(row).to_owned(),
                attributes: attributes(r.attributes(row), &types, Place::Span),
            });
        }
    }
    let mut out = Vec::new();
    for batch in batches {
        let r = SpanReader::with_columns(batch, &[col::SPAN_ID, col::START_TIME])?;
        for row in 0..r.len() {
            let types = r.attribute_types(row);
            let types = ValueTypes::new(&types);
            let span_id = r.span_id(row);
            let mut events: Vec<SpanEvent> = r
                .events(row)
                .enumerate()
                .map(|(i, e)| SpanEvent {
                    time_ns: e.time_unix_nano,
                    name: e.name.to_owned(),
                    attributes: attributes(r.event_attributes(&e), &types, Place::Event(i)),
                })
                .collect();
            if let Some(more) = span_id.and_then(|id| logged.remove(&id)) {
                events.extend(more);
                events.sort_by_key(|e| e.time_ns);
            }
            let kind = match r.kind(row) {
                SpanKind::Unspecified => "",
                kind => kind.as_str(),
            };
            out.push(SpanDetail {
                span_id,
                kind: kind.to_owned(),
                attributes: attributes(r.attributes(row), &types, Place::Span),
                resource: attributes(r.resource_attributes(row), &types, Place::Resource),
                events,
                links: r
                    .links(row)
                    .enumerate()
                    .map(|(i, l)| SpanLink {
                        trace_id: l.trace_id,
                        span_id: l.span_id,
                        attributes: attributes(r.link_attributes(&l), &types, Place::Link(i)),
                    })
                    .collect(),
            });
        }
    }
    Ok(out)
}

/// Stored attributes of `place`, each value shown by its recorded type.
fn attributes<'a>(
    entries: impl Iterator<Item = (&'a str, Option<&'a str>)>,
    types: &ValueTypes,
    place: Place,
) -> Vec<(String, String)> {
    let prefix = place.prefix();
    entries
        .map(|(k, v)| (k.to_owned(), shown(v.unwrap_or(""), types.get(&prefix, k))))
        .collect()
}
