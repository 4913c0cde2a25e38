//! Querying spans: DataFusion SQL over stored and live spans, and the HTTP API.
//!
//! - [`table`]: the `spans` table — committed Parquet files plus the live buffer,
//!   from one consistent [`weft_store::Snapshot`]; `prune` skips files by
//!   time from their Delta statistics;
//! - [`engine`]: the session per source and tenant, read-only SQL within time,
//!   memory and result limits (its guards, answer caps, service graph and
//!   live-signals glue in its own modules), trace lookup by id;
//! - [`output`]: result batches as JSON rows, CSV, Arrow IPC or an aligned table;
//! - [`lineage`]: fetching a workflow's spans (the `span_links` walk) for `weft-lineage`;
//! - [`lineage_sql`]: `lineage()`, `ancestors()` and `descendants()` table functions;
//! - `lineage_cache`: reconstructions kept so a big workflow is built once per reading;
//! - [`workflows`]: recent workflows and a conversation's, one summary line each;
//! - `conversation_sql`: the `conversation('<id>')` table function;
//! - `tempo`, `traceql`: Grafana Tempo's HTTP API under `/tempo`, with the
//!   TraceQL subset Grafana's data source sends, as expressions;
//! - [`pg_catalog`]: `pg_catalog` and `current_setting()` for PostgreSQL clients;
//! - `signals`: the live signals over HTTP (`/api/signals`, its stream,
//!   `/api/route`) and as the `signals('1m')` table function;
//! - [`api`]: `/api/sql`, `/api/traces/{id}`, `/api/lineage/{id}`, `/api/workflows`,
//!   `/api/graph`, `/api/signals`, `/healthz`, `/metrics`.
//!
//! DataFusion types stay inside this crate: the engine, the tables and the
//! table functions are private modules, and callers get record batches, bytes,
//! JSON or `weft_lineage` values — except the SQL protocol edges
//! (`weft-postgres`, `weft-flight`), which parse statements their own way and bind
//! parameters to plans: [`QueryEngine::plan_statement`] and
//! [`QueryEngine::run`] take and give DataFusion plans, still read-only and
//! within the limits.

pub mod api;
mod bounded;
mod conversation_sql;
mod engine;
mod error;
mod http;
mod ids;
pub mod lineage;
mod lineage_cache;
mod lineage_sql;
pub mod output;
pub mod pg_catalog;
mod prune;
mod signals;
mod streamed;
mod table;
mod tempo;
mod time;
mod traceql;
mod worker;
pub mod workflows;

pub use engine::{
    Answer, MAX_SQL_NESTING, MAX_SQL_OPERATORS, QueryEngine, QueryLimits, QueryResult,
    QuerySettings, TableEntry, check_depth,
};
pub use error::{ErrorKind, QueryError};
pub use lineage::LineageResult;
pub use lineage_cache::Freshness;
pub use table::{SpanSource, StaticSource, TenantSource};
pub use worker::register_worker_functions;
