//! What products announces by webhook, besides its bus events: a seller's endpoints subscribed
//! to `product.created`, `product.updated`, `product.deleted` or `stock.changed` get the event
//! of their own products. The webhook message is derived from the outbox event inside the same
//! transaction (the stores' `enqueue`), so a committed change always has its deliveries and a
//! rolled-back one never; its id is the event's id, so a receiver of both can match them.

use vitrine_contracts::products as contract;
use vitrine_messaging::outbox::OutboxMessage;
use vitrine_webhooks::store::NewMessage;

/// The webhook name of a bus event sellers receive, if it is one.
fn webhook_type(kind: &str) -> Option<&'static str> {
    match kind {
        contract::PRODUCT_CREATED => Some("product.created"),
        contract::PRODUCT_UPDATED => Some("product.updated"),
        contract::PRODUCT_DELETED => Some("product.deleted"),
        contract::STOCK_CHANGED => Some("stock.changed"),
        _ => None,
    }
}

/// The webhook message for the seller of `event`'s product, when sellers receive that event.
pub fn for_event(event: &OutboxMessage) -> Option<NewMessage> {
    let envelope = &event.envelope;
    let event_type = webhook_type(&envelope.kind)?;
    let seller = envelope.data.get("seller_id")?.as_str()?;
    let body = serde_json::json!({
        "type": event_type,
        "timestamp": envelope.time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "data": envelope.data,
    });
    Some(NewMessage {
        id: envelope.id,
        tenant: seller.to_owned(),
        event_type: event_type.to_owned(),
        body: serde_json::to_vec(&body).expect("JSON values serialise"),
        created_at: envelope.time,
    })
}
