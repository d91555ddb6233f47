//! The destination stand-ins hold to what their vendors document, so the delivery tests that
//! pass against them mean something: each check here is a request the real service refuses
//! (or accepts), sent raw.

use base64::Engine;
use relay_tests::cio_track_standin::{self, CioTrackStandIn};
use relay_tests::segment_standin::{self, SegmentStandIn};
use relay_tests::slack_standin::SlackStandIn;
use relay_tests::webhook_receiver::WebhookReceiver;
use serde_json::{Value, json};

async fn post(url: &str, auth: Option<&str>, body: &Value) -> (u16, String, Option<String>) {
    let mut request = reqwest::Client::new().post(url).json(body);
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    let response = request.send().await.unwrap();
    let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    (response.status().as_u16(), response.text().await.unwrap(), retry_after)
}

fn section(text: &str) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})
}

#[tokio::test]
async fn slack_refuses_what_breaks_block_kits_limits_in_plain_text() {
    let slack = SlackStandIn::start().await;
    let url = slack.webhook_url();
    assert_eq!(post(&url, None, &json!({"text": "hi"})).await.1, "ok");
    let too_many: Vec<Value> = (0..51).map(|_| section("x")).collect();
    assert_eq!(post(&url, None, &json!({"blocks": too_many})).await.1, "invalid_blocks");
    assert_eq!(post(&url, None, &json!({"blocks": [section(&"x".repeat(3001))]})).await.1, "invalid_blocks");
    let header = json!({"type": "header", "text": {"type": "plain_text", "text": "h".repeat(151)}});
    assert_eq!(post(&url, None, &json!({"blocks": [header]})).await.1, "invalid_blocks");
    let five: Vec<Value> = (0..5).map(|_| section(&"x".repeat(2900))).collect();
    let (status, code, _) = post(&url, None, &json!({"blocks": five})).await;
    assert_eq!((status, code.as_str()), (400, "msg_blocks_too_long"));
    assert_eq!(post(&url, None, &json!({"nothing": 1})).await.1, "no_text");
    assert_eq!(post(&slack.revoked_url(), None, &json!({"text": "hi"})).await, (404, "no_service".into(), None));

    slack.rate_limit(1);
    assert_eq!(post(&url, None, &json!({"text": "one"})).await.0, 200);
    assert_eq!(post(&url, None, &json!({"text": "two"})).await, (429, "rate_limited".into(), Some("1".into())));
    assert_eq!(slack.messages().len(), 2, "only what Slack took reached the channel");
}

fn track_auth() -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        cio_track_standin::SITE_ID,
        cio_track_standin::TRACK_KEY
    ));
    format!("Basic {token}")
}

async fn put(url: &str, auth: &str, body: &Value) -> u16 {
    reqwest::Client::new().put(url).header("authorization", auth).json(body).send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn customerio_track_checks_auth_and_limits_and_never_creates_on_update() {
    let cio = CioTrackStandIn::start().await;
    let person = format!("{}/api/v1/customers/u1", cio.base_url());
    assert_eq!(put(&person, "Basic d3Jvbmc6d3Jvbmc=", &json!({"a": 1})).await, 401);
    assert_eq!(put(&person, &track_auth(), &json!({"_update": true, "a": 1})).await, 200);
    assert!(cio.person("u1").is_none(), "_update: true creates no one");
    assert_eq!(put(&person, &track_auth(), &json!({"a": "x".repeat(1001)})).await, 400);
    assert_eq!(put(&person, &track_auth(), &json!({"a": {"nested": true}})).await, 400);
    assert_eq!(put(&person, &track_auth(), &json!({"a": "x".repeat(1000)})).await, 200);
    assert!(cio.person("u1").is_some(), "without _update the person is created");
    let events = format!("{person}/events");
    let big = json!({"name": "e", "data": {"content": "x".repeat(100_001)}});
    assert_eq!(post(&events, Some(&track_auth()), &big).await.0, 400);
    assert_eq!(post(&events, Some(&track_auth()), &json!({"name": "n".repeat(101)})).await.0, 400);
    assert_eq!(post(&events, Some(&track_auth()), &json!({"name": "e", "data": {}})).await.0, 200);
    assert_eq!(post(&events, Some(&track_auth()), &json!({"name": "e", "data": {}})).await.0, 200);
    assert_eq!(cio.person("u1").unwrap().events.len(), 2, "events have no deduplication");
}

#[tokio::test]
async fn segment_takes_32_kb_drops_repeated_message_ids_and_checks_the_write_key() {
    let segment = SegmentStandIn::start().await;
    let url = format!("{}/v1/track", segment.base_url());
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:", segment_standin::WRITE_KEY))
    );
    let call = json!({"userId": "u1", "event": "E", "messageId": "m-1"});
    assert_eq!(post(&url, Some("Basic bm9wZTo="), &call).await.0, 401);
    assert_eq!(post(&url, Some(&auth), &call).await.0, 200);
    assert_eq!(post(&url, Some(&auth), &call).await.0, 200);
    assert_eq!(segment.events().len(), 1, "a repeated messageId is dropped");
    let big = json!({"userId": "u1", "event": "E", "messageId": "m-2", "properties": {"x": "y".repeat(33_000)}});
    assert_eq!(post(&url, Some(&auth), &big).await.0, 400);
}

#[tokio::test]
async fn the_webhook_receiver_verifies_signatures_as_the_spec_says() {
    let receiver = WebhookReceiver::start().await;
    let body = r#"{"email":"test@example.com","username":"test_user"}"#;
    let send = |id: &str, ts: String, sig: &str| {
        reqwest::Client::new()
            .post(receiver.url())
            .header("webhook-id", id)
            .header("webhook-timestamp", ts)
            .header("webhook-signature", sig)
            .body(body)
            .send()
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    // The spec's example is signed at 1649367553: far too old to accept now.
    let old =
        send("msg_27UH4WbU6Z5A5EzD8u03UvzRbpk", "1649367553".into(), "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
    assert_eq!(old.await.unwrap().status(), 401);
    assert_eq!(send("msg_1", now.to_string(), "v1,AAAA").await.unwrap().status(), 401);
    assert!(receiver.messages().is_empty());
}
