//! Which of the three Delta tables (spans, structure, links): their
//! directories, names, schemas and partition column. Below `storage`,
//! `parquet_files` and `tables`, which all name tables by it.

use arrow::datatypes::SchemaRef;
use weft_schemas::{links_schema, span_schema, structure_schema};

/// The partition column of every table: the UTC day of the row's `start_time`.
pub(crate) const DAY: &str = "day";

/// Which of the three tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum TableKind {
    Spans,
    Structure,
    Links,
}

impl TableKind {
    pub(crate) const ALL: [TableKind; 3] =
        [TableKind::Spans, TableKind::Structure, TableKind::Links];

    /// The table's directory under the data location.
    pub(crate) fn dir(self) -> &'static str {
        match self {
            TableKind::Spans => "spans",
            TableKind::Structure => "structure",
            TableKind::Links => "links",
        }
    }

    /// The table's name, as SQL and the Delta metadata call it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            TableKind::Spans => "spans",
            TableKind::Structure => "span_structure",
            TableKind::Links => "span_links",
        }
    }

    /// The Arrow schema of its files.
    pub(crate) fn schema(self) -> SchemaRef {
        match self {
            TableKind::Spans => span_schema(),
            TableKind::Structure => structure_schema(),
            TableKind::Links => links_schema(),
        }
    }

    pub(crate) fn comment(self) -> &'static str {
        match self {
            TableKind::Spans => "Weft: one row per OpenTelemetry span",
            TableKind::Structure => {
                "Weft: where each span sits in its trace (nested sets), one generation per settling"
            }
            TableKind::Links => "Weft: one row per span link, by the span linked to",
        }
    }
}
