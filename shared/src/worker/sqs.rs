//! The worker under Lambda: one SQS batch in, `batchItemFailures` out, so that only the
//! messages that should be retried come back (the event source mapping enables
//! `ReportBatchItemFailures`). Records run concurrently, up to a bound.

use std::time::Duration;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use futures::StreamExt;
use tokio::time::Instant;

use super::{Disposition, JobTally, Worker};
use crate::customerio::LookupTally;
use crate::store::{DeliveryStatus, FailureClass, JobStatus};
use crate::telemetry::{Metric, Metrics};

/// Records of one batch processed at once. The Mave cap in the client bounds Mavera calls
/// separately; this bounds store calls and memory.
pub const RECORD_CONCURRENCY: usize = 10;

const MIN_LOOKUPS_TO_JUDGE: u64 = LookupTally::MIN_LOOKUPS_TO_JUDGE;

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
    let (mut lookups, mut not_found) = (0_u64, 0_u64);
    for (message_id, disposition, tally) in outcomes {
        if let Some(nobody) = tally.lookup_not_found {
            lookups += 1;
            not_found += u64::from(nobody);
        }
        match &disposition {
            Disposition::Finished(JobStatus::Done) => counts.add(Metric::Done, 1),
            // The class says who has to act: a revoked key and exhausted credits have alarms.
            Disposition::Finished(JobStatus::Failed) => {
                counts.add_failed(tally.failure.unwrap_or(FailureClass::UnexpectedResponse))
            }
            Disposition::Finished(_) => counts.add(Metric::Skipped, 1),
            Disposition::AlreadyFinished(_) | Disposition::HeldElsewhere => counts.add(Metric::Duplicate, 1),
            Disposition::Retry { .. } => counts.add(Metric::Retried, 1),
            // The job is done (now, or before); only destinations are left.
            Disposition::Undelivered { finished, .. } => {
                if *finished == Some(JobStatus::Done) {
                    counts.add(Metric::Done, 1)
                }
            }
        }
        for delivery in &tally.deliveries {
            let destination = delivery.destination.as_str();
            match delivery.state {
                DeliveryStatus::Sent => counts.add_delivery(Metric::Delivered, destination, 1),
                DeliveryStatus::Failed => counts.add_delivery(Metric::DeliveryFailed, destination, 1),
                DeliveryStatus::Pending | DeliveryStatus::Sending => {}
            }
            counts.add_delivery(Metric::DeliveryRetried, destination, u64::from(delivery.retried));
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
    if not_found > 0 {
        counts.add(Metric::CustomersNotFound, not_found);
    }
    // With a full batch of lookups, most of them finding nobody points at the identifier.
    if lookups >= MIN_LOOKUPS_TO_JUDGE && not_found * 2 > lookups {
        tracing::warn!(
            lookups,
            not_found,
            "Customer.io found nobody for most attribute lookups of this batch: check [enrichment] id_field and id_type, and CIO_REGION"
        );
    }
    counts.flush();
    response
}
