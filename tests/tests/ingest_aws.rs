//! Ingest against the real AWS SDK and a local AWS endpoint (moto): what lands in DynamoDB
//! and SQS for each kind of request.

use std::sync::Arc;

use relay_tests::app::TestApp;
use relay_tests::aws::{Aws, number, text};
use relay_tests::payloads::segment_track;
use serde_json::json;
use shared::queue::{JobMessage, SqsQueue};
use shared::store::{DynamoStore, contract};

async fn setup() -> (Aws, TestApp) {
    let aws = Aws::fresh().await;
    let app = TestApp::spawn(Arc::new(aws.store()), Arc::new(aws.queue())).await;
    (aws, app)
}

fn trial_started(id: &str) -> String {
    segment_track(id, "trial_started", "usr_k8m2n", json!({"plan": "pro", "source": "google"})).to_string()
}

#[tokio::test]
async fn the_dynamodb_store_satisfies_the_store_contract() {
    let aws = Aws::fresh().await;
    let (client, table) = (aws.dynamo.clone(), aws.table.clone());
    contract::run_all(|| {
        let (client, table) = (client.clone(), table.clone());
        async move { DynamoStore::new(client, table) }
    })
    .await;
}

#[tokio::test]
async fn a_signed_event_lands_as_one_item_and_one_message() {
    let (aws, app) = setup().await;
    let r = app.post_segment(&trial_started("aws-1")).await;
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("queued")), "{:?}", r.body);

    let items = aws.items().await;
    assert_eq!(items.len(), 1, "{items:?}");
    let item = &items[0];
    assert_eq!(text(item, "pk"), Some("segment#aws-1#segment-trial-started"));
    assert_eq!(text(item, "status"), Some("CLAIMED"));
    assert_eq!(text(item, "rule"), Some("segment-trial-started"));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let ttl = number(item, "expires_at").expect("the TTL attribute is set");
    assert!((now + 8 * 86400 - 60..=now + 8 * 86400 + 60).contains(&ttl), "TTL 8 days out: {ttl} vs now {now}");

    let bodies = aws.drain(&aws.queue_url).await;
    assert_eq!(bodies.len(), 1);
    let message = JobMessage::from_body(&bodies[0]).unwrap();
    assert_eq!(message.key.as_str(), "segment#aws-1#segment-trial-started");
}

#[tokio::test]
async fn the_same_event_twenty_times_concurrently_makes_one_item_and_one_message() {
    let (aws, app) = setup().await;
    let body = trial_started("aws-race");
    let answers = futures::future::join_all((0..20).map(|_| app.post_segment(&body))).await;
    assert_eq!(answers.iter().filter(|r| r.status == 200 && r.body["status"] == "queued").count(), 1, "{answers:?}");
    assert!(
        answers.iter().all(|r| r.body["status"] == "queued" || (r.status, r.code()) == (503, "in_flight")),
        "{answers:?}"
    );
    assert_eq!(aws.items().await.len(), 1);
    assert_eq!(aws.drain(&aws.queue_url).await.len(), 1);
}

#[tokio::test]
async fn a_failing_queue_leaves_no_claim_behind() {
    let aws = Aws::fresh().await;
    let missing_queue = SqsQueue::new(aws.sqs.clone(), format!("{}-does-not-exist", aws.queue_url));
    let app = TestApp::spawn(Arc::new(aws.store()), Arc::new(missing_queue)).await;
    let r = app.post_segment(&trial_started("aws-noq")).await;
    assert_eq!((r.status, r.code()), (503, "queue_unavailable"), "{:?}", r.body);
    assert!(aws.items().await.is_empty(), "the claim was deleted");

    let working = TestApp::spawn(Arc::new(aws.store()), Arc::new(aws.queue())).await;
    let r = working.post_segment(&trial_started("aws-noq")).await;
    assert_eq!(r.body["status"], "queued", "the sender's retry goes through");
}

#[tokio::test]
async fn bad_requests_store_and_queue_nothing() {
    let (aws, app) = setup().await;
    let body = trial_started("aws-bad");
    let json = ("content-type", "application/json".to_owned());
    let cases: Vec<(u16, relay_tests::app::TestResponse)> = vec![
        (
            401,
            app.post("/webhooks/segment", &[json.clone(), ("x-signature", "0".repeat(40))], body.clone().into_bytes())
                .await,
        ),
        (401, app.post("/webhooks/segment", std::slice::from_ref(&json), body.clone().into_bytes()).await),
        (400, app.post_segment(r#"{"type":"track","#).await),
        (400, app.post_segment(r#"{"type":"track","event":"trial_started"}"#).await),
        (
            413,
            app.post_segment(
                &segment_track("aws-big", "trial_started", "u", json!({"p": "x".repeat(1 << 20)})).to_string(),
            )
            .await,
        ),
        (
            415,
            app.post(
                "/webhooks/segment",
                &[("content-type", "text/csv".to_owned()), ("x-signature", "0".repeat(40))],
                body.clone().into_bytes(),
            )
            .await,
        ),
        (404, app.post("/webhooks/hubspot", std::slice::from_ref(&json), body.into_bytes()).await),
        (401, app.post_customerio_at(r#"{"event_id":"e","metric":"bounced","data":{}}"#, 1_000_000_000).await),
    ];
    for (expected, response) in &cases {
        assert_eq!(response.status, *expected, "{response:?}");
        assert!(!response.message().is_empty(), "every error says what was wrong: {response:?}");
    }
    assert!(aws.items().await.is_empty());
    assert_eq!(aws.depth(&aws.queue_url).await, 0);
}
