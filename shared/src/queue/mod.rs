//! The jobs queue: ingest and `cio-sync` put [`JobMessage`]s on it; the worker takes them
//! off. The message is the one contract between them. It carries the normalized event and
//! the rule *name*, not a rendered request, so a message replayed from the DLQ runs against
//! the rules as they are then (after a fix).

mod file;
mod memory;
mod sqs;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use file::{FileQueue, dead_letters};
pub use memory::{Delivery, MemoryQueue, QueuePersist, StoredMessage};

pub use sqs::SqsQueue;

use crate::cio_sync::{CampaignAnalysis, ClusterPersona};
use crate::domain::{Event, JobKey, RuleName};

/// SQS refuses bodies over 256 KiB; checked before a job is claimed, so an oversized event
/// is refused up front instead of failing after the claim.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// The current message format.
pub const MESSAGE_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobMessage {
    pub v: u32,
    pub key: JobKey,
    pub rule: RuleName,
    pub job: Job,
}

/// What the worker is asked to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Job {
    /// Run `rule`'s action for a webhook event.
    Event { event: Event },
    /// `cio-sync` job 1: ask Mave what the winning campaigns share, then Generate for new
    /// variations (`rule` is `campaign-strategy`).
    CampaignAnalysis(CampaignAnalysis),
    /// `cio-sync` job 2: create the persona of one attribute cluster (`rule` is
    /// `attribute-personas`).
    ClusterPersona(ClusterPersona),
}

impl JobMessage {
    pub fn for_event(key: JobKey, rule: RuleName, event: Event) -> Self {
        JobMessage { v: MESSAGE_VERSION, key, rule, job: Job::Event { event } }
    }

    /// The SQS body, refusing what SQS would refuse.
    pub fn to_body(&self) -> Result<String, QueueError> {
        checked(serde_json::to_string(self))
    }

    /// The body of an event job, encoded from borrowed parts (no copy of the event).
    pub fn event_body(key: &JobKey, rule: &RuleName, event: &Event) -> Result<String, QueueError> {
        #[derive(Serialize)]
        struct EventJob<'a> {
            v: u32,
            key: &'a JobKey,
            rule: &'a RuleName,
            job: EventPart<'a>,
        }
        #[derive(Serialize)]
        #[serde(tag = "kind", rename = "event")]
        struct EventPart<'a> {
            event: &'a Event,
        }
        checked(serde_json::to_string(&EventJob { v: MESSAGE_VERSION, key, rule, job: EventPart { event } }))
    }

    pub fn from_body(body: &str) -> Result<Self, QueueError> {
        let message: JobMessage = serde_json::from_str(body).map_err(QueueError::Decode)?;
        if message.v != MESSAGE_VERSION {
            return Err(QueueError::Version(message.v));
        }
        Ok(message)
    }
}

fn checked(body: serde_json::Result<String>) -> Result<String, QueueError> {
    let body = body.map_err(QueueError::Encode)?;
    if body.len() > MAX_MESSAGE_BYTES {
        return Err(QueueError::TooLarge { bytes: body.len() });
    }
    Ok(body)
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("the job could not be put on the queue: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the job is {bytes} bytes as a queue message; the queue takes at most {MAX_MESSAGE_BYTES}")]
    TooLarge { bytes: usize },
    #[error("the job could not be encoded: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("the queue message is not a job this version understands: {0}")]
    Decode(#[source] serde_json::Error),
    #[error("the queue message has format version {0}; this worker reads version {MESSAGE_VERSION}")]
    Version(u32),
}

impl QueueError {
    pub fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        QueueError::Unavailable(Box::new(e))
    }
}

#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Sends one message body (from [`JobMessage::to_body`]).
    async fn send(&self, body: String) -> Result<(), QueueError>;
}

/// The receiving side of an in-process queue (SQS's side is the Lambda event source).
#[async_trait]
pub trait Consumer: Send + Sync {
    /// Waits up to `wait` for messages; each is hidden until acked, nacked or timed out.
    async fn receive(&self, max: usize, wait: std::time::Duration) -> Vec<Delivery>;
    /// Deletes a handled message.
    fn ack(&self, receipt: u64);
    /// Hands a message back, visible again after `delay` (dead-lettered past the limit).
    fn nack(&self, receipt: u64, delay: std::time::Duration);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EventId, Source};

    fn message(size: usize) -> JobMessage {
        let event = Event {
            source: Source::Segment,
            id: EventId::parse("m1").unwrap(),
            name: "trial_started".into(),
            user_id: Some("u1".into()),
            fields: serde_json::json!({"pad": "x".repeat(size)}).as_object().unwrap().clone(),
        };
        let rule = RuleName::parse("r").unwrap();
        JobMessage::for_event(JobKey::for_event(Source::Segment, &event.id, &rule), rule, event)
    }

    #[test]
    fn round_trips() {
        let m = message(10);
        let body = m.to_body().unwrap();
        assert!(body.contains(r#""kind":"event""#), "{body}");
        assert_eq!(JobMessage::from_body(&body).unwrap(), m);
    }

    #[test]
    fn the_borrowing_encoder_writes_the_same_body() {
        let m = message(10);
        let Job::Event { event } = &m.job else { panic!("an event job") };
        assert_eq!(JobMessage::event_body(&m.key, &m.rule, event).unwrap(), m.to_body().unwrap());
    }

    #[test]
    fn scheduled_jobs_carry_their_kind() {
        let persona = crate::cio_sync::ClusterPersona {
            segment_id: 7,
            cluster_id: "c1".into(),
            values: vec![],
            size: 3,
            members: 9,
            distribution: vec![],
            run_window: "2026-03-02_7d".into(),
        };
        let m = JobMessage {
            v: MESSAGE_VERSION,
            key: JobKey::from_stored("cio-sync#attribute-personas#seg7#c1"),
            rule: RuleName::parse("attribute-personas").unwrap(),
            job: Job::ClusterPersona(persona),
        };
        let body = m.to_body().unwrap();
        assert!(body.contains(r#""job":{"kind":"cluster_persona","segment_id":7"#), "{body}");
        assert_eq!(JobMessage::from_body(&body).unwrap(), m);
    }

    #[test]
    fn refuses_what_sqs_would_refuse() {
        assert!(matches!(message(MAX_MESSAGE_BYTES).to_body(), Err(QueueError::TooLarge { .. })));
    }

    #[test]
    fn refuses_unknown_versions_and_shapes() {
        let body = message(1).to_body().unwrap().replace(r#""v":1"#, r#""v":2"#);
        assert!(matches!(JobMessage::from_body(&body), Err(QueueError::Version(2))));
        assert!(matches!(JobMessage::from_body("{}"), Err(QueueError::Decode(_))));
        let bad_id = message(1).to_body().unwrap().replace(r#""id":"m1""#, r#""id":"""#);
        assert!(
            matches!(JobMessage::from_body(&bad_id), Err(QueueError::Decode(_))),
            "ids are validated on the way in"
        );
    }
}
