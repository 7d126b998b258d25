//! JWT bearer authentication and the roles of API.md.
//!
//! Services verify tokens themselves (Kong validates too, but a header the service cannot verify
//! is never trusted). Embedded mode signs with an HS256 key generated on first run and kept in the
//! data directory; production verifies against the identity provider's JWKS.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, RwLock};
use uuid::Uuid;

use super::error::ApiError;

/// What a token may do (API.md, "auth").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Admin,
    /// A business customer acting on its own data only.
    Customer,
    /// May reveal stored payment secrets; every reveal is audited.
    Payments,
    /// Another service, calling a service-to-service endpoint. Admitted only on
    /// [`INTERNAL_PREFIX`] paths, so a leaked service credential cannot act on the public API.
    Service,
}

/// The paths of service-to-service endpoints, which the gateway never routes.
pub const INTERNAL_PREFIX: &str = "/internal/";

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Customer => "customer",
            Self::Payments => "payments",
            Self::Service => "service",
        }
    }

    pub fn parse(raw: &str) -> Option<Role> {
        match raw {
            "admin" => Some(Self::Admin),
            "customer" => Some(Self::Customer),
            "payments" => Some(Self::Payments),
            "service" => Some(Self::Service),
            _ => None,
        }
    }
}

/// The registered and private claims Vitrine reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
}

/// The verified caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub subject: String,
    pub roles: Vec<Role>,
    /// Set (and required) for role `customer`: the only customer this caller may touch.
    pub customer_id: Option<Uuid>,
}

impl Principal {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// 403 unless the caller holds one of `roles`.
    pub fn require_any(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.iter().any(|role| self.has(*role)) {
            Ok(())
        } else {
            Err(ApiError::Forbidden)
        }
    }

    /// Whether this caller may act on the customer `id`: admins on any, customers on their own.
    pub fn owns_or_admin(&self, id: Uuid) -> bool {
        self.has(Role::Admin) || (self.has(Role::Customer) && self.customer_id == Some(id))
    }

    fn from_claims(claims: Claims) -> Result<Principal, AuthError> {
        let roles: Vec<Role> = claims.roles.iter().filter_map(|r| Role::parse(r)).collect();
        let customer_id = match claims.customer_id.as_deref() {
            None => None,
            Some(raw) => Some(Uuid::parse_str(raw).map_err(|_| AuthError::Invalid)?),
        };
        if roles.contains(&Role::Customer) && customer_id.is_none() {
            return Err(AuthError::Invalid);
        }
        Ok(Principal {
            subject: claims.sub,
            roles,
            customer_id,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the bearer token is invalid or expired")]
    Invalid,
    #[error("the token's signing keys could not be fetched")]
    KeysUnavailable,
}

/// Clock skew tolerated on `exp` and `nbf`, between the identity provider and this host.
const LEEWAY_SECS: u64 = 30;

/// How long a verified token is remembered at most: its signature is not checked again within
/// this (never past its `exp`), and a key withdrawn from the provider's set stops being
/// honoured for tokens seen before within it.
const VERIFIED_FOR: Duration = Duration::from_secs(60);

/// Verifies bearer tokens.
#[derive(Debug)]
pub struct Authenticator {
    keys: KeySource,
    validation: Validation,
    /// Tokens verified lately, by their exact text, each until `min(exp, remember_for)`.
    verified: moka::sync::Cache<Box<str>, (Principal, Duration)>,
    /// [`VERIFIED_FOR`], or less: a provider's key set is trusted only as long as it is fresh,
    /// and so is a verification made with it.
    remember_for: Duration,
}

/// Each remembered token lives for the time it was stored with.
struct UntilExpiry;

impl moka::Expiry<Box<str>, (Principal, Duration)> for UntilExpiry {
    fn expire_after_create(
        &self,
        _token: &Box<str>,
        value: &(Principal, Duration),
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.1)
    }
}

fn verified_cache() -> moka::sync::Cache<Box<str>, (Principal, Duration)> {
    moka::sync::Cache::builder()
        .max_capacity(10_000)
        .expire_after(UntilExpiry)
        .build()
}

#[derive(Debug)]
enum KeySource {
    Shared(DecodingKey),
    Jwks(JwksCache),
}

impl Authenticator {
    /// Embedded mode: tokens signed with a shared HS256 key.
    pub fn hs256(key: &[u8]) -> anyhow::Result<Self> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        Ok(Self {
            keys: KeySource::Shared(DecodingKey::from_secret(key)?),
            validation,
            verified: verified_cache(),
            remember_for: VERIFIED_FOR,
        })
    }

    /// Production: tokens signed by the identity provider whose keys are published at `jwks_url`,
    /// with this issuer and audience (production requires both).
    pub fn jwks(jwks_url: String, issuer: Option<&str>, audience: Option<&str>) -> Self {
        Self::jwks_with(jwks_url, issuer, audience, JwksOptions::default())
    }

    /// [`Authenticator::jwks`] with the key set's cache timings given.
    pub fn jwks_with(
        jwks_url: String,
        issuer: Option<&str>,
        audience: Option<&str>,
        options: JwksOptions,
    ) -> Self {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.algorithms = vec![
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::ES256,
            Algorithm::ES384,
            Algorithm::EdDSA,
        ];
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        if let Some(issuer) = issuer {
            validation.set_issuer(&[issuer]);
        }
        match audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        Self {
            keys: KeySource::Jwks(JwksCache::new(jwks_url, options)),
            validation,
            verified: verified_cache(),
            remember_for: VERIFIED_FOR.min(options.max_age),
        }
    }

    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        if let Some((principal, _)) = self.verified.get(token) {
            return Ok(principal);
        }
        let claims = self.verify_signature(token).await?;
        let exp = claims.exp;
        let principal = Principal::from_claims(claims)?;
        // Only until `exp` (the leeway is for clocks, not for the cache to extend).
        let left = exp.saturating_mul(1000) - chrono::Utc::now().timestamp_millis();
        let keep = Duration::from_millis(u64::try_from(left).unwrap_or(0)).min(self.remember_for);
        if !keep.is_zero() {
            self.verified
                .insert(token.into(), (principal.clone(), keep));
        }
        Ok(principal)
    }

    async fn verify_signature(&self, token: &str) -> Result<Claims, AuthError> {
        Ok(match &self.keys {
            KeySource::Shared(key) => decode(token, key, &self.validation)?,
            KeySource::Jwks(cache) => {
                let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Invalid)?;
                if !self.validation.algorithms.contains(&header.alg) {
                    return Err(AuthError::Invalid);
                }
                let key = cache.key_for(header.kid.as_deref()).await?;
                // jsonwebtoken refuses a validation listing algorithms of another key family
                // than the key's, so narrow it to the (already allowed) algorithm of this token.
                let mut validation = self.validation.clone();
                validation.algorithms = vec![header.alg];
                decode(token, &key, &validation)?
            }
        })
    }

    /// Reads and verifies the `Authorization: Bearer` header.
    pub async fn authenticate(&self, parts: &Parts) -> Result<Principal, ApiError> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or(ApiError::Unauthorized("send Authorization: Bearer <token>"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(ApiError::Unauthorized(
                "the Authorization header must be `Bearer <token>`",
            ))?;
        let mut principal = self.verify(token).await.map_err(|error| match error {
            AuthError::Invalid => ApiError::Unauthorized("the bearer token is invalid or expired"),
            AuthError::KeysUnavailable => ApiError::Unavailable {
                what: "the identity provider",
                retry_after: Duration::from_secs(5),
            },
        })?;
        if !parts.uri.path().starts_with(INTERNAL_PREFIX) && principal.has(Role::Service) {
            // Checked here, once for every handler, rather than trusted to each role check;
            // a service-only token is refused outright (some public reads need no role).
            principal.roles.retain(|role| *role != Role::Service);
            if principal.roles.is_empty() {
                return Err(ApiError::Forbidden);
            }
        }
        Ok(principal)
    }
}

fn decode(token: &str, key: &DecodingKey, validation: &Validation) -> Result<Claims, AuthError> {
    jsonwebtoken::decode::<Claims>(token, key, validation)
        .map(|data| data.claims)
        .map_err(|_| AuthError::Invalid)
}

impl<S> FromRequestParts<S> for Principal
where
    Arc<Authenticator>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // The idempotency layer may already have verified this request's token.
        if let Some(principal) = parts.extensions.get::<Principal>() {
            return Ok(principal.clone());
        }
        let authenticator = Arc::<Authenticator>::from_ref(state);
        let principal = authenticator.authenticate(parts).await?;
        parts.extensions.insert(principal.clone());
        Ok(principal)
    }
}

/// How the identity provider's key set is cached.
#[derive(Debug, Clone, Copy)]
pub struct JwksOptions {
    /// A fetched key set is used this long before it is fetched again.
    pub max_age: Duration,
    /// While the provider cannot be reached, the last key set keeps verifying tokens this long
    /// after it was fetched: an identity-provider outage must not become a full outage.
    pub stale_if_error: Duration,
    /// At most one fetch this often: for tokens naming a key id we do not know (a rotation, or
    /// garbage), and for retries while the provider is down.
    pub min_refetch: Duration,
}

impl Default for JwksOptions {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(600),
            stale_if_error: Duration::from_secs(24 * 3600),
            min_refetch: Duration::from_secs(5),
        }
    }
}

/// The provider's key set, fetched lazily, refreshed by one request at a time (the others use
/// what is cached, or wait for that one fetch), and kept when a refresh fails.
#[derive(Debug)]
struct JwksCache {
    url: String,
    client: reqwest::Client,
    options: JwksOptions,
    keys: RwLock<Option<Fetched>>,
    /// Held while fetching; remembers when the last fetch started.
    fetching: Mutex<Option<Instant>>,
}

#[derive(Debug, Clone)]
struct Fetched {
    set: Arc<JwkSet>,
    at: Instant,
}

impl JwksCache {
    fn new(url: String, options: JwksOptions) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a reqwest client with static settings builds");
        Self {
            url,
            client,
            options,
            keys: RwLock::new(None),
            fetching: Mutex::new(None),
        }
    }

    async fn key_for(&self, kid: Option<&str>) -> Result<DecodingKey, AuthError> {
        let cached = self.keys.read().await.clone();
        if let Some(fetched) = &cached
            && let Some(key) = find_key(&fetched.set, kid)
        {
            let age = fetched.at.elapsed();
            if age < self.options.max_age {
                return key;
            }
            // Stale but usable: someone else refreshing is no reason to wait.
            if age < self.options.stale_if_error && self.fetching.try_lock().is_err() {
                return key;
            }
        }
        let set = self.refresh(cached.map(|f| f.at)).await?;
        find_key(&set, kid).unwrap_or(Err(AuthError::Invalid))
    }

    /// One fetch at a time, at most one per `min_refetch`; when it cannot fetch, the cached set
    /// while it is within `stale_if_error`.
    async fn refresh(&self, seen: Option<Instant>) -> Result<Arc<JwkSet>, AuthError> {
        let mut last_fetch = self.fetching.lock().await;
        let current = self.keys.read().await.clone();
        if let Some(fetched) = &current
            && seen.is_none_or(|seen| fetched.at > seen)
        {
            // Fetched by another request while this one waited.
            return Ok(Arc::clone(&fetched.set));
        }
        if last_fetch.is_none_or(|at| at.elapsed() >= self.options.min_refetch) {
            *last_fetch = Some(Instant::now());
            match self.fetch().await {
                Ok(set) => {
                    let set = Arc::new(set);
                    *self.keys.write().await = Some(Fetched {
                        set: Arc::clone(&set),
                        at: Instant::now(),
                    });
                    return Ok(set);
                }
                Err(error) if current.is_some() => {
                    tracing::warn!(%error, "the identity provider's key set could not be refreshed; using the cached one");
                }
                Err(error) => return Err(error),
            }
        }
        match current {
            Some(fetched) if fetched.at.elapsed() < self.options.stale_if_error => Ok(fetched.set),
            _ => Err(AuthError::KeysUnavailable),
        }
    }

    async fn fetch(&self) -> Result<JwkSet, AuthError> {
        let response = self.client.get(&self.url).send().await.map_err(|error| {
            tracing::warn!(%error, "fetching the JWKS failed");
            AuthError::KeysUnavailable
        })?;
        response
            .error_for_status()
            .map_err(|_| AuthError::KeysUnavailable)?
            .json()
            .await
            .map_err(|error| {
                tracing::warn!(%error, "the JWKS is not valid JSON");
                AuthError::KeysUnavailable
            })
    }
}

fn find_key(set: &JwkSet, kid: Option<&str>) -> Option<Result<DecodingKey, AuthError>> {
    let jwk = match kid {
        Some(kid) => set.find(kid)?,
        None if set.keys.len() == 1 => &set.keys[0],
        None => return None,
    };
    Some(DecodingKey::from_jwk(jwk).map_err(|_| AuthError::Invalid))
}

/// Signs tokens with the embedded HS256 key (`vitrine token`, tests).
#[derive(Clone)]
pub struct TokenIssuer {
    key: EncodingKey,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenIssuer(..)")
    }
}

impl TokenIssuer {
    pub fn hs256(key: &[u8]) -> anyhow::Result<Self> {
        Ok(Self {
            key: EncodingKey::from_secret(key)?,
        })
    }

    pub fn issue(
        &self,
        subject: &str,
        roles: &[Role],
        customer_id: Option<Uuid>,
        ttl: Duration,
    ) -> anyhow::Result<String> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: subject.to_owned(),
            roles: roles.iter().map(|r| r.as_str().to_owned()).collect(),
            customer_id: customer_id.map(|id| id.to_string()),
            exp: now + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2),
            iat: Some(now),
            iss: None,
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.key,
        )?)
    }
}

/// File name of the embedded signing key inside the data directory.
pub const HS256_KEY_FILE: &str = "jwt-hs256.key";

/// Loads the embedded HS256 key from `data_dir`, creating it (mode 0600) on first run.
pub fn load_or_create_hs256_key(data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    crate::keyfile::load_or_create(&data_dir.join(HS256_KEY_FILE), 32)
}

/// The data directory's HS256 key, if a server has created one there: a token signed with a key
/// made up on the spot would be refused by every server.
pub fn load_hs256_key(data_dir: &Path) -> anyhow::Result<Option<Vec<u8>>> {
    let path = data_dir.join(HS256_KEY_FILE);
    if !path.exists() {
        return Ok(None);
    }
    crate::keyfile::load_or_create(&path, 32).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer_and_auth() -> (TokenIssuer, Authenticator) {
        let key = b"0123456789abcdef0123456789abcdef";
        (
            TokenIssuer::hs256(key).unwrap(),
            Authenticator::hs256(key).unwrap(),
        )
    }

    #[tokio::test]
    async fn issued_tokens_verify() {
        let (issuer, auth) = issuer_and_auth();
        let id = Uuid::now_v7();
        let token = issuer
            .issue(
                "alice",
                &[Role::Customer],
                Some(id),
                Duration::from_secs(60),
            )
            .unwrap();
        let principal = auth.verify(&token).await.unwrap();
        assert_eq!(principal.subject, "alice");
        assert!(principal.owns_or_admin(id));
        assert!(!principal.owns_or_admin(Uuid::now_v7()));
        assert!(principal.require_any(&[Role::Admin]).is_err());
    }

    #[tokio::test]
    async fn customer_without_customer_id_is_rejected() {
        let (issuer, auth) = issuer_and_auth();
        let token = issuer
            .issue("bob", &[Role::Customer], None, Duration::from_secs(60))
            .unwrap();
        assert!(matches!(auth.verify(&token).await, Err(AuthError::Invalid)));
    }

    #[tokio::test]
    async fn wrong_key_and_expired_tokens_are_rejected() {
        let (issuer, _) = issuer_and_auth();
        let other = Authenticator::hs256(b"another-key-another-key-another!").unwrap();
        let token = issuer
            .issue("a", &[Role::Admin], None, Duration::from_secs(60))
            .unwrap();
        assert!(other.verify(&token).await.is_err());

        let (_, auth) = issuer_and_auth();
        let claims = Claims {
            sub: "a".into(),
            roles: vec!["admin".into()],
            customer_id: None,
            exp: chrono::Utc::now().timestamp() - 3600,
            iat: None,
            iss: None,
        };
        let expired = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef").unwrap(),
        )
        .unwrap();
        assert!(auth.verify(&expired).await.is_err());
    }

    #[tokio::test]
    async fn a_verified_token_is_remembered_until_its_exp_and_no_longer() {
        let (issuer, auth) = issuer_and_auth();
        let token = issuer
            .issue("a", &[Role::Admin], None, Duration::from_secs(2))
            .unwrap();
        let principal = auth.verify(&token).await.unwrap();
        assert_eq!(
            auth.verified.get(token.as_str()).map(|(p, _)| p),
            Some(principal.clone())
        );
        // The same text with its signature altered is not the remembered token.
        let at = token.len() - 10;
        let flipped = if &token[at..=at] == "A" { "B" } else { "A" };
        let forged = format!("{}{flipped}{}", &token[..at], &token[at + 1..]);
        assert!(auth.verify(&forged).await.is_err());
        // Past `exp` the token is verified again (and, within the leeway, accepted again), never
        // answered from memory.
        tokio::time::sleep(Duration::from_millis(2100)).await;
        assert!(auth.verified.get(token.as_str()).is_none());
        assert_eq!(auth.verify(&token).await.unwrap(), principal);
        assert!(
            auth.verified.get(token.as_str()).is_none(),
            "an expired token is not remembered"
        );
    }

    #[tokio::test]
    async fn none_algorithm_is_rejected() {
        let (_, auth) = issuer_and_auth();
        // {"alg":"none"} . {"sub":"a","roles":["admin"],"exp":9999999999} . (no signature)
        let token =
            "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIiwicm9sZXMiOlsiYWRtaW4iXSwiZXhwIjo5OTk5OTk5OTk5fQ.";
        assert!(auth.verify(token).await.is_err());
    }
}
