//! OTLP log records as event rows. OpenTelemetry's GenAI conventions send
//! prompts and completions as log events (`gen_ai.user.message`,
//! `gen_ai.choice`, …) carrying the trace and span they belong to; Weft keeps
//! those as rows of a second span store, the event store, one row per record:
//!
//! - `trace_id` is the record's trace, `parent_span_id` the span it belongs to;
//! - `span_id` is derived from the record's bytes, so a client's retry of the
//!   same record is recognised and stored once (the store's deduplication);
//! - `name` is the event name (`event_name`, else the `event.name`
//!   attribute, else `log`); start and end are the record's time;
//! - the body is the `event.body` attribute, severity `log.severity_text`
//!   and `log.severity_number`.
//!
//! A record without a trace and span id is rejected (partial success): Weft
//! stores events of spans, not free-standing logs.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message;
use weft_schemas::conventions::extract;
use weft_schemas::{AttrValue, Attributes, Span, SpanId, SpanKind, StatusCode, TraceId};

use super::normalise::{
    MAX_REPORTED_ERRORS, Normalised, any_value, attributes, cap, drop_message_content,
};
use crate::limits::AttributeLimits;

/// The attribute holding a record's body.
pub use weft_schemas::EVENT_BODY_KEY as BODY_KEY;

/// Event rows of `request`, and what was rejected.
pub fn normalise_logs(request: ExportLogsServiceRequest, limits: &AttributeLimits) -> Normalised {
    let mut out = Normalised::default();
    for (ri, rl) in request.resource_logs.into_iter().enumerate() {
        let mut resource = rl
            .resource
            .map(|r| attributes(r.attributes))
            .unwrap_or_default();
        cap(
            &mut resource,
            limits.max_resource_attributes,
            limits.max_resource_value_bytes,
        );
        let resource: std::sync::Arc<Attributes> = resource.into();
        let service_name = resource.iter().find_map(|(k, v)| match v {
            AttrValue::Str(s) if k == "service.name" => Some(s.clone()),
            _ => None,
        });
        for (si, sl) in rl.scope_logs.into_iter().enumerate() {
            let (scope_name, scope_version) =
                sl.scope.map(|s| (s.name, s.version)).unwrap_or_default();
            for (li, record) in sl.log_records.into_iter().enumerate() {
                match event_row(record, limits) {
                    Ok(mut row) => {
                        row.service_name.clone_from(&service_name);
                        row.resource_attributes = std::sync::Arc::clone(&resource);
                        row.scope_name.clone_from(&scope_name);
                        row.scope_version.clone_from(&scope_version);
                        row.ai = extract(&row.attributes, &resource);
                        out.spans.push(row);
                    }
                    Err(why) => {
                        out.rejected += 1;
                        if out.errors.len() < MAX_REPORTED_ERRORS {
                            out.errors
                                .push(format!("resource {ri} scope {si} log record {li}: {why}"));
                        }
                    }
                }
            }
        }
    }
    out
}

/// FNV-1a, 64 bits: stable across processes and versions, as the id of a
/// record must be for retries to be recognised after a restart.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn event_row(record: LogRecord, limits: &AttributeLimits) -> Result<Span, String> {
    let trace_id = TraceId::try_from(record.trace_id.as_slice()).map_err(|e| {
        format!("{e}; only events of a span (with its trace and span id) are stored")
    })?;
    let parent = SpanId::try_from(record.span_id.as_slice()).map_err(|e| {
        format!("{e}; only events of a span (with its trace and span id) are stored")
    })?;
    let id = fnv1a(&record.encode_to_vec()).max(1).to_be_bytes();
    let span_id = SpanId::try_from(&id[..]).map_err(|e| e.to_string())?;
    let time = match record.time_unix_nano {
        0 => record.observed_time_unix_nano,
        t => t,
    };
    let time =
        i64::try_from(time).map_err(|_| format!("timestamp {time} is beyond the year 2262"))?;
    let mut attrs = attributes(record.attributes);
    let name = if record.event_name.is_empty() {
        attrs
            .iter()
            .find_map(|(k, v)| match v {
                AttrValue::Str(s) if k == "event.name" => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_else(|| "log".to_owned())
    } else {
        record.event_name
    };
    if record.body.is_some() {
        attrs.push((BODY_KEY.to_owned(), any_value(record.body)));
    }
    if !record.severity_text.is_empty() {
        attrs.push((
            "log.severity_text".to_owned(),
            AttrValue::Str(record.severity_text),
        ));
    }
    if record.severity_number != 0 {
        attrs.push((
            "log.severity_number".to_owned(),
            AttrValue::Int(i64::from(record.severity_number)),
        ));
    }
    if limits.drop_message_content {
        drop_message_content(&mut attrs, name.starts_with("gen_ai."));
    }
    let cut = cap(&mut attrs, limits.max_attributes, limits.max_value_bytes);
    if cut > 0 {
        attrs.push((
            "weft.attributes_truncated".into(),
            AttrValue::Int(cut as i64),
        ));
    }
    Ok(Span {
        trace_id,
        span_id,
        parent_span_id: Some(parent),
        trace_state: String::new(),
        name,
        kind: SpanKind::Internal,
        start_time_unix_nano: time,
        end_time_unix_nano: time,
        status_code: StatusCode::Unset,
        status_message: String::new(),
        service_name: None,
        resource_attributes: Default::default(),
        scope_name: String::new(),
        scope_version: String::new(),
        attributes: attrs,
        events: Vec::new(),
        links: Vec::new(),
        ai: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};

    use super::*;

    fn text(s: &str) -> Option<AnyValue> {
        Some(AnyValue {
            value: Some(any_value::Value::StringValue(s.into())),
        })
    }

    fn request(records: Vec<LogRecord>) -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: records,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn event(body: &str) -> LogRecord {
        LogRecord {
            time_unix_nano: 1_700_000_000_000_000_000,
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            event_name: "gen_ai.user.message".into(),
            body: text(body),
            attributes: vec![KeyValue {
                key: "gen_ai.system".into(),
                value: text("openai"),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn events_belong_to_their_span_and_retries_get_the_same_id() {
        let limits = AttributeLimits::default();
        let rows = normalise_logs(
            request(vec![event("hi"), event("hi"), event("other")]),
            &limits,
        );
        assert_eq!(rows.rejected, 0);
        let [a, b, c] = &rows.spans[..] else {
            panic!("three rows");
        };
        assert_eq!(
            a.parent_span_id,
            Some(SpanId::try_from(&[2u8; 8][..]).unwrap())
        );
        assert_eq!(a.name, "gen_ai.user.message");
        assert_eq!(a.span_id, b.span_id, "the same record, the same id");
        assert_ne!(a.span_id, c.span_id);
        assert!(
            a.attributes
                .iter()
                .any(|(k, v)| k == BODY_KEY && *v == AttrValue::Str("hi".into()))
        );
    }

    #[test]
    fn records_without_a_span_are_rejected_and_content_can_be_dropped() {
        let mut orphan = event("x");
        orphan.span_id.clear();
        let rows = normalise_logs(request(vec![orphan]), &AttributeLimits::default());
        assert_eq!((rows.spans.len(), rows.rejected), (0, 1));
        assert!(
            rows.error_message().contains("span"),
            "{}",
            rows.error_message()
        );

        let limits = AttributeLimits {
            drop_message_content: true,
            ..Default::default()
        };
        let rows = normalise_logs(request(vec![event("secret prompt")]), &limits);
        let row = &rows.spans[0];
        assert!(
            !row.attributes.iter().any(|(k, _)| k == BODY_KEY),
            "{row:?}"
        );
        assert!(row.attributes.iter().any(|(k, _)| k == "gen_ai.system"));
        assert!(
            row.attributes
                .iter()
                .any(|(k, _)| k == "weft.content_dropped")
        );
    }
}
