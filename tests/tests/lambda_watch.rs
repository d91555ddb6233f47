//! The worker as a developer runs it: under `cargo lambda watch`, against moto and the
//! Mavera stand-in, with real (stand-in) Mavera calls. `cargo lambda watch` hands every
//! invocation a deadline of 600000 ms after 1970, long past; the worker must take that as
//! "no deadline given" and use its configured timeout, not return every job as failed.

use relay_tests::aws::Aws;
use relay_tests::cio_standin::CioStandIn;
use relay_tests::lambda_watch::LambdaWatch;
use relay_tests::mavera_standin::MaveraStandIn;
use serde_json::{Value, json};
use shared::domain::Event;
use shared::domain::{EventId, JobKey, RuleName, Source};
use shared::queue::JobMessage;
use shared::store::{ClaimStore, JobStatus, JobStore, NewJob};

fn sqs_event(message_id: &str, body: &str) -> Value {
    json!({"Records": [{
        "messageId": message_id,
        "receiptHandle": format!("receipt-{message_id}"),
        "body": body,
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1700000000000", "SenderId": "test", "ApproximateFirstReceiveTimestamp": "1700000000000"},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:jobs",
        "awsRegion": "us-east-1"
    }]})
}

#[tokio::test]
async fn the_worker_runs_a_job_under_cargo_lambda_watch_and_once_only() {
    let aws = Aws::fresh().await;
    let (mavera, cio) = (MaveraStandIn::start().await, CioStandIn::start().await);

    // A job as ingest leaves it: claimed, its message on the way.
    let rule = RuleName::parse("segment-trial-started").unwrap();
    let id = EventId::parse(format!("watch-{}", uuid::Uuid::new_v4().simple())).unwrap();
    let key = JobKey::for_event(Source::Segment, &id, &rule);
    let fields = json!({"user_id": "usr_watch", "plan": "pro"}).as_object().unwrap().clone();
    let event =
        Event { source: Source::Segment, id, name: "trial_started".into(), user_id: Some("usr_watch".into()), fields };
    let body = JobMessage::for_event(key.clone(), rule.clone(), event).to_body().unwrap();
    let now = std::time::SystemTime::now();
    aws.store().claim(&NewJob { key: &key, rule: &rule, token: "ingest", now }).await.unwrap();

    let env = [
        ("AWS_ENDPOINT_URL", relay_tests::aws::endpoint()),
        ("EVENTS_TABLE", aws.table.clone()),
        ("MAVERA_API_KEY", mavera.api_key().to_owned()),
        ("MAVERA_BASE_URL", mavera.base_url()),
        ("CIO_APP_KEY", cio.app_key().to_owned()),
        ("CIO_APP_API_URL", cio.base_url()),
        // What template.yaml sets for the worker (its Timeout).
        ("FUNCTION_TIMEOUT_SECS", "60".to_owned()),
    ];
    let watch = LambdaWatch::start(&env).await;

    let answer = watch.invoke("worker", &sqs_event("m1", &body)).await;
    assert_eq!(answer, json!({"batchItemFailures": []}), "the job ran:\n{}", watch.output());
    let created = || mavera.requests_to("/personas").iter().filter(|r| r.method == http::Method::POST).count();
    assert_eq!(created(), 1, "one persona request reached Mavera");
    assert_eq!(aws.store().get(&key).await.unwrap().unwrap().status, JobStatus::Done);
    assert!(
        watch.output().contains("FUNCTION_TIMEOUT_SECS"),
        "one warning line says the runtime gave no usable deadline:\n{}",
        watch.output()
    );

    // SQS delivers the message again: nothing more reaches Mavera.
    let answer = watch.invoke("worker", &sqs_event("m1-again", &body)).await;
    assert_eq!(answer, json!({"batchItemFailures": []}), "{}", watch.output());
    assert_eq!(created(), 1, "a redelivery makes no second call");
}
