//! The customer directory other services use to check a customer (e.g. products checking a
//! seller), behind one trait with two adapters chosen by configuration (seed R7 and R8):
//! request/reply over messaging, or a plain HTTP call to user-information's internal endpoint.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use vitrine_contracts::user_information as contract;
use vitrine_messaging::Envelope;
use vitrine_messaging::request_reply::{Outcome, Requester, RequesterOptions};
use vitrine_messaging::transport::Transport;

pub use contract::{CustomerLookupReply, CustomerStatus};

/// The answer to "who is customer `id`?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Found {
        id: Uuid,
        cnpj: String,
        legal_name: String,
        status: CustomerStatus,
        /// The customer's version, when the answering user-information sends it.
        version: Option<i64>,
    },
    NotFound,
    /// No usable answer in time (timeout, fault, transport down): the caller should answer 503.
    Unavailable(String),
}

impl From<CustomerLookupReply> for Lookup {
    fn from(reply: CustomerLookupReply) -> Self {
        match reply {
            CustomerLookupReply::Found {
                id,
                cnpj,
                legal_name,
                status,
                version,
            } => Lookup::Found {
                id,
                cnpj,
                legal_name,
                status,
                version,
            },
            CustomerLookupReply::NotFound { .. } => Lookup::NotFound,
        }
    }
}

#[async_trait]
pub trait CustomerDirectory: Send + Sync + std::fmt::Debug {
    async fn lookup(&self, id: Uuid, timeout: Duration) -> Lookup;

    /// Releases what the directory holds (a reply queue); for short-lived callers such as the
    /// CLI. Services leave it to their shutdown.
    async fn close(&self) -> anyhow::Result<()> {
        Ok(())
    }

    /// Whether answers can reach this process now (for readiness); `Err` says why not.
    fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Asks over messaging: a request to user-information's queue, the reply on this process's
/// reply queue.
#[derive(Debug)]
pub struct MessagingDirectory {
    requester: Arc<Requester>,
    source: String,
}

impl MessagingDirectory {
    /// `source` is the asking service's CloudEvents source (e.g. `vitrine.products`).
    pub fn new(requester: Arc<Requester>, source: &str) -> Self {
        Self {
            requester,
            source: source.to_owned(),
        }
    }
}

#[async_trait]
impl CustomerDirectory for MessagingDirectory {
    async fn lookup(&self, id: Uuid, timeout: Duration) -> Lookup {
        let request = match Envelope::new(
            &self.source,
            contract::CUSTOMER_LOOKUP,
            &contract::CustomerLookup { customer_id: id },
        ) {
            Ok(request) => request.with_subject(id.to_string()),
            Err(error) => return Lookup::Unavailable(error.to_string()),
        };
        match self
            .requester
            .request::<CustomerLookupReply>(contract::QUEUE, request, timeout)
            .await
        {
            Ok(Outcome::Reply(reply)) => reply.into(),
            Ok(Outcome::Fault(reason)) => {
                Lookup::Unavailable(format!("user-information failed: {reason}"))
            }
            Ok(Outcome::Timeout) => {
                Lookup::Unavailable("user-information did not answer in time".to_owned())
            }
            Err(error) => Lookup::Unavailable(format!("messaging unavailable: {error}")),
        }
    }

    async fn close(&self) -> anyhow::Result<()> {
        Ok(self.requester.close().await?)
    }

    fn check(&self) -> Result<(), String> {
        self.requester.reply_path()
    }
}

/// Asks over HTTP: `GET {base}/internal/v1/customers/{id}/lookup` with a service token.
#[derive(Debug)]
pub struct HttpDirectory {
    base_url: String,
    token: SecretString,
    client: reqwest::Client,
}

impl HttpDirectory {
    pub fn new(base_url: &str, token: SecretString) -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a reqwest client with static settings builds");
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            token,
            client,
        }
    }
}

#[async_trait]
impl CustomerDirectory for HttpDirectory {
    async fn lookup(&self, id: Uuid, timeout: Duration) -> Lookup {
        let url = format!("{}/internal/v1/customers/{id}/lookup", self.base_url);
        let response = self
            .client
            .get(&url)
            .bearer_auth(self.token.expose_secret())
            .timeout(timeout)
            .send()
            .await;
        match response {
            Ok(response) if response.status() == reqwest::StatusCode::NOT_FOUND => Lookup::NotFound,
            Ok(response) if response.status().is_success() => {
                match response.json::<CustomerLookupReply>().await {
                    Ok(reply) => reply.into(),
                    Err(error) => Lookup::Unavailable(format!("unreadable answer: {error}")),
                }
            }
            Ok(response) => {
                Lookup::Unavailable(format!("user-information answered {}", response.status()))
            }
            Err(error) if error.is_timeout() => {
                Lookup::Unavailable("user-information did not answer in time".to_owned())
            }
            Err(error) => Lookup::Unavailable(format!("user-information unreachable: {error}")),
        }
    }
}

/// The directory the configuration asks for; the one place that choice is made. Over messaging
/// it starts a reply queue named after `requester` (the asking service or tool), which lives
/// until `stop` or [`CustomerDirectory::close`]; `source` is the asker's CloudEvents source.
pub async fn open(
    settings: &vitrine_platform::Settings,
    transport: Arc<dyn Transport>,
    requester: &str,
    source: &str,
    stop: CancellationToken,
) -> anyhow::Result<Arc<dyn CustomerDirectory>> {
    match settings.directory()? {
        vitrine_platform::backends::Directory::Messaging => {
            let ttl = Duration::from_secs(settings.reply_queue_ttl_secs.max(1));
            let options = RequesterOptions {
                queue_ttl: ttl,
                heartbeat: ttl / 4,
            };
            let requester = Requester::start(transport, requester, options, stop)
                .await
                .context("creating the reply queue for customer lookups")?;
            Ok(Arc::new(MessagingDirectory::new(requester, source)))
        }
        vitrine_platform::backends::Directory::Http { url, token } => {
            Ok(Arc::new(HttpDirectory::new(&url, token)))
        }
    }
}
