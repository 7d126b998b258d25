//! The typed test client: every call names the status it expects, and a wrong one fails the
//! test with the request and the whole answer (a problem's `detail` is usually the diagnosis).
//!
//! `Api` talks to one base URL (an in-process server, or a spawned binary); `Call` is one
//! request, sent by awaiting it; `Reply` is the buffered answer, read synchronously.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A client for one server.
#[derive(Clone)]
pub struct Api {
    base: String,
    client: reqwest::Client,
}

impl Api {
    /// A client for the server at `base` (`http://127.0.0.1:port`), with a 30 s timeout.
    pub fn new(base: impl Into<String>) -> Self {
        Self::build(base, reqwest::Client::builder())
    }

    /// A client that opens a connection per request: for a process the test restarts on the
    /// same port, where a connection kept from before the restart would fail the first call
    /// after it.
    pub fn unpooled(base: impl Into<String>) -> Self {
        Self::build(base, reqwest::Client::builder().pool_max_idle_per_host(0))
    }

    fn build(base: impl Into<String>, client: reqwest::ClientBuilder) -> Self {
        Api {
            base: base.into(),
            client: client.timeout(Duration::from_secs(30)).build().unwrap(),
        }
    }

    /// `method path`, without credentials.
    pub fn call(&self, method: Method, path: &str) -> Call {
        Call {
            what: format!("{method} {path}"),
            request: self.client.request(method, format!("{}{path}", self.base)),
        }
    }
}

/// One request; `.await` sends it.
#[must_use = "a call is sent only when awaited"]
pub struct Call {
    request: RequestBuilder,
    /// `METHOD path`, for failure messages.
    what: String,
}

impl Call {
    pub fn bearer(mut self, token: impl AsRef<str>) -> Self {
        self.request = self.request.bearer_auth(token.as_ref());
        self
    }

    pub fn header(mut self, name: &str, value: impl AsRef<str>) -> Self {
        self.request = self.request.header(name, value.as_ref());
        self
    }

    pub fn json(mut self, body: &impl Serialize) -> Self {
        self.request = self.request.json(body);
        self
    }

    /// A raw body; the caller sets its content type.
    pub fn body(mut self, body: impl Into<reqwest::Body>) -> Self {
        self.request = self.request.body(body);
        self
    }

    /// Sends it; `Err` when no answer came (refused, reset, timed out), for tests that poll a
    /// server which may not be up.
    pub async fn try_send(self) -> Result<Reply, reqwest::Error> {
        let response = self.request.send().await?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await?.to_vec();
        Ok(Reply {
            what: self.what,
            status,
            headers,
            body,
        })
    }
}

impl IntoFuture for Call {
    type Output = Reply;
    type IntoFuture = Pin<Box<dyn Future<Output = Reply> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let what = self.what.clone();
            match self.try_send().await {
                Ok(reply) => reply,
                Err(error) => panic!("{what}: no answer: {error}"),
            }
        })
    }
}

/// A whole answer.
pub struct Reply {
    what: String,
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} answered {}: {}", self.what, self.status, self.text())
    }
}

impl Reply {
    /// Fails the test unless the answer has `status`; keeps the reply for reading.
    #[track_caller]
    pub fn expect(self, status: StatusCode) -> Self {
        assert_eq!(self.status, status, "{self:?}");
        self
    }

    /// Fails unless the answer is a problem+json with `status`; the `errors[].field` it names.
    #[track_caller]
    pub fn problem(self, status: StatusCode) -> Vec<String> {
        let reply = self.expect(status);
        assert_eq!(
            reply.header("content-type"),
            "application/problem+json",
            "{reply:?}"
        );
        let body: Value = reply.json();
        assert_eq!(body["status"], status.as_u16(), "{reply:?}");
        body["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .map(|e| e["field"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// A header that must be there, as text.
    #[track_caller]
    pub fn header(&self, name: &str) -> &str {
        match self.headers.get(name).map(|value| value.to_str()) {
            Some(Ok(value)) => value,
            _ => panic!("no {name} header (or not text): {self:?}"),
        }
    }

    /// The body as `T` (`Value` for free-form checks).
    #[track_caller]
    pub fn json<T: DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|error| panic!("not the JSON expected ({error}): {self:?}"))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn bytes(&self) -> &[u8] {
        &self.body
    }
}
