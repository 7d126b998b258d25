//! The use cases of user-information, over the two ports it owns: `CustomerStore` (basic data)
//! and `SecretStore` (card numbers, PIX keys). Authorisation is the HTTP layer's job; this layer
//! keeps the two stores consistent with each other.
//!
//! Ordering rules that keep "no row without its secret, no secret without its row":
//! - adding a method writes the secret first, then the row; a failed row insert destroys the
//!   secret again;
//! - removing a method destroys the secret first, then the row, so a retry after a failure
//!   finishes the job (both steps are idempotent);
//! - closing a customer freezes it, deletes its method rows and records a pending erasure in one
//!   transaction, then destroys its whole secret tree; if the secret store is down, a worker
//!   ([`Customers::erase_pending`]) finishes the erasure when it is back, with no client retry.

use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};
use tokio_util::task::TaskTracker;
use vitrine_kernel::{Cursor, Page, PageLimit};
use vitrine_platform::secrets::{SecretError, SecretStore, SecretValue};

use crate::domain::{
    Customer, CustomerChanges, CustomerDetails, CustomerId, CustomerStatus, MaskedInstrument,
    PaymentMethod, PaymentMethodId, SecretAccess, customer_secrets, payment_method_secret,
};
use crate::store::{CustomerFilter, CustomerStore, StoreError};

/// First delay before a failed erasure is tried again; it doubles per failure up to
/// [`MAX_ERASURE_RETRY`].
const ERASURE_RETRY: std::time::Duration = std::time::Duration::from_secs(2);
const MAX_ERASURE_RETRY: std::time::Duration = std::time::Duration::from_secs(600);

/// The current time at the precision both databases keep (PostgreSQL stores microseconds), so a
/// value read back equals the value written.
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("not found")]
    NotFound,
    #[error("{0} is already registered")]
    Duplicate(&'static str),
    /// The CNPJ belongs to `existing` (closed customers keep theirs).
    #[error("the CNPJ belongs to customer {existing}")]
    CnpjRegistered {
        existing: CustomerId,
        status: CustomerStatus,
    },
    #[error("the resource changed since it was read")]
    VersionMismatch,
    #[error("the customer is closed")]
    Closed,
    #[error("the secret store is unavailable")]
    SecretsUnavailable(#[source] SecretError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => Self::NotFound,
            StoreError::Duplicate(field) => Self::Duplicate(field),
            StoreError::VersionMismatch => Self::VersionMismatch,
            StoreError::Closed => Self::Closed,
            StoreError::Backend(error) => Self::Internal(error),
        }
    }
}

impl From<SecretError> for ServiceError {
    fn from(error: SecretError) -> Self {
        match error {
            SecretError::Unavailable(_) => Self::SecretsUnavailable(error),
            other => Self::Internal(other.into()),
        }
    }
}

/// Runs `work` to completion even if its caller (an HTTP request whose client went away, or
/// that timed out) is dropped: steps that span the database and the secret store must not stop
/// between each other and leave a secret without its row. On `tracker`, so a shutdown waits
/// for it as for the other detached handlers.
async fn detached<T: Send + 'static>(
    tracker: &TaskTracker,
    work: impl Future<Output = Result<T, ServiceError>> + Send + 'static,
) -> Result<T, ServiceError> {
    tracker
        .spawn(work)
        .await
        .map_err(|error| ServiceError::Internal(anyhow::anyhow!("detached step failed: {error}")))?
}

/// A payment method to add: its masked view and the secret itself.
#[derive(Debug)]
pub struct NewPaymentMethod {
    pub instrument: MaskedInstrument,
    pub secret: SecretValue,
}

#[derive(Debug, Clone)]
pub struct Customers {
    store: Arc<dyn CustomerStore>,
    secrets: Arc<dyn SecretStore>,
    work: TaskTracker,
}

impl Customers {
    /// `work` tracks the steps that run detached from their requests (see [`detached`]).
    pub fn new(
        store: Arc<dyn CustomerStore>,
        secrets: Arc<dyn SecretStore>,
        work: TaskTracker,
    ) -> Self {
        Self {
            store,
            secrets,
            work,
        }
    }

    /// Closes the customer and erases every secret it has. Safe to repeat.
    pub async fn close(
        &self,
        id: CustomerId,
        expected_version: Option<i64>,
    ) -> Result<Customer, ServiceError> {
        let this = self.clone();
        detached(&self.work, async move {
            this.close_now(id, expected_version).await
        })
        .await
    }

    pub async fn add_payment_method(
        &self,
        customer: CustomerId,
        new: NewPaymentMethod,
    ) -> Result<PaymentMethod, ServiceError> {
        let this = self.clone();
        detached(&self.work, async move {
            this.add_payment_method_now(customer, new).await
        })
        .await
    }

    pub async fn remove_payment_method(
        &self,
        customer: CustomerId,
        id: PaymentMethodId,
    ) -> Result<(), ServiceError> {
        let this = self.clone();
        detached(&self.work, async move {
            this.remove_payment_method_now(customer, id).await
        })
        .await
    }

    /// Registers a new customer. A CNPJ already registered is refused naming the customer that
    /// has it, and whether that customer is closed (a closed customer keeps its CNPJ).
    pub async fn register(&self, details: &CustomerDetails) -> Result<Customer, ServiceError> {
        let inserted = self
            .store
            .insert_customer(CustomerId::new(), details, now())
            .await;
        match inserted {
            Err(StoreError::Duplicate("cnpj")) => {
                let filter = CustomerFilter {
                    cnpj: Some(details.cnpj.clone()),
                    status: None,
                };
                // Only to say who has it: if this read fails, the conflict is still a conflict.
                let holder = self
                    .store
                    .list_customers(&filter, PageLimit::DEFAULT, None)
                    .await
                    .ok()
                    .and_then(|page| page.items.into_iter().next());
                Err(match holder {
                    Some(existing) => ServiceError::CnpjRegistered {
                        existing: existing.id,
                        status: existing.status,
                    },
                    None => ServiceError::Duplicate("cnpj"),
                })
            }
            other => Ok(other?),
        }
    }

    pub async fn get(&self, id: CustomerId) -> Result<Customer, ServiceError> {
        self.store
            .get_customer(id)
            .await?
            .ok_or(ServiceError::NotFound)
    }

    pub async fn list(
        &self,
        filter: &CustomerFilter,
        limit: PageLimit,
        cursor: Option<&Cursor>,
    ) -> Result<Page<Customer>, ServiceError> {
        Ok(self.store.list_customers(filter, limit, cursor).await?)
    }

    pub async fn update(
        &self,
        id: CustomerId,
        expected_version: Option<i64>,
        changes: &CustomerChanges,
    ) -> Result<Customer, ServiceError> {
        Ok(self
            .store
            .update_customer(id, expected_version, changes, now())
            .await?)
    }

    /// The steps of [`Customers::close`], run detached.
    async fn close_now(
        &self,
        id: CustomerId,
        expected_version: Option<i64>,
    ) -> Result<Customer, ServiceError> {
        let (customer, removed) = self
            .store
            .close_customer(id, expected_version, now())
            .await?;
        match self.erase(id).await {
            Ok(()) => {
                tracing::info!(customer_id = %id, removed_methods = removed.len(), "customer closed and its secrets destroyed")
            }
            Err(error) => {
                tracing::warn!(customer_id = %id, %error, "customer closed; its secrets will be destroyed when the secret store is back")
            }
        }
        Ok(customer)
    }

    /// Destroys the customer's secret tree and clears its pending erasure.
    async fn erase(&self, id: CustomerId) -> Result<(), ServiceError> {
        self.secrets.destroy_tree(&customer_secrets(id)).await?;
        self.store.erasure_done(id).await?;
        Ok(())
    }

    /// Finishes the erasures a close could not (the secret store was unavailable), each retried
    /// with backoff until it succeeds; returns how many it finished.
    pub async fn erase_pending(&self) -> Result<usize, ServiceError> {
        let mut finished = 0;
        for pending in self.store.due_erasures(now(), 100).await? {
            match self.erase(pending.customer).await {
                Ok(()) => {
                    tracing::info!(customer_id = %pending.customer, "pending erasure of a closed customer's secrets finished");
                    finished += 1;
                }
                Err(error) => {
                    let delay = ERASURE_RETRY
                        .saturating_mul(2u32.saturating_pow(pending.attempts.clamp(0, 8) as u32))
                        .min(MAX_ERASURE_RETRY);
                    metrics::counter!("vitrine_secret_erasure_failures_total").increment(1);
                    tracing::warn!(customer_id = %pending.customer, %error, retry_in_s = delay.as_secs(), "erasing a closed customer's secrets failed; retrying");
                    let retry_at = now() + chrono::Duration::from_std(delay).unwrap_or_default();
                    self.store
                        .erasure_failed(pending.customer, &error.to_string(), retry_at)
                        .await?;
                }
            }
        }
        Ok(finished)
    }

    async fn add_payment_method_now(
        &self,
        customer: CustomerId,
        new: NewPaymentMethod,
    ) -> Result<PaymentMethod, ServiceError> {
        // Fail fast (and without touching the secret store) for unknown or closed customers.
        let owner = self.get(customer).await?;
        if owner.status == crate::domain::CustomerStatus::Closed {
            return Err(ServiceError::Closed);
        }
        let id = PaymentMethodId::new();
        let method = PaymentMethod {
            id,
            customer_id: customer,
            instrument: new.instrument,
            secret_path: payment_method_secret(customer, id),
            created_at: now(),
        };
        self.secrets.put(&method.secret_path, &new.secret).await?;
        if let Err(error) = self.store.insert_payment_method(&method).await {
            if let Err(cleanup) = self.secrets.destroy(&method.secret_path).await {
                // Left for erasure of the customer; the path is logged, the value never is.
                tracing::error!(path = %method.secret_path, error = %cleanup, "orphaned secret could not be destroyed");
            }
            return Err(error.into());
        }
        Ok(method)
    }

    pub async fn list_payment_methods(
        &self,
        customer: CustomerId,
        limit: PageLimit,
        cursor: Option<&Cursor>,
    ) -> Result<Page<PaymentMethod>, ServiceError> {
        Ok(self
            .store
            .list_payment_methods(customer, limit, cursor)
            .await?)
    }

    async fn remove_payment_method_now(
        &self,
        customer: CustomerId,
        id: PaymentMethodId,
    ) -> Result<(), ServiceError> {
        let method = self
            .store
            .get_payment_method(customer, id)
            .await?
            .ok_or(ServiceError::NotFound)?;
        self.secrets.destroy(&method.secret_path).await?;
        self.store.delete_payment_method(&method).await?;
        Ok(())
    }

    /// Reveals a payment secret to `actor` (in request `request_id`), recording the access before
    /// anything is returned.
    pub async fn reveal(
        &self,
        customer: CustomerId,
        id: PaymentMethodId,
        actor: &str,
        request_id: Option<&str>,
    ) -> Result<(PaymentMethod, SecretValue), ServiceError> {
        let method = self
            .store
            .get_payment_method(customer, id)
            .await?
            .ok_or(ServiceError::NotFound)?;
        self.store
            .record_secret_access(&SecretAccess {
                customer_id: customer,
                payment_method_id: id,
                actor: actor.to_owned(),
                accessed_at: now(),
                request_id: request_id.map(str::to_owned),
            })
            .await?;
        tracing::info!(customer_id = %customer, payment_method_id = %id, actor, "payment secret revealed");
        let secret = self
            .secrets
            .get(&method.secret_path)
            .await?
            .ok_or_else(|| {
                ServiceError::Internal(anyhow::anyhow!("payment method {id} has no secret"))
            })?;
        Ok((method, secret))
    }

    /// The reveal audit trail of a payment method of `customer`, oldest first (also for a
    /// method since removed: the trail outlives it).
    pub async fn secret_accesses(
        &self,
        customer: CustomerId,
        id: PaymentMethodId,
    ) -> Result<Vec<SecretAccess>, ServiceError> {
        self.get(customer).await?;
        let accesses = self.store.secret_accesses(id).await?;
        Ok(accesses
            .into_iter()
            .filter(|access| access.customer_id == customer)
            .collect())
    }
}
