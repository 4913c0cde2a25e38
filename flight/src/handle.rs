//! A prepared statement's handle: its SQL and, once bound, its parameters
//! (one row, as Arrow IPC). Handles come back from clients, so decoding
//! checks every length and never panics.

use arrow::array::RecordBatch;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use bytes::Bytes;
use datafusion::common::ParamValues;
use datafusion::scalar::ScalarValue;
use tonic::Status;

const VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Handle {
    pub sql: String,
    /// The bound parameters, one value per `$n`, in order.
    pub parameters: Option<RecordBatch>,
}

fn malformed(what: &str) -> Status {
    Status::invalid_argument(format!(
        "the prepared statement handle is not one this server made ({what}); create the \
         prepared statement again"
    ))
}

impl Handle {
    pub(crate) fn new(sql: String) -> Self {
        Self {
            sql,
            parameters: None,
        }
    }

    pub(crate) fn encode(&self) -> Result<Bytes, Status> {
        let mut out = vec![VERSION];
        let sql_len = u32::try_from(self.sql.len())
            .map_err(|_| Status::invalid_argument("the SQL is too long"))?;
        out.extend_from_slice(&sql_len.to_le_bytes());
        out.extend_from_slice(self.sql.as_bytes());
        if let Some(batch) = &self.parameters {
            let mut writer = StreamWriter::try_new(&mut out, &batch.schema())
                .map_err(|e| Status::internal(format!("encoding parameters: {e}")))?;
            writer
                .write(batch)
                .and_then(|()| writer.finish())
                .map_err(|e| Status::internal(format!("encoding parameters: {e}")))?;
        }
        Ok(out.into())
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, Status> {
        let (&version, rest) = bytes.split_first().ok_or_else(|| malformed("empty"))?;
        if version != VERSION {
            return Err(malformed("unknown version"));
        }
        let (len, rest) = rest.split_at_checked(4).ok_or_else(|| malformed("short"))?;
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let (sql, rest) = rest
            .split_at_checked(len)
            .ok_or_else(|| malformed("short"))?;
        let sql = std::str::from_utf8(sql)
            .map_err(|_| malformed("SQL is not UTF-8"))?
            .to_owned();
        let parameters = if rest.is_empty() {
            None
        } else {
            let mut reader =
                StreamReader::try_new(rest, None).map_err(|_| malformed("parameters"))?;
            match reader.next() {
                Some(Ok(batch)) => Some(batch),
                _ => return Err(malformed("parameters")),
            }
        };
        Ok(Self { sql, parameters })
    }

    /// The parameters as DataFusion binds them.
    pub(crate) fn values(&self) -> Result<Option<ParamValues>, Status> {
        let Some(batch) = &self.parameters else {
            return Ok(None);
        };
        if batch.num_rows() != 1 {
            return Err(Status::invalid_argument(format!(
                "bind one row of parameters at a time, not {}",
                batch.num_rows()
            )));
        }
        let values = batch
            .columns()
            .iter()
            .map(|column| ScalarValue::try_from_array(column, 0))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Status::invalid_argument(format!("a parameter value: {e}")))?;
        Ok(Some(ParamValues::from(values)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn handles_round_trip_and_garbage_is_refused_not_panicked_on() {
        let plain = Handle::new("SELECT $1".into());
        assert_eq!(Handle::decode(&plain.encode().unwrap()).unwrap(), plain);
        let schema = Arc::new(Schema::new(vec![
            Field::new("$1", DataType::Utf8, true),
            Field::new("$2", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["svc"])),
                Arc::new(Int64Array::from(vec![7])),
            ],
        )
        .unwrap();
        let bound = Handle {
            sql: "SELECT $1, $2".into(),
            parameters: Some(batch),
        };
        let encoded = bound.encode().unwrap();
        let decoded = Handle::decode(&encoded).unwrap();
        assert_eq!(decoded, bound);
        let ParamValues::List(values) = decoded.values().unwrap().unwrap() else {
            panic!("positional parameters");
        };
        assert_eq!(values.len(), 2);
        for cut in 0..encoded.len() {
            let _ = Handle::decode(&encoded[..cut]);
        }
        assert!(Handle::decode(&[9, 9, 9]).is_err());
        assert!(Handle::decode(&[VERSION, 255, 255, 255, 255]).is_err());
    }
}
