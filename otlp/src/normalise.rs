//! Validating and normalising OTLP spans into [`Span`]s.
//!
//! Each span is checked alone: a bad id, an end before its start or a timestamp
//! out of range rejects that span (counted, with a message) and the rest of the
//! request goes on. Resource and scope are folded into every span, and the AI
//! columns are extracted here, once.

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1 as proto;
use weft_schemas::conventions::extract;
use weft_schemas::{
    AttrValue, Attributes, IdError, Span, SpanEvent, SpanId, SpanKind, SpanLink, StatusCode,
    TraceId,
};

use super::ExportTraceServiceRequest;
use crate::limits::AttributeLimits;

/// Why one span was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpanError {
    #[error("{0}")]
    Id(IdError),
    #[error("parent {0}")]
    ParentId(IdError),
    #[error("link {index}: {error}")]
    LinkId { index: usize, error: IdError },
    #[error("end time {end} is before start time {start}")]
    EndBeforeStart { start: u64, end: u64 },
    #[error("timestamp {0} is beyond the year 2262")]
    TimeOutOfRange(u64),
}

/// The spans of one request that passed validation, and what was rejected.
#[derive(Debug, Default)]
pub struct Normalised {
    pub spans: Vec<Span>,
    pub rejected: u64,
    /// Up to [`MAX_REPORTED_ERRORS`] rejection reasons, for the partial-success message.
    pub errors: Vec<String>,
}

/// How many rejection reasons are spelled out in one response.
pub const MAX_REPORTED_ERRORS: usize = 5;

impl Normalised {
    /// The `partial_success.error_message`, empty when nothing was rejected.
    pub fn error_message(&self) -> String {
        self.error_message_of("span(s)")
    }

    /// [`Normalised::error_message`], counting `items` (`log record(s)`).
    pub fn error_message_of(&self, items: &str) -> String {
        if self.rejected == 0 {
            return String::new();
        }
        let more = self.rejected as usize - self.errors.len().min(self.rejected as usize);
        let mut msg = format!(
            "rejected {} {items}: {}",
            self.rejected,
            self.errors.join("; ")
        );
        if more > 0 {
            msg.push_str(&format!("; and {more} more"));
        }
        msg
    }
}

impl Normalised {
    /// Refuses the spans that start outside `[earliest, latest]` (nanoseconds
    /// since the Unix epoch): older than retention, or further in the future
    /// than clocks may drift. Each is counted as rejected, with the reason.
    pub fn keep_within(&mut self, earliest: i64, latest: i64, window: &str) {
        let (mut old, mut future) = (0u64, 0u64);
        self.spans.retain(|s| {
            let start = s.start_time_unix_nano;
            if start < earliest {
                old += 1;
            } else if start > latest {
                future += 1;
            }
            (earliest..=latest).contains(&start)
        });
        for (n, when) in [(old, "before"), (future, "after")] {
            if n == 0 {
                continue;
            }
            self.rejected += n;
            if self.errors.len() < MAX_REPORTED_ERRORS {
                self.errors.push(format!(
                    "{n} span(s) start {when} the accepted window ({window}); \
                     they are not stored: check the sender's clock"
                ));
            }
        }
    }
}

/// Validates and normalises every span of a request, moving its strings and
/// attributes into the spans rather than copying them.
pub fn normalise(request: ExportTraceServiceRequest) -> Normalised {
    normalise_with(request, &AttributeLimits::default())
}

/// [`normalise`] under `limits`.
pub fn normalise_with(request: ExportTraceServiceRequest, limits: &AttributeLimits) -> Normalised {
    let mut out = Normalised::default();
    for (ri, rs) in request.resource_spans.into_iter().enumerate() {
        let mut resource = rs
            .resource
            .map(|r| attributes(r.attributes))
            .unwrap_or_default();
        let cut = cap(
            &mut resource,
            limits.max_resource_attributes,
            limits.max_resource_value_bytes,
        );
        if cut > 0 {
            resource.push((
                "weft.resource_attributes_truncated".into(),
                AttrValue::Int(cut as i64),
            ));
        }
        let resource_attributes: std::sync::Arc<Attributes> = resource.into();
        let service_name = resource_attributes.iter().find_map(|(k, v)| match v {
            AttrValue::Str(s) if k == "service.name" => Some(s.clone()),
            _ => None,
        });
        for (si, ss) in rs.scope_spans.into_iter().enumerate() {
            let (scope_name, scope_version) =
                ss.scope.map(|s| (s.name, s.version)).unwrap_or_default();
            let context = Context {
                resource_attributes: &resource_attributes,
                service_name: service_name.as_deref(),
                scope_name: &scope_name,
                scope_version: &scope_version,
                limits,
            };
            out.spans.reserve(ss.spans.len());
            for (pi, span) in ss.spans.into_iter().enumerate() {
                match normalise_span(span, &context) {
                    Ok(s) => out.spans.push(s),
                    Err((e, name)) => {
                        out.rejected += 1;
                        if out.errors.len() < MAX_REPORTED_ERRORS {
                            out.errors.push(format!(
                                "resource {ri} scope {si} span {pi} ({name:?}): {e}"
                            ));
                        }
                    }
                }
            }
        }
    }
    out
}

struct Context<'a> {
    resource_attributes: &'a std::sync::Arc<Attributes>,
    service_name: Option<&'a str>,
    scope_name: &'a str,
    scope_version: &'a str,
    limits: &'a AttributeLimits,
}

fn time(ns: u64) -> Result<i64, SpanError> {
    i64::try_from(ns).map_err(|_| SpanError::TimeOutOfRange(ns))
}

/// The checks that can reject a span, before anything is moved out of it.
struct Checked {
    trace_id: TraceId,
    span_id: SpanId,
    parent_span_id: Option<SpanId>,
    start: i64,
    end: i64,
    links: Vec<(TraceId, SpanId)>,
    event_times: Vec<i64>,
}

fn check(span: &proto::Span) -> Result<Checked, SpanError> {
    let trace_id = TraceId::try_from(span.trace_id.as_slice()).map_err(SpanError::Id)?;
    let span_id = SpanId::try_from(span.span_id.as_slice()).map_err(SpanError::Id)?;
    let parent_span_id = parent(&span.parent_span_id)?;
    if span.end_time_unix_nano < span.start_time_unix_nano {
        return Err(SpanError::EndBeforeStart {
            start: span.start_time_unix_nano,
            end: span.end_time_unix_nano,
        });
    }
    let links = span
        .links
        .iter()
        .enumerate()
        .map(|(index, l)| {
            let err = |error| SpanError::LinkId { index, error };
            Ok((
                TraceId::try_from(l.trace_id.as_slice()).map_err(err)?,
                SpanId::try_from(l.span_id.as_slice()).map_err(err)?,
            ))
        })
        .collect::<Result<Vec<_>, SpanError>>()?;
    let event_times = span
        .events
        .iter()
        .map(|e| time(e.time_unix_nano))
        .collect::<Result<Vec<_>, SpanError>>()?;
    Ok(Checked {
        trace_id,
        span_id,
        parent_span_id,
        start: time(span.start_time_unix_nano)?,
        end: time(span.end_time_unix_nano)?,
        links,
        event_times,
    })
}

/// The span, or why it was rejected and its name (for the message).
fn normalise_span(span: proto::Span, cx: &Context<'_>) -> Result<Span, (SpanError, String)> {
    let checked = match check(&span) {
        Ok(c) => c,
        Err(e) => return Err((e, span.name)),
    };
    let (max_count, max_bytes) = (cx.limits.max_attributes, cx.limits.max_value_bytes);
    let mut cut = 0;
    let mut capped = |kvs: Vec<KeyValue>| {
        let mut attrs = attributes(kvs);
        cut += cap(&mut attrs, max_count, max_bytes);
        attrs
    };
    let links: Vec<SpanLink> = span
        .links
        .into_iter()
        .zip(checked.links)
        .map(|(l, (trace_id, span_id))| SpanLink {
            trace_id,
            span_id,
            trace_state: l.trace_state,
            attributes: capped(l.attributes),
        })
        .collect();
    let events: Vec<SpanEvent> = span
        .events
        .into_iter()
        .zip(checked.event_times)
        .map(|(e, time_unix_nano)| {
            let mut attributes = capped(e.attributes);
            if cx.limits.drop_message_content {
                drop_message_content(&mut attributes, false);
            }
            SpanEvent {
                time_unix_nano,
                name: e.name,
                attributes,
            }
        })
        .collect();
    let mut attrs = capped(span.attributes);
    if cx.limits.drop_message_content {
        drop_message_content(&mut attrs, false);
    }
    if cut > 0 {
        attrs.push((
            "weft.attributes_truncated".into(),
            AttrValue::Int(cut as i64),
        ));
    }
    let ai = extract(&attrs, cx.resource_attributes);
    let (status_code, status_message) = span
        .status
        .map(|s| (StatusCode::from_otlp(s.code), s.message))
        .unwrap_or((StatusCode::Unset, String::new()));
    Ok(Span {
        trace_id: checked.trace_id,
        span_id: checked.span_id,
        parent_span_id: checked.parent_span_id,
        trace_state: span.trace_state,
        name: span.name,
        kind: SpanKind::from_otlp(span.kind),
        start_time_unix_nano: checked.start,
        end_time_unix_nano: checked.end,
        status_code,
        status_message,
        service_name: cx.service_name.map(str::to_owned),
        resource_attributes: std::sync::Arc::clone(cx.resource_attributes),
        scope_name: cx.scope_name.to_owned(),
        scope_version: cx.scope_version.to_owned(),
        attributes: attrs,
        events,
        links,
        ai,
    })
}

/// An empty parent means a root span; an all-zero parent is treated the same,
/// since some SDKs send eight zero bytes for "no parent".
fn parent(bytes: &[u8]) -> Result<Option<SpanId>, SpanError> {
    if bytes.is_empty() || (bytes.len() == SpanId::LEN && bytes.iter().all(|b| *b == 0)) {
        return Ok(None);
    }
    SpanId::try_from(bytes)
        .map(Some)
        .map_err(SpanError::ParentId)
}

/// Applies a count and a value-size cap to `attrs`; returns how many
/// attributes were dropped or cut.
pub(super) fn cap(attrs: &mut Attributes, max_count: usize, max_bytes: usize) -> usize {
    let mut cut = attrs.len().saturating_sub(max_count);
    attrs.truncate(max_count);
    for (_, value) in attrs.iter_mut() {
        if cut_value(value, max_bytes) {
            cut += 1;
        }
    }
    cut
}

/// Cuts strings and bytes inside `value` to `max_bytes` each, and keeps
/// arrays and lists to as many elements as fit that size at a byte apiece.
/// Nesting is bounded by the decoders (prost and serde_json refuse deeper
/// messages than about a hundred levels).
fn cut_value(value: &mut AttrValue, max_bytes: usize) -> bool {
    match value {
        AttrValue::Str(s) if s.len() > max_bytes => {
            let mut end = max_bytes;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.truncate(end);
            true
        }
        AttrValue::Bytes(b) if b.len() > max_bytes => {
            b.truncate(max_bytes);
            true
        }
        AttrValue::Array(items) => {
            let mut cut = items.len() > max_bytes;
            items.truncate(max_bytes);
            for item in items.iter_mut() {
                cut |= cut_value(item, max_bytes);
            }
            cut
        }
        AttrValue::KvList(kvs) => {
            let mut cut = kvs.len() > max_bytes;
            kvs.truncate(max_bytes);
            for (_, item) in kvs.iter_mut() {
                cut |= cut_value(item, max_bytes);
            }
            cut
        }
        _ => false,
    }
}

/// Roughly the bytes `spans` take as rows, resource attributes counted once
/// per span (each row holds a copy): what a request is charged against the
/// in-flight budget.
pub fn estimated_bytes(spans: &[Span]) -> usize {
    fn value(v: &AttrValue) -> usize {
        match v {
            AttrValue::Str(s) => s.len(),
            AttrValue::Bytes(b) => b.len() * 2,
            AttrValue::Array(items) => items.iter().map(value).sum::<usize>() + 2,
            AttrValue::KvList(kvs) => kvs.iter().map(|(k, v)| k.len() + value(v) + 4).sum(),
            _ => 8,
        }
    }
    fn all(attrs: &[(String, AttrValue)]) -> usize {
        attrs.iter().map(|(k, v)| k.len() + value(v) + 16).sum()
    }
    spans
        .iter()
        .map(|s| {
            256 + s.name.len()
                + s.status_message.len()
                + all(&s.attributes)
                + all(&s.resource_attributes)
                + s.events
                    .iter()
                    .map(|e| e.name.len() + all(&e.attributes) + 16)
                    .sum::<usize>()
                + s.links
                    .iter()
                    .map(|l| all(&l.attributes) + 48)
                    .sum::<usize>()
        })
        .fold(0usize, usize::saturating_add)
}

/// Attributes that carry message content (prompts, completions, tool
/// arguments and results) in the GenAI, OpenInference and Traceloop
/// conventions; `drop_message_content` removes them at ingest.
const CONTENT_KEYS: &[&str] = &[
    "gen_ai.prompt",
    "gen_ai.completion",
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "gen_ai.tool.call.arguments",
    "gen_ai.tool.call.result",
    "input.value",
    "output.value",
    "llm.input_messages",
    "llm.output_messages",
    "llm.prompts",
    "traceloop.entity.input",
    "traceloop.entity.output",
];

fn is_content(key: &str) -> bool {
    CONTENT_KEYS.iter().any(|c| {
        key == *c
            || key
                .strip_prefix(c)
                .is_some_and(|rest| rest.starts_with('.'))
    })
}

/// Removes message content from `attrs` (and, for a GenAI event, its body,
/// which is the message), noting how many were removed as
/// `weft.content_dropped`.
pub(crate) fn drop_message_content(attrs: &mut Attributes, genai_event: bool) {
    let before = attrs.len();
    let is_body = |k: &str| genai_event && k == weft_schemas::EVENT_BODY_KEY;
    attrs.retain(|(k, _)| !(is_content(k) || is_body(k)));
    let dropped = before - attrs.len();
    if dropped > 0 {
        attrs.push((
            "weft.content_dropped".into(),
            AttrValue::Int(dropped as i64),
        ));
    }
}

/// Converts OTLP key/values, keeping their order and types.
pub(super) fn attributes(kvs: Vec<KeyValue>) -> Attributes {
    kvs.into_iter()
        .map(|kv| (kv.key, any_value(kv.value)))
        .collect()
}

pub(super) fn any_value(v: Option<AnyValue>) -> AttrValue {
    use any_value::Value;
    match v.and_then(|v| v.value) {
        None => AttrValue::Empty,
        Some(Value::StringValue(s)) => AttrValue::Str(s),
        Some(Value::BoolValue(b)) => AttrValue::Bool(b),
        Some(Value::IntValue(i)) => AttrValue::Int(i),
        Some(Value::DoubleValue(d)) => AttrValue::Double(d),
        Some(Value::BytesValue(b)) => AttrValue::Bytes(b),
        Some(Value::ArrayValue(a)) => {
            AttrValue::Array(a.values.into_iter().map(|v| any_value(Some(v))).collect())
        }
        Some(Value::KvlistValue(kv)) => AttrValue::KvList(attributes(kv.values)),
        // OTLP 1.x added a string-table reference used only by profiles.
        #[allow(unreachable_patterns)]
        Some(_) => AttrValue::Empty,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};

    pub(crate) fn kv(k: &str, v: any_value::Value) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    pub(crate) fn good_span(n: u8) -> proto::Span {
        proto::Span {
            trace_id: vec![1; 16],
            span_id: vec![n.max(1); 8],
            name: format!("step {n}"),
            kind: 3,
            start_time_unix_nano: 1_700_000_000_000_000_000,
            end_time_unix_nano: 1_700_000_000_500_000_000,
            attributes: vec![
                kv(
                    "gen_ai.operation.name",
                    any_value::Value::StringValue("chat".into()),
                ),
                kv("gen_ai.usage.input_tokens", any_value::Value::IntValue(100)),
            ],
            ..Default::default()
        }
    }

    pub(crate) fn request(spans: Vec<proto::Span>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![
                        kv(
                            "service.name",
                            any_value::Value::StringValue("support-agent".into()),
                        ),
                        kv("host.name", any_value::Value::StringValue("gpu-2".into())),
                    ],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn folds_resource_and_extracts_ai_columns() {
        let out = normalise(request(vec![good_span(1)]));
        assert_eq!(out.rejected, 0);
        let s = &out.spans[0];
        assert_eq!(s.service_name.as_deref(), Some("support-agent"));
        assert_eq!(s.ai.node.as_deref(), Some("gpu-2"));
        assert_eq!(s.ai.input_tokens, Some(100));
        assert_eq!(s.kind, SpanKind::Client);
        assert_eq!(s.duration_ns(), 500_000_000);
    }

    #[test]
    fn rejects_bad_spans_individually() {
        let mut short_id = good_span(2);
        short_id.trace_id = vec![1, 2, 3];
        let mut zero_span = good_span(3);
        zero_span.span_id = vec![0; 8];
        let mut backwards = good_span(4);
        backwards.end_time_unix_nano = backwards.start_time_unix_nano - 1;
        let mut bad_parent = good_span(5);
        bad_parent.parent_span_id = vec![9; 3];
        let mut bad_link = good_span(6);
        bad_link.links.push(proto::span::Link {
            trace_id: vec![0; 16],
            span_id: vec![1; 8],
            ..Default::default()
        });
        let out = normalise(request(vec![
            good_span(1),
            short_id,
            zero_span,
            backwards,
            bad_parent,
            bad_link,
            good_span(7),
        ]));
        assert_eq!(out.spans.len(), 2);
        assert_eq!(out.rejected, 5);
        let msg = out.error_message();
        assert!(msg.contains("trace id must be 16 bytes, got 3"), "{msg}");
        assert!(msg.contains("span id must not be all zeros"), "{msg}");
        assert!(msg.contains("is before start time"), "{msg}");
        assert!(msg.contains("parent span id must be 8 bytes"), "{msg}");
        assert!(
            msg.contains("link 0: trace id must not be all zeros"),
            "{msg}"
        );
    }

    #[test]
    fn empty_request_is_fine() {
        let out = normalise(ExportTraceServiceRequest::default());
        assert_eq!((out.spans.len(), out.rejected), (0, 0));
        assert_eq!(out.error_message(), "");
    }

    #[test]
    fn wrongly_typed_ai_attribute_keeps_span_and_raw_value() {
        let mut span = good_span(1);
        span.attributes.push(kv(
            "weft.kv_cache.hit",
            any_value::Value::StringValue("yes".into()),
        ));
        let out = normalise(request(vec![span]));
        assert_eq!(out.rejected, 0);
        assert_eq!(out.spans[0].ai.kv_cache_hit, None);
        assert!(
            out.spans[0]
                .attributes
                .contains(&("weft.kv_cache.hit".into(), AttrValue::Str("yes".into())))
        );
    }
}
