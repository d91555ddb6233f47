//! The behaviour every event-store adapter must have, as one suite: the memory twin runs
//! it in unit tests, the DynamoDB adapter against moto in the integration tests.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::json;

use super::{
    CLAIM_LEASE, Claim, DeliveryClaim, DeliveryState, DeliveryStatus, FailureClass, JobStatus, Lease, NewJob, Outcome,
    RECORD_TTL, Start, Store, StoreError,
};
use crate::domain::{JobKey, RuleName};

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
    store.start(&k, &r, &lease("w", now + Duration::from_secs(60)), now).await.unwrap();
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
    store.start(&k, &r, &lease("w", now + Duration::from_secs(60)), now).await.unwrap();
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
    store.start(&k, &rule(), &lease("w2", after_ttl + Duration::from_secs(60)), after_ttl).await.unwrap();
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
    store.start(&k, &r, &lease(owner, now + Duration::from_secs(60)), now).await.unwrap();
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
    assert_eq!(store.start(&k, &r, &lease("w1", until), now).await.unwrap(), Start::Started { attempt: 1 });
    let rec = store.get(&k).await.unwrap().unwrap();
    assert_eq!((rec.status, rec.attempts), (JobStatus::Running, 1));
    assert_eq!(
        store.start(&k, &r, &lease("w1", until), now).await.unwrap(),
        Start::Started { attempt: 1 },
        "the lease holder's own start, seen again (a retried write that had been applied), is still its own"
    );
    assert_eq!(
        store.start(&k, &r, &lease("w2", until), now).await.unwrap(),
        Start::Busy,
        "a live lease keeps others out"
    );
    assert_eq!(
        store.claim(&NewJob { key: &k, rule: &r, token: "b", now }).await.unwrap(),
        Claim::Duplicate(JobStatus::Running)
    );
    let after = until + Duration::from_secs(1);
    assert_eq!(
        store.start(&k, &r, &lease("w2", after + Duration::from_secs(60)), after).await.unwrap(),
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
        store.start(&k, &r, &lease("w", now + Duration::from_secs(60)), now).await.unwrap();
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
            store.start(&k, &r, &lease("w2", later + Duration::from_secs(60)), later).await.unwrap(),
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
    store.start(&k, &r, &lease("w1", now + Duration::from_secs(60)), now).await.unwrap();
    let err = store.finish(&k, "w2", &Outcome::Done { result: json!({}) }, &[], now).await.unwrap_err();
    assert!(matches!(err, StoreError::LeaseLost(_)), "{err}");
    let err = store.release(&k, "w2", "x", now).await.unwrap_err();
    assert!(matches!(err, StoreError::LeaseLost(_)), "{err}");
    assert_eq!(store.get(&k).await.unwrap().unwrap().status, JobStatus::Running);
}

async fn released_jobs_run_again(store: impl Store) {
    let (k, r, now) = (key("release-run"), rule(), SystemTime::now());
    store.claim(&NewJob { key: &k, rule: &r, token: "a", now }).await.unwrap();
    store.start(&k, &r, &lease("w1", now + Duration::from_secs(60)), now).await.unwrap();
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
        store.start(&k, &r, &lease("w2", now + Duration::from_secs(60)), now).await.unwrap(),
        Start::Started { attempt: 2 }
    );
}

async fn a_job_without_a_record_can_start(store: impl Store) {
    let (k, r, now) = (key("redrive"), rule(), SystemTime::now());
    assert_eq!(
        store.start(&k, &r, &lease("w", now + Duration::from_secs(60)), now).await.unwrap(),
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
