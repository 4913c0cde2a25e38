//! The OTLP/gRPC export services, served with a codec that charges each
//! message against the store's in-flight budget *before* decoding it.
//!
//! The generated `TraceServiceServer`/`LogsServiceServer` decode with
//! `ProstCodec` before any of our code runs, so a message of many empty
//! elements could take a gigabyte before it was charged. Here the decoder
//! reads the (decompressed) message's cost with `otlp::cost`, takes it from
//! the budget (or refuses: UNAVAILABLE when the budget is busy, the client's
//! to fix when it could never fit), decodes, and hands the message on with its
//! charge. Otherwise the services answer as the generated ones do: the same
//! paths, gzip, the message size limit, UNIMPLEMENTED for other methods.

use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use bytes::Buf;
use prost::Message;
use tokio::sync::OwnedSemaphorePermit;
use tonic::codec::{
    BufferSettings, Codec, CompressionEncoding, DecodeBuf, Decoder, EnabledCompressionEncodings,
};
use tonic::codegen::{Body, BoxFuture, Service, StdError, http};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};
use weft_auth::Caller;

use super::status::to_status;
use crate::error::Result;
use weft_otlp::cost::{self, Kind};
use weft_store::Store;

/// A decoded message and what it was charged, released when dropped.
pub(crate) struct Charged<M> {
    pub(crate) message: M,
    pub(crate) charge: OwnedSemaphorePermit,
}

/// One OTLP export method: its names, its messages, and the store whose
/// budget pays for decoding them.
pub(crate) trait Export: Clone + Send + Sync + 'static {
    /// The gRPC service, as routed (`package.Service`).
    const SERVICE: &'static str;
    /// The method's path (`/package.Service/Export`).
    const PATH: &'static str;
    /// What `otlp::cost` reads the request as.
    const KIND: Kind;
    type Request: Message + Default + Send + 'static;
    type Response: Message + Send + 'static;

    fn store(&self) -> &Store;

    fn export(
        &self,
        request: Charged<Self::Request>,
        caller: Caller,
    ) -> impl Future<Output = Result<Self::Response>> + Send;
}

/// Serves one [`Export`] method.
#[derive(Clone)]
pub(crate) struct ExportServer<E> {
    export: E,
    max_message_bytes: usize,
}

impl<E> ExportServer<E> {
    pub(crate) fn new(export: E, max_message_bytes: usize) -> Self {
        Self {
            export,
            max_message_bytes,
        }
    }
}

impl<E: Export> NamedService for ExportServer<E> {
    const NAME: &'static str = E::SERVICE;
}

impl<E: Export, B> Service<http::Request<B>> for ExportServer<E>
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<std::result::Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != E::PATH {
            return Box::pin(async { Ok(Status::unimplemented("").into_http()) });
        }
        let export = self.export.clone();
        let max = self.max_message_bytes;
        Box::pin(async move {
            let codec = ChargedCodec::<E::Request, E::Response> {
                store: export.store().clone(),
                kind: E::KIND,
                _messages: PhantomData,
            };
            let mut gzip = EnabledCompressionEncodings::default();
            gzip.enable(CompressionEncoding::Gzip);
            let mut grpc = Grpc::new(codec)
                .apply_compression_config(gzip, gzip)
                .apply_max_message_size_config(Some(max), None);
            Ok(grpc.unary(Method(export), request).await)
        })
    }
}

/// The method itself: the caller (set by the auth interceptor) and the
/// charged message go to [`Export::export`].
struct Method<E>(E);

impl<E: Export> UnaryService<Charged<E::Request>> for Method<E> {
    type Response = E::Response;
    type Future = BoxFuture<Response<E::Response>, Status>;

    fn call(&mut self, request: Request<Charged<E::Request>>) -> Self::Future {
        let export = self.0.clone();
        Box::pin(async move {
            // Set by the interceptor in `grpc::serve`; missing would be our
            // bug, and then nothing is let in.
            let caller = request
                .extensions()
                .get::<Caller>()
                .cloned()
                .ok_or_else(|| Status::internal("request reached the handler unauthenticated"))?;
            match export.export(request.into_inner(), caller).await {
                Ok(response) => Ok(Response::new(response)),
                Err(e) => {
                    export
                        .store()
                        .metrics()
                        .requests_failed
                        .fetch_add(1, Ordering::Relaxed);
                    Err(to_status(&e))
                }
            }
        })
    }
}

struct ChargedCodec<Req, Resp> {
    store: Store,
    kind: Kind,
    _messages: PhantomData<fn(Req) -> Resp>,
}

impl<Req, Resp> Codec for ChargedCodec<Req, Resp>
where
    Req: Message + Default + Send + 'static,
    Resp: Message + Send + 'static,
{
    type Encode = Resp;
    type Decode = Charged<Req>;
    type Encoder = tonic_prost::ProstEncoder<Resp>;
    type Decoder = ChargedDecoder<Req>;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ChargedDecoder {
            store: self.store.clone(),
            kind: self.kind,
            _message: PhantomData,
        }
    }
}

struct ChargedDecoder<M> {
    store: Store,
    kind: Kind,
    _message: PhantomData<fn() -> M>,
}

impl<M: Message + Default> Decoder for ChargedDecoder<M> {
    type Item = Charged<M>;
    type Error = Status;

    fn decode(
        &mut self,
        src: &mut DecodeBuf<'_>,
    ) -> std::result::Result<Option<Self::Item>, Status> {
        // The whole message, decompressed; taking it out of the buffer does
        // not copy it.
        let bytes = src.copy_to_bytes(src.remaining());
        let charge = self
            .store
            .charge(cost::protobuf(self.kind, &bytes))
            .map_err(|e| to_status(&e.into()))?;
        let message = M::decode(bytes).map_err(|e| {
            Status::invalid_argument(format!(
                "the message is not OTLP protobuf ({e}); send an ExportTraceServiceRequest or \
                 ExportLogsServiceRequest"
            ))
        })?;
        Ok(Some(Charged { message, charge }))
    }
}
