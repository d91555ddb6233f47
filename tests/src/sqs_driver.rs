//! Plays the Lambda SQS event source against moto: receives batches from the jobs queue,
//! hands them to the worker's batch handler, deletes what it did not report failed, and
//! leaves failures to reappear after the visibility timeout (and, past the queue's
//! `maxReceiveCount`, to move to the DLQ), as the real event source mapping does.

use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_sqs::types::MessageSystemAttributeName;
use shared::telemetry::Metrics;
use shared::worker::{Worker, sqs};
use tokio::time::Instant;

use crate::aws::Aws;

/// A hand-built SQS event, as Lambda delivers it.
pub fn sqs_event(records: &[(&str, &str)]) -> SqsEvent {
    let mut event = SqsEvent::default();
    for (id, body) in records {
        let mut m = SqsMessage::default();
        m.message_id = Some((*id).to_owned());
        m.body = Some((*body).to_owned());
        m.attributes.insert("ApproximateReceiveCount".into(), "1".into());
        event.records.push(m);
    }
    event
}

/// What a drive did.
#[derive(Debug, Default)]
pub struct Drive {
    pub batches: usize,
    pub delivered: usize,
    pub reported_failed: usize,
}

/// Delivers the queue to `worker` in batches of up to `batch_size` until it is empty (no
/// message waiting or in flight) or `give_up` passes. Each batch gets `job_time` to run.
pub async fn drive(aws: &Aws, worker: &Worker, batch_size: i32, job_time: Duration, give_up: Duration) -> Drive {
    let stop = Instant::now() + give_up;
    let mut drive = Drive::default();
    while Instant::now() < stop {
        let out = aws
            .sqs
            .receive_message()
            .queue_url(&aws.queue_url)
            .max_number_of_messages(batch_size)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .expect("receive from moto");
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            if aws.depth(&aws.queue_url).await == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let mut event = SqsEvent::default();
        let mut receipts = Vec::new();
        for m in &messages {
            let mut record = SqsMessage::default();
            record.message_id = m.message_id.clone();
            record.body = m.body.clone();
            record.receipt_handle = m.receipt_handle.clone();
            event.records.push(record);
            receipts.push((m.message_id.clone().unwrap_or_default(), m.receipt_handle.clone().unwrap_or_default()));
        }
        drive.batches += 1;
        drive.delivered += messages.len();
        let response = sqs::handle_batch(worker, event, Instant::now() + job_time, &Metrics::disabled()).await;
        let failed: Vec<&str> = response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
        drive.reported_failed += failed.len();
        for (id, receipt) in receipts {
            if !failed.contains(&id.as_str()) {
                aws.sqs
                    .delete_message()
                    .queue_url(&aws.queue_url)
                    .receipt_handle(receipt)
                    .send()
                    .await
                    .expect("delete");
            }
        }
    }
    drive
}
