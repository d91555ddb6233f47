//! The jobs queue on SQS.

use async_trait::async_trait;
use aws_sdk_sqs::Client;

use super::{JobQueue, QueueError};

#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    url: String,
}

impl SqsQueue {
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        SqsQueue { client, url: url.into() }
    }

    /// Opens the connection during a cold start (a cheap read of one queue attribute).
    pub async fn warm(&self) -> Result<(), QueueError> {
        self.client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout)
            .send()
            .await
            .map(|_| ())
            .map_err(QueueError::unavailable)
    }
}

#[async_trait]
impl JobQueue for SqsQueue {
    async fn send(&self, body: String) -> Result<(), QueueError> {
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .send()
            .await
            .map_err(QueueError::unavailable)?;
        Ok(())
    }
}
