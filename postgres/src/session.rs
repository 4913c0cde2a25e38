//! The simple and extended query protocols: each statement is parsed with
//! PostgreSQL's rewrites, answered by [`crate::local`] or planned and run by
//! the connection's tenant's engine (read-only, with the query API's limits);
//! `$n` parameters are bound to the plan, never spliced into SQL text.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use async_trait::async_trait;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::sql::sqlparser::ast::Statement;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser as SqlParser;
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use futures::Sink;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::response::TransactionStatus;
use pgwire::types::format::FormatOptions;
use weft_query::{QueryEngine, QueryError};

use crate::cancel::StatementCancel;
use crate::local::{self, Local};
use crate::rows;
use crate::startup::TENANT;

/// A parsed statement, kept between Parse and Execute.
#[derive(Debug, Clone)]
pub(crate) enum Prepared {
    Local(Local),
    /// A read-only plan, maybe with `$n` placeholders.
    Plan(Box<LogicalPlan>),
}

pub(crate) struct Session {
    parser: Arc<Parser>,
}

pub(crate) struct Parser {
    engine: Arc<QueryEngine>,
    sql: PostgresCompatibilityParser,
}

impl Session {
    pub(crate) fn new(engine: Arc<QueryEngine>) -> Self {
        Self {
            parser: Arc::new(Parser {
                engine,
                sql: PostgresCompatibilityParser::new(),
            }),
        }
    }
}

fn user_error(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        code.to_owned(),
        message.into(),
    )))
}

impl Parser {
    /// The engine of the connection's tenant (every tenant's for a token
    /// without one, or with authentication off).
    async fn engine(&self, client: &(impl ClientInfo + ?Sized)) -> PgWireResult<Arc<QueryEngine>> {
        let tenant = client.metadata().get(TENANT).map(String::as_str);
        self.engine.for_tenant(tenant).await.map_err(rows::error)
    }

    /// The statements of `sql`, bounded like `/api/sql`'s before parsing.
    /// Each comes as written (with the compatibility rewrites) and, when it
    /// differs, as `datafusion-pg-catalog`'s list of known client queries
    /// replaces it: that list stubs out queries DataFusion could not plan,
    /// some of which Weft plans (Grafana's search-path test), so the
    /// statement as written is tried first.
    fn statements(&self, sql: &str) -> PgWireResult<Vec<(Statement, Option<Statement>)>> {
        crate::oversize::refusal(sql)?;
        weft_query::check_depth(sql).map_err(rows::error)?;
        let compat = self
            .sql
            .parse(sql)
            .map_err(|e| rows::error(QueryError::Sql(e.to_string())))?;
        let written = SqlParser::parse_sql(&PostgreSqlDialect {}, sql)
            .ok()
            .filter(|w| w.len() == compat.len());
        Ok(match written {
            None => compat.into_iter().map(|c| (c, None)).collect(),
            Some(written) => written
                .into_iter()
                .map(|w| self.sql.rewrite(w))
                .zip(compat)
                .map(|(w, c)| if w == c { (w, None) } else { (w, Some(c)) })
                .collect(),
        })
    }

    async fn prepare(
        &self,
        client: &(impl ClientInfo + ?Sized),
        (statement, stubbed): (Statement, Option<Statement>),
    ) -> PgWireResult<Prepared> {
        if let Some(local) = local::classify(&statement, client.metadata()) {
            return Ok(Prepared::Local(local));
        }
        let engine = self.engine(client).await?;
        let plan = match engine.plan_statement(statement).await {
            Ok(plan) => plan,
            Err(e) => match stubbed {
                Some(stubbed) => engine
                    .plan_statement(stubbed)
                    .await
                    .map_err(|_| rows::error(e))?,
                None => return Err(rows::error(e)),
            },
        };
        Ok(Prepared::Plan(Box::new(plan)))
    }
}

/// A statement other than COMMIT/ROLLBACK after a failed one in a
/// transaction is refused, as PostgreSQL does.
fn refuse_in_failed_transaction(
    client: &(impl ClientInfo + ?Sized),
    prepared: &Prepared,
) -> PgWireResult<()> {
    if client.transaction_status() == TransactionStatus::Error
        && !matches!(prepared, Prepared::Local(Local::Commit | Local::Rollback))
    {
        return Err(user_error(
            "25P02",
            "current transaction is aborted, commands ignored until end of transaction block \
             (send ROLLBACK)",
        ));
    }
    Ok(())
}

/// The one-row answer of `SHOW name`.
fn show_batch(name: &str, value: String) -> PgWireResult<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![Field::new(name, DataType::Utf8, true)]));
    RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(vec![value]))])
        .map_err(|e| rows::error(e.into()))
}

/// Answers a [`Local`] statement.
fn respond_local<C: ClientInfo + ?Sized>(
    client: &mut C,
    local: &Local,
    format: &Format,
) -> PgWireResult<Response> {
    Ok(match local {
        Local::Begin => Response::TransactionStart(Tag::new("BEGIN")),
        Local::Commit => Response::TransactionEnd(Tag::new("COMMIT")),
        Local::Rollback => Response::TransactionEnd(Tag::new("ROLLBACK")),
        Local::Ignored(tag) => Response::Execution(Tag::new(tag)),
        Local::Set(assignment) => {
            if let Some((name, value)) = assignment {
                local::remember(client.metadata_mut(), name, value);
            }
            Response::Execution(Tag::new("SET"))
        }
        Local::Show(name) => {
            let value = local::show(name, client.metadata()).unwrap_or_default();
            let batch = show_batch(name, value)?;
            let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
            let fields = Arc::new(rows::fields(&batch.schema(), format, options)?);
            let rows: Vec<_> =
                arrow_pg::datatypes::encode_recordbatch(Arc::clone(&fields), batch).collect();
            Response::Query(QueryResponse::new(fields, futures::stream::iter(rows)))
        }
    })
}

/// Runs a bound plan on the connection's engine and streams its rows.
async fn run<C: ClientInfo + ?Sized>(
    engine: &QueryEngine,
    client: &C,
    plan: LogicalPlan,
    format: &Format,
) -> PgWireResult<Response> {
    let mut cancel = StatementCancel::start(client);
    let answer = tokio::select! {
        answer = engine.run(plan) => answer.map_err(rows::error)?,
        () = cancel.cancelled() => return Err(rows::cancelled()),
    };
    let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
    let fields = Arc::new(rows::fields(&answer.schema, format, options)?);
    Ok(Response::Query(QueryResponse::new(
        Arc::clone(&fields),
        rows::stream(answer, fields, cancel),
    )))
}

#[async_trait]
impl SimpleQueryHandler for Session {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statements = self.parser.statements(query)?;
        if statements.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        let mut responses = Vec::with_capacity(statements.len());
        for statement in statements {
            let prepared = self.parser.prepare(&*client, statement).await?;
            refuse_in_failed_transaction(&*client, &prepared)?;
            let response = match prepared {
                Prepared::Local(local) => respond_local(client, &local, &Format::UnifiedText)?,
                Prepared::Plan(plan) => {
                    let engine = self.parser.engine(&*client).await?;
                    run(&engine, &*client, *plan, &Format::UnifiedText).await?
                }
            };
            responses.push(response);
        }
        Ok(responses)
    }
}

/// The `$n` placeholders of `plan` in order, with the type DataFusion
/// inferred (from a compared column, or an explicit `$1::type` cast).
fn parameters(plan: &LogicalPlan) -> PgWireResult<Vec<Option<DataType>>> {
    let mut types: HashMap<String, Option<DataType>> =
        plan.get_parameter_types().map_err(rows::datafusion_error)?;
    if types.values().any(Option::is_none) {
        let _ = plan.apply(|node| {
            for expr in node.expressions() {
                let _ = expr.apply(|e| {
                    if let Expr::Cast(cast) = e
                        && let Expr::Placeholder(p) = cast.expr.as_ref()
                        && let Some(slot @ None) = types.get_mut(&p.id)
                    {
                        *slot = Some(cast.field.data_type().clone());
                    }
                    Ok(TreeNodeRecursion::Continue)
                });
            }
            Ok(TreeNodeRecursion::Continue)
        });
    }
    let mut ordered: Vec<(usize, Option<DataType>)> = Vec::with_capacity(types.len());
    for (id, data_type) in types {
        let n = id
            .strip_prefix('$')
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| {
                user_error(
                    "42P02",
                    format!("parameter {id} is not $1, $2, …; number the parameters"),
                )
            })?;
        ordered.push((n, data_type));
    }
    ordered.sort_by_key(|(n, _)| *n);
    Ok(ordered.into_iter().map(|(_, t)| t).collect())
}

fn wire_types(types: &[Option<DataType>]) -> Vec<Type> {
    types
        .iter()
        .map(|t| {
            t.as_ref()
                .and_then(|t| arrow_pg::datatypes::into_pg_type(t).ok())
                .unwrap_or(Type::UNKNOWN)
        })
        .collect()
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let mut statements = self.statements(sql)?;
        if statements.len() > 1 {
            return Err(user_error(
                "42601",
                "cannot insert multiple commands into a prepared statement; send one at a time",
            ));
        }
        let Some(statement) = statements.pop() else {
            return Ok(None);
        };
        Ok(Some(self.prepare(client, statement).await?))
    }

    fn get_parameter_types(&self, statement: &Prepared) -> PgWireResult<Vec<Type>> {
        match statement {
            Prepared::Plan(plan) => Ok(wire_types(&parameters(plan)?)),
            Prepared::Local(_) => Ok(Vec::new()),
        }
    }

    fn get_result_schema(
        &self,
        statement: &Prepared,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        let format = format.unwrap_or(&Format::UnifiedText);
        let options = Arc::new(FormatOptions::default());
        match statement {
            Prepared::Plan(plan) => rows::fields(plan.schema().as_arrow(), format, options),
            Prepared::Local(Local::Show(name)) => rows::fields(
                &Schema::new(vec![Field::new(name, DataType::Utf8, true)]),
                format,
                options,
            ),
            Prepared::Local(_) => Ok(Vec::new()),
        }
    }
}

#[async_trait]
impl ExtendedQueryHandler for Session {
    type Statement = Prepared;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        Arc::clone(&self.parser)
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let prepared = &portal.statement.statement;
        refuse_in_failed_transaction(&*client, prepared)?;
        match prepared {
            Prepared::Local(local) => respond_local(client, local, &portal.result_column_format),
            Prepared::Plan(plan) => {
                let types = parameters(plan)?;
                let inferred: Vec<Option<&DataType>> = types.iter().map(Option::as_ref).collect();
                let wire = wire_types(&types);
                let wire: Vec<Option<&Type>> = wire.iter().map(Some).collect();
                let values = arrow_pg::datatypes::df::deserialize_parameters_with_server_types(
                    portal, &inferred, &wire,
                )?;
                let bound = plan
                    .as_ref()
                    .clone()
                    .replace_params_with_values(&values)
                    .map_err(rows::datafusion_error)?;
                let engine = self.parser.engine(&*client).await?;
                run(&engine, &*client, bound, &portal.result_column_format).await
            }
        }
    }
}
