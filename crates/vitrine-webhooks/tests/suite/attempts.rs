//! Delivery attempts against a scripted receiver on loopback: what each kind of answer means,
//! and that what arrives is signed as Standard Webhooks says.

use std::sync::Arc;
use std::time::Duration;

use vitrine_webhooks::address_policy::AddressPolicy;
use vitrine_webhooks::attempt::{Outgoing, Sender, Verdict};
use vitrine_webhooks::secret::WebhookSecret;
use vitrine_webhooks::signature::verify;

use crate::common::receiver;

fn sender(timeout: Duration) -> Sender {
    Sender::new(Arc::new(AddressPolicy::embedded(vec![])), timeout).unwrap()
}

const BODY: &[u8] = br#"{"type":"batch.completed","timestamp":"2026-12-01T12:00:00Z","data":{}}"#;

#[tokio::test]
async fn a_2xx_delivers_a_signed_message() {
    let (url, receiver) = receiver(vec![(204, vec![], Duration::ZERO)]).await;
    let secret = WebhookSecret::generate();
    let attempt = sender(Duration::from_secs(5))
        .send(
            Outgoing {
                id: "msg_1",
                body: BODY,
                url: &url,
            },
            &[&secret],
        )
        .await;
    assert_eq!(attempt.verdict, Verdict::Delivered);
    assert_eq!((attempt.status, attempt.error), (Some(204), None));

    let received = receiver.received.lock().unwrap();
    let (headers, body) = &received[0];
    let header = |name: &str| headers[name].to_str().unwrap().to_owned();
    assert_eq!(header("content-type"), "application/json");
    assert_eq!(header("webhook-id"), "msg_1");
    assert_eq!(body.as_ref(), BODY);
    let now = header("webhook-timestamp").parse::<i64>().unwrap();
    assert_eq!(
        verify(
            &secret,
            "msg_1",
            &header("webhook-timestamp"),
            &header("webhook-signature"),
            body,
            now
        ),
        Ok(())
    );
}

#[tokio::test]
async fn each_kind_of_answer_has_its_verdict() {
    let date = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(600));
    let (url, _receiver) = receiver(vec![
        (500, vec![], Duration::ZERO),
        (503, vec![("retry-after", "30".to_owned())], Duration::ZERO),
        (429, vec![("retry-after", date)], Duration::ZERO),
        (410, vec![], Duration::ZERO),
        (
            422,
            vec![("webhook-delivery", "abort-message".to_owned())],
            Duration::ZERO,
        ),
        (
            302,
            vec![("location", "http://127.0.0.1:1/elsewhere".to_owned())],
            Duration::ZERO,
        ),
    ])
    .await;
    let secret = WebhookSecret::generate();
    let sender = sender(Duration::from_secs(5));
    let mut verdicts = Vec::new();
    for _ in 0..6 {
        let attempt = sender
            .send(
                Outgoing {
                    id: "msg_2",
                    body: BODY,
                    url: &url,
                },
                &[&secret],
            )
            .await;
        verdicts.push((attempt.status, attempt.verdict));
    }
    assert_eq!(
        verdicts[0],
        (Some(500), Verdict::Failed { retry_after: None })
    );
    assert_eq!(
        verdicts[1],
        (
            Some(503),
            Verdict::Failed {
                retry_after: Some(Duration::from_secs(30))
            }
        )
    );
    match &verdicts[2] {
        (
            Some(429),
            Verdict::Failed {
                retry_after: Some(after),
            },
        ) => {
            assert!(*after > Duration::from_secs(590), "{after:?}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(verdicts[3], (Some(410), Verdict::Gone));
    assert_eq!(verdicts[4], (Some(422), Verdict::Aborted));
    assert_eq!(
        verdicts[5],
        (Some(302), Verdict::Failed { retry_after: None }),
        "redirects are not followed"
    );
}

#[tokio::test]
async fn no_answer_in_time_and_refused_destinations_are_failures() {
    let (url, receiver) = receiver(vec![(200, vec![], Duration::from_secs(3))]).await;
    let secret = WebhookSecret::generate();
    let slow = sender(Duration::from_millis(300))
        .send(
            Outgoing {
                id: "msg_3",
                body: BODY,
                url: &url,
            },
            &[&secret],
        )
        .await;
    assert_eq!(slow.verdict, Verdict::Failed { retry_after: None });
    assert_eq!(slow.status, None);
    assert_eq!(slow.error.as_deref(), Some("no answer in time"));

    let production = Sender::new(
        Arc::new(AddressPolicy::production(vec![])),
        Duration::from_secs(5),
    )
    .unwrap();
    let tokened = format!(
        "{}?token=s3cr3t",
        url.replace("http://127.0.0.1", "https://localhost")
    );
    let refused = production
        .send(
            Outgoing {
                id: "msg_4",
                body: BODY,
                url: &tokened,
            },
            &[&secret],
        )
        .await;
    assert_eq!(refused.verdict, Verdict::Failed { retry_after: None });
    let error = refused.error.unwrap();
    assert!(error.contains("no public address"), "{error}");
    assert!(!error.contains("s3cr3t"), "the URL's token leaked: {error}");
    assert_eq!(
        receiver.received.lock().unwrap().len(),
        1,
        "only the slow attempt arrived"
    );
}
