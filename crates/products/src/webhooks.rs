//! What products announces by webhook, besides its bus events: a seller's endpoints subscribed
//! to `product.created`, `product.updated`, `product.deleted`, `stock.changed` or
//! `reservation.*` get the events of their own products. The webhook messages are derived from
//! the outbox events inside the same transaction (the stores' `enqueue`), so a committed change
//! always has its deliveries and a rolled-back one never.
//!
//! A catalog event's webhook message has the event's id, so a receiver of both can match them.
//! A reservation may hold products of several sellers: each seller gets its own message (with a
//! fresh id) carrying the reservation with only that seller's items, so no seller learns what
//! else a buyer reserved.

use std::collections::BTreeMap;

use serde_json::Value;
use uuid::Uuid;
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
        contract::RESERVATION_CREATED => Some("reservation.created"),
        contract::RESERVATION_COMMITTED => Some("reservation.committed"),
        contract::RESERVATION_RELEASED => Some("reservation.released"),
        contract::RESERVATION_EXPIRED => Some("reservation.expired"),
        _ => None,
    }
}

/// The webhook messages of the events one transaction commits.
pub fn for_events(events: &[OutboxMessage]) -> Vec<NewMessage> {
    // Every reservation transition moves the stock of each of its products, and those
    // `stock.changed` events name the product's seller.
    let sellers: BTreeMap<&str, &str> = events
        .iter()
        .filter(|event| event.envelope.kind == contract::STOCK_CHANGED)
        .filter_map(|event| {
            let data = &event.envelope.data;
            Some((
                data.get("product_id")?.as_str()?,
                data.get("seller_id")?.as_str()?,
            ))
        })
        .collect();
    let mut messages = Vec::new();
    for event in events {
        let envelope = &event.envelope;
        let Some(event_type) = webhook_type(&envelope.kind) else {
            continue;
        };
        if envelope.data.get("reservation_id").is_some() {
            for (seller, data) in per_seller(&envelope.data, &sellers) {
                messages.push(message(
                    Uuid::now_v7(),
                    seller,
                    event_type,
                    envelope.time,
                    data,
                ));
            }
        } else if let Some(seller) = envelope.data.get("seller_id").and_then(Value::as_str) {
            messages.push(message(
                envelope.id,
                seller.to_owned(),
                event_type,
                envelope.time,
                envelope.data.clone(),
            ));
        }
    }
    messages
}

/// The reservation event's data once per seller, with only that seller's items.
fn per_seller(data: &Value, sellers: &BTreeMap<&str, &str>) -> BTreeMap<String, Value> {
    let mut split: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for item in data
        .get("items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let seller = item
            .get("product_id")
            .and_then(Value::as_str)
            .and_then(|product| sellers.get(product));
        match seller {
            Some(seller) => split
                .entry((*seller).to_owned())
                .or_default()
                .push(item.clone()),
            None => tracing::error!(
                reservation_id = %data["reservation_id"],
                "a reservation item without its stock event; its seller gets no webhook"
            ),
        }
    }
    split
        .into_iter()
        .map(|(seller, items)| {
            let mut data = data.clone();
            data["items"] = Value::Array(items);
            (seller, data)
        })
        .collect()
}

/// A Standard Webhooks message of `tenant`: the body `{"type","timestamp","data"}`.
fn message(
    id: Uuid,
    tenant: String,
    event_type: &str,
    time: chrono::DateTime<chrono::Utc>,
    data: Value,
) -> NewMessage {
    let body = serde_json::json!({
        "type": event_type,
        "timestamp": time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "data": data,
    });
    NewMessage {
        id,
        tenant,
        event_type: event_type.to_owned(),
        body: serde_json::to_vec(&body).expect("JSON values serialise"),
        created_at: time,
    }
}

/// One part of a batch's results, as the `batch.completed` message to its tenant's endpoints:
/// an export's items are the products as `GET /v1/products` shows them; a snapshot's, their
/// stock.
pub fn batch_part(
    batch: &crate::batches::Batch,
    part: u32,
    products: Vec<crate::domain::Product>,
    now: chrono::DateTime<chrono::Utc>,
) -> NewMessage {
    use crate::batches::BatchKind;
    let items: Vec<Value> = products
        .into_iter()
        .map(|product| match batch.kind {
            BatchKind::ProductsExport => {
                serde_json::to_value(crate::api::products::ProductOut::from(product))
                    .expect("JSON values serialise")
            }
            BatchKind::StockSnapshot => serde_json::json!({
                "product_id": product.id.to_string(),
                "seller_id": product.seller_id.to_string(),
                "sku": product.sku.as_str(),
                "on_hand": product.stock.on_hand,
                "reserved": product.stock.reserved,
                "available": product.stock.available(),
            }),
        })
        .collect();
    message(
        Uuid::now_v7(),
        batch.tenant.clone(),
        crate::batches::BATCH_COMPLETED,
        now,
        serde_json::json!({
            "batch_id": batch.id.to_string(),
            "type": batch.kind.as_str(),
            "part": part,
            "parts": batch.parts,
            "items": items,
        }),
    )
}

/// `product-import.completed` to the importing tenant's endpoints: the import's counts (its
/// line errors are at `GET /v1/product-imports/{id}`).
pub fn import_completed(
    import: &crate::imports::ProductImport,
    now: chrono::DateTime<chrono::Utc>,
) -> NewMessage {
    message(
        Uuid::now_v7(),
        import.tenant.clone(),
        crate::imports::PRODUCT_IMPORT_COMPLETED,
        now,
        serde_json::json!({
            "import_id": import.id.to_string(),
            "status": import.status.as_str(),
            "received": import.received,
            "created": import.created,
            "failed": import.failed,
        }),
    )
}
