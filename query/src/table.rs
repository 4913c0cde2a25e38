//! The stored tables, each read from one fresh snapshot per scan:
//! - `spans`: Parquet files and the live batches not yet in them;
//! - `span_links`: the link index of the flushed files, plus the links of the
//!   live batches (derived the same way the flush derives them);
//! - the raw `span_structure` files (the engine hides superseded generations).

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::DFSchema;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::functions::core::expr_fn::get_field;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::union::UnionExec;
use datafusion::prelude::{JoinType, SessionContext, col, lit};
use weft_schemas::TENANT_KEY;
use weft_schemas::shown::shown_schema;
use weft_schemas::{links_schema, span_schema, structure_schema};
use weft_store::{FileMeta, Snapshot, Store};

use crate::ids::{id_filter, show_ids_exec};
use crate::prune::start_time_range;

/// Where spans come from: a running store, or a snapshot read from disk.
pub trait SpanSource: Send + Sync + 'static {
    /// Committed files plus live batches, consistent with each other.
    fn snapshot(&self) -> Result<Snapshot, weft_store::Error>;

    /// The only tenant whose spans this source shows; `None`: all of them.
    fn tenant(&self) -> Option<&str> {
        None
    }
}

/// Another source's spans of one tenant only. [`StoredTable::scan`] is the one
/// place that reads it: every scan of `spans` — SQL, lineage, signals, a
/// trace by id — keeps only rows whose `weft.tenant` attribute is this
/// tenant, and `span_links` / `span_structure`, which hold no tenant, are
/// refused to user queries (lineage walks the links inside the engine and
/// then reads only this tenant's spans).
pub struct TenantSource {
    pub inner: Arc<dyn SpanSource>,
    pub tenant: String,
}

impl SpanSource for TenantSource {
    fn snapshot(&self) -> Result<Snapshot, weft_store::Error> {
        self.inner.snapshot()
    }

    fn tenant(&self) -> Option<&str> {
        Some(&self.tenant)
    }
}

impl SpanSource for Store {
    fn snapshot(&self) -> Result<Snapshot, weft_store::Error> {
        Store::snapshot(self)
    }
}

impl SpanSource for weft_store::Follower {
    fn snapshot(&self) -> Result<Snapshot, weft_store::Error> {
        weft_store::Follower::snapshot(self)
    }
}

/// A fixed snapshot, e.g. a data directory read without a running server.
pub struct StaticSource(pub Snapshot);

impl SpanSource for StaticSource {
    fn snapshot(&self) -> Result<Snapshot, weft_store::Error> {
        Ok(self.0.clone())
    }
}

/// Which stored table a [`StoredTable`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    Spans,
    Links,
    Structure,
}

impl Stored {
    /// The schema of the stored files and live batches (ids as bytes).
    fn storage_schema(self) -> SchemaRef {
        match self {
            Stored::Spans => span_schema(),
            Stored::Links => links_schema(),
            Stored::Structure => structure_schema(),
        }
    }

    fn files(self, snapshot: &Snapshot) -> &[FileMeta] {
        match self {
            Stored::Spans => &snapshot.files,
            Stored::Links => &snapshot.links,
            Stored::Structure => &snapshot.structure,
        }
    }

    /// Rows not in files yet: live spans, their links; structure only settles at flush.
    fn live(self, snapshot: Snapshot) -> Result<Vec<RecordBatch>> {
        Ok(match self {
            Stored::Spans => snapshot.batches,
            Stored::Links => snapshot
                .live_links()
                .map_err(|e| DataFusionError::External(Box::new(e)))?,
            Stored::Structure => Vec::new(),
        })
    }
}

/// A stored table's provider. Each scan takes a fresh snapshot, so a span is
/// visible as soon as its request is acknowledged. It shows ids as hex and
/// stores them as bytes: see [`crate::ids`].
pub struct StoredTable {
    source: Arc<dyn SpanSource>,
    table: Stored,
    storage: SchemaRef,
    shown: SchemaRef,
    /// Show ids as hex (the tables users query) or keep them bytes.
    show: bool,
}

impl std::fmt::Debug for StoredTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoredTable({:?})", self.table)
    }
}

impl StoredTable {
    pub fn new(source: Arc<dyn SpanSource>, table: Stored) -> Self {
        let storage = table.storage_schema();
        Self {
            source,
            table,
            shown: shown_schema(&storage),
            storage,
            show: true,
        }
    }
}

#[async_trait]
impl TableProvider for StoredTable {
    fn schema(&self) -> SchemaRef {
        if self.show {
            Arc::clone(&self.shown)
        } else {
            Arc::clone(&self.storage)
        }
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let tenant = self.source.tenant();
        if tenant.is_some() && self.show && self.table != Stored::Spans {
            return Err(DataFusionError::Plan(
                "span_links and span_structure hold no tenant, so a tenant's token cannot \
                 query them; use spans, or the lineage(), ancestors() and descendants() functions"
                    .into(),
            ));
        }
        let snapshot = self
            .source
            .snapshot()
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let schema = Arc::clone(&self.storage);
        // Filters on ids, translated to bytes, are applied here exactly (and
        // pushed into Parquet, so statistics and bloom filters prune); the rest
        // DataFusion applies above the scan, and pushes down itself.
        let id_filters: Vec<Expr> = filters
            .iter()
            .filter(|_| self.show)
            .filter_map(|f| id_filter(f, &schema))
            .collect();
        let wanted: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..schema.fields().len()).collect(),
        };
        // A tenant sees its own spans only: applied here, under every query.
        let tenant_filter = tenant.filter(|_| self.table == Stored::Spans).map(|t| {
            get_field(col(weft_schemas::schema::col::ATTRIBUTES), TENANT_KEY).eq(lit(t.to_owned()))
        });
        let mut read = wanted.clone();
        for column in id_filters
            .iter()
            .chain(&tenant_filter)
            .flat_map(|f| f.column_refs())
        {
            let i = schema.index_of(&column.name)?;
            if !read.contains(&i) {
                read.push(i);
            }
        }
        let limit = if filters.is_empty() && tenant.is_none() {
            limit
        } else {
            None
        };
        // Files whose `start_time` range (from their Delta statistics) the
        // filters exclude are not opened.
        let range = start_time_range(filters);
        let files: Vec<FileMeta> = self
            .table
            .files(&snapshot)
            .iter()
            .filter(|f| range.may_hold(f))
            .cloned()
            .collect();
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        if let Some(remote) = &snapshot.remote {
            // Files on an object store are read through it, by URL.
            state
                .runtime_env()
                .register_object_store(&remote.url, Arc::clone(&remote.store));
        }
        if !files.is_empty() {
            inputs.push(parquet_scan(
                state,
                &files,
                snapshot.remote.as_ref().map(|r| &r.url),
                &schema,
                &read,
                limit,
                state.config().target_partitions(),
            )?);
        }
        let live = self.table.live(snapshot)?;
        if live.iter().any(|b| b.num_rows() > 0) {
            let live = MemTable::try_new(Arc::clone(&schema), vec![live])?;
            inputs.push(live.scan(state, Some(&read), &[], limit).await?);
        }
        let mut stored: Arc<dyn ExecutionPlan> = if inputs.is_empty() {
            Arc::new(EmptyExec::new(Arc::new(schema.project(&read)?)))
        } else {
            UnionExec::try_new(inputs)?
        };
        if let Some(predicate) = conjunction(id_filters.into_iter().chain(tenant_filter)) {
            let df_schema = DFSchema::try_from(stored.schema())?;
            let predicate = state.create_physical_expr(predicate, &df_schema)?;
            stored = Arc::new(FilterExec::try_new(predicate, stored)?);
        }
        if !self.show {
            if read.len() > wanted.len() {
                // Only the columns asked for, without the tenant's attributes.
                let columns = (0..wanted.len())
                    .map(|i| {
                        let field = stored.schema().field(i).clone();
                        let column: Arc<dyn datafusion::physical_expr::PhysicalExpr> =
                            Arc::new(Column::new(field.name(), i));
                        (column, field.name().clone())
                    })
                    .collect::<Vec<_>>();
                stored = Arc::new(ProjectionExec::try_new(columns, stored)?);
            }
            return Ok(stored);
        }
        show_ids_exec(stored, wanted.len(), state)
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Id filters the scan applies itself, exactly; the rest Parquet prunes
        // with, and DataFusion applies exactly above the scan.
        Ok(filters
            .iter()
            .map(|f| match self.show.then(|| id_filter(f, &self.storage)) {
                Some(Some(_)) => TableProviderFilterPushDown::Exact,
                _ => TableProviderFilterPushDown::Inexact,
            })
            .collect())
    }
}

/// A stored table as stored, ids as bytes, for reads inside this crate that
/// show nothing (lineage); users query the tables [`register_stored_tables`]
/// registers, which show ids as hex.
pub(crate) fn stored_table(source: &Arc<dyn SpanSource>, table: Stored) -> Arc<StoredTable> {
    let mut stored = StoredTable::new(Arc::clone(source), table);
    stored.show = false;
    Arc::new(stored)
}

/// Registers `span_events` on `ctx`: the event store's rows (log records of
/// spans, such as GenAI events), one per event, with the span it belongs to.
pub(crate) fn register_span_events(
    ctx: &SessionContext,
    events: &Arc<dyn SpanSource>,
) -> Result<()> {
    use datafusion::prelude::col;
    use weft_schemas::schema::col as c;
    let rows = Arc::new(StoredTable::new(Arc::clone(events), Stored::Spans));
    let view = ctx
        .read_table(rows)?
        .select(vec![
            col(c::TRACE_ID),
            col(c::PARENT_SPAN_ID).alias("span_id"),
            col(c::SPAN_ID).alias("event_id"),
            col(c::START_TIME).alias("time"),
            col(c::NAME).alias("event_name"),
            col(c::SERVICE_NAME),
            datafusion::functions::core::expr_fn::get_field(
                col(c::ATTRIBUTES),
                weft_schemas::EVENT_BODY_KEY,
            )
            .alias("body"),
            col(c::ATTRIBUTES),
            col(c::RESOURCE_ATTRIBUTES),
            col(c::SCOPE_NAME),
        ])?
        .into_view();
    ctx.register_table("span_events", view)?;
    Ok(())
}

/// Registers `spans`, `span_links` and `span_structure` on `ctx`. The last is
/// the latest row of each span in the structure files: a settling writes the
/// spans it placed anew (new ones, and ones it moved) in a new generation, and
/// the older rows of those spans are left out.
pub fn register_stored_tables(ctx: &SessionContext, source: &Arc<dyn SpanSource>) -> Result<()> {
    use weft_schemas::settled::col as s;
    let table = |t| Arc::new(StoredTable::new(Arc::clone(source), t));
    ctx.register_table("spans", table(Stored::Spans))?;
    ctx.register_table("span_links", table(Stored::Links))?;
    let raw = ctx.read_table(table(Stored::Structure))?;
    let newer = raw.clone().select(vec![
        col(s::TRACE_ID).alias("newer_trace_id"),
        col(s::SPAN_ID).alias("newer_span_id"),
        col(s::GENERATION).alias("newer_generation"),
    ])?;
    let current = raw.join(
        newer,
        JoinType::LeftAnti,
        &[s::TRACE_ID, s::SPAN_ID],
        &["newer_trace_id", "newer_span_id"],
        Some(col("newer_generation").gt(col(s::GENERATION))),
    )?;
    ctx.register_table("span_structure", current.into_view())?;
    Ok(())
}

/// A scan of exactly these Parquet files, as the table's log names them
/// (path and size; nothing is listed). A file that is gone (vacuumed since
/// the snapshot was taken) fails the query with the store's not-found error,
/// rather than reading as no rows. Files are spread over `partitions`
/// groups, read in parallel.
///
/// Footers and page indexes are read through the runtime's file metadata
/// cache: a file's path names one immutable file (the tables only add and
/// remove files), so a footer parsed once serves every later query (a trace
/// lookup otherwise spends most of its time loading the page index again).
/// The session's Parquet options (filter pushdown, page index, bloom
/// filters) apply.
fn parquet_scan(
    state: &dyn Session,
    files: &[FileMeta],
    remote: Option<&url::Url>,
    schema: &SchemaRef,
    read: &[usize],
    limit: Option<usize>,
    partitions: usize,
) -> Result<Arc<dyn ExecutionPlan>> {
    let store = match remote {
        Some(url) => ObjectStoreUrl::parse(&url[..url::Position::BeforePath])?,
        None => ObjectStoreUrl::local_filesystem(),
    };
    let mut groups: Vec<Vec<PartitionedFile>> = vec![Vec::new(); partitions.clamp(1, files.len())];
    for (i, f) in files.iter().enumerate() {
        let path = match remote {
            // `s3://bucket/key` → `key` within the bucket's store.
            Some(_) => url::Url::parse(&f.location)
                .map(|u| u.path().trim_start_matches('/').to_owned())
                .map_err(|e| DataFusionError::External(Box::new(e)))?,
            None => f.location.trim_start_matches('/').to_owned(),
        };
        let n = groups.len();
        groups[i % n].push(PartitionedFile::new(path, f.bytes));
    }
    let cached = CachedParquetFileReaderFactory::new(
        state.runtime_env().object_store(&store)?,
        state.runtime_env().cache_manager.get_file_metadata_cache(),
    );
    let source = ParquetSource::new(Arc::clone(schema))
        .with_table_parquet_options(state.table_options().parquet.clone())
        .with_parquet_file_reader_factory(Arc::new(cached));
    let config = FileScanConfigBuilder::new(store, Arc::new(source))
        .with_file_groups(groups.into_iter().map(FileGroup::new).collect())
        .with_projection_indices(Some(read.to_vec()))?
        .with_limit(limit)
        .build();
    Ok(DataSourceExec::from_data_source(config))
}
