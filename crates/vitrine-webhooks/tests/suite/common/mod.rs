//! A scripted webhook receiver on loopback, for the tests that send to one.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

/// One scripted answer: status, extra headers, and how long to wait before answering.
pub type Answer = (u16, Vec<(&'static str, String)>, Duration);

#[derive(Clone, Default)]
pub struct Receiver {
    pub script: Arc<Mutex<VecDeque<Answer>>>,
    pub received: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
}

async fn hook(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> Response {
    receiver.received.lock().unwrap().push((headers, body));
    let (status, extra, delay) =
        receiver
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or((200, vec![], Duration::ZERO));
    tokio::time::sleep(delay).await;
    let mut response = StatusCode::from_u16(status).unwrap().into_response();
    for (name, value) in extra {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

pub async fn receiver(script: Vec<Answer>) -> (String, Receiver) {
    let receiver = Receiver::default();
    receiver.script.lock().unwrap().extend(script);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://127.0.0.1:{}/hook",
        listener.local_addr().unwrap().port()
    );
    let app = Router::new()
        .route("/hook", post(hook))
        .with_state(receiver.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, receiver)
}
