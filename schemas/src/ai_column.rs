//! The machinery behind the AI columns: [`AiValue`], what one column's Rust
//! type knows (its Arrow type, how to build, read and interpret it), and
//! [`ai_columns!`], which turns the one table in [`crate::conventions`] into the
//! field struct, the mapping table, the batch builders and the typed reader.
//!
//! Adding an AI column is one line in that table: a name, a Rust type, a doc
//! and the keys that fill it.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, BooleanBuilder, Float64Array, Float64Builder,
    Int64Array, Int64Builder, ListArray, ListBuilder, StringArray, StringBuilder,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field};
use arrow::error::ArrowError;

use crate::ai_values::{AiKind, ApprovalState, PolicyVerdict};

/// Arrow type of an AI column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Utf8,
    Int64,
    Float64,
    Boolean,
    Utf8List,
}

impl ColumnType {
    /// The Arrow data type.
    pub fn data_type(self) -> DataType {
        match self {
            ColumnType::Utf8 => DataType::Utf8,
            ColumnType::Int64 => DataType::Int64,
            ColumnType::Float64 => DataType::Float64,
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::Utf8List => crate::schema::utf8_list_type(),
        }
    }
}

/// An attribute value after a key's interpretation, before it becomes a field.
#[derive(Debug, Clone, PartialEq)]
pub enum Typed {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    List(Vec<String>),
    Kind(AiKind),
    Verdict(PolicyVerdict),
    Approval(ApprovalState),
}

/// What the Rust type of one AI field knows about its column.
pub trait AiValue: Sized {
    /// The column's Arrow type.
    const TYPE: ColumnType;
    /// Accumulates the column.
    type Builder;
    /// A column of this type, read from a batch.
    type Column;

    fn builder(capacity: usize) -> Self::Builder;
    fn append(builder: &mut Self::Builder, value: Option<&Self>);
    fn finish(builder: Self::Builder) -> ArrayRef;
    /// The field's value from an interpreted attribute; a wrong type is `None`.
    fn from_typed(value: Typed) -> Option<Self>;
    /// Reads a column (text columns may arrive as `Utf8View` from queries).
    fn column(array: &ArrayRef) -> Result<Self::Column, ArrowError>;
    fn get(column: &Self::Column, row: usize) -> Option<Self>;
    /// How a value is lent out of a [`SparseAi`](crate::conventions::SparseAi):
    /// text as `&str`, lists as slices, the rest by copy.
    type Ref<'a>
    where
        Self: 'a;
    fn lend(&self) -> Self::Ref<'_>;
}

fn strings(array: &ArrayRef) -> Result<StringArray, ArrowError> {
    Ok(cast(array, &DataType::Utf8)?.as_string::<i32>().clone())
}

fn opt_str(column: &StringArray, row: usize) -> Option<&str> {
    (!column.is_null(row)).then(|| column.value(row))
}

impl AiValue for String {
    const TYPE: ColumnType = ColumnType::Utf8;
    type Builder = StringBuilder;
    type Column = StringArray;

    fn builder(capacity: usize) -> StringBuilder {
        StringBuilder::with_capacity(capacity, capacity * 8)
    }
    fn append(builder: &mut StringBuilder, value: Option<&Self>) {
        builder.append_option(value);
    }
    fn finish(mut builder: StringBuilder) -> ArrayRef {
        Arc::new(builder.finish())
    }
    fn from_typed(value: Typed) -> Option<Self> {
        match value {
            Typed::Str(s) => Some(s),
            _ => None,
        }
    }
    fn column(array: &ArrayRef) -> Result<StringArray, ArrowError> {
        strings(array)
    }
    fn get(column: &StringArray, row: usize) -> Option<Self> {
        opt_str(column, row).map(str::to_owned)
    }
    type Ref<'a> = &'a str;
    fn lend(&self) -> &str {
        self
    }
}

macro_rules! primitive_value {
    ($t:ty, $ty:ident, $builder:ty, $array:ty, $variant:ident, $data_type:expr) => {
        impl AiValue for $t {
            const TYPE: ColumnType = ColumnType::$ty;
            type Builder = $builder;
            type Column = $array;

            fn builder(capacity: usize) -> $builder {
                <$builder>::with_capacity(capacity)
            }
            fn append(builder: &mut $builder, value: Option<&Self>) {
                builder.append_option(value.copied());
            }
            fn finish(mut builder: $builder) -> ArrayRef {
                Arc::new(builder.finish())
            }
            fn from_typed(value: Typed) -> Option<Self> {
                match value {
                    Typed::$variant(v) => Some(v),
                    _ => None,
                }
            }
            fn column(array: &ArrayRef) -> Result<$array, ArrowError> {
                let array = cast(array, &$data_type)?;
                array
                    .as_any()
                    .downcast_ref::<$array>()
                    .cloned()
                    .ok_or_else(|| ArrowError::CastError(format!("expected {}", $data_type)))
            }
            fn get(column: &$array, row: usize) -> Option<Self> {
                (!column.is_null(row)).then(|| column.value(row))
            }
            type Ref<'a> = Self;
            fn lend(&self) -> Self {
                *self
            }
        }
    };
}

primitive_value!(i64, Int64, Int64Builder, Int64Array, Int, DataType::Int64);
primitive_value!(
    f64,
    Float64,
    Float64Builder,
    Float64Array,
    Float,
    DataType::Float64
);
primitive_value!(
    bool,
    Boolean,
    BooleanBuilder,
    BooleanArray,
    Bool,
    DataType::Boolean
);

/// A list column, flattened once so rows are read by offset.
pub struct StringLists {
    list: ListArray,
    values: StringArray,
}

impl AiValue for Vec<String> {
    const TYPE: ColumnType = ColumnType::Utf8List;
    type Builder = ListBuilder<StringBuilder>;
    type Column = StringLists;

    fn builder(capacity: usize) -> Self::Builder {
        ListBuilder::with_capacity(StringBuilder::new(), capacity).with_field(Arc::new(Field::new(
            "item",
            DataType::Utf8,
            false,
        )))
    }
    fn append(builder: &mut Self::Builder, value: Option<&Self>) {
        match value {
            Some(items) => {
                for item in items {
                    builder.values().append_value(item);
                }
                builder.append(true);
            }
            None => builder.append_null(),
        }
    }
    fn finish(mut builder: Self::Builder) -> ArrayRef {
        Arc::new(builder.finish())
    }
    fn from_typed(value: Typed) -> Option<Self> {
        match value {
            Typed::List(l) => Some(l),
            _ => None,
        }
    }
    fn column(array: &ArrayRef) -> Result<StringLists, ArrowError> {
        let list = array
            .as_list_opt::<i32>()
            .ok_or_else(|| ArrowError::CastError("expected a list of text".into()))?
            .clone();
        let values = strings(list.values())?;
        Ok(StringLists { list, values })
    }
    fn get(column: &StringLists, row: usize) -> Option<Self> {
        if column.list.is_null(row) {
            return None;
        }
        let offsets = column.list.value_offsets();
        let range = offsets[row] as usize..offsets[row + 1] as usize;
        Some(range.map(|i| column.values.value(i).to_owned()).collect())
    }
    type Ref<'a> = &'a [String];
    fn lend(&self) -> &[String] {
        self
    }
}

macro_rules! enum_value {
    ($t:ty, $variant:ident) => {
        impl AiValue for $t {
            const TYPE: ColumnType = ColumnType::Utf8;
            type Builder = StringBuilder;
            type Column = StringArray;

            fn builder(capacity: usize) -> StringBuilder {
                StringBuilder::with_capacity(capacity, capacity * 4)
            }
            fn append(builder: &mut StringBuilder, value: Option<&Self>) {
                builder.append_option(value.map(|v| v.as_str()));
            }
            fn finish(mut builder: StringBuilder) -> ArrayRef {
                Arc::new(builder.finish())
            }
            fn from_typed(value: Typed) -> Option<Self> {
                match value {
                    Typed::$variant(v) => Some(v),
                    _ => None,
                }
            }
            fn column(array: &ArrayRef) -> Result<StringArray, ArrowError> {
                strings(array)
            }
            fn get(column: &StringArray, row: usize) -> Option<Self> {
                opt_str(column, row).and_then(<$t>::parse)
            }
            type Ref<'a> = Self;
            fn lend(&self) -> Self {
                *self
            }
        }
    };
}

enum_value!(AiKind, Kind);
enum_value!(PolicyVerdict, Verdict);
enum_value!(ApprovalState, Approval);

/// Generates, from one table of `name: Type, "doc", [keys];` rows:
/// - `AiFields`, the typed AI columns of one span (`None` is null);
/// - `AI_COLUMNS`, the mapping table (name, type, keys, doc) in column order;
/// - `ai_col`, one constant per column name;
/// - `extract`, attributes → `AiFields`, first present key wins;
/// - `AiBuilders` and `AiReader`, the Arrow builders and the typed reader.
macro_rules! ai_columns {
    ($( $field:ident : $ty:ty, $doc:literal, [$($key:expr),+ $(,)?]; )+) => {
        /// The typed AI columns of one span; `None` is a null column. As
        /// JSON, one key per column present, named as the column.
        #[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(default)]
        pub struct AiFields {
            $(
                #[doc = $doc]
                #[serde(skip_serializing_if = "Option::is_none")]
                pub $field: Option<$ty>,
            )+
        }

        /// The AI columns of one span that are present, one slot each, in
        /// column order: what is kept per span where spans are many (a
        /// workflow's lineage). An [`AiFields`] is ~600 bytes however few
        /// of its columns are set; this is 16 bytes and a slot per column
        /// set. Read a column with the method of its name; as JSON, the
        /// same as [`AiFields`].
        #[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(from = "AiFields", into = "AiFields")]
        pub struct SparseAi(Box<[AiSlot]>);

        /// One present AI column of a [`SparseAi`].
        #[allow(non_camel_case_types)]
        #[derive(Debug, Clone, PartialEq)]
        enum AiSlot {
            $( $field($ty), )+
        }

        impl From<AiFields> for SparseAi {
            fn from(fields: AiFields) -> Self {
                // Sized exactly: the slice keeps the allocation as it is.
                let mut slots = Vec::with_capacity(0 $( + usize::from(fields.$field.is_some()) )+);
                $( if let Some(v) = fields.$field { slots.push(AiSlot::$field(v)); } )+
                Self(slots.into_boxed_slice())
            }
        }

        impl From<SparseAi> for AiFields {
            fn from(sparse: SparseAi) -> Self {
                let mut fields = AiFields::default();
                for slot in sparse.0 {
                    match slot {
                        $( AiSlot::$field(v) => fields.$field = Some(v), )+
                    }
                }
                fields
            }
        }

        impl SparseAi {
            $(
                #[doc = $doc]
                pub fn $field(&self) -> Option<<$ty as AiValue>::Ref<'_>> {
                    self.0.iter().find_map(|slot| match slot {
                        AiSlot::$field(v) => Some(<$ty as AiValue>::lend(v)),
                        #[allow(unreachable_patterns)]
                        _ => None,
                    })
                }
            )+

            /// Every column, as dense fields.
            pub fn to_fields(&self) -> AiFields {
                self.clone().into()
            }

            /// Changes columns through the dense fields (for the few
            /// places that write them, such as tests).
            pub fn update(&mut self, change: impl FnOnce(&mut AiFields)) {
                let mut fields = std::mem::take(self).into();
                change(&mut fields);
                *self = fields.into();
            }
        }

        /// The mapping table, in column order.
        pub const AI_COLUMNS: &[AiColumn] = &[
            $( AiColumn {
                name: stringify!($field),
                ty: <$ty as AiValue>::TYPE,
                keys: &[$($key),+],
                doc: $doc,
            }, )+
        ];

        /// The AI column names, so code names a column by a constant.
        #[allow(non_upper_case_globals)]
        pub mod ai_col {
            $( #[doc = $doc] pub const $field: &str = stringify!($field); )+
        }

        /// Extracts every AI column from a span's and its resource's attributes.
        pub fn extract(
            span_attrs: &[(String, AttrValue)],
            resource_attrs: &[(String, AttrValue)],
        ) -> AiFields {
            AiFields {
                $( $field: first_present(<$ty as AiValue>::TYPE, &[$($key),+], span_attrs, resource_attrs)
                    .flatten()
                    .and_then(<$ty as AiValue>::from_typed), )+
            }
        }

        /// One Arrow builder per AI column.
        pub(crate) struct AiBuilders {
            $( $field: <$ty as AiValue>::Builder, )+
        }

        impl AiBuilders {
            pub(crate) fn new(capacity: usize) -> Self {
                Self { $( $field: <$ty as AiValue>::builder(capacity), )+ }
            }

            pub(crate) fn push(&mut self, ai: &AiFields) {
                $( <$ty as AiValue>::append(&mut self.$field, ai.$field.as_ref()); )+
            }

            /// The columns, in `AI_COLUMNS` order.
            pub(crate) fn finish(self) -> Vec<ArrayRef> {
                vec![ $( <$ty as AiValue>::finish(self.$field), )+ ]
            }
        }

        /// The AI columns of a batch, typed; a column the batch lacks reads as null.
        pub(crate) struct AiReader {
            $( $field: Option<<$ty as AiValue>::Column>, )+
        }

        impl AiReader {
            pub(crate) fn new(batch: &RecordBatch) -> Result<Self, ArrowError> {
                Ok(Self {
                    $( $field: batch
                        .column_by_name(stringify!($field))
                        .map(<$ty as AiValue>::column)
                        .transpose()?, )+
                })
            }

            pub(crate) fn read(&self, row: usize) -> AiFields {
                AiFields {
                    $( $field: self.$field.as_ref().and_then(|c| <$ty as AiValue>::get(c, row)), )+
                }
            }
        }
    };
}
pub(crate) use ai_columns;
