//! The `spans` table: Parquet files and live batches from one snapshot.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::union::UnionExec;
use weft_collector::{Snapshot, Store};
use weft_schemas::span_schema;

/// Where spans come from: a running store, or a snapshot read from disk.
pub trait SpanSource: Send + Sync + 'static {
    /// Committed files plus live batches, consistent with each other.
    fn snapshot(&self) -> Result<Snapshot, weft_collector::Error>;
}

impl SpanSource for Store {
    fn snapshot(&self) -> Result<Snapshot, weft_collector::Error> {
        Store::snapshot(self)
    }
}

/// A fixed snapshot, e.g. a data directory read without a running server.
pub struct StaticSource(pub Snapshot);

impl SpanSource for StaticSource {
    fn snapshot(&self) -> Result<Snapshot, weft_collector::Error> {
        Ok(self.0.clone())
    }
}

/// The `spans` table provider. Each scan takes a fresh snapshot, so a span is
/// visible as soon as its request is acknowledged.
pub struct SpansTable {
    source: Arc<dyn SpanSource>,
}

impl std::fmt::Debug for SpansTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SpansTable")
    }
}

impl SpansTable {
    pub fn new(source: Arc<dyn SpanSource>) -> Self {
        Self { source }
    }
}

#[async_trait]
impl TableProvider for SpansTable {
    fn schema(&self) -> SchemaRef {
        span_schema()
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
        let snapshot = self
            .source
            .snapshot()
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        if !snapshot.files.is_empty() {
            let urls = snapshot
                .files
                .iter()
                .map(|f| ListingTableUrl::parse(f.path.to_string_lossy()))
                .collect::<Result<Vec<_>>>()?;
            let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
                .with_file_extension(".parquet");
            let config = ListingTableConfig::new_with_multi_paths(urls)
                .with_listing_options(options)
                .with_schema(span_schema());
            let files = ListingTable::try_new(config)?;
            inputs.push(files.scan(state, projection, filters, limit).await?);
        }
        if !snapshot.batches.is_empty() {
            let live = MemTable::try_new(span_schema(), vec![snapshot.batches])?;
            inputs.push(live.scan(state, projection, filters, limit).await?);
        }
        if inputs.is_empty() {
            let schema = match projection {
                Some(p) => Arc::new(span_schema().project(p)?),
                None => span_schema(),
            };
            return Ok(Arc::new(EmptyExec::new(schema)));
        }
        UnionExec::try_new(inputs)
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Parquet prunes with them; DataFusion still applies them exactly above the scan.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }
}
