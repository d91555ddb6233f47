//! The worker under Lambda: one SQS batch in, `batchItemFailures` out, so that only the
//! messages that should be retried come back (the event source mapping enables
//! `ReportBatchItemFailures`). Records run concurrently, up to a bound.

use std::time::Duration;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use futures::StreamExt;
use tokio::time::Instant;

use super::{Disposition, JobTally, Worker};
use crate::store::{FailureClass, JobStatus};
use crate::telemetry::{Metric, Metrics};

/// Records of one batch processed at once. The Mave cap in the client bounds Mavera calls
/// separately; this bounds store calls and memory.
pub const RECORD_CONCURRENCY: usize = 10;

/// The function's timeout when neither the runtime nor `FUNCTION_TIMEOUT_SECS` says: the
/// worker's in `template.yaml`.
pub const DEFAULT_FUNCTION_TIMEOUT: Duration = Duration::from_secs(300);

pub async fn handle_batch(worker: &Worker, event: SqsEvent, deadline: Instant, metrics: &Metrics) -> SqsBatchResponse {
    let outcomes: Vec<(Option<String>, Disposition, JobTally)> = futures::stream::iter(event.records)
        .map(|record| async move {
            let (disposition, tally) = match record.body.as_deref() {
                Some(body) => worker.process_tallied(body, deadline).await,
                None => (Disposition::Retry { reason: "the SQS record has no body".into() }, JobTally::default()),
            };
            (record.message_id, disposition, tally)
        })
        .buffer_unordered(RECORD_CONCURRENCY)
        .collect()
        .await;

    let mut counts = metrics.counts();
    let mut response = SqsBatchResponse::default();
    for (message_id, disposition, tally) in outcomes {
        match &disposition {
            Disposition::Finished(JobStatus::Done) => counts.add(Metric::Done, 1),
            // The class says who has to act: a revoked key and exhausted credits have alarms.
            Disposition::Finished(JobStatus::Failed) => {
                counts.add_failed(tally.failure.unwrap_or(FailureClass::UnexpectedResponse))
            }
            Disposition::Finished(_) => counts.add(Metric::Skipped, 1),
            Disposition::AlreadyFinished(_) | Disposition::HeldElsewhere => counts.add(Metric::Duplicate, 1),
            Disposition::Retry { .. } => counts.add(Metric::Retried, 1),
        }
        if let (Some(rule), Some(credits)) = (&tally.rule, tally.credits) {
            counts.add_credits(rule.as_str(), credits);
        }
        if !disposition.ack() {
            match message_id {
                Some(id) => {
                    let mut failure = BatchItemFailure::default();
                    failure.item_identifier = id;
                    response.batch_item_failures.push(failure);
                }
                // Without an id SQS cannot be told which one failed; failing the whole
                // batch is safe, as every job is idempotent.
                None => tracing::error!("an SQS record without a messageId failed; it cannot be reported alone"),
            }
        }
    }
    counts.flush();
    response
}
