//! `/v1/reservations`: hold stock for a while, all items or none; then commit (the units leave
//! `on_hand`) or release (they return to `available`). Expiry releases automatically.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration as ChronoDuration, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;
use vitrine_platform::http::{
    ApiError, AppJson, AppPath, FieldError, Fields, Principal, Problem, Role,
};

use super::{AppState, ReadAfter, reservation_status, shortage_message, token_header};
use crate::domain::{
    BuyerId, NewReservation, ProductId, Quantity, Reservation, ReservationId, ReservationItem,
    ReservationStatus, Shortage,
};
use crate::service::{ServiceError, now};
use crate::store::{ConsistencyToken, Freshness};

/// Most items one reservation may hold.
const MAX_ITEMS: usize = 100;
const DEFAULT_TTL_SECONDS: i64 = 900;
const MAX_TTL_SECONDS: i64 = 3600;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReservationIn {
    /// 1-100 items, each product at most once.
    #[schema(min_items = 1, max_items = 100)]
    pub items: Vec<ItemIn>,
    /// 1-3600, default 900: after this the reservation expires and its units return.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 3600)]
    pub ttl_seconds: Option<i64>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemIn {
    #[schema(format = Uuid)]
    pub product_id: String,
    #[schema(example = 2, minimum = 1, maximum = 1_000_000_000)]
    pub quantity: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ItemOut {
    pub product_id: Uuid,
    pub quantity: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReservationOut {
    pub id: Uuid,
    /// `pending`, `committed`, `released` or `expired`.
    #[schema(example = "pending")]
    pub status: String,
    pub items: Vec<ItemOut>,
    /// The customer that reserved (absent when an admin reserved).
    pub customer_id: Option<Uuid>,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Reservation> for ReservationOut {
    fn from(reservation: Reservation) -> Self {
        ReservationOut {
            id: reservation.id.as_uuid(),
            status: reservation_status(reservation.status).to_owned(),
            items: reservation
                .items
                .iter()
                .map(|item| ItemOut {
                    product_id: item.product_id.as_uuid(),
                    quantity: item.quantity.get(),
                })
                .collect(),
            customer_id: reservation.buyer_id.map(|b| b.as_uuid()),
            expires_at: reservation.expires_at,
            created_at: reservation.created_at,
            updated_at: reservation.updated_at,
        }
    }
}

impl ReservationIn {
    fn into_new(self, buyer: Option<BuyerId>) -> Result<NewReservation, ApiError> {
        let mut fields = Fields::new();
        if self.items.is_empty() {
            fields.push("items", "must hold at least one item");
        }
        if self.items.len() > MAX_ITEMS {
            fields.push("items", format!("must hold at most {MAX_ITEMS} items"));
        }
        let ttl = self.ttl_seconds.unwrap_or(DEFAULT_TTL_SECONDS);
        if !(1..=MAX_TTL_SECONDS).contains(&ttl) {
            fields.push(
                "ttl_seconds",
                format!("must be between 1 and {MAX_TTL_SECONDS}"),
            );
        }
        let mut items = Vec::with_capacity(self.items.len());
        for (index, item) in self.items.iter().enumerate() {
            let product_id = fields.check(
                format!("items[{index}].product_id").as_str(),
                ProductId::parse(&item.product_id),
            );
            let quantity = fields.check(
                format!("items[{index}].quantity").as_str(),
                Quantity::parse(item.quantity),
            );
            if let (Some(product_id), Some(quantity)) = (product_id, quantity) {
                items.push(ReservationItem {
                    product_id,
                    quantity,
                });
            }
        }
        fields.finish()?;
        // Whole seconds: expiry is compared as stored text on SQLite, where a fixed format
        // keeps the comparison exact.
        let expires_at = now().trunc_subsecs(0) + ChronoDuration::seconds(ttl);
        NewReservation::new(buyer, items, expires_at).map_err(|index| {
            ApiError::invalid(
                format!("items[{index}].product_id"),
                "repeats an earlier item; send each product once",
            )
        })
    }
}

/// Parses a reservation id from the path; anything that is not one is simply not found.
fn reservation_id(raw: &str) -> Result<ReservationId, ApiError> {
    ReservationId::parse(raw).map_err(|_| ApiError::NotFound)
}

/// Admins reach every reservation, a customer only its own (others are 404).
fn authorize_owner(principal: &Principal, reservation: &Reservation) -> Result<(), ApiError> {
    if principal.has(Role::Admin) {
        return Ok(());
    }
    let owner = reservation.buyer_id.map(|b| b.as_uuid());
    if principal.has(Role::Customer) {
        if owner.is_some() && owner == principal.customer_id {
            return Ok(());
        }
        return Err(ApiError::NotFound);
    }
    Err(ApiError::Forbidden)
}

fn reservation_response(
    status: StatusCode,
    reservation: Reservation,
    token: Option<ConsistencyToken>,
) -> Response {
    let location = format!("/v1/reservations/{}", reservation.id);
    let mut response = (status, AppJson(ReservationOut::from(reservation))).into_response();
    let headers = response.headers_mut();
    if let Some(token) = token {
        let (name, value) = token_header(token);
        headers.insert(name, value);
    }
    if status == StatusCode::CREATED
        && let Ok(value) = location.parse()
    {
        headers.insert(header::LOCATION, value);
    }
    response
}

/// Reserve stock: every item or none.
#[utoipa::path(
    post, path = "/v1/reservations", tag = "reservations",
    operation_id = "reservations_create",
    request_body = ReservationIn,
    responses(
        (status = 201, body = ReservationOut, headers(("Location" = String), ("Consistency-Token" = String))),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a customer or admin token, or the customer is suspended or closed", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not enough stock, or a product is inactive: `errors` names each such item (`items[i].product_id`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid input, or a product that does not exist: `errors` names each field (`items[i].product_id`: no such product)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    AppJson(input): AppJson<ReservationIn>,
) -> Result<Response, ApiError> {
    principal.require_any(&[Role::Admin, Role::Customer])?;
    let buyer = if principal.has(Role::Admin) {
        None
    } else {
        principal.customer_id.map(BuyerId::from_uuid)
    };
    let requested: Vec<(ProductId, i64)> = input
        .items
        .iter()
        .map(|item| {
            (
                ProductId::parse(&item.product_id).unwrap_or_default(),
                item.quantity,
            )
        })
        .collect();
    let new = input.into_new(buyer)?;
    match state.catalog.reserve(&new).await {
        Ok(written) => {
            tracing::info!(reservation_id = %written.value.id, "stock reserved");
            Ok(reservation_response(
                StatusCode::CREATED,
                written.value,
                Some(written.token),
            ))
        }
        Err(ServiceError::Shortages(shortages)) => {
            // A product that does not exist is a mistake in the request (422); stock that is
            // short or a product that is inactive is the catalogue's state (409).
            let unknown = shortages
                .iter()
                .any(|(_, shortage)| matches!(shortage, Shortage::Unknown));
            let errors = shortages
                .into_iter()
                .filter(|(_, shortage)| !unknown || matches!(shortage, Shortage::Unknown))
                .filter_map(|(product, shortage)| {
                    let index = requested.iter().position(|(id, _)| *id == product)?;
                    Some(FieldError::new(
                        format!("items[{index}].product_id"),
                        shortage_message(shortage, requested[index].1),
                    ))
                })
                .collect();
            if unknown {
                return Err(ApiError::Validation(errors));
            }
            Err(ApiError::ConflictOn {
                detail: "not enough stock: nothing was reserved".to_owned(),
                errors,
            })
        }
        Err(error) => Err(error.into()),
    }
}

/// Read a reservation (admin or the customer that made it).
#[utoipa::path(
    get, path = "/v1/reservations/{id}", tag = "reservations",
    operation_id = "reservations_get",
    params(("id" = Uuid, Path), ("Consistency-Token" = Option<String>, Header)),
    responses(
        (status = 200, body = ReservationOut),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A Consistency-Token no write returned (malformed, or ahead of every write)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    ReadAfter(freshness): ReadAfter,
    AppPath(id): AppPath<String>,
) -> Result<Response, ApiError> {
    let reservation = state
        .catalog
        .reservation(reservation_id(&id)?, freshness)
        .await?;
    authorize_owner(&principal, &reservation)?;
    Ok(reservation_response(StatusCode::OK, reservation, None))
}

async fn finish(
    state: &AppState,
    principal: &Principal,
    id: &str,
    target: ReservationStatus,
) -> Result<Response, ApiError> {
    let id = reservation_id(id)?;
    let current = state.catalog.reservation(id, Freshness::Primary).await?;
    authorize_owner(principal, &current)?;
    let written = state
        .catalog
        .finish(id, target, Some(&principal.subject))
        .await?;
    Ok(reservation_response(
        StatusCode::OK,
        written.value,
        Some(written.token),
    ))
}

/// Commit a pending reservation: its units leave `on_hand` (a `sale` in the ledger).
/// Committing again answers the committed reservation; any other state is 409.
#[utoipa::path(
    post, path = "/v1/reservations/{id}/commit", tag = "reservations",
    operation_id = "reservations_commit",
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = ReservationOut, headers(("Consistency-Token" = String))),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not the buyer or an admin, or the buyer's customer is suspended or closed", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Released or expired", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn commit(
    State(state): State<AppState>,
    principal: Principal,
    AppPath(id): AppPath<String>,
) -> Result<Response, ApiError> {
    finish(&state, &principal, &id, ReservationStatus::Committed).await
}

/// Release a pending reservation: its units return to `available`. Releasing again answers the
/// released reservation; any other state is 409.
#[utoipa::path(
    post, path = "/v1/reservations/{id}/release", tag = "reservations",
    operation_id = "reservations_release",
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = ReservationOut, headers(("Consistency-Token" = String))),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Committed or expired", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn release(
    State(state): State<AppState>,
    principal: Principal,
    AppPath(id): AppPath<String>,
) -> Result<Response, ApiError> {
    finish(&state, &principal, &id, ReservationStatus::Released).await
}
