//! A service's handler state. axum clones the state for every extractor of every request; kept
//! behind one `Arc`, that is one reference count, not one per handle it holds (each count is a
//! cache line the cores contend for on a hot path).

use std::sync::Arc;

use axum::extract::FromRef;

use super::Authenticator;

#[derive(Debug)]
pub struct Shared<T>(Arc<T>);

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<T> From<T> for Shared<T> {
    fn from(handles: T) -> Self {
        Self(Arc::new(handles))
    }
}

impl<T> std::ops::Deref for Shared<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// State holding the authenticator the [`super::Principal`] extractor verifies tokens with.
pub trait Authenticates {
    fn authenticator(&self) -> &Arc<Authenticator>;
}

impl<T: Authenticates> FromRef<Shared<T>> for Arc<Authenticator> {
    fn from_ref(state: &Shared<T>) -> Self {
        Arc::clone(state.authenticator())
    }
}
