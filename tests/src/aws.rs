//! The local AWS endpoint. `scripts/test` starts `moto_server` on 127.0.0.1 and exports
//! `AWS_ENDPOINT_URL`; each test makes its own table and queues, so tests run in parallel.

use std::collections::HashMap;

use aws_config::BehaviorVersion;
use aws_sdk_dynamodb::config::{Credentials, Region};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::types::QueueAttributeName;

/// The moto endpoint, or a clear instruction.
pub fn endpoint() -> String {
    match std::env::var("AWS_ENDPOINT_URL") {
        Ok(url) if url.starts_with("http://127.0.0.1") || url.starts_with("http://localhost") => url,
        Ok(url) => {
            panic!("AWS_ENDPOINT_URL={url} is not a loopback address; these tests only talk to a local moto_server")
        }
        Err(_) => panic!(
            "AWS_ENDPOINT_URL is not set: run the tests with ./scripts/test, which installs and starts moto_server"
        ),
    }
}

/// SDK configuration pointing at moto with dummy credentials: the SDK never looks for
/// real ones (no instance metadata calls).
pub async fn sdk_config() -> aws_config::SdkConfig {
    crate::logs::init();
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "relay-tests"))
        .endpoint_url(endpoint())
        .load()
        .await
}

/// A fresh events table and jobs queue (with its DLQ) on moto.
pub struct Aws {
    pub sdk: aws_config::SdkConfig,
    pub dynamo: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub table: String,
    pub queue_url: String,
    pub dlq_url: String,
}

impl Aws {
    /// `max_receives`: deliveries before SQS moves a message to the DLQ; `visibility_secs`:
    /// how long a received message stays hidden (short in tests, so retries come quickly).
    pub async fn fresh_with(max_receives: u32, visibility_secs: u32) -> Self {
        let sdk = sdk_config().await;
        let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let id = uuid::Uuid::new_v4().simple().to_string();
        let table = format!("events-{id}");
        shared::store::create_table(&dynamo, &table).await.expect("create the events table on moto");
        let dlq_url = sqs
            .create_queue()
            .queue_name(format!("jobs-dlq-{id}"))
            .send()
            .await
            .expect("create the DLQ")
            .queue_url
            .unwrap();
        let dlq_arn = sqs
            .get_queue_attributes()
            .queue_url(&dlq_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap()
            .remove(&QueueAttributeName::QueueArn)
            .unwrap();
        let redrive = format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"{max_receives}"}}"#);
        let queue_url = sqs
            .create_queue()
            .queue_name(format!("jobs-{id}"))
            .attributes(QueueAttributeName::RedrivePolicy, redrive)
            .attributes(QueueAttributeName::VisibilityTimeout, visibility_secs.to_string())
            .send()
            .await
            .expect("create the jobs queue")
            .queue_url
            .unwrap();
        Aws { sdk, dynamo, sqs, table, queue_url, dlq_url }
    }

    pub async fn fresh() -> Self {
        Self::fresh_with(5, 30).await
    }

    pub fn store(&self) -> shared::store::DynamoStore {
        shared::store::DynamoStore::new(self.dynamo.clone(), &self.table)
    }

    pub fn queue(&self) -> shared::queue::SqsQueue {
        shared::queue::SqsQueue::new(self.sqs.clone(), &self.queue_url)
    }

    /// Every item in the table.
    pub async fn items(&self) -> Vec<HashMap<String, AttributeValue>> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = self.dynamo.scan().table_name(&self.table).set_exclusive_start_key(start).send().await.unwrap();
            items.extend(out.items.unwrap_or_default());
            start = out.last_evaluated_key;
            if start.is_none() {
                return items;
            }
        }
    }

    /// Takes every visible message off `queue_url` (deleting them) and returns the bodies.
    pub async fn drain(&self, queue_url: &str) -> Vec<String> {
        let mut bodies = Vec::new();
        loop {
            let out = self.sqs.receive_message().queue_url(queue_url).max_number_of_messages(10).send().await.unwrap();
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() {
                return bodies;
            }
            for m in messages {
                self.sqs
                    .delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(m.receipt_handle.unwrap())
                    .send()
                    .await
                    .unwrap();
                bodies.push(m.body.unwrap_or_default());
            }
        }
    }

    /// Messages waiting plus in flight.
    pub async fn depth(&self, queue_url: &str) -> usize {
        let attrs = self
            .sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap_or_default();
        attrs.values().map(|v| v.parse::<usize>().unwrap_or(0)).sum()
    }
}

/// The string value of an item attribute.
pub fn text<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> Option<&'a str> {
    item.get(name).and_then(|v| v.as_s().ok()).map(String::as_str)
}

pub fn number(item: &HashMap<String, AttributeValue>, name: &str) -> Option<u64> {
    item.get(name).and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok())
}
