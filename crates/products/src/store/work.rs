//! The `WorkStore` port: batches and product imports, the deferred work products runs from its
//! work queue. Implemented by both stores with the same SQL (`impl_work_store!`), next to the
//! catalogue because an import chunk creates products in its own transaction.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::StoreError;
use crate::batches::{Batch, BatchId, BatchKind, BatchStatus, NewBatch, PartRun};
use crate::imports::{
    Begun, ChunkRun, ImportId, ImportStatus, LineError, LineOutcome, NewImport, ProductImport,
    StoredLine,
};
use crate::ndjson::Line;

#[async_trait]
pub trait WorkStore: Send + Sync + std::fmt::Debug {
    /// Records a batch over the products matching its filter now (their count fixes `parts`)
    /// and queues its first part, in one transaction.
    async fn create_batch(&self, new: &NewBatch, now: DateTime<Utc>) -> Result<Batch, StoreError>;

    async fn batch(&self, id: BatchId) -> Result<Option<Batch>, StoreError>;

    /// Delivers part `part` (its webhook message, to every subscribed endpoint of the batch's
    /// tenant) and queues the next, in one transaction; a part done before changes nothing.
    async fn run_batch_part(
        &self,
        id: BatchId,
        part: u32,
        now: DateTime<Utc>,
    ) -> Result<PartRun, StoreError>;

    /// Records an import as receiving, unless its tenant used its `Idempotency-Key` before.
    async fn begin_import(&self, new: &NewImport, now: DateTime<Utc>) -> Result<Begun, StoreError>;

    /// Stores lines of a receiving import.
    async fn add_import_lines(&self, id: ImportId, lines: &[Line]) -> Result<(), StoreError>;

    /// Ends the upload: the import becomes queued with one work command per chunk of
    /// `chunk_lines` line numbers that holds lines, in one transaction.
    async fn queue_import(
        &self,
        id: ImportId,
        bytes: u64,
        chunk_lines: u32,
    ) -> Result<ProductImport, StoreError>;

    /// Removes a receiving import and its lines (its upload failed).
    async fn abandon_import(&self, id: ImportId) -> Result<(), StoreError>;

    /// The lines `first..=last` of an import not handled yet.
    async fn import_lines(
        &self,
        id: ImportId,
        first: u32,
        last: u32,
    ) -> Result<Vec<StoredLine>, StoreError>;

    /// Handles lines `first..=last` in one transaction: takes those still stored (a line taken
    /// by an earlier run is skipped), creates the products of their `Create` outcomes (a
    /// duplicate SKU or an inactive seller becomes that line's error), records the errors,
    /// counts, and completes the import after its last chunk.
    async fn run_import_chunk(
        &self,
        id: ImportId,
        first: u32,
        last: u32,
        outcomes: &[(u32, LineOutcome)],
        now: DateTime<Utc>,
    ) -> Result<ChunkRun, StoreError>;

    async fn product_import(&self, id: ImportId) -> Result<Option<ProductImport>, StoreError>;

    /// The errors of up to `limit` lines after line `after`, by line.
    async fn import_errors(
        &self,
        id: ImportId,
        after: u32,
        limit: u32,
    ) -> Result<Vec<LineError>, StoreError>;

    /// Deletes batches and imports completed before `finished_before`, and imports whose upload
    /// started before `abandoned_before` and never finished; how many.
    async fn prune_work(
        &self,
        finished_before: DateTime<Utc>,
        abandoned_before: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
}

/// Columns of a batch, in `BatchRow` order.
macro_rules! batch_columns {
    () => {
        "id, tenant, kind, filter_seller, filter_category, filter_status, filter_name, status, \
         parts, parts_done, part_size, items, upper_bound, cursor, created_at, completed_at"
    };
}
pub(super) use batch_columns;

macro_rules! import_columns {
    () => {
        "id, tenant, status, received, created, failed, created_at, completed_at"
    };
}
pub(super) use import_columns;

#[derive(Debug, sqlx::FromRow)]
pub(super) struct BatchRow {
    pub id: Uuid,
    pub tenant: String,
    pub kind: String,
    pub filter_seller: Option<Uuid>,
    pub filter_category: Option<String>,
    pub filter_status: Option<String>,
    pub filter_name: Option<String>,
    pub status: String,
    pub parts: i32,
    pub parts_done: i32,
    pub part_size: i32,
    pub items: i64,
    pub upper_bound: Option<Uuid>,
    pub cursor: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Backend(anyhow::anyhow!("stored {what} is invalid"))
}

fn count(value: i32, what: &str) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| corrupt(what))
}

impl TryFrom<&BatchRow> for Batch {
    type Error = StoreError;

    fn try_from(row: &BatchRow) -> Result<Self, StoreError> {
        Ok(Batch {
            id: BatchId::from_uuid(row.id),
            tenant: row.tenant.clone(),
            kind: BatchKind::parse(&row.kind).ok_or_else(|| corrupt("batch kind"))?,
            status: BatchStatus::parse(&row.status).ok_or_else(|| corrupt("batch status"))?,
            parts: count(row.parts, "batch parts")?,
            parts_done: count(row.parts_done, "batch parts")?,
            items: row.items,
            created_at: row.created_at,
            completed_at: row.completed_at,
        })
    }
}

impl BatchRow {
    /// The filter the batch was requested with.
    pub(super) fn filter(&self) -> Result<super::ProductFilter, StoreError> {
        Ok(super::ProductFilter {
            seller_id: self.filter_seller.map(crate::domain::SellerId::from_uuid),
            category: self.filter_category.clone(),
            status: self
                .filter_status
                .as_deref()
                .map(|s| {
                    crate::domain::ProductStatus::parse(s).map_err(|_| corrupt("batch filter"))
                })
                .transpose()?,
            name_contains: self.filter_name.clone(),
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct ImportRow {
    pub id: Uuid,
    pub tenant: String,
    pub status: String,
    pub received: i32,
    pub created: i32,
    pub failed: i32,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl TryFrom<ImportRow> for ProductImport {
    type Error = StoreError;

    fn try_from(row: ImportRow) -> Result<Self, StoreError> {
        Ok(ProductImport {
            id: ImportId::from_uuid(row.id),
            tenant: row.tenant,
            status: ImportStatus::parse(&row.status).ok_or_else(|| corrupt("import status"))?,
            received: count(row.received, "import count")?,
            created: count(row.created, "import count")?,
            failed: count(row.failed, "import count")?,
            created_at: row.created_at,
            completed_at: row.completed_at,
        })
    }
}

/// The error a store refusal becomes on an imported line, if it is one a line can cause.
pub(super) fn line_refusal(line: u32, error: &StoreError) -> Option<LineError> {
    let (field, message) = match error {
        StoreError::Duplicate(field) => (
            *field,
            format!("the seller already has a product with this {field}"),
        ),
        StoreError::SellerNotActive(standing) => {
            ("seller_id", format!("the seller is {}", standing.as_str()))
        }
        _ => return None,
    };
    Some(LineError {
        line,
        field: Some(field.to_owned()),
        message,
    })
}

/// The SQL condition of a batch's filter over `products`, with `$1`..`$4` its values.
macro_rules! batch_filter {
    () => {
        "deleted_at IS NULL AND ($1 IS NULL OR seller_id = $1) AND ($2 IS NULL OR category = $2) \
         AND ($3 IS NULL OR status = $3) AND ($4 IS NULL OR lower(name) LIKE $4 ESCAPE '\\')"
    };
}
pub(super) use batch_filter;

macro_rules! impl_work_store {
    ($store:ty, lock = $lock:literal) => {
        #[async_trait::async_trait]
        impl $crate::store::WorkStore for $store {
            #[tracing::instrument(level = "debug", skip_all)]
            async fn create_batch(
                &self,
                new: &$crate::batches::NewBatch,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<$crate::batches::Batch, $crate::store::StoreError> {
                let filter = &new.filter;
                let mut tx = self.begin_write().await?;
                let (matching, upper): (i64, Option<uuid::Uuid>) = sqlx::query_as(concat!(
                    "SELECT COUNT(*), (SELECT id FROM products WHERE ",
                    $crate::store::work::batch_filter!(),
                    " ORDER BY id DESC LIMIT 1) FROM products WHERE ",
                    $crate::store::work::batch_filter!()
                ))
                .bind(filter.seller_id.map(|s| s.as_uuid()))
                .bind(filter.category.as_deref())
                .bind(filter.status.map(|s| s.as_str()))
                .bind(filter.name_pattern())
                .fetch_one(&mut *tx)
                .await?;
                let size = i64::from(new.part_size.max(1));
                let parts = i32::try_from(((matching + size - 1) / size).max(1))
                    .map_err(|_| $crate::store::StoreError::Backend(anyhow::anyhow!("too many parts")))?;
                let row: $crate::store::work::BatchRow = sqlx::query_as(concat!(
                    "INSERT INTO batches (id, tenant, kind, filter_seller, filter_category, \
                       filter_status, filter_name, status, parts, parts_done, part_size, items, \
                       upper_bound, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 'queued', $8, 0, $9, 0, $10, $11) \
                     RETURNING ",
                    $crate::store::work::batch_columns!()
                ))
                .bind(new.id.as_uuid())
                .bind(&new.tenant)
                .bind(new.kind.as_str())
                .bind(filter.seller_id.map(|s| s.as_uuid()))
                .bind(filter.category.as_deref())
                .bind(filter.status.map(|s| s.as_str()))
                .bind(filter.name_contains.as_deref())
                .bind(parts)
                .bind(i32::try_from(new.part_size).unwrap_or(i32::MAX))
                .bind(upper)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                Self::enqueue(&mut tx, &[$crate::outgoing::batch_part(new.id.as_uuid(), 1)]).await?;
                tx.commit().await?;
                self.committed().await?;
                $crate::batches::Batch::try_from(&row)
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn batch(
                &self,
                id: $crate::batches::BatchId,
            ) -> Result<Option<$crate::batches::Batch>, $crate::store::StoreError> {
                let row: Option<$crate::store::work::BatchRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    $crate::store::work::batch_columns!(),
                    " FROM batches WHERE id = $1"
                ))
                .bind(id.as_uuid())
                .fetch_optional(self.primary())
                .await?;
                row.as_ref().map($crate::batches::Batch::try_from).transpose()
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn run_batch_part(
                &self,
                id: $crate::batches::BatchId,
                part: u32,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<$crate::batches::PartRun, $crate::store::StoreError> {
                use $crate::batches::{BatchStatus, PartRun};
                let mut tx = self.begin_write().await?;
                let row: Option<$crate::store::work::BatchRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    $crate::store::work::batch_columns!(),
                    " FROM batches WHERE id = $1",
                    $lock
                ))
                .bind(id.as_uuid())
                .fetch_optional(&mut *tx)
                .await?;
                // Pruned since: nothing to do.
                let Some(row) = row else {
                    return Ok(PartRun::AlreadyDone);
                };
                let batch = $crate::batches::Batch::try_from(&row)?;
                if batch.status == BatchStatus::Failed || batch.parts_done >= part {
                    return Ok(PartRun::AlreadyDone);
                }
                if part != batch.parts_done + 1 {
                    return Err($crate::store::StoreError::Backend(anyhow::anyhow!(
                        "part {part} of batch {id} is due before part {}",
                        batch.parts_done + 1
                    )));
                }
                let last = part >= batch.parts;
                // The last part takes whatever is left below the bound, so nothing is missed
                // even if products of a full part were deleted meanwhile.
                let limit = if last { i64::MAX } else { i64::from(row.part_size) };
                let filter = row.filter()?;
                let rows: Vec<$crate::store::rows::ProductRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    $crate::store::rows::product_columns!(),
                    " FROM products WHERE ",
                    $crate::store::work::batch_filter!(),
                    " AND id <= $5 AND ($6 IS NULL OR id > $6) ORDER BY id LIMIT $7"
                ))
                .bind(filter.seller_id.map(|s| s.as_uuid()))
                .bind(filter.category.as_deref())
                .bind(filter.status.map(|s| s.as_str()))
                .bind(filter.name_pattern())
                .bind(row.upper_bound)
                .bind(row.cursor)
                .bind(limit)
                .fetch_all(&mut *tx)
                .await?;
                let products = rows
                    .into_iter()
                    .map($crate::domain::Product::try_from)
                    .collect::<Result<Vec<_>, _>>()?;
                let items = products.len();
                let cursor = products.last().map(|p| p.id.as_uuid()).or(row.cursor);
                let message = $crate::webhooks::batch_part(&batch, part, products, now);
                if Self::enqueue_webhook(&mut tx, &message).await? == 0 {
                    sqlx::query(
                        "UPDATE batches SET status = 'failed', completed_at = $2 WHERE id = $1",
                    )
                    .bind(id.as_uuid())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    return Ok(PartRun::Unheard);
                }
                sqlx::query(
                    "UPDATE batches SET status = $2, parts_done = $3, items = items + $4, \
                       cursor = $5, started_at = COALESCE(started_at, $6), completed_at = $7 \
                     WHERE id = $1",
                )
                .bind(id.as_uuid())
                .bind(if last { "completed" } else { "running" })
                .bind(i32::try_from(part).unwrap_or(i32::MAX))
                .bind(i64::try_from(items).unwrap_or(i64::MAX))
                .bind(cursor)
                .bind(now)
                .bind(last.then_some(now))
                .execute(&mut *tx)
                .await?;
                if !last {
                    Self::enqueue(&mut tx, &[$crate::outgoing::batch_part(id.as_uuid(), part + 1)])
                        .await?;
                }
                tx.commit().await?;
                self.committed().await?;
                Ok(PartRun::Delivered { items, last })
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn begin_import(
                &self,
                new: &$crate::imports::NewImport,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<$crate::imports::Begun, $crate::store::StoreError> {
                let inserted = sqlx::query(
                    "INSERT INTO product_imports (id, tenant, actor, idempotency_key, status, \
                       created_at) VALUES ($1, $2, $3, $4, 'receiving', $5) \
                     ON CONFLICT (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL \
                     DO NOTHING",
                )
                .bind(new.id.as_uuid())
                .bind(&new.tenant)
                .bind(&new.actor)
                .bind(new.idempotency_key.as_deref())
                .bind(now)
                .execute(self.primary())
                .await?
                .rows_affected();
                if inserted == 1 {
                    return Ok($crate::imports::Begun::New);
                }
                let row: $crate::store::work::ImportRow = sqlx::query_as(concat!(
                    "SELECT ",
                    $crate::store::work::import_columns!(),
                    " FROM product_imports WHERE tenant = $1 AND idempotency_key = $2"
                ))
                .bind(&new.tenant)
                .bind(new.idempotency_key.as_deref())
                .fetch_one(self.primary())
                .await?;
                Ok($crate::imports::Begun::Existing(row.try_into()?))
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn add_import_lines(
                &self,
                id: $crate::imports::ImportId,
                lines: &[$crate::ndjson::Line],
            ) -> Result<(), $crate::store::StoreError> {
                use $crate::ndjson::LineContent;
                if lines.is_empty() {
                    return Ok(());
                }
                let mut insert = sqlx::QueryBuilder::<<Self as $crate::store::shared::Backend>::Database>::new(
                    "INSERT INTO product_import_lines (import_id, line, body, refused) ",
                );
                insert.push_values(lines, |mut row, line| {
                    let (body, refused) = match &line.content {
                        LineContent::Text(text) => (Some(text.as_str()), None),
                        LineContent::Refused(why) => (None, Some(*why)),
                    };
                    row.push_bind(id.as_uuid())
                        .push_bind(i32::try_from(line.number).unwrap_or(i32::MAX))
                        .push_bind(body)
                        .push_bind(refused);
                });
                insert.build().execute(self.primary()).await?;
                Ok(())
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn queue_import(
                &self,
                id: $crate::imports::ImportId,
                bytes: u64,
                chunk_lines: u32,
            ) -> Result<$crate::imports::ProductImport, $crate::store::StoreError> {
                let size = i32::try_from(chunk_lines.max(1)).unwrap_or(i32::MAX);
                let mut tx = self.begin_write().await?;
                let chunks: Vec<i32> = sqlx::query_scalar(
                    "SELECT DISTINCT (line - 1) / $2 FROM product_import_lines \
                     WHERE import_id = $1 ORDER BY 1",
                )
                .bind(id.as_uuid())
                .bind(size)
                .fetch_all(&mut *tx)
                .await?;
                let received: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM product_import_lines WHERE import_id = $1",
                )
                .bind(id.as_uuid())
                .fetch_one(&mut *tx)
                .await?;
                let row: Option<$crate::store::work::ImportRow> = sqlx::query_as(concat!(
                    "UPDATE product_imports SET status = 'queued', received = $2, chunks = $3, \
                       bytes = $4 WHERE id = $1 AND status = 'receiving' RETURNING ",
                    $crate::store::work::import_columns!()
                ))
                .bind(id.as_uuid())
                .bind(i32::try_from(received).unwrap_or(i32::MAX))
                .bind(i32::try_from(chunks.len()).unwrap_or(i32::MAX))
                .bind(i64::try_from(bytes).unwrap_or(i64::MAX))
                .fetch_optional(&mut *tx)
                .await?;
                let row = row.ok_or($crate::store::StoreError::NotFound)?;
                let commands: Vec<_> = chunks
                    .iter()
                    .map(|chunk| {
                        let first = u32::try_from(*chunk).unwrap_or(0) * chunk_lines + 1;
                        $crate::outgoing::import_chunk(id.as_uuid(), first, first + chunk_lines - 1)
                    })
                    .collect();
                Self::enqueue(&mut tx, &commands).await?;
                tx.commit().await?;
                self.committed().await?;
                row.try_into()
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn abandon_import(
                &self,
                id: $crate::imports::ImportId,
            ) -> Result<(), $crate::store::StoreError> {
                sqlx::query("DELETE FROM product_imports WHERE id = $1 AND status = 'receiving'")
                    .bind(id.as_uuid())
                    .execute(self.primary())
                    .await?;
                Ok(())
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn import_lines(
                &self,
                id: $crate::imports::ImportId,
                first: u32,
                last: u32,
            ) -> Result<Vec<$crate::imports::StoredLine>, $crate::store::StoreError> {
                let rows: Vec<(i32, Option<String>, Option<String>)> = sqlx::query_as(
                    "SELECT line, body, refused FROM product_import_lines \
                     WHERE import_id = $1 AND line BETWEEN $2 AND $3 ORDER BY line",
                )
                .bind(id.as_uuid())
                .bind(i32::try_from(first).unwrap_or(i32::MAX))
                .bind(i32::try_from(last).unwrap_or(i32::MAX))
                .fetch_all(self.primary())
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(line, body, refused)| $crate::imports::StoredLine {
                        number: u32::try_from(line).unwrap_or(0),
                        body: body.ok_or_else(|| {
                            refused.unwrap_or_else(|| "the line could not be read".to_owned())
                        }),
                    })
                    .collect())
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn run_import_chunk(
                &self,
                id: $crate::imports::ImportId,
                first: u32,
                last: u32,
                outcomes: &[(u32, $crate::imports::LineOutcome)],
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<$crate::imports::ChunkRun, $crate::store::StoreError> {
                use $crate::imports::{ChunkRun, LineError, LineOutcome};
                let mut tx = self.begin_write().await?;
                // Taking the lines is the chunk's claim: a second run (a redelivery, or a
                // concurrent one that waited on these rows) finds them gone.
                let taken: Vec<i32> = sqlx::query_scalar(
                    "DELETE FROM product_import_lines \
                     WHERE import_id = $1 AND line BETWEEN $2 AND $3 RETURNING line",
                )
                .bind(id.as_uuid())
                .bind(i32::try_from(first).unwrap_or(i32::MAX))
                .bind(i32::try_from(last).unwrap_or(i32::MAX))
                .fetch_all(&mut *tx)
                .await?;
                if taken.is_empty() {
                    return Ok(ChunkRun::AlreadyDone);
                }
                let taken: std::collections::BTreeSet<u32> =
                    taken.into_iter().filter_map(|l| u32::try_from(l).ok()).collect();
                let actor: String =
                    sqlx::query_scalar("SELECT actor FROM product_imports WHERE id = $1")
                        .bind(id.as_uuid())
                        .fetch_one(&mut *tx)
                        .await?;
                let (mut created, mut failed) = (0u32, 0u32);
                let mut messages = Vec::new();
                let mut errors: Vec<LineError> = Vec::new();
                // Each seller's standing once per chunk: its first check locks the seller's
                // row (PostgreSQL) for the rest of the transaction, so it cannot change under
                // the later lines. A duplicate SKU inserts nothing instead of failing, so no
                // line needs a savepoint of its own.
                let mut standings = std::collections::HashMap::new();
                for (line, outcome) in outcomes.iter().filter(|(l, _)| taken.contains(l)) {
                    match outcome {
                        LineOutcome::Create(new) => {
                            let standing = match standings.get(&new.seller_id) {
                                Some(standing) => *standing,
                                None => {
                                    let standing =
                                        Self::seller_standing(&mut tx, new.seller_id, now).await?;
                                    standings.insert(new.seller_id, standing);
                                    standing
                                }
                            };
                            let refused = if standing != $crate::domain::SellerStanding::Active {
                                Some($crate::store::StoreError::SellerNotActive(standing))
                            } else {
                                match Self::insert_product_row(
                                    &mut tx,
                                    $crate::domain::ProductId::new(),
                                    new,
                                    Some(&actor),
                                    now,
                                    true,
                                )
                                .await?
                                {
                                    Some((_, announced)) => {
                                        messages.extend(announced);
                                        created += 1;
                                        None
                                    }
                                    None => Some($crate::store::StoreError::Duplicate("sku")),
                                }
                            };
                            if let Some(error) = refused {
                                let refusal = $crate::store::work::line_refusal(*line, &error)
                                    .ok_or(error)?;
                                errors.push(refusal);
                                failed += 1;
                            }
                        }
                        LineOutcome::Invalid(problems) => {
                            errors.extend(problems.iter().cloned());
                            failed += 1;
                        }
                    }
                }
                for (seq, error) in errors.iter().enumerate() {
                    sqlx::query(
                        "INSERT INTO product_import_errors (import_id, line, seq, field, message) \
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(id.as_uuid())
                    .bind(i32::try_from(error.line).unwrap_or(i32::MAX))
                    .bind(i32::try_from(seq).unwrap_or(i32::MAX))
                    .bind(error.field.as_deref())
                    .bind(&error.message)
                    .execute(&mut *tx)
                    .await?;
                }
                let row: $crate::store::work::ImportRow = sqlx::query_as(concat!(
                    "UPDATE product_imports SET created = created + $2, failed = failed + $3, \
                       chunks_done = chunks_done + 1, \
                       status = CASE WHEN chunks_done + 1 >= chunks THEN 'completed' ELSE 'running' END, \
                       completed_at = CASE WHEN chunks_done + 1 >= chunks THEN $4 ELSE NULL END \
                     WHERE id = $1 RETURNING ",
                    $crate::store::work::import_columns!()
                ))
                .bind(id.as_uuid())
                .bind(i32::try_from(created).unwrap_or(i32::MAX))
                .bind(i32::try_from(failed).unwrap_or(i32::MAX))
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                let import = $crate::imports::ProductImport::try_from(row)?;
                let completed = (import.status == $crate::imports::ImportStatus::Completed)
                    .then_some(import);
                if let Some(done) = &completed {
                    Self::enqueue_webhook(&mut tx, &$crate::webhooks::import_completed(done, now))
                        .await?;
                }
                Self::enqueue(&mut tx, &messages).await?;
                tx.commit().await?;
                self.committed().await?;
                Ok(ChunkRun::Done {
                    created,
                    failed,
                    completed,
                })
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn product_import(
                &self,
                id: $crate::imports::ImportId,
            ) -> Result<Option<$crate::imports::ProductImport>, $crate::store::StoreError> {
                let row: Option<$crate::store::work::ImportRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    $crate::store::work::import_columns!(),
                    " FROM product_imports WHERE id = $1"
                ))
                .bind(id.as_uuid())
                .fetch_optional(self.primary())
                .await?;
                row.map(TryInto::try_into).transpose()
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn import_errors(
                &self,
                id: $crate::imports::ImportId,
                after: u32,
                limit: u32,
            ) -> Result<Vec<$crate::imports::LineError>, $crate::store::StoreError> {
                // Whole lines per page: a line's errors are never split across two pages.
                let rows: Vec<(i32, Option<String>, String)> = sqlx::query_as(
                    "SELECT line, field, message FROM product_import_errors \
                     WHERE import_id = $1 AND line IN ( \
                       SELECT DISTINCT line FROM product_import_errors \
                       WHERE import_id = $1 AND line > $2 ORDER BY line LIMIT $3) \
                     ORDER BY line, seq",
                )
                .bind(id.as_uuid())
                .bind(i32::try_from(after).unwrap_or(i32::MAX))
                .bind(i64::from(limit))
                .fetch_all(self.primary())
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(line, field, message)| $crate::imports::LineError {
                        line: u32::try_from(line).unwrap_or(0),
                        field,
                        message,
                    })
                    .collect())
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn prune_work(
                &self,
                finished_before: chrono::DateTime<chrono::Utc>,
                abandoned_before: chrono::DateTime<chrono::Utc>,
            ) -> Result<u64, $crate::store::StoreError> {
                let batches = sqlx::query("DELETE FROM batches WHERE completed_at < $1")
                    .bind(finished_before)
                    .execute(self.primary())
                    .await?
                    .rows_affected();
                let imports = sqlx::query(
                    "DELETE FROM product_imports WHERE completed_at < $1 \
                       OR (status = 'receiving' AND created_at < $2)",
                )
                .bind(finished_before)
                .bind(abandoned_before)
                .execute(self.primary())
                .await?
                .rows_affected();
                Ok(batches + imports)
            }
        }
    };
}
pub(super) use impl_work_store;
