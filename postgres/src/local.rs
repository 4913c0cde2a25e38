//! Statements answered without the engine: transactions (Weft only reads, so
//! `BEGIN`/`COMMIT`/`ROLLBACK` only say so), `SET` (kept for this connection,
//! never in the shared DataFusion session) and `SHOW` of the settings
//! PostgreSQL clients ask for on connect.

use std::collections::HashMap;

use datafusion::sql::sqlparser::ast::{Expr, Set, Statement, Value};

/// A statement of this module's.
#[derive(Debug, Clone)]
pub(crate) enum Local {
    Begin,
    Commit,
    Rollback,
    /// `SET name = value`: the lower-cased name and the value as text
    /// (`None` for the forms only acknowledged, like `SET NAMES`).
    Set(Option<(String, String)>),
    /// `SHOW name`.
    Show(String),
    /// Accepted and ignored, answered with this command tag
    /// (`DISCARD ALL`, `DEALLOCATE`).
    Ignored(&'static str),
}

/// Settings are kept in the connection's metadata under this prefix, so no
/// `SET` can reach another key (the tenant, the user).
const SET_PREFIX: &str = "set.";

/// What `statement` is, when this module answers it; `None` for the engine.
pub(crate) fn classify(statement: &Statement, metadata: &HashMap<String, String>) -> Option<Local> {
    match statement {
        Statement::StartTransaction { .. } => Some(Local::Begin),
        Statement::Commit { .. } => Some(Local::Commit),
        Statement::Rollback { .. } => Some(Local::Rollback),
        Statement::Discard { .. } => Some(Local::Ignored("DISCARD ALL")),
        Statement::Deallocate { .. } => Some(Local::Ignored("DEALLOCATE")),
        Statement::Set(set) => Some(Local::Set(assignment(set))),
        Statement::ShowVariable { variable } => {
            let name = variable
                .iter()
                .map(|i| i.value.to_lowercase())
                .collect::<Vec<_>>()
                .join(" ");
            // Anything else (`SHOW ALL`, DataFusion's settings) the engine answers.
            show(&name, metadata).map(|_| Local::Show(name))
        }
        _ => None,
    }
}

fn assignment(set: &Set) -> Option<(String, String)> {
    match set {
        Set::SingleAssignment {
            variable, values, ..
        } => {
            let value = values.iter().map(value_text).collect::<Vec<_>>().join(", ");
            Some((variable.to_string().to_lowercase(), value))
        }
        Set::SetTimeZone { value, .. } => Some(("timezone".to_owned(), value_text(value))),
        _ => None,
    }
}

fn value_text(expr: &Expr) -> String {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
            other => other.to_string(),
        },
        other => other.to_string(),
    }
}

/// Keeps a `SET` for this connection.
pub(crate) fn remember(metadata: &mut HashMap<String, String>, name: &str, value: &str) {
    metadata.insert(format!("{SET_PREFIX}{name}"), value.to_owned());
}

/// The value `SHOW name` gives: what this connection set, else the server's.
pub(crate) fn show(name: &str, metadata: &HashMap<String, String>) -> Option<String> {
    if let Some(value) = metadata.get(&format!("{SET_PREFIX}{name}")) {
        return Some(value.clone());
    }
    if name == "application_name" {
        return Some(
            metadata
                .get(pgwire::api::METADATA_APPLICATION_NAME)
                .cloned()
                .unwrap_or_default(),
        );
    }
    weft_query::pg_catalog::setting(name).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use datafusion_pg_catalog::sql::PostgresCompatibilityParser;

    fn local(sql: &str, metadata: &HashMap<String, String>) -> Option<Local> {
        let statements = PostgresCompatibilityParser::new().parse(sql).unwrap();
        classify(&statements[0], metadata)
    }

    #[test]
    fn settings_stay_with_the_connection_under_their_prefix() {
        let mut metadata = HashMap::new();
        let Some(Local::Set(Some((name, value)))) = local("SET extra_float_digits = 3", &metadata)
        else {
            panic!("SET not recognised");
        };
        assert_eq!((name.as_str(), value.as_str()), ("extra_float_digits", "3"));
        remember(&mut metadata, &name, &value);
        assert_eq!(show("extra_float_digits", &metadata).as_deref(), Some("3"));
        // A SET cannot reach the keys the server keeps (the tenant).
        let Some(Local::Set(Some((name, value)))) =
            local("SET \"weft.tenant\" = 'other'", &metadata)
        else {
            panic!("SET not recognised");
        };
        remember(&mut metadata, &name, &value);
        assert!(!metadata.contains_key("weft.tenant"));
        assert!(matches!(
            local("SET TIME ZONE 'UTC'", &metadata),
            Some(Local::Set(Some(_)))
        ));
    }

    #[test]
    fn transactions_and_show_are_local_and_queries_are_not() {
        let metadata = HashMap::new();
        assert!(matches!(local("BEGIN", &metadata), Some(Local::Begin)));
        assert!(matches!(local("COMMIT", &metadata), Some(Local::Commit)));
        assert!(matches!(
            local("ROLLBACK", &metadata),
            Some(Local::Rollback)
        ));
        assert!(
            matches!(local("SHOW search_path", &metadata), Some(Local::Show(n)) if n == "search_path")
        );
        assert!(matches!(
            local("SHOW TRANSACTION ISOLATION LEVEL", &metadata),
            Some(Local::Show(_))
        ));
        assert!(local("SHOW datafusion.execution.batch_size", &metadata).is_none());
        assert!(local("SELECT 1", &metadata).is_none());
    }
}
