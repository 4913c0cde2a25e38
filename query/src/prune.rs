//! Skipping files by time without opening them: the `start_time` range a
//! scan's filters allow, checked against each file's range from its Delta
//! `add` statistics (the log's per-file statistics). Only files that cannot
//! hold a matching row are skipped; DataFusion still applies every filter to
//! the rows it reads.

use datafusion::logical_expr::{BinaryExpr, Expr, Operator};
use datafusion::scalar::ScalarValue;
use weft_schemas::schema::col;
use weft_store::FileMeta;

/// Inclusive bounds on `start_time`, in microseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct TimeRange {
    pub lo: Option<i64>,
    pub hi: Option<i64>,
}

impl TimeRange {
    /// False only when none of the file's rows can start within the range.
    pub(crate) fn may_hold(&self, file: &FileMeta) -> bool {
        let Some((min, max)) = file.start_time_range() else {
            return true;
        };
        !(self.lo.is_some_and(|lo| max < lo) || self.hi.is_some_and(|hi| min > hi))
    }
}

/// The `start_time` range that a conjunction of `filters` allows.
pub(crate) fn start_time_range(filters: &[Expr]) -> TimeRange {
    let mut range = TimeRange::default();
    for filter in filters {
        narrow(filter, &mut range);
    }
    range
}

fn narrow(expr: &Expr, range: &mut TimeRange) {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = expr else {
        return;
    };
    if *op == Operator::And {
        narrow(left, range);
        narrow(right, range);
        return;
    }
    let (op, value) = if is_start_time(left) {
        (*op, right.as_ref())
    } else if is_start_time(right) {
        match op.swap() {
            Some(op) => (op, left.as_ref()),
            None => return,
        }
    } else {
        return;
    };
    let Some((floor, ceil)) = micros(value) else {
        return;
    };
    let raise = |lo: &mut Option<i64>| *lo = Some(lo.map_or(floor, |l| l.max(floor)));
    let lower = |hi: &mut Option<i64>| *hi = Some(hi.map_or(ceil, |h| h.min(ceil)));
    match op {
        Operator::Gt | Operator::GtEq => raise(&mut range.lo),
        Operator::Lt | Operator::LtEq => lower(&mut range.hi),
        Operator::Eq => {
            raise(&mut range.lo);
            lower(&mut range.hi);
        }
        _ => {}
    }
}

fn is_start_time(expr: &Expr) -> bool {
    match expr {
        Expr::Column(c) => c.name == col::START_TIME,
        Expr::Cast(cast) => is_start_time(&cast.expr),
        Expr::TryCast(cast) => is_start_time(&cast.expr),
        _ => false,
    }
}

/// A timestamp literal in microseconds, rounded down and up.
fn micros(expr: &Expr) -> Option<(i64, i64)> {
    let Expr::Literal(value, _) = expr else {
        return None;
    };
    let (v, per_micro_num, per_micro_den): (i64, i64, i64) = match value {
        ScalarValue::TimestampNanosecond(Some(v), _) => (*v, 1, 1_000),
        ScalarValue::TimestampMicrosecond(Some(v), _) => (*v, 1, 1),
        ScalarValue::TimestampMillisecond(Some(v), _) => (*v, 1_000, 1),
        ScalarValue::TimestampSecond(Some(v), _) => (*v, 1_000_000, 1),
        _ => return None,
    };
    let scaled = v.checked_mul(per_micro_num)?;
    let floor = scaled.div_euclid(per_micro_den);
    let ceil = floor + i64::from(scaled.rem_euclid(per_micro_den) != 0);
    Some((floor, ceil))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col as column, lit};

    fn ts(micros: i64) -> Expr {
        lit(ScalarValue::TimestampMicrosecond(
            Some(micros),
            Some("UTC".into()),
        ))
    }

    #[test]
    fn bounds_come_from_comparisons_on_start_time_only() {
        let filters = [
            column("start_time").gt_eq(ts(100)),
            ts(500)
                .gt(column("start_time"))
                .and(column("start_time").gt(ts(50))),
            column("end_time").lt(ts(10)),
            column("name").eq(lit("x")),
        ];
        assert_eq!(
            start_time_range(&filters),
            TimeRange {
                lo: Some(100),
                hi: Some(500)
            }
        );
        assert_eq!(
            start_time_range(&[column("start_time").not_eq(ts(7))]),
            TimeRange::default()
        );
        let ns = lit(ScalarValue::TimestampNanosecond(Some(1_500), None));
        assert_eq!(
            start_time_range(&[column("start_time").lt(ns)]),
            TimeRange {
                lo: None,
                hi: Some(2)
            },
            "nanoseconds round outwards"
        );
    }
}
