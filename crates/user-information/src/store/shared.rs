//! The `CustomerStore` implementation both backends share, as products' stores do. The SQL is
//! written once with `$N` placeholders, which PostgreSQL and SQLite (through sqlx) both
//! accept; what differs is two lock clauses given to the macro and the [`Backend`] impl, a
//! trait the compiler holds every backend to:
//!
//! - `begin_write()`: a transaction that reads, then writes (SQLite: `BEGIN IMMEDIATE`, taking
//!   the write lock up front instead of failing to upgrade; PostgreSQL: a plain transaction
//!   whose customer row is locked `FOR UPDATE`, the `lock` literal);
//! - `committed()`: after a commit that wrote messages (SQLite wakes its relay; PostgreSQL's is
//!   woken by `NOTIFY`);
//! - `enqueue(conn, messages)`, `outbox_store()`, `inbox_store()`.
//!
//! Adding a payment method checks the customer and inserts in one statement: SQLite serialises
//! writers, and PostgreSQL takes the customer row `FOR SHARE` (the `share` literal), so a
//! concurrent close either runs first (nothing inserted) or after (and deletes the row).

use std::future::Future;

use super::StoreError;

/// What the shared implementation needs from each backend.
pub(super) trait Backend {
    type Database: sqlx::Database;

    fn pool(&self) -> &sqlx::Pool<Self::Database>;

    /// A transaction that reads, then writes.
    fn begin_write(
        &self,
    ) -> impl Future<Output = Result<sqlx::Transaction<'static, Self::Database>, StoreError>> + Send;

    /// After a commit that wrote outbox messages.
    fn committed(&self);

    /// Writes `messages` to the outbox on `conn`, in the caller's transaction.
    fn enqueue(
        conn: &mut <Self::Database as sqlx::Database>::Connection,
        messages: &[vitrine_messaging::outbox::OutboxMessage],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn outbox_store(&self) -> std::sync::Arc<dyn vitrine_messaging::outbox::OutboxStore>;

    fn inbox_store(&self) -> vitrine_messaging::inbox::Inbox;
}

/// Binds a customer's details, the twelve columns every write of them lists first.
macro_rules! bind_details {
    ($query:expr, $details:expr) => {{
        let details = $details;
        let address = &details.address;
        $query
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
    }};
}

macro_rules! impl_customer_store {
    ($store:ty, lock = $lock:literal, share = $share:literal) => {
        impl $store {
            async fn locked_customer(
                conn: &mut <<Self as $crate::store::shared::Backend>::Database as sqlx::Database>::Connection,
                id: $crate::domain::CustomerId,
            ) -> Result<$crate::domain::Customer, $crate::store::StoreError> {
                let row: Option<$crate::store::rows::CustomerRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    $crate::store::rows::customer_columns!(),
                    " FROM customers WHERE id = $1",
                    $lock
                ))
                .bind(id.as_uuid())
                .fetch_optional(&mut *conn)
                .await?;
                $crate::domain::Customer::try_from(
                    row.ok_or($crate::store::StoreError::NotFound)?,
                )
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::CustomerStore for $store {
            #[tracing::instrument(level = "debug", skip_all)]
            async fn insert_customer(
                &self,
                id: $crate::domain::CustomerId,
                details: &$crate::domain::CustomerDetails,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<$crate::domain::Customer, $crate::store::StoreError> {
                let mut tx = vitrine_runtime::db::begin(self.pool()).await?;
                let query = sqlx::query_as(concat!(
                    "INSERT INTO customers (cnpj, legal_name, trade_name, email, phone, \
                       address_street, address_number, address_complement, address_district, \
                       address_city, address_state, address_postal_code, id, status, version, \
                       created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'active', \
                       1, $14, $14) \
                     RETURNING ",
                    $crate::store::rows::customer_columns!()
                ));
                let row: $crate::store::rows::CustomerRow =
                    $crate::store::shared::bind_details!(query, details)
                        .bind(id.as_uuid())
                        .bind(now)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(|e| $crate::store::rows::unique_as(e, "cnpj"))?;
                let customer = $crate::domain::Customer::try_from(row)?;
                Self::enqueue(&mut tx, &$crate::outgoing::customer_changed(None, &customer))
                    .await?;
                tx.commit().await?;
                self.committed();
                Ok(customer)
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn get_customer(
                &self,
                id: $crate::domain::CustomerId,
            ) -> Result<Option<$crate::domain::Customer>, $crate::store::StoreError> {
                let row: Option<$crate::store::rows::CustomerRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    $crate::store::rows::customer_columns!(),
                    " FROM customers WHERE id = $1"
                ))
                .bind(id.as_uuid())
                .fetch_optional(self.pool())
                .await?;
                row.map($crate::domain::Customer::try_from).transpose()
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn list_customers(
                &self,
                filter: &$crate::store::CustomerFilter,
                limit: vitrine_kernel::PageLimit,
                cursor: Option<&vitrine_kernel::Cursor>,
            ) -> Result<vitrine_kernel::Page<$crate::domain::Customer>, $crate::store::StoreError>
            {
                let rows: Vec<$crate::store::rows::CustomerRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    $crate::store::rows::customer_columns!(),
                    " FROM customers \
                     WHERE ($1 IS NULL OR id > $1) AND ($2 IS NULL OR cnpj = $2) \
                       AND ($3 IS NULL OR status = $3) \
                     ORDER BY id LIMIT $4"
                ))
                .bind(cursor.map(vitrine_kernel::Cursor::position))
                .bind(filter.cnpj.as_ref().map(|c| c.as_str()))
                .bind(filter.status.map($crate::domain::CustomerStatus::as_str))
                .bind(i64::from(limit.get()) + 1)
                .fetch_all(self.pool())
                .await?;
                let customers = rows
                    .into_iter()
                    .map($crate::domain::Customer::try_from)
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(vitrine_kernel::Page::from_overfetch(customers, limit, |c| {
                    c.id.as_uuid()
                }))
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn update_customer(
                &self,
                id: $crate::domain::CustomerId,
                expected_version: Option<i64>,
                changes: &$crate::domain::CustomerChanges,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<$crate::domain::Customer, $crate::store::StoreError> {
                let mut tx = self.begin_write().await?;
                let current = Self::locked_customer(&mut tx, id).await?;
                $crate::store::check_writable(&current, expected_version)?;
                let details = changes.apply_to(&current);
                let status = changes.status.unwrap_or(current.status);
                let query = sqlx::query_as(concat!(
                    "UPDATE customers SET cnpj = $1, legal_name = $2, trade_name = $3, \
                       email = $4, phone = $5, address_street = $6, address_number = $7, \
                       address_complement = $8, address_district = $9, address_city = $10, \
                       address_state = $11, address_postal_code = $12, status = $13, \
                       version = version + 1, updated_at = $14 \
                     WHERE id = $15 \
                     RETURNING ",
                    $crate::store::rows::customer_columns!()
                ));
                let row: $crate::store::rows::CustomerRow =
                    $crate::store::shared::bind_details!(query, &details)
                        .bind(status.as_str())
                        .bind(now)
                        .bind(id.as_uuid())
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(|e| $crate::store::rows::unique_as(e, "cnpj"))?;
                let customer = $crate::domain::Customer::try_from(row)?;
                Self::enqueue(
                    &mut tx,
                    &$crate::outgoing::customer_changed(Some(&current), &customer),
                )
                .await?;
                tx.commit().await?;
                self.committed();
                Ok(customer)
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn close_customer(
                &self,
                id: $crate::domain::CustomerId,
                expected_version: Option<i64>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<
                ($crate::domain::Customer, Vec<$crate::domain::PaymentMethod>),
                $crate::store::StoreError,
            > {
                use $crate::domain::{CustomerStatus, PaymentMethod};
                let mut tx = self.begin_write().await?;
                let current = Self::locked_customer(&mut tx, id).await?;
                if current.status != CustomerStatus::Closed
                    && expected_version.is_some_and(|v| v != current.version)
                {
                    return Err($crate::store::StoreError::VersionMismatch);
                }
                let removed: Vec<$crate::store::rows::PaymentMethodRow> = sqlx::query_as(concat!(
                    "DELETE FROM payment_methods WHERE customer_id = $1 RETURNING ",
                    $crate::store::rows::payment_method_columns!()
                ))
                .bind(id.as_uuid())
                .fetch_all(&mut *tx)
                .await?;
                let customer = if current.status == CustomerStatus::Closed {
                    current.clone()
                } else {
                    let row: $crate::store::rows::CustomerRow = sqlx::query_as(concat!(
                        "UPDATE customers SET status = 'closed', version = version + 1, \
                           updated_at = $1 \
                         WHERE id = $2 RETURNING ",
                        $crate::store::rows::customer_columns!()
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
                let mut messages = $crate::outgoing::customer_changed(Some(&current), &customer);
                messages.extend(removed.iter().map($crate::outgoing::payment_method_removed));
                Self::enqueue(&mut tx, &messages).await?;
                $crate::store::erasures::schedule(
                    &mut *tx,
                    id,
                    $crate::domain::customer_secrets(id).as_str(),
                    now,
                )
                .await?;
                tx.commit().await?;
                self.committed();
                Ok((customer, removed))
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn insert_payment_method(
                &self,
                method: &$crate::domain::PaymentMethod,
            ) -> Result<(), $crate::store::StoreError> {
                let columns = $crate::store::rows::PaymentMethodColumns::from(&method.instrument);
                let mut tx = vitrine_runtime::db::begin(self.pool()).await?;
                let inserted = sqlx::query(concat!(
                    "INSERT INTO payment_methods (id, customer_id, kind, card_brand, card_last4, \
                       card_exp_month, card_exp_year, card_holder_name, pix_key_type, \
                       pix_masked_key, secret_path, created_at) \
                     SELECT $1, c.id, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12 \
                     FROM customers c WHERE c.id = $2 AND c.status <> 'closed'",
                    $share
                ))
                .bind(method.id.as_uuid())
                .bind(method.customer_id.as_uuid())
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
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if inserted == 1 {
                    Self::enqueue(&mut tx, &[$crate::outgoing::payment_method_added(method)])
                        .await?;
                    tx.commit().await?;
                    self.committed();
                    return Ok(());
                }
                drop(tx);
                match self.get_customer(method.customer_id).await? {
                    None => Err($crate::store::StoreError::NotFound),
                    Some(_) => Err($crate::store::StoreError::Closed),
                }
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn get_payment_method(
                &self,
                customer: $crate::domain::CustomerId,
                id: $crate::domain::PaymentMethodId,
            ) -> Result<Option<$crate::domain::PaymentMethod>, $crate::store::StoreError> {
                let row: Option<$crate::store::rows::PaymentMethodRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    $crate::store::rows::payment_method_columns!(),
                    " FROM payment_methods WHERE id = $1 AND customer_id = $2"
                ))
                .bind(id.as_uuid())
                .bind(customer.as_uuid())
                .fetch_optional(self.pool())
                .await?;
                row.map($crate::domain::PaymentMethod::try_from).transpose()
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn list_payment_methods(
                &self,
                customer: $crate::domain::CustomerId,
                limit: vitrine_kernel::PageLimit,
                cursor: Option<&vitrine_kernel::Cursor>,
            ) -> Result<
                vitrine_kernel::Page<$crate::domain::PaymentMethod>,
                $crate::store::StoreError,
            > {
                let rows: Vec<$crate::store::rows::PaymentMethodRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    $crate::store::rows::payment_method_columns!(),
                    " FROM payment_methods WHERE customer_id = $1 AND ($2 IS NULL OR id > $2) \
                     ORDER BY id LIMIT $3"
                ))
                .bind(customer.as_uuid())
                .bind(cursor.map(vitrine_kernel::Cursor::position))
                .bind(i64::from(limit.get()) + 1)
                .fetch_all(self.pool())
                .await?;
                let methods = rows
                    .into_iter()
                    .map($crate::domain::PaymentMethod::try_from)
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(vitrine_kernel::Page::from_overfetch(methods, limit, |m| {
                    m.id.as_uuid()
                }))
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn delete_payment_method(
                &self,
                method: &$crate::domain::PaymentMethod,
            ) -> Result<bool, $crate::store::StoreError> {
                let mut tx = vitrine_runtime::db::begin(self.pool()).await?;
                let deleted =
                    sqlx::query("DELETE FROM payment_methods WHERE id = $1 AND customer_id = $2")
                        .bind(method.id.as_uuid())
                        .bind(method.customer_id.as_uuid())
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                if deleted == 1 {
                    Self::enqueue(&mut tx, &[$crate::outgoing::payment_method_removed(method)])
                        .await?;
                    tx.commit().await?;
                    self.committed();
                }
                Ok(deleted == 1)
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn record_secret_access(
                &self,
                access: &$crate::domain::SecretAccess,
            ) -> Result<(), $crate::store::StoreError> {
                sqlx::query(
                    "INSERT INTO secret_access_audit (id, customer_id, payment_method_id, actor, \
                       accessed_at, request_id) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(uuid::Uuid::now_v7())
                .bind(access.customer_id.as_uuid())
                .bind(access.payment_method_id.as_uuid())
                .bind(&access.actor)
                .bind(access.accessed_at)
                .bind(&access.request_id)
                .execute(self.pool())
                .await?;
                Ok(())
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn secret_accesses(
                &self,
                id: $crate::domain::PaymentMethodId,
            ) -> Result<Vec<$crate::domain::SecretAccess>, $crate::store::StoreError> {
                let rows: Vec<$crate::store::rows::SecretAccessRow> = sqlx::query_as(
                    "SELECT customer_id, payment_method_id, actor, accessed_at, request_id \
                     FROM secret_access_audit WHERE payment_method_id = $1 \
                     ORDER BY accessed_at, id",
                )
                .bind(id.as_uuid())
                .fetch_all(self.pool())
                .await?;
                Ok(rows.into_iter().map($crate::domain::SecretAccess::from).collect())
            }

            fn outbox(&self) -> std::sync::Arc<dyn vitrine_messaging::outbox::OutboxStore> {
                self.outbox_store()
            }

            fn inbox(&self) -> vitrine_messaging::inbox::Inbox {
                self.inbox_store()
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn due_erasures(
                &self,
                now: chrono::DateTime<chrono::Utc>,
                max: i64,
            ) -> Result<Vec<$crate::store::PendingErasure>, $crate::store::StoreError> {
                $crate::store::erasures::due(self.pool(), now, max).await
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn erasure_done(
                &self,
                customer: $crate::domain::CustomerId,
            ) -> Result<(), $crate::store::StoreError> {
                $crate::store::erasures::done(self.pool(), customer).await
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn erasure_failed(
                &self,
                customer: $crate::domain::CustomerId,
                error: &str,
                retry_at: chrono::DateTime<chrono::Utc>,
            ) -> Result<(), $crate::store::StoreError> {
                $crate::store::erasures::failed(self.pool(), customer, error, retry_at).await
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn ping(&self) -> Result<(), $crate::store::StoreError> {
                sqlx::query("SELECT 1").execute(self.pool()).await?;
                Ok(())
            }
        }
    };
}

pub(super) use {bind_details, impl_customer_store};
