//! `relay poll-sqs`: plays the Lambda SQS event source for a worker function running under
//! `cargo lambda watch` against a local AWS endpoint. It receives a batch from the queue
//! (the AWS SDK, so `AWS_ENDPOINT_URL` points it at moto), invokes the function with an
//! `SqsEvent` through cargo lambda's local invoke endpoint, reads `batchItemFailures`, and
//! deletes only the messages not reported failed. The failed ones come back after the
//! queue's visibility timeout, and after `maxReceiveCount` move to its DLQ, as in AWS.

use std::process::ExitCode;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName, QueueAttributeName};
use serde_json::Value;
use shared::domain::truncate_chars;

use crate::error::RelayError;

const DEFAULT_INVOKE_URL: &str = "http://127.0.0.1:9000/2015-03-31/functions/worker/invocations";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The jobs queue's URL
    #[arg(long, env = "JOBS_QUEUE_URL")]
    queue_url: String,
    /// The worker's invoke URL under `cargo lambda watch`
    #[arg(long, default_value = DEFAULT_INVOKE_URL)]
    invoke_url: String,
    /// Messages per invocation (SQS allows 1 to 10)
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(i32).range(1..=10))]
    batch_size: i32,
    /// Stop once the queue has nothing to receive, instead of polling until Ctrl-C
    #[arg(long)]
    until_empty: bool,
}

/// What one batch came to.
#[derive(Debug, Default, PartialEq, Eq)]
struct Batch {
    received: usize,
    deleted: usize,
    failed: usize,
}

pub async fn run(args: Args) -> Result<ExitCode, RelayError> {
    shared::telemetry::init(shared::telemetry::LogFormat::Text);
    let sdk = shared::aws::sdk_config().await;
    let sqs = Client::new(&sdk);
    let http = reqwest::Client::builder()
        // The worker function may take its whole timeout; cargo lambda answers when it returns.
        .timeout(Duration::from_secs(900))
        .build()
        .map_err(RelayError::HttpClient)?;
    let arn = queue_arn(&sqs, &args.queue_url).await?;
    let region = sdk.region().map(|r| r.to_string()).unwrap_or_default();
    println!("polling {} -> {}", args.queue_url, args.invoke_url);

    let mut totals = Batch::default();
    loop {
        let received = tokio::select! {
            r = receive(&sqs, &args.queue_url, args.batch_size) => r?,
            _ = tokio::signal::ctrl_c() => break,
        };
        if received.is_empty() {
            if args.until_empty {
                break;
            }
            continue;
        }
        let batch = deliver(&sqs, &http, &args, &arn, &region, received).await?;
        println!(
            "batch of {}: {} deleted, {} reported failed (back after the visibility timeout)",
            batch.received, batch.deleted, batch.failed
        );
        totals.received += batch.received;
        totals.deleted += batch.deleted;
        totals.failed += batch.failed;
    }
    println!("done: {} received, {} deleted, {} reported failed", totals.received, totals.deleted, totals.failed);
    Ok(ExitCode::SUCCESS)
}

async fn queue_arn(sqs: &Client, queue_url: &str) -> Result<String, RelayError> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| sqs_error("GetQueueAttributes", queue_url, e))?;
    Ok(out.attributes.and_then(|mut a| a.remove(&QueueAttributeName::QueueArn)).unwrap_or_default())
}

async fn receive(sqs: &Client, queue_url: &str, batch_size: i32) -> Result<Vec<Message>, RelayError> {
    let out = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(batch_size)
        // Short long-polls keep each call inside the SDK's operation timeout.
        .wait_time_seconds(1)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .map_err(|e| sqs_error("ReceiveMessage", queue_url, e))?;
    Ok(out.messages.unwrap_or_default())
}

/// Invokes the worker with one batch and deletes what it did not report failed. If the
/// invocation itself fails, nothing is deleted: the whole batch comes back, as in Lambda.
async fn deliver(
    sqs: &Client,
    http: &reqwest::Client,
    args: &Args,
    arn: &str,
    region: &str,
    messages: Vec<Message>,
) -> Result<Batch, RelayError> {
    let event = sqs_event(&messages, arn, region);
    let mut batch = Batch { received: messages.len(), ..Batch::default() };
    let failed = match invoke(http, &args.invoke_url, &event).await {
        Ok(failed) => failed,
        Err(problem) => {
            tracing::error!(
                "the worker invocation failed ({problem}); the whole batch comes back after the visibility timeout"
            );
            batch.failed = messages.len();
            return Ok(batch);
        }
    };
    let entries: Vec<DeleteMessageBatchRequestEntry> = messages
        .iter()
        .enumerate()
        .filter(|(_, m)| !m.message_id.as_ref().is_some_and(|id| failed.contains(id)))
        .filter_map(|(i, m)| {
            let handle = m.receipt_handle.clone()?;
            DeleteMessageBatchRequestEntry::builder().id(i.to_string()).receipt_handle(handle).build().ok()
        })
        .collect();
    batch.failed = messages.len() - entries.len();
    if !entries.is_empty() {
        let out = sqs
            .delete_message_batch()
            .queue_url(&args.queue_url)
            .set_entries(Some(entries.clone()))
            .send()
            .await
            .map_err(|e| sqs_error("DeleteMessageBatch", &args.queue_url, e))?;
        for failure in &out.failed {
            tracing::warn!(
                id = failure.id,
                code = failure.code,
                "could not delete a processed message; it will be delivered again"
            );
        }
        batch.deleted = entries.len() - out.failed.len();
    }
    Ok(batch)
}

/// The event Lambda's SQS event source would send for these messages.
fn sqs_event(messages: &[Message], arn: &str, region: &str) -> SqsEvent {
    let mut event = SqsEvent::default();
    for m in messages {
        let mut record = SqsMessage::default();
        record.message_id = m.message_id.clone();
        record.receipt_handle = m.receipt_handle.clone();
        record.body = m.body.clone();
        record.md5_of_body = m.md5_of_body.clone();
        record.attributes = m.attributes.iter().flatten().map(|(k, v)| (k.as_str().to_owned(), v.clone())).collect();
        record.event_source = Some("aws:sqs".into());
        record.event_source_arn = Some(arn.to_owned());
        record.aws_region = Some(region.to_owned());
        event.records.push(record);
    }
    event
}

/// The message ids the worker reported failed, or why the invocation did not succeed.
async fn invoke(http: &reqwest::Client, url: &str, event: &SqsEvent) -> Result<Vec<String>, String> {
    let response = http.post(url).json(event).send().await.map_err(|e| format!("POST {url}: {e}"))?;
    let status = response.status();
    let text = response.text().await.map_err(|e| format!("reading the answer: {e}"))?;
    if !status.is_success() {
        return Err(format!("HTTP {status}: {}", truncate_chars(&text, 500)));
    }
    failed_ids(&text)
}

/// Reads an `SqsBatchResponse`. Anything else (an error payload such as `{"errorType": ..}`
/// also parses as an empty response if read leniently) counts as a failed invocation, so
/// that nothing is deleted on a function error.
fn failed_ids(answer: &str) -> Result<Vec<String>, String> {
    let value: Value = serde_json::from_str(answer).map_err(|e| format!("the answer is not JSON ({e}): {answer}"))?;
    let Some(failures) = value.get("batchItemFailures").and_then(Value::as_array) else {
        return Err(format!("the answer has no batchItemFailures: {answer}"));
    };
    failures
        .iter()
        .map(|f| {
            f.get("itemIdentifier")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| format!("a failure without itemIdentifier: {f}"))
        })
        .collect()
}

fn sqs_error(operation: &'static str, queue_url: &str, error: impl std::error::Error + 'static) -> RelayError {
    RelayError::Sqs {
        operation,
        queue_url: queue_url.to_owned(),
        message: shared::telemetry::chain(&error).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_batch_response_counts_as_an_answer() {
        assert_eq!(failed_ids(r#"{"batchItemFailures":[]}"#).unwrap(), Vec::<String>::new());
        assert_eq!(failed_ids(r#"{"batchItemFailures":[{"itemIdentifier":"m2"}]}"#).unwrap(), ["m2"]);
        assert!(failed_ids(r#"{"errorType":"Panic","errorMessage":"boom"}"#).is_err());
        assert!(failed_ids("Internal Server Error").is_err());
    }
}
