//! `AppPath<T>`: path-parameter extraction whose failures are problem+json. Identifiers in this
//! API are opaque: a segment that cannot even be read (invalid UTF-8 after percent-decoding)
//! names nothing, so it is 404 like any other unknown id, never axum's plain-text 400.

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;

#[derive(Debug, Clone, Copy, Default)]
pub struct AppPath<T>(pub T);

impl<T, S> FromRequestParts<S> for AppPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(AppPath(value)),
            Err(rejection) => {
                tracing::debug!(%rejection, "unreadable path parameter");
                Err(ApiError::NotFound)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn unreadable_segments_are_problem_404s() {
        let app = Router::new().route(
            "/things/{id}",
            get(|AppPath(id): AppPath<String>| async move { id }),
        );
        let ok = app
            .clone()
            .oneshot(Request::get("/things/abc").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
        let bad = app
            .oneshot(Request::get("/things/%FF%FE").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(bad.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            bad.headers()["content-type"],
            "application/problem+json",
            "a problem, not axum's plain text"
        );
    }
}
