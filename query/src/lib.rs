//! Querying spans: DataFusion SQL over stored and live spans, and the HTTP API.
//!
//! - [`table`]: the `spans` table — committed Parquet files plus the live buffer,
//!   from one consistent [`weft_collector::Snapshot`];
//! - [`engine`]: read-only SQL with time and memory limits, trace lookup by id;
//! - [`output`]: result batches as JSON rows, CSV, Arrow IPC or an aligned table;
//! - [`lineage`]: workflow graphs across traces (petgraph), their analyses and renderings;
//! - [`lineage_sql`]: `lineage()`, `ancestors()` and `descendants()` table functions;
//! - [`api`]: `/api/sql`, `/api/traces/{id}`, `/api/lineage/{id}`, `/api/graph`,
//!   `/healthz`, `/metrics`.
//!
//! DataFusion types stay inside this crate's engine; callers get record batches,
//! bytes or JSON.

pub mod api;
pub mod engine;
pub mod error;
pub mod lineage;
pub mod lineage_sql;
pub mod output;
pub mod table;

pub use engine::{LineageResult, QueryEngine, QueryLimits};
pub use error::QueryError;
pub use table::{SpanSource, StaticSource};
