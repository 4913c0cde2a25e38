//! Ingest and storage: OTLP in, durable Parquet out.
//!
//! The data path, each stage small and testable alone:
//! `receiver` (gRPC / HTTP edges) → `otlp::decode` (bytes → protobuf types) →
//! `otlp::normalise` (validate each span, fold resource and scope in, extract AI
//! columns) → [`Store::ingest`] (dedup → Arrow batch → `wal` group commit →
//! live buffer) → background flush (`parquet_files`) to day-partitioned Parquet,
//! settling each flushed trace (`settle`: its nested-set structure and link
//! index), committed to Delta Lake tables (`tables`).
//!
//! The public surface is small: the [`Store`] and its [`Snapshot`]s, the two
//! edges in [`receiver`], [`decode_spans`] for OTLP payloads that arrive some
//! other way, and [`traces_data_json`] for the way back out. The WAL, the
//! Parquet layout, settling and every protobuf type stay inside this crate:
//! callers see [`weft_schemas::Span`], Arrow batches and JSON.

mod config;
mod error;
mod file_stats;
mod follower;
mod maintain;
mod metrics;
mod otlp;
mod parquet_files;
pub mod receiver;
mod settle;
mod storage;
mod store;
mod table_kind;
mod tables;
mod wal;

pub use config::{AttributeLimits, EVENTS_DIR, IngestLimits, ListenLimits, StoreConfig};
pub use error::{Error, ErrorKind, Result};
pub use follower::Follower;
pub use maintain::{MaintainConfig, MaintainReport};
pub use metrics::Metrics;
pub use otlp::decode::Format as OtlpFormat;
pub use otlp::export::{
    tempo_trace_by_id_protobuf, traces_data_json, traces_data_json_with_events,
    traces_data_protobuf,
};
pub use otlp::normalise::Normalised;
pub use parquet_files::FileMeta;
pub use storage::RemoteStore;
pub use store::{
    FlushReport, IngestOutcome, Snapshot, SpanObserver, Store, maintain_data_dir, read_snapshot,
};

/// Decodes an OTLP trace export (protobuf or JSON, already decompressed) and
/// normalises its spans: the valid ones, and why the others were rejected.
pub fn decode_spans(body: &[u8], format: OtlpFormat) -> Result<Normalised> {
    let request = otlp::decode::decode_message::<otlp::ExportTraceServiceRequest>(body, format)?;
    Ok(otlp::normalise::normalise(request))
}

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
            ("store/mod.rs", include_str!("store/mod.rs")),
            ("follower.rs", include_str!("follower.rs")),
            ("storage.rs", include_str!("storage.rs")),
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
