//! The query crate's error: the user's mistakes apart from ours.

use datafusion::error::DataFusionError;

/// Everything that can go wrong answering a query.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
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
        "query exceeded the time limit of {0:?}; narrow it (a time range on start_time, a LIMIT) or raise --query-timeout"
    )]
    Timeout(std::time::Duration),
    /// The query needed more memory than allowed.
    #[error("query exceeded its memory limit: {0}")]
    ResourcesExhausted(String),
    /// Reading the stored spans failed.
    #[error("storage: {0}")]
    Storage(#[from] weft_collector::Error),
    /// Our bug or the machine's fault.
    #[error("internal error: {0}")]
    Internal(String),
}

impl QueryError {
    /// True when the user can fix the request.
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            QueryError::Sql(_)
                | QueryError::ReadOnly(_)
                | QueryError::BadId(_)
                | QueryError::Timeout(_)
                | QueryError::ResourcesExhausted(_)
        )
    }
}

impl From<DataFusionError> for QueryError {
    fn from(e: DataFusionError) -> Self {
        match e.find_root() {
            DataFusionError::ResourcesExhausted(m) => QueryError::ResourcesExhausted(m.clone()),
            DataFusionError::Plan(m) if m.contains("not supported") => {
                QueryError::ReadOnly(m.clone())
            }
            DataFusionError::Internal(_)
            | DataFusionError::IoError(_)
            | DataFusionError::ObjectStore(_)
            | DataFusionError::External(_) => QueryError::Internal(e.to_string()),
            _ => QueryError::Sql(e.to_string()),
        }
    }
}

impl From<arrow::error::ArrowError> for QueryError {
    fn from(e: arrow::error::ArrowError) -> Self {
        QueryError::Internal(e.to_string())
    }
}
