//! Ids are bytes everywhere but where people see them. [`shown_type`],
//! [`shown_schema`] and [`show_ids`] turn id columns (`FixedSizeBinary`, also
//! inside lists and structs such as `links`) into lowercase hex text, as SQL and
//! JSON show them. [`ids_from_hex`] is the way back, for data written when ids
//! were stored as hex (schema version 1).

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeBinaryBuilder, ListArray, RecordBatch, StringBuilder,
    StructArray, new_null_array,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema, SchemaRef};
use arrow::error::ArrowError;

/// The type a column is shown as: ids as text, lists and structs of ids likewise.
pub fn shown_type(data_type: &DataType) -> DataType {
    match data_type {
        DataType::FixedSizeBinary(_) => DataType::Utf8,
        DataType::List(item) => DataType::List(with_type(item, shown_type(item.data_type()))),
        DataType::Struct(fields) => DataType::Struct(
            fields
                .iter()
                .map(|f| with_type(f, shown_type(f.data_type())))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// True when a column of this type holds ids (so it is shown differently).
pub fn holds_ids(data_type: &DataType) -> bool {
    shown_type(data_type) != *data_type
}

fn with_type(field: &FieldRef, data_type: DataType) -> FieldRef {
    Arc::new(field.as_ref().clone().with_data_type(data_type))
}

/// The schema as people see it: every id column as hex text.
pub fn shown_schema(schema: &Schema) -> SchemaRef {
    let fields: Fields = schema
        .fields()
        .iter()
        .map(|f| with_type(f, shown_type(f.data_type())))
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// The array with its ids as lowercase hex text (other columns unchanged).
pub fn show_ids(array: &ArrayRef) -> Result<ArrayRef, ArrowError> {
    match array.data_type() {
        DataType::FixedSizeBinary(width) => {
            let ids = array.as_fixed_size_binary();
            let width = usize::try_from(*width).unwrap_or_default();
            let mut out = StringBuilder::with_capacity(ids.len(), ids.len() * width * 2);
            let mut buf = vec![0u8; width * 2];
            for row in 0..ids.len() {
                if ids.is_null(row) {
                    out.append_null();
                    continue;
                }
                hex::encode_to_slice(ids.value(row), &mut buf)
                    .map_err(|e| ArrowError::ComputeError(format!("id as hex: {e}")))?;
                // Hex digits are ASCII.
                out.append_value(std::str::from_utf8(&buf).unwrap_or_default());
            }
            Ok(Arc::new(out.finish()))
        }
        DataType::List(item) => {
            let list = array.as_list::<i32>();
            let values = show_ids(list.values())?;
            let item = with_type(item, values.data_type().clone());
            Ok(Arc::new(ListArray::try_new(
                item,
                list.offsets().clone(),
                values,
                list.nulls().cloned(),
            )?))
        }
        DataType::Struct(fields) => {
            let items = array.as_struct();
            let columns = items
                .columns()
                .iter()
                .map(show_ids)
                .collect::<Result<Vec<_>, _>>()?;
            let fields: Fields = fields
                .iter()
                .zip(&columns)
                .map(|(f, c)| with_type(f, c.data_type().clone()))
                .collect();
            Ok(Arc::new(StructArray::try_new(
                fields,
                columns,
                items.nulls().cloned(),
            )?))
        }
        _ => Ok(Arc::clone(array)),
    }
}

/// The array as `target` has it: hex text read as bytes where `target` holds
/// ids as bytes (schema version 1), anything else cast (version 2's nanosecond
/// timestamps become microseconds). How older data reaches the current schema.
pub fn to_current_type(array: &ArrayRef, target: &DataType) -> Result<ArrayRef, ArrowError> {
    match (array.data_type(), target) {
        (source, target) if source == target => Ok(Arc::clone(array)),
        (
            DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8,
            DataType::FixedSizeBinary(width),
        ) => {
            let text = cast(array, &DataType::Utf8)?;
            let text = text.as_string::<i32>();
            let mut out = FixedSizeBinaryBuilder::with_capacity(text.len(), *width);
            for value in text.iter() {
                match value {
                    None => out.append_null(),
                    Some(hex_id) => {
                        let bytes = hex::decode(hex_id).map_err(|e| {
                            ArrowError::ParseError(format!("id {hex_id:?} is not hex: {e}"))
                        })?;
                        out.append_value(bytes)?;
                    }
                }
            }
            Ok(Arc::new(out.finish()))
        }
        (DataType::List(_), DataType::List(item)) => {
            let list = array.as_list::<i32>();
            let values = to_current_type(list.values(), item.data_type())?;
            Ok(Arc::new(ListArray::try_new(
                Arc::clone(item),
                list.offsets().clone(),
                values,
                list.nulls().cloned(),
            )?))
        }
        (DataType::Struct(_), DataType::Struct(fields)) => {
            let items = array.as_struct();
            let columns = fields
                .iter()
                .map(|f| {
                    let column = items.column_by_name(f.name()).ok_or_else(|| {
                        ArrowError::SchemaError(format!("struct lacks field {}", f.name()))
                    })?;
                    to_current_type(column, f.data_type())
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Arc::new(StructArray::try_new(
                fields.clone(),
                columns,
                items.nulls().cloned(),
            )?))
        }
        _ => cast(array, target),
    }
}

/// A batch brought to `target` (by column name), with [`to_current_type`];
/// nullable columns it lacks (added by a later schema version) are null.
pub fn batch_to_current(
    batch: &RecordBatch,
    target: &SchemaRef,
) -> Result<RecordBatch, ArrowError> {
    let columns = target
        .fields()
        .iter()
        .map(|f: &Arc<Field>| match batch.column_by_name(f.name()) {
            Some(column) => to_current_type(column, f.data_type()),
            // A column added since (nullable, so older rows say "not recorded").
            None if f.is_nullable() => Ok(new_null_array(f.data_type(), batch.num_rows())),
            None => Err(ArrowError::SchemaError(format!(
                "batch lacks column {}",
                f.name()
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(Arc::clone(target), columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::spans_to_batch;
    use crate::batch::tests::span;
    use crate::schema::span_schema;

    #[test]
    fn ids_show_as_hex_and_read_back_as_bytes() {
        let batch = spans_to_batch(&[span(1), span(2)]).unwrap();
        let shown: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .map(|c| show_ids(c).unwrap())
            .collect();
        let shown = RecordBatch::try_new(shown_schema(&span_schema()), shown).unwrap();
        let trace = shown.column_by_name("trace_id").unwrap().as_string::<i32>();
        assert_eq!(trace.value(0), "01010101010101010101010101010101");
        let links = shown.column_by_name("links").unwrap().as_list::<i32>();
        let link_span = links
            .values()
            .as_struct()
            .column_by_name("span_id")
            .unwrap();
        assert_eq!(link_span.as_string::<i32>().value(0), "0909090909090909");
        assert!(shown.column_by_name("parent_span_id").unwrap().is_null(0));
        // Schema version 1 data (hex ids) comes back exactly as version 2 writes it.
        assert_eq!(batch_to_current(&shown, &span_schema()).unwrap(), batch);
    }

    #[test]
    fn only_id_columns_are_shown_differently() {
        let schema = span_schema();
        let changed: Vec<&str> = schema
            .fields()
            .iter()
            .filter(|f| holds_ids(f.data_type()))
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(changed, ["trace_id", "span_id", "parent_span_id", "links"]);
        let bad = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new(
                "trace_id",
                DataType::Utf8,
                false,
            )])),
            vec![Arc::new(arrow::array::StringArray::from(vec!["zz"]))],
        )
        .unwrap();
        let target = Arc::new(Schema::new(vec![Field::new(
            "trace_id",
            DataType::FixedSizeBinary(16),
            false,
        )]));
        assert!(batch_to_current(&bad, &target).is_err());
    }
}
