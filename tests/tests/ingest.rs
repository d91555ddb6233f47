//! The ingest side over HTTP, with the in-memory store and queue: every answer the
//! webhook endpoint can give, and what it stores and queues (or not) for each.

use std::sync::Arc;

use relay_tests::app::{SEGMENT_SECRET, TestApp, verifiers};
use relay_tests::faults::{Watched, WatchedQueue};
use relay_tests::payloads::{cio_email, segment_track, segment_track_at};
use serde_json::json;
use shared::domain::JobKey;
use shared::ingest::MAX_BODY_BYTES;
use shared::queue::{Job, JobMessage, MemoryQueue};
use shared::store::{JobStatus, JobStore, MemoryStore, StartJob};
use shared::triggers::Triggers;
use shared::verify;

struct Setup {
    app: TestApp,
    store: MemoryStore,
    queue: MemoryQueue,
}

async fn setup() -> Setup {
    let (store, queue) = (MemoryStore::new(), MemoryQueue::default());
    let app = TestApp::spawn(Arc::new(store.clone()), Arc::new(queue.clone())).await;
    Setup { app, store, queue }
}

fn trial_started(id: &str) -> String {
    segment_track(id, "trial_started", "usr_k8m2n", json!({"plan": "pro", "source": "google"})).to_string()
}

fn assert_untouched(s: &Setup) {
    assert!(s.store.jobs().is_empty(), "nothing stored: {:?}", s.store.jobs());
    assert_eq!(s.queue.sent(), 0, "nothing queued");
}

#[tokio::test]
async fn a_signed_matching_event_is_claimed_and_queued_once() {
    let s = setup().await;
    let r = s.app.post_segment(&trial_started("msg-1")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.body,
        json!({"status": "queued", "event_id": "msg-1", "jobs": [{"rule": "segment-trial-started", "status": "queued"}]})
    );

    let bodies = s.queue.peek();
    assert_eq!(bodies.len(), 1);
    let message = JobMessage::from_body(&bodies[0]).unwrap();
    assert_eq!(message.key.as_str(), "segment#msg-1#segment-trial-started");
    assert_eq!(message.rule.as_str(), "segment-trial-started");
    let Job::Event { event } = message.job else { panic!("an event job") };
    assert_eq!(event.user_id.as_deref(), Some("usr_k8m2n"));
    assert_eq!(event.fields["plan"], json!("pro"), "properties win over context.traits");

    let record = s.store.get(&message.key).await.unwrap().unwrap();
    assert_eq!(record.status, JobStatus::Claimed);
}

#[tokio::test]
async fn a_redelivered_event_is_a_duplicate_and_not_queued_again() {
    let s = setup().await;
    assert_eq!(s.app.post_segment(&trial_started("msg-2")).await.body["status"], "queued");
    // Before a worker has the job, the claim is all the store knows: a redelivery is told to
    // retry, not `duplicate`, since the claim alone does not prove the job was queued.
    let r = s.app.post_segment(&trial_started("msg-2")).await;
    assert_eq!((r.status, r.code()), (503, "in_flight"), "{:?}", r.body);
    // Once a worker has it, the job was surely queued: a redelivery is a duplicate.
    let key = JobKey::from_stored("segment#msg-2#segment-trial-started");
    let rule = shared::domain::RuleName::parse("segment-trial-started").unwrap();
    let now = std::time::SystemTime::now();
    let lease = shared::store::Lease { owner: "w".into(), until: now + std::time::Duration::from_secs(60) };
    s.store.start(&StartJob::new(&key, &rule, &lease, "{}", now)).await.unwrap();
    let r = s.app.post_segment(&trial_started("msg-2")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "duplicate");
    assert_eq!(s.queue.sent(), 1);
}

#[tokio::test]
async fn twenty_concurrent_deliveries_queue_one_job() {
    let s = setup().await;
    let body = trial_started("msg-race");
    let answers = futures::future::join_all((0..20).map(|_| s.app.post_segment(&body))).await;
    let queued = answers.iter().filter(|r| r.status == 200 && r.body["status"] == "queued").count();
    assert_eq!(queued, 1, "{answers:?}");
    assert!(
        answers.iter().all(|r| r.body["status"] == "queued" || (r.status, r.code()) == (503, "in_flight")),
        "the others meet a claim that may not be queued yet: retry, never `duplicate`: {answers:?}"
    );
    assert_eq!(s.queue.sent(), 1);
    assert_eq!(s.store.jobs().len(), 1);
}

#[tokio::test]
async fn an_event_no_rule_listens_for_is_ignored_without_touching_store_or_queue() {
    let store = Arc::new(Watched::new(MemoryStore::new()));
    let queue = Arc::new(WatchedQueue::new(MemoryQueue::default()));
    let app = TestApp::spawn(store.clone(), queue.clone()).await;
    let body = segment_track("msg-3", "Page Viewed", "u1", json!({})).to_string();
    let r = app.post_segment(&body).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "ignored");
    assert!(r.body["reason"].as_str().unwrap().contains("Page Viewed"), "{:?}", r.body);
    assert_eq!((store.calls(), queue.sends()), (0, 0), "a non-matching event makes no store or queue call");
}

#[tokio::test]
async fn conditions_that_fail_ignore_the_event() {
    let rules = Triggers::parse(
        r#"[[rule]]
name = "big-orders"
source = "segment"
event = "Order Completed"
conditions = [{ field = "total", gte = 100 }]
action = "research"
research = { prompt = "Why {total}?" }"#,
        "t.toml",
    )
    .unwrap()
    .rules;
    let (store, queue) = (MemoryStore::new(), MemoryQueue::default());
    let app = TestApp::spawn_with(rules, verifiers(false), Arc::new(store.clone()), Arc::new(queue.clone())).await;
    let small = segment_track("o-1", "Order Completed", "u", json!({"total": 20})).to_string();
    let r = app.post_segment(&small).await;
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("ignored")));
    let big = segment_track("o-2", "Order Completed", "u", json!({"total": 250})).to_string();
    assert_eq!(app.post_segment(&big).await.body["status"], "queued");
    assert_eq!(queue.sent(), 1);
}

#[tokio::test]
async fn an_event_matching_two_rules_makes_two_jobs() {
    let rules = Triggers::parse(
        r#"[[rule]]
name = "persona"
source = "segment"
event = "trial_started"
action = "create_persona"
persona = { name = "T {user_id}", description = "d" }

[[rule]]
name = "research"
source = "segment"
event = "trial_started"
action = "research"
research = { prompt = "p" }"#,
        "t.toml",
    )
    .unwrap()
    .rules;
    let (store, queue) = (MemoryStore::new(), MemoryQueue::default());
    let app = TestApp::spawn_with(rules, verifiers(false), Arc::new(store.clone()), Arc::new(queue.clone())).await;
    let r = app.post_segment(&trial_started("msg-two")).await;
    assert_eq!(
        r.body["jobs"],
        json!([{"rule": "persona", "status": "queued"}, {"rule": "research", "status": "queued"}])
    );
    assert_eq!(queue.sent(), 2);
    let keys: Vec<String> = store.jobs().into_iter().map(|j| j.key.to_string()).collect();
    assert_eq!(keys, ["segment#msg-two#persona", "segment#msg-two#research"]);
}

#[tokio::test]
async fn a_wrong_or_missing_signature_is_401_and_stores_nothing() {
    let s = setup().await;
    let body = trial_started("msg-4");
    let wrong = verify::segment::sign("not-the-secret", body.as_bytes());
    let r = s
        .app
        .post(
            "/webhooks/segment",
            &[("content-type", "application/json".into()), ("x-signature", wrong)],
            body.clone().into_bytes(),
        )
        .await;
    assert_eq!((r.status, r.code()), (401, "bad_signature"));
    assert!(r.message().contains("does not match"), "{:?}", r.body);

    let r = s.app.post("/webhooks/segment", &[("content-type", "application/json".into())], body.into_bytes()).await;
    assert_eq!((r.status, r.code()), (401, "missing_signature"));
    assert!(r.message().contains("x-signature"), "{:?}", r.body);
    assert_untouched(&s);
}

#[tokio::test]
async fn a_tampered_body_is_401() {
    let s = setup().await;
    let body = trial_started("msg-5");
    let signature = verify::segment::sign(SEGMENT_SECRET, body.as_bytes());
    let tampered = body.replace("\"pro\"", "\"enterprise\"");
    let r = s
        .app
        .post(
            "/webhooks/segment",
            &[("content-type", "application/json".into()), ("x-signature", signature)],
            tampered.into_bytes(),
        )
        .await;
    assert_eq!(r.status, 401);
    assert_untouched(&s);
}

#[tokio::test]
async fn malformed_json_is_400_and_stores_nothing() {
    let s = setup().await;
    let r = s.app.post_segment(r#"{"type":"track","messageId":"#).await;
    assert_eq!((r.status, r.code()), (400, "malformed_json"));
    assert!(r.message().starts_with("the body is not valid JSON"), "{:?}", r.body);
    assert_untouched(&s);
}

#[tokio::test]
async fn an_event_without_an_id_is_400() {
    let s = setup().await;
    let r = s.app.post_segment(r#"{"type":"track","event":"trial_started","userId":"u"}"#).await;
    assert_eq!((r.status, r.code()), (400, "missing_id"));
    assert!(r.message().contains("messageId"), "{:?}", r.body);
    let r = s.app.post_customerio(r#"{"metric":"bounced","object_type":"email","data":{}}"#).await;
    assert_eq!((r.status, r.code()), (400, "missing_id"));
    assert!(r.message().contains("event_id"), "{:?}", r.body);
    assert_untouched(&s);
}

#[tokio::test]
async fn a_body_over_1_mib_is_413() {
    let s = setup().await;
    let padding = "x".repeat(MAX_BODY_BYTES);
    let body = segment_track("msg-big", "trial_started", "u", json!({"padding": padding})).to_string();
    let r = s.app.post_segment(&body).await;
    assert_eq!((r.status, r.code()), (413, "payload_too_large"));
    assert!(r.message().contains("1048576"), "{:?}", r.body);
    assert_untouched(&s);
}

#[tokio::test]
async fn an_event_too_large_for_the_queue_is_413_before_anything_is_stored() {
    let s = setup().await;
    let padding = "x".repeat(300 * 1024);
    let body = segment_track("msg-wide", "trial_started", "u", json!({"padding": padding})).to_string();
    let r = s.app.post_segment(&body).await;
    assert_eq!((r.status, r.code()), (413, "payload_too_large"));
    assert!(r.message().contains("msg-wide"), "{:?}", r.body);
    assert_untouched(&s);
}

#[tokio::test]
async fn a_body_that_is_not_json_by_content_type_is_415() {
    let s = setup().await;
    let body = trial_started("msg-6");
    let signature = verify::segment::sign(SEGMENT_SECRET, body.as_bytes());
    let r = s
        .app
        .post(
            "/webhooks/segment",
            &[("content-type", "text/plain".into()), ("x-signature", signature.clone())],
            body.clone().into_bytes(),
        )
        .await;
    assert_eq!((r.status, r.code()), (415, "unsupported_media_type"));
    let r = s
        .app
        .post(
            "/webhooks/segment",
            &[("content-type", "application/json; charset=utf-8".into()), ("x-signature", signature)],
            body.into_bytes(),
        )
        .await;
    assert_eq!(r.status, 200, "parameters on application/json are fine");
}

#[tokio::test]
async fn an_unknown_source_or_path_is_404() {
    let s = setup().await;
    let r = s.app.post("/webhooks/stripe", &[("content-type", "application/json".into())], b"{}".to_vec()).await;
    assert_eq!((r.status, r.code()), (404, "unknown_source"));
    assert!(r.message().contains("/webhooks/segment"), "{:?}", r.body);
    let r = s.app.post("/hooks", &[], b"{}".to_vec()).await;
    assert_eq!(r.status, 404);
    assert_untouched(&s);
}

#[tokio::test]
async fn healthz_answers() {
    let s = setup().await;
    let r = s.app.get("/healthz").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "ok");
}

#[tokio::test]
async fn a_failing_queue_leaves_no_claim_and_answers_503_so_the_sender_retries() {
    let s = setup().await;
    s.queue.refuse_sends(true);
    let r = s.app.post_segment(&trial_started("msg-7")).await;
    assert_eq!((r.status, r.code()), (503, "queue_unavailable"));
    assert!(s.store.jobs().is_empty(), "the claim was deleted: {:?}", s.store.jobs());

    s.queue.refuse_sends(false);
    let r = s.app.post_segment(&trial_started("msg-7")).await;
    assert_eq!(r.body["status"], "queued", "the retry is not mistaken for a duplicate");
    assert_eq!(s.queue.sent(), 1);
}

#[tokio::test]
async fn a_failing_store_answers_503_and_queues_nothing() {
    let store = Arc::new(Watched::new(MemoryStore::new()));
    store.broken.store(true, std::sync::atomic::Ordering::SeqCst);
    let queue = MemoryQueue::default();
    let app = TestApp::spawn(store.clone(), Arc::new(queue.clone())).await;
    let r = app.post_segment(&trial_started("msg-8")).await;
    assert_eq!((r.status, r.code()), (503, "store_unavailable"));
    assert!(!r.message().contains("test broke"), "5xx bodies carry no internals: {:?}", r.body);
    assert_eq!(queue.sent(), 0);
}

#[tokio::test]
async fn customerio_events_are_verified_with_the_timestamp_and_queued() {
    let s = setup().await;
    let body = cio_email("01E4C4CT6YDC7Y5M7FE1GWWPQJ", "unsubscribed", "cust-42").to_string();
    let r = s.app.post_customerio(&body).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["jobs"], json!([{"rule": "cio-high-value-alert", "status": "queued"}]));
    let message = JobMessage::from_body(&s.queue.peek()[0]).unwrap();
    assert_eq!(message.key, JobKey::from_stored("customerio#01E4C4CT6YDC7Y5M7FE1GWWPQJ#cio-high-value-alert"));
    let Job::Event { event } = message.job else { panic!("an event job") };
    assert_eq!(event.user_id.as_deref(), Some("cust-42"));
}

#[tokio::test]
async fn a_customerio_retry_signed_days_ago_is_accepted() {
    // Customer.io retries a failing event for up to 7 days, and may send the first signature.
    let s = setup().await;
    let now_secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let body = cio_email("ev-held-back", "bounced", "c1").to_string();
    let r = s.app.post_customerio_at(&body, now_secs - 3 * 86_400).await;
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("queued")), "{:?}", r.body);
    let body = cio_email("ev-week", "bounced", "c1").to_string();
    let r = s.app.post_customerio_at(&body, now_secs - 7 * 86_400 + 60).await;
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("queued")), "{:?}", r.body);
    assert_eq!(s.queue.sent(), 2);
}

#[tokio::test]
async fn customerio_stale_timestamps_and_body_only_signatures_are_401() {
    let s = setup().await;
    let body = cio_email("ev-stale", "bounced", "c1").to_string();
    let now_secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let eight_days_ago = now_secs - 8 * 86_400;
    let r = s.app.post_customerio_at(&body, eight_days_ago).await;
    assert_eq!((r.status, r.code()), (401, "stale_timestamp"));
    assert!(r.message().contains("CIO_TIMESTAMP_TOLERANCE_SECS"), "{:?}", r.body);
    let r = s.app.post_customerio_at(&body, now_secs + 600).await;
    assert_eq!((r.status, r.code()), (401, "future_timestamp"), "{:?}", r.body);

    // Mavera's sample signs the body alone; Customer.io does not.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs().to_string();
    let body_only = {
        use hmac::{KeyInit, Mac};
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(relay_tests::app::CIO_SECRET.as_bytes()).unwrap();
        mac.update(body.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    };
    let r = s
        .app
        .post(
            "/webhooks/customerio",
            &[("content-type", "application/json".into()), ("x-cio-timestamp", now), ("x-cio-signature", body_only)],
            body.into_bytes(),
        )
        .await;
    assert_eq!((r.status, r.code()), (401, "bad_signature"));
    assert_untouched(&s);
}

#[tokio::test]
async fn customerio_metrics_outside_the_rules_are_ignored() {
    let s = setup().await;
    let r = s.app.post_customerio(&cio_email("ev-open", "opened", "c1").to_string()).await;
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("ignored")));
    assert_untouched(&s);
}

fn batch(ids: &[&str]) -> (String, String) {
    let events: Vec<String> = ids.iter().map(|id| trial_started(id)).collect();
    (format!("[{}]", events.join(",")), events[0].clone())
}

#[tokio::test]
async fn a_batch_signed_whole_queues_each_event() {
    let s = setup().await;
    let (body, _) = batch(&["b-1", "b-2", "b-3"]);
    let r = s.app.post_segment(&body).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "queued");
    let ids: Vec<_> =
        r.body["events"].as_array().unwrap().iter().map(|e| e["event_id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids, ["b-1", "b-2", "b-3"]);
    assert_eq!(s.queue.sent(), 3);
}

#[tokio::test]
async fn a_batch_signed_on_its_first_event_is_refused_by_default_and_says_how_to_allow_it() {
    let s = setup().await;
    let (body, first) = batch(&["f-1", "f-2"]);
    let signature = verify::segment::sign(SEGMENT_SECRET, first.as_bytes());
    let headers = [("content-type", "application/json".to_owned()), ("x-signature", signature)];
    let r = s.app.post("/webhooks/segment", &headers, body.clone().into_bytes()).await;
    assert_eq!((r.status, r.code()), (401, "batch_signed_first_event_only"));
    assert!(r.message().contains("SEGMENT_ALLOW_FIRST_EVENT_SIGNATURE=true"), "{:?}", r.body);
    assert_untouched(&s);

    let (store, queue) = (MemoryStore::new(), MemoryQueue::default());
    let allowing = TestApp::spawn_with(
        Triggers::embedded().unwrap().rules,
        verifiers(true),
        Arc::new(store),
        Arc::new(queue.clone()),
    )
    .await;
    let r = allowing.post("/webhooks/segment", &headers, body.into_bytes()).await;
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("queued")));
    assert_eq!(queue.sent(), 2);
}

#[tokio::test]
async fn a_bad_event_in_a_batch_is_reported_and_its_neighbours_are_queued() {
    // Segment does not retry a 4xx: refusing the whole batch would lose the good events.
    let s = setup().await;
    let body = format!(
        "[{},{},{},{}]",
        trial_started("ok-1"),
        r#"{"type":"track","event":"trial_started"}"#,
        r#"{"type":"track","event":"trial_started","messageId":"bad-props","properties":"oops"}"#,
        trial_started("ok-2"),
    );
    let r = s.app.post_segment(&body).await;
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("queued")), "{:?}", r.body);
    let events = r.body["events"].as_array().unwrap();
    assert_eq!(events[0]["status"], "queued");
    assert_eq!(events[1]["status"], "rejected");
    assert_eq!((events[1]["index"].as_u64(), events[1]["error"]["code"].as_str()), (Some(1), Some("missing_id")));
    assert!(events[1]["error"]["message"].as_str().unwrap().starts_with("event 1 of the batch"), "{events:?}");
    assert_eq!((events[2]["index"].as_u64(), events[2]["error"]["code"].as_str()), (Some(2), Some("invalid_fields")));
    assert!(events[2]["error"]["message"].as_str().unwrap().contains("`properties` must be an object"), "{events:?}");
    assert_eq!(events[3]["status"], "queued");
    assert_eq!(s.queue.sent(), 2);
    assert_eq!(s.store.jobs().len(), 2);
}

#[tokio::test]
async fn a_batch_with_no_good_event_is_400_and_stores_nothing() {
    let s = setup().await;
    let body = format!("[{},{}]", r#"{"type":"track","event":"trial_started"}"#, r#"[1]"#);
    let r = s.app.post_segment(&body).await;
    assert_eq!((r.status, r.code()), (400, "missing_id"));
    assert!(r.message().starts_with("event 0 of the batch"), "{:?}", r.body);
    assert_untouched(&s);
}

#[tokio::test]
async fn a_signed_segment_event_older_than_the_dedupe_horizon_is_refused() {
    // Segment signs no time: a captured request verifies forever, so its own date decides.
    let s = setup().await;
    let nine_days_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(9 * 86_400);
    let old = segment_track_at("old-1", "trial_started", "u1", json!({}), nine_days_ago).to_string();
    let r = s.app.post_segment(&old).await;
    assert_eq!((r.status, r.code()), (401, "stale_event"), "{:?}", r.body);
    assert_untouched(&s);

    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 3600);
    let retried = segment_track_at("retried-1", "trial_started", "u2", json!({}), two_hours_ago).to_string();
    let body = format!("[{old},{retried}]");
    let r = s.app.post_segment(&body).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["events"][0]["error"]["code"], "stale_event");
    assert_eq!(r.body["events"][1]["status"], "queued", "a Segment retry within its 4 hours goes through");
    assert_eq!(s.queue.sent(), 1);
}

/// A batch signed on its first event only: the body, its first event, and the headers.
async fn first_event_signed(ids: &[&str]) -> (String, String, Vec<(&'static str, String)>) {
    let (body, first) = batch(ids);
    let signature = verify::segment::sign(SEGMENT_SECRET, first.as_bytes());
    (body, first, vec![("content-type", "application/json".to_owned()), ("x-signature", signature)])
}

#[tokio::test]
async fn a_first_event_signature_is_accepted_once_and_cannot_carry_other_events() {
    let (store, queue) = (MemoryStore::new(), MemoryQueue::default());
    let app = TestApp::spawn_with(
        shared::triggers::Triggers::embedded().unwrap().rules,
        verifiers(true),
        Arc::new(store),
        Arc::new(queue.clone()),
    )
    .await;
    let (body, first, headers) = first_event_signed(&["g-1", "g-2"]).await;
    let r = app.post("/webhooks/segment", &headers, body.clone().into_bytes()).await;
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("queued")), "{:?}", r.body);
    assert_eq!(queue.sent(), 2);

    // The captured request with unsigned events added: refused, nothing queued.
    let forged = format!("[{first},{},{}]", trial_started("forged-1"), trial_started("forged-2"));
    let r = app.post("/webhooks/segment", &headers, forged.into_bytes()).await;
    assert_eq!((r.status, r.code()), (401, "batch_replayed"), "{:?}", r.body);
    // And the captured request itself, replayed: refused too.
    let r = app.post("/webhooks/segment", &headers, body.into_bytes()).await;
    assert_eq!((r.status, r.code()), (401, "batch_replayed"), "{:?}", r.body);
    assert_eq!(queue.sent(), 2);
}

#[tokio::test]
async fn a_first_event_signed_batch_that_failed_can_be_retried() {
    let store = Arc::new(Watched::new(MemoryStore::new()));
    let queue = MemoryQueue::default();
    let app = TestApp::spawn_with(
        shared::triggers::Triggers::embedded().unwrap().rules,
        verifiers(true),
        store.clone(),
        Arc::new(queue.clone()),
    )
    .await;
    let (body, _, headers) = first_event_signed(&["h-1", "h-2"]).await;
    store.broken.store(true, std::sync::atomic::Ordering::SeqCst);
    let r = app.post("/webhooks/segment", &headers, body.clone().into_bytes()).await;
    assert_eq!(r.status, 503, "{:?}", r.body);
    store.broken.store(false, std::sync::atomic::Ordering::SeqCst);
    let r = app.post("/webhooks/segment", &headers, body.into_bytes()).await;
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("queued")), "Segment's retry: {:?}", r.body);
    assert_eq!(queue.sent(), 2);
}

#[tokio::test]
async fn a_first_event_signed_batch_is_bounded_and_must_be_dated() {
    let (store, queue) = (MemoryStore::new(), MemoryQueue::default());
    let app = TestApp::spawn_with(
        shared::triggers::Triggers::embedded().unwrap().rules,
        verifiers(true),
        Arc::new(store.clone()),
        Arc::new(queue.clone()),
    )
    .await;
    let ids: Vec<String> = (0..=shared::ingest::MAX_FIRST_EVENT_SIGNED_EVENTS).map(|i| format!("big-{i}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let (body, _, headers) = first_event_signed(&ids).await;
    let r = app.post("/webhooks/segment", &headers, body.into_bytes()).await;
    assert_eq!((r.status, r.code()), (413, "batch_too_large"), "{:?}", r.body);

    let first = r#"{"type":"track","event":"trial_started","messageId":"undated-1","userId":"u"}"#;
    let body = format!("[{first},{}]", trial_started("undated-2"));
    let signature = verify::segment::sign(SEGMENT_SECRET, first.as_bytes());
    let headers = [("content-type", "application/json".to_owned()), ("x-signature", signature)];
    let r = app.post("/webhooks/segment", &headers, body.into_bytes()).await;
    assert_eq!((r.status, r.code()), (401, "undated_first_event"), "{:?}", r.body);
    assert_eq!(queue.sent(), 0);
    assert!(store.jobs().is_empty());
}

#[tokio::test]
async fn customerio_webhooks_from_outside_the_allow_list_are_refused_before_anything_else() {
    let (store, queue) = (MemoryStore::new(), MemoryQueue::default());
    let app = |allowed: &str| {
        let settings = shared::ingest::Settings {
            rules: Arc::new(shared::triggers::Triggers::embedded().unwrap().rules),
            verifiers: verifiers(false),
            cio_sources: shared::ingest::IpAllowList::parse(allowed).unwrap(),
        };
        TestApp::serve(settings, Arc::new(store.clone()), Arc::new(queue.clone()))
    };
    let elsewhere = app("34.71.200.0/24, 35.188.196.183").await;
    let body = cio_email("ip-1", "bounced", "c1").to_string();
    let r = elsewhere.post_customerio(&body).await;
    assert_eq!((r.status, r.code()), (403, "source_ip_not_allowed"), "{:?}", r.body);
    assert!(r.message().contains("CIO_ALLOWED_SOURCE_IPS") && r.message().contains("127.0.0.1"), "{:?}", r.body);
    // Refused before the body is read: not even a malformed one gets further.
    let r = elsewhere.post("/webhooks/customerio", &[("content-type", "application/json".into())], b"{".to_vec()).await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert_eq!(queue.sent(), 0);
    // Segment is not Customer.io: the list does not apply to it.
    assert_eq!(elsewhere.post_segment(&trial_started("ip-seg")).await.body["status"], "queued");

    let here = app("127.0.0.0/8").await;
    let r = here.post_customerio(&body).await;
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("queued")), "{:?}", r.body);
}

#[tokio::test]
async fn an_unsigned_request_is_refused_before_its_body_is_parsed_or_even_measured() {
    let s = setup().await;
    let json = ("content-type", "application/json".to_owned());
    let r = s.app.post("/webhooks/segment", std::slice::from_ref(&json), b"{not json".to_vec()).await;
    assert_eq!((r.status, r.code()), (401, "missing_signature"), "{:?}", r.body);
    let r = s.app.post("/webhooks/segment", std::slice::from_ref(&json), vec![b' '; MAX_BODY_BYTES + 1]).await;
    assert_eq!((r.status, r.code()), (401, "missing_signature"), "{:?}", r.body);
    let only_signature = [json.clone(), ("x-cio-signature", "0".repeat(64))];
    let r = s.app.post("/webhooks/customerio", &only_signature, b"{".to_vec()).await;
    assert_eq!((r.status, r.code()), (401, "missing_signature"), "{:?}", r.body);
    assert_untouched(&s);
}
