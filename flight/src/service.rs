//! The Flight SQL calls Weft answers: statements (`CommandStatementQuery`),
//! prepared statements with `$n` parameters (created, bound by `DoPut`,
//! executed, closed), the catalog (`GetCatalogs`, `GetDbSchemas`,
//! `GetTables`, `GetTableTypes`), `GetSqlInfo`, and a handshake that takes a
//! token as the basic-auth password. Every call checks the bearer token
//! (`authorization` metadata) and runs on the token's tenant's engine; writes
//! (`DoPut` updates, ingest, transactions) are refused as the engine is
//! read-only.

use std::pin::Pin;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery,
    CommandStatementQuery, DoPutPreparedStatementResult, ProstMessageExt, SqlInfo,
    TicketStatementQuery,
};
use arrow_flight::{
    FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage,
    SchemaAsIpc, Ticket,
};
use datafusion::logical_expr::LogicalPlan;
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};
use weft_auth::{Auth, Role};
use weft_query::{Answer, ErrorKind, QueryEngine, QueryError};

use crate::handle::Handle;

pub(crate) struct FlightSql {
    engine: Arc<QueryEngine>,
    auth: Arc<Auth>,
    info: SqlInfoData,
}

impl FlightSql {
    pub(crate) fn new(engine: Arc<QueryEngine>, auth: Arc<Auth>) -> Self {
        let mut info = SqlInfoDataBuilder::new();
        info.append(SqlInfo::FlightSqlServerName, "Weft");
        info.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
        info.append(SqlInfo::FlightSqlServerArrowVersion, "1.3");
        info.append(SqlInfo::FlightSqlServerReadOnly, true);
        info.append(SqlInfo::FlightSqlServerSql, true);
        info.append(SqlInfo::FlightSqlServerSubstrait, false);
        info.append(SqlInfo::FlightSqlServerTransaction, 0i32);
        info.append(SqlInfo::FlightSqlServerCancel, false);
        // Each value is of the type its key takes: a failure is our bug,
        // met at start, never on a client's request.
        let info = info
            .build()
            .expect("Flight SQL info values match their keys' types");
        Self { engine, auth, info }
    }

    /// The engine of the caller's tenant, once its token allows queries.
    async fn engine<T>(&self, request: &Request<T>) -> Result<Arc<QueryEngine>, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes());
        let caller = self
            .auth
            .check(header, Role::Query)
            .map_err(|denied| status(QueryError::Denied(denied)))?;
        self.engine
            .for_tenant(caller.tenant())
            .await
            .map_err(status)
    }

    async fn plan(&self, engine: &QueryEngine, handle: &Handle) -> Result<LogicalPlan, Status> {
        let plan = engine.plan_sql(&handle.sql).await.map_err(status)?;
        match handle.values()? {
            None => Ok(plan),
            Some(values) => plan
                .replace_params_with_values(&values)
                .map_err(|e| status(QueryError::from(e))),
        }
    }

    /// The `FlightInfo` of a catalog call: its ticket is the command itself.
    async fn describe(
        &self,
        request: Request<FlightDescriptor>,
        command: &impl ProstMessageExt,
        schema: &Schema,
    ) -> Result<Response<FlightInfo>, Status> {
        self.engine(&request).await?;
        flight_info(
            schema,
            command.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    /// Runs `plan` and streams its answer as Flight data.
    async fn stream(
        &self,
        engine: &QueryEngine,
        plan: LogicalPlan,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let answer = engine.run(plan).await.map_err(status)?;
        let schema = Arc::clone(&answer.schema);
        let batches = batches(answer).map_err(|e| FlightError::Tonic(Box::new(e)));
        let data = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(batches)
            .map_err(Status::from);
        Ok(Response::new(Box::pin(data)))
    }
}

/// The gRPC status of a query error: retryable ones are `UNAVAILABLE`.
fn status(e: QueryError) -> Status {
    let message = e.to_string();
    match e.kind() {
        ErrorKind::Invalid => Status::invalid_argument(message),
        ErrorKind::NotFound => Status::not_found(message),
        ErrorKind::Overloaded | ErrorKind::ShuttingDown => Status::unavailable(message),
        ErrorKind::Unauthenticated => Status::unauthenticated(message),
        ErrorKind::Forbidden => Status::permission_denied(message),
        ErrorKind::Internal => Status::internal(message),
    }
}

/// The batches of `answer` as the client reads them; an answer cut by a
/// result cap ends with an error saying so rather than looking complete.
fn batches(answer: Answer) -> impl Stream<Item = Result<RecordBatch, Status>> + Send + 'static {
    futures::stream::unfold(Some(answer), |answer| async move {
        let mut answer = answer?;
        match answer.next_batch().await {
            Ok(Some(batch)) => Some((Ok(batch), Some(answer))),
            Ok(None) => {
                let cut = answer.truncated()?.to_owned();
                Some((
                    Err(Status::out_of_range(format!(
                        "the answer stopped at a result limit: {cut}"
                    ))),
                    None,
                ))
            }
            Err(e) => Some((Err(status(e)), None)),
        }
    })
}

/// A one-batch answer (catalog lists).
fn one_batch(
    schema: SchemaRef,
    batch: Result<RecordBatch, FlightError>,
) -> Response<<FlightSql as FlightService>::DoGetStream> {
    let data = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(futures::stream::once(async move { batch }))
        .map_err(Status::from);
    Response::new(Box::pin(data))
}

fn flight_info(
    schema: &Schema,
    ticket: Vec<u8>,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(format!("encoding the schema: {e}")))?
        .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
        .with_descriptor(descriptor)
        .with_ordered(true);
    Ok(Response::new(info))
}

fn schema_bytes(schema: &Schema) -> Result<bytes::Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: arrow::error::ArrowError| {
            Status::internal(format!("encoding the schema: {e}"))
        })?;
    Ok(bytes)
}

/// The `$n` parameters of `plan`, in order, as a schema (type `Null` where
/// DataFusion could not infer one).
fn parameter_schema(plan: &LogicalPlan) -> Result<Schema, Status> {
    let types = plan
        .get_parameter_types()
        .map_err(|e| status(QueryError::from(e)))?;
    let mut ordered: Vec<(usize, String, Option<DataType>)> = types
        .into_iter()
        .map(|(id, t)| {
            let n = id
                .strip_prefix('$')
                .and_then(|n| n.parse().ok())
                .unwrap_or(usize::MAX);
            (n, id, t)
        })
        .collect();
    ordered.sort_by_key(|(n, _, _)| *n);
    Ok(Schema::new(
        ordered
            .into_iter()
            .map(|(_, id, t)| Field::new(id, t.unwrap_or(DataType::Null), true))
            .collect::<Vec<_>>(),
    ))
}

fn basic_password(header: &str) -> Option<String> {
    use base64::Engine;
    let encoded = header.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (_, password) = text.split_once(':')?;
    Some(password.to_owned())
}

#[tonic::async_trait]
impl FlightSqlService for FlightSql {
    type FlightService = FlightSql;

    /// Basic auth with a token as the password (the user name is not
    /// checked) answers with that token as the bearer header clients then
    /// send; a bearer header is checked as it is.
    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bearer = match header.as_deref().and_then(basic_password) {
            Some(password) => format!("Bearer {password}"),
            None => header.unwrap_or_default(),
        };
        if self.auth.is_enabled() {
            self.auth
                .check(Some(bearer.as_bytes()), Role::Query)
                .map_err(|denied| status(QueryError::Denied(denied)))?;
        }
        let output = futures::stream::iter([Ok(HandshakeResponse {
            protocol_version: 0,
            payload: Default::default(),
        })]);
        let mut response: Response<
            Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>,
        > = Response::new(Box::pin(output));
        if self.auth.is_enabled()
            && let Ok(value) = MetadataValue::try_from(bearer.as_str())
        {
            response.metadata_mut().insert("authorization", value);
        }
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let engine = self.engine(&request).await?;
        let plan = engine.plan_sql(&query.query).await.map_err(status)?;
        let schema = plan.schema().as_arrow().clone();
        let ticket = TicketStatementQuery {
            statement_handle: query.query.into_bytes().into(),
        };
        flight_info(
            &schema,
            ticket.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let engine = self.engine(&request).await?;
        let sql = String::from_utf8(ticket.statement_handle.to_vec())
            .map_err(|_| Status::invalid_argument("the ticket is not one this server made"))?;
        let plan = self.plan(&engine, &Handle::new(sql)).await?;
        self.stream(&engine, plan).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let engine = self.engine(&request).await?;
        let plan = engine.plan_sql(&query.query).await.map_err(status)?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: Handle::new(query.query).encode()?,
            dataset_schema: schema_bytes(plan.schema().as_arrow())?,
            parameter_schema: schema_bytes(&parameter_schema(&plan)?)?,
        })
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        self.engine(&request).await?;
        let mut handle = Handle::decode(&query.prepared_statement_handle)?;
        let mut batches = FlightRecordBatchStream::new_from_flight_data(
            request.into_inner().map_err(FlightError::from),
        );
        let mut parameters: Option<RecordBatch> = None;
        while let Some(batch) = batches.next().await {
            let batch = batch.map_err(|e| {
                Status::invalid_argument(format!("the parameters are not Arrow data: {e}"))
            })?;
            if batch.num_rows() == 0 {
                continue;
            }
            if parameters.is_some() || batch.num_rows() > 1 {
                return Err(Status::invalid_argument(
                    "bind one row of parameters at a time; run the statement once per row",
                ));
            }
            parameters = Some(batch);
        }
        handle.parameters = parameters;
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(handle.encode()?),
        })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let engine = self.engine(&request).await?;
        let handle = Handle::decode(&query.prepared_statement_handle)?;
        let plan = self.plan(&engine, &handle).await?;
        let schema = plan.schema().as_arrow().clone();
        flight_info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let engine = self.engine(&request).await?;
        let handle = Handle::decode(&query.prepared_statement_handle)?;
        let plan = self.plan(&engine, &handle).await?;
        self.stream(&engine, plan).await
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<(), Status> {
        // Handles hold no server state: nothing to free.
        self.engine(&request).await?;
        Ok(())
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        self.describe(request, &query, &schema).await
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let engine = self.engine(&request).await?;
        let mut builder = query.into_builder();
        let mut catalogs: Vec<String> = engine
            .tables()
            .await
            .map_err(status)?
            .into_iter()
            .map(|t| t.catalog)
            .collect();
        catalogs.dedup();
        for catalog in catalogs {
            builder.append(catalog);
        }
        Ok(one_batch(builder.schema(), builder.build()))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        self.describe(request, &query, &schema).await
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let engine = self.engine(&request).await?;
        let mut builder = query.into_builder();
        let mut schemas: Vec<(String, String)> = engine
            .tables()
            .await
            .map_err(status)?
            .into_iter()
            .map(|t| (t.catalog, t.schema))
            .collect();
        schemas.dedup();
        for (catalog, schema) in schemas {
            builder.append(catalog, schema);
        }
        Ok(one_batch(builder.schema(), builder.build()))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        self.describe(request, &query, &schema).await
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let engine = self.engine(&request).await?;
        let mut builder = query.into_builder();
        for table in engine.tables().await.map_err(status)? {
            builder
                .append(
                    &table.catalog,
                    &table.schema,
                    &table.name,
                    table.table_type,
                    &table.arrow_schema,
                )
                .map_err(|e| Status::internal(format!("listing tables: {e}")))?;
        }
        Ok(one_batch(builder.schema(), builder.build()))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = Schema::new(vec![Field::new("table_type", DataType::Utf8, false)]);
        self.describe(request, &query, &schema).await
    }

    async fn do_get_table_types(
        &self,
        _query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.engine(&request).await?;
        let schema = Arc::new(Schema::new(vec![Field::new(
            "table_type",
            DataType::Utf8,
            false,
        )]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(arrow::array::StringArray::from(vec![
                "TABLE", "VIEW",
            ]))],
        )
        .map_err(FlightError::Arrow);
        Ok(one_batch(schema, batch))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(&self.info).schema();
        self.describe(request, &query, &schema).await
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.engine(&request).await?;
        let builder = query.into_builder(&self.info);
        Ok(one_batch(builder.schema(), builder.build()))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
