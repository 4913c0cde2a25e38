//! The query crate's error, classified once by [`QueryError::kind`] into the
//! shared [`ErrorKind`]s: the user's mistakes, overload (retry later),
//! shutdown, and our bugs. DataFusion errors are classified by their variants
//! (never their text); our own errors that travel through DataFusion (from a
//! table scan or a table function) come back out as themselves.

use std::sync::Arc;

use datafusion::error::DataFusionError;
pub use weft_schemas::ErrorKind;

/// Everything that can go wrong answering a query.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The caller's token is missing, unknown, or does not allow queries.
    #[error("{0}")]
    Denied(#[from] weft_auth::Denied),
    /// The SQL does not parse, plan or run for a reason the user can fix.
    #[error("{0}")]
    Sql(String),
    /// The statement would change something; the API is read-only.
    #[error("read-only: {0}")]
    ReadOnly(String),
    /// A trace or span id that is not valid hex of the right length.
    #[error("{0}")]
    BadId(#[from] weft_schemas::IdError),
    /// No such trace.
    #[error("{0}")]
    NotFound(String),
    /// The query ran longer than allowed.
    #[error(
        "query exceeded the time limit of {0:?}; narrow it (a time range on start_time, a LIMIT) or raise query_timeout_secs"
    )]
    Timeout(std::time::Duration),
    /// A file of the tables as this server last read them is gone
    /// (maintenance compacted and vacuumed it since): retry once the server
    /// has re-read the tables.
    #[error(
        "the tables changed under this query (a file was removed by maintenance since this server last read them: {0}); retry in a moment"
    )]
    Changed(String),
    /// The queries running together needed more memory than allowed.
    #[error(
        "query exceeded its memory or spill limit: {0}; retry later, narrow it, or raise query_memory_bytes (memory) or max_spill_bytes (temporary disk)"
    )]
    ResourcesExhausted(String),
    /// A worker of a distributed query could not be reached or went away.
    #[error(
        "a worker of this query is unreachable or stopped ({0}); retry, or leave it out of --workers"
    )]
    WorkerLost(String),
    /// Reading the stored spans failed.
    #[error("storage: {0}")]
    Storage(#[from] weft_store::Error),
    /// Stored spans could not be encoded as OTLP.
    #[error("encoding OTLP: {0}")]
    Encode(#[from] weft_otlp::Error),
    /// Our bug or the machine's fault.
    #[error("internal error: {0}")]
    Internal(String),
}

/// What to do when a trace id matches nothing: how to list the ids there are.
pub const FIND_TRACES_HINT: &str = "list recent workflows with: SELECT trace_id, name, start_time \
    FROM spans WHERE parent_span_id IS NULL ORDER BY start_time DESC LIMIT 20";

impl QueryError {
    /// No spans of `trace`, with the way to find ids that exist.
    pub fn trace_not_found(trace: impl std::fmt::Display) -> Self {
        QueryError::NotFound(format!("trace {trace} not found; {FIND_TRACES_HINT}"))
    }

    /// What the caller should do about it.
    pub fn kind(&self) -> ErrorKind {
        match self {
            QueryError::Sql(_) | QueryError::ReadOnly(_) | QueryError::BadId(_) => {
                ErrorKind::Invalid
            }
            QueryError::NotFound(_) => ErrorKind::NotFound,
            QueryError::Denied(d) if d.is_unauthenticated() => ErrorKind::Unauthenticated,
            QueryError::Denied(_) => ErrorKind::Forbidden,
            QueryError::Timeout(_)
            | QueryError::ResourcesExhausted(_)
            | QueryError::Changed(_)
            | QueryError::WorkerLost(_) => ErrorKind::Overloaded,
            QueryError::Storage(e) => e.kind(),
            QueryError::Encode(e) => e.kind(),
            QueryError::Internal(_) => ErrorKind::Internal,
        }
    }

    /// As a DataFusion error, for code that runs inside a query (a table
    /// function); [`From<DataFusionError>`] turns it back into itself.
    pub(crate) fn into_datafusion(self) -> DataFusionError {
        DataFusionError::External(Box::new(self))
    }
}

/// Whether `e`, or an error under it, says the query ran out of memory or
/// of spill space (or the disk it spills to is full): retry later, not a bug.
fn exhausted(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(DataFusionError::ResourcesExhausted(_)) = e.downcast_ref::<DataFusionError>() {
            return true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            // DataFusion 55 reports the spill limit as a plain `Other` I/O
            // error that names its setting; `spill_limit_is_recognised`
            // pins that text.
            if io.kind() == std::io::ErrorKind::StorageFull
                || (io.kind() == std::io::ErrorKind::Other
                    && io.to_string().contains("max_temp_directory_size"))
            {
                return true;
            }
        }
        next = e.source();
    }
    false
}

/// Whether `e` says a file the query read is not there: the object store's
/// `NotFound`, or Parquet's words for it (Parquet keeps only the text).
fn vanished(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(object_store::Error::NotFound { .. }) = e.downcast_ref::<object_store::Error>()
        {
            return true;
        }
        let text = e.to_string();
        if text.contains("Object Store error") && text.contains(" not found") {
            return true;
        }
        next = e.source();
    }
    false
}

impl From<DataFusionError> for QueryError {
    fn from(e: DataFusionError) -> Self {
        let message = e.to_string();
        if exhausted(&e) {
            return QueryError::ResourcesExhausted(message);
        }
        if vanished(&e) {
            return QueryError::Changed(message);
        }
        if let Some(what) = weft_distributed::worker_lost(&e) {
            return QueryError::WorkerLost(what);
        }
        match innermost(e) {
            DataFusionError::ResourcesExhausted(m) => QueryError::ResourcesExhausted(m),
            DataFusionError::External(inner) => from_external(inner, message),
            DataFusionError::ArrowError(inner, _) => match *inner {
                arrow::error::ArrowError::ExternalError(inner) => from_external(inner, message),
                // Casts and arithmetic on the user's values.
                _ => QueryError::Sql(message),
            },
            DataFusionError::Shared(shared) => classify_shared(&shared, message),
            DataFusionError::Internal(_)
            | DataFusionError::IoError(_)
            | DataFusionError::ObjectStore(_)
            | DataFusionError::ParquetError(_)
            | DataFusionError::ExecutionJoin(_)
            | DataFusionError::Substrait(_)
            | DataFusionError::Ffi(_) => QueryError::Internal(message),
            DataFusionError::SQL(..)
            | DataFusionError::NotImplemented(_)
            | DataFusionError::Plan(_)
            | DataFusionError::Configuration(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::Execution(_)
            | DataFusionError::Context(..)
            | DataFusionError::Diagnostic(..)
            | DataFusionError::Collection(_) => QueryError::Sql(message),
        }
    }
}

/// The error under the wrappers DataFusion adds (context, diagnostics, one of
/// a collection, a shared error nobody else holds, a boxed DataFusion error).
fn innermost(mut e: DataFusionError) -> DataFusionError {
    loop {
        e = match e {
            DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => *inner,
            DataFusionError::Collection(mut errors) if !errors.is_empty() => errors.swap_remove(0),
            DataFusionError::Shared(shared) => match Arc::try_unwrap(shared) {
                Ok(inner) => inner,
                Err(shared) => return DataFusionError::Shared(shared),
            },
            DataFusionError::External(inner) => match inner.downcast::<DataFusionError>() {
                Ok(inner) => *inner,
                Err(inner) => return DataFusionError::External(inner),
            },
            other => return other,
        }
    }
}

/// A shared error (a join's build side failing for every partition) that
/// others still hold: classified through its root, by reference.
fn classify_shared(shared: &DataFusionError, message: String) -> QueryError {
    match shared.find_root() {
        DataFusionError::ResourcesExhausted(m) => QueryError::ResourcesExhausted(m.clone()),
        DataFusionError::External(inner) => {
            match (
                inner.downcast_ref::<QueryError>().map(QueryError::kind),
                inner
                    .downcast_ref::<weft_store::Error>()
                    .map(weft_store::Error::kind),
            ) {
                (Some(ErrorKind::Overloaded), _) | (_, Some(ErrorKind::Overloaded)) => {
                    QueryError::ResourcesExhausted(message)
                }
                (Some(ErrorKind::Invalid), _) => QueryError::Sql(message),
                _ => QueryError::Internal(message),
            }
        }
        DataFusionError::Plan(_) | DataFusionError::Execution(_) | DataFusionError::SQL(..) => {
            QueryError::Sql(message)
        }
        _ => QueryError::Internal(message),
    }
}

/// Our own errors come back as themselves; anything else external is a bug.
fn from_external(inner: Box<dyn std::error::Error + Send + Sync>, message: String) -> QueryError {
    let inner = match inner.downcast::<QueryError>() {
        Ok(q) => return *q,
        Err(inner) => inner,
    };
    match inner.downcast::<weft_store::Error>() {
        Ok(e) => QueryError::Storage(*e),
        Err(_) => QueryError::Internal(message),
    }
}

impl From<weft_signals::Error> for QueryError {
    fn from(e: weft_signals::Error) -> Self {
        match e {
            weft_signals::Error::Invalid(message) => QueryError::Sql(message),
            weft_signals::Error::Internal(_) => QueryError::Internal(e.to_string()),
        }
    }
}

impl From<arrow::error::ArrowError> for QueryError {
    fn from(e: arrow::error::ArrowError) -> Self {
        QueryError::Internal(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datafusion_errors_are_classified_by_variant() {
        let kind = |e: DataFusionError| QueryError::from(e).kind();
        assert_eq!(kind(DataFusionError::Plan("x".into())), ErrorKind::Invalid);
        assert_eq!(
            kind(DataFusionError::ResourcesExhausted("pool".into())),
            ErrorKind::Overloaded
        );
        assert_eq!(
            kind(DataFusionError::Internal("bug".into())),
            ErrorKind::Internal
        );
        // Wrapped in context, our own errors keep their kind.
        let storage = weft_store::Error::io("/data", std::io::Error::other("disk full"));
        let wrapped = DataFusionError::External(Box::new(storage)).context("scanning spans");
        assert_eq!(kind(wrapped), ErrorKind::Overloaded);
        let missing_column = QueryError::Internal("lineage query lacks column x".into());
        assert_eq!(
            kind(missing_column.into_datafusion().context("lineage()")),
            ErrorKind::Internal
        );
        let not_found = QueryError::NotFound("trace".into()).into_datafusion();
        assert_eq!(
            kind(DataFusionError::Shared(Arc::new(not_found))),
            ErrorKind::NotFound
        );
        let shutting_down = weft_store::Error::ShuttingDown;
        assert_eq!(
            kind(DataFusionError::External(Box::new(shutting_down))),
            ErrorKind::ShuttingDown
        );
    }
}

#[cfg(test)]
mod spill_tests {
    use super::*;

    /// DataFusion's spill limit arrives as text inside I/O and Arrow errors;
    /// this pins the text `exhausted` looks for, so an upgrade that changes
    /// it fails here rather than turning 503s into 500s.
    #[tokio::test]
    async fn spill_limit_is_recognised() {
        use datafusion::execution::runtime_env::RuntimeEnvBuilder;
        use datafusion::prelude::{SessionConfig, SessionContext};
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(16 * 1024 * 1024, 1.0)
            .with_max_temp_directory_size(1024 * 1024)
            .build_arc()
            .unwrap();
        let ctx = SessionContext::new_with_config_rt(
            SessionConfig::new().with_target_partitions(2),
            runtime,
        );
        let sql = "SELECT max(r) FROM (SELECT row_number() OVER (ORDER BY value DESC) AS r \
                   FROM (SELECT value, repeat('x', 50) AS pad FROM generate_series(1, 2000000)))";
        let err = ctx.sql(sql).await.unwrap().collect().await.unwrap_err();
        assert!(
            err.to_string().contains("spilling"),
            "not the spill limit: {err}"
        );
        let classified = QueryError::from(err);
        assert!(
            matches!(classified, QueryError::ResourcesExhausted(_)),
            "{classified:?}"
        );
    }
}
