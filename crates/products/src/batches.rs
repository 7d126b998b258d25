//! Batches (`POST /v1/batches`): a catalogue export or a stock snapshot, computed from the
//! products-work queue one part at a time and delivered as signed `batch.completed` webhooks to
//! the requesting tenant's endpoints. The request only records the batch and queues its first
//! part (in one transaction), so the API answers at once whatever the catalogue's size.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use vitrine_webhooks::store::WebhookStore;

use crate::endpoints::Caller;
use crate::service::now;
use crate::store::{ProductFilter, StoreError, WorkStore};

vitrine_kernel::define_id!(
    /// Identifies a batch.
    BatchId
);

/// Items per delivered part: about 400 KiB of JSON for an export.
pub const PART_SIZE: u32 = 1000;

/// The webhook event type batch results are delivered as.
pub const BATCH_COMPLETED: &str = "batch.completed";

/// What a batch computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchKind {
    /// The products matching the filter, as `GET /v1/products` shows them.
    ProductsExport,
    /// The stock of the products matching the filter.
    StockSnapshot,
}

impl BatchKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ProductsExport => "products.export",
            Self::StockSnapshot => "stock.snapshot",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "products.export" => Some(Self::ProductsExport),
            "stock.snapshot" => Some(Self::StockSnapshot),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchStatus {
    Queued,
    Running,
    Completed,
    /// Nothing could receive it any more (every subscribed endpoint was removed or disabled).
    Failed,
}

impl BatchStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "queued" => Some(Self::Queued),
            "running" => Some(Self::Running),
            "completed" => Some(Self::Completed),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// A batch to record.
#[derive(Debug, Clone)]
pub struct NewBatch {
    pub id: BatchId,
    /// Whose endpoints receive the parts: a customer id, or `admin`.
    pub tenant: String,
    pub kind: BatchKind,
    pub filter: ProductFilter,
    pub part_size: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub id: BatchId,
    pub tenant: String,
    pub kind: BatchKind,
    pub status: BatchStatus,
    /// How many parts will be delivered (fixed when the batch is requested).
    pub parts: u32,
    pub parts_done: u32,
    /// Items delivered so far.
    pub items: i64,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The caller has no enabled endpoint subscribed to `batch.completed`.
    #[error("no endpoint is subscribed to batch.completed")]
    Unsubscribed,
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<StoreError> for BatchError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => Self::NotFound,
            other => Self::Internal(other.into()),
        }
    }
}

/// What running one part did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartRun {
    /// Delivered (queued as webhook deliveries); the next part is queued unless it was the last.
    Delivered { items: usize, last: bool },
    /// Done before (a redelivered command): nothing changed.
    AlreadyDone,
    /// Nobody is subscribed any more: the batch failed.
    Unheard,
}

#[derive(Debug, Clone)]
pub struct Batches {
    work: Arc<dyn WorkStore>,
    webhooks: Arc<dyn WebhookStore>,
}

impl Batches {
    pub fn new(work: Arc<dyn WorkStore>, webhooks: Arc<dyn WebhookStore>) -> Self {
        Self { work, webhooks }
    }

    /// Records the batch and queues its first part; refused when nobody would receive it.
    pub async fn request(
        &self,
        caller: &Caller,
        kind: BatchKind,
        filter: ProductFilter,
    ) -> Result<Batch, BatchError> {
        let tenant = caller.owner();
        if !self
            .webhooks
            .subscribed(&tenant, BATCH_COMPLETED)
            .await
            .map_err(|error| BatchError::Internal(error.into()))?
        {
            return Err(BatchError::Unsubscribed);
        }
        let new = NewBatch {
            id: BatchId::new(),
            tenant,
            kind,
            filter,
            part_size: PART_SIZE,
        };
        Ok(self.work.create_batch(&new, now()).await?)
    }

    /// A batch the caller requested (admins see every batch).
    pub async fn get(&self, caller: &Caller, id: BatchId) -> Result<Batch, BatchError> {
        let batch = self.work.batch(id).await?.ok_or(BatchError::NotFound)?;
        match caller.scope() {
            Some(tenant) if tenant != batch.tenant => Err(BatchError::NotFound),
            _ => Ok(batch),
        }
    }

    /// Runs part `part` of batch `id` (the work queue's command).
    pub async fn run_part(&self, id: BatchId, part: u32) -> Result<PartRun, BatchError> {
        let run = self.work.run_batch_part(id, part, now()).await?;
        match &run {
            PartRun::Delivered { items, last } => {
                metrics::counter!("vitrine_batch_items_total").increment(*items as u64);
                if *last {
                    tracing::info!(batch_id = %id, parts = part, "batch completed");
                }
            }
            PartRun::Unheard => {
                tracing::warn!(batch_id = %id, "batch failed: no endpoint subscribed to batch.completed any more");
            }
            PartRun::AlreadyDone => {}
        }
        Ok(run)
    }
}
