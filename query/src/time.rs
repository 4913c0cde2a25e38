//! Times as the tables hold them: microsecond UTC timestamps.

use datafusion::prelude::lit;

/// A Unix-nanosecond literal as a UTC timestamp, comparable with the time columns.
/// A literal of the tables' timestamp type (microseconds, UTC) from nanoseconds.
pub(crate) fn timestamp(ns: i64) -> datafusion::prelude::Expr {
    lit(datafusion::scalar::ScalarValue::TimestampMicrosecond(
        Some(ns.div_euclid(1_000)),
        Some("UTC".into()),
    ))
}
