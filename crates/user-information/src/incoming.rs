//! What user-information answers over messaging: customer lookups, sent to its queue by other
//! services (products checks sellers this way). The reply goes straight to the requester's reply
//! queue: it is an answer to someone waiting, not a fact to keep, so it needs no outbox.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use vitrine_contracts::user_information as contract;
use vitrine_messaging::Envelope;
use vitrine_messaging::consumer::Handler;
use vitrine_messaging::transport::Transport;

use crate::domain::{Customer, CustomerId, CustomerStatus};
use crate::store::CustomerStore;

#[derive(Debug)]
pub struct LookupResponder {
    store: Arc<dyn CustomerStore>,
    transport: Arc<dyn Transport>,
}

impl LookupResponder {
    pub fn new(store: Arc<dyn CustomerStore>, transport: Arc<dyn Transport>) -> Self {
        Self { store, transport }
    }
}

fn status(status: CustomerStatus) -> contract::CustomerStatus {
    match status {
        CustomerStatus::Active => contract::CustomerStatus::Active,
        CustomerStatus::Suspended => contract::CustomerStatus::Suspended,
        CustomerStatus::Closed => contract::CustomerStatus::Closed,
    }
}

/// The lookup answer for an existing customer (shared by the messaging and HTTP paths).
pub fn lookup_reply(customer: &Customer) -> contract::CustomerLookupReply {
    contract::CustomerLookupReply::Found {
        id: customer.id.as_uuid(),
        cnpj: customer.details.cnpj.as_str().to_owned(),
        legal_name: customer.details.legal_name.as_str().to_owned(),
        status: status(customer.status),
        version: Some(customer.version),
    }
}

#[async_trait]
impl Handler for LookupResponder {
    async fn handle(&self, request: &Envelope) -> anyhow::Result<()> {
        if request.kind != contract::CUSTOMER_LOOKUP {
            // Unknown request types are not retried forever: they cannot succeed later.
            tracing::warn!(message_type = %request.kind, "ignoring an unknown request type");
            return Ok(());
        }
        let Some(reply_to) = request.replyto.as_deref() else {
            tracing::warn!("lookup without replyto; nobody to answer");
            return Ok(());
        };
        if request
            .deadline
            .is_some_and(|deadline| deadline < Utc::now())
        {
            tracing::info!("lookup past its deadline; the caller has given up");
            return Ok(());
        }
        let lookup: contract::CustomerLookup = match request.decode() {
            Ok(lookup) => lookup,
            Err(error) => anyhow::bail!("malformed lookup: {error}"),
        };
        let id = lookup.customer_id;
        let answer = match self.store.get_customer(CustomerId::from_uuid(id)).await? {
            Some(customer) => lookup_reply(&customer),
            None => contract::CustomerLookupReply::NotFound { id },
        };
        let reply = Envelope::new(contract::SOURCE, contract::CUSTOMER_LOOKUP_REPLY, &answer)?
            .with_subject(id.to_string())
            .caused_by(request);
        self.transport.send(reply_to, &reply).await?;
        Ok(())
    }
}
