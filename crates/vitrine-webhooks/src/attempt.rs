//! One delivery attempt: the message signed and sent to one endpoint, and what the answer means
//! for the message. Only a 2xx answer delivers it. A 410 says the endpoint is gone (it gets
//! disabled); `webhook-delivery: abort-message` on a failure stops this message's retries;
//! anything else (another status, a timeout, a refused or unreachable address) is a failure
//! retried on the schedule, later if the receiver's `Retry-After` asks for it.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER, USER_AGENT};

use crate::address_policy::AddressPolicy;
use crate::secret::WebhookSecret;
use crate::signature::signature;

/// How long a receiver has to answer (Svix's figure).
pub const TIMEOUT: Duration = Duration::from_secs(15);

/// The header a receiver sets to stop the retries of a message it will never accept.
pub const ABORT_HEADER: &str = "webhook-delivery";
const ABORT_VALUE: &str = "abort-message";

/// A message on its way to one endpoint.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// The message id (`webhook-id`): the same on every attempt and every endpoint, so
    /// receivers can drop duplicates.
    pub id: &'a str,
    /// The body: `{"type","timestamp","data"}`.
    pub body: &'a [u8],
    pub url: &'a str,
}

/// What an attempt means for the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// Try again on the schedule; `retry_after` is what the receiver asked for, if anything.
    Failed {
        retry_after: Option<Duration>,
    },
    /// 410 Gone: the receiver says the endpoint no longer exists.
    Gone,
    /// The receiver asked for this message never to be sent again.
    Aborted,
}

/// An attempt as recorded: the answer's status (none when there was no answer), how long it
/// took, what went wrong, and the verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub status: Option<u16>,
    pub duration: Duration,
    pub error: Option<String>,
    pub verdict: Verdict,
}

/// Sends deliveries under an [`AddressPolicy`].
#[derive(Debug, Clone)]
pub struct Sender {
    client: reqwest::Client,
    policy: Arc<AddressPolicy>,
}

impl Sender {
    pub fn new(policy: Arc<AddressPolicy>, timeout: Duration) -> reqwest::Result<Sender> {
        Ok(Sender {
            client: policy.client(timeout)?,
            policy,
        })
    }

    /// Signs `outgoing` with each of `secrets` (two while a rotated secret is still valid),
    /// timestamped now, and sends it once.
    pub async fn send(&self, outgoing: Outgoing<'_>, secrets: &[&WebhookSecret]) -> Attempt {
        let started = Instant::now();
        let failed = |error: String, status: Option<u16>| Attempt {
            status,
            duration: started.elapsed(),
            error: Some(error),
            verdict: Verdict::Failed { retry_after: None },
        };
        let url = match self.policy.check_url(outgoing.url) {
            Ok(url) => url,
            Err(refused) => return failed(format!("destination refused: {refused}"), None),
        };
        let timestamp = unix_now();
        let response = self
            .client
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .header(
                USER_AGENT,
                concat!("Vitrine-Webhooks/", env!("CARGO_PKG_VERSION")),
            )
            .header("webhook-id", outgoing.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header(
                "webhook-signature",
                signature(secrets, outgoing.id, timestamp, outgoing.body),
            )
            .body(outgoing.body.to_vec())
            .send()
            .await;
        let response = match response {
            Ok(response) => response,
            Err(error) => return failed(describe(&error), None),
        };
        let status = response.status();
        let headers = response.headers().clone();
        drain(response).await;
        let verdict = if status.is_success() {
            Verdict::Delivered
        } else if status == reqwest::StatusCode::GONE {
            Verdict::Gone
        } else if aborted(&headers) {
            Verdict::Aborted
        } else {
            Verdict::Failed {
                retry_after: retry_after(&headers),
            }
        };
        Attempt {
            status: Some(status.as_u16()),
            duration: started.elapsed(),
            error: (!status.is_success()).then(|| format!("the receiver answered {status}")),
            verdict,
        }
    }
}

/// Reads a little of the answer (so a short one leaves the connection reusable) and drops the
/// rest: a receiver must not be able to make the dispatcher read, or hold, a large body.
async fn drain(mut response: reqwest::Response) {
    const MAX: usize = 64 * 1024;
    let mut read = 0;
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Ok(Some(chunk)) = response.chunk().await {
            read += chunk.len();
            if read > MAX {
                break;
            }
        }
    })
    .await;
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

fn aborted(headers: &HeaderMap) -> bool {
    headers
        .get(ABORT_HEADER)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim().eq_ignore_ascii_case(ABORT_VALUE))
}

/// `Retry-After` as seconds or as an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(SystemTime::now()).unwrap_or_default())
}

/// What went wrong, without the URL: a customer's URL may carry a token in its query, and
/// attempts are shown to whoever can read the endpoint.
fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "no answer in time".to_owned();
    }
    let mut text = if error.is_connect() {
        "could not connect".to_owned()
    } else {
        "the request failed".to_owned()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("120"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(120)));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(300));
        headers.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        let parsed = retry_after(&headers).unwrap();
        assert!(parsed > Duration::from_secs(290) && parsed <= Duration::from_secs(300));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }
}
