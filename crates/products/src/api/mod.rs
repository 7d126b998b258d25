//! The HTTP API of products (API.md): DTOs, their mapping to the domain, and handlers.
//! Entities never cross this boundary; every response is built from a DTO.
//!
//! Writes answer with `Consistency-Token`; reads accept it back and then never show data older
//! than that write (the store routes them to the primary or waits for the replica).

pub mod batches;
pub mod imports;
pub mod products;
pub mod reservations;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue};
use utoipa::OpenApi;
use utoipa::openapi::OpenApi as OpenApiDoc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use vitrine_platform::http::{ApiError, Authenticates, Authenticator, FieldError, Problem, Shared};

use crate::batches::Batches;
use crate::domain::{ReservationStatus, Shortage};
use crate::endpoints::WebhookEndpoints;
use crate::imports::Imports;
use crate::service::{Catalog, ServiceError};
use crate::store::{ConsistencyToken, Freshness};

/// The header carrying a write's position, sent back on reads for read-your-writes.
pub static CONSISTENCY_TOKEN: HeaderName = HeaderName::from_static("consistency-token");

/// What every handler can reach.
pub type AppState = Shared<Handles>;

/// The services behind [`AppState`].
#[derive(Debug)]
pub struct Handles {
    pub catalog: Catalog,
    pub endpoints: WebhookEndpoints,
    pub batches: Batches,
    pub imports: Imports,
    pub authenticator: Arc<Authenticator>,
}

impl Authenticates for Handles {
    fn authenticator(&self) -> &Arc<Authenticator> {
        &self.authenticator
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Vitrine API",
        version = "1.0.0",
        license(name = "Proprietary"),
        description = "B2B commerce backend: products, stock and reservations. Errors are RFC 9457 \
                       problem+json. Writes return `Consistency-Token`; send it back on reads to \
                       see your own writes."
    ),
    components(schemas(Problem, FieldError)),
    tags(
        (name = "products", description = "The catalog: products listed by sellers, with their stock"),
        (name = "stock", description = "The stock ledger of a product"),
        (name = "reservations", description = "Stock held for a while, all items or none; committed, released or expired"),
        (name = "webhooks", description = "Endpoints that receive signed deliveries (Standard Webhooks), their attempts, resend and recover"),
        (name = "batches", description = "Exports and stock snapshots computed in the background and delivered by webhook (`batch.completed`)"),
        (name = "imports", description = "Bulk product imports (NDJSON), acknowledged at once and consumed from a queue"),
    )
)]
struct ApiDoc;

/// The service's routes, split by how they take their bodies.
#[derive(Debug)]
pub struct Routers {
    /// Routes whose bodies are small JSON documents: the idempotency layer may buffer them.
    pub buffered: Router,
    /// Routes that stream their bodies (imports), outside the idempotency layer.
    pub streamed: Router,
}

/// The service's routes and their OpenAPI description.
pub fn router(state: AppState) -> (Routers, OpenApiDoc) {
    let (buffered, mut openapi) = routes().with_state(state.clone()).split_for_parts();
    let (streamed, streamed_openapi) = streamed_routes().with_state(state).split_for_parts();
    openapi.merge(streamed_openapi);
    vitrine_platform::http::openapi::conventions(&mut openapi);
    (Routers { buffered, streamed }, openapi)
}

/// The OpenAPI description alone, without building any state.
pub fn openapi() -> OpenApiDoc {
    let mut openapi = routes().split_for_parts().1;
    openapi.merge(streamed_routes().split_for_parts().1);
    vitrine_platform::http::openapi::conventions(&mut openapi);
    openapi
}

fn streamed_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(imports::create))
}

fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(products::create, products::list))
        .routes(routes!(products::get, products::update, products::delete))
        .routes(routes!(products::add_movement, products::list_movements))
        .routes(routes!(reservations::create))
        .routes(routes!(reservations::get))
        .routes(routes!(reservations::commit))
        .routes(routes!(reservations::release))
        .routes(routes!(webhooks::create, webhooks::list))
        .routes(routes!(webhooks::get, webhooks::update, webhooks::delete))
        .routes(routes!(webhooks::rotate_secret))
        .routes(routes!(webhooks::attempts))
        .routes(routes!(webhooks::recover))
        .routes(routes!(webhooks::resend))
        .routes(routes!(batches::create))
        .routes(routes!(batches::get))
        .routes(routes!(imports::get))
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::NotFound => ApiError::NotFound,
            ServiceError::TokenAhead => ApiError::invalid(
                "Consistency-Token",
                "is ahead of every write: send back a token a write returned",
            ),
            ServiceError::Duplicate(field) => ApiError::ConflictOn {
                detail: format!("the seller already has a product with this {field}"),
                errors: vec![FieldError::new(field, "is already taken")],
            },
            ServiceError::VersionMismatch => ApiError::PreconditionFailed,
            ServiceError::SellerRejected(why) => ApiError::invalid("seller_id", why),
            ServiceError::BuyerNotActive(standing) => ApiError::NotPermitted(format!(
                "the customer is {}: it cannot reserve or commit stock",
                standing.as_str()
            )),
            ServiceError::SellerNotActive(standing) => ApiError::Conflict(format!(
                "the seller is {}: its products cannot be active",
                standing.as_str()
            )),
            ServiceError::DirectoryUnavailable(why) => {
                tracing::warn!(reason = %why, "seller check failed");
                ApiError::Unavailable {
                    what: "the customer directory",
                    retry_after: Duration::from_secs(2),
                }
            }
            ServiceError::InsufficientStock { available } => ApiError::ConflictOn {
                detail: format!(
                    "on_hand cannot fall below what is reserved: at most {available} units can be removed"
                ),
                errors: vec![FieldError::new(
                    "delta",
                    format!("at most {available} units can be removed"),
                )],
            },
            ServiceError::StillReserved { reserved } => ApiError::Conflict(format!(
                "{reserved} units are held by pending reservations; release or commit them first"
            )),
            // Mapped to request indexes by the reservations handler, which knows them.
            ServiceError::Shortages(_) => {
                ApiError::Conflict("not enough stock for some items".to_owned())
            }
            ServiceError::Transition(status) => {
                ApiError::Conflict(format!("the reservation is {}", status.as_str()))
            }
            ServiceError::Internal(error) => ApiError::Internal(error),
        }
    }
}

/// The message for one item that cannot be held.
fn shortage_message(shortage: Shortage, requested: i64) -> String {
    match shortage {
        Shortage::Unknown => "no such product".to_owned(),
        Shortage::Inactive => "the product is inactive".to_owned(),
        Shortage::Insufficient { available } => {
            format!("{requested} requested, {available} available")
        }
    }
}

/// The freshness a read asks for through `Consistency-Token` (422 when it is not one a write
/// returned: malformed, or ahead of every write).
#[derive(Debug, Clone, Copy)]
pub struct ReadAfter(pub Freshness);

impl FromRequestParts<AppState> for ReadAfter {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(raw) = parts.headers.get(&CONSISTENCY_TOKEN) else {
            return Ok(ReadAfter(Freshness::Any));
        };
        let token = raw
            .to_str()
            .ok()
            .and_then(|raw| ConsistencyToken::decode(raw).ok())
            .ok_or_else(|| {
                ApiError::invalid("Consistency-Token", "is not a token returned by a write")
            })?;
        Ok(ReadAfter(state.catalog.read_after(token).await?))
    }
}

fn token_header(token: ConsistencyToken) -> (HeaderName, HeaderValue) {
    (
        CONSISTENCY_TOKEN.clone(),
        HeaderValue::from_str(&token.encode()).expect("hex is a valid header value"),
    )
}

/// How `ReservationStatus` is named on the wire.
fn reservation_status(status: ReservationStatus) -> &'static str {
    status.as_str()
}
