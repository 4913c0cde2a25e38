//! Decoding OTLP/HTTP bodies: content type, gzip with a hard size limit, protobuf or JSON.

use std::io::Read;

use flate2::read::MultiGzDecoder;
use prost::Message;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// The two OTLP/HTTP encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Protobuf,
    Json,
}

impl Format {
    /// From a `Content-Type` header value (parameters such as charset ignored).
    pub fn from_content_type(value: Option<&str>) -> Result<Self> {
        let raw = value.unwrap_or("");
        let media = raw
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match media.as_str() {
            "application/x-protobuf" | "application/protobuf" => Ok(Format::Protobuf),
            "application/json" => Ok(Format::Json),
            _ => Err(Error::Unsupported {
                what: "content type",
                value: raw.to_owned(),
                expected: "application/x-protobuf or application/json",
            }),
        }
    }

    /// The `Content-Type` of responses in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => "application/x-protobuf",
            Format::Json => "application/json",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Format::Protobuf => "protobuf",
            Format::Json => "json",
        }
    }
}

/// Body compression named by `Content-Encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
}

impl Encoding {
    /// From a `Content-Encoding` header value.
    pub fn from_header(value: Option<&str>) -> Result<Self> {
        match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("") | Some("identity") => Ok(Encoding::Identity),
            Some("gzip") | Some("x-gzip") => Ok(Encoding::Gzip),
            Some(other) => Err(Error::Unsupported {
                what: "content encoding",
                value: other.to_owned(),
                expected: "gzip or no encoding",
            }),
        }
    }
}

/// Undoes `encoding`, never producing more than `limit` bytes: a gzip bomb
/// fails after `limit + 1` bytes of output, not after it fills memory. A gzip
/// body of several members (concatenated gzip streams, as `cat a.gz b.gz`
/// makes and RFC 1952 allows) decodes whole.
pub fn decompress(body: bytes::Bytes, encoding: Encoding, limit: usize) -> Result<bytes::Bytes> {
    match encoding {
        Encoding::Identity => {
            if body.len() > limit {
                return Err(Error::TooLarge { limit });
            }
            Ok(body)
        }
        Encoding::Gzip => {
            let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
            let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
            let mut reader = MultiGzDecoder::new(&body[..]).take(cap);
            reader.read_to_end(&mut out).map_err(|e| Error::Malformed {
                format: "gzip",
                reason: e.to_string(),
            })?;
            if out.len() > limit {
                return Err(Error::TooLarge { limit });
            }
            Ok(out.into())
        }
    }
}

/// Decodes an OTLP message (trace, metrics or logs request) in `format`.
pub fn decode_message<M>(body: &[u8], format: Format) -> Result<M>
where
    M: Message + Default + DeserializeOwned,
{
    match format {
        Format::Protobuf => M::decode(body).map_err(|e| Error::Malformed {
            format: format.name(),
            reason: e.to_string(),
        }),
        Format::Json => serde_json::from_slice(body).map_err(|e| Error::Malformed {
            format: format.name(),
            reason: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ExportTraceServiceRequest;
    use flate2::{Compression, write::GzEncoder};
    use std::io::Write;

    #[test]
    fn content_types() {
        assert_eq!(
            Format::from_content_type(Some("application/json; charset=utf-8")).unwrap(),
            Format::Json
        );
        assert_eq!(
            Format::from_content_type(Some("application/x-protobuf")).unwrap(),
            Format::Protobuf
        );
        assert!(matches!(
            Format::from_content_type(Some("text/plain")),
            Err(Error::Unsupported { .. })
        ));
        assert!(Format::from_content_type(None).is_err());
    }

    #[test]
    fn gzip_bomb_stops_at_the_limit() {
        let mut enc = GzEncoder::new(Vec::new(), Compression::best());
        enc.write_all(&vec![0u8; 50 * 1024 * 1024]).unwrap();
        let bomb = enc.finish().unwrap();
        assert!(bomb.len() < 100 * 1024);
        let err = decompress(bomb.into(), Encoding::Gzip, 1024 * 1024).unwrap_err();
        assert!(matches!(err, Error::TooLarge { limit } if limit == 1024 * 1024));
    }

    #[test]
    fn every_member_of_a_multi_member_gzip_body_is_decoded() {
        let member = |text: &[u8]| {
            let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
            enc.write_all(text).unwrap();
            enc.finish().unwrap()
        };
        let mut body = member(b"first half, ");
        body.extend(member(b"second half"));
        let out = decompress(body.into(), Encoding::Gzip, 1024).unwrap();
        assert_eq!(&out[..], b"first half, second half");
    }

    #[test]
    fn a_limit_of_usize_max_does_not_wrap() {
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(b"spans").unwrap();
        let body = enc.finish().unwrap();
        let out = decompress(body.into(), Encoding::Gzip, usize::MAX).unwrap();
        assert_eq!(&out[..], b"spans");
    }

    #[test]
    fn corrupt_gzip_is_malformed() {
        let err = decompress(
            bytes::Bytes::from_static(b"\x1f\x8bnot gzip"),
            Encoding::Gzip,
            1024,
        )
        .unwrap_err();
        assert_eq!(err.kind(), weft_schemas::ErrorKind::Invalid, "{err}");
    }

    #[test]
    fn spec_example_trace_json_decodes_with_hex_ids() {
        let json = include_str!("../tests/fixtures/trace.json");
        let req: ExportTraceServiceRequest = decode_message(json.as_bytes(), Format::Json).unwrap();
        let span = &req.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(
            hex::encode(&span.trace_id),
            "5b8efff798038103d269b633813fc60c"
        );
        assert_eq!(hex::encode(&span.span_id), "eee19b7ec3c1b174");
        assert_eq!(span.kind, 2);
        assert_eq!(span.start_time_unix_nano, 1_544_712_660_000_000_000);
    }

    #[test]
    fn json_accepts_numbers_for_64_bit_ints_and_ignores_unknown_fields() {
        let json = r#"{"resourceSpans":[{"futureField":1,"scopeSpans":[{"spans":[{
            "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
            "name":"x","kind":3,"startTimeUnixNano":1544712660000000000,
            "endTimeUnixNano":"1544712661000000000","unknown":{"a":[1,2]},
            "attributes":[{"key":"n","value":{"intValue":42}}]}]}]}]}"#;
        let req: ExportTraceServiceRequest = decode_message(json.as_bytes(), Format::Json).unwrap();
        let span = &req.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.kind, 3);
        assert_eq!(span.end_time_unix_nano, 1_544_712_661_000_000_000);
    }

    #[test]
    fn malformed_payloads_say_what_is_wrong() {
        let err =
            decode_message::<ExportTraceServiceRequest>(b"{not json", Format::Json).unwrap_err();
        assert!(
            err.to_string().starts_with("malformed json payload"),
            "{err}"
        );
        let err =
            decode_message::<ExportTraceServiceRequest>(&[0xff, 0xff, 0xff], Format::Protobuf)
                .unwrap_err();
        assert!(
            err.to_string().starts_with("malformed protobuf payload"),
            "{err}"
        );
    }
}
