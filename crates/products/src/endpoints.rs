//! Webhook endpoints as sellers and admins manage them: the use cases behind
//! `/v1/webhook-endpoints`, over the webhook store (rows) and the secret store (signing
//! secrets, which never touch the database). An endpoint belongs to a tenant: the customer whose
//! token created it, or `admin`. A customer sees and manages only its own tenant's endpoints
//! (anything else is "not found", as if it did not exist); an admin, every tenant's (operators
//! disable or fix a seller's endpoint).

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;
use vitrine_platform::secrets::{SecretError, SecretPath, SecretStore, SecretValue};
use vitrine_webhooks::address_policy::{AddressPolicy, Refused};
use vitrine_webhooks::dispatcher::EndpointSecrets;
use vitrine_webhooks::secret::WebhookSecret;
use vitrine_webhooks::store::{
    AttemptRecord, Endpoint, EndpointChanges, NewEndpoint, StoreError, WebhookStore,
};

/// How long a rotated-out secret keeps signing (Svix: 24 h), so receivers can switch over.
pub const ROTATION_OVERLAP_HOURS: i64 = 24;

/// The tenant of endpoints an admin creates.
pub const ADMIN_TENANT: &str = "admin";

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("not found")]
    NotFound,
    #[error("the endpoint changed since it was read")]
    VersionMismatch,
    #[error("{0}")]
    Url(Refused),
    #[error("the secret store is unavailable")]
    SecretsUnavailable(#[source] SecretError),
    #[error(transparent)]
    Internal(anyhow::Error),
}

impl From<StoreError> for EndpointError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => Self::NotFound,
            StoreError::VersionMismatch => Self::VersionMismatch,
            StoreError::Backend(error) => Self::Internal(error),
        }
    }
}

impl From<SecretError> for EndpointError {
    fn from(error: SecretError) -> Self {
        match error {
            SecretError::Unavailable(_) => Self::SecretsUnavailable(error),
            other => Self::Internal(other.into()),
        }
    }
}

/// Who is asking: a tenant, or an admin who may see every tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Admin,
    Tenant(String),
}

impl Caller {
    /// The tenant filter for reads: none for admins.
    pub(crate) fn scope(&self) -> Option<&str> {
        match self {
            Caller::Admin => None,
            Caller::Tenant(tenant) => Some(tenant),
        }
    }

    /// The tenant endpoints this caller creates belong to.
    pub(crate) fn owner(&self) -> String {
        match self {
            Caller::Admin => ADMIN_TENANT.to_owned(),
            Caller::Tenant(tenant) => tenant.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct WebhookEndpoints {
    store: Arc<dyn WebhookStore>,
    secrets: Arc<dyn SecretStore>,
    policy: Arc<AddressPolicy>,
}

fn secret_path(endpoint: Uuid, which: &str) -> SecretPath {
    SecretPath::new(&["webhook-endpoints", &endpoint.to_string(), which])
        .expect("uuids and these names are valid path segments")
}

impl WebhookEndpoints {
    pub fn new(
        store: Arc<dyn WebhookStore>,
        secrets: Arc<dyn SecretStore>,
        policy: Arc<AddressPolicy>,
    ) -> Self {
        Self {
            store,
            secrets,
            policy,
        }
    }

    /// A destination the policy allows: scheme, literal address, and what the host resolves to
    /// now (every delivery checks again).
    async fn check(&self, url: &str) -> Result<(), EndpointError> {
        let parsed = self.policy.check_url(url).map_err(EndpointError::Url)?;
        self.policy
            .check_host(&parsed)
            .await
            .map_err(EndpointError::Url)
    }

    /// Generates and stores the endpoint's current signing secret.
    async fn new_secret(&self, id: Uuid) -> Result<WebhookSecret, EndpointError> {
        let secret = WebhookSecret::generate();
        self.secrets
            .put(
                &secret_path(id, "current"),
                &SecretValue::new(&*secret.expose()),
            )
            .await?;
        Ok(secret)
    }

    /// Creates an endpoint; its secret is returned this once.
    pub async fn create(
        &self,
        caller: &Caller,
        url: &str,
        event_types: Vec<String>,
        description: Option<String>,
    ) -> Result<(Endpoint, WebhookSecret), EndpointError> {
        self.check(url).await?;
        let id = Uuid::now_v7();
        // The secret first: an endpoint row never exists without one to sign with.
        let secret = self.new_secret(id).await?;
        let new = NewEndpoint {
            tenant: caller.owner(),
            url: url.to_owned(),
            description,
            event_types,
        };
        let endpoint = self.store.create_endpoint(id, &new, Utc::now()).await?;
        Ok((endpoint, secret))
    }

    pub async fn get(&self, caller: &Caller, id: Uuid) -> Result<Endpoint, EndpointError> {
        let endpoint = self
            .store
            .endpoint(id)
            .await?
            .ok_or(EndpointError::NotFound)?;
        match caller.scope() {
            Some(tenant) if tenant != endpoint.tenant => Err(EndpointError::NotFound),
            _ => Ok(endpoint),
        }
    }

    pub async fn list(
        &self,
        caller: &Caller,
        limit: u32,
        after: Option<Uuid>,
    ) -> Result<Vec<Endpoint>, EndpointError> {
        Ok(self.store.endpoints(caller.scope(), limit, after).await?)
    }

    pub async fn update(
        &self,
        caller: &Caller,
        id: Uuid,
        expected_version: Option<i64>,
        changes: &EndpointChanges,
    ) -> Result<Endpoint, EndpointError> {
        if let Some(url) = &changes.url {
            self.check(url).await?;
        }
        self.get(caller, id).await?;
        Ok(self
            .store
            .update_endpoint(id, expected_version, changes, Utc::now())
            .await?)
    }

    /// Deletes the endpoint and destroys its secrets (its attempt records stay in the
    /// database; the API no longer lists them).
    pub async fn delete(&self, caller: &Caller, id: Uuid) -> Result<(), EndpointError> {
        self.get(caller, id).await?;
        self.store.delete_endpoint(id, Utc::now()).await?;
        let tree = SecretPath::new(&["webhook-endpoints", &id.to_string()])
            .expect("a uuid is a valid path segment");
        if let Err(error) = self.secrets.destroy_tree(&tree).await {
            // The endpoint is gone and nothing signs with its secrets any more; a leftover is
            // logged rather than failing a delete that happened.
            tracing::warn!(endpoint_id = %id, %error, "destroying a deleted endpoint's secrets failed");
        }
        Ok(())
    }

    /// A new secret; the previous one keeps signing for [`ROTATION_OVERLAP_HOURS`].
    pub async fn rotate(
        &self,
        caller: &Caller,
        id: Uuid,
    ) -> Result<(Endpoint, WebhookSecret), EndpointError> {
        self.get(caller, id).await?;
        let current = self
            .secrets
            .get(&secret_path(id, "current"))
            .await?
            .ok_or_else(|| {
                EndpointError::Internal(anyhow::anyhow!("endpoint {id} has no secret"))
            })?;
        // The overlap is recorded first, so from the moment the new secret exists every
        // delivery is signed with both (the receiver has only the old one until this returns).
        let now = Utc::now();
        let endpoint = self
            .store
            .secret_rotated(id, now + Duration::hours(ROTATION_OVERLAP_HOURS), now)
            .await?;
        self.secrets
            .put(&secret_path(id, "previous"), &current)
            .await?;
        let secret = self.new_secret(id).await?;
        Ok((endpoint, secret))
    }

    pub async fn attempts(
        &self,
        caller: &Caller,
        id: Uuid,
        limit: u32,
        before: Option<Uuid>,
    ) -> Result<Vec<AttemptRecord>, EndpointError> {
        self.get(caller, id).await?;
        Ok(self.store.attempts(id, limit, before).await?)
    }

    /// Queues a message again to its endpoints; how many deliveries.
    pub async fn resend(&self, caller: &Caller, message: Uuid) -> Result<usize, EndpointError> {
        Ok(self
            .store
            .resend(message, caller.scope(), Utc::now())
            .await?)
    }

    /// Queues again every delivery to the endpoint that failed for good since `since`.
    pub async fn recover(
        &self,
        caller: &Caller,
        id: Uuid,
        since: DateTime<Utc>,
    ) -> Result<usize, EndpointError> {
        self.get(caller, id).await?;
        Ok(self.store.recover(id, since, Utc::now()).await?)
    }
}

#[async_trait]
impl EndpointSecrets for WebhookEndpoints {
    async fn secrets(
        &self,
        endpoint: Uuid,
        with_previous: bool,
    ) -> anyhow::Result<Vec<WebhookSecret>> {
        let mut secrets = Vec::with_capacity(2);
        let which: &[&str] = if with_previous {
            &["current", "previous"]
        } else {
            &["current"]
        };
        for name in which {
            if let Some(value) = self.secrets.get(&secret_path(endpoint, name)).await? {
                secrets.push(WebhookSecret::parse(value.expose())?);
            }
        }
        Ok(secrets)
    }
}

/// Tells the bus (through products' outbox) when a message exhausts its attempts or an
/// endpoint is disabled, naming the endpoint's owner so it can be told too.
#[derive(Debug, Clone)]
pub struct BusNotices {
    pub products: Arc<dyn crate::store::ProductStore>,
    pub webhooks: Arc<dyn WebhookStore>,
}

impl BusNotices {
    async fn tenant(&self, endpoint: Uuid) -> String {
        match self.webhooks.endpoint(endpoint).await {
            Ok(Some(found)) => found.tenant,
            _ => String::new(),
        }
    }

    async fn announce(&self, message: vitrine_messaging::outbox::OutboxMessage) {
        if let Err(error) = self.products.announce(&[message]).await {
            tracing::error!(%error, "announcing a webhook notice failed");
        }
    }
}

#[async_trait]
impl vitrine_webhooks::dispatcher::Notices for BusNotices {
    async fn attempts_exhausted(&self, endpoint: Uuid, message: Uuid) {
        let tenant = self.tenant(endpoint).await;
        self.announce(crate::outgoing::webhook_attempts_exhausted(
            endpoint, &tenant, message,
        ))
        .await;
    }

    async fn endpoint_disabled(&self, endpoint: Uuid, reason: &str) {
        let tenant = self.tenant(endpoint).await;
        self.announce(crate::outgoing::webhook_endpoint_disabled(
            endpoint, &tenant, reason,
        ))
        .await;
    }
}
