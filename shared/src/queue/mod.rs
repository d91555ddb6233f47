//! The jobs queue: ingest and `cio-sync` put [`JobMessage`]s on it; the worker takes them
//! off. The message ([`message`]) is the one contract between them: neither side imports the
//! other.

mod memory;
pub mod message;
mod sqs;

use async_trait::async_trait;

pub use memory::{Delivery, MemoryQueue, QueuePersist, StoredMessage};
pub use message::{
    CampaignAnalysis, ClusterPersona, ClusterValue, Job, JobMessage, MAX_MESSAGE_BYTES, MESSAGE_VERSION, MetricsDates,
    Spread, WINNER_METRICS, Winner,
};

pub use sqs::SqsQueue;

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
