//! A conversation in SQL: `conversation('<id>')`, one row per workflow of the
//! conversation (`gen_ai.conversation.id` or `session.id`), oldest first, with
//! its summary — the sessions view of Phoenix and Langfuse as a table that
//! joins with everything else. It lists through
//! [`crate::workflows::conversation_workflows`], the same code as
//! `GET /api/workflows?conversation=` and the TUI, sharing the engine's
//! summary cache. `LIMIT`/`OFFSET` page it: the limit reaches the function,
//! so a page reconstructs only the workflows up to its end.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{ScalarValue, plan_err};
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::Result;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use weft_lineage::WorkflowSummary;
use weft_schemas::schema::{timestamp_type, timestamps_from_nanos};

use crate::error::QueryError;
use crate::lineage::LineageRules;
use crate::lineage_sql::session_context;
use crate::table::SpanSource;
use crate::workflows::{ConversationQuery, MAX_WORKFLOWS, WorkflowCache, conversation_workflows};

const NAME: &str = "conversation";

/// Registers `conversation()` on `ctx`.
pub(crate) fn register_conversation_function(
    ctx: &SessionContext,
    source: &Arc<dyn SpanSource>,
    rules: Arc<LineageRules>,
    cache: Arc<WorkflowCache>,
) {
    ctx.register_udtf(
        NAME,
        Arc::new(ConversationFunction {
            source: Arc::clone(source),
            rules,
            cache,
        }),
    );
}

struct ConversationFunction {
    source: Arc<dyn SpanSource>,
    rules: Arc<LineageRules>,
    cache: Arc<WorkflowCache>,
}

impl std::fmt::Debug for ConversationFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{NAME}()")
    }
}

impl TableFunctionImpl for ConversationFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let id = match args.exprs() {
            [Expr::Literal(ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)), _)] => {
                s.clone()
            }
            _ => {
                return plan_err!(
                    "{NAME}() takes one conversation id as text, e.g. {NAME}('support-chat-42')"
                );
            }
        };
        Ok(Arc::new(ConversationTable {
            source: Arc::clone(&self.source),
            rules: Arc::clone(&self.rules),
            cache: Arc::clone(&self.cache),
            id,
        }))
    }
}

struct ConversationTable {
    source: Arc<dyn SpanSource>,
    rules: Arc<LineageRules>,
    cache: Arc<WorkflowCache>,
    id: String,
}

impl std::fmt::Debug for ConversationTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{NAME}({:?})", self.id)
    }
}

/// Columns of `conversation()`.
pub fn conversation_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("turn", DataType::Int64, false),
        Field::new("trace_id", DataType::Utf8, false),
        Field::new("traces", DataType::Int64, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("service_name", DataType::Utf8, true),
        Field::new("agent", DataType::Utf8, true),
        Field::new("identity", DataType::Utf8, true),
        Field::new("start_time", timestamp_type(), false),
        Field::new("end_time", timestamp_type(), false),
        Field::new("duration_ns", DataType::Int64, false),
        Field::new("spans", DataType::Int64, false),
        Field::new("errors", DataType::Int64, false),
        Field::new("status_code", DataType::Utf8, false),
        Field::new("models", DataType::Utf8, true),
        Field::new("input_tokens", DataType::Int64, false),
        Field::new("output_tokens", DataType::Int64, false),
        Field::new("policy_deny", DataType::Boolean, false),
        Field::new("finding", DataType::Boolean, false),
        Field::new("ungated_write", DataType::Boolean, false),
        Field::new("anomaly", DataType::Boolean, false),
        Field::new("in_flight", DataType::Boolean, false),
    ]))
}

fn to_batch(workflows: &[WorkflowSummary]) -> Result<RecordBatch> {
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    let strs = |f: &dyn Fn(&WorkflowSummary) -> Option<String>| -> ArrayRef {
        Arc::new(workflows.iter().map(f).collect::<StringArray>())
    };
    let ints = |f: &dyn Fn(&WorkflowSummary) -> i64| -> ArrayRef {
        Arc::new(workflows.iter().map(f).collect::<Int64Array>())
    };
    let bools = |f: &dyn Fn(&WorkflowSummary) -> bool| -> ArrayRef {
        Arc::new(
            workflows
                .iter()
                .map(|w| Some(f(w)))
                .collect::<BooleanArray>(),
        )
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            (0..workflows.len())
                .map(|i| count(i + 1))
                .collect::<Int64Array>(),
        ),
        strs(&|w| Some(w.trace_id.to_hex())),
        ints(&|w| count(w.traces.len())),
        strs(&|w| Some(w.name.clone())),
        strs(&|w| w.service.clone()),
        strs(&|w| w.agent.clone()),
        strs(&|w| w.identity.clone()),
        timestamps_from_nanos(workflows.iter().map(|w| w.start_ns)),
        timestamps_from_nanos(workflows.iter().map(|w| w.end_ns)),
        ints(&|w| w.duration_ns()),
        ints(&|w| count(w.spans)),
        ints(&|w| count(w.errors)),
        strs(&|w| Some(w.status.as_str().to_owned())),
        strs(&|w| (!w.models.is_empty()).then(|| w.models.join(","))),
        ints(&|w| w.input_tokens),
        ints(&|w| w.output_tokens),
        bools(&|w| w.flags.policy_deny),
        bools(&|w| w.flags.finding),
        bools(&|w| w.flags.ungated_write),
        bools(&|w| w.flags.anomaly),
        bools(&|w| w.in_flight),
    ];
    Ok(RecordBatch::try_new(conversation_schema(), columns)?)
}

#[async_trait]
impl TableProvider for ConversationTable {
    fn schema(&self) -> SchemaRef {
        conversation_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let ctx = session_context(state, NAME)?;
        // A limit that reaches the scan (LIMIT n OFFSET m asks for n + m rows)
        // bounds the work; without one, one more than the cap tells a
        // conversation too long for one answer.
        let wanted = limit.map_or(MAX_WORKFLOWS + 1, |l| l.min(MAX_WORKFLOWS + 1));
        let listed = conversation_workflows(
            &ctx,
            &self.source,
            &self.rules,
            &self.cache,
            &ConversationQuery {
                id: self.id.clone(),
                offset: 0,
                limit: wanted,
            },
        )
        .await
        .map_err(QueryError::into_datafusion)?
        .workflows;
        if listed.len() > MAX_WORKFLOWS {
            return plan_err!(
                "{NAME}({:?}) has more than {MAX_WORKFLOWS} workflows; page it with LIMIT and OFFSET (at most {MAX_WORKFLOWS} rows each)",
                self.id
            );
        }
        let batch = to_batch(&listed)?;
        MemTable::try_new(conversation_schema(), vec![vec![batch]])?
            .scan(state, projection, filters, limit)
            .await
    }
}
