//! What products consumes from its queue:
//!
//! - user-information's `customer.status-changed`: a suspended or closed seller's products
//!   become inactive (recorded in the inbox with the change, so a redelivery changes nothing);
//! - its own product and stock events: the product's cache entry is dropped. Deleting is
//!   idempotent, so these need no inbox.

use std::sync::Arc;

use async_trait::async_trait;
use vitrine_contracts::products as own;
use vitrine_contracts::user_information as customers;
use vitrine_messaging::Envelope;
use vitrine_messaging::consumer::Handler;

use crate::cache::ProductCache;
use crate::domain::{ProductId, SellerId};
use crate::service::now;
use crate::store::{ProductStore, SellerUpdate};

/// Inbox name of the seller-status projection.
pub const SELLER_STATUS_CONSUMER: &str = "products.seller-status";

#[derive(Debug)]
pub struct ProductsHandler {
    store: Arc<dyn ProductStore>,
    cache: ProductCache,
}

impl ProductsHandler {
    pub fn new(store: Arc<dyn ProductStore>, cache: ProductCache) -> Self {
        Self { store, cache }
    }

    async fn seller_status_changed(&self, envelope: &Envelope) -> anyhow::Result<()> {
        let event: customers::CustomerStatusChanged = envelope
            .decode()
            .map_err(|e| anyhow::anyhow!("malformed status-changed event: {e}"))?;
        let standing = crate::service::standing_of(event.to);
        let update = self
            .store
            .apply_seller_standing(
                SELLER_STATUS_CONSUMER,
                envelope.id,
                SellerId::from_uuid(event.customer_id),
                standing,
                event.version,
                now(),
            )
            .await?;
        if let SellerUpdate::Applied { deactivated } = &update {
            tracing::info!(
                seller_id = %event.customer_id,
                standing = standing.as_str(),
                deactivated = deactivated.len(),
                "seller standing applied"
            );
            for id in deactivated {
                self.cache.invalidate(*id).await;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Handler for ProductsHandler {
    async fn handle(&self, envelope: &Envelope) -> anyhow::Result<()> {
        // A fact is only taken from the service that owns it: anyone able to publish to the
        // topic could otherwise suspend sellers. Refused, it ends in the dead-letter queue,
        // where an operator sees it.
        let owner = match envelope.kind.as_str() {
            customers::CUSTOMER_STATUS_CHANGED => Some(customers::SOURCE),
            kind if own::PRODUCT_CHANGES.contains(&kind) => Some(own::SOURCE),
            _ => None,
        };
        if let Some(owner) = owner
            && envelope.source != owner
        {
            metrics::counter!("vitrine_messages_refused_total", "reason" => "source").increment(1);
            anyhow::bail!(
                "{} from source {:?}, not from its owner {owner}",
                envelope.kind,
                envelope.source
            );
        }
        match envelope.kind.as_str() {
            customers::CUSTOMER_STATUS_CHANGED => self.seller_status_changed(envelope).await,
            kind if own::PRODUCT_CHANGES.contains(&kind) => {
                let id = envelope
                    .subject
                    .as_deref()
                    .and_then(|s| ProductId::parse(s).ok())
                    .ok_or_else(|| anyhow::anyhow!("product event without a product subject"))?;
                self.cache.invalidate(id).await;
                Ok(())
            }
            other => {
                // Subscriptions filter types; anything else cannot succeed later either.
                tracing::warn!(message_type = other, "ignoring an unexpected message type");
                Ok(())
            }
        }
    }
}
