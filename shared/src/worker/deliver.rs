//! The delivery step: once a job is `DONE`, its result goes to each destination its rule
//! names, and each destination's state is kept on the record (`store::delivery`), so that:
//!
//! - the result is saved before anything is sent, and a delivery never calls Mavera again
//!   (a redelivered message of a `DONE` job comes straight here);
//! - a redelivered message sends only what is not `sent` (or `failed`) yet;
//! - destinations are sent to at once and each on its own: one that is slow, rate-limited
//!   or down holds none of the others back;
//! - transient failures are retried within the invocation (`deliver::send_with_retries`),
//!   then left `pending` for the queue's next delivery, and after the queue's receive limit
//!   the message waits in the DLQ (a redrive resumes the unsent destinations only);
//! - permanent refusals, and destinations whose credentials are missing, are `failed` with
//!   the reason and never retried;
//! - a send that may have arrived (it timed out after the request went out, or the worker
//!   died in the middle of it) is sent again only where the receiver drops a repeat
//!   (Segment's `messageId`, the webhook's `webhook-id`, Customer.io's attribute `PUT`).
//!   Slack and Customer.io events cannot drop one, so for them the worker first records
//!   `sending`, and an uncertain outcome (a timeout, or `sending` found on the record) is
//!   `failed`, never a second post: a duplicate in a channel, or a campaign triggered twice
//!   for one person, is the worse mistake, and the record says what happened.

use std::time::SystemTime;

use backon::Retryable;
use futures::future::join_all;
use tokio::time::Instant;
use tracing::Instrument;

use super::{FINISH_MARGIN, LEASE_MARGIN, RECORD_RETRIES, Worker};
use crate::deliver::{Context, DestinationName, JobResult, SendError, Target};
use crate::domain::{Event, JobKey};
use crate::retry;
use crate::rules::Rule;
use crate::store::{DeliveryClaim, DeliveryState, DeliveryStatus, Lease, StoreError};
use crate::telemetry::chain;

/// A dry run's deliveries are `sent` with this reason: printed, never sent.
pub const DRY_RUN_REASON: &str = "dry run: printed, not sent";

/// What one destination came to in this delivery, for the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryTally {
    pub destination: DestinationName,
    /// `sent`, `failed`, or `pending` (left for the queue).
    pub state: DeliveryStatus,
    /// Transient failures on the way (each retried here or by the queue).
    pub retried: u32,
}

/// How a job's deliveries ended in this invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Delivered {
    /// Every destination is `sent` or `failed` (now or before).
    Ended,
    /// Some are left `pending`; the message goes back to the queue.
    Unsent(String),
    /// Another worker holds the deliveries under a live lease.
    Busy,
    /// Nothing to deliver: the rule has no destinations, or the job no result.
    Nothing,
}

impl Worker {
    /// Delivers a `DONE` job's result to `rule`'s destinations.
    pub(super) async fn deliver(
        &self,
        rule: &Rule,
        event: &Event,
        key: &JobKey,
        deadline: Instant,
        tally: &mut Vec<DeliveryTally>,
    ) -> Delivered {
        if rule.deliver.is_empty() {
            return Delivered::Nothing;
        }
        let now = SystemTime::now();
        let lease = Lease {
            owner: uuid::Uuid::new_v4().to_string(),
            until: now + deadline.saturating_duration_since(Instant::now()) + LEASE_MARGIN,
        };
        let names: Vec<&str> = rule.deliver.iter().map(|t| t.name().as_str()).collect();
        let open = match self.guards.open_deliveries(key, &names, &lease, now).await {
            Ok(DeliveryClaim::Open(open)) => open,
            Ok(DeliveryClaim::Busy) => {
                tracing::info!(
                    outcome = "held_elsewhere",
                    "another delivery is sending this job's result; message dropped"
                );
                return Delivered::Busy;
            }
            Ok(DeliveryClaim::NotDone(status)) => {
                tracing::warn!(?status, "the job has no result to deliver");
                return Delivered::Nothing;
            }
            Err(e) => {
                tracing::warn!(error = %chain(&e), "could not open the deliveries; the queue redelivers the message");
                return Delivered::Unsent(format!("event store: {e}"));
            }
        };
        let result = JobResult::new(open.result);
        let ctx =
            Context { key, rule: &rule.name, event, result: &result, kind: rule.result_kind(), at: open.opened_at };
        // Keep time to record the last outcome.
        let send_deadline = deadline.checked_sub(FINISH_MARGIN).unwrap_or_else(Instant::now);
        let sends = rule.deliver.iter().map(|target| {
            let prior = open.states.get(target.name().as_str()).cloned();
            self.deliver_one(target, &ctx, prior, &lease.owner, send_deadline)
        });
        let ended: Vec<Option<DeliveryTally>> = join_all(sends).await;

        let mut unsent = Vec::new();
        for t in ended.into_iter().flatten() {
            if t.state == DeliveryStatus::Pending {
                unsent.push(t.destination.as_str());
            }
            tally.push(t);
        }
        if unsent.is_empty() {
            return Delivered::Ended;
        }
        if let Err(e) = self.guards.release_deliveries(key, &lease.owner).await {
            // The lease expires by itself; the redelivered message takes it then.
            tracing::warn!(error = %chain(&e), "could not release the deliveries");
        }
        Delivered::Unsent(format!("not yet delivered to {}", unsent.join(", ")))
    }

    /// One destination: skipped if it already ended, else sent (with retries) and its new
    /// state recorded. `None` when nothing was done.
    async fn deliver_one(
        &self,
        target: &Target,
        ctx: &Context<'_>,
        prior: Option<DeliveryState>,
        owner: &str,
        deadline: Instant,
    ) -> Option<DeliveryTally> {
        let span = tracing::info_span!("deliver", destination = target.name().as_str());
        self.deliver_in_span(target, ctx, prior, owner, deadline).instrument(span).await
    }

    async fn deliver_in_span(
        &self,
        target: &Target,
        ctx: &Context<'_>,
        prior: Option<DeliveryState>,
        owner: &str,
        deadline: Instant,
    ) -> Option<DeliveryTally> {
        let destination = target.name();
        let prior = prior.unwrap_or_else(|| DeliveryState::pending(SystemTime::now()));
        let attempts = prior.attempts;
        let tally = |state, retried| Some(DeliveryTally { destination, state, retried });
        match prior.state {
            DeliveryStatus::Sent | DeliveryStatus::Failed => return None,
            DeliveryStatus::Sending if target.at_most_once() => {
                let reason = format!(
                    "uncertain: an earlier delivery stopped while sending (before it recorded {destination}'s answer), so it may have arrived; not sent again, as {destination} cannot drop a repeat"
                );
                tracing::warn!(outcome = "failed", attempts, %reason, "delivery not repeated");
                self.save(ctx.key, owner, destination, DeliveryStatus::Failed, attempts, Some(reason)).await;
                return tally(DeliveryStatus::Failed, 0);
            }
            _ => {}
        }
        if target.at_most_once()
            && self.destinations.off(destination).is_none()
            && let Err(e) = self.write_state(ctx.key, owner, destination, DeliveryStatus::Sending, attempts, None).await
        {
            // Without the mark a crash could not be told from a send never made: not sending.
            tracing::warn!(error = %chain(&e), "could not mark the delivery as sending; it is left for the next delivery");
            return tally(DeliveryStatus::Pending, 0);
        }

        let started = Instant::now();
        let sent = self.destinations.send(target, ctx, deadline).await;
        let attempts = attempts + sent.attempts;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let (state, reason) = match &sent.outcome {
            Ok(()) if self.destinations.is_dry_run() => (DeliveryStatus::Sent, Some(DRY_RUN_REASON.to_owned())),
            Ok(()) => (DeliveryStatus::Sent, None),
            Err(SendError::Retry { reason, .. }) => (DeliveryStatus::Pending, Some(reason.clone())),
            Err(SendError::Permanent { reason } | SendError::Uncertain { reason }) => {
                (DeliveryStatus::Failed, Some(reason.clone()))
            }
        };
        match (&state, &reason) {
            (DeliveryStatus::Sent, _) => tracing::info!(outcome = "sent", attempts, elapsed_ms, "delivered"),
            (DeliveryStatus::Pending, Some(reason)) => {
                tracing::warn!(outcome = "pending", attempts, elapsed_ms, %reason, "not delivered yet; the queue redelivers the message")
            }
            (_, reason) => {
                tracing::warn!(
                    outcome = "failed",
                    attempts,
                    elapsed_ms,
                    reason = reason.as_deref().unwrap_or(""),
                    "delivery failed; not retried"
                )
            }
        }
        let recorded = self.save(ctx.key, owner, destination, state, attempts, reason).await;
        // An outcome that could not be recorded is left to the next delivery: a repeat is
        // dropped by the receiver, or (Slack, a Customer.io event) found `sending` and not made.
        let state = if recorded { state } else { DeliveryStatus::Pending };
        tally(state, sent.retried())
    }

    /// Records a destination's state, trying a few times: after a send, losing the record
    /// would mean sending again. `false` if it could not be written.
    async fn save(
        &self,
        key: &JobKey,
        owner: &str,
        destination: DestinationName,
        state: DeliveryStatus,
        attempts: u32,
        reason: Option<String>,
    ) -> bool {
        let mut failed_attempts = 0u32;
        let written = (|| self.write_state(key, owner, destination, state, attempts, reason.clone()))
            .retry(retry::store_write(RECORD_RETRIES))
            .when(|e| !matches!(e, StoreError::LeaseLost(_)))
            .notify(|e, _| {
                failed_attempts += 1;
                tracing::warn!(attempt = failed_attempts, error = %chain(e), "could not record the delivery; trying again");
            })
            .await;
        match written {
            Ok(()) => true,
            Err(StoreError::LeaseLost(_)) => {
                tracing::warn!("lost the delivery lease (the sends outlived it); another delivery owns it now");
                false
            }
            Err(e) => {
                tracing::error!(error = %chain(&e), state = %state, "could not record the delivery; the next delivery of the message settles it");
                false
            }
        }
    }

    async fn write_state(
        &self,
        key: &JobKey,
        owner: &str,
        destination: DestinationName,
        state: DeliveryStatus,
        attempts: u32,
        reason: Option<String>,
    ) -> Result<(), StoreError> {
        let state = DeliveryState::new(state, attempts, reason, SystemTime::now());
        self.guards.record_delivery(key, owner, destination.as_str(), &state).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use async_trait::async_trait;
    use serde_json::json;

    use super::*;
    use crate::deliver::twin::Recording;
    use crate::deliver::{CioUpdate, Destinations, Endpoint, SegmentCalls, SlackMessage, WebhookMessage};
    use crate::domain::{EventId, RuleName, Source};
    use crate::mavera::{MaveMessage, MaveraApi, MaveraError, MaveraRequest, MaveraResponse, Usage};
    use crate::queue::JobMessage;
    use crate::store::{DeliveryStore, JobStore, MemoryStore};
    use crate::triggers::Triggers;
    use crate::worker::{Disposition, JobStatus};

    /// Mavera answering every research, counting the calls.
    #[derive(Default)]
    struct Mave(AtomicUsize);

    #[async_trait]
    impl MaveraApi for Mave {
        async fn send(&self, _: &MaveraRequest, _: Instant) -> Result<MaveraResponse, MaveraError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(MaveraResponse::Research(MaveMessage {
                id: Some("msg_1".into()),
                thread_id: "mave_thread_1".into(),
                content: "Call them within a day.".into(),
                usage: Some(Usage { credits_used: Some(25.0) }),
            }))
        }

        async fn find_persona(
            &self,
            _: &str,
            _: Instant,
        ) -> Result<Option<crate::mavera::PersonaSummary>, crate::mavera::MaveraError> {
            Ok(None)
        }
    }

    const RULE: &str = r#"
[[rule]]
name = "churn"
source = "segment"
event = "churn_signal"
action = "research"
research = { prompt = "Why is {user_id} leaving?" }
deliver = ["slack", "customerio", "segment", "webhook"]
"#;

    #[derive(Default)]
    struct Twins {
        slack: Arc<Recording<SlackMessage>>,
        cio: Arc<Recording<CioUpdate>>,
        segment: Arc<Recording<SegmentCalls>>,
        webhook: Arc<Recording<WebhookMessage>>,
    }

    struct Rig {
        worker: Arc<Worker>,
        store: Arc<MemoryStore>,
        mavera: Arc<Mave>,
        twins: Twins,
    }

    fn rig_with(destinations: impl FnOnce(&Twins) -> Destinations) -> Rig {
        let triggers = Triggers::parse(RULE, "t.toml").unwrap();
        let store = Arc::new(MemoryStore::new());
        let mavera = Arc::new(Mave::default());
        let twins = Twins::default();
        let worker = Worker::new(
            Arc::new(triggers.rules),
            Default::default(),
            store.clone(),
            store.clone(),
            mavera.clone(),
            None,
        )
        .unwrap()
        .with_destinations(destinations(&twins));
        Rig { worker: Arc::new(worker), store, mavera, twins }
    }

    fn all_ready(t: &Twins) -> Destinations {
        let mut d = Destinations::none();
        d.slack = Endpoint::Ready(t.slack.clone());
        d.customerio = Endpoint::Ready(t.cio.clone());
        d.segment = Endpoint::Ready(t.segment.clone());
        d.webhook = Endpoint::Ready(t.webhook.clone());
        d
    }

    fn rig() -> Rig {
        rig_with(all_ready)
    }

    fn message(id: &str) -> (JobKey, String) {
        let rule = RuleName::parse("churn").unwrap();
        let event = Event {
            source: Source::Segment,
            id: EventId::parse(id).unwrap(),
            name: "churn_signal".into(),
            user_id: Some("u1".into()),
            fields: json!({"user_id": "u1"}).as_object().unwrap().clone(),
        };
        let key = JobKey::for_event(Source::Segment, &event.id, &rule);
        (key.clone(), JobMessage::event_body(&key, &rule, &event).unwrap())
    }

    fn deadline() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    fn transient() -> Result<(), SendError> {
        Err(SendError::Retry { reason: "Segment answered 503".into(), wait: None })
    }

    impl Rig {
        async fn states(&self, key: &JobKey) -> Vec<(String, DeliveryStatus, u32)> {
            let record = self.store.get(key).await.unwrap().unwrap();
            record.deliveries.into_iter().map(|(k, v)| (k, v.state, v.attempts)).collect()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_result_goes_to_every_destination_once_and_the_record_says_so() {
        let r = rig();
        let (key, body) = message("e1");
        let (disposition, tally) = r.worker.process_tallied(&body, deadline()).await;
        assert_eq!(disposition, Disposition::Finished(JobStatus::Done));
        assert_eq!(r.mavera.0.load(Ordering::SeqCst), 1);
        assert_eq!(
            r.states(&key).await,
            [
                ("customerio".into(), DeliveryStatus::Sent, 1),
                ("segment".into(), DeliveryStatus::Sent, 1),
                ("slack".into(), DeliveryStatus::Sent, 1),
                ("webhook".into(), DeliveryStatus::Sent, 1),
            ]
        );
        assert_eq!(tally.deliveries.len(), 4);
        assert!(tally.deliveries.iter().all(|d| d.state == DeliveryStatus::Sent && d.retried == 0));
        let slack = r.twins.slack.delivered();
        assert_eq!(slack.len(), 1);
        assert!(slack[0].payload.to_string().contains("Call them within a day."));
        assert_eq!(r.twins.cio.delivered()[0].identifier, "u1");

        // A duplicate message (the delivery lease is still live, or the deliveries ended):
        // it is acknowledged, nothing is sent again, Mavera is not called again.
        assert!(r.worker.process(&body, deadline()).await.ack());
        assert_eq!(r.mavera.0.load(Ordering::SeqCst), 1);
        assert_eq!(r.twins.slack.attempts() + r.twins.segment.attempts(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_redelivery_after_a_partial_delivery_sends_only_the_rest() {
        let r = rig();
        r.twins.segment.script((0..=crate::deliver::MAX_RETRIES).map(|_| transient()));
        let (key, body) = message("e2");
        let (disposition, tally) = r.worker.process_tallied(&body, deadline()).await;
        assert!(
            matches!(&disposition, Disposition::Undelivered { finished: Some(JobStatus::Done), reason } if reason.contains("segment")),
            "{disposition:?}"
        );
        assert!(!disposition.ack(), "the message goes back to the queue");
        let segment = tally.deliveries.iter().find(|d| d.destination == DestinationName::Segment).unwrap();
        assert_eq!((segment.state, segment.retried), (DeliveryStatus::Pending, 1 + crate::deliver::MAX_RETRIES as u32));
        let record = r.store.get(&key).await.unwrap().unwrap();
        assert_eq!(record.deliveries["segment"].reason.as_deref(), Some("Segment answered 503"));

        let (disposition, tally) = r.worker.process_tallied(&body, deadline()).await;
        assert_eq!(disposition, Disposition::AlreadyFinished(JobStatus::Done));
        assert_eq!(tally.deliveries.iter().map(|d| d.destination).collect::<Vec<_>>(), [DestinationName::Segment]);
        assert_eq!(r.mavera.0.load(Ordering::SeqCst), 1, "a delivery never calls Mavera again");
        assert_eq!(r.twins.slack.attempts(), 1, "what was sent is not sent again");
        assert_eq!(r.twins.segment.delivered().len(), 1);
        assert_eq!(
            r.states(&key).await[1],
            ("segment".into(), DeliveryStatus::Sent, 2 + crate::deliver::MAX_RETRIES as u32)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_refusal_is_recorded_and_never_retried_and_holds_no_one_back() {
        let r = rig();
        r.twins.webhook.script([Err(SendError::Permanent { reason: "the webhook endpoint answered 404".into() })]);
        let (key, body) = message("e3");
        assert_eq!(r.worker.process(&body, deadline()).await, Disposition::Finished(JobStatus::Done));
        let record = r.store.get(&key).await.unwrap().unwrap();
        let webhook = &record.deliveries["webhook"];
        assert_eq!((webhook.state, webhook.attempts), (DeliveryStatus::Failed, 1));
        assert!(webhook.reason.as_deref().unwrap().contains("404"));
        assert_eq!(record.deliveries["slack"].state, DeliveryStatus::Sent, "the others went");
        r.worker.process(&body, deadline()).await;
        assert_eq!(r.twins.webhook.attempts(), 1, "never retried");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slack_post_that_may_have_arrived_is_not_posted_again() {
        let r = rig();
        r.twins.slack.script([Err(SendError::Uncertain { reason: "Slack did not answer".into() })]);
        let (key, body) = message("e4");
        assert_eq!(r.worker.process(&body, deadline()).await, Disposition::Finished(JobStatus::Done));
        let slack = r.store.get(&key).await.unwrap().unwrap().deliveries["slack"].clone();
        assert_eq!(slack.state, DeliveryStatus::Failed);
        r.worker.process(&body, deadline()).await;
        assert_eq!(r.twins.slack.attempts(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_send_cut_off_by_a_crash_is_repeated_only_where_the_receiver_drops_repeats() {
        let r = rig();
        r.twins.slack.script((0..=crate::deliver::MAX_RETRIES).map(|_| transient()));
        r.twins.segment.script((0..=crate::deliver::MAX_RETRIES).map(|_| transient()));
        let (key, body) = message("e5");
        r.worker.process(&body, deadline()).await;
        // As a worker that died mid-send leaves it: both marked in flight, the lease gone.
        let later = SystemTime::now() + Duration::from_secs(3600);
        let lease = Lease { owner: "crashed".into(), until: later };
        let DeliveryClaim::Open(_) = r.store.open_deliveries(&key, &["slack", "segment"], &lease, later).await.unwrap()
        else {
            panic!()
        };
        for name in ["slack", "segment"] {
            let sending = DeliveryState::new(DeliveryStatus::Sending, 7, None, later);
            r.store.record_delivery(&key, "crashed", name, &sending).await.unwrap();
        }
        r.store.release_deliveries(&key, "crashed").await.unwrap();

        assert_eq!(r.worker.process(&body, deadline()).await, Disposition::AlreadyFinished(JobStatus::Done));
        let record = r.store.get(&key).await.unwrap().unwrap();
        assert_eq!(record.deliveries["slack"].state, DeliveryStatus::Failed);
        assert!(record.deliveries["slack"].reason.as_deref().unwrap().starts_with("uncertain"));
        assert!(r.twins.slack.delivered().is_empty(), "Slack cannot drop a repeat: not posted");
        assert_eq!(
            record.deliveries["segment"].state,
            DeliveryStatus::Sent,
            "Segment drops repeats by messageId: sent"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_destination_without_credentials_fails_alone_with_the_reason() {
        let r = rig_with(|t| {
            let mut d = all_ready(t);
            d.slack = Endpoint::Off("SLACK_WEBHOOK_URL is not set".into());
            d
        });
        let (key, body) = message("e6");
        assert_eq!(r.worker.process(&body, deadline()).await, Disposition::Finished(JobStatus::Done));
        let record = r.store.get(&key).await.unwrap().unwrap();
        assert_eq!(record.deliveries["slack"].state, DeliveryStatus::Failed);
        assert_eq!(record.deliveries["slack"].reason.as_deref(), Some("slack is off: SLACK_WEBHOOK_URL is not set"));
        assert_eq!(record.deliveries["segment"].state, DeliveryStatus::Sent);
    }

    #[tokio::test(start_paused = true)]
    async fn twenty_concurrent_redeliveries_send_the_rest_once() {
        let r = rig();
        r.twins.webhook.script((0..=crate::deliver::MAX_RETRIES).map(|_| transient()));
        let (key, body) = message("e7");
        r.worker.process(&body, deadline()).await;
        let runs: Vec<_> = (0..20)
            .map(|_| {
                let (worker, body) = (r.worker.clone(), body.clone());
                tokio::spawn(async move { worker.process(&body, deadline()).await })
            })
            .collect();
        for run in runs {
            assert!(run.await.unwrap().ack(), "each either sent the rest, found it sent, or found it held");
        }
        assert_eq!(r.twins.webhook.delivered().len(), 1);
        assert_eq!(r.twins.slack.attempts(), 1);
        assert_eq!(r.mavera.0.load(Ordering::SeqCst), 1);
        assert_eq!(r.store.get(&key).await.unwrap().unwrap().deliveries["webhook"].state, DeliveryStatus::Sent);
    }
}
