//! The `ProductStore` implementation both backends share. The SQL is written once with `$N`
//! placeholders, which PostgreSQL and SQLite (through sqlx) both accept; what differs is
//! supplied by each backend's [`Backend`] impl, a trait the compiler holds every backend to:
//!
//! - `begin_write()`: a transaction that may write (SQLite: `BEGIN IMMEDIATE`, taking the write
//!   lock up front instead of failing to upgrade; PostgreSQL: a plain transaction whose rows are
//!   locked with `FOR UPDATE`, the `lock` literal);
//! - `committed()`: the consistency token after a commit (and waking the relay);
//! - `reader(freshness)`: the pool a read goes to, and whether it is a replica;
//! - `reached(token)`: whether the primary's history has reached a token's position;
//! - `replica_failed(error)`, `primary()`, `enqueue(conn, messages)`, `first_delivery(...)`.
//!
//! Stock changes are conditional UPDATEs (`... WHERE on_hand - reserved >= $q`), evaluated
//! against the latest committed row after any lock wait, and the schema's CHECKs back them up:
//! no interleaving of writers can hold more units than exist.

/// Runs a read on the pool `reader` picks; if that was the replica and it failed, marks the
/// replica down and runs the read on the primary.
macro_rules! routed {
    ($self:ident, $freshness:expr, |$pool:ident| $body:expr) => {{
        let ($pool, replica) = $self.reader($freshness).await;
        match $body {
            Err(error) if replica => {
                $self.replica_failed(&error);
                let $pool = $self.primary();
                $body
            }
            other => other,
        }
    }};
}

macro_rules! impl_product_store {
    ($store:ty, lock = $lock:literal) => {
        impl $store {
            async fn locked_product(
                conn: &mut <Self as $crate::store::shared::Backend>::Connection,
                id: $crate::domain::ProductId,
            ) -> Result<$crate::domain::Product, $crate::store::StoreError> {
                let row: Option<$crate::store::rows::ProductRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    $crate::store::rows::product_columns!(),
                    " FROM products WHERE id = $1 AND deleted_at IS NULL",
                    $lock
                ))
                .bind(id.as_uuid())
                .fetch_optional(&mut *conn)
                .await?;
                $crate::domain::Product::try_from(row.ok_or($crate::store::StoreError::NotFound)?)
            }

            /// Inserts a product and its initial ledger entry on `conn`, for an active seller;
            /// the product and the messages announcing it (for the caller to enqueue with the
            /// rest of its transaction). A duplicate SKU is an error.
            async fn insert_product_in(
                conn: &mut <Self as $crate::store::shared::Backend>::Connection,
                id: $crate::domain::ProductId,
                new: &$crate::domain::NewProduct,
                actor: Option<&str>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<
                ($crate::domain::Product, Vec<vitrine_messaging::outbox::OutboxMessage>),
                $crate::store::StoreError,
            > {
                let standing = Self::seller_standing(&mut *conn, new.seller_id, now).await?;
                if standing != $crate::domain::SellerStanding::Active {
                    return Err($crate::store::StoreError::SellerNotActive(standing));
                }
                Self::insert_product_row(&mut *conn, id, new, actor, now, false)
                    .await?
                    .ok_or($crate::store::StoreError::Duplicate("sku"))
            }

            /// The insert of [`Self::insert_product_in`] without the seller check (the caller
            /// made it). With `skip_duplicate`, a SKU the seller already has inserts nothing
            /// and answers `None`, instead of failing the statement (and with it, on
            /// PostgreSQL, the transaction).
            async fn insert_product_row(
                conn: &mut <Self as $crate::store::shared::Backend>::Connection,
                id: $crate::domain::ProductId,
                new: &$crate::domain::NewProduct,
                actor: Option<&str>,
                now: chrono::DateTime<chrono::Utc>,
                skip_duplicate: bool,
            ) -> Result<
                Option<($crate::domain::Product, Vec<vitrine_messaging::outbox::OutboxMessage>)>,
                $crate::store::StoreError,
            > {
                use $crate::domain::{MovementId, MovementReason, StockMovement};
                macro_rules! insert {
                    ($on_conflict:literal) => {
                        concat!(
                            "INSERT INTO products (id, seller_id, sku, name, description, category, \
                               price_amount, price_currency, status, on_hand, reserved, version, \
                               created_at, updated_at) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'active', $9, 0, 1, $10, $10)",
                            $on_conflict,
                            " RETURNING ",
                            $crate::store::rows::product_columns!()
                        )
                    };
                }
                let sql = if skip_duplicate {
                    // The conflict target names the partial unique index of live SKUs.
                    insert!(" ON CONFLICT (seller_id, sku) WHERE deleted_at IS NULL DO NOTHING")
                } else {
                    insert!("")
                };
                let details = &new.details;
                let price = details.price.money();
                let row: Option<$crate::store::rows::ProductRow> = sqlx::query_as(sql)
                    .bind(id.as_uuid())
                    .bind(new.seller_id.as_uuid())
                    .bind(new.sku.as_str())
                    .bind(details.name.as_str())
                    .bind(details.description.as_ref().map(|d| d.as_str()))
                    .bind(details.category.as_ref().map(|c| c.as_str()))
                    .bind(price.amount())
                    .bind(price.currency().as_str())
                    .bind(new.initial_stock)
                    .bind(now)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(|e| $crate::store::rows::unique_as(e, "sku"))?;
                let Some(row) = row else {
                    return Ok(None);
                };
                let product = $crate::domain::Product::try_from(row)?;
                let mut messages = vec![$crate::outgoing::product_created(&product)];
                if new.initial_stock > 0 {
                    Self::insert_movement(
                        &mut *conn,
                        &StockMovement {
                            id: MovementId::new(),
                            product_id: id,
                            delta: new.initial_stock,
                            reason: MovementReason::Initial,
                            reservation_id: None,
                            on_hand_after: new.initial_stock,
                            actor: actor.map(str::to_owned),
                            created_at: now,
                        },
                    )
                    .await?;
                    messages.push($crate::outgoing::stock_changed(
                        &product,
                        $crate::outgoing::StockCause::Initial,
                    ));
                }
                Ok(Some((product, messages)))
            }

            async fn seller_standing(
                conn: &mut <Self as $crate::store::shared::Backend>::Connection,
                seller: $crate::domain::SellerId,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<$crate::domain::SellerStanding, $crate::store::StoreError> {
                Ok(Self::seller_row(conn, seller, now).await?.0)
            }

            /// The seller's standing and version in the projection. Version 0 is a row this
            /// service inserted for itself; only an event or user-information's answer sets a
            /// version. An upsert rather than a read: it locks the seller's row (PostgreSQL),
            /// so a concurrent suspension waits for this transaction or this one sees it; a
            /// row it had to insert goes with the caller's transaction if that rolls back.
            async fn seller_row(
                conn: &mut <Self as $crate::store::shared::Backend>::Connection,
                seller: $crate::domain::SellerId,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<($crate::domain::SellerStanding, i64), $crate::store::StoreError> {
                let (standing, version): (String, i64) = sqlx::query_as(
                    "INSERT INTO sellers (id, standing, version, updated_at) \
                     VALUES ($1, 'active', 0, $2) \
                     ON CONFLICT (id) DO UPDATE SET standing = sellers.standing \
                     RETURNING standing, version",
                )
                .bind(seller.as_uuid())
                .bind(now)
                .fetch_one(&mut *conn)
                .await?;
                let standing = $crate::domain::SellerStanding::parse(&standing)
                    .map_err(|e| $crate::store::StoreError::Backend(anyhow::anyhow!(e)))?;
                Ok((standing, version))
            }

            /// Enqueues a new product's messages, commits, and answers it with its token.
            async fn commit_new_product(
                &self,
                mut tx: sqlx::Transaction<'static, <Self as $crate::store::shared::Backend>::Database>,
                product: $crate::domain::Product,
                messages: &[vitrine_messaging::outbox::OutboxMessage],
            ) -> Result<$crate::store::Written<$crate::domain::Product>, $crate::store::StoreError>
            {
                Self::enqueue(&mut tx, messages).await?;
                tx.commit().await?;
                Ok($crate::store::Written {
                    value: product,
                    token: self.committed().await?,
                })
            }

            /// A buyer's standing is the customer's, kept from the same status events as the
            /// sellers' (one projection of customers; a customer it never heard of is active):
            /// a suspended or closed customer buys nothing. A plain read, unlike the sellers'
            /// locking upsert: buyers are many, and a purchase racing the status event by a
            /// moment is as acceptable as one made just before the suspension.
            async fn require_active_buyer(
                conn: &mut <Self as $crate::store::shared::Backend>::Connection,
                buyer: $crate::domain::BuyerId,
            ) -> Result<(), $crate::store::StoreError> {
                let standing: Option<String> =
                    sqlx::query_scalar("SELECT standing FROM sellers WHERE id = $1")
                        .bind(buyer.as_uuid())
                        .fetch_optional(&mut *conn)
                        .await?;
                let Some(standing) = standing else {
                    return Ok(());
                };
                match $crate::domain::SellerStanding::parse(&standing)
                    .map_err(|e| $crate::store::StoreError::Backend(anyhow::anyhow!(e)))?
                {
                    $crate::domain::SellerStanding::Active => Ok(()),
                    standing => Err($crate::store::StoreError::BuyerNotActive(standing)),
                }
            }

            /// After a seller's row was written (`applied`) or left alone: a seller that is
            /// not active loses its active products, announced with the change; commits.
            async fn finish_standing(
                &self,
                mut tx: sqlx::Transaction<'static, <Self as $crate::store::shared::Backend>::Database>,
                seller: $crate::domain::SellerId,
                standing: $crate::domain::SellerStanding,
                applied: bool,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<$crate::store::SellerUpdate, $crate::store::StoreError> {
                use $crate::domain::SellerStanding;
                use $crate::store::SellerUpdate;
                if !applied {
                    tx.commit().await?;
                    return Ok(SellerUpdate::Stale);
                }
                let mut deactivated = Vec::new();
                if standing != SellerStanding::Active {
                    let before: Vec<$crate::store::rows::ProductRow> = sqlx::query_as(concat!(
                        "SELECT ",
                        $crate::store::rows::product_columns!(),
                        " FROM products WHERE seller_id = $1 AND status = 'active' \
                           AND deleted_at IS NULL ORDER BY id",
                        $lock
                    ))
                    .bind(seller.as_uuid())
                    .fetch_all(&mut *tx)
                    .await?;
                    let mut messages = Vec::new();
                    for row in before {
                        let before = $crate::domain::Product::try_from(row)?;
                        let row: $crate::store::rows::ProductRow = sqlx::query_as(concat!(
                            "UPDATE products SET status = 'inactive', version = version + 1, \
                               updated_at = $1 WHERE id = $2 RETURNING ",
                            $crate::store::rows::product_columns!()
                        ))
                        .bind(now)
                        .bind(before.id.as_uuid())
                        .fetch_one(&mut *tx)
                        .await?;
                        let after = $crate::domain::Product::try_from(row)?;
                        messages.extend($crate::outgoing::product_updated(&before, &after));
                        deactivated.push(after.id);
                    }
                    Self::enqueue(&mut tx, &messages).await?;
                }
                tx.commit().await?;
                self.committed().await?;
                Ok(SellerUpdate::Applied { deactivated })
            }

            async fn reservation_in(
                conn: &mut <Self as $crate::store::shared::Backend>::Connection,
                id: $crate::domain::ReservationId,
                lock: bool,
            ) -> Result<Option<$crate::domain::Reservation>, $crate::store::StoreError> {
                let query = if lock {
                    concat!(
                        "SELECT ",
                        $crate::store::rows::reservation_columns!(),
                        " FROM reservations WHERE id = $1",
                        $lock
                    )
                } else {
                    concat!(
                        "SELECT ",
                        $crate::store::rows::reservation_columns!(),
                        " FROM reservations WHERE id = $1"
                    )
                };
                let row: Option<$crate::store::rows::ReservationRow> = sqlx::query_as(query)
                    .bind(id.as_uuid())
                    .fetch_optional(&mut *conn)
                    .await?;
                let Some(row) = row else { return Ok(None) };
                let items: Vec<$crate::store::rows::ItemRow> = sqlx::query_as(
                    "SELECT product_id, quantity FROM reservation_items \
                     WHERE reservation_id = $1 ORDER BY product_id",
                )
                .bind(id.as_uuid())
                .fetch_all(&mut *conn)
                .await?;
                $crate::store::rows::reservation(row, items).map(Some)
            }

            async fn insert_movement(
                conn: &mut <Self as $crate::store::shared::Backend>::Connection,
                movement: &$crate::domain::StockMovement,
            ) -> Result<(), $crate::store::StoreError> {
                sqlx::query(
                    "INSERT INTO stock_movements (id, product_id, delta, reason, reservation_id, \
                       on_hand_after, actor, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(movement.id.as_uuid())
                .bind(movement.product_id.as_uuid())
                .bind(movement.delta)
                .bind(movement.reason.as_str())
                .bind(movement.reservation_id.map(|r| r.as_uuid()))
                .bind(movement.on_hand_after)
                .bind(movement.actor.as_deref())
                .bind(movement.created_at)
                .execute(&mut *conn)
                .await?;
                Ok(())
            }

            /// Why each item of a refused reservation cannot be held, read after the rollback.
            /// `failed` is the item whose conditional update matched no row: it is reported even
            /// if a concurrent release has made room since.
            async fn shortages(
                &self,
                new: &$crate::domain::NewReservation,
                failed: $crate::domain::ProductId,
            ) -> Result<Vec<($crate::domain::ProductId, $crate::domain::Shortage)>, $crate::store::StoreError>
            {
                use $crate::domain::Shortage;
                let mut shortages = Vec::new();
                for item in new.items() {
                    let row: Option<$crate::store::rows::AvailabilityRow> = sqlx::query_as(
                        "SELECT status, on_hand, reserved, deleted_at IS NOT NULL AS deleted \
                         FROM products WHERE id = $1",
                    )
                    .bind(item.product_id.as_uuid())
                    .fetch_optional(self.primary())
                    .await?;
                    let shortage = match row {
                        None => Some(Shortage::Unknown),
                        Some(row) if row.deleted => Some(Shortage::Unknown),
                        Some(row) if row.status != "active" => Some(Shortage::Inactive),
                        Some(row) => {
                            let available = row.on_hand - row.reserved;
                            (available < item.quantity.get() || item.product_id == failed)
                                .then_some(Shortage::Insufficient { available })
                        }
                    };
                    if let Some(shortage) = shortage {
                        shortages.push((item.product_id, shortage));
                    }
                }
                Ok(shortages)
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::ProductStore for $store {
            #[tracing::instrument(level = "debug", skip_all)]
            async fn insert_product(
                &self,
                id: $crate::domain::ProductId,
                new: &$crate::domain::NewProduct,
                actor: Option<&str>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<$crate::store::Written<$crate::domain::Product>, $crate::store::StoreError>
            {
                let mut tx = self.begin_write().await?;
                let (product, messages) =
                    Self::insert_product_in(&mut tx, id, new, actor, now).await?;
                self.commit_new_product(tx, product, &messages).await
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn insert_product_for_known_seller(
                &self,
                id: $crate::domain::ProductId,
                new: &$crate::domain::NewProduct,
                actor: Option<&str>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<
                Option<$crate::store::Written<$crate::domain::Product>>,
                $crate::store::StoreError,
            > {
                let mut tx = self.begin_write().await?;
                let (standing, version) = Self::seller_row(&mut tx, new.seller_id, now).await?;
                if version == 0 || standing != $crate::domain::SellerStanding::Active {
                    // Dropped uncommitted: rolled back.
                    return Ok(None);
                }
                let (product, messages) =
                    Self::insert_product_row(&mut tx, id, new, actor, now, false)
                        .await?
                        .ok_or($crate::store::StoreError::Duplicate("sku"))?;
                self.commit_new_product(tx, product, &messages).await.map(Some)
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn get_product(
                &self,
                id: $crate::domain::ProductId,
                freshness: $crate::store::Freshness,
            ) -> Result<Option<$crate::domain::Product>, $crate::store::StoreError> {
                let row: Option<$crate::store::rows::ProductRow> = routed!(self, freshness, |pool| {
                    sqlx::query_as(concat!(
                        "SELECT ",
                        $crate::store::rows::product_columns!(),
                        " FROM products WHERE id = $1 AND deleted_at IS NULL"
                    ))
                    .bind(id.as_uuid())
                    .fetch_optional(pool)
                    .await
                })?;
                row.map($crate::domain::Product::try_from).transpose()
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn list_products(
                &self,
                filter: &$crate::store::ProductFilter,
                limit: vitrine_kernel::PageLimit,
                cursor: Option<&vitrine_kernel::Cursor>,
                freshness: $crate::store::Freshness,
            ) -> Result<vitrine_kernel::Page<$crate::domain::Product>, $crate::store::StoreError>
            {
                let pattern = filter.name_pattern();
                let rows: Vec<$crate::store::rows::ProductRow> = routed!(self, freshness, |pool| {
                    sqlx::query_as(concat!(
                        "SELECT ",
                        $crate::store::rows::product_columns!(),
                        " FROM products WHERE deleted_at IS NULL \
                           AND ($1 IS NULL OR id > $1) AND ($2 IS NULL OR seller_id = $2) \
                           AND ($3 IS NULL OR category = $3) AND ($4 IS NULL OR status = $4) \
                           AND ($5 IS NULL OR lower(name) LIKE $5 ESCAPE '\\') \
                         ORDER BY id LIMIT $6"
                    ))
                    .bind(cursor.map(vitrine_kernel::Cursor::position))
                    .bind(filter.seller_id.map(|s| s.as_uuid()))
                    .bind(filter.category.as_deref())
                    .bind(filter.status.map(|s| s.as_str()))
                    .bind(pattern.as_deref())
                    .bind(i64::from(limit.get()) + 1)
                    .fetch_all(pool)
                    .await
                })?;
                let products = rows
                    .into_iter()
                    .map($crate::domain::Product::try_from)
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(vitrine_kernel::Page::from_overfetch(products, limit, |p| {
                    p.id.as_uuid()
                }))
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn update_product(
                &self,
                id: $crate::domain::ProductId,
                expected_version: Option<i64>,
                changes: &$crate::domain::ProductChanges,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<$crate::store::Written<$crate::domain::Product>, $crate::store::StoreError>
            {
                use $crate::domain::{ProductStatus, SellerStanding};
                let mut tx = self.begin_write().await?;
                let current = Self::locked_product(&mut tx, id).await?;
                if expected_version.is_some_and(|v| v != current.version) {
                    return Err($crate::store::StoreError::VersionMismatch);
                }
                let details = changes.apply_to(&current.details);
                let status = changes.status.unwrap_or(current.status);
                if details == current.details && status == current.status {
                    // Nothing changes: no new version, no event.
                    drop(tx);
                    return Ok($crate::store::Written {
                        value: current,
                        token: self.committed().await?,
                    });
                }
                if status == ProductStatus::Active && current.status != ProductStatus::Active {
                    let standing = Self::seller_standing(&mut tx, current.seller_id, now).await?;
                    if standing != SellerStanding::Active {
                        return Err($crate::store::StoreError::SellerNotActive(standing));
                    }
                }
                let price = details.price.money();
                let row: $crate::store::rows::ProductRow = sqlx::query_as(concat!(
                    "UPDATE products SET name = $1, description = $2, category = $3, \
                       price_amount = $4, price_currency = $5, status = $6, \
                       version = version + 1, updated_at = $7 \
                     WHERE id = $8 RETURNING ",
                    $crate::store::rows::product_columns!()
                ))
                .bind(details.name.as_str())
                .bind(details.description.as_ref().map(|d| d.as_str()))
                .bind(details.category.as_ref().map(|c| c.as_str()))
                .bind(price.amount())
                .bind(price.currency().as_str())
                .bind(status.as_str())
                .bind(now)
                .bind(id.as_uuid())
                .fetch_one(&mut *tx)
                .await?;
                let product = $crate::domain::Product::try_from(row)?;
                let messages: Vec<_> =
                    $crate::outgoing::product_updated(&current, &product).into_iter().collect();
                Self::enqueue(&mut tx, &messages).await?;
                tx.commit().await?;
                Ok($crate::store::Written {
                    value: product,
                    token: self.committed().await?,
                })
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn delete_product(
                &self,
                id: $crate::domain::ProductId,
                expected_version: Option<i64>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<$crate::store::Written<$crate::domain::Product>, $crate::store::StoreError>
            {
                let mut tx = self.begin_write().await?;
                let current = Self::locked_product(&mut tx, id).await?;
                if expected_version.is_some_and(|v| v != current.version) {
                    return Err($crate::store::StoreError::VersionMismatch);
                }
                if current.stock.reserved > 0 {
                    return Err($crate::store::StoreError::StillReserved {
                        reserved: current.stock.reserved,
                    });
                }
                let row: $crate::store::rows::ProductRow = sqlx::query_as(concat!(
                    "UPDATE products SET deleted_at = $1, version = version + 1, updated_at = $1 \
                     WHERE id = $2 RETURNING ",
                    $crate::store::rows::product_columns!()
                ))
                .bind(now)
                .bind(id.as_uuid())
                .fetch_one(&mut *tx)
                .await?;
                let product = $crate::domain::Product::try_from(row)?;
                Self::enqueue(&mut tx, &[$crate::outgoing::product_deleted(&product)]).await?;
                tx.commit().await?;
                Ok($crate::store::Written {
                    value: product,
                    token: self.committed().await?,
                })
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn record_movement(
                &self,
                id: $crate::domain::ProductId,
                movement: $crate::domain::ManualMovement,
                actor: Option<&str>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<
                $crate::store::Written<($crate::domain::StockMovement, $crate::domain::Product)>,
                $crate::store::StoreError,
            > {
                use $crate::domain::{MovementId, MovementReason, StockMovement};
                use $crate::outgoing::StockCause;
                let mut tx = self.begin_write().await?;
                let delta = movement.delta.get();
                let row: Option<$crate::store::rows::ProductRow> = sqlx::query_as(concat!(
                    "UPDATE products SET on_hand = on_hand + $1, version = version + 1, \
                       updated_at = $2 \
                     WHERE id = $3 AND deleted_at IS NULL AND on_hand + $1 >= reserved \
                     RETURNING ",
                    $crate::store::rows::product_columns!()
                ))
                .bind(delta)
                .bind(now)
                .bind(id.as_uuid())
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else {
                    let current = Self::locked_product(&mut tx, id).await?;
                    return Err($crate::store::StoreError::InsufficientStock {
                        available: current.stock.available(),
                    });
                };
                let product = $crate::domain::Product::try_from(row)?;
                let entry = StockMovement {
                    id: MovementId::new(),
                    product_id: id,
                    delta,
                    reason: movement.reason,
                    reservation_id: None,
                    on_hand_after: product.stock.on_hand,
                    actor: actor.map(str::to_owned),
                    created_at: now,
                };
                Self::insert_movement(&mut tx, &entry).await?;
                let cause = match movement.reason {
                    MovementReason::Restock => StockCause::Restock,
                    MovementReason::Loss => StockCause::Loss,
                    MovementReason::Initial => StockCause::Initial,
                    MovementReason::Adjustment | MovementReason::Sale => StockCause::Adjustment,
                };
                Self::enqueue(&mut tx, &[$crate::outgoing::stock_changed(&product, cause)]).await?;
                tx.commit().await?;
                Ok($crate::store::Written {
                    value: (entry, product),
                    token: self.committed().await?,
                })
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn list_movements(
                &self,
                id: $crate::domain::ProductId,
                limit: vitrine_kernel::PageLimit,
                cursor: Option<&vitrine_kernel::Cursor>,
                freshness: $crate::store::Freshness,
            ) -> Result<
                vitrine_kernel::Page<$crate::domain::StockMovement>,
                $crate::store::StoreError,
            > {
                let rows: Vec<$crate::store::rows::MovementRow> = routed!(self, freshness, |pool| {
                    sqlx::query_as(concat!(
                        "SELECT ",
                        $crate::store::rows::movement_columns!(),
                        " FROM stock_movements WHERE product_id = $1 AND ($2 IS NULL OR id > $2) \
                         ORDER BY id LIMIT $3"
                    ))
                    .bind(id.as_uuid())
                    .bind(cursor.map(vitrine_kernel::Cursor::position))
                    .bind(i64::from(limit.get()) + 1)
                    .fetch_all(pool)
                    .await
                })?;
                let movements = rows
                    .into_iter()
                    .map($crate::domain::StockMovement::try_from)
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(vitrine_kernel::Page::from_overfetch(movements, limit, |m| {
                    m.id.as_uuid()
                }))
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn reserve(
                &self,
                id: $crate::domain::ReservationId,
                new: &$crate::domain::NewReservation,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<$crate::store::Written<$crate::domain::Reservation>, $crate::store::StoreError>
            {
                use $crate::domain::{Reservation, ReservationStatus};
                let mut tx = self.begin_write().await?;
                if let Some(buyer) = new.buyer_id {
                    Self::require_active_buyer(&mut tx, buyer).await?;
                }
                let mut held = Vec::with_capacity(new.items().len());
                // Items are sorted by product id: every writer locks rows in the same order.
                for item in new.items() {
                    let row: Option<$crate::store::rows::ProductRow> = sqlx::query_as(concat!(
                        "UPDATE products SET reserved = reserved + $1, version = version + 1, \
                           updated_at = $2 \
                         WHERE id = $3 AND status = 'active' AND deleted_at IS NULL \
                           AND on_hand - reserved >= $1 \
                         RETURNING ",
                        $crate::store::rows::product_columns!()
                    ))
                    .bind(item.quantity.get())
                    .bind(now)
                    .bind(item.product_id.as_uuid())
                    .fetch_optional(&mut *tx)
                    .await?;
                    match row {
                        Some(row) => held.push($crate::domain::Product::try_from(row)?),
                        None => {
                            tx.rollback().await?;
                            let shortages = self.shortages(new, item.product_id).await?;
                            return Err($crate::store::StoreError::Shortages(shortages));
                        }
                    }
                }
                sqlx::query(
                    "INSERT INTO reservations (id, buyer_id, status, expires_at, created_at, \
                       updated_at) VALUES ($1, $2, 'pending', $3, $4, $4)",
                )
                .bind(id.as_uuid())
                .bind(new.buyer_id.map(|b| b.as_uuid()))
                .bind(new.expires_at)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                for item in new.items() {
                    sqlx::query(
                        "INSERT INTO reservation_items (reservation_id, product_id, quantity) \
                         VALUES ($1, $2, $3)",
                    )
                    .bind(id.as_uuid())
                    .bind(item.product_id.as_uuid())
                    .bind(item.quantity.get())
                    .execute(&mut *tx)
                    .await?;
                }
                let reservation = Reservation {
                    id,
                    buyer_id: new.buyer_id,
                    status: ReservationStatus::Pending,
                    items: new.items().to_vec(),
                    expires_at: new.expires_at,
                    created_at: now,
                    updated_at: now,
                };
                let mut messages = vec![$crate::outgoing::reservation_changed(&reservation)];
                messages.extend(held.iter().map(|product| {
                    $crate::outgoing::stock_changed(product, $crate::outgoing::StockCause::Reserved)
                }));
                Self::enqueue(&mut tx, &messages).await?;
                tx.commit().await?;
                Ok($crate::store::Written {
                    value: reservation,
                    token: self.committed().await?,
                })
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn get_reservation(
                &self,
                id: $crate::domain::ReservationId,
                freshness: $crate::store::Freshness,
            ) -> Result<Option<$crate::domain::Reservation>, $crate::store::StoreError> {
                let result: Result<_, $crate::store::StoreError> =
                    routed!(self, freshness, |pool| {
                        match pool.acquire().await {
                            Ok(mut conn) => Self::reservation_in(&mut conn, id, false).await,
                            Err(error) => Err(error.into()),
                        }
                    });
                result
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn finish_reservation(
                &self,
                id: $crate::domain::ReservationId,
                target: $crate::domain::ReservationStatus,
                actor: Option<&str>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<$crate::store::Written<$crate::domain::Reservation>, $crate::store::StoreError>
            {
                use $crate::domain::{MovementId, MovementReason, ReservationStatus, StockMovement};
                use $crate::outgoing::StockCause;
                let mut tx = self.begin_write().await?;
                let current = Self::reservation_in(&mut tx, id, true)
                    .await?
                    .ok_or($crate::store::StoreError::NotFound)?;
                if current.status != ReservationStatus::Pending {
                    drop(tx);
                    return if current.status == target {
                        Ok($crate::store::Written {
                            value: current,
                            token: self.committed().await?,
                        })
                    } else {
                        Err($crate::store::StoreError::Transition(current.status))
                    };
                }
                // Past its expiry a reservation holds nothing any more, whatever the sweeper's
                // progress: it expires now instead of being committed or released.
                let effective = if current.expires_at <= now {
                    ReservationStatus::Expired
                } else {
                    target
                };
                if effective == ReservationStatus::Committed
                    && let Some(buyer) = current.buyer_id
                {
                    Self::require_active_buyer(&mut tx, buyer).await?;
                }
                let mut messages = Vec::new();
                for item in &current.items {
                    let quantity = item.quantity.get();
                    let row: $crate::store::rows::ProductRow = if effective
                        == ReservationStatus::Committed
                    {
                        sqlx::query_as(concat!(
                            "UPDATE products SET on_hand = on_hand - $1, reserved = reserved - $1, \
                               version = version + 1, updated_at = $2 \
                             WHERE id = $3 RETURNING ",
                            $crate::store::rows::product_columns!()
                        ))
                    } else {
                        sqlx::query_as(concat!(
                            "UPDATE products SET reserved = reserved - $1, \
                               version = version + 1, updated_at = $2 \
                             WHERE id = $3 RETURNING ",
                            $crate::store::rows::product_columns!()
                        ))
                    }
                    .bind(quantity)
                    .bind(now)
                    .bind(item.product_id.as_uuid())
                    .fetch_one(&mut *tx)
                    .await?;
                    let product = $crate::domain::Product::try_from(row)?;
                    let cause = match effective {
                        ReservationStatus::Committed => {
                            Self::insert_movement(
                                &mut tx,
                                &StockMovement {
                                    id: MovementId::new(),
                                    product_id: item.product_id,
                                    delta: -quantity,
                                    reason: MovementReason::Sale,
                                    reservation_id: Some(id),
                                    on_hand_after: product.stock.on_hand,
                                    actor: actor.map(str::to_owned),
                                    created_at: now,
                                },
                            )
                            .await?;
                            StockCause::Committed
                        }
                        ReservationStatus::Expired => StockCause::Expired,
                        _ => StockCause::Released,
                    };
                    messages.push($crate::outgoing::stock_changed(&product, cause));
                }
                sqlx::query("UPDATE reservations SET status = $1, updated_at = $2 WHERE id = $3")
                    .bind(effective.as_str())
                    .bind(now)
                    .bind(id.as_uuid())
                    .execute(&mut *tx)
                    .await?;
                let finished = $crate::domain::Reservation {
                    status: effective,
                    updated_at: now,
                    ..current
                };
                messages.insert(0, $crate::outgoing::reservation_changed(&finished));
                Self::enqueue(&mut tx, &messages).await?;
                tx.commit().await?;
                let token = self.committed().await?;
                if effective != target {
                    return Err($crate::store::StoreError::Transition(effective));
                }
                Ok($crate::store::Written {
                    value: finished,
                    token,
                })
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn due_reservations(
                &self,
                now: chrono::DateTime<chrono::Utc>,
                limit: u32,
            ) -> Result<Vec<$crate::domain::ReservationId>, $crate::store::StoreError> {
                let ids: Vec<uuid::Uuid> = sqlx::query_scalar(
                    "SELECT id FROM reservations WHERE status = 'pending' AND expires_at <= $1 \
                     ORDER BY expires_at LIMIT $2",
                )
                .bind(now)
                .bind(i64::from(limit))
                .fetch_all(self.primary())
                .await?;
                Ok(ids
                    .into_iter()
                    .map($crate::domain::ReservationId::from_uuid)
                    .collect())
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn apply_seller_standing(
                &self,
                consumer: &str,
                message_id: uuid::Uuid,
                seller: $crate::domain::SellerId,
                standing: $crate::domain::SellerStanding,
                version: i64,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<$crate::store::SellerUpdate, $crate::store::StoreError> {
                use $crate::store::SellerUpdate;
                let mut tx = self.begin_write().await?;
                if !Self::first_delivery(&mut tx, consumer, message_id, now).await? {
                    return Ok(SellerUpdate::Duplicate);
                }
                // Events may arrive out of order: only a newer version than the one applied
                // changes the seller.
                let applied: Option<String> = sqlx::query_scalar(
                    "INSERT INTO sellers (id, standing, version, updated_at) \
                     VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (id) DO UPDATE SET standing = excluded.standing, \
                       version = excluded.version, updated_at = excluded.updated_at \
                     WHERE sellers.version < excluded.version \
                     RETURNING standing",
                )
                .bind(seller.as_uuid())
                .bind(standing.as_str())
                .bind(version)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                self.finish_standing(tx, seller, standing, applied.is_some(), now)
                    .await
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn reconcile_seller(
                &self,
                seller: $crate::domain::SellerId,
                standing: $crate::domain::SellerStanding,
                version: i64,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<$crate::store::SellerUpdate, $crate::store::StoreError> {
                let mut tx = self.begin_write().await?;
                // The answer wins unless a newer event got here since it was given; a projected
                // version absurdly far ahead of the answer's is a pin, not history.
                let applied: Option<String> = sqlx::query_scalar(
                    "INSERT INTO sellers (id, standing, version, updated_at, checked_at) \
                     VALUES ($1, $2, $3, $4, $4) \
                     ON CONFLICT (id) DO UPDATE SET standing = excluded.standing, \
                       version = excluded.version, updated_at = excluded.updated_at, \
                       checked_at = excluded.checked_at \
                     WHERE sellers.version <= excluded.version \
                        OR sellers.version > excluded.version + $5 \
                     RETURNING standing",
                )
                .bind(seller.as_uuid())
                .bind(standing.as_str())
                .bind(version)
                .bind(now)
                .bind($crate::store::ABSURD_VERSION_LEAD)
                .fetch_optional(&mut *tx)
                .await?;
                if applied.is_none() {
                    sqlx::query("UPDATE sellers SET checked_at = $2 WHERE id = $1")
                        .bind(seller.as_uuid())
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
                self.finish_standing(tx, seller, standing, applied.is_some(), now)
                    .await
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn sellers_to_reconcile(
                &self,
                max: i64,
            ) -> Result<Vec<$crate::domain::SellerId>, $crate::store::StoreError> {
                let ids: Vec<uuid::Uuid> = sqlx::query_scalar(
                    "SELECT s.id FROM sellers s \
                     WHERE EXISTS (SELECT 1 FROM products p WHERE p.seller_id = s.id \
                       AND p.status = 'active' AND p.deleted_at IS NULL) \
                     ORDER BY s.checked_at NULLS FIRST, s.id LIMIT $1",
                )
                .bind(max)
                .fetch_all(self.primary())
                .await?;
                Ok(ids
                    .into_iter()
                    .map($crate::domain::SellerId::from_uuid)
                    .collect())
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn announce(
                &self,
                messages: &[vitrine_messaging::outbox::OutboxMessage],
            ) -> Result<(), $crate::store::StoreError> {
                let mut tx = self.begin_write().await?;
                Self::enqueue(&mut tx, messages).await?;
                tx.commit().await?;
                self.committed().await?;
                Ok(())
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn seller_checked(
                &self,
                seller: $crate::domain::SellerId,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<(), $crate::store::StoreError> {
                sqlx::query("UPDATE sellers SET checked_at = $2 WHERE id = $1")
                    .bind(seller.as_uuid())
                    .bind(now)
                    .execute(self.primary())
                    .await?;
                Ok(())
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn current_position(
                &self,
            ) -> Result<$crate::store::ConsistencyToken, $crate::store::StoreError> {
                self.position_now().await
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn admits(
                &self,
                token: $crate::store::ConsistencyToken,
            ) -> Result<bool, $crate::store::StoreError> {
                self.reached(token).await
            }

            fn outbox(&self) -> std::sync::Arc<dyn vitrine_messaging::outbox::OutboxStore> {
                self.outbox_store()
            }

            fn inbox(&self) -> vitrine_messaging::inbox::Inbox {
                self.inbox_store()
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn ping(&self) -> Result<(), $crate::store::StoreError> {
                sqlx::query("SELECT 1").execute(self.primary()).await?;
                Ok(())
            }
        }
    };
}

/// What the shared implementation needs from each backend, as a trait: the compiler checks
/// that every backend supplies all of it, with these signatures, before the shared SQL is
/// expanded for it. The futures are `Send` because the store's methods run on any worker.
pub(super) trait Backend {
    type Database: sqlx::Database;
    type Connection: Send;

    /// A transaction that may write (SQLite takes the write lock up front).
    fn begin_write(
        &self,
    ) -> impl Future<Output = Result<sqlx::Transaction<'static, Self::Database>, StoreError>> + Send;

    /// The consistency token after a commit (and the relay woken).
    fn committed(&self) -> impl Future<Output = Result<ConsistencyToken, StoreError>> + Send;

    /// The primary's position now, for reads that return a token.
    fn position_now(&self) -> impl Future<Output = Result<ConsistencyToken, StoreError>> + Send;

    /// Whether the primary's history has reached `token`.
    fn reached(
        &self,
        token: ConsistencyToken,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The pool a read with `freshness` goes to, and whether it is a replica.
    fn reader(
        &self,
        freshness: Freshness,
    ) -> impl Future<Output = (&sqlx::Pool<Self::Database>, bool)> + Send;

    /// A read on the replica failed: stop using it until it is probed healthy again.
    fn replica_failed(&self, error: &dyn std::fmt::Display);

    fn primary(&self) -> &sqlx::Pool<Self::Database>;

    /// Writes `messages` to the outbox (and the webhook deliveries they cause) on `conn`.
    fn enqueue(
        conn: &mut Self::Connection,
        messages: &[vitrine_messaging::outbox::OutboxMessage],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Writes one webhook message and its deliveries on `conn`; how many endpoints it goes to.
    fn enqueue_webhook(
        conn: &mut Self::Connection,
        message: &vitrine_webhooks::store::NewMessage,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// Records `message_id` in `consumer`'s inbox on `conn`; `false` if it was there already.
    fn first_delivery(
        conn: &mut Self::Connection,
        consumer: &str,
        message_id: uuid::Uuid,
        now: chrono::DateTime<chrono::Utc>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    fn outbox_store(&self) -> std::sync::Arc<dyn vitrine_messaging::outbox::OutboxStore>;

    fn inbox_store(&self) -> vitrine_messaging::inbox::Inbox;
}

use super::{ConsistencyToken, Freshness, StoreError};

pub(super) use impl_product_store;
pub(super) use routed;
