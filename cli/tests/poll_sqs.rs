//! `relay poll-sqs` against moto (started by scripts/test) and a stand-in for cargo lambda's
//! invoke endpoint that reports chosen records as failed.

use std::sync::{Arc, Mutex};

use aws_lambda_events::event::sqs::SqsEvent;
use axum::routing::post;
use axum::{Json, Router};
use relay_tests::aws::{Aws, endpoint};
use serde_json::{Value, json};

use crate::support::{run, text};

/// Answers like the worker function: `batchItemFailures` for records whose body is "fail".
async fn fake_worker() -> (String, Arc<Mutex<Vec<SqsEvent>>>) {
    let seen: Arc<Mutex<Vec<SqsEvent>>> = Arc::default();
    let app = Router::new().route(
        "/2015-03-31/functions/worker/invocations",
        post({
            let seen = seen.clone();
            move |Json(event): Json<SqsEvent>| async move {
                let failures: Vec<Value> = event
                    .records
                    .iter()
                    .filter(|r| r.body.as_deref() == Some("fail"))
                    .map(|r| json!({"itemIdentifier": r.message_id}))
                    .collect();
                seen.lock().unwrap().push(event);
                Json(json!({"batchItemFailures": failures}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/2015-03-31/functions/worker/invocations", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

#[tokio::test]
async fn only_records_not_reported_failed_are_deleted() {
    let aws = Aws::fresh_with(5, 30).await;
    for body in ["ok-1", "fail", "ok-2"] {
        aws.sqs.send_message().queue_url(&aws.queue_url).message_body(body).send().await.unwrap();
    }
    let (invoke_url, seen) = fake_worker().await;
    let endpoint = endpoint();
    let queue_url = aws.queue_url.clone();
    let out = tokio::task::spawn_blocking(move || {
        run(
            &["poll-sqs", "--queue-url", &queue_url, "--invoke-url", &invoke_url, "--until-empty"],
            &[
                ("AWS_ENDPOINT_URL", endpoint.as_str()),
                ("AWS_ACCESS_KEY_ID", "test"),
                ("AWS_SECRET_ACCESS_KEY", "test"),
                ("AWS_REGION", "us-east-1"),
            ],
        )
    })
    .await
    .unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("done: 3 received, 2 deleted, 1 reported failed"), "{stdout}");

    let events = seen.lock().unwrap().clone();
    let records: Vec<_> = events.iter().flat_map(|e| e.records.iter()).collect();
    assert_eq!(records.len(), 3);
    for record in &records {
        assert_eq!(record.event_source.as_deref(), Some("aws:sqs"));
        assert!(record.event_source_arn.as_deref().is_some_and(|arn| arn.starts_with("arn:aws:sqs:")), "{record:?}");
        assert_eq!(record.attributes.get("ApproximateReceiveCount").map(String::as_str), Some("1"));
        assert!(record.receipt_handle.is_some() && record.message_id.is_some());
    }
    assert_eq!(aws.depth(&aws.queue_url).await, 1, "the failed record stays for redelivery");
}
