//! The behaviour every event-store adapter must have, as one suite: the memory twin runs
//! it in unit tests, the DynamoDB adapter against moto in the integration tests.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::json;

use super::{
    CLAIM_LEASE, Claim, DeliveryClaim, DeliveryState, DeliveryStatus, FailureClass, JobStatus, Lease, ListFilter,
    ListQuery, NewJob, Outcome, Position, RECORD_TTL, Requeue, Start, StartJob, Store, StoreError, utc_day,
};
use crate::domain::{JobKey, RuleName};

/// The queue message the contract's workers run.
const MESSAGE: &str = r#"{"v":1,"contract":"message"}"#;

fn key(tag: &str) -> JobKey {
    JobKey::from_stored(format!("segment#{}#{tag}", uuid::Uuid::new_v4()))
}

fn rule() -> RuleName {
    RuleName::parse("contract-rule").unwrap()
}

fn lease(owner: &str, until: SystemTime) -> Lease {
    Lease { owner: owner.to_owned(), until }
}

/// Runs every case, each on a fresh store from `make`.
pub async fn run_all<S, F, Fut>(make: F)
where
    S: Store + 'static,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    claims_are_exclusive(make().await).await;
    an_expired_claim_can_be_taken_over(make().await).await;
    only_the_holder_releases_a_claim(make().await).await;
    an_expired_record_counts_as_absent(make().await).await;
    a_worker_runs_a_claimed_job_under_a_lease(make().await).await;
    finished_jobs_are_never_started_again(make().await).await;
    only_the_lease_holder_finishes(make().await).await;
    released_jobs_run_again(make().await).await;
    a_job_without_a_record_can_start(make().await).await;
    daily_slots_are_capped_and_idempotent(make().await).await;
    once_per_user_reserves_for_one_job(make().await).await;
    cached_values_go_stale(make().await).await;
    concurrent_claims_admit_exactly_one(Arc::new(make().await)).await;
    a_started_job_keeps_its_message_user_and_place(make().await).await;
    listings_run_newest_first_across_days_and_page_without_gaps(make().await).await;
    a_replay_makes_a_new_attempt_and_keeps_the_history(make().await).await;
    a_replay_is_refused_when_the_job_moved_on_or_has_no_message(make().await).await;
    deliveries_open_only_on_a_done_job(make().await).await;
    delivery_states_are_kept_and_only_the_holder_writes_them(make().await).await;
    a_released_delivery_lease_reopens_with_the_states_kept(make().await).await;
    a_destination_new_to_the_rule_opens_as_pending(make().await).await;
    a_job_run_again_after_its_record_expired_starts_with_no_deliveries(make().await).await;
    concurrent_delivery_opens_admit_exactly_one(Arc::new(make().await)).await;
}

/// A `DONE` job with `result`, as the worker leaves it before delivering.
async fn done(store: &impl Store, tag: &str, now: SystemTime) -> JobKey {
    let (k, r) = (key(tag), rule());
    store.claim(&NewJob { key: &k, rule: &r, token: "a", now }).await.unwrap();
    store.start(&StartJob::new(&k, &r, &lease("w", now + Duration::from_secs(60)), MESSAGE, now)).await.unwrap();
    let result = json!({"action": "research", "content": "findings"});
    store.finish(&k, "w", &Outcome::Done { result }, &[], now).await.unwrap();
    k
}

fn state(status: DeliveryStatus, attempts: u32, reason: Option<&str>, now: SystemTime) -> DeliveryState {
    DeliveryState::new(status, attempts, reason.map(str::to_owned), now)
}

async fn deliveries_open_only_on_a_done_job(store: impl Store) {
    let (k, r, now) = (key("deliver-running"), rule(), SystemTime::now());
    let l = lease("d", now + Duration::from_secs(60));
    assert_eq!(store.open_deliveries(&k, &["slack"], &l, now).await.unwrap(), DeliveryClaim::NotDone(None));
    store.claim(&NewJob { key: &k, rule: &r, token: "a", now }).await.unwrap();
    store.start(&StartJob::new(&k, &r, &lease("w", now + Duration::from_secs(60)), MESSAGE, now)).await.unwrap();
    assert_eq!(
        store.open_deliveries(&k, &["slack"], &l, now).await.unwrap(),
        DeliveryClaim::NotDone(Some(JobStatus::Running)),
        "no result yet, nothing to deliver"
    );

    let k = done(&store, "deliver-done", now).await;
    let DeliveryClaim::Open(open) = store.open_deliveries(&k, &["slack", "segment"], &l, now).await.unwrap() else {
        panic!("a DONE job opens its deliveries")
    };
    assert_eq!(open.result, json!({"action": "research", "content": "findings"}));
    assert_eq!(open.states.keys().collect::<Vec<_>>(), ["segment", "slack"]);
    assert!(open.states.values().all(|s| s.state == DeliveryStatus::Pending && s.attempts == 0));
    assert_eq!(
        store.open_deliveries(&k, &["slack"], &lease("other", now + Duration::from_secs(60)), now).await.unwrap(),
        DeliveryClaim::Busy,
        "a live delivery lease keeps others out"
    );
    let rec = store.get(&k).await.unwrap().unwrap();
    assert_eq!(rec.status, JobStatus::Done, "delivering leaves the job DONE");
    assert_eq!(rec.deliveries.len(), 2);
}

async fn delivery_states_are_kept_and_only_the_holder_writes_them(store: impl Store) {
    let now = SystemTime::now();
    let k = done(&store, "deliver-record", now).await;
    let l = lease("d1", now + Duration::from_secs(60));
    store.open_deliveries(&k, &["slack", "webhook"], &l, now).await.unwrap();
    let sent = state(DeliveryStatus::Sent, 1, None, now);
    store.record_delivery(&k, "d1", "slack", &sent).await.unwrap();
    let failed = state(DeliveryStatus::Failed, 2, Some("the webhook endpoint answered 404"), now);
    store.record_delivery(&k, "d1", "webhook", &failed).await.unwrap();
    let err =
        store.record_delivery(&k, "d2", "slack", &state(DeliveryStatus::Pending, 0, None, now)).await.unwrap_err();
    assert!(matches!(err, StoreError::LeaseLost(_)), "{err}");
    let rec = store.get(&k).await.unwrap().unwrap();
    assert_eq!(rec.deliveries["slack"], sent);
    assert_eq!(rec.deliveries["webhook"], failed);
}

async fn a_released_delivery_lease_reopens_with_the_states_kept(store: impl Store) {
    let now = SystemTime::now();
    let k = done(&store, "deliver-release", now).await;
    let DeliveryClaim::Open(first) = store
        .open_deliveries(&k, &["slack", "segment"], &lease("d1", now + Duration::from_secs(60)), now)
        .await
        .unwrap()
    else {
        panic!()
    };
    store.record_delivery(&k, "d1", "slack", &state(DeliveryStatus::Sent, 1, None, now)).await.unwrap();
    store
        .record_delivery(&k, "d1", "segment", &state(DeliveryStatus::Pending, 3, Some("Segment answered 503"), now))
        .await
        .unwrap();
    store.release_deliveries(&k, "someone-else").await.unwrap();
    assert_eq!(
        store
            .open_deliveries(&k, &["slack", "segment"], &lease("d2", now + Duration::from_secs(60)), now)
            .await
            .unwrap(),
        DeliveryClaim::Busy,
        "only the holder releases"
    );
    store.release_deliveries(&k, "d1").await.unwrap();
    let later = now + Duration::from_secs(5);
    let DeliveryClaim::Open(again) = store
        .open_deliveries(&k, &["slack", "segment"], &lease("d2", later + Duration::from_secs(60)), later)
        .await
        .unwrap()
    else {
        panic!("a released lease can be taken at once")
    };
    assert_eq!(again.states["slack"].state, DeliveryStatus::Sent);
    assert_eq!(again.states["segment"].attempts, 3);
    assert_eq!(again.opened_at, first.opened_at, "the deliveries keep the time they were first opened");
    store.record_delivery(&k, "d2", "segment", &state(DeliveryStatus::Sent, 4, None, later)).await.unwrap();
    assert!(store.record_delivery(&k, "d1", "segment", &state(DeliveryStatus::Failed, 4, None, later)).await.is_err());

    // A holder that died: its lease expires and the next delivery takes over.
    let k = done(&store, "deliver-expire", now).await;
    store.open_deliveries(&k, &["slack"], &lease("dead", now + Duration::from_secs(1)), now).await.unwrap();
    let after = now + Duration::from_secs(2);
    assert!(matches!(
        store.open_deliveries(&k, &["slack"], &lease("d3", after + Duration::from_secs(60)), after).await.unwrap(),
        DeliveryClaim::Open(_)
    ));
}

async fn a_destination_new_to_the_rule_opens_as_pending(store: impl Store) {
    let now = SystemTime::now();
    let k = done(&store, "deliver-added", now).await;
    store.open_deliveries(&k, &["slack"], &lease("d1", now + Duration::from_secs(60)), now).await.unwrap();
    store.record_delivery(&k, "d1", "slack", &state(DeliveryStatus::Sent, 1, None, now)).await.unwrap();
    store.release_deliveries(&k, "d1").await.unwrap();
    let DeliveryClaim::Open(open) = store
        .open_deliveries(&k, &["slack", "customerio"], &lease("d2", now + Duration::from_secs(60)), now)
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(open.states["slack"].state, DeliveryStatus::Sent);
    assert_eq!(open.states["customerio"].state, DeliveryStatus::Pending);
    store.record_delivery(&k, "d2", "customerio", &state(DeliveryStatus::Sent, 1, None, now)).await.unwrap();
    assert_eq!(store.get(&k).await.unwrap().unwrap().deliveries.len(), 2);
}

async fn a_job_run_again_after_its_record_expired_starts_with_no_deliveries(store: impl Store) {
    let now = SystemTime::now();
    let k = done(&store, "deliver-ttl", now).await;
    store.open_deliveries(&k, &["slack"], &lease("d1", now + Duration::from_secs(60)), now).await.unwrap();
    store.record_delivery(&k, "d1", "slack", &state(DeliveryStatus::Sent, 1, None, now)).await.unwrap();
    let after_ttl = now + RECORD_TTL + Duration::from_secs(1);
    assert_eq!(
        store
            .open_deliveries(&k, &["slack"], &lease("d2", after_ttl + Duration::from_secs(60)), after_ttl)
            .await
            .unwrap(),
        DeliveryClaim::NotDone(None),
        "an expired record has nothing to deliver"
    );
    let w2 = lease("w2", after_ttl + Duration::from_secs(60));
    store.start(&StartJob::new(&k, &rule(), &w2, MESSAGE, after_ttl)).await.unwrap();
    assert!(store.get(&k).await.unwrap().unwrap().deliveries.is_empty(), "a fresh run delivers afresh");
}

async fn concurrent_delivery_opens_admit_exactly_one<S: Store + 'static>(store: Arc<S>) {
    let now = SystemTime::now();
    let k = done(store.as_ref(), "deliver-race", now).await;
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (store, k) = (store.clone(), k.clone());
            tokio::spawn(async move {
                let l = lease(&format!("d{i}"), now + Duration::from_secs(60));
                store.open_deliveries(&k, &["slack"], &l, now).await.unwrap()
            })
        })
        .collect();
    let mut opened = 0;
    for t in tasks {
        if matches!(t.await.unwrap(), DeliveryClaim::Open(_)) {
            opened += 1;
        }
    }
    assert_eq!(opened, 1, "20 concurrent deliveries of one job: one holds the lease");
}

async fn claims_are_exclusive(store: impl Store) {
    let (k, r, now) = (key("exclusive"), rule(), SystemTime::now());
    assert_eq!(store.claim(&NewJob { key: &k, rule: &r, token: "a", now }).await.unwrap(), Claim::Claimed);
    assert_eq!(
        store.claim(&NewJob { key: &k, rule: &r, token: "b", now }).await.unwrap(),
        Claim::InFlight,
        "a live claim that may not be sent yet is not a duplicate: the later delivery must retry"
    );
    assert_eq!(
        store.claim(&NewJob { key: &k, rule: &r, token: "a", now }).await.unwrap(),
        Claim::Claimed,
        "the holder's own claim, seen again (a retried write that had been applied), is still its own"
    );
}

async fn an_expired_claim_can_be_taken_over(store: impl Store) {
    let (k, r, now) = (key("expired-claim"), rule(), SystemTime::now());
    store.claim(&NewJob { key: &k, rule: &r, token: "a", now }).await.unwrap();
    let later = now + CLAIM_LEASE + Duration::from_secs(1);
    assert_eq!(
        store.claim(&NewJob { key: &k, rule: &r, token: "b", now: later }).await.unwrap(),
        Claim::Claimed,
        "a claim whose lease ran out (its holder died before queueing) is taken over"
    );
}

async fn only_the_holder_releases_a_claim(store: impl Store) {
    let (k, r, now) = (key("release"), rule(), SystemTime::now());
    store.claim(&NewJob { key: &k, rule: &r, token: "a", now }).await.unwrap();
    store.release_claim(&k, "someone-else").await.unwrap();
    assert_eq!(store.claim(&NewJob { key: &k, rule: &r, token: "b", now }).await.unwrap(), Claim::InFlight);
    store.release_claim(&k, "a").await.unwrap();
    assert!(store.get(&k).await.unwrap().is_none(), "a released claim leaves no record");
    assert_eq!(store.claim(&NewJob { key: &k, rule: &r, token: "b", now }).await.unwrap(), Claim::Claimed);

    store.seal_claim(&k, "someone-else").await.unwrap();
    assert_eq!(store.get(&k).await.unwrap().unwrap().status, JobStatus::Claimed, "only the holder seals");
    store.seal_claim(&k, "b").await.unwrap();
    store.seal_claim(&k, "b").await.expect("sealing twice is sealing once");
    let later = now + CLAIM_LEASE + Duration::from_secs(1);
    assert_eq!(
        store.claim(&NewJob { key: &k, rule: &r, token: "c", now: later }).await.unwrap(),
        Claim::Duplicate(JobStatus::Done),
        "a sealed claim is never taken over"
    );
}

async fn an_expired_record_counts_as_absent(store: impl Store) {
    let (k, r, now) = (key("ttl"), rule(), SystemTime::now());
    store.claim(&NewJob { key: &k, rule: &r, token: "a", now }).await.unwrap();
    let owner = "w";
    store.start(&StartJob::new(&k, &r, &lease(owner, now + Duration::from_secs(60)), MESSAGE, now)).await.unwrap();
    store.finish(&k, owner, &Outcome::Done { result: json!({}) }, &[], now).await.unwrap();
    let after_ttl = now + RECORD_TTL + Duration::from_secs(1);
    assert_eq!(
        store.claim(&NewJob { key: &k, rule: &r, token: "b", now: after_ttl }).await.unwrap(),
        Claim::Claimed,
        "records past their TTL are ignored even before the database deletes them"
    );
}

async fn a_worker_runs_a_claimed_job_under_a_lease(store: impl Store) {
    let (k, r, now) = (key("lease"), rule(), SystemTime::now());
    store.claim(&NewJob { key: &k, rule: &r, token: "a", now }).await.unwrap();
    let until = now + Duration::from_secs(60);
    assert_eq!(
        store.start(&StartJob::new(&k, &r, &lease("w1", until), MESSAGE, now)).await.unwrap(),
        Start::Started { attempt: 1 }
    );
    let rec = store.get(&k).await.unwrap().unwrap();
    assert_eq!((rec.status, rec.attempts), (JobStatus::Running, 1));
    assert_eq!(
        store.start(&StartJob::new(&k, &r, &lease("w1", until), MESSAGE, now)).await.unwrap(),
        Start::Started { attempt: 1 },
        "the lease holder's own start, seen again (a retried write that had been applied), is still its own"
    );
    assert_eq!(
        store.start(&StartJob::new(&k, &r, &lease("w2", until), MESSAGE, now)).await.unwrap(),
        Start::Busy,
        "a live lease keeps others out"
    );
    assert_eq!(
        store.claim(&NewJob { key: &k, rule: &r, token: "b", now }).await.unwrap(),
        Claim::Duplicate(JobStatus::Running)
    );
    let after = until + Duration::from_secs(1);
    assert_eq!(
        store
            .start(&StartJob::new(&k, &r, &lease("w2", after + Duration::from_secs(60)), MESSAGE, after))
            .await
            .unwrap(),
        Start::Started { attempt: 2 },
        "a worker that died mid-call loses its lease when it expires"
    );
}

async fn finished_jobs_are_never_started_again(store: impl Store) {
    for (tag, outcome) in [
        ("done", Outcome::Done { result: json!({"persona_id": "p1"}) }),
        ("failed", Outcome::Failed { reason: "402 credits_exhausted".into(), class: FailureClass::CreditsExhausted }),
        ("skipped", Outcome::Skipped { reason: "daily cap".into() }),
    ] {
        let (k, r, now) = (key(tag), rule(), SystemTime::now());
        store.claim(&NewJob { key: &k, rule: &r, token: "a", now }).await.unwrap();
        store.start(&StartJob::new(&k, &r, &lease("w", now + Duration::from_secs(60)), MESSAGE, now)).await.unwrap();
        store.finish(&k, "w", &outcome, &["note one".into()], now).await.unwrap();
        store.finish(&k, "w", &outcome, &[], now).await.expect("a repeated finish by the same owner is its own");
        let rec = store.get(&k).await.unwrap().unwrap();
        assert_eq!(rec.status, outcome.status());
        assert_eq!(rec.notes, vec!["note one".to_owned()]);
        match &outcome {
            Outcome::Done { result } => assert_eq!(rec.result.as_ref(), Some(result)),
            Outcome::Failed { reason, .. } | Outcome::Skipped { reason } => {
                assert_eq!(rec.error.as_ref(), Some(reason))
            }
        }
        let later = now + Duration::from_secs(3600);
        assert_eq!(
            store
                .start(&StartJob::new(&k, &r, &lease("w2", later + Duration::from_secs(60)), MESSAGE, later))
                .await
                .unwrap(),
            Start::Finished(outcome.status())
        );
        assert_eq!(
            store.claim(&NewJob { key: &k, rule: &r, token: "b", now: later }).await.unwrap(),
            Claim::Duplicate(outcome.status())
        );
    }
}

async fn only_the_lease_holder_finishes(store: impl Store) {
    let (k, r, now) = (key("owner"), rule(), SystemTime::now());
    store.claim(&NewJob { key: &k, rule: &r, token: "a", now }).await.unwrap();
    store.start(&StartJob::new(&k, &r, &lease("w1", now + Duration::from_secs(60)), MESSAGE, now)).await.unwrap();
    let err = store.finish(&k, "w2", &Outcome::Done { result: json!({}) }, &[], now).await.unwrap_err();
    assert!(matches!(err, StoreError::LeaseLost(_)), "{err}");
    let err = store.release(&k, "w2", "x", now).await.unwrap_err();
    assert!(matches!(err, StoreError::LeaseLost(_)), "{err}");
    assert_eq!(store.get(&k).await.unwrap().unwrap().status, JobStatus::Running);
}

async fn released_jobs_run_again(store: impl Store) {
    let (k, r, now) = (key("release-run"), rule(), SystemTime::now());
    store.claim(&NewJob { key: &k, rule: &r, token: "a", now }).await.unwrap();
    store.start(&StartJob::new(&k, &r, &lease("w1", now + Duration::from_secs(60)), MESSAGE, now)).await.unwrap();
    store.release(&k, "w1", "Mavera answered 503", now).await.unwrap();
    store.release(&k, "w1", "Mavera answered 503", now).await.expect("a repeated release by the same owner is its own");
    let rec = store.get(&k).await.unwrap().unwrap();
    assert_eq!(rec.status, JobStatus::Retrying);
    assert_eq!(rec.error.as_deref(), Some("Mavera answered 503"));
    assert_eq!(
        store.claim(&NewJob { key: &k, rule: &r, token: "b", now }).await.unwrap(),
        Claim::Duplicate(JobStatus::Retrying),
        "the queue still holds its message, so a sender retry is a duplicate"
    );
    assert_eq!(
        store.start(&StartJob::new(&k, &r, &lease("w2", now + Duration::from_secs(60)), MESSAGE, now)).await.unwrap(),
        Start::Started { attempt: 2 }
    );
}

async fn a_job_without_a_record_can_start(store: impl Store) {
    let (k, r, now) = (key("redrive"), rule(), SystemTime::now());
    assert_eq!(
        store.start(&StartJob::new(&k, &r, &lease("w", now + Duration::from_secs(60)), MESSAGE, now)).await.unwrap(),
        Start::Started { attempt: 1 },
        "a message redriven from the DLQ after its record expired still runs"
    );
    assert_eq!(store.get(&k).await.unwrap().unwrap().rule.as_deref(), Some("contract-rule"));
}

async fn daily_slots_are_capped_and_idempotent(store: impl Store) {
    let (r, now) = (rule(), SystemTime::now());
    let day = format!("day-{}", uuid::Uuid::new_v4());
    let (k1, k2, k3) = (key("c1"), key("c2"), key("c3"));
    assert!(store.take_daily_slot(&r, &day, &k1, 2, now).await.unwrap());
    assert!(store.take_daily_slot(&r, &day, &k2, 2, now).await.unwrap());
    assert!(
        !store.take_daily_slot(&r, &day, &k3, 2, now).await.unwrap(),
        "the third job of the day is over a cap of 2"
    );
    assert!(store.take_daily_slot(&r, &day, &k1, 2, now).await.unwrap(), "a retried job keeps its slot");
    assert!(store.take_daily_slot(&r, &format!("{day}-next"), &k3, 2, now).await.unwrap(), "a new day, a new count");
}

async fn once_per_user_reserves_for_one_job(store: impl Store) {
    let (r, now) = (rule(), SystemTime::now());
    let user = format!("user-{}", uuid::Uuid::new_v4());
    let (k1, k2) = (key("o1"), key("o2"));
    assert!(store.take_once_per_user(&r, &user, &k1, now).await.unwrap());
    assert!(!store.take_once_per_user(&r, &user, &k2, now).await.unwrap(), "a second job for the same user is refused");
    assert!(store.take_once_per_user(&r, &user, &k1, now).await.unwrap(), "the holder may retry");
    store.forget_once_per_user(&r, &user, &k2).await.unwrap();
    assert!(!store.take_once_per_user(&r, &user, &k2, now).await.unwrap(), "only the holder can forget");
    store.forget_once_per_user(&r, &user, &k1).await.unwrap();
    assert!(store.take_once_per_user(&r, &user, &k2, now).await.unwrap());
    let after_ttl = now + RECORD_TTL + Duration::from_secs(1);
    assert!(
        store.take_once_per_user(&r, &user, &k1, after_ttl).await.unwrap(),
        "reservations expire with their record"
    );
}

async fn cached_values_go_stale(store: impl Store) {
    let now = SystemTime::now();
    let k = format!("attrs#{}", uuid::Uuid::new_v4());
    assert_eq!(store.cached(&k, now).await.unwrap(), None);
    store.cache(&k, &json!({"plan": "pro"}), Duration::from_secs(10), now).await.unwrap();
    assert_eq!(store.cached(&k, now + Duration::from_secs(9)).await.unwrap(), Some(json!({"plan": "pro"})));
    assert_eq!(store.cached(&k, now + Duration::from_secs(11)).await.unwrap(), None);
}

async fn concurrent_claims_admit_exactly_one<S: Store + 'static>(store: Arc<S>) {
    let (k, r, now) = (key("race"), rule(), SystemTime::now());
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (store, k, r) = (store.clone(), k.clone(), r.clone());
            tokio::spawn(async move {
                let token = format!("t{i}");
                store.claim(&NewJob { key: &k, rule: &r, token: &token, now }).await.unwrap()
            })
        })
        .collect();
    let mut claimed = 0;
    for t in tasks {
        if t.await.unwrap() == Claim::Claimed {
            claimed += 1;
        }
    }
    assert_eq!(claimed, 1, "20 concurrent claims of one job admit exactly one");
}

async fn a_started_job_keeps_its_message_user_and_place(store: impl Store) {
    let (k, r, now) = (key("kept"), rule(), SystemTime::now());
    store.claim(&NewJob { key: &k, rule: &r, token: "a", now }).await.unwrap();
    assert_eq!(store.get(&k).await.unwrap().unwrap().position, Some(Position::new(now, &k)), "placed by the claim");
    let lease = lease("w", now + Duration::from_secs(60));
    let later = now + Duration::from_secs(5);
    let start = StartJob { key: &k, rule: &r, lease: &lease, message: MESSAGE, user: Some("u-kept"), now: later };
    store.start(&start).await.unwrap();
    let rec = store.get(&k).await.unwrap().unwrap();
    assert_eq!(rec.message.as_deref(), Some(MESSAGE));
    assert_eq!(rec.user.as_deref(), Some("u-kept"));
    assert_eq!(rec.position, Some(Position::new(now, &k)), "a start keeps the place the claim gave");
    assert_eq!(rec.history.iter().map(|s| s.status).collect::<Vec<_>>(), vec![JobStatus::Running]);

    let unclaimed = key("kept-unclaimed");
    store.start(&StartJob::new(&unclaimed, &r, &lease, MESSAGE, later)).await.unwrap();
    assert_eq!(
        store.get(&unclaimed).await.unwrap().unwrap().position,
        Some(Position::new(later, &unclaimed)),
        "a job that was never claimed is placed by its start"
    );
}

/// A window of its own, days back, that the other cases (all at or after now) never write in.
fn listing_window() -> SystemTime {
    let now = SystemTime::now();
    let day_start = now - Duration::from_secs(std::time::UNIX_EPOCH.elapsed().unwrap().as_secs() % 86_400);
    // 22:00 UTC four days ago: the jobs run past midnight, into a second day's partition.
    day_start - Duration::from_secs(4 * 86_400) + Duration::from_secs(22 * 3600)
}

async fn listings_run_newest_first_across_days_and_page_without_gaps(store: impl Store) {
    let base = listing_window();
    let r = rule();
    let other = RuleName::parse("contract-other").unwrap();
    // 12 jobs, 20 minutes apart: 22:00 to 01:40, over two UTC days.
    let mut keys = Vec::new();
    for i in 0..12u64 {
        let (k, now) = (key(&format!("list{i:02}")), base + Duration::from_secs(i * 20 * 60));
        let rule = if i % 3 == 0 { &other } else { &r };
        store.claim(&NewJob { key: &k, rule, token: "a", now }).await.unwrap();
        keys.push((k, now, rule.clone()));
    }
    assert_ne!(utc_day(keys[0].1), utc_day(keys[11].1), "the jobs span two days");
    // Job 4 is done (300 credits) for user u4, job 7 failed for u7, job 9 is retrying.
    for (i, outcome) in [
        (
            4,
            Some(Outcome::Done {
                result: json!({"action": "create_persona", "name": "Trial User — u4", "credits": 300}),
            }),
        ),
        (
            7,
            Some(Outcome::Failed {
                reason: "Mavera refused: 402 credits_exhausted".into(),
                class: FailureClass::CreditsExhausted,
            }),
        ),
        (9, None),
    ] {
        let (k, now, rule) = &keys[i];
        let lease = lease("w", *now + Duration::from_secs(60));
        let user = format!("u{i}");
        let start = StartJob { key: k, rule, lease: &lease, message: MESSAGE, user: Some(&user), now: *now };
        store.start(&start).await.unwrap();
        match outcome {
            Some(outcome) => store.finish(k, "w", &outcome, &[], *now).await.unwrap(),
            None => store.release(k, "w", "Mavera answered 503", *now).await.unwrap(),
        }
    }
    // Outside the window: now. Not a job: a sealed mark (a batch signature used once).
    store.claim(&NewJob { key: &key("list-now"), rule: &r, token: "a", now: SystemTime::now() }).await.unwrap();
    let mark = key("list-mark");
    store.claim(&NewJob { key: &mark, rule: &r, token: "m", now: base + Duration::from_secs(60) }).await.unwrap();
    store.seal_claim(&mark, "m").await.unwrap();

    let until = base + Duration::from_secs(11 * 20 * 60);
    let query = |limit, filter| ListQuery { since: base, until, filter, limit, after: None };
    let all = store.list(&query(100, ListFilter::default())).await.unwrap();
    let listed: Vec<&JobKey> = all.jobs.iter().map(|j| &j.key).collect();
    let expected: Vec<&JobKey> = keys.iter().rev().map(|(k, _, _)| k).collect();
    assert_eq!(listed, expected, "every job of the window, newest first, and nothing else");
    assert_eq!(all.next, None);
    let done = all.jobs.iter().find(|j| j.key == keys[4].0).unwrap();
    assert_eq!(
        (done.status, done.user.as_deref(), done.summary.as_deref(), done.credits, done.attempts),
        (JobStatus::Done, Some("u4"), Some("Trial User — u4"), Some(300.0), 1)
    );
    assert_eq!(done.rule.as_deref(), Some("contract-rule"));
    assert_eq!(done.position, Position::new(keys[4].1, &keys[4].0));
    let failed = all.jobs.iter().find(|j| j.key == keys[7].0).unwrap();
    assert_eq!(
        (failed.status, failed.summary.as_deref(), failed.credits),
        (JobStatus::Failed, Some("Mavera refused: 402 credits_exhausted"), None)
    );
    let retrying = all.jobs.iter().find(|j| j.key == keys[9].0).unwrap();
    assert_eq!((retrying.status, retrying.summary.as_deref()), (JobStatus::Retrying, Some("Mavera answered 503")));

    // Pages of 5 give the same jobs, each once.
    let mut paged = Vec::new();
    let mut after = None;
    for _ in 0..10 {
        let page = store.list(&ListQuery { after: after.clone(), ..query(5, ListFilter::default()) }).await.unwrap();
        assert!(page.jobs.len() <= 5);
        paged.extend(page.jobs.into_iter().map(|j| j.key));
        after = page.next;
        if after.is_none() {
            break;
        }
    }
    assert_eq!(paged.iter().collect::<Vec<_>>(), expected, "pages neither skip nor repeat a job");

    // The window's ends, to the millisecond.
    let late = store.list(&ListQuery { since: keys[10].1, ..query(100, ListFilter::default()) }).await.unwrap();
    assert_eq!(late.jobs.iter().map(|j| &j.key).collect::<Vec<_>>(), vec![&keys[11].0, &keys[10].0]);
    let early = store.list(&ListQuery { until: keys[1].1, ..query(100, ListFilter::default()) }).await.unwrap();
    assert_eq!(early.jobs.iter().map(|j| &j.key).collect::<Vec<_>>(), vec![&keys[1].0, &keys[0].0]);

    // Filters.
    let only = |filter: ListFilter| {
        let store = &store;
        async move {
            let page = store.list(&query(100, filter)).await.unwrap();
            page.jobs.into_iter().map(|j| j.key).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        only(ListFilter { statuses: vec![JobStatus::Failed], ..Default::default() }).await,
        vec![keys[7].0.clone()]
    );
    assert_eq!(
        only(ListFilter { statuses: vec![JobStatus::Failed, JobStatus::Retrying], ..Default::default() }).await,
        vec![keys[9].0.clone(), keys[7].0.clone()]
    );
    assert_eq!(only(ListFilter { user: Some("u4".into()), ..Default::default() }).await, vec![keys[4].0.clone()]);
    let others: Vec<JobKey> =
        keys.iter().rev().filter(|(_, _, rule)| *rule == other).map(|(k, _, _)| k.clone()).collect();
    assert_eq!(only(ListFilter { rule: Some("contract-other".into()), ..Default::default() }).await, others);
    let page =
        store.list(&query(2, ListFilter { statuses: vec![JobStatus::Claimed], ..Default::default() })).await.unwrap();
    assert_eq!(page.jobs.len(), 2, "a filtered page is filled from further reads");
    assert!(page.jobs.iter().all(|j| j.status == JobStatus::Claimed));
}

async fn a_replay_makes_a_new_attempt_and_keeps_the_history(store: impl Store) {
    let (k, r, now) = (key("replay"), rule(), SystemTime::now());
    store.claim(&NewJob { key: &k, rule: &r, token: "a", now }).await.unwrap();
    let first = lease("w1", now + Duration::from_secs(60));
    store.start(&StartJob { key: &k, rule: &r, lease: &first, message: MESSAGE, user: Some("u1"), now }).await.unwrap();
    let failure = Outcome::Failed { reason: "402 credits_exhausted".into(), class: FailureClass::CreditsExhausted };
    store.finish(&k, "w1", &failure, &[], now).await.unwrap();

    let later = now + Duration::from_secs(600);
    assert_eq!(
        store.requeue(&k, JobStatus::Failed, later).await.unwrap(),
        Requeue::Requeued { message: MESSAGE.to_owned() }
    );
    let rec = store.get(&k).await.unwrap().unwrap();
    assert_eq!(rec.status, JobStatus::Retrying);
    assert_eq!(rec.lease_until_ms, None);
    assert_eq!(
        store.claim(&NewJob { key: &k, rule: &r, token: "b", now: later }).await.unwrap(),
        Claim::Duplicate(JobStatus::Retrying),
        "a replayed job is not claimed again by a late sender retry"
    );
    let listed = store
        .list(&ListQuery { since: now, until: later, filter: ListFilter::default(), limit: 100, after: None })
        .await
        .unwrap();
    assert_eq!(listed.jobs.iter().find(|j| j.key == k).map(|j| j.status), Some(JobStatus::Retrying));

    let second = lease("w2", later + Duration::from_secs(60));
    assert_eq!(
        store.start(&StartJob::new(&k, &r, &second, MESSAGE, later)).await.unwrap(),
        Start::Started { attempt: 2 }
    );
    store.finish(&k, "w2", &Outcome::Done { result: json!({"name": "P", "credits": 300}) }, &[], later).await.unwrap();
    let rec = store.get(&k).await.unwrap().unwrap();
    assert_eq!((rec.status, rec.attempts, rec.error), (JobStatus::Done, 2, None));
    assert_eq!(rec.user.as_deref(), Some("u1"), "a start without a user keeps the one known");
    let history: Vec<(JobStatus, Option<&str>)> = rec.history.iter().map(|s| (s.status, s.detail.as_deref())).collect();
    assert_eq!(
        history,
        vec![
            (JobStatus::Running, None),
            (JobStatus::Failed, Some("402 credits_exhausted")),
            (JobStatus::Retrying, Some("replayed by an operator (it was FAILED)")),
            (JobStatus::Running, None),
            (JobStatus::Done, Some("P")),
        ]
    );
    assert!(rec.history.windows(2).all(|w| w[0].at <= w[1].at), "oldest first: {:?}", rec.history);

    // A finished job may be replayed again (the caller decides whether DONE may be).
    assert!(matches!(store.requeue(&k, JobStatus::Done, later).await.unwrap(), Requeue::Requeued { .. }));
}

async fn a_replay_is_refused_when_the_job_moved_on_or_has_no_message(store: impl Store) {
    let (r, now) = (rule(), SystemTime::now());
    let running = key("replay-running");
    store.claim(&NewJob { key: &running, rule: &r, token: "a", now }).await.unwrap();
    store.start(&StartJob::new(&running, &r, &lease("w", now + Duration::from_secs(60)), MESSAGE, now)).await.unwrap();
    assert_eq!(
        store.requeue(&running, JobStatus::Failed, now).await.unwrap(),
        Requeue::Changed(Some(JobStatus::Running)),
        "not the status the operator saw"
    );
    assert_eq!(
        store.requeue(&running, JobStatus::Running, now).await.unwrap(),
        Requeue::Changed(Some(JobStatus::Running)),
        "a worker holds it under a live lease"
    );
    let after_lease = now + Duration::from_secs(120);
    assert!(
        matches!(store.requeue(&running, JobStatus::Running, after_lease).await.unwrap(), Requeue::Requeued { .. }),
        "a job whose worker died (its lease ran out) can be replayed"
    );

    let never_started = key("replay-claimed");
    store.claim(&NewJob { key: &never_started, rule: &r, token: "a", now }).await.unwrap();
    let later = now + CLAIM_LEASE + Duration::from_secs(1);
    assert_eq!(store.requeue(&never_started, JobStatus::Claimed, later).await.unwrap(), Requeue::NoMessage);
    assert_eq!(store.get(&never_started).await.unwrap().unwrap().status, JobStatus::Claimed, "nothing changed");

    assert_eq!(store.requeue(&key("replay-missing"), JobStatus::Failed, now).await.unwrap(), Requeue::Changed(None));
}
