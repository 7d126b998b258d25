//! The CloudEvents 1.0 envelope every Vitrine message travels in (JSON structured mode).
//!
//! Extensions: `traceparent` (W3C trace context), `correlationid` (one business flow),
//! `causationid` (the message that caused this one), and for requests `replyto` and `deadline`.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub const SPEC_VERSION: &str = "1.0";
pub const JSON: &str = "application/json";

/// One message: an event, a command, a request or a reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub specversion: String,
    /// UUIDv7: unique, and sortable by creation time.
    pub id: Uuid,
    pub source: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// The aggregate the message is about (e.g. a customer id); ordering is kept per subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub time: DateTime<Utc>,
    pub datacontenttype: String,
    pub data: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlationid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causationid: Option<String>,
    /// Requests only: the queue the reply goes to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replyto: Option<String>,
    /// Requests only: after this instant nobody waits for the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<DateTime<Utc>>,
}

impl Envelope {
    /// A new message of `kind` from `source` carrying `data`.
    pub fn new(
        source: &str,
        kind: &str,
        data: &impl Serialize,
    ) -> Result<Envelope, serde_json::Error> {
        let id = Uuid::now_v7();
        Ok(Envelope {
            specversion: SPEC_VERSION.to_owned(),
            id,
            source: source.to_owned(),
            kind: kind.to_owned(),
            subject: None,
            time: Utc::now(),
            datacontenttype: JSON.to_owned(),
            data: serde_json::to_value(data)?,
            traceparent: None,
            correlationid: Some(id.to_string()),
            causationid: None,
            replyto: None,
            deadline: None,
        })
    }

    pub fn with_subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    pub fn with_traceparent(mut self, traceparent: Option<String>) -> Self {
        self.traceparent = traceparent;
        self
    }

    /// Marks this message as caused by `cause`: same correlation, causation = its id.
    pub fn caused_by(mut self, cause: &Envelope) -> Self {
        self.correlationid = cause
            .correlationid
            .clone()
            .or_else(|| Some(cause.id.to_string()));
        self.causationid = Some(cause.id.to_string());
        if self.traceparent.is_none() {
            self.traceparent = cause.traceparent.clone();
        }
        self
    }

    /// The payload as `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_value(self.data.clone())
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an envelope always serialises")
    }

    pub fn from_json(json: &str) -> Result<Envelope, serde_json::Error> {
        let envelope: Envelope = serde_json::from_str(json)?;
        if envelope.specversion != SPEC_VERSION {
            return Err(serde::de::Error::custom(format!(
                "unsupported CloudEvents specversion {}",
                envelope.specversion
            )));
        }
        Ok(envelope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_as_structured_cloudevents() {
        let envelope = Envelope::new(
            "vitrine.test",
            "vitrine.test.thing.happened.v1",
            &serde_json::json!({"n": 1}),
        )
        .unwrap()
        .with_subject("thing-1")
        .with_traceparent(Some(
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
        ));
        let json: serde_json::Value = serde_json::from_str(&envelope.to_json()).unwrap();
        for attribute in [
            "specversion",
            "id",
            "source",
            "type",
            "subject",
            "time",
            "datacontenttype",
            "data",
            "traceparent",
            "correlationid",
        ] {
            assert!(
                json.get(attribute).is_some(),
                "{attribute} missing in {json}"
            );
        }
        assert_eq!(json["specversion"], "1.0");
        assert!(
            json.get("replyto").is_none(),
            "absent extensions are omitted"
        );
        assert_eq!(Envelope::from_json(&envelope.to_json()).unwrap(), envelope);
    }

    #[test]
    fn causation_keeps_the_correlation() {
        let first = Envelope::new("a", "t", &1).unwrap();
        let second = Envelope::new("b", "u", &2).unwrap().caused_by(&first);
        assert_eq!(second.correlationid, first.correlationid);
        assert_eq!(second.causationid, Some(first.id.to_string()));
    }

    #[test]
    fn rejects_other_spec_versions() {
        let mut envelope = Envelope::new("a", "t", &1).unwrap();
        envelope.specversion = "0.3".into();
        assert!(Envelope::from_json(&envelope.to_json()).is_err());
    }
}
