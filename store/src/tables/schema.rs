//! The Delta schema of each table: its Arrow schema in Delta's types, plus the
//! `day` partition column. Weft's files hold ids as 16- and 8-byte fixed-size
//! binary, which Delta's `binary` reads; times are microsecond UTC timestamps,
//! Delta's `timestamp`.

use arrow::datatypes::{DataType as Arrow, Field, TimeUnit};
use deltalake::kernel::{ArrayType, DataType, MapType, StructField, StructType};

use crate::error::{Error, Result};

use crate::table_kind::DAY;

/// The columns of a Delta table holding `schema`'s rows, partitioned by [`DAY`].
pub(crate) fn delta_columns(schema: &arrow::datatypes::Schema) -> Result<Vec<StructField>> {
    let mut columns = schema
        .fields()
        .iter()
        .map(|f| delta_field(f))
        .collect::<Result<Vec<_>>>()?;
    columns.push(StructField::not_null(DAY, DataType::DATE));
    Ok(columns)
}

fn delta_field(field: &Field) -> Result<StructField> {
    Ok(StructField::new(
        field.name(),
        delta_type(field.data_type())?,
        field.is_nullable(),
    ))
}

fn delta_type(arrow: &Arrow) -> Result<DataType> {
    Ok(match arrow {
        Arrow::Utf8 | Arrow::Utf8View | Arrow::LargeUtf8 => DataType::STRING,
        Arrow::Binary | Arrow::FixedSizeBinary(_) | Arrow::LargeBinary => DataType::BINARY,
        Arrow::Int64 => DataType::LONG,
        Arrow::Int32 => DataType::INTEGER,
        Arrow::Float64 => DataType::DOUBLE,
        Arrow::Boolean => DataType::BOOLEAN,
        Arrow::Timestamp(TimeUnit::Microsecond, Some(_)) => DataType::TIMESTAMP,
        Arrow::List(item) => {
            ArrayType::new(delta_type(item.data_type())?, item.is_nullable()).into()
        }
        Arrow::Map(entries, _) => {
            let Arrow::Struct(kv) = entries.data_type() else {
                return Err(unsupported(arrow));
            };
            let [key, value] = kv.iter().collect::<Vec<_>>()[..] else {
                return Err(unsupported(arrow));
            };
            MapType::new(
                delta_type(key.data_type())?,
                delta_type(value.data_type())?,
                value.is_nullable(),
            )
            .into()
        }
        Arrow::Struct(fields) => StructType::try_new(
            fields
                .iter()
                .map(|f| delta_field(f))
                .collect::<Result<Vec<_>>>()?,
        )
        .map_err(|e| Error::Internal(format!("struct type for delta: {e}")))?
        .into(),
        other => return Err(unsupported(other)),
    })
}

fn unsupported(arrow: &Arrow) -> Error {
    Error::Internal(format!("no delta type for the arrow type {arrow}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_schemas::{links_schema, span_schema, structure_schema};

    #[test]
    fn every_table_has_a_delta_schema_ending_in_day() {
        for schema in [span_schema(), structure_schema(), links_schema()] {
            let columns = delta_columns(&schema).unwrap();
            assert_eq!(columns.len(), schema.fields().len() + 1);
            assert_eq!(columns.last().unwrap().name(), DAY);
            assert_eq!(columns[0].data_type(), &DataType::BINARY);
        }
    }
}
