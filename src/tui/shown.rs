//! How the explorer shows an attribute value, wherever it was read from: the
//! text stored for it (what SQL shows as `attributes['k']`), except an array
//! of scalars, shown as `[a, b]`.

use serde_json::Value;
use weft_schemas::value_types::ValueType;

/// `text` as stored for a value of type `ty` (`None`: a string), for people.
pub(super) fn shown(text: &str, ty: Option<ValueType>) -> String {
    if ty == Some(ValueType::Array)
        && let Ok(Value::Array(items)) = serde_json::from_str::<Value>(text)
        && let Some(items) = items.iter().map(scalar).collect::<Option<Vec<_>>>()
    {
        return format!("[{}]", items.join(", "));
    }
    text.to_owned()
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(_) | Value::Number(_) => Some(v.to_string()),
        _ => None,
    }
}
