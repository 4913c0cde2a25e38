//! The OTLP edges: OTLP/gRPC and OTLP/HTTP in, durable spans out.
//!
//! A request's path, each stage in the crate that owns it:
//! `receiver` (this crate: the gRPC / HTTP edges, authentication, the
//! in-flight charge taken before decoding) → `weft_otlp::decode` (bytes →
//! protobuf types) → `weft_otlp::normalise` (validate each span, fold resource
//! and scope in, extract AI columns) → `weft_store::Store::ingest` (WAL group
//! commit, then the answer) → the store's flush to Delta tables.
//!
//! The edges are the only place besides `weft-otlp` where protobuf types
//! appear; nothing public here names one.

mod config;
mod error;
pub mod receiver;

pub use config::IngestLimits;
pub use error::{Error, ErrorKind, Result};

#[cfg(test)]
mod tests {
    /// The files that declare this crate's public items: no `pub` line in them
    /// may name a protobuf type (the rest of the crate is private modules).
    #[test]
    fn public_items_name_no_protobuf_type() {
        let files = [
            ("lib.rs", include_str!("lib.rs")),
            ("receiver/mod.rs", include_str!("receiver/mod.rs")),
            ("receiver/grpc.rs", include_str!("receiver/grpc.rs")),
            ("receiver/http.rs", include_str!("receiver/http.rs")),
            ("config.rs", include_str!("config.rs")),
            ("error.rs", include_str!("error.rs")),
        ];
        let protobuf = [
            "opentelemetry_proto",
            "ServiceRequest",
            "ServiceResponse",
            "proto::",
        ];
        for (file, text) in files {
            // Each public item's declaration: from `pub ` to the first `{`, `;`
            // or `}` (the end of a struct whose last field is public), so
            // multi-line signatures are read whole.
            for (at, _) in text.match_indices("pub ") {
                let before = text[..at].chars().last().unwrap_or('\n');
                if !before.is_whitespace() || text[at..].starts_with("pub mod ") {
                    continue;
                }
                let end = text[at..]
                    .find(['{', ';', '}'])
                    .map_or(text.len(), |e| at + e);
                let declaration = &text[at..end];
                for name in protobuf {
                    assert!(
                        !declaration.contains(name),
                        "{file}: a public item names {name}: {declaration}"
                    );
                }
            }
        }
    }
}
