//! Functions whose output size the query text chooses — `repeat`, `lpad`,
//! `rpad`, `array_repeat`, `array_resize`, `range`, `generate_series` — are
//! registered wrapped: before the function runs, the size of what it would
//! build for the whole batch is worked out from its arguments, and over
//! [`MAX_CALL_BYTES`] or [`MAX_CALL_ELEMENTS`] the query is refused (400).
//! DataFusion's memory pool does not see a function's output, so without this
//! `SELECT repeat('a', 100000000) FROM generate_series(1, 100000)` tries to
//! allocate 800 GB (and overflows Arrow's offsets, a panic).

use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Int64Type};
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};
use datafusion::prelude::SessionContext;

/// Bytes one call (one batch) of a string-building function may produce.
pub const MAX_CALL_BYTES: i128 = 256 * 1024 * 1024;
/// List elements one call of an array-building function may produce.
pub const MAX_CALL_ELEMENTS: i128 = 32 * 1024 * 1024;

/// How a function's output size follows from its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Rule {
    /// `repeat(text, n)`: length of text × n bytes.
    Repeat,
    /// `lpad` / `rpad(text, n, …)`: n characters, at most 4 bytes each.
    Pad,
    /// n elements, n the argument at this position.
    Count(usize),
    /// `range` / `generate_series(stop | start, stop [, step])` over integers.
    Series { inclusive: bool },
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Bounded {
    inner: Arc<ScalarUDF>,
    rule: Rule,
    /// The inner signature, volatile: a call on constants is then not folded
    /// into one constant at planning, which DataFusion would copy into every
    /// row of every batch unchecked; it runs per batch, checked.
    signature: Signature,
}

/// Replaces each size-choosing function registered on `ctx` by its bounded
/// wrapper.
pub(crate) fn register(ctx: &SessionContext) {
    let rules = [
        ("repeat", Rule::Repeat),
        ("lpad", Rule::Pad),
        ("rpad", Rule::Pad),
        ("array_repeat", Rule::Count(1)),
        ("array_resize", Rule::Count(1)),
        ("range", Rule::Series { inclusive: false }),
        ("generate_series", Rule::Series { inclusive: true }),
    ];
    for (name, rule) in rules {
        if let Ok(inner) = ctx.udf(name) {
            let mut signature = inner.signature().clone();
            signature.volatility = Volatility::Volatile;
            ctx.register_udf(ScalarUDF::new_from_impl(Bounded {
                inner,
                rule,
                signature,
            }));
        }
    }
}

/// An integer argument, per row.
enum Ints {
    Scalar(Option<i64>),
    Array(arrow::array::Int64Array),
}

impl Ints {
    /// `None` when the argument is not an integer (a date range, say).
    fn of(v: &ColumnarValue) -> Option<Self> {
        match v {
            ColumnarValue::Scalar(s) if s.data_type().is_integer() => {
                match s.cast_to(&DataType::Int64) {
                    Ok(ScalarValue::Int64(x)) => Some(Ints::Scalar(x)),
                    _ => None,
                }
            }
            ColumnarValue::Scalar(s) if s.is_null() => Some(Ints::Scalar(None)),
            ColumnarValue::Array(a) if a.data_type().is_integer() => {
                let a = arrow::compute::cast(a, &DataType::Int64).ok()?;
                Some(Ints::Array(a.as_primitive::<Int64Type>().clone()))
            }
            _ => None,
        }
    }

    fn at(&self, row: usize) -> Option<i64> {
        match self {
            Ints::Scalar(x) => *x,
            Ints::Array(a) => (row < a.len() && a.is_valid(row)).then(|| a.value(row)),
        }
    }
}

/// The byte length of a text argument, per row.
fn text_len(v: &ColumnarValue, row: usize) -> i128 {
    match v {
        ColumnarValue::Scalar(s) => s.try_as_str().flatten().map_or(0, str::len) as i128,
        ColumnarValue::Array(a) => {
            if row >= a.len() || a.is_null(row) {
                return 0;
            }
            match a.data_type() {
                DataType::Utf8 => a.as_string::<i32>().value(row).len() as i128,
                DataType::LargeUtf8 => a.as_string::<i64>().value(row).len() as i128,
                DataType::Utf8View => a.as_string_view().value(row).len() as i128,
                _ => 0,
            }
        }
    }
}

impl Bounded {
    /// Refuses a call whose output would pass the bound.
    fn check(&self, args: &ScalarFunctionArgs) -> Result<()> {
        let rows = args.number_rows.max(1);
        // Scalars apply to every row: one row's size times the rows.
        let all_scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let (rows, times) = if all_scalar {
            (1, rows as i128)
        } else {
            (rows, 1)
        };
        let (total, limit, unit) = match self.rule {
            Rule::Repeat => {
                let Some(n) = args.args.get(1).and_then(Ints::of) else {
                    return Ok(());
                };
                let total: i128 = (0..rows)
                    .map(|r| text_len(&args.args[0], r) * i128::from(n.at(r).unwrap_or(0).max(0)))
                    .sum();
                (total, MAX_CALL_BYTES, "bytes")
            }
            Rule::Pad => {
                let Some(n) = args.args.get(1).and_then(Ints::of) else {
                    return Ok(());
                };
                let total: i128 = (0..rows)
                    .map(|r| 4 * i128::from(n.at(r).unwrap_or(0).max(0)))
                    .sum();
                (total, MAX_CALL_BYTES, "bytes")
            }
            Rule::Count(i) => {
                let Some(n) = args.args.get(i).and_then(Ints::of) else {
                    return Ok(());
                };
                let total: i128 = (0..rows)
                    .map(|r| i128::from(n.at(r).unwrap_or(0).max(0)))
                    .sum();
                (total, MAX_CALL_ELEMENTS, "elements")
            }
            Rule::Series { inclusive } => {
                let ints: Option<Vec<Ints>> = args.args.iter().map(Ints::of).collect();
                let Some(ints) = ints else {
                    return Ok(());
                };
                let total: i128 = (0..rows)
                    .map(|r| {
                        let v = |i: usize| ints.get(i).and_then(|x| x.at(r)).map(i128::from);
                        let (start, stop, step) = match ints.len() {
                            1 => (Some(0), v(0), Some(1)),
                            2 => (v(0), v(1), Some(1)),
                            _ => (v(0), v(1), v(2)),
                        };
                        match (start, stop, step) {
                            (Some(a), Some(b), Some(s)) if s != 0 => {
                                ((b - a) / s).max(0) + i128::from(inclusive)
                            }
                            _ => 0,
                        }
                    })
                    .sum();
                (total, MAX_CALL_ELEMENTS, "elements")
            }
        };
        let total = total.saturating_mul(times);
        if total > limit {
            return plan_err!(
                "{}() would build {total} {unit} for {} rows, over the limit of {limit} per call; \
                 ask for less (smaller counts, or fewer rows at a time)",
                self.inner.name(),
                args.number_rows
            );
        }
        Ok(())
    }
}

impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<arrow::datatypes::FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn short_circuits(&self) -> bool {
        self.inner.short_circuits()
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        self.check(&args)?;
        self.inner.invoke_with_args(args)
    }
}
