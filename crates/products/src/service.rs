//! The use cases of products over its ports: the `ProductStore`, the `CustomerDirectory`
//! (is this seller a real, active customer?) and the product cache. Authorisation is the HTTP
//! layer's job.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use user_information_client::{CustomerDirectory, CustomerStatus, Lookup};
use vitrine_kernel::{Cursor, Page, PageLimit};

use crate::cache::ProductCache;
use crate::domain::{
    ManualMovement, NewProduct, NewReservation, Product, ProductChanges, ProductId, Reservation,
    ReservationId, ReservationStatus, SellerId, SellerStanding, Shortage, StockMovement,
};
use crate::store::{Freshness, ProductFilter, ProductStore, SellerUpdate, StoreError, Written};

/// The standing a customer's status gives it as a seller (or buyer).
pub(crate) fn standing_of(status: CustomerStatus) -> SellerStanding {
    match status {
        CustomerStatus::Active => SellerStanding::Active,
        CustomerStatus::Suspended => SellerStanding::Suspended,
        CustomerStatus::Closed => SellerStanding::Closed,
    }
}

/// The current time at the precision both databases keep (PostgreSQL stores microseconds), so a
/// value read back equals the value written.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("not found")]
    NotFound,
    /// A `Consistency-Token` names a position no write has reached.
    #[error("the consistency token is ahead of every write")]
    TokenAhead,
    #[error("{0} is already taken")]
    Duplicate(&'static str),
    #[error("the resource changed since it was read")]
    VersionMismatch,
    /// The seller named on a new product is not acceptable (unknown, suspended, closed).
    #[error("seller rejected: {0}")]
    SellerRejected(&'static str),
    /// The product's seller is suspended or closed.
    #[error("the seller is {}", .0.as_str())]
    SellerNotActive(SellerStanding),
    /// The buyer's own standing (as this service knows it from events) forbids buying.
    #[error("the buyer is {}", .0.as_str())]
    BuyerNotActive(SellerStanding),
    /// user-information did not answer in time.
    #[error("the customer directory is unavailable: {0}")]
    DirectoryUnavailable(String),
    #[error("only {available} units are not reserved")]
    InsufficientStock { available: i64 },
    #[error("{reserved} units are reserved")]
    StillReserved { reserved: i64 },
    #[error("not enough stock")]
    Shortages(Vec<(ProductId, Shortage)>),
    #[error("the reservation is {}", .0.as_str())]
    Transition(ReservationStatus),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => Self::NotFound,
            StoreError::Duplicate(field) => Self::Duplicate(field),
            StoreError::VersionMismatch => Self::VersionMismatch,
            StoreError::SellerNotActive(standing) => Self::SellerNotActive(standing),
            StoreError::BuyerNotActive(standing) => Self::BuyerNotActive(standing),
            StoreError::InsufficientStock { available } => Self::InsufficientStock { available },
            StoreError::StillReserved { reserved } => Self::StillReserved { reserved },
            StoreError::Shortages(shortages) => Self::Shortages(shortages),
            StoreError::Transition(status) => Self::Transition(status),
            StoreError::Backend(error) => Self::Internal(error),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Catalog {
    store: Arc<dyn ProductStore>,
    directory: Arc<dyn CustomerDirectory>,
    cache: ProductCache,
    lookup_timeout: Duration,
}

impl Catalog {
    pub fn new(
        store: Arc<dyn ProductStore>,
        directory: Arc<dyn CustomerDirectory>,
        cache: ProductCache,
        lookup_timeout: Duration,
    ) -> Self {
        Self {
            store,
            directory,
            cache,
            lookup_timeout,
        }
    }

    /// The freshness a read carrying `token` asks for, unless the token is ahead of every
    /// write (forged, or from another database): then it is refused rather than waited for.
    pub async fn read_after(
        &self,
        token: crate::store::ConsistencyToken,
    ) -> Result<Freshness, ServiceError> {
        if self.store.admits(token).await? {
            Ok(Freshness::AtLeast(token))
        } else {
            Err(ServiceError::TokenAhead)
        }
    }

    /// Lists a product. A seller this service's projection knows as active (its status events,
    /// or an earlier answer) is checked locally, in the insert's transaction; any other is
    /// asked of user-information, whose answer is the truth: if the projection disagrees (an
    /// event that never arrived, or a pinned version), it is corrected from it. A suspension
    /// reaches the projection with its event (and the periodic reconciliation), so for that
    /// long a known seller can still list.
    pub async fn create(
        &self,
        new: &NewProduct,
        actor: &str,
    ) -> Result<Written<Product>, ServiceError> {
        if let Some(written) = self
            .store
            .insert_product_for_known_seller(ProductId::new(), new, Some(actor), now())
            .await?
        {
            return Ok(written);
        }
        // The answer is recorded with its version before the insert: it corrects a projection
        // that says otherwise, and makes this seller known, so its next create stays local.
        self.check_seller(new.seller_id).await?;
        // No cache entry to drop: the id is new, and 74 random bits of a v7 id are not guessed.
        Ok(self
            .store
            .insert_product(ProductId::new(), new, Some(actor), now())
            .await?)
    }

    /// Asks user-information whether `seller` exists and is active, as a product listing
    /// needs: `SellerRejected` when it is not (correcting the projection from the answer),
    /// `DirectoryUnavailable` when it does not answer in time.
    pub async fn check_seller(&self, seller: SellerId) -> Result<(), ServiceError> {
        if let Some(version) = self.seller_version(seller).await? {
            self.reconcile(seller, SellerStanding::Active, version)
                .await?;
        }
        Ok(())
    }

    /// [`Self::check_seller`] without the correction of an active seller's projection: its
    /// version, when user-information gave one.
    async fn seller_version(&self, seller: SellerId) -> Result<Option<i64>, ServiceError> {
        match self
            .directory
            .lookup(seller.as_uuid(), self.lookup_timeout)
            .await
        {
            Lookup::Found {
                status: CustomerStatus::Active,
                version,
                ..
            } => Ok(version),
            Lookup::Found {
                status, version, ..
            } => {
                let standing = standing_of(status);
                if let Some(version) = version {
                    self.reconcile(seller, standing, version).await?;
                }
                Err(ServiceError::SellerRejected(match standing {
                    SellerStanding::Closed => "the seller is closed",
                    _ => "the seller is suspended",
                }))
            }
            Lookup::NotFound => Err(ServiceError::SellerRejected("no such customer")),
            Lookup::Unavailable(why) => Err(ServiceError::DirectoryUnavailable(why)),
        }
    }

    /// Sets the projection of `seller` from user-information's answer, dropping the cache
    /// entries of the products that change.
    async fn reconcile(
        &self,
        seller: SellerId,
        standing: SellerStanding,
        version: i64,
    ) -> Result<(), ServiceError> {
        let update = self
            .store
            .reconcile_seller(seller, standing, version, now())
            .await?;
        if let SellerUpdate::Applied { deactivated } = update {
            for id in deactivated {
                self.cache.invalidate(id).await;
            }
        }
        Ok(())
    }

    /// Compares up to `max` sellers with active products (least recently checked first) with
    /// user-information, correcting the projection where it is wrong; returns how many it
    /// checked. A seller whose answer cannot be used (unknown, no version, or a failed write) is
    /// still stamped as checked, so it cannot hold the head of every round; the round stops
    /// only when user-information is unavailable (the next round tries again).
    pub async fn reconcile_sellers(&self, max: i64) -> Result<usize, ServiceError> {
        let mut checked = 0;
        for seller in self.store.sellers_to_reconcile(max).await? {
            let outcome = match self
                .directory
                .lookup(seller.as_uuid(), self.lookup_timeout)
                .await
            {
                Lookup::Found {
                    status,
                    version: Some(version),
                    ..
                } => self.reconcile(seller, standing_of(status), version).await,
                Lookup::Found { version: None, .. } => {
                    tracing::warn!(seller_id = %seller, "user-information answered without a version; seller not reconciled");
                    self.store
                        .seller_checked(seller, now())
                        .await
                        .map_err(Into::into)
                }
                Lookup::NotFound => {
                    tracing::warn!(seller_id = %seller, "a seller with active products is unknown to user-information");
                    self.store
                        .seller_checked(seller, now())
                        .await
                        .map_err(Into::into)
                }
                Lookup::Unavailable(why) => {
                    tracing::warn!(reason = %why, "seller reconciliation paused: user-information unavailable");
                    break;
                }
            };
            if let Err(error) = outcome {
                tracing::error!(seller_id = %seller, error = %error, "seller reconciliation failed for this seller; moving on");
                // Best effort: if even the stamp fails, the database is down and the next
                // round starts over anyway.
                let _ = self.store.seller_checked(seller, now()).await;
            }
            checked += 1;
        }
        Ok(checked)
    }

    /// A product, from the cache when the read has no consistency requirement.
    pub async fn get(&self, id: ProductId, freshness: Freshness) -> Result<Product, ServiceError> {
        let product = match freshness {
            // A token names a write the cache may not reflect yet: read through.
            Freshness::AtLeast(_) | Freshness::Primary => {
                self.store.get_product(id, freshness).await?
            }
            Freshness::Any => {
                // A fill must not be older than the write whose invalidation caused the miss:
                // a lagging replica would otherwise put the old value back for a whole TTL.
                let store = Arc::clone(&self.store);
                self.cache
                    .get_or_load(id, move || async move {
                        let now = store.current_position().await?;
                        store.get_product(id, Freshness::AtLeast(now)).await
                    })
                    .await?
            }
        };
        product.ok_or(ServiceError::NotFound)
    }

    pub async fn list(
        &self,
        filter: &ProductFilter,
        limit: PageLimit,
        cursor: Option<&Cursor>,
        freshness: Freshness,
    ) -> Result<Page<Product>, ServiceError> {
        Ok(self
            .store
            .list_products(filter, limit, cursor, freshness)
            .await?)
    }

    /// Changes a product. Re-activating one whose seller this service believes is not active
    /// asks user-information first: the projection may be the one that is wrong.
    pub async fn update(
        &self,
        id: ProductId,
        expected_version: Option<i64>,
        changes: &ProductChanges,
    ) -> Result<Written<Product>, ServiceError> {
        let update = || {
            self.store
                .update_product(id, expected_version, changes, now())
        };
        let written = match update().await {
            Err(StoreError::SellerNotActive(standing)) => {
                let seller = self.get(id, Freshness::Primary).await?.seller_id;
                match self
                    .directory
                    .lookup(seller.as_uuid(), self.lookup_timeout)
                    .await
                {
                    Lookup::Found {
                        status: CustomerStatus::Active,
                        version: Some(version),
                        ..
                    } => {
                        self.reconcile(seller, SellerStanding::Active, version)
                            .await?;
                        update().await?
                    }
                    _ => return Err(ServiceError::SellerNotActive(standing)),
                }
            }
            result => result?,
        };
        self.cache.invalidate(id).await;
        Ok(written)
    }

    pub async fn delete(
        &self,
        id: ProductId,
        expected_version: Option<i64>,
    ) -> Result<Written<Product>, ServiceError> {
        let written = self
            .store
            .delete_product(id, expected_version, now())
            .await?;
        self.cache.invalidate(id).await;
        Ok(written)
    }

    pub async fn move_stock(
        &self,
        id: ProductId,
        movement: ManualMovement,
        actor: &str,
    ) -> Result<Written<(StockMovement, Product)>, ServiceError> {
        let written = self
            .store
            .record_movement(id, movement, Some(actor), now())
            .await?;
        self.cache.invalidate(id).await;
        Ok(written)
    }

    pub async fn movements(
        &self,
        id: ProductId,
        limit: PageLimit,
        cursor: Option<&Cursor>,
        freshness: Freshness,
    ) -> Result<Page<StockMovement>, ServiceError> {
        Ok(self
            .store
            .list_movements(id, limit, cursor, freshness)
            .await?)
    }

    pub async fn reserve(
        &self,
        new: &NewReservation,
    ) -> Result<Written<Reservation>, ServiceError> {
        let written = self.store.reserve(ReservationId::new(), new, now()).await?;
        for item in new.items() {
            self.cache.invalidate(item.product_id).await;
        }
        Ok(written)
    }

    pub async fn reservation(
        &self,
        id: ReservationId,
        freshness: Freshness,
    ) -> Result<Reservation, ServiceError> {
        self.store
            .get_reservation(id, freshness)
            .await?
            .ok_or(ServiceError::NotFound)
    }

    /// Commits, releases or expires a pending reservation (idempotent for the same target).
    pub async fn finish(
        &self,
        id: ReservationId,
        target: ReservationStatus,
        actor: Option<&str>,
    ) -> Result<Written<Reservation>, ServiceError> {
        let result = self
            .store
            .finish_reservation(id, target, actor, now())
            .await;
        if let Ok(written) = &result {
            for item in &written.value.items {
                self.cache.invalidate(item.product_id).await;
            }
        }
        Ok(result?)
    }

    /// Expires every pending reservation past its expiry (a batch at a time); returns how many.
    pub async fn expire_due(&self) -> Result<usize, ServiceError> {
        let due = self.store.due_reservations(now(), 100).await?;
        let mut expired = 0;
        for id in due {
            match self.finish(id, ReservationStatus::Expired, None).await {
                Ok(_) => expired += 1,
                // Committed or released meanwhile by its owner, or expired by another replica.
                Err(ServiceError::Transition(_) | ServiceError::NotFound) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(expired)
    }

    pub fn store(&self) -> &Arc<dyn ProductStore> {
        &self.store
    }

    pub fn cache(&self) -> &ProductCache {
        &self.cache
    }
}
