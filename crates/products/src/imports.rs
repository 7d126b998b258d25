//! Product imports (`POST /v1/product-imports`): the seed's answer to a gateway bottleneck.
//! The API stores the NDJSON lines as they stream in (never the whole body in memory) and
//! answers 202 as soon as they are durable, with their chunks queued on the products-work queue
//! in the same transaction; consumers (scaled on that queue's depth in production) then create
//! the products chunk by chunk. Each line is validated exactly as `POST /v1/products` would
//! validate it, the seller once per distinct seller; a chunk's products, its line errors and its
//! progress commit together, so a crash mid-import resumes without creating anything twice.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};

use crate::domain::{NewProduct, SellerId};
use crate::endpoints::Caller;
use crate::ndjson::{Line, Splitter};
use crate::service::{Catalog, ServiceError, now};
use crate::store::{StoreError, WorkStore};

vitrine_kernel::define_id!(
    /// Identifies a product import.
    ImportId
);

/// Lines per chunk (one queue message, one transaction).
pub const CHUNK_LINES: u32 = 500;
/// Lines written per statement while the body streams in.
const STORE_BATCH: usize = 500;
/// Lines whose errors are listed per `GET /v1/product-imports/{id}` page.
pub const ERRORS_PAGE: u32 = 1000;

/// The webhook event type an import's end is announced with.
pub const PRODUCT_IMPORT_COMPLETED: &str = "product-import.completed";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportStatus {
    /// The body is still streaming in (or its upload was cut off; pruned after an hour).
    Receiving,
    Queued,
    Running,
    Completed,
}

impl ImportStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Receiving => "receiving",
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Completed => "completed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "receiving" => Some(Self::Receiving),
            "queued" => Some(Self::Queued),
            "running" => Some(Self::Running),
            "completed" => Some(Self::Completed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProductImport {
    pub id: ImportId,
    /// Who imported: a customer id, or `admin`.
    pub tenant: String,
    pub status: ImportStatus,
    /// Non-blank lines received.
    pub received: u32,
    pub created: u32,
    pub failed: u32,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// An import to record.
#[derive(Debug, Clone)]
pub struct NewImport {
    pub id: ImportId,
    pub tenant: String,
    pub actor: String,
    pub idempotency_key: Option<String>,
}

/// What recording an import found.
#[derive(Debug, Clone, PartialEq)]
pub enum Begun {
    New,
    /// The tenant used this `Idempotency-Key` before.
    Existing(ProductImport),
}

/// A stored line, as the chunk reads it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLine {
    pub number: u32,
    pub body: Result<String, String>,
}

/// Why a line created no product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: u32,
    /// The field at fault; `None` when the line is not a JSON object at all.
    pub field: Option<String>,
    pub message: String,
}

/// What a chunk does with one of its lines.
#[derive(Debug, Clone)]
pub enum LineOutcome {
    Create(NewProduct),
    Invalid(Vec<LineError>),
}

/// What running one chunk did.
#[derive(Debug, Clone, PartialEq)]
pub enum ChunkRun {
    Done {
        created: u32,
        failed: u32,
        /// Set when this chunk was the import's last.
        completed: Option<ProductImport>,
    },
    /// Done before (a redelivered command): nothing changed.
    AlreadyDone,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("the body is larger than {0} bytes")]
    TooLarge(u64),
    #[error("the body has no lines")]
    Empty,
    #[error("the upload was cut off: {0}")]
    Cut(String),
    /// An upload with the same `Idempotency-Key` is still streaming in.
    #[error("an upload with this Idempotency-Key is in progress")]
    InProgress,
    #[error("not found")]
    NotFound,
    /// user-information did not answer: the chunk is retried later.
    #[error("the customer directory is unavailable: {0}")]
    DirectoryUnavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<StoreError> for ImportError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => Self::NotFound,
            other => Self::Internal(other.into()),
        }
    }
}

/// A seller's verdict, remembered per import so each distinct seller is asked about once.
type Verdict = Result<(), String>;

/// How many (import, seller) verdicts a process remembers before starting over.
const VERDICTS_KEPT: usize = 10_000;

#[derive(Debug, Clone)]
pub struct Imports {
    work: Arc<dyn WorkStore>,
    catalog: Catalog,
    max_bytes: u64,
    verdicts: Arc<Mutex<HashMap<(ImportId, SellerId), Verdict>>>,
}

impl Imports {
    pub fn new(work: Arc<dyn WorkStore>, catalog: Catalog, max_bytes: u64) -> Self {
        Self {
            work,
            catalog,
            max_bytes,
            verdicts: Arc::default(),
        }
    }

    /// Stores the body's lines as they arrive and queues their chunks: the import, queued.
    /// A repeated `Idempotency-Key` of the same tenant returns the first import instead (its
    /// body is read and dropped). A body cut off or too large, or an upload whose request is
    /// cancelled, leaves nothing behind.
    pub async fn receive<S, E>(
        &self,
        caller: &Caller,
        actor: &str,
        idempotency_key: Option<String>,
        body: S,
    ) -> Result<ProductImport, ImportError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let new = NewImport {
            id: ImportId::new(),
            tenant: caller.owner(),
            actor: actor.to_owned(),
            idempotency_key,
        };
        match self.work.begin_import(&new, now()).await? {
            Begun::Existing(import) => {
                // The body is read (and dropped) all the same: a client still sending it when
                // the answer comes would otherwise see its connection reset, not the answer.
                self.discard(body).await;
                return if import.status == ImportStatus::Receiving {
                    Err(ImportError::InProgress)
                } else {
                    Ok(import)
                };
            }
            Begun::New => {}
        }
        // Whatever ends the upload (an error here, the request timeout or a dropped connection
        // cancelling this future), an import that did not get queued is removed, so its lines
        // do not linger and its key can be used again at once.
        let mut pending = Abandon {
            work: Arc::clone(&self.work),
            id: Some(new.id),
        };
        let queued = match self.stream_lines(new.id, body).await {
            Ok((received, bytes)) if received > 0 => self
                .work
                .queue_import(new.id, bytes, CHUNK_LINES)
                .await
                .map_err(ImportError::from),
            Ok(_) => Err(ImportError::Empty),
            Err(error) => Err(error),
        };
        match queued {
            Ok(import) => {
                pending.id = None;
                Ok(import)
            }
            Err(error) => {
                pending.now().await;
                Err(error)
            }
        }
    }

    /// Reads a body that is not needed, up to the size limit.
    async fn discard<S, E>(&self, body: S)
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
    {
        let mut body = std::pin::pin!(body);
        let mut read = 0u64;
        while let Some(Ok(chunk)) = body.next().await {
            read += chunk.len() as u64;
            if read > self.max_bytes {
                break;
            }
        }
    }

    /// Writes the body's lines in batches; the number of lines and bytes.
    async fn stream_lines<S, E>(&self, id: ImportId, body: S) -> Result<(u32, u64), ImportError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let mut body = std::pin::pin!(body);
        let mut splitter = Splitter::new();
        let mut lines: Vec<Line> = Vec::with_capacity(STORE_BATCH);
        let (mut received, mut bytes) = (0u32, 0u64);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|error| ImportError::Cut(error.to_string()))?;
            bytes += chunk.len() as u64;
            if bytes > self.max_bytes {
                return Err(ImportError::TooLarge(self.max_bytes));
            }
            splitter.push(&chunk, &mut lines);
            if lines.len() >= STORE_BATCH {
                received += lines.len() as u32;
                self.work.add_import_lines(id, &lines).await?;
                lines.clear();
            }
        }
        splitter.end(&mut lines);
        if !lines.is_empty() {
            received += lines.len() as u32;
            self.work.add_import_lines(id, &lines).await?;
        }
        Ok((received, bytes))
    }

    /// The caller's import and a page of its line errors (after line `errors_after`).
    pub async fn get(
        &self,
        caller: &Caller,
        id: ImportId,
        errors_after: u32,
    ) -> Result<(ProductImport, Vec<LineError>), ImportError> {
        let import = self
            .work
            .product_import(id)
            .await?
            .ok_or(ImportError::NotFound)?;
        if let Some(tenant) = caller.scope()
            && tenant != import.tenant
        {
            return Err(ImportError::NotFound);
        }
        let errors = self
            .work
            .import_errors(id, errors_after, ERRORS_PAGE)
            .await?;
        Ok((import, errors))
    }

    /// Creates the products of lines `first..=last` of import `id` (the work queue's command).
    pub async fn run_chunk(
        &self,
        id: ImportId,
        first: u32,
        last: u32,
    ) -> Result<ChunkRun, ImportError> {
        let Some(import) = self.work.product_import(id).await? else {
            // Pruned, or abandoned: nothing to do.
            return Ok(ChunkRun::AlreadyDone);
        };
        let lines = self.work.import_lines(id, first, last).await?;
        if lines.is_empty() {
            return Ok(ChunkRun::AlreadyDone);
        }
        let mut outcomes: Vec<(u32, LineOutcome)> = lines
            .into_iter()
            .map(|line| (line.number, parse_line(line, &import.tenant)))
            .collect();
        let sellers: BTreeMap<SellerId, ()> = outcomes
            .iter()
            .filter_map(|(_, outcome)| match outcome {
                LineOutcome::Create(new) => Some((new.seller_id, ())),
                LineOutcome::Invalid(_) => None,
            })
            .collect();
        let mut verdicts = HashMap::new();
        for seller in sellers.into_keys() {
            verdicts.insert(seller, self.verdict(id, seller).await?);
        }
        for (number, outcome) in &mut outcomes {
            if let LineOutcome::Create(new) = outcome
                && let Some(Err(message)) = verdicts.get(&new.seller_id)
            {
                *outcome = LineOutcome::Invalid(vec![LineError {
                    line: *number,
                    field: Some("seller_id".to_owned()),
                    message: message.clone(),
                }]);
            }
        }
        let run = self
            .work
            .run_import_chunk(id, first, last, &outcomes, now())
            .await?;
        if let ChunkRun::Done {
            created,
            failed,
            completed,
        } = &run
        {
            metrics::counter!("vitrine_import_lines_total", "result" => "created")
                .increment(u64::from(*created));
            metrics::counter!("vitrine_import_lines_total", "result" => "failed")
                .increment(u64::from(*failed));
            if let Some(done) = completed {
                self.forget(id);
                tracing::info!(
                    import_id = %id,
                    received = done.received,
                    created = done.created,
                    failed = done.failed,
                    "product import completed"
                );
            }
        }
        Ok(run)
    }

    /// Whether `seller` may list products, asked once per import and seller (per process).
    async fn verdict(&self, id: ImportId, seller: SellerId) -> Result<Verdict, ImportError> {
        if let Some(known) = self.lock().get(&(id, seller)) {
            return Ok(known.clone());
        }
        let verdict = match self.catalog.check_seller(seller).await {
            Ok(()) => Ok(()),
            Err(ServiceError::SellerRejected(why)) => Err(why.to_owned()),
            Err(ServiceError::DirectoryUnavailable(why)) => {
                return Err(ImportError::DirectoryUnavailable(why));
            }
            Err(other) => return Err(ImportError::Internal(other.into())),
        };
        let mut verdicts = self.lock();
        if verdicts.len() >= VERDICTS_KEPT {
            verdicts.clear();
        }
        verdicts.insert((id, seller), verdict.clone());
        Ok(verdict)
    }

    fn forget(&self, id: ImportId) {
        self.lock().retain(|(import, _), _| *import != id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(ImportId, SellerId), Verdict>> {
        // The map holds plain values: a panic elsewhere cannot leave it inconsistent.
        self.verdicts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A stored line parsed and validated as `POST /v1/products` validates its body; a customer
/// imports only its own products, as it lists only its own.
fn parse_line(line: StoredLine, tenant: &str) -> LineOutcome {
    let number = line.number;
    let error = |field: Option<&str>, message: String| LineError {
        line: number,
        field: field.map(str::to_owned),
        message,
    };
    let text = match line.body {
        Ok(text) => text,
        Err(why) => return LineOutcome::Invalid(vec![error(None, why)]),
    };
    match crate::api::products::parse_product(text.as_bytes()) {
        Ok(new) if tenant == crate::endpoints::ADMIN_TENANT => LineOutcome::Create(new),
        Ok(new) if new.seller_id.to_string() == tenant => LineOutcome::Create(new),
        Ok(_) => LineOutcome::Invalid(vec![error(
            Some("seller_id"),
            "a customer imports only its own products".to_owned(),
        )]),
        Err(problems) => LineOutcome::Invalid(
            problems
                .into_iter()
                .map(|(field, message)| error(field.as_deref(), message))
                .collect(),
        ),
    }
}

/// Removes a receiving import unless disarmed (`id` taken): at once through [`Abandon::now`],
/// or, when the upload's future is dropped mid-way, in a task of its own.
struct Abandon {
    work: Arc<dyn WorkStore>,
    id: Option<ImportId>,
}

impl Abandon {
    async fn now(&mut self) {
        if let Some(id) = self.id.take() {
            remove(self.work.as_ref(), id).await;
        }
    }
}

impl Drop for Abandon {
    fn drop(&mut self) {
        if let Some(id) = self.id.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let work = Arc::clone(&self.work);
            runtime.spawn(async move { remove(work.as_ref(), id).await });
        }
    }
}

/// Best effort: an import left receiving is pruned after an hour anyway.
async fn remove(work: &dyn WorkStore, id: ImportId) {
    if let Err(error) = work.abandon_import(id).await {
        tracing::warn!(import_id = %id, %error, "an abandoned import could not be removed");
    }
}
