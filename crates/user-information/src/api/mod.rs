//! The HTTP API of user-information (API.md): DTOs, their mapping to the domain, and handlers.
//! Entities never cross this boundary; every response is built from a DTO.

pub mod customers;
pub mod payment_methods;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use utoipa::OpenApi;
use utoipa::openapi::OpenApi as OpenApiDoc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use vitrine_platform::http::{
    ApiError, Authenticates, Authenticator, FieldError, Principal, Problem, Role, Shared,
};

use crate::domain::{CustomerId, CustomerStatus};
use crate::service::{Customers, ServiceError};

/// What every handler can reach.
pub type AppState = Shared<Handles>;

/// The services behind [`AppState`].
#[derive(Debug)]
pub struct Handles {
    pub customers: Customers,
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
        description = "B2B commerce backend: business customers (CNPJ) with payment methods kept in a \
                       secret store. Errors are RFC 9457 problem+json."
    ),
    components(schemas(Problem, FieldError)),
    tags(
        (name = "customers", description = "Business customers, identified by CNPJ"),
        (name = "payment-methods", description = "Cards and PIX keys; only masked views are returned, except to `payments`"),
        (name = "internal", description = "Service-to-service endpoints; not routed by the public gateway"),
    )
)]
struct ApiDoc;

/// The service's routes and their OpenAPI description.
pub fn router(state: AppState) -> (Router, OpenApiDoc) {
    let (router, mut openapi) = routes().with_state(state).split_for_parts();
    vitrine_platform::http::openapi::conventions(&mut openapi);
    (router, openapi)
}

/// The OpenAPI description alone, without building any state.
pub fn openapi() -> OpenApiDoc {
    let mut openapi = routes().split_for_parts().1;
    vitrine_platform::http::openapi::conventions(&mut openapi);
    openapi
}

fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(customers::create, customers::list))
        .routes(routes!(customers::get, customers::update, customers::close))
        .routes(routes!(payment_methods::add, payment_methods::list))
        .routes(routes!(payment_methods::remove))
        .routes(routes!(payment_methods::reveal))
        .routes(routes!(payment_methods::secret_accesses))
        .routes(routes!(customers::lookup))
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::NotFound => ApiError::NotFound,
            ServiceError::Duplicate(field) => ApiError::Conflict(format!(
                "a customer with this {field} is already registered"
            )),
            ServiceError::CnpjRegistered {
                existing,
                status: CustomerStatus::Closed,
            } => ApiError::Conflict(format!(
                "this CNPJ belongs to customer {existing}, which is closed; a closed customer \
                 keeps its CNPJ, so it cannot be registered again"
            )),
            ServiceError::CnpjRegistered { existing, .. } => ApiError::Conflict(format!(
                "a customer with this CNPJ is already registered: {existing}"
            )),
            ServiceError::VersionMismatch => ApiError::PreconditionFailed,
            ServiceError::Closed => ApiError::Conflict("the customer is closed".to_owned()),
            ServiceError::SecretsUnavailable(_) => ApiError::Unavailable {
                what: "the secret store",
                retry_after: Duration::from_secs(5),
            },
            ServiceError::Internal(error) => ApiError::Internal(error),
        }
    }
}

/// Parses a customer id from the path; anything that is not one is simply not found.
fn customer_id(raw: &str) -> Result<CustomerId, ApiError> {
    CustomerId::parse(raw).map_err(|_| ApiError::NotFound)
}

/// API.md: admins reach every customer, a customer only itself (others are 404, not 403, so
/// ids of other tenants are not even confirmed to exist), other roles nothing.
fn authorize_customer(principal: &Principal, id: CustomerId) -> Result<(), ApiError> {
    if principal.owns_or_admin(id.as_uuid()) {
        Ok(())
    } else if principal.has(Role::Customer) {
        Err(ApiError::NotFound)
    } else {
        Err(ApiError::Forbidden)
    }
}
