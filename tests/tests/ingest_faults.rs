//! Ingest when AWS misbehaves: moto behind the fault-injecting proxy, through the real SDK
//! with the functions' own timeouts. What must hold: a request is answered within
//! Customer.io's 4 s; an event is acknowledged (`queued` or `duplicate`) only once its job
//! is on the queue; a claim that was never sent is never called a duplicate.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use relay_tests::app::TestApp;
use relay_tests::aws::{Aws, text};
use relay_tests::fault_proxy::{Fault, FaultProxy};
use relay_tests::payloads::{cio_email, segment_track};
use serde_json::json;
use shared::domain::{JobKey, RuleName};
use shared::queue::{JobMessage, SqsQueue};
use shared::store::{CLAIM_LEASE, ClaimStore, DynamoStore, JobStore, Lease, NewJob, Start, StartJob};

/// The table and queue on moto, and clients for both through the proxy.
struct Rig {
    aws: Aws,
    proxy: FaultProxy,
    store: DynamoStore,
    queue: SqsQueue,
}

async fn rig() -> Rig {
    let aws = Aws::fresh().await;
    let proxy = FaultProxy::start().await;
    let sdk = proxy.sdk_config().await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), &aws.table);
    let queue = SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), &aws.queue_url);
    Rig { aws, proxy, store, queue }
}

fn trial_started(id: &str) -> String {
    segment_track(id, "trial_started", "usr_k8m2n", json!({"plan": "pro"})).to_string()
}

fn keys_of(bodies: &[String]) -> Vec<String> {
    bodies.iter().map(|b| JobMessage::from_body(b).unwrap().key.to_string()).collect()
}

#[tokio::test]
async fn a_claim_whose_response_was_lost_is_still_ours_and_gets_queued() {
    let rig = rig().await;
    let app = TestApp::spawn(Arc::new(rig.store.clone()), Arc::new(rig.queue.clone())).await;
    // The claim's PutItem is applied, its answer lost; the SDK retries it, and the retry's
    // condition fails against the claim the first attempt wrote.
    rig.proxy.inject("PutItem", Fault::LoseResponse, 1);
    let r = app.post_segment(&trial_started("lost-put")).await;
    assert_eq!(rig.proxy.injected("PutItem"), 1);
    assert!(rig.proxy.calls("PutItem") >= 2, "the SDK retried the write");
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("queued")), "{:?}", r.body);
    assert_eq!(keys_of(&rig.aws.drain(&rig.aws.queue_url).await), ["segment#lost-put#segment-trial-started"]);
}

#[tokio::test]
async fn a_claim_whose_answer_timed_out_after_it_was_applied_is_still_ours() {
    let rig = rig().await;
    let app = TestApp::spawn(Arc::new(rig.store.clone()), Arc::new(rig.queue.clone())).await;
    rig.proxy.inject("PutItem", Fault::ApplyThenStall, 1);
    let r = app.post_segment(&trial_started("stalled-put")).await;
    // The stall costs one SDK attempt (2 s) of the 3.5 s budget: the send may not fit in what
    // is left on a loaded machine. Then the answer is 503 and the claim is deleted, so the
    // sender's retry goes through; never `duplicate`, never an unsent acknowledgement.
    let r = if r.status == 503 {
        assert_eq!(r.code(), "queue_unavailable", "{:?}", r.body);
        app.post_segment(&trial_started("stalled-put")).await
    } else {
        r
    };
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("queued")), "{:?}", r.body);
    assert_eq!(rig.aws.drain(&rig.aws.queue_url).await.len(), 1);
}

#[tokio::test]
async fn a_worker_start_whose_response_was_lost_still_runs_the_job() {
    let rig = rig().await;
    let (key, rule) = (JobKey::from_stored("segment#lost-start#r"), RuleName::parse("r").unwrap());
    let now = SystemTime::now();
    rig.aws.store().claim(&NewJob { key: &key, rule: &rule, token: "t", now }).await.unwrap();
    rig.proxy.inject("UpdateItem", Fault::LoseResponse, 1);
    let lease = Lease { owner: "worker-1".into(), until: now + Duration::from_secs(60) };
    let started = rig.store.start(&StartJob::new(&key, &rule, &lease, "{}", now)).await.unwrap();
    assert_eq!(rig.proxy.injected("UpdateItem"), 1);
    assert_eq!(
        started,
        Start::Started { attempt: 1 },
        "the retried update met our own lease: the job is ours to run, not someone else's"
    );
    rig.proxy.inject("UpdateItem", Fault::LoseResponse, 1);
    let done = shared::store::Outcome::Done { result: json!({"persona_id": "p"}) };
    let finish = rig.store.finish(&key, "worker-1", &done, &[], SystemTime::now());
    finish.await.expect("a finish whose answer was lost was still ours");
    let record = rig.aws.store().get(&key).await.unwrap().unwrap();
    assert_eq!(record.status, shared::store::JobStatus::Done);
}

#[tokio::test]
async fn a_stalling_queue_is_answered_in_time_and_its_retry_is_never_a_duplicate() {
    let rig = rig().await;
    let app = Arc::new(TestApp::spawn(Arc::new(rig.aws.store()), Arc::new(rig.queue.clone())).await);
    rig.proxy.inject("SendMessage", Fault::Stall, 100);
    let body = cio_email("stall-1", "unsubscribed", "42").to_string();

    let first = {
        let (app, body) = (app.clone(), body.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let r = app.post_customerio(&body).await;
            (r, started.elapsed())
        })
    };
    // Customer.io's own retry, while the first delivery is still trying to send.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let retry = app.post_customerio(&body).await;
    assert_eq!((retry.status, retry.code()), (503, "in_flight"), "{:?}", retry.body);

    let (first, elapsed) = first.await.unwrap();
    assert!(elapsed < Duration::from_secs(4), "answered within Customer.io's 4 s: {elapsed:?}");
    assert_eq!((first.status, first.code()), (503, "queue_unavailable"), "{:?}", first.body);
    assert!(rig.aws.items().await.is_empty(), "the failed delivery's claim was deleted");

    rig.proxy.heal();
    let later = app.post_customerio(&body).await;
    assert_eq!((later.status, later.body["status"].as_str()), (200, Some("queued")), "{:?}", later.body);
    let keys = keys_of(&rig.aws.drain(&rig.aws.queue_url).await);
    assert!(
        keys.iter().all(|k| k == "customerio#stall-1#cio-high-value-alert") && !keys.is_empty(),
        "the job is queued (a stalled send that arrived late may add a second copy): {keys:?}"
    );
}

#[tokio::test]
async fn a_claim_left_by_a_crash_before_the_send_is_retried_then_taken_over() {
    let rig = rig().await;
    let app = TestApp::spawn(Arc::new(rig.aws.store()), Arc::new(rig.aws.queue())).await;
    let rule = RuleName::parse("segment-trial-started").unwrap();

    // A delivery claimed the job and died before sending it; its lease still runs.
    let live = JobKey::from_stored("segment#crash-live#segment-trial-started");
    let now = SystemTime::now();
    rig.aws.store().claim(&NewJob { key: &live, rule: &rule, token: "dead", now }).await.unwrap();
    let r = app.post_segment(&trial_started("crash-live")).await;
    assert_eq!((r.status, r.code()), (503, "in_flight"), "never `duplicate` for an unsent claim: {:?}", r.body);

    // The same, with the lease run out: the retry takes the claim over and sends the job.
    let expired = JobKey::from_stored("segment#crash-old#segment-trial-started");
    let then = now - CLAIM_LEASE - Duration::from_secs(1);
    rig.aws.store().claim(&NewJob { key: &expired, rule: &rule, token: "dead", now: then }).await.unwrap();
    let r = app.post_segment(&trial_started("crash-old")).await;
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("queued")), "{:?}", r.body);
    assert_eq!(keys_of(&rig.aws.drain(&rig.aws.queue_url).await), [expired.to_string()]);
    let items = rig.aws.items().await;
    let taken = items.iter().find(|i| text(i, "pk") == Some(expired.as_str())).unwrap();
    assert_ne!(text(taken, "holder"), Some("dead"), "the claim changed hands");
}

#[tokio::test]
async fn store_errors_and_slow_answers_are_retried_or_refused_never_lost() {
    let rig = rig().await;
    let app = TestApp::spawn(Arc::new(rig.store.clone()), Arc::new(rig.queue.clone())).await;
    // Transient errors the SDK retries within the budget.
    rig.proxy.inject("PutItem", Fault::Fail(500), 1);
    rig.proxy.inject("SendMessage", Fault::Fail(503), 1);
    let r = app.post_segment(&trial_started("flaky")).await;
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("queued")), "{:?}", r.body);
    // An outage: 503, nothing stored, and the retry after it goes through.
    rig.proxy.inject("PutItem", Fault::Fail(500), 100);
    let r = app.post_segment(&trial_started("outage")).await;
    assert_eq!((r.status, r.code()), (503, "store_unavailable"), "{:?}", r.body);
    rig.proxy.heal();
    rig.proxy.inject("PutItem", Fault::Delay(Duration::from_millis(300)), 1);
    let r = app.post_segment(&trial_started("outage")).await;
    assert_eq!(r.body["status"], "queued", "{:?}", r.body);
    let mut keys = keys_of(&rig.aws.drain(&rig.aws.queue_url).await);
    keys.sort();
    assert_eq!(keys, ["segment#flaky#segment-trial-started", "segment#outage#segment-trial-started"]);
}

/// One fault plan: which AWS call breaks, how, how many times.
fn fault_plan() -> impl proptest::strategy::Strategy<Value = Vec<(&'static str, Fault, usize)>> {
    use proptest::prelude::*;
    let operation = prop::sample::select(vec!["PutItem", "SendMessage", "DeleteItem", "GetItem"]);
    let fault = prop_oneof![
        6 => prop::sample::select(vec![500u16, 503, 400]).prop_map(Fault::Fail),
        3 => (50..1500u64).prop_map(|ms| Fault::Delay(Duration::from_millis(ms))),
        3 => Just(Fault::LoseResponse),
        1 => Just(Fault::ApplyThenStall),
        1 => Just(Fault::Stall),
    ];
    prop::collection::vec((operation, fault, 1..4usize), 1..6)
}

#[tokio::test]
async fn under_random_faults_no_acknowledged_event_is_lost() {
    use proptest::strategy::{Strategy, ValueTree};
    let rig = rig().await;
    let app = Arc::new(TestApp::spawn(Arc::new(rig.store.clone()), Arc::new(rig.queue.clone())).await);
    let mut runner = proptest::test_runner::TestRunner::default();
    let rounds = std::env::var("ADVERSARIAL_SCALE").ok().and_then(|s| s.parse::<usize>().ok()).unwrap_or(1) * 3;
    let (mut sent, mut acknowledged, mut requests) = (0, Vec::new(), 0);
    for round in 0..rounds {
        for (operation, fault, times) in fault_plan().new_tree(&mut runner).unwrap().current() {
            rig.proxy.inject(operation, fault, times);
        }
        // Eight events at once, each delivered as a sender does: again after any non-2xx,
        // a second apart, until acknowledged (Customer.io retries for days; 30 s here).
        let deliveries = (0..8).map(|i| {
            let app = app.clone();
            let body = if i % 2 == 0 {
                trial_started(&format!("chaos-{round}-{i}"))
            } else {
                cio_email(&format!("chaos-{round}-{i}"), "unsubscribed", "42").to_string()
            };
            async move {
                let mut attempts = 0;
                let until = Instant::now() + Duration::from_secs(30);
                while Instant::now() < until {
                    attempts += 1;
                    let r = if i % 2 == 0 { app.post_segment(&body).await } else { app.post_customerio(&body).await };
                    if r.status == 200 {
                        return (i, attempts, Some(r.body["status"].as_str().unwrap_or("").to_owned()));
                    }
                    assert!(r.status >= 500, "a fault is never blamed on the sender: {:?}", r.body);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                (i, attempts, None)
            }
        });
        for (i, attempts, answer) in futures::future::join_all(deliveries).await {
            sent += 1;
            requests += attempts;
            let answer = answer.expect("every event is acknowledged once the faults pass");
            assert!(answer == "queued" || answer == "duplicate", "{answer}");
            let rule = if i % 2 == 0 { "segment-trial-started" } else { "cio-high-value-alert" };
            let source = if i % 2 == 0 { "segment" } else { "customerio" };
            acknowledged.push(format!("{source}#chaos-{round}-{i}#{rule}"));
        }
        rig.proxy.heal();
    }
    // Late answers of stalled sends arrive within the SDK's timeouts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let queued = keys_of(&rig.aws.drain(&rig.aws.queue_url).await);
    let lost: Vec<_> = acknowledged.iter().filter(|k| !queued.contains(k)).collect();
    let duplicates = queued.len() - queued.iter().collect::<std::collections::HashSet<_>>().len();
    eprintln!(
        "ingest under faults: {sent} events, {requests} requests, {} acknowledged, {} lost, {duplicates} queued twice",
        acknowledged.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "acknowledged but never queued: {lost:?}");
}
