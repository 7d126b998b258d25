//! `CustomerStore` on SQLite (the embedded default).
//!
//! Writes that read before they write open `BEGIN IMMEDIATE` transactions: SQLite then takes the
//! write lock up front, instead of failing with `SQLITE_BUSY` when two deferred transactions both
//! try to upgrade.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::SqlitePool;
use vitrine_kernel::{Cursor, Page, PageLimit};

use super::rows::{
    CustomerRow, PaymentMethodColumns, PaymentMethodRow, SecretAccessRow, customer_columns,
    payment_method_columns, unique_as,
};
use super::{CustomerFilter, CustomerStore, PendingErasure, StoreError, check_writable, erasures};
use crate::domain::{
    Customer, CustomerChanges, CustomerDetails, CustomerId, CustomerStatus, PaymentMethod,
    PaymentMethodId, SecretAccess,
};
use vitrine_messaging::outbox::{OutboxStore, SqliteOutbox, enqueue_sqlite};

use crate::outgoing;

/// Migrations of the SQLite schema, embedded in the binary.
/// This service's tables (`migrations/sqlite`), the outbox and inbox, and the idempotency
/// keys, in one history.
pub static MIGRATOR: std::sync::LazyLock<sqlx::migrate::Migrator> =
    std::sync::LazyLock::new(|| {
        vitrine_runtime::migrations::compose(&[
            &sqlx::migrate!("./migrations/sqlite"),
            &vitrine_messaging::migrations::SQLITE,
            &vitrine_platform::migrations::SQLITE,
        ])
    });

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Shared with the relay, which writes wake after committing messages.
    outbox: SqliteOutbox,
}

impl SqliteStore {
    pub fn new(pool: SqlitePool) -> Self {
        Self {
            outbox: SqliteOutbox::new(pool.clone()),
            pool,
        }
    }

    /// Brings the schema up to date; the migrations it applied (`version description`).
    pub async fn migrate(&self) -> anyhow::Result<Vec<String>> {
        Ok(vitrine_runtime::migrations::apply(&MIGRATOR, &self.pool).await?)
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

fn bind_details<'q>(
    query: sqlx::query::QueryAs<'q, sqlx::Sqlite, CustomerRow, sqlx::sqlite::SqliteArguments>,
    details: &'q CustomerDetails,
) -> sqlx::query::QueryAs<'q, sqlx::Sqlite, CustomerRow, sqlx::sqlite::SqliteArguments> {
    let address = &details.address;
    query
        .bind(details.cnpj.as_str())
        .bind(details.legal_name.as_str())
        .bind(details.trade_name.as_ref().map(|t| t.as_str()))
        .bind(details.email.as_str())
        .bind(details.phone.as_ref().map(|p| p.as_str()))
        .bind(address.street.as_str())
        .bind(address.number.as_str())
        .bind(address.complement.as_ref().map(|c| c.as_str()))
        .bind(address.district.as_str())
        .bind(address.city.as_str())
        .bind(address.state.as_str())
        .bind(address.postal_code.as_str())
}

impl SqliteStore {
    async fn locked_customer(
        tx: &mut sqlx::SqliteConnection,
        id: CustomerId,
    ) -> Result<Customer, StoreError> {
        let row: Option<CustomerRow> = sqlx::query_as(concat!(
            "SELECT ",
            customer_columns!(),
            " FROM customers WHERE id = ?"
        ))
        .bind(id.as_uuid())
        .fetch_optional(tx)
        .await?;
        Customer::try_from(row.ok_or(StoreError::NotFound)?)
    }
}

#[async_trait]
impl CustomerStore for SqliteStore {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn insert_customer(
        &self,
        id: CustomerId,
        details: &CustomerDetails,
        now: DateTime<Utc>,
    ) -> Result<Customer, StoreError> {
        let mut tx = self.pool.begin().await?;
        let query = sqlx::query_as(concat!(
            "INSERT INTO customers (cnpj, legal_name, trade_name, email, phone, address_street, \
               address_number, address_complement, address_district, address_city, address_state, \
               address_postal_code, id, status, version, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'active', 1, ?, ?) RETURNING ",
            customer_columns!()
        ));
        let row: CustomerRow = bind_details(query, details)
            .bind(id.as_uuid())
            .bind(now)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| unique_as(e, "cnpj"))?;
        let customer = Customer::try_from(row)?;
        enqueue_sqlite(&mut tx, &outgoing::customer_changed(None, &customer)).await?;
        tx.commit().await?;
        self.outbox.wake();
        Ok(customer)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn get_customer(&self, id: CustomerId) -> Result<Option<Customer>, StoreError> {
        let row: Option<CustomerRow> = sqlx::query_as(concat!(
            "SELECT ",
            customer_columns!(),
            " FROM customers WHERE id = ?"
        ))
        .bind(id.as_uuid())
        .fetch_optional(&self.pool)
        .await?;
        row.map(Customer::try_from).transpose()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn list_customers(
        &self,
        filter: &CustomerFilter,
        limit: PageLimit,
        cursor: Option<&Cursor>,
    ) -> Result<Page<Customer>, StoreError> {
        let rows: Vec<CustomerRow> = sqlx::query_as(concat!(
            "SELECT ",
            customer_columns!(),
            " FROM customers \
             WHERE (?1 IS NULL OR id > ?1) AND (?2 IS NULL OR cnpj = ?2) \
               AND (?3 IS NULL OR status = ?3) \
             ORDER BY id LIMIT ?4"
        ))
        .bind(cursor.map(Cursor::position))
        .bind(filter.cnpj.as_ref().map(|c| c.as_str()))
        .bind(filter.status.map(CustomerStatus::as_str))
        .bind(i64::from(limit.get()) + 1)
        .fetch_all(&self.pool)
        .await?;
        let customers = rows
            .into_iter()
            .map(Customer::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetch(customers, limit, |c| c.id.as_uuid()))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn update_customer(
        &self,
        id: CustomerId,
        expected_version: Option<i64>,
        changes: &CustomerChanges,
        now: DateTime<Utc>,
    ) -> Result<Customer, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let current = Self::locked_customer(&mut tx, id).await?;
        check_writable(&current, expected_version)?;
        let details = changes.apply_to(&current);
        let status = changes.status.unwrap_or(current.status);
        let query = sqlx::query_as(concat!(
            "UPDATE customers SET cnpj = ?, legal_name = ?, trade_name = ?, email = ?, phone = ?, \
               address_street = ?, address_number = ?, address_complement = ?, \
               address_district = ?, address_city = ?, address_state = ?, \
               address_postal_code = ?, status = ?, version = version + 1, updated_at = ? \
             WHERE id = ? RETURNING ",
            customer_columns!()
        ));
        let row: CustomerRow = bind_details(query, &details)
            .bind(status.as_str())
            .bind(now)
            .bind(id.as_uuid())
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| unique_as(e, "cnpj"))?;
        let customer = Customer::try_from(row)?;
        enqueue_sqlite(
            &mut tx,
            &outgoing::customer_changed(Some(&current), &customer),
        )
        .await?;
        tx.commit().await?;
        self.outbox.wake();
        Ok(customer)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn close_customer(
        &self,
        id: CustomerId,
        expected_version: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<(Customer, Vec<PaymentMethod>), StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let current = Self::locked_customer(&mut tx, id).await?;
        if current.status != CustomerStatus::Closed
            && expected_version.is_some_and(|v| v != current.version)
        {
            return Err(StoreError::VersionMismatch);
        }
        let removed: Vec<PaymentMethodRow> = sqlx::query_as(concat!(
            "DELETE FROM payment_methods WHERE customer_id = ? RETURNING ",
            payment_method_columns!()
        ))
        .bind(id.as_uuid())
        .fetch_all(&mut *tx)
        .await?;
        let customer = if current.status == CustomerStatus::Closed {
            current.clone()
        } else {
            let row: CustomerRow = sqlx::query_as(concat!(
                "UPDATE customers SET status = 'closed', version = version + 1, updated_at = ? \
                 WHERE id = ? RETURNING ",
                customer_columns!()
            ))
            .bind(now)
            .bind(id.as_uuid())
            .fetch_one(&mut *tx)
            .await?;
            row.try_into()?
        };
        let removed: Vec<PaymentMethod> = removed
            .into_iter()
            .map(PaymentMethod::try_from)
            .collect::<Result<_, _>>()?;
        let mut messages = outgoing::customer_changed(Some(&current), &customer);
        messages.extend(removed.iter().map(outgoing::payment_method_removed));
        enqueue_sqlite(&mut tx, &messages).await?;
        erasures::schedule(
            &mut *tx,
            id,
            crate::domain::customer_secrets(id).as_str(),
            now,
        )
        .await?;
        tx.commit().await?;
        self.outbox.wake();
        Ok((customer, removed))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn insert_payment_method(&self, method: &PaymentMethod) -> Result<(), StoreError> {
        let columns = PaymentMethodColumns::from(&method.instrument);
        let mut tx = self.pool.begin().await?;
        // One statement: SQLite serialises writers, so a concurrent close either ran before (no
        // row inserted) or runs after (and deletes this row).
        let inserted = sqlx::query(
            "INSERT INTO payment_methods (id, customer_id, kind, card_brand, card_last4, \
               card_exp_month, card_exp_year, card_holder_name, pix_key_type, pix_masked_key, \
               secret_path, created_at) \
             SELECT ?, id, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? FROM customers \
             WHERE id = ? AND status <> 'closed'",
        )
        .bind(method.id.as_uuid())
        .bind(columns.kind)
        .bind(columns.card_brand)
        .bind(columns.card_last4)
        .bind(columns.card_exp_month)
        .bind(columns.card_exp_year)
        .bind(columns.card_holder_name)
        .bind(columns.pix_key_type)
        .bind(columns.pix_masked_key)
        .bind(method.secret_path.as_str())
        .bind(method.created_at)
        .bind(method.customer_id.as_uuid())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 1 {
            enqueue_sqlite(&mut tx, &[outgoing::payment_method_added(method)]).await?;
            tx.commit().await?;
            self.outbox.wake();
            return Ok(());
        }
        drop(tx);
        match self.get_customer(method.customer_id).await? {
            None => Err(StoreError::NotFound),
            Some(_) => Err(StoreError::Closed),
        }
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn get_payment_method(
        &self,
        customer: CustomerId,
        id: PaymentMethodId,
    ) -> Result<Option<PaymentMethod>, StoreError> {
        let row: Option<PaymentMethodRow> = sqlx::query_as(concat!(
            "SELECT ",
            payment_method_columns!(),
            " FROM payment_methods WHERE id = ? AND customer_id = ?"
        ))
        .bind(id.as_uuid())
        .bind(customer.as_uuid())
        .fetch_optional(&self.pool)
        .await?;
        row.map(PaymentMethod::try_from).transpose()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn list_payment_methods(
        &self,
        customer: CustomerId,
        limit: PageLimit,
        cursor: Option<&Cursor>,
    ) -> Result<Page<PaymentMethod>, StoreError> {
        let rows: Vec<PaymentMethodRow> = sqlx::query_as(concat!(
            "SELECT ",
            payment_method_columns!(),
            " FROM payment_methods WHERE customer_id = ?1 AND (?2 IS NULL OR id > ?2) \
             ORDER BY id LIMIT ?3"
        ))
        .bind(customer.as_uuid())
        .bind(cursor.map(Cursor::position))
        .bind(i64::from(limit.get()) + 1)
        .fetch_all(&self.pool)
        .await?;
        let methods = rows
            .into_iter()
            .map(PaymentMethod::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetch(methods, limit, |m| m.id.as_uuid()))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn delete_payment_method(&self, method: &PaymentMethod) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let deleted = sqlx::query("DELETE FROM payment_methods WHERE id = ? AND customer_id = ?")
            .bind(method.id.as_uuid())
            .bind(method.customer_id.as_uuid())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 1 {
            enqueue_sqlite(&mut tx, &[outgoing::payment_method_removed(method)]).await?;
            tx.commit().await?;
            self.outbox.wake();
        }
        Ok(deleted == 1)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn record_secret_access(&self, access: &SecretAccess) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO secret_access_audit (id, customer_id, payment_method_id, actor, accessed_at, request_id) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(uuid::Uuid::now_v7())
        .bind(access.customer_id.as_uuid())
        .bind(access.payment_method_id.as_uuid())
        .bind(&access.actor)
        .bind(access.accessed_at)
        .bind(&access.request_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn secret_accesses(&self, id: PaymentMethodId) -> Result<Vec<SecretAccess>, StoreError> {
        let rows: Vec<SecretAccessRow> = sqlx::query_as(
            "SELECT customer_id, payment_method_id, actor, accessed_at, request_id FROM secret_access_audit \
             WHERE payment_method_id = ? ORDER BY id",
        )
        .bind(id.as_uuid())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(SecretAccess::from).collect())
    }

    fn outbox(&self) -> std::sync::Arc<dyn OutboxStore> {
        std::sync::Arc::new(self.outbox.clone())
    }

    fn inbox(&self) -> vitrine_messaging::inbox::Inbox {
        vitrine_messaging::inbox::Inbox::Sqlite(self.pool.clone())
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn due_erasures(
        &self,
        now: DateTime<Utc>,
        max: i64,
    ) -> Result<Vec<PendingErasure>, StoreError> {
        erasures::due(&self.pool, now, max).await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn erasure_done(&self, customer: CustomerId) -> Result<(), StoreError> {
        erasures::done(&self.pool, customer).await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn erasure_failed(
        &self,
        customer: CustomerId,
        error: &str,
        retry_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        erasures::failed(&self.pool, customer, error, retry_at).await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
