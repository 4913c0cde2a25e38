//! An answer being read: the running query's batches within the result caps
//! (rows, bytes) and its deadline, and a collected [`QueryResult`].

use std::time::Duration;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::memory_pool::MemoryReservation;

use super::QueryLimits;
use crate::error::QueryError;

/// The rows a query produced and their schema (also when there are no rows).
#[derive(Debug, Clone)]
pub struct QueryResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    /// Why the answer stops short of every row, when it does.
    pub truncated: Option<String>,
}

impl QueryResult {
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// The caps on one answer: at most `max_result_rows` rows and about
/// `max_result_bytes` (in memory, as Arrow); says which cut the answer.
struct Caps {
    max_rows: usize,
    max_bytes: usize,
    rows: usize,
    bytes: usize,
    truncated: Option<String>,
}

impl Caps {
    fn new(limits: QueryLimits) -> Self {
        Self {
            max_rows: limits.max_result_rows,
            max_bytes: limits.max_result_bytes,
            rows: 0,
            bytes: 0,
            truncated: None,
        }
    }

    /// What of `batch` the answer keeps, and whether the answer is complete
    /// (a cap was reached) after it.
    fn admit(&mut self, batch: RecordBatch) -> (Option<RecordBatch>, bool) {
        let (max_rows, max_bytes) = (self.max_rows, self.max_bytes);
        let room_rows = max_rows - self.rows;
        if batch.num_rows() > room_rows {
            self.rows = max_rows;
            self.truncated = Some(format!(
                "the first {max_rows} rows (max_result_rows); narrow the query or add a LIMIT"
            ));
            return ((room_rows > 0).then(|| batch.slice(0, room_rows)), true);
        }
        let size = batch.get_array_memory_size();
        if self.bytes.saturating_add(size) > max_bytes && self.rows > 0 {
            self.truncated = Some(format!(
                "the first {} rows, about {} bytes (max_result_bytes is {max_bytes}); \
                 narrow the query or select fewer columns",
                self.rows, self.bytes
            ));
            return (None, true);
        }
        self.rows += batch.num_rows();
        self.bytes = self.bytes.saturating_add(size);
        (Some(batch), false)
    }
}

/// An answer being read: the running query's batches within the caps.
pub struct Answer {
    pub schema: SchemaRef,
    stream: SendableRecordBatchStream,
    caps: Caps,
    deadline: tokio::time::Instant,
    timeout: Duration,
    done: bool,
    /// What the reader of this answer holds, charged to the query memory pool.
    pub reservation: MemoryReservation,
}

impl Answer {
    pub(super) fn new(
        schema: SchemaRef,
        stream: SendableRecordBatchStream,
        limits: QueryLimits,
        deadline: tokio::time::Instant,
        reservation: MemoryReservation,
    ) -> Self {
        Self {
            schema,
            stream,
            caps: Caps::new(limits),
            deadline,
            timeout: limits.timeout,
            done: false,
            reservation,
        }
    }

    /// The next batch of the answer; `None` once it is whole or cut short.
    pub async fn next_batch(&mut self) -> Result<Option<RecordBatch>, QueryError> {
        use futures::StreamExt;
        while !self.done {
            let next = tokio::time::timeout_at(self.deadline, self.stream.next())
                .await
                .map_err(|_| QueryError::Timeout(self.timeout))?;
            let Some(batch) = next else {
                self.done = true;
                break;
            };
            let (kept, done) = self.caps.admit(batch?);
            self.done = done;
            if let Some(kept) = kept.filter(|b| b.num_rows() > 0) {
                return Ok(Some(kept));
            }
        }
        Ok(None)
    }

    /// Why the answer stops short of every row, once it does.
    pub fn truncated(&self) -> Option<&str> {
        self.caps.truncated.as_deref()
    }
}
