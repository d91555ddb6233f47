//! `relay redrive`: moves the dead-letter queue's messages back to the jobs queue, after the
//! cause is fixed (a rule restored, Mavera back, credits topped up). Each message is
//! received from the DLQ, sent to the jobs queue, and only then deleted from the DLQ, so a
//! failure part-way leaves it in one queue or (for a moment) both, never in neither; the
//! worker runs a job once however often it is queued. Plain receive/send/delete works on
//! any SQS endpoint, moto included. `--dry-run` lists what would move and moves nothing.

use std::collections::HashSet;
use std::process::ExitCode;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message, SendMessageBatchRequestEntry,
};
use shared::domain::truncate_chars;
use shared::queue::JobMessage;

use crate::error::RelayError;
use crate::records::stack;

/// How long a received DLQ message stays hidden while it is moved (or listed).
const HIDDEN_SECS: i32 = 60;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The deployed stack: its outputs name both queues
    #[arg(long, value_name = "NAME", conflicts_with_all = ["queue_url", "dlq_url"])]
    stack: Option<String>,
    /// The jobs queue to move messages to (the stack output JobsQueueUrl)
    #[arg(long, value_name = "URL")]
    queue_url: Option<String>,
    /// The dead-letter queue to move them from (the stack output JobsDlqUrl)
    #[arg(long, value_name = "URL")]
    dlq_url: Option<String>,
    /// List what would move; move nothing
    #[arg(long)]
    dry_run: bool,
    /// Move at most this many messages
    #[arg(long, value_name = "N")]
    max: Option<usize>,
}

pub async fn run(args: Args) -> Result<ExitCode, RelayError> {
    let (queue_url, dlq_url) = match (&args.stack, &args.queue_url, &args.dlq_url) {
        (Some(name), _, _) => {
            let outputs = stack::outputs(name).await?;
            (outputs.queue_url, outputs.dlq_url)
        }
        (None, Some(queue), Some(dlq)) => (queue.clone(), dlq.clone()),
        _ => return Err(RelayError::NoQueues),
    };
    let sqs = Client::new(&crate::aws::sdk_config().await);
    let sqs_error = |operation: &'static str, queue: &str| {
        let queue = queue.to_owned();
        move |e: String| RelayError::Sqs { operation, queue_url: queue, message: e }
    };
    let max = args.max.unwrap_or(usize::MAX);
    println!("{} {dlq_url} -> {queue_url}", if args.dry_run { "would move" } else { "moving" });

    let (mut moved, mut failed) = (0usize, 0usize);
    let mut seen = HashSet::new();
    let mut listed: Vec<String> = Vec::new();
    while moved + listed.len() < max {
        let wanted = (max - moved - listed.len()).min(10) as i32;
        let received = sqs
            .receive_message()
            .queue_url(&dlq_url)
            .max_number_of_messages(wanted)
            .visibility_timeout(HIDDEN_SECS)
            .wait_time_seconds(1)
            .send()
            .await
            .map_err(|e| sqs_error("ReceiveMessage", &dlq_url)(shared::telemetry::chain(&e).to_string()))?;
        let messages: Vec<Message> = received.messages.unwrap_or_default();
        // A dry run sees a message again once its hidden time ends: then the list is whole.
        let fresh: Vec<Message> =
            messages.into_iter().filter(|m| seen.insert(m.message_id.clone().unwrap_or_default())).collect();
        if fresh.is_empty() {
            break;
        }
        if args.dry_run {
            for m in &fresh {
                println!("  {}", describe(m.body()));
                listed.push(m.receipt_handle().unwrap_or_default().to_owned());
            }
            continue;
        }
        let entries: Vec<SendMessageBatchRequestEntry> = fresh
            .iter()
            .enumerate()
            .map(|(i, m)| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(m.body().unwrap_or_default())
                    .build()
            })
            .collect::<Result<_, _>>()
            .map_err(|e| sqs_error("SendMessageBatch", &queue_url)(e.to_string()))?;
        let sent = sqs
            .send_message_batch()
            .queue_url(&queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| sqs_error("SendMessageBatch", &queue_url)(shared::telemetry::chain(&e).to_string()))?;
        for failure in sent.failed() {
            failed += 1;
            let body = failure.id().parse::<usize>().ok().and_then(|i| fresh.get(i)).and_then(|m| m.body());
            println!(
                "  kept in the DLQ (not sent: {}): {}",
                failure.message().unwrap_or(failure.code()),
                describe(body)
            );
        }
        let deletes: Vec<DeleteMessageBatchRequestEntry> = sent
            .successful()
            .iter()
            .filter_map(|ok| {
                let m = fresh.get(ok.id().parse::<usize>().ok()?)?;
                DeleteMessageBatchRequestEntry::builder().id(ok.id()).receipt_handle(m.receipt_handle()?).build().ok()
            })
            .collect();
        if deletes.is_empty() {
            continue;
        }
        let deleted = sqs
            .delete_message_batch()
            .queue_url(&dlq_url)
            .set_entries(Some(deletes))
            .send()
            .await
            .map_err(|e| sqs_error("DeleteMessageBatch", &dlq_url)(shared::telemetry::chain(&e).to_string()))?;
        for ok in deleted.successful() {
            moved += 1;
            let body = ok.id().parse::<usize>().ok().and_then(|i| fresh.get(i)).and_then(|m| m.body());
            println!("  moved  {}", describe(body));
        }
        for failure in deleted.failed() {
            // Sent but still in the DLQ: it will be moved (and run) again; the worker runs a
            // job once however often it is queued.
            failed += 1;
            println!(
                "  sent but not deleted from the DLQ ({}): it may move again",
                failure.message().unwrap_or(failure.code())
            );
        }
    }

    if args.dry_run {
        release(&sqs, &dlq_url, &listed).await;
        println!("{} message(s) would move; nothing moved (run without --dry-run to move them)", listed.len());
        return Ok(ExitCode::SUCCESS);
    }
    println!("{moved} moved, {failed} not");
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Makes listed messages visible again at once, so a redrive right after a dry run finds them.
async fn release(sqs: &Client, dlq_url: &str, receipts: &[String]) {
    for chunk in receipts.chunks(10) {
        let entries: Vec<ChangeMessageVisibilityBatchRequestEntry> = chunk
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(r)
                    .visibility_timeout(0)
                    .build()
                    .ok()
            })
            .collect();
        if let Err(e) = sqs.change_message_visibility_batch().queue_url(dlq_url).set_entries(Some(entries)).send().await
        {
            eprintln!(
                "(could not make the listed messages visible again; they are back within {HIDDEN_SECS}s: {})",
                shared::telemetry::chain(&e)
            );
        }
    }
}

/// `segment#m1#rule (rule)`, or the start of a body that is not a job message.
fn describe(body: Option<&str>) -> String {
    let body = body.unwrap_or_default();
    match JobMessage::from_body(body) {
        Ok(message) => format!("{} (rule {})", message.key, message.rule),
        Err(e) => format!("not a job message ({e}): {}", truncate_chars(body, 80)),
    }
}
