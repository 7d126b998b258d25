//! The production transport: SNS topics fanned out to SQS queues (raw delivery, filter policies
//! on the `type` message attribute), SQS redrive policies to dead-letter queues, through the
//! official AWS SDK. Every resource name carries a deployment prefix (`<prefix>-<name>`), so
//! several environments can share an account.
//!
//! Configuration is the standard AWS environment: `AWS_REGION`, `AWS_ENDPOINT_URL` (moto,
//! LocalStack), and the default credentials chain (env, profile, web identity / IRSA, IMDS).

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::error::ProvideErrorMetadata;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use tokio::sync::RwLock;

use super::{
    Delivery, Provisioned, Publisher, QueueDepth, Topology, Transport, TransportError,
    dead_letter_queue,
};
use crate::envelope::Envelope;

/// SQS's limits: at most 10 messages and 20 s of long polling per receive, 12 h of visibility.
/// SNS `PublishBatch` and SQS `SendMessageBatch` take at most 10 entries as well.
const MAX_BATCH: usize = 10;
/// The payload limit of one `PublishBatch` (SNS: 256 KiB for all entries together; SQS allows
/// more, the lower bound serves both).
const MAX_BATCH_BYTES: usize = 256 * 1024;
/// Batch calls in flight at once for one `publish_batch`/`send_batch`.
const BATCH_CONCURRENCY: usize = 16;
/// Batch calls in flight at once from this process, whoever makes them: a slow broker gets a
/// bounded queue of requests from us instead of one that grows with every retry.
const MAX_IN_FLIGHT: usize = 32;
const MAX_WAIT: Duration = Duration::from_secs(20);
const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);
/// The message attribute SNS filter policies match on.
const TYPE_ATTRIBUTE: &str = "type";
/// Queue tag holding the expiry (Unix ms) of a temporary queue.
const EXPIRES_TAG: &str = "vitrine-expires-at";

#[derive(Debug)]
pub struct SqsTransport {
    sqs: aws_sdk_sqs::Client,
    sns: aws_sdk_sns::Client,
    prefix: String,
    queue_urls: RwLock<HashMap<String, String>>,
    topic_arns: RwLock<HashMap<String, String>>,
    in_flight: tokio::sync::Semaphore,
}

fn unavailable(error: impl std::error::Error + Send + Sync + 'static) -> TransportError {
    TransportError::Unavailable(anyhow::Error::new(error))
}

fn is_missing_queue<E: ProvideErrorMetadata>(error: &E) -> bool {
    error
        .code()
        .is_some_and(|code| code.contains("NonExistentQueue") || code.contains("QueueDoesNotExist"))
}

/// A queue call's error: the queue does not exist (`Unknown`), or SQS is unavailable.
fn queue_error<E>(queue: &str, error: E) -> TransportError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if is_missing_queue(&error) {
        TransportError::Unknown(queue.to_owned())
    } else {
        unavailable(error)
    }
}

fn seconds(duration: Duration, max: Duration) -> i32 {
    i32::try_from(duration.min(max).as_secs()).unwrap_or(i32::MAX)
}

impl SqsTransport {
    /// Connects with the standard AWS configuration of the environment.
    pub async fn from_env(prefix: &str) -> Self {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Self::new(&config, prefix)
    }

    pub fn new(config: &aws_config::SdkConfig, prefix: &str) -> Self {
        Self {
            sqs: aws_sdk_sqs::Client::new(config),
            sns: aws_sdk_sns::Client::new(config),
            prefix: prefix.to_owned(),
            queue_urls: RwLock::default(),
            topic_arns: RwLock::default(),
            in_flight: tokio::sync::Semaphore::new(MAX_IN_FLIGHT),
        }
    }

    /// The environment prefix of every name this transport uses.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Sends `envelopes` in batch calls made by `call` (given each entry's id, envelope and
    /// body), at most [`BATCH_CONCURRENCY`] at once and [`MAX_IN_FLIGHT`] from this process;
    /// one result per envelope, in order.
    async fn in_batches<'a, F, Fut>(
        &self,
        envelopes: &'a [&'a Envelope],
        call: F,
    ) -> Vec<Result<(), TransportError>>
    where
        F: Fn(Vec<(String, &'a Envelope, String)>) -> Fut,
        Fut: std::future::Future<Output = BatchCall>,
    {
        use futures::StreamExt;
        let bodies: Vec<String> = envelopes.iter().map(|e| e.to_json()).collect();
        let ranges = batches(&bodies, envelopes);
        let mut bodies = bodies.into_iter();
        let calls: Vec<_> = ranges
            .into_iter()
            .map(|range| {
                let entries: Vec<_> = envelopes[range.clone()]
                    .iter()
                    .zip(bodies.by_ref())
                    .enumerate()
                    .map(|(i, (envelope, body))| (i.to_string(), *envelope, body))
                    .collect();
                let count = entries.len();
                let call = &call;
                async move {
                    let outcome = match self.in_flight.acquire().await {
                        Ok(_permit) => call(entries).await,
                        Err(_) => Err(TransportError::Unavailable(anyhow::anyhow!(
                            "transport closed"
                        ))),
                    };
                    batch_results(count, outcome)
                }
            })
            .collect();
        futures::stream::iter(calls)
            .buffered(BATCH_CONCURRENCY)
            .flat_map(futures::stream::iter)
            .collect()
            .await
    }

    fn full_name(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    async fn queue_url(&self, queue: &str) -> Result<String, TransportError> {
        if let Some(url) = self.queue_urls.read().await.get(queue) {
            return Ok(url.clone());
        }
        let output = self
            .sqs
            .get_queue_url()
            .queue_name(self.full_name(queue))
            .send()
            .await
            .map_err(|error| queue_error(queue, error))?;
        let url = output
            .queue_url()
            .ok_or_else(|| TransportError::Unknown(queue.to_owned()))?
            .to_owned();
        self.queue_urls
            .write()
            .await
            .insert(queue.to_owned(), url.clone());
        Ok(url)
    }

    async fn queue_arn(&self, url: &str) -> Result<String, TransportError> {
        let output = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(unavailable)?;
        output
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn))
            .cloned()
            .ok_or_else(|| TransportError::Unavailable(anyhow::anyhow!("queue {url} has no ARN")))
    }

    /// The subscription of `queue_arn` to `topic_arn`, if there is one.
    async fn subscription(
        &self,
        topic_arn: &str,
        queue_arn: &str,
    ) -> Result<Option<String>, TransportError> {
        let mut token = None;
        loop {
            let page = self
                .sns
                .list_subscriptions_by_topic()
                .topic_arn(topic_arn)
                .set_next_token(token)
                .send()
                .await
                .map_err(unavailable)?;
            if let Some(found) = page
                .subscriptions()
                .iter()
                .find(|s| s.endpoint() == Some(queue_arn))
            {
                return Ok(found.subscription_arn().map(str::to_owned));
            }
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                return Ok(None);
            }
        }
    }

    /// Whether `queue` exists now (asked directly: `ListQueues` is eventually consistent).
    async fn queue_exists(&self, queue: &str) -> Result<bool, TransportError> {
        match self
            .sqs
            .get_queue_url()
            .queue_name(self.full_name(queue))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(error) => match queue_error(queue, error) {
                TransportError::Unknown(_) => Ok(false),
                other => Err(other),
            },
        }
    }

    async fn topic_arn(&self, topic: &str) -> Result<String, TransportError> {
        if let Some(arn) = self.topic_arns.read().await.get(topic) {
            return Ok(arn.clone());
        }
        let suffix = format!(":{}", self.full_name(topic));
        let mut token = None;
        loop {
            let page = self
                .sns
                .list_topics()
                .set_next_token(token)
                .send()
                .await
                .map_err(unavailable)?;
            if let Some(arn) = page
                .topics()
                .iter()
                .filter_map(|t| t.topic_arn())
                .find(|arn| arn.ends_with(&suffix))
            {
                self.topic_arns
                    .write()
                    .await
                    .insert(topic.to_owned(), arn.to_owned());
                return Ok(arn.to_owned());
            }
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                return Err(TransportError::Unknown(topic.to_owned()));
            }
        }
    }

    async fn create_queue(
        &self,
        name: &str,
        attributes: &[(QueueAttributeName, String)],
    ) -> Result<String, TransportError> {
        let mut request = self.sqs.create_queue().queue_name(self.full_name(name));
        for (key, value) in attributes {
            request = request.attributes(key.clone(), value);
        }
        let url = match request.send().await {
            Ok(output) => output.queue_url().unwrap_or_default().to_owned(),
            // Created earlier with other attributes: keep the queue, update its attributes.
            Err(error)
                if error.code() == Some("QueueAlreadyExists")
                    || error.code() == Some("QueueNameExists") =>
            {
                let url = self.queue_url(name).await?;
                let mut update = self.sqs.set_queue_attributes().queue_url(&url);
                for (key, value) in attributes {
                    update = update.attributes(key.clone(), value);
                }
                update.send().await.map_err(unavailable)?;
                url
            }
            Err(error) => return Err(unavailable(error)),
        };
        self.queue_urls
            .write()
            .await
            .insert(name.to_owned(), url.clone());
        Ok(url)
    }

    async fn move_all(&self, from: &str, to: &str) -> Result<usize, TransportError> {
        let (from_url, to_url) = (self.queue_url(from).await?, self.queue_url(to).await?);
        let mut moved = 0;
        loop {
            let output = self
                .sqs
                .receive_message()
                .queue_url(&from_url)
                .max_number_of_messages(10)
                .visibility_timeout(60)
                .wait_time_seconds(1)
                .message_attribute_names("All")
                .send()
                .await
                .map_err(unavailable)?;
            let messages = output.messages();
            if messages.is_empty() {
                return Ok(moved);
            }
            for message in messages {
                let mut send = self
                    .sqs
                    .send_message()
                    .queue_url(&to_url)
                    .message_body(message.body().unwrap_or_default());
                if let Some(attributes) = message.message_attributes() {
                    for (name, value) in attributes {
                        send = send.message_attributes(name, value.clone());
                    }
                }
                send.send().await.map_err(unavailable)?;
                if let Some(receipt) = message.receipt_handle() {
                    self.sqs
                        .delete_message()
                        .queue_url(&from_url)
                        .receipt_handle(receipt)
                        .send()
                        .await
                        .map_err(unavailable)?;
                }
                moved += 1;
            }
        }
    }
}

/// Splits `envelopes` into the index ranges of successive batch calls: at most [`MAX_BATCH`]
/// entries and [`MAX_BATCH_BYTES`] of bodies and attributes each (a single larger message gets a
/// call of its own, which the service then refuses for that message alone).
fn batches(bodies: &[String], envelopes: &[&Envelope]) -> Vec<std::ops::Range<usize>> {
    let mut ranges = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, (body, envelope)) in bodies.iter().zip(envelopes).enumerate() {
        let size = body.len() + TYPE_ATTRIBUTE.len() + "String".len() + envelope.kind.len();
        if i > start && (i - start == MAX_BATCH || bytes + size > MAX_BATCH_BYTES) {
            ranges.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < bodies.len() {
        ranges.push(start..bodies.len());
    }
    ranges
}

/// What one batch call reported: the entries that failed, as (entry id, error), or the call's
/// own error (then every entry failed).
type BatchCall = Result<Vec<(String, String)>, TransportError>;

/// One result per entry of a batch call (entry ids are the indices within the call).
fn batch_results(count: usize, call: BatchCall) -> Vec<Result<(), TransportError>> {
    match call {
        Ok(failed) => {
            let mut results: Vec<Result<(), TransportError>> = (0..count).map(|_| Ok(())).collect();
            for (id, error) in failed {
                if let Some(slot) = id.parse::<usize>().ok().and_then(|i| results.get_mut(i)) {
                    *slot = Err(TransportError::Unavailable(anyhow::anyhow!(error)));
                }
            }
            results
        }
        Err(error) => error.for_each(count),
    }
}

fn sqs_type_attribute(
    kind: &str,
) -> Result<aws_sdk_sqs::types::MessageAttributeValue, TransportError> {
    aws_sdk_sqs::types::MessageAttributeValue::builder()
        .data_type("String")
        .string_value(kind)
        .build()
        .map_err(unavailable)
}

#[async_trait]
impl Publisher for SqsTransport {
    async fn publish(&self, topic: &str, envelope: &Envelope) -> Result<(), TransportError> {
        let arn = self.topic_arn(topic).await?;
        let kind = aws_sdk_sns::types::MessageAttributeValue::builder()
            .data_type("String")
            .string_value(&envelope.kind)
            .build()
            .map_err(unavailable)?;
        self.sns
            .publish()
            .topic_arn(arn)
            .message(envelope.to_json())
            .message_attributes(TYPE_ATTRIBUTE, kind)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn send(&self, queue: &str, envelope: &Envelope) -> Result<(), TransportError> {
        let url = self.queue_url(queue).await?;
        self.sqs
            .send_message()
            .queue_url(url)
            .message_body(envelope.to_json())
            .message_attributes(TYPE_ATTRIBUTE, sqs_type_attribute(&envelope.kind)?)
            .send()
            .await
            .map_err(|error| queue_error(queue, error))?;
        Ok(())
    }

    async fn publish_batch(
        &self,
        topic: &str,
        envelopes: &[&Envelope],
    ) -> Vec<Result<(), TransportError>> {
        let arn = match self.topic_arn(topic).await {
            Ok(arn) => arn,
            Err(error) => return error.for_each(envelopes.len()),
        };
        self.in_batches(envelopes, |entries| {
            let mut request = self.sns.publish_batch().topic_arn(&arn);
            async move {
                for (id, envelope, body) in entries {
                    let kind = aws_sdk_sns::types::MessageAttributeValue::builder()
                        .data_type("String")
                        .string_value(&envelope.kind)
                        .build()
                        .map_err(unavailable)?;
                    let entry = aws_sdk_sns::types::PublishBatchRequestEntry::builder()
                        .id(id)
                        .message(body)
                        .message_attributes(TYPE_ATTRIBUTE, kind)
                        .build()
                        .map_err(unavailable)?;
                    request = request.publish_batch_request_entries(entry);
                }
                let output = request.send().await.map_err(unavailable)?;
                Ok(output
                    .failed()
                    .iter()
                    .map(|f| (f.id().to_owned(), failure(f.code(), f.message())))
                    .collect())
            }
        })
        .await
    }

    async fn send_batch(
        &self,
        queue: &str,
        envelopes: &[&Envelope],
    ) -> Vec<Result<(), TransportError>> {
        let url = match self.queue_url(queue).await {
            Ok(url) => url,
            Err(error) => return error.for_each(envelopes.len()),
        };
        self.in_batches(envelopes, |entries| {
            let mut request = self.sqs.send_message_batch().queue_url(&url);
            async move {
                for (id, envelope, body) in entries {
                    let entry = aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                        .id(id)
                        .message_body(body)
                        .message_attributes(TYPE_ATTRIBUTE, sqs_type_attribute(&envelope.kind)?)
                        .build()
                        .map_err(unavailable)?;
                    request = request.entries(entry);
                }
                let output = request
                    .send()
                    .await
                    .map_err(|error| queue_error(queue, error))?;
                Ok(output
                    .failed()
                    .iter()
                    .map(|f| (f.id().to_owned(), failure(f.code(), f.message())))
                    .collect())
            }
        })
        .await
    }
}

/// A failed batch entry's error, as SNS and SQS report it.
fn failure(code: &str, message: Option<&str>) -> String {
    format!("{code}: {}", message.unwrap_or_default())
}

#[async_trait]
impl Transport for SqsTransport {
    async fn provision(&self, topology: &Topology) -> Result<Provisioned, TransportError> {
        let mut report = Provisioned::default();
        let mut topic_arns = HashMap::new();
        for topic in topology.all_topics() {
            let existed = match self.topic_arn(&topic).await {
                Ok(_) => true,
                Err(TransportError::Unknown(_)) => false,
                Err(error) => return Err(error),
            };
            let output = self
                .sns
                .create_topic()
                .name(self.full_name(&topic))
                .send()
                .await
                .map_err(unavailable)?;
            let arn = output.topic_arn().unwrap_or_default().to_owned();
            self.topic_arns
                .write()
                .await
                .insert(topic.clone(), arn.clone());
            report.record(!existed, format!("topic {topic}"));
            topic_arns.insert(topic, arn);
        }
        for queue in &topology.queues {
            let dlq = dead_letter_queue(&queue.name);
            let dlq_existed = self.queue_exists(&dlq).await?;
            let dlq_url = self
                .create_queue(
                    &dlq,
                    &[
                        // Dead letters wait for an operator: keep them as long as SQS allows (14 days).
                        (
                            QueueAttributeName::MessageRetentionPeriod,
                            "1209600".to_owned(),
                        ),
                    ],
                )
                .await?;
            report.record(!dlq_existed, format!("dead-letter queue {dlq}"));
            let dlq_arn = self.queue_arn(&dlq_url).await?;
            let redrive = serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": queue.max_receives}).to_string();
            let existed = self.queue_exists(&queue.name).await?;
            let url = self
                .create_queue(&queue.name, &[(QueueAttributeName::RedrivePolicy, redrive)])
                .await?;
            report.record(!existed, format!("queue {}", queue.name));
            let arn = self.queue_arn(&url).await?;
            if queue.subscriptions.is_empty() {
                continue;
            }
            // Lets each subscribed topic (and only those) deliver into the queue.
            let sources: Vec<&String> = queue
                .subscriptions
                .iter()
                .filter_map(|s| topic_arns.get(&s.topic))
                .collect();
            let policy = serde_json::json!({
                "Version": "2012-10-17",
                "Statement": [{
                    "Effect": "Allow",
                    "Principal": {"Service": "sns.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": arn,
                    "Condition": {"ArnEquals": {"aws:SourceArn": sources}}
                }]
            });
            self.sqs
                .set_queue_attributes()
                .queue_url(&url)
                .attributes(QueueAttributeName::Policy, policy.to_string())
                .send()
                .await
                .map_err(unavailable)?;
            for subscription in &queue.subscriptions {
                let topic_arn = &topic_arns[&subscription.topic];
                let filter = (!subscription.event_types.is_empty()).then(|| {
                    serde_json::json!({ TYPE_ATTRIBUTE: subscription.event_types }).to_string()
                });
                let existing = self.subscription(topic_arn, &arn).await?;
                match (&existing, filter) {
                    // SNS refuses to subscribe again with other attributes: update the filter
                    // of the subscription in place. (A filter dropped from the topology is
                    // left on an existing subscription: delete it to widen it.)
                    (Some(subscription_arn), Some(filter)) => {
                        self.sns
                            .set_subscription_attributes()
                            .subscription_arn(subscription_arn)
                            .attribute_name("FilterPolicy")
                            .attribute_value(filter)
                            .send()
                            .await
                            .map_err(unavailable)?;
                    }
                    (Some(_), None) => {}
                    (None, filter) => {
                        let mut request = self
                            .sns
                            .subscribe()
                            .topic_arn(topic_arn)
                            .protocol("sqs")
                            .endpoint(&arn)
                            .attributes("RawMessageDelivery", "true")
                            .return_subscription_arn(true);
                        if let Some(filter) = filter {
                            request = request.attributes("FilterPolicy", filter);
                        }
                        request.send().await.map_err(unavailable)?;
                    }
                }
                report.record(
                    existing.is_none(),
                    format!("subscription {} -> {}", subscription.topic, queue.name),
                );
            }
        }
        Ok(report)
    }

    async fn depth(&self, queue: &str) -> Result<QueueDepth, TransportError> {
        let url = self.queue_url(queue).await?;
        let output = self
            .sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(|error| queue_error(queue, error))?;
        let count = |name: QueueAttributeName| {
            output
                .attributes()
                .and_then(|a| a.get(&name))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or_default()
        };
        Ok(QueueDepth {
            ready: count(QueueAttributeName::ApproximateNumberOfMessages),
            not_visible: count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
                + count(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
        })
    }

    async fn receive(
        &self,
        queue: &str,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Delivery>, TransportError> {
        let url = self.queue_url(queue).await?;
        let output = self
            .sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(i32::try_from(max.clamp(1, MAX_BATCH)).unwrap_or(10))
            .wait_time_seconds(seconds(wait, MAX_WAIT))
            .visibility_timeout(seconds(visibility, MAX_VISIBILITY).max(1))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|error| queue_error(queue, error))?;
        let mut deliveries = Vec::new();
        for message in output.messages() {
            let (Some(body), Some(receipt)) = (message.body(), message.receipt_handle()) else {
                continue;
            };
            let Ok(envelope) = Envelope::from_json(body) else {
                // Not ours to parse: left alone, it reaches the DLQ after max receives.
                tracing::warn!(queue, "received a message that is not a Vitrine CloudEvent");
                continue;
            };
            let receive_count = message
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .and_then(|n| n.parse().ok())
                .unwrap_or(1);
            deliveries.push(Delivery {
                envelope,
                receipt: receipt.to_owned(),
                receive_count,
            });
        }
        Ok(deliveries)
    }

    async fn ack(&self, queue: &str, delivery: &Delivery) -> Result<(), TransportError> {
        let url = self.queue_url(queue).await?;
        self.sqs
            .delete_message()
            .queue_url(url)
            .receipt_handle(&delivery.receipt)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn retry_later(
        &self,
        queue: &str,
        delivery: &Delivery,
        delay: Duration,
    ) -> Result<(), TransportError> {
        let url = self.queue_url(queue).await?;
        self.sqs
            .change_message_visibility()
            .queue_url(url)
            .receipt_handle(&delivery.receipt)
            .visibility_timeout(seconds(delay, MAX_VISIBILITY))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn dead_letters(&self, queue: &str, max: usize) -> Result<Vec<Envelope>, TransportError> {
        // SQS cannot peek: receive with a short visibility timeout, then make them visible again.
        self.queue_url(queue).await?;
        let dlq = dead_letter_queue(queue);
        let url = self.queue_url(&dlq).await?;
        let mut seen = Vec::new();
        let mut receipts = Vec::new();
        while seen.len() < max {
            let batch = self
                .receive(
                    &dlq,
                    max - seen.len(),
                    Duration::from_secs(1),
                    Duration::from_secs(30),
                )
                .await?;
            if batch.is_empty() {
                break;
            }
            for delivery in batch {
                receipts.push(delivery.receipt);
                seen.push(delivery.envelope);
            }
        }
        for receipt in receipts {
            self.sqs
                .change_message_visibility()
                .queue_url(&url)
                .receipt_handle(receipt)
                .visibility_timeout(0)
                .send()
                .await
                .map_err(unavailable)?;
        }
        seen.sort_by_key(|e| e.id);
        Ok(seen)
    }

    async fn redrive(&self, queue: &str) -> Result<usize, TransportError> {
        // moto lacks StartMessageMoveTask; receive + send + delete works everywhere.
        self.move_all(&dead_letter_queue(queue), queue).await
    }

    async fn create_temporary_queue(
        &self,
        name: &str,
        ttl: Duration,
    ) -> Result<(), TransportError> {
        let expires = chrono::Utc::now().timestamp_millis()
            + i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let output = self
            .sqs
            .create_queue()
            .queue_name(self.full_name(name))
            .tags(EXPIRES_TAG, expires.to_string())
            .send()
            .await
            .map_err(unavailable)?;
        self.queue_urls.write().await.insert(
            name.to_owned(),
            output.queue_url().unwrap_or_default().to_owned(),
        );
        Ok(())
    }

    async fn renew_queue(&self, name: &str, ttl: Duration) -> Result<(), TransportError> {
        let url = self.queue_url(name).await?;
        let expires = chrono::Utc::now().timestamp_millis()
            + i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let tagged = self
            .sqs
            .tag_queue()
            .queue_url(url)
            .tags(EXPIRES_TAG, expires.to_string())
            .send()
            .await;
        match tagged.map_err(|error| queue_error(name, error)) {
            Ok(_) => Ok(()),
            Err(error) => {
                if matches!(error, TransportError::Unknown(_)) {
                    // Deleted behind our back: the cached URL names nothing any more.
                    self.queue_urls.write().await.remove(name);
                }
                Err(error)
            }
        }
    }

    async fn delete_queue(&self, name: &str) -> Result<(), TransportError> {
        let url = match self.queue_url(name).await {
            Ok(url) => url,
            Err(TransportError::Unknown(_)) => return Ok(()),
            Err(error) => return Err(error),
        };
        match self.sqs.delete_queue().queue_url(url).send().await {
            Ok(_) => {}
            Err(error) if is_missing_queue(&error) => {}
            Err(error) => return Err(unavailable(error)),
        }
        self.queue_urls.write().await.remove(name);
        Ok(())
    }

    async fn delete_expired_queues(&self) -> Result<Vec<String>, TransportError> {
        let now = chrono::Utc::now().timestamp_millis();
        let mut deleted = Vec::new();
        for name in self.list_queues("").await? {
            let Ok(url) = self.queue_url(&name).await else {
                continue;
            };
            let tags = self
                .sqs
                .list_queue_tags()
                .queue_url(&url)
                .send()
                .await
                .map_err(unavailable)?;
            let expired = tags
                .tags()
                .and_then(|t| t.get(EXPIRES_TAG))
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|expires| expires < now);
            if expired {
                self.delete_queue(&name).await?;
                deleted.push(name);
            }
        }
        Ok(deleted)
    }

    async fn list_queues(&self, prefix: &str) -> Result<Vec<String>, TransportError> {
        let own_prefix = format!("{}-", self.prefix);
        let mut names = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .sqs
                .list_queues()
                .queue_name_prefix(format!("{own_prefix}{prefix}"))
                .max_results(1000)
                .set_next_token(token)
                .send()
                .await
                .map_err(unavailable)?;
            for url in page.queue_urls() {
                if let Some(name) = url
                    .rsplit('/')
                    .next()
                    .and_then(|n| n.strip_prefix(&own_prefix))
                {
                    names.push(name.to_owned());
                }
            }
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        names.sort();
        Ok(names)
    }
}

/// The variable `scripts/test.sh` sets to its moto server.
#[cfg(any(test, feature = "testing"))]
pub const TEST_ENDPOINT_VAR: &str = "VITRINE_TEST_SQS_ENDPOINT";

#[cfg(any(test, feature = "testing"))]
impl SqsTransport {
    /// A transport on the test SNS/SQS server with a fresh prefix; panics (failing the test)
    /// when the suite runs without that server.
    pub async fn for_tests() -> SqsTransport {
        let endpoint = std::env::var(TEST_ENDPOINT_VAR).unwrap_or_else(|_| {
            panic!("{TEST_ENDPOINT_VAR} is not set: SNS/SQS tests need the moto server that scripts/test.sh starts")
        });
        Self::for_tests_at(&endpoint).await
    }

    /// A transport on the SNS/SQS emulator at `endpoint`, with a fresh prefix.
    pub async fn for_tests_at(endpoint: &str) -> SqsTransport {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "test", "test", None, None, "tests",
            ))
            .load()
            .await;
        let run = uuid::Uuid::now_v7().simple().to_string();
        Self::new(&config, &format!("t{}", &run[run.len() - 12..]))
    }
}

/// An SNS/SQS emulator (moto) of one test's own, so that freezing or killing it disturbs no
/// other test. Killed when dropped.
#[cfg(any(test, feature = "testing"))]
#[derive(Debug)]
pub struct OwnMoto {
    child: std::process::Child,
    endpoint: String,
}

#[cfg(any(test, feature = "testing"))]
impl OwnMoto {
    /// The variables `scripts/test.sh` sets: the Python that has moto, and the project's
    /// launcher for it (`scripts/moto-server.py`).
    pub const PYTHON_VAR: &str = "VITRINE_TEST_MOTO_PYTHON";
    pub const LAUNCHER_VAR: &str = "VITRINE_TEST_MOTO_LAUNCHER";

    pub async fn start() -> OwnMoto {
        let var = |name: &str| {
            std::env::var(name)
                .unwrap_or_else(|_| panic!("{name} is not set: run the tests with scripts/test.sh"))
        };
        let (python, launcher) = (var(Self::PYTHON_VAR), var(Self::LAUNCHER_VAR));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut child = std::process::Command::new(python)
            .arg(launcher)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("moto_server is installed by scripts/test.sh");
        let endpoint = format!("http://127.0.0.1:{port}");
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return OwnMoto { child, endpoint };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("moto_server did not start");
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Stops the process where it stands (SIGSTOP): connections stay open and calls hang, as
    /// with a broker that stopped answering.
    pub fn freeze(&self) {
        assert!(self.signal("STOP"), "kill -STOP failed");
    }

    /// Resumes a frozen emulator (SIGCONT) with everything it held.
    pub fn thaw(&self) {
        assert!(self.signal("CONT"), "kill -CONT failed");
    }

    fn signal(&self, signal: &str) -> bool {
        std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .is_ok_and(|status| status.success())
    }
}

#[cfg(any(test, feature = "testing"))]
impl Drop for OwnMoto {
    fn drop(&mut self) {
        self.signal("CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
