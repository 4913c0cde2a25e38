//! PostgreSQL compatibility of the SQL surface: `pg_catalog` (from
//! `datafusion-pg-catalog`), which psql, DBeaver and Grafana query on
//! connect, and `current_setting(name)` over the server's settings as
//! [`setting`] gives them (a connection's own `SET`s are the PostgreSQL
//! listener's, for `SHOW`).

use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::DataType;
use arrow::datatypes::SchemaRef;
use datafusion::catalog::CatalogProviderList;
use datafusion::common::cast::as_string_array;
use datafusion::datasource::TableType;
use datafusion::error::DataFusionError;
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArgumentList, FunctionArguments, Ident, ObjectName, OrderBy, OrderByKind, Query,
    SelectItem, SetExpr, Statement, TableAliasColumnDef, TableFactor, TableFunctionArgs,
    UnaryOperator, VisitMut, VisitorMut, visit_expressions_mut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion_pg_catalog::pg_catalog::catalog_info::CatalogInfo;
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_pg_catalog::pg_catalog::{PgCatalogSchemaProvider, PgCatalogStaticTables};
use std::ops::ControlFlow;
use std::sync::Weak;

use crate::error::QueryError;

/// The version PostgreSQL clients are told (they parse the leading number).
pub const SERVER_VERSION: &str = concat!("16.6 (Weft ", env!("CARGO_PKG_VERSION"), ")");

/// A server setting as PostgreSQL names it, for `SHOW` and `current_setting`.
pub fn setting(name: &str) -> Option<&'static str> {
    Some(match name.to_ascii_lowercase().as_str() {
        "server_version" => SERVER_VERSION,
        "server_version_num" => "160006",
        "transaction_isolation"
        | "default_transaction_isolation"
        | "transaction isolation level" => "read committed",
        "transaction_read_only" | "default_transaction_read_only" => "on",
        "timezone" | "time zone" | "log_timezone" => "UTC",
        "datestyle" => "ISO, MDY",
        "intervalstyle" => "postgres",
        "search_path" => "public",
        "standard_conforming_strings" | "integer_datetimes" => "on",
        "client_encoding" | "server_encoding" => "UTF8",
        "lc_collate" | "lc_ctype" => "C",
        "max_identifier_length" => "63",
        "is_superuser" => "off",
        "bytea_output" => "hex",
        "extra_float_digits" => "1",
        "client_min_messages" => "notice",
        _ => return None,
    })
}

/// The session's catalogs as `pg_catalog` reads them, held weakly: the
/// `pg_catalog` schema lives in those catalogs, and a strong reference back
/// would be a cycle that keeps the session — and the store its tables read,
/// with the WAL lock — alive after the engine is dropped.
#[derive(Clone, Debug)]
struct WeakCatalogs(Weak<dyn CatalogProviderList>);

impl WeakCatalogs {
    fn get(&self) -> Option<Arc<dyn CatalogProviderList>> {
        self.0.upgrade()
    }
}

#[async_trait::async_trait]
impl CatalogInfo for WeakCatalogs {
    async fn catalog_names(&self) -> datafusion::error::Result<Vec<String>> {
        match self.get() {
            Some(list) => list.catalog_names().await,
            None => Ok(Vec::new()),
        }
    }

    async fn schema_names(&self, catalog: &str) -> datafusion::error::Result<Option<Vec<String>>> {
        match self.get() {
            Some(list) => list.schema_names(catalog).await,
            None => Ok(None),
        }
    }

    async fn table_names(
        &self,
        catalog: &str,
        schema: &str,
    ) -> datafusion::error::Result<Option<Vec<String>>> {
        match self.get() {
            Some(list) => list.table_names(catalog, schema).await,
            None => Ok(None),
        }
    }

    async fn table_schema(
        &self,
        catalog: &str,
        schema: &str,
        table: &str,
    ) -> datafusion::error::Result<Option<SchemaRef>> {
        match self.get() {
            Some(list) => list.table_schema(catalog, schema, table).await,
            None => Ok(None),
        }
    }

    async fn table_type(
        &self,
        catalog: &str,
        schema: &str,
        table: &str,
    ) -> datafusion::error::Result<Option<TableType>> {
        match self.get() {
            Some(list) => list.table_type(catalog, schema, table).await,
            None => Ok(None),
        }
    }
}

/// The session's one catalog: the database PostgreSQL clients see (psql's
/// `\\l`, `current_database()`), and Flight SQL's catalog.
pub(crate) const CATALOG: &str = "weft";

/// Installs `pg_catalog` and `current_setting()` on `ctx`.
pub(crate) fn register(ctx: &SessionContext) -> Result<(), QueryError> {
    let failed =
        |e: &dyn std::fmt::Display| QueryError::Internal(format!("cannot set up pg_catalog: {e}"));
    // The session's own default catalog: the engine names it [`CATALOG`].
    let catalog = ctx
        .state()
        .config()
        .options()
        .catalog
        .default_catalog
        .clone();
    datafusion_pg_catalog::setup_pg_catalog(ctx, &catalog, EmptyContextProvider)
        .map_err(|e| failed(&e))?;
    // The schema `setup_pg_catalog` registered holds the catalogs strongly
    // (a cycle); the same provider over a weak reference replaces it.
    let catalogs = WeakCatalogs(Arc::downgrade(ctx.state().catalog_list()));
    let static_tables = Arc::new(PgCatalogStaticTables::try_new().map_err(|e| failed(&e))?);
    let provider = PgCatalogSchemaProvider::try_new(catalogs, static_tables, EmptyContextProvider)
        .map_err(|e| failed(&e))?;
    ctx.catalog(&catalog)
        .ok_or_else(|| failed(&"no default catalog"))?
        .register_schema("pg_catalog", Arc::new(provider))
        .map_err(|e| failed(&e))?;
    ctx.register_udf(create_udf(
        "current_setting",
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(current_setting),
    ));
    Ok(())
}

/// PostgreSQL's functions in FROM, which DataFusion lacks and Grafana's
/// search-path query uses: `FROM f(args) AS s` with `f` a scalar function is
/// one row whose one column is `s`; a single-column table function
/// (`generate_series(…) AS i`) names its column after the alias. Rewritten
/// on the syntax tree (the arguments move as they are, never through text).
pub(crate) fn functions_in_from(statement: &mut Statement, ctx: &SessionContext) {
    struct Rewrite<'a> {
        ctx: &'a SessionContext,
    }
    impl VisitorMut for Rewrite<'_> {
        type Break = ();
        // PostgreSQL's `user` (a keyword for the session's user name).
        fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
            if let Expr::Function(f) = expr
                && matches!(f.args, FunctionArguments::None)
                && f.name.to_string().eq_ignore_ascii_case("user")
            {
                f.name = ObjectName::from(vec![Ident::new("session_user")]);
                f.args = FunctionArguments::List(FunctionArgumentList {
                    duplicate_treatment: None,
                    args: Vec::new(),
                    clauses: Vec::new(),
                });
            }
            ControlFlow::Continue(())
        }
        fn post_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
            let TableFactor::Table {
                name,
                alias: Some(alias),
                args: Some(args),
                ..
            } = factor
            else {
                return ControlFlow::Continue(());
            };
            if !alias.columns.is_empty() {
                return ControlFlow::Continue(());
            }
            let function = name.to_string().to_ascii_lowercase();
            if matches!(function.as_str(), "generate_series" | "range") {
                alias.columns = vec![TableAliasColumnDef::from_name(alias.name.value.clone())];
            } else if self.ctx.udf(&function).is_ok()
                && let Some(row) = one_row(name, args, &alias.name)
            {
                *factor = TableFactor::Derived {
                    lateral: false,
                    subquery: Box::new(row),
                    alias: Some(alias.clone()),
                    sample: None,
                };
            }
            ControlFlow::Continue(())
        }
    }
    let _ = statement.visit(&mut Rewrite { ctx });
}

/// `x [NOT] IN (subquery)` in a select list or `ORDER BY`, which DataFusion
/// plans only in filters and Grafana's table list uses in both:
/// rewritten to `[NOT] coalesce(array_has((SELECT array_agg(v) FROM
/// (subquery) AS weft_in(v)), x), false)`, a scalar subquery DataFusion runs
/// anywhere. (An empty subquery gives false, as `IN` does; a null among its
/// values does not make the answer null.) In `WHERE` and `JOIN` the native
/// plan is kept.
pub(crate) fn in_subqueries_outside_filters(statement: &mut Statement) {
    struct Rewrite;
    impl VisitorMut for Rewrite {
        type Break = ();
        fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
            if let SetExpr::Select(select) = query.body.as_mut() {
                for item in &mut select.projection {
                    if let SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } =
                        item
                    {
                        rewrite_in_subqueries(e);
                    }
                }
            }
            if let Some(OrderBy {
                kind: OrderByKind::Expressions(exprs),
                ..
            }) = query.order_by.as_mut()
            {
                for e in exprs {
                    rewrite_in_subqueries(&mut e.expr);
                }
            }
            ControlFlow::Continue(())
        }
    }
    let _ = statement.visit(&mut Rewrite);
}

fn rewrite_in_subqueries(expr: &mut Expr) {
    let _ = visit_expressions_mut(expr, |e| {
        if let Expr::InSubquery {
            expr,
            subquery,
            negated,
        } = e
            && let Some(member) = member_of(expr, subquery, *negated)
        {
            *e = member;
        }
        ControlFlow::<()>::Continue(())
    });
}

/// The `coalesce(array_has(…))` expression of [`in_subqueries_outside_filters`],
/// built from a parsed template with `expr` and `subquery` moved in.
fn member_of(expr: &Expr, subquery: &Query, negated: bool) -> Option<Expr> {
    const TEMPLATE: &str = "SELECT coalesce(array_has((SELECT array_agg(weft_in.v) \
                            FROM (SELECT 1) AS weft_in(v)), weft_in_member), false)";
    let mut parsed = Parser::parse_sql(&PostgreSqlDialect {}, TEMPLATE).ok()?;
    let Some(Statement::Query(mut query)) = parsed.pop() else {
        return None;
    };
    let SetExpr::Select(select) = query.body.as_mut() else {
        return None;
    };
    let Some(SelectItem::UnnamedExpr(mut member)) = select.projection.pop() else {
        return None;
    };
    struct Fill<'a> {
        expr: &'a Expr,
        subquery: &'a Query,
    }
    impl VisitorMut for Fill<'_> {
        type Break = ();
        fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
            if matches!(e, Expr::Identifier(id) if id.value == "weft_in_member") {
                *e = self.expr.clone();
            }
            ControlFlow::Continue(())
        }
        fn post_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
            if let TableFactor::Derived { subquery, .. } = factor {
                **subquery = self.subquery.clone();
            }
            ControlFlow::Continue(())
        }
    }
    let _ = member.visit(&mut Fill { expr, subquery });
    Some(if negated {
        Expr::UnaryOp {
            op: UnaryOperator::Not,
            expr: Box::new(Expr::Nested(Box::new(member))),
        }
    } else {
        member
    })
}

/// `SELECT name(args) AS column`.
fn one_row(name: &ObjectName, args: &TableFunctionArgs, column: &Ident) -> Option<Query> {
    let mut template = Parser::parse_sql(&PostgreSqlDialect {}, "SELECT f() AS c").ok()?;
    let Some(Statement::Query(mut query)) = template.pop() else {
        return None;
    };
    let SetExpr::Select(select) = query.body.as_mut() else {
        return None;
    };
    let Some(SelectItem::ExprWithAlias {
        expr: Expr::Function(function),
        alias,
    }) = select.projection.first_mut()
    else {
        return None;
    };
    function.name = name.clone();
    function.args = FunctionArguments::List(FunctionArgumentList {
        duplicate_treatment: None,
        args: args.args.clone(),
        clauses: Vec::new(),
    });
    *alias = column.clone();
    Some(*query)
}

fn unknown(name: &str) -> DataFusionError {
    DataFusionError::Plan(format!("unrecognized configuration parameter \"{name}\""))
}

fn current_setting(args: &[ColumnarValue]) -> datafusion::error::Result<ColumnarValue> {
    match args {
        [ColumnarValue::Scalar(ScalarValue::Utf8(name))] => {
            let value = match name {
                None => None,
                Some(name) => Some(setting(name).ok_or_else(|| unknown(name))?.to_owned()),
            };
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(value)))
        }
        [ColumnarValue::Array(names)] => {
            let names = as_string_array(names)?;
            let values = names
                .iter()
                .map(|name| {
                    name.map(|n| setting(n).ok_or_else(|| unknown(n)))
                        .transpose()
                })
                .collect::<datafusion::error::Result<StringArray>>()?;
            Ok(ColumnarValue::Array(Arc::new(values) as ArrayRef))
        }
        _ => Err(DataFusionError::Plan(
            "current_setting takes one setting name".to_owned(),
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use arrow::array::Array;

    #[tokio::test]
    async fn current_setting_answers_server_settings_and_refuses_unknown_ones() {
        let ctx = SessionContext::new();
        register(&ctx).unwrap();
        let batches = ctx
            .sql("SELECT current_setting('search_path') AS p, current_setting('server_version_num') AS v")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let p = batches[0]
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        let v = batches[0]
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!((p.value(0), v.value(0)), ("public", "160006"));
        let err = ctx
            .sql("SELECT current_setting('no_such_thing')")
            .await
            .and_then(|df| futures::executor::block_on(df.collect()))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("unrecognized configuration parameter"),
            "{err}"
        );
        assert!(p.len() == 1 && !p.is_null(0));
    }

    #[tokio::test]
    async fn a_dropped_engine_releases_its_source_despite_pg_catalog() {
        use crate::table::{SpanSource, StaticSource};
        let source: Arc<dyn SpanSource> = Arc::new(StaticSource(Default::default()));
        let engine = crate::QueryEngine::new(Arc::clone(&source), Default::default())
            .await
            .unwrap();
        let listed = engine
            .sql("SELECT count(*) FROM pg_catalog.pg_class")
            .await
            .unwrap();
        assert_eq!(listed.num_rows(), 1);
        assert!(Arc::strong_count(&source) > 1);
        drop(engine);
        // A cycle through pg_catalog would keep the session and its tables
        // (for a store: the WAL lock) alive.
        assert_eq!(Arc::strong_count(&source), 1);
    }

    async fn run(ctx: &SessionContext, sql: &str) -> Vec<String> {
        let mut statement = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0);
        functions_in_from(&mut statement, ctx);
        in_subqueries_outside_filters(&mut statement);
        let plan = ctx
            .state()
            .statement_to_plan(datafusion::sql::parser::Statement::Statement(Box::new(
                statement,
            )))
            .await
            .unwrap();
        let batches = ctx
            .execute_logical_plan(plan)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        batches
            .iter()
            .flat_map(|b| {
                let column = arrow::compute::cast(b.column(0), &DataType::Utf8).unwrap();
                let text = column.as_any().downcast_ref::<StringArray>().unwrap();
                text.iter()
                    .map(|v| v.unwrap_or("NULL").to_owned())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[tokio::test]
    async fn in_subqueries_in_select_lists_and_order_by_run() {
        let ctx = SessionContext::new();
        register(&ctx).unwrap();
        ctx.sql("CREATE TABLE t (a TEXT) AS VALUES ('x'), ('y'), ('z')")
            .await
            .unwrap();
        // In the select list and ORDER BY, negated, nested, and empty.
        assert_eq!(
            run(
                &ctx,
                "SELECT CASE WHEN a IN (SELECT 'y' UNION ALL SELECT 'z') THEN a ELSE 'other.' || a END \
                 FROM t ORDER BY CASE WHEN a NOT IN (SELECT 'z') THEN 0 ELSE 1 END, 1"
            )
            .await,
            ["other.x", "y", "z"]
        );
        assert_eq!(
            run(
                &ctx,
                "SELECT a IN (SELECT a FROM t WHERE a IN (SELECT 'x')) FROM t ORDER BY a"
            )
            .await,
            ["true", "false", "false"]
        );
        assert_eq!(
            run(
                &ctx,
                "SELECT a IN (SELECT 'q' WHERE false) FROM t ORDER BY a"
            )
            .await,
            ["false", "false", "false"]
        );
    }

    #[tokio::test]
    async fn functions_in_from_are_one_row_or_name_their_column() {
        let ctx = SessionContext::new();
        register(&ctx).unwrap();
        let sql = "SELECT trim(s[i]) AS schema, user AS who FROM generate_series(\
                   array_lower(string_to_array('public, other', ','), 1), \
                   array_upper(string_to_array('public, other', ','), 1)) AS i, \
                   string_to_array('public, other', ',') s ORDER BY i";
        assert_eq!(run(&ctx, sql).await, ["public", "other"]);
    }
}
