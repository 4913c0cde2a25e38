//! The OTLP type of every attribute value that is not a string.
//!
//! The attribute maps store values as text, so SQL reads `attributes['k']`
//! without knowing what arrived. Beside them, the `attribute_types` column
//! keeps, per span, the type of each value that was not a string, so stored
//! spans go back to OTLP with the values they came with (`/api/traces/{id}`).
//!
//! One `Map<Utf8, Utf8>` per span: the key says where the attribute is and its
//! key — `span.<key>`, `resource.<key>`, `event.<i>.<key>`, `link.<i>.<key>`
//! (`i` counts the span's events or links from 0) — and the value is the OTLP
//! type: `bool`, `int`, `double`, `bytes`, `array`, `kvlist` or `empty`.
//! Strings, by far the most values, have no entry. A null map (spans written
//! before schema version 4) means the types were not recorded.

use crate::span::AttrValue;

/// The OTLP `AnyValue` kinds other than string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    Bool,
    Int,
    Double,
    /// Stored as hex text.
    Bytes,
    /// Stored as JSON text.
    Array,
    /// Stored as JSON text.
    KvList,
    /// An `AnyValue` with no value; stored as empty text.
    Empty,
}

impl ValueType {
    const ALL: [ValueType; 7] = [
        ValueType::Bool,
        ValueType::Int,
        ValueType::Double,
        ValueType::Bytes,
        ValueType::Array,
        ValueType::KvList,
        ValueType::Empty,
    ];

    /// The name stored in `attribute_types`.
    pub fn as_str(self) -> &'static str {
        match self {
            ValueType::Bool => "bool",
            ValueType::Int => "int",
            ValueType::Double => "double",
            ValueType::Bytes => "bytes",
            ValueType::Array => "array",
            ValueType::KvList => "kvlist",
            ValueType::Empty => "empty",
        }
    }

    /// Reads a stored name; an unknown one is `None` (read as a string).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// The type of `value`; `None` for a string.
    pub fn of(value: &AttrValue) -> Option<Self> {
        Some(match value {
            AttrValue::Str(_) => return None,
            AttrValue::Bool(_) => ValueType::Bool,
            AttrValue::Int(_) => ValueType::Int,
            AttrValue::Double(_) => ValueType::Double,
            AttrValue::Bytes(_) => ValueType::Bytes,
            AttrValue::Array(_) => ValueType::Array,
            AttrValue::KvList(_) => ValueType::KvList,
            AttrValue::Empty => ValueType::Empty,
        })
    }
}

/// Which attribute map of a span an attribute is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Span,
    Resource,
    /// The span's `i`-th event.
    Event(usize),
    /// The span's `i`-th link.
    Link(usize),
}

impl Place {
    /// The prefix of this place's keys in `attribute_types`, with its dot.
    pub fn prefix(self) -> String {
        match self {
            Place::Span => "span.".to_owned(),
            Place::Resource => "resource.".to_owned(),
            Place::Event(i) => format!("event.{i}."),
            Place::Link(i) => format!("link.{i}."),
        }
    }

    /// The `attribute_types` key of the attribute `key` here.
    pub fn key(self, key: &str) -> String {
        let mut out = self.prefix();
        out.push_str(key);
        out
    }
}

/// One span's `attribute_types` entries, as read back.
#[derive(Debug, Clone, Copy, Default)]
pub struct ValueTypes<'a> {
    entries: &'a [(&'a str, Option<&'a str>)],
}

impl<'a> ValueTypes<'a> {
    pub fn new(entries: &'a [(&'a str, Option<&'a str>)]) -> Self {
        Self { entries }
    }

    /// The type of attribute `key` of `place`; `None` for a string, or when
    /// the types were not recorded.
    pub fn get(&self, prefix: &str, key: &str) -> Option<ValueType> {
        self.entries.iter().find_map(|(k, t)| {
            let rest = k.strip_prefix(prefix)?;
            (rest == key).then(|| t.and_then(ValueType::parse))?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_back_and_strings_have_none() {
        for t in ValueType::ALL {
            assert_eq!(ValueType::parse(t.as_str()), Some(t));
        }
        assert_eq!(ValueType::parse("string"), None);
        assert_eq!(ValueType::of(&AttrValue::Str("x".into())), None);
        assert_eq!(ValueType::of(&AttrValue::Int(1)), Some(ValueType::Int));
    }

    #[test]
    fn keys_name_their_place_and_lookups_do_not_cross_places() {
        assert_eq!(Place::Event(3).key("a.b"), "event.3.a.b");
        let entries = [
            ("span.n", Some("int")),
            ("event.1.n", Some("double")),
            ("event.11.n", Some("bool")),
            ("resource.n", None),
        ];
        let types = ValueTypes::new(&entries);
        assert_eq!(types.get(&Place::Span.prefix(), "n"), Some(ValueType::Int));
        assert_eq!(
            types.get(&Place::Event(1).prefix(), "n"),
            Some(ValueType::Double)
        );
        assert_eq!(
            types.get(&Place::Event(11).prefix(), "n"),
            Some(ValueType::Bool)
        );
        assert_eq!(types.get(&Place::Link(0).prefix(), "n"), None);
        assert_eq!(types.get(&Place::Resource.prefix(), "n"), None);
        assert_eq!(types.get(&Place::Span.prefix(), "m"), None);
    }
}
