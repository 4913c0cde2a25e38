//! Ids in SQL: stored as bytes, shown as hex. The stored tables present every
//! id column as lowercase hex text (what users write and read), and this module
//! does the two translations at that edge:
//! - [`show_ids_exec`]: a projection over a scan that renders id columns (and
//!   the ids inside `links`) as hex, through the [`ShowIds`] function;
//! - [`id_filter`]: a filter on an id of the shown table as the stored table
//!   applies it — `trace_id = '<hex>'`, `!=`, `IN (...)` become comparisons with
//!   bytes, so Parquet statistics and bloom filters still prune.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::Session;
use datafusion::common::{Column, Result, ScalarValue, internal_err};
use datafusion::logical_expr::expr::InList;
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, Operator, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};
use datafusion::physical_expr::{PhysicalExpr, ScalarFunctionExpr};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::expressions::Column as ColumnExpr;
use datafusion::physical_plan::projection::ProjectionExec;
use weft_schemas::shown::{holds_ids, show_ids, shown_type};
use weft_schemas::{SpanId, TraceId};

/// Renders an id column (or a list of structs holding ids) as hex text.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct ShowIds {
    signature: Signature,
}

/// The function the scans of the shown tables call to show ids as hex (a
/// worker of a distributed query must know it by name).
pub(crate) fn show_ids_udf() -> ScalarUDF {
    ScalarUDF::new_from_impl(ShowIds::new())
}

impl ShowIds {
    fn new() -> Self {
        Self {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for ShowIds {
    fn name(&self) -> &str {
        "weft_show_ids"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types {
            [t] => Ok(shown_type(t)),
            _ => internal_err!("weft_show_ids takes one argument"),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        match args.args.as_slice() {
            [ColumnarValue::Array(ids)] => Ok(ColumnarValue::Array(show_ids(ids)?)),
            [ColumnarValue::Scalar(id)] => {
                let shown = show_ids(&id.to_array()?)?;
                Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                    &shown, 0,
                )?))
            }
            _ => internal_err!("weft_show_ids takes one argument"),
        }
    }
}

/// The first `keep` columns of `input`, with id columns rendered as hex.
pub(crate) fn show_ids_exec(
    input: Arc<dyn ExecutionPlan>,
    keep: usize,
    state: &dyn Session,
) -> Result<Arc<dyn ExecutionPlan>> {
    let schema = input.schema();
    let kept = &schema.fields()[..keep.min(schema.fields().len())];
    if kept.len() == schema.fields().len() && !kept.iter().any(|f| holds_ids(f.data_type())) {
        return Ok(input);
    }
    let udf = Arc::new(show_ids_udf());
    let config = Arc::new(state.config_options().clone());
    let exprs: Vec<(Arc<dyn PhysicalExpr>, String)> = kept
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let column: Arc<dyn PhysicalExpr> = Arc::new(ColumnExpr::new(f.name(), i));
            if !holds_ids(f.data_type()) {
                return (column, f.name().clone());
            }
            let shown = Arc::new(Field::new(
                f.name(),
                shown_type(f.data_type()),
                f.is_nullable(),
            ));
            let expr: Arc<dyn PhysicalExpr> = Arc::new(ScalarFunctionExpr::new(
                "weft_show_ids",
                Arc::clone(&udf),
                vec![column],
                shown,
                Arc::clone(&config),
            ));
            (expr, f.name().clone())
        })
        .collect();
    Ok(Arc::new(ProjectionExec::try_new(exprs, input)?))
}

/// A trace id as a literal of the stored (bytes) `trace_id` columns.
pub(crate) fn trace_id_literal(trace_id: &TraceId) -> Expr {
    Expr::Literal(
        ScalarValue::FixedSizeBinary(TraceId::LEN as i32, Some(trace_id.as_bytes().to_vec())),
        None,
    )
}

/// A filter on the shown table's ids as the stored table applies it exactly,
/// or `None` when `filter` is not one (it names no id, or uses one otherwise);
/// DataFusion then applies it above the scan, on the shown values.
pub(crate) fn id_filter(filter: &Expr, storage: &Schema) -> Option<Expr> {
    let is_id = |c: &Column| {
        storage
            .field_with_name(&c.name)
            .is_ok_and(|f| holds_ids(f.data_type()))
    };
    match filter {
        Expr::BinaryExpr(BinaryExpr { left, op, right })
            if matches!(op, Operator::Eq | Operator::NotEq) =>
        {
            match (left.as_ref(), right.as_ref()) {
                (Expr::Column(c), Expr::Literal(v, _)) | (Expr::Literal(v, _), Expr::Column(c))
                    if is_id(c) =>
                {
                    let bytes = id_literal(storage, c, v)?;
                    Some(Expr::BinaryExpr(BinaryExpr::new(
                        Box::new(unqualified(c)),
                        *op,
                        Box::new(bytes),
                    )))
                }
                _ => None,
            }
        }
        Expr::InList(InList {
            expr,
            list,
            negated,
        }) => match expr.as_ref() {
            Expr::Column(c) if is_id(c) => {
                let list = list
                    .iter()
                    .map(|v| match v {
                        Expr::Literal(v, _) => id_literal(storage, c, v),
                        _ => None,
                    })
                    .collect::<Option<Vec<_>>>()?;
                Some(Expr::InList(InList::new(
                    Box::new(unqualified(c)),
                    list,
                    *negated,
                )))
            }
            _ => None,
        },
        _ => None,
    }
}

/// The scan resolves columns against its own, unqualified schema.
fn unqualified(column: &Column) -> Expr {
    Expr::Column(Column::new_unqualified(&column.name))
}

/// Hex text as the bytes of an id column. Only the canonical form (lowercase,
/// full length) converts: anything else cannot equal a shown id, and is left to
/// the filter above the scan, so `!=` and `NOT IN` stay exact.
fn id_literal(storage: &Schema, column: &Column, value: &ScalarValue) -> Option<Expr> {
    let (ScalarValue::Utf8(Some(text))
    | ScalarValue::Utf8View(Some(text))
    | ScalarValue::LargeUtf8(Some(text))) = value
    else {
        return None;
    };
    if !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let DataType::FixedSizeBinary(width) = storage.field_with_name(&column.name).ok()?.data_type()
    else {
        return None;
    };
    let bytes = match usize::try_from(*width).ok()? {
        TraceId::LEN => text.parse::<TraceId>().ok()?.as_bytes().to_vec(),
        SpanId::LEN => text.parse::<SpanId>().ok()?.as_bytes().to_vec(),
        _ => return None,
    };
    Some(Expr::Literal(
        ScalarValue::FixedSizeBinary(*width, Some(bytes)),
        None,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};
    use weft_schemas::span_schema;

    const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

    fn bytes(hex: &str) -> Expr {
        let id: TraceId = hex.parse().unwrap();
        Expr::Literal(
            ScalarValue::FixedSizeBinary(16, Some(id.as_bytes().to_vec())),
            None,
        )
    }

    #[test]
    fn id_comparisons_become_byte_comparisons() {
        let schema = span_schema();
        assert_eq!(
            id_filter(&col("trace_id").eq(lit(TRACE)), &schema),
            Some(col("trace_id").eq(bytes(TRACE)))
        );
        assert_eq!(
            id_filter(&lit(TRACE).not_eq(col("trace_id")), &schema),
            Some(col("trace_id").not_eq(bytes(TRACE)))
        );
        assert_eq!(
            id_filter(&col("trace_id").in_list(vec![lit(TRACE)], false), &schema),
            Some(col("trace_id").in_list(vec![bytes(TRACE)], false))
        );
    }

    #[test]
    fn other_filters_stay_above_the_scan() {
        let schema = span_schema();
        assert_eq!(id_filter(&col("name").eq(lit("chat")), &schema), None);
        // Not canonical hex: left to the exact filter above (it can match nothing).
        let upper = col("trace_id").not_eq(lit(TRACE.to_uppercase()));
        assert_eq!(id_filter(&upper, &schema), None);
        assert_eq!(id_filter(&col("trace_id").eq(lit("zz")), &schema), None);
        // Any other use of an id column cannot be translated.
        let like = col("span_id").like(lit("ab%"));
        assert_eq!(id_filter(&like, &schema), None);
    }
}
