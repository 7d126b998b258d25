//! The production `SecretStore`: HashiCorp Vault (or OpenBao, which speaks the same API), KV v2,
//! one path per customer and payment method under a mount (`secret/` by default).
//!
//! A thin client over the HTTP API rather than a Vault crate: the five calls we need are
//! small, and it reuses the process's one HTTP/TLS stack. Erasure deletes the path's
//! *metadata*, which in KV v2 destroys every version, not just the latest.
//!
//! Auth: a static token, or AppRole (role id + secret id) with the token renewed at half its
//! lease and a fresh login when renewal is refused.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio::sync::RwLock;
use tokio_util::sync::CancellationToken;

use super::{SecretError, SecretPath, SecretStore, SecretValue};

/// How the store authenticates to Vault.
#[derive(Debug, Clone)]
pub enum VaultAuth {
    Token(SecretString),
    AppRole {
        role_id: String,
        secret_id: SecretString,
    },
}

#[derive(Debug, Clone)]
pub struct VaultSecretStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: reqwest::Client,
    addr: String,
    mount: String,
    auth: VaultAuth,
    token: RwLock<SecretString>,
}

fn unavailable(what: impl std::fmt::Display) -> SecretError {
    SecretError::Unavailable(what.to_string())
}

impl VaultSecretStore {
    /// Connects (logging in with AppRole if so configured) to Vault at `addr`, KV v2 mount `mount`.
    pub async fn connect(addr: &str, mount: &str, auth: VaultAuth) -> Result<Self, SecretError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(unavailable)?;
        let token = match &auth {
            VaultAuth::Token(token) => token.clone(),
            VaultAuth::AppRole { .. } => SecretString::from(String::new()),
        };
        let inner = Inner {
            client,
            addr: addr.trim_end_matches('/').to_owned(),
            mount: mount.trim_matches('/').to_owned(),
            auth,
            token: RwLock::new(token),
        };
        let store = Self {
            inner: Arc::new(inner),
        };
        if matches!(store.inner.auth, VaultAuth::AppRole { .. }) {
            store.login().await?;
        }
        Ok(store)
    }

    /// AppRole login; returns the token's lease.
    async fn login(&self) -> Result<Duration, SecretError> {
        let VaultAuth::AppRole { role_id, secret_id } = &self.inner.auth else {
            return Ok(Duration::ZERO);
        };
        let body = json!({"role_id": role_id, "secret_id": secret_id.expose_secret()});
        let response = self
            .inner
            .client
            .post(format!("{}/v1/auth/approle/login", self.inner.addr))
            .json(&body)
            .send()
            .await
            .map_err(unavailable)?;
        if !response.status().is_success() {
            return Err(unavailable(format!(
                "AppRole login refused ({})",
                response.status()
            )));
        }
        let auth: Value = response.json().await.map_err(unavailable)?;
        let token = auth["auth"]["client_token"]
            .as_str()
            .ok_or_else(|| unavailable("login without token"))?;
        *self.inner.token.write().await = SecretString::from(token.to_owned());
        Ok(Duration::from_secs(
            auth["auth"]["lease_duration"].as_u64().unwrap_or(0),
        ))
    }

    /// Renews the current token; returns its new lease (zero for tokens that never expire).
    pub async fn renew(&self) -> Result<Duration, SecretError> {
        let response = self
            .request(Method::POST, "auth/token/renew-self", Some(json!({})))
            .await?;
        if response.status() == StatusCode::BAD_REQUEST {
            // Not renewable (e.g. a root or batch token): nothing to do.
            return Ok(Duration::ZERO);
        }
        let response = ok(response).await?;
        let body: Value = response.json().await.map_err(unavailable)?;
        Ok(Duration::from_secs(
            body["auth"]["lease_duration"].as_u64().unwrap_or(0),
        ))
    }

    /// Keeps the token alive until `shutdown`: renews at half its lease, logs in again (AppRole)
    /// when renewal fails.
    pub async fn keep_token_alive(self, shutdown: CancellationToken) {
        let store = self;
        {
            let mut wait = Duration::from_secs(60);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
                let lease = match store.renew().await {
                    Ok(lease) => lease,
                    Err(error) => {
                        tracing::warn!(%error, "renewing the Vault token failed; logging in again");
                        store.login().await.unwrap_or_default()
                    }
                };
                wait = if lease.is_zero() {
                    Duration::from_secs(300)
                } else {
                    (lease / 2).max(Duration::from_secs(5))
                };
            }
        }
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<reqwest::Response, SecretError> {
        let token = self.inner.token.read().await.clone();
        let mut request = self
            .inner
            .client
            .request(method, format!("{}/v1/{path}", self.inner.addr))
            .header("X-Vault-Token", token.expose_secret());
        if let Some(body) = body {
            request = request.json(&body);
        }
        request
            .send()
            .await
            .map_err(|error| unavailable(format!("Vault unreachable: {error}")))
    }

    fn data(&self, path: &SecretPath) -> String {
        format!("{}/data/{path}", self.inner.mount)
    }

    fn metadata(&self, path: &str) -> String {
        format!("{}/metadata/{path}", self.inner.mount)
    }

    /// Keys directly under `prefix` (folders end with `/`), or none.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, SecretError> {
        let list = Method::from_bytes(b"LIST").expect("LIST is a valid method");
        let response = self
            .request(list, &self.metadata(&format!("{prefix}/")), None)
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        let body: Value = ok(response).await?.json().await.map_err(unavailable)?;
        Ok(body["data"]["keys"]
            .as_array()
            .map(|keys| {
                keys.iter()
                    .filter_map(|k| k.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn destroy_metadata(&self, path: &str) -> Result<(), SecretError> {
        let response = self
            .request(Method::DELETE, &self.metadata(path), None)
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(());
        }
        ok(response).await.map(|_| ())
    }
}

/// Maps Vault's refusals to errors that never include the request body (it may hold a secret).
async fn ok(response: reqwest::Response) -> Result<reqwest::Response, SecretError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    Err(unavailable(format!("Vault answered {status}")))
}

#[async_trait]
impl SecretStore for VaultSecretStore {
    async fn put(&self, path: &SecretPath, value: &SecretValue) -> Result<(), SecretError> {
        let body = json!({"data": {"value": value.expose()}});
        ok(self
            .request(Method::POST, &self.data(path), Some(body))
            .await?)
        .await
        .map(|_| ())
    }

    async fn get(&self, path: &SecretPath) -> Result<Option<SecretValue>, SecretError> {
        let response = self.request(Method::GET, &self.data(path), None).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let body: Value = ok(response).await?.json().await.map_err(unavailable)?;
        match body["data"]["data"]["value"].as_str() {
            Some(value) => Ok(Some(SecretValue::new(value))),
            // Latest version deleted (soft) or destroyed: nothing to reveal.
            None if body["data"]["data"].is_null() => Ok(None),
            None => Err(SecretError::Corrupt(path.to_string())),
        }
    }

    async fn destroy(&self, path: &SecretPath) -> Result<(), SecretError> {
        self.destroy_metadata(path.as_str()).await
    }

    async fn destroy_tree(&self, prefix: &SecretPath) -> Result<(), SecretError> {
        self.destroy_metadata(prefix.as_str()).await?;
        let mut pending = vec![prefix.as_str().to_owned()];
        while let Some(folder) = pending.pop() {
            for key in self.list(&folder).await? {
                match key.strip_suffix('/') {
                    Some(sub) => pending.push(format!("{folder}/{sub}")),
                    None => self.destroy_metadata(&format!("{folder}/{key}")).await?,
                }
            }
        }
        Ok(())
    }

    async fn check(&self) -> Result<(), SecretError> {
        let response = self
            .inner
            .client
            .get(format!("{}/v1/sys/health", self.inner.addr))
            .send()
            .await
            .map_err(|error| unavailable(format!("Vault unreachable: {error}")))?;
        // 200 = initialised, unsealed, active; anything else cannot serve requests.
        if response.status() == StatusCode::OK {
            Ok(())
        } else {
            Err(unavailable(format!("Vault health {}", response.status())))
        }
    }
}
