//! `/api/sql` answers sent while the query runs. The first [`HEAD_BYTES`]
//! are gathered before anything is sent: an answer that ends within them (most
//! do) goes out whole, with `Content-Length` and, when a cap cut it, the
//! `weft-result-truncated` header. A longer answer streams batch by batch
//! (chunked), announcing `Trailer: weft-result-truncated`; if a cap cuts it,
//! the trailer says why (HTTP/2, or HTTP/1.1 clients that send `TE:
//! trailers`), and a JSON-lines answer also ends with the line
//! `{"weft_result_truncated": "..."}`.
//!
//! What the API holds — the gathered head, then the one chunk in flight — is
//! charged to the query memory pool, so the memory limit covers the answer as
//! well as the query; over it, the request gets a 503 before anything is sent,
//! or the stream is cut with an error (never silently short). A query that
//! fails or passes its deadline mid-stream ends the response with an error too.

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use http_body::Frame;
use http_body_util::StreamBody;

use crate::engine::Answer;
use crate::error::QueryError;
use crate::output::{Encoder, OutputFormat};

/// Bytes gathered before an answer starts streaming.
pub(crate) const HEAD_BYTES: usize = 1 << 20;

/// The header (or trailer) that says an answer was cut short, and why.
pub const TRUNCATED: &str = "weft-result-truncated";

/// Reads `answer` and encodes it in `format`, batch by batch.
struct Reader {
    answer: Answer,
    encoder: Option<Encoder>,
    format: OutputFormat,
}

impl Reader {
    /// The next bytes of the answer; `None` after the closing bytes.
    async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, QueryError> {
        let Some(encoder) = self.encoder.as_mut() else {
            return Ok(None);
        };
        if let Some(batch) = self.answer.next_batch().await? {
            return Ok(Some(encoder.batch(&batch)?));
        }
        let Some(encoder) = self.encoder.take() else {
            return Ok(None);
        };
        let mut last = encoder.finish()?;
        if self.format == OutputFormat::NdJson
            && let Some(why) = self.answer.truncated()
        {
            last.extend(
                serde_json::json!({ "weft_result_truncated": why })
                    .to_string()
                    .into_bytes(),
            );
            last.push(b'\n');
        }
        Ok(Some(last))
    }

    /// Charges `bytes` held by the API to the query memory pool.
    fn hold(&mut self, bytes: usize) -> Result<(), QueryError> {
        self.answer
            .reservation
            .try_resize(bytes)
            .map_err(QueryError::from)
    }
}

/// The response for `answer`: whole when it fits in [`HEAD_BYTES`], else
/// streamed.
pub(crate) async fn respond(answer: Answer, format: OutputFormat) -> Result<Response, QueryError> {
    let encoder = Encoder::new(format, &answer.schema)?;
    let mut reader = Reader {
        answer,
        encoder: Some(encoder),
        format,
    };
    let mut head = Vec::new();
    while head.len() < HEAD_BYTES {
        match reader.next_chunk().await? {
            Some(chunk) => {
                reader.hold(head.len() + chunk.len())?;
                head.extend(chunk);
            }
            None => {
                let truncated = reader.answer.truncated().map(str::to_owned);
                let mut response =
                    ([(header::CONTENT_TYPE, format.content_type())], head).into_response();
                if let Some(value) = truncated.and_then(|why| HeaderValue::from_str(&why).ok()) {
                    // The rows are all there is room for; the header says so.
                    response.headers_mut().insert(TRUNCATED, value);
                }
                return Ok(response);
            }
        }
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, QueryError>>(1);
    tokio::spawn(async move {
        if tx.send(Ok(Frame::data(Bytes::from(head)))).await.is_err() {
            return;
        }
        loop {
            let next = match reader.next_chunk().await {
                Ok(Some(chunk)) => reader.hold(chunk.len()).map(|()| Some(chunk)),
                other => other,
            };
            let frame = match next {
                Ok(Some(chunk)) => Frame::data(Bytes::from(chunk)),
                Ok(None) => {
                    if let Some(value) = reader
                        .answer
                        .truncated()
                        .and_then(|why| HeaderValue::from_str(why).ok())
                    {
                        let mut trailers = HeaderMap::new();
                        trailers.insert(TRUNCATED, value);
                        let _ = tx.send(Ok(Frame::trailers(trailers))).await;
                    }
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "a streamed answer failed; its response is cut with an error");
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            if tx.send(Ok(frame)).await.is_err() {
                // The client went away: stop the query.
                return;
            }
        }
    });
    let frames = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let mut response = Response::new(Body::new(StreamBody::new(frames)));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    headers.insert(header::TRAILER, HeaderValue::from_static(TRUNCATED));
    Ok(response)
}
