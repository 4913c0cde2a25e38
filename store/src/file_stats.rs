//! The per-file statistics a Delta `add` action carries, so readers skip files
//! by time without opening them: row count, and min, max and null count of the
//! time and duration columns.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::{max, min};
use arrow::datatypes::{DataType, Int64Type, TimeUnit, TimestampMicrosecondType};
use chrono::DateTime;
use serde_json::{Map, Value, json};

/// The statistics of `batch` as Delta's `stats` JSON.
pub(crate) fn file_stats(batch: &RecordBatch) -> String {
    let (mut mins, mut maxs, mut nulls) = (Map::new(), Map::new(), Map::new());
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        let (lo, hi) = match field.data_type() {
            DataType::Timestamp(TimeUnit::Microsecond, _) => {
                let a = column.as_primitive::<TimestampMicrosecondType>();
                (min(a).map(micros_text), max(a).map(micros_text))
            }
            DataType::Int64 => {
                let a = column.as_primitive::<Int64Type>();
                (min(a).map(Value::from), max(a).map(Value::from))
            }
            _ => continue,
        };
        let name = field.name().clone();
        if let (Some(lo), Some(hi)) = (lo, hi) {
            mins.insert(name.clone(), lo);
            maxs.insert(name.clone(), hi);
        }
        nulls.insert(name, Value::from(column.null_count()));
    }
    json!({
        "numRecords": batch.num_rows(),
        "minValues": mins,
        "maxValues": maxs,
        "nullCount": nulls,
    })
    .to_string()
}

/// A timestamp as Delta's statistics write it: RFC 3339, microseconds, UTC.
fn micros_text(micros: i64) -> Value {
    DateTime::from_timestamp_micros(micros)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
        .map_or(Value::Null, Value::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_schemas::schema::timestamps_from_nanos;

    #[test]
    fn stats_name_rows_and_the_time_range() {
        let schema = arrow::datatypes::Schema::new(vec![arrow::datatypes::Field::new(
            "start_time",
            weft_schemas::schema::timestamp_type(),
            false,
        )]);
        let batch = RecordBatch::try_new(
            std::sync::Arc::new(schema),
            vec![timestamps_from_nanos([
                1_700_000_000_123_456_789,
                1_700_000_100_000_000_000,
            ])],
        )
        .unwrap();
        let stats: Value = serde_json::from_str(&file_stats(&batch)).unwrap();
        assert_eq!(stats["numRecords"], 2);
        assert_eq!(
            stats["minValues"]["start_time"],
            "2023-11-14T22:13:20.123456Z"
        );
        assert_eq!(
            stats["maxValues"]["start_time"],
            "2023-11-14T22:15:00.000000Z"
        );
        assert_eq!(stats["nullCount"]["start_time"], 0);
    }
}
