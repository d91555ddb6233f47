//! Results delivered: webhooks through ingest onto SQS (moto), the worker calling the Mavera
//! stand-in, then the rule's destinations, each a stand-in that behaves like the real service
//! (Slack's incoming webhook, Customer.io's Track API, Segment's Tracking API, a receiver
//! verifying Standard Webhooks signatures), with each destination's state on the DynamoDB
//! record (moto).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use relay_tests::app::{TestApp, verifiers};
use relay_tests::aws::Aws;
use relay_tests::cio_track_standin::{CioTrackStandIn, Region};
use relay_tests::env::Env;
use relay_tests::mavera_standin::MaveraStandIn;
use relay_tests::payloads::segment_track;
use relay_tests::reply::Reply;
use relay_tests::segment_standin::{self, SegmentStandIn};
use relay_tests::slack_standin::SlackStandIn;
use relay_tests::sqs_driver::drive;
use relay_tests::webhook_receiver::{self, WebhookReceiver};
use serde_json::{Value, json};
use shared::deliver::DestinationName;
use shared::domain::{EventId, JobKey, RuleName, Source};
use shared::queue::JobMessage;
use shared::store::{DeliveryStatus, DynamoStore, JobRecord, JobStatus, JobStore};
use shared::triggers::Triggers;
use shared::worker::{self, Disposition, Worker};
use tokio::time::Instant;

const JOB_TIME: Duration = Duration::from_secs(30);

const RULES: &str = r#"
[[rule]]
name = "churn"
source = "segment"
event = "churn_signal"
action = "research"
research = { prompt = "User {user_id} may churn: {signal_type}. {notes}" }
deliver = ["slack", "customerio", "segment", "webhook"]

[rule.slack]
text = "Churn risk: {user_id} (LTV ${ltv})"

[rule.customerio]
attributes = { churn_playbook = "{result.content:.300}" }

[rule.segment]
identify = true

[[rule]]
name = "trial"
source = "segment"
event = "trial_started"
action = "create_persona"
persona = { name = "Trial {user_id}", description = "Started a trial" }
deliver = ["customerio", "slack"]
"#;

struct Rig {
    aws: Aws,
    mavera: MaveraStandIn,
    slack: SlackStandIn,
    cio: CioTrackStandIn,
    segment: SegmentStandIn,
    webhook: WebhookReceiver,
    store: DynamoStore,
    worker: Arc<Worker>,
    app: TestApp,
}

#[derive(Default)]
struct Options {
    /// Changes to the destinations' variables (`None` removes one).
    vars: Vec<(&'static str, Option<String>)>,
    cio: Option<CioTrackStandIn>,
    webhook: Option<WebhookReceiver>,
    dry_run: bool,
}

async fn rig() -> Rig {
    rig_with(Options::default()).await
}

async fn rig_with(options: Options) -> Rig {
    let aws = Aws::fresh_with(3, 1).await;
    let mavera = MaveraStandIn::start().await;
    let slack = SlackStandIn::start().await;
    let cio = match options.cio {
        Some(cio) => cio,
        None => CioTrackStandIn::start().await,
    };
    let segment = SegmentStandIn::start().await;
    let webhook = match options.webhook {
        Some(w) => w,
        None => WebhookReceiver::start().await,
    };
    let mut env = Env::new().mavera(&mavera).slack(&slack).cio_track(&cio).segment(&segment).webhook(&webhook);
    for (name, value) in options.vars {
        env = match value {
            Some(v) => env.set(name, v),
            None => env.unset(name),
        };
    }
    if options.dry_run {
        env = env.set("DRY_RUN", "true");
    }
    let triggers = Triggers::parse(RULES, "deliver-rules.toml").unwrap();
    let store = aws.store();
    let worker = build_worker(&env, &store);
    let app =
        TestApp::spawn_with(triggers.rules, verifiers(false), Arc::new(store.clone()), Arc::new(aws.queue())).await;
    Rig { aws, mavera, slack, cio, segment, webhook, store, worker: Arc::new(worker), app }
}

impl Rig {
    async fn run(&self) -> relay_tests::sqs_driver::Drive {
        drive(&self.aws, &self.worker, 10, JOB_TIME, Duration::from_secs(60)).await
    }

    async fn record(&self, key: &str) -> JobRecord {
        self.store.get(&JobKey::from_stored(key)).await.unwrap().unwrap_or_else(|| panic!("no record {key}"))
    }

    async fn post(&self, id: &str, event: &str, user: &str, properties: Value) {
        let answer = self.app.post_segment(&segment_track(id, event, user, properties).to_string()).await;
        assert_eq!(answer.body["status"], "queued", "{:?}", answer.body);
    }
}

fn states(record: &JobRecord) -> Vec<(&str, DeliveryStatus)> {
    record.deliveries.iter().map(|(k, v)| (k.as_str(), v.state)).collect()
}

/// A queue message for a churn event, as ingest writes it.
fn churn_message(id: &str, user: &str) -> (String, String) {
    let body = segment_track(id, "churn_signal", user, json!({"signal_type": "downgrade", "ltv": 900})).to_string();
    let event = shared::parse::envelopes(Source::Segment, body.as_bytes()).unwrap().remove(0).to_event().unwrap();
    let rule = RuleName::parse("churn").unwrap();
    let key = JobKey::for_event(Source::Segment, &EventId::parse(id).unwrap(), &rule);
    (key.to_string(), JobMessage::event_body(&key, &rule, &event).unwrap())
}

#[tokio::test]
async fn each_destination_gets_the_result_in_its_own_shape() {
    let r = rig().await;
    r.cio.add_person("u-42");
    r.post(
        "churn-1",
        "churn_signal",
        "u-42",
        json!({"signal_type": "downgrade", "ltv": 900, "notes": "Pricing page twice."}),
    )
    .await;
    r.run().await;

    let record = r.record("segment#churn-1#churn").await;
    assert_eq!(record.status, JobStatus::Done);
    assert_eq!(
        states(&record),
        [
            ("customerio", DeliveryStatus::Sent),
            ("segment", DeliveryStatus::Sent),
            ("slack", DeliveryStatus::Sent),
            ("webhook", DeliveryStatus::Sent)
        ]
    );
    assert!(record.deliveries.values().all(|d| d.attempts == 1 && d.reason.is_none()), "{:?}", record.deliveries);
    let result = record.result.unwrap();
    let content = result["content"].as_str().unwrap();

    // Slack: the custom headline, the rule, the user, the record key and the research.
    let slack = r.slack.messages();
    assert_eq!(slack.len(), 1);
    assert_eq!(slack[0]["text"], "Churn risk: u-42 (LTV $900)");
    let shown = slack[0]["blocks"].to_string();
    for part in ["Mavera research: churn", "u-42", "segment#churn-1#churn", "25", "Stand-in research answering"] {
        assert!(shown.contains(part), "{part} missing from the Slack message: {shown}");
    }

    // Customer.io: attributes on the existing person (no one created), and one event.
    let person = r.cio.person("u-42").unwrap();
    assert_eq!(person.attributes["mavera_thread_id"], result["thread_id"]);
    assert_eq!(person.attributes["mavera_last_research"].as_str().unwrap(), content);
    assert!(content.starts_with(person.attributes["churn_playbook"].as_str().unwrap()));
    assert!(person.attributes["mavera_updated_at"].is_u64());
    assert_eq!(person.events.len(), 1);
    assert_eq!(person.events[0]["name"], "mavera_research_completed");
    assert_eq!(person.events[0]["data"]["content"], content);
    assert_eq!(person.events[0]["data"]["record"], "segment#churn-1#churn");
    let put = r.cio.requests().into_iter().find(|q| q.method == "PUT").unwrap();
    assert_eq!(put.body.as_ref().unwrap()["_update"], true);
    assert_eq!(r.cio.people(), 1);

    // Segment: a track with the result and an identify with it as traits.
    let events = r.segment.events();
    assert_eq!(events.len(), 2);
    let track = events.iter().find(|e| e["event"] == "Mavera Research Completed").unwrap();
    assert_eq!((track["userId"].as_str(), track["properties"]["content"].as_str()), (Some("u-42"), Some(content)));
    assert!(track["messageId"].as_str().unwrap().starts_with("mavera-relay-"));
    let identify = events.iter().find(|e| e.get("traits").is_some()).unwrap();
    assert_eq!(identify["traits"]["mavera_thread_id"], result["thread_id"]);

    // The webhook: signed (the receiver verified it), typed, with the result.
    let messages = r.webhook.messages();
    assert_eq!(messages.len(), 1);
    let body = messages[0].json();
    assert_eq!(body["type"], "mavera.research.completed");
    assert_eq!(body["data"]["content"], content);
    assert_eq!(body["data"]["event"]["user_id"], "u-42");
    assert!(messages[0].signature.as_deref().unwrap().starts_with("v1,"));
    assert_eq!(r.mavera.count("/mave/chat"), 1);
}

#[tokio::test]
async fn a_persona_goes_onto_the_person_and_no_person_is_ever_created() {
    let r = rig().await;
    r.cio.add_person("u-1");
    r.post("trial-1", "trial_started", "u-1", json!({})).await;
    r.post("trial-2", "trial_started", "u-unknown", json!({})).await;
    r.run().await;
    let person = r.cio.person("u-1").unwrap();
    // The name Mavera gave back: the rule's name with the job's tag (" #" and 8 hex digits).
    let name = person.attributes["mavera_persona_name"].as_str().unwrap();
    let tag = name.strip_prefix("Trial u-1 #").unwrap_or_else(|| panic!("{name}"));
    assert!(tag.len() == 8 && tag.bytes().all(|b| b.is_ascii_hexdigit()), "{name}");
    assert!(person.attributes["mavera_persona_id"].is_string());
    assert_eq!(person.events[0]["name"], "mavera_persona_created");
    assert!(r.cio.person("u-unknown").is_none(), "_update: true never creates a person");
    assert_eq!(r.cio.people(), 1);
    let record = r.record("segment#trial-2#trial").await;
    assert_eq!(record.deliveries["customerio"].state, DeliveryStatus::Sent, "Customer.io answers 200 either way");
}

#[tokio::test]
async fn a_redelivered_message_after_a_partial_delivery_sends_only_the_rest() {
    let r = rig().await;
    // Segment is down for longer than the invocation can wait.
    r.segment.script(
        "/v1/track",
        [Reply::Status { status: 503, headers: vec![("retry-after", "60".into())], body: "{}".into() }],
    );
    r.post("partial-1", "churn_signal", "u-1", json!({})).await;
    let d = r.run().await;
    assert!(d.reported_failed >= 1, "the message went back to the queue: {d:?}");

    let record = r.record("segment#partial-1#churn").await;
    assert!(record.deliveries.values().all(|d| d.state == DeliveryStatus::Sent), "{:?}", record.deliveries);
    assert_eq!(record.deliveries["segment"].attempts, 2);
    assert_eq!(record.deliveries["slack"].attempts, 1);
    assert_eq!(r.slack.posts().len(), 1, "Slack was not posted to again");
    assert_eq!(r.webhook.deliveries().len(), 1);
    assert_eq!(r.cio.requests().len(), 2, "one attribute PUT, one event");
    assert_eq!(r.segment.calls().len(), 3, "the refused track, then track and identify");
    assert_eq!(r.mavera.count("/mave/chat"), 1, "a delivery never calls Mavera again");
    assert_eq!(r.aws.depth(&r.aws.dlq_url).await, 0);
}

#[tokio::test]
async fn a_permanent_refusal_is_recorded_and_never_retried() {
    let r = rig_with(Options { vars: vec![("SLACK_WEBHOOK_URL", None)], ..Options::default() }).await;
    let revoked = SlackStandIn::start().await;
    let r = Rig { worker: Arc::new(rebuild(&r, revoked.revoked_url())), ..r };
    // And a transient failure elsewhere, so the message is delivered again.
    r.webhook.script([Reply::Status { status: 502, headers: vec![("retry-after", "60".into())], body: String::new() }]);
    r.post("perm-1", "churn_signal", "u-1", json!({})).await;
    r.run().await;
    let record = r.record("segment#perm-1#churn").await;
    let slack = &record.deliveries["slack"];
    assert_eq!((slack.state, slack.attempts), (DeliveryStatus::Failed, 1));
    let reason = slack.reason.as_deref().unwrap();
    assert!(reason.contains("404 no_service") && reason.contains("SLACK_WEBHOOK_URL"), "{reason}");
    assert!(!reason.contains("dead-token"), "the URL (the credential) is never in a reason: {reason}");
    assert_eq!(revoked.posts().len(), 1, "never retried, though the message was delivered again");
    assert_eq!(record.deliveries["webhook"].state, DeliveryStatus::Sent);
}

/// The worker, put together as the Lambda does, from `env`.
fn build_worker(env: &Env, store: &DynamoStore) -> Worker {
    let triggers = Triggers::parse(RULES, "deliver-rules.toml").unwrap();
    let settings = worker::Settings::from_vars(env, triggers.for_worker()).unwrap();
    worker::build(settings, Arc::new(store.clone())).unwrap()
}

/// The rig's worker again, with `SLACK_WEBHOOK_URL` changed.
fn rebuild(r: &Rig, slack_url: String) -> Worker {
    let env = Env::new()
        .mavera(&r.mavera)
        .cio_track(&r.cio)
        .segment(&r.segment)
        .webhook(&r.webhook)
        .set("SLACK_WEBHOOK_URL", slack_url);
    build_worker(&env, &r.store)
}

#[tokio::test]
async fn a_429_storm_is_waited_out() {
    let r = rig().await;
    // Slack's one message a second: five results at once make a storm of 429s.
    r.slack.rate_limit(1);
    for i in 0..5 {
        r.post(&format!("storm-{i}"), "churn_signal", &format!("u-{i}"), json!({})).await;
    }
    let started = Instant::now();
    r.run().await;
    assert_eq!(r.slack.messages().len(), 5, "every result reached the channel");
    let throttled = r.slack.posts().iter().filter(|p| p.status == 429).count();
    assert!(throttled >= 4, "the storm happened: {throttled} posts answered 429");
    assert!(started.elapsed() >= Duration::from_secs(3), "Retry-After was waited out, not hammered");
    for i in 0..5 {
        let record = r.record(&format!("segment#storm-{i}#churn")).await;
        assert_eq!(record.deliveries["slack"].state, DeliveryStatus::Sent, "storm-{i}");
    }
    assert_eq!(r.aws.depth(&r.aws.dlq_url).await, 0);
}

#[tokio::test]
async fn nothing_is_sent_twice_under_twenty_concurrent_redeliveries() {
    let r = rig().await;
    r.webhook.script([Reply::Status { status: 503, headers: vec![("retry-after", "60".into())], body: String::new() }]);
    let (key, body) = churn_message("race-1", "u-1");
    let first = r.worker.process(&body, Instant::now() + JOB_TIME).await;
    assert!(matches!(first, Disposition::Undelivered { finished: Some(JobStatus::Done), .. }), "{first:?}");
    let runs: Vec<_> = (0..20)
        .map(|_| {
            let (worker, body) = (r.worker.clone(), body.clone());
            tokio::spawn(async move { worker.process(&body, Instant::now() + JOB_TIME).await })
        })
        .collect();
    for run in runs {
        assert!(run.await.unwrap().ack());
    }
    assert_eq!(r.webhook.deliveries().len(), 2, "the refused one, then exactly one more");
    assert_eq!(r.webhook.messages().len(), 1);
    assert_eq!(r.slack.posts().len(), 1);
    assert_eq!(r.segment.calls().len(), 2);
    assert_eq!(r.mavera.count("/mave/chat"), 1);
    assert_eq!(r.record(&key).await.deliveries["webhook"].state, DeliveryStatus::Sent);
}

#[tokio::test]
async fn a_send_that_may_have_arrived_is_repeated_only_where_the_receiver_drops_repeats() {
    let r = rig().await;
    // Both take the request and answer after the client's 10 s timeout.
    r.slack.script([Reply::Slow(Duration::from_secs(20))]);
    r.segment.script("/v1/track", [Reply::Slow(Duration::from_secs(20))]);
    let (key, body) = churn_message("maybe-1", "u-1");
    let first = r.worker.process(&body, Instant::now() + JOB_TIME).await;
    assert_eq!(first, Disposition::Finished(JobStatus::Done));
    let record = r.record(&key).await;
    let slack = &record.deliveries["slack"];
    assert_eq!((slack.state, slack.attempts), (DeliveryStatus::Failed, 1));
    assert!(slack.reason.as_deref().unwrap().contains("may or may not have arrived"), "{slack:?}");
    let segment = &record.deliveries["segment"];
    assert_eq!((segment.state, segment.attempts), (DeliveryStatus::Sent, 2), "Segment drops repeats: sent again");
    let tracks: Vec<Value> =
        r.segment.calls().into_iter().filter(|c| c.path == "/v1/track").filter_map(|c| c.body).collect();
    assert_eq!(tracks.len(), 2);
    assert_eq!(tracks[0]["messageId"], tracks[1]["messageId"], "the repeat carries the same messageId");

    assert!(r.worker.process(&body, Instant::now() + JOB_TIME).await.ack());
    assert_eq!(r.slack.posts().len(), 1, "Slack has no idempotency key: never posted twice");
}

#[tokio::test]
async fn dry_run_sends_nothing() {
    let r = rig_with(Options { dry_run: true, ..Options::default() }).await;
    r.post("dry-1", "churn_signal", "u-1", json!({})).await;
    r.run().await;
    let record = r.record("segment#dry-1#churn").await;
    assert_eq!(record.result.as_ref().unwrap()["dry_run"], true);
    assert_eq!(record.deliveries.len(), 4);
    for (name, state) in &record.deliveries {
        assert_eq!(state.reason.as_deref(), Some("dry run: printed, not sent"), "{name}");
    }
    assert!(r.mavera.requests().is_empty());
    assert!(r.slack.posts().is_empty() && r.cio.requests().is_empty() && r.segment.calls().is_empty());
    assert!(r.webhook.deliveries().is_empty());
}

#[tokio::test]
async fn a_destination_without_credentials_fails_alone_and_says_why() {
    let r = rig_with(Options {
        vars: vec![("SEGMENT_WRITE_KEY", None), ("RESULT_WEBHOOK_ALLOW_LOCAL", None)],
        ..Options::default()
    })
    .await;
    r.post("creds-1", "churn_signal", "u-1", json!({})).await;
    r.run().await;
    let record = r.record("segment#creds-1#churn").await;
    assert_eq!(
        record.deliveries["segment"].reason.as_deref(),
        Some(
            "segment is off: SEGMENT_WRITE_KEY is not set (the write key of an HTTP API source: Segment > Connections > Sources)"
        )
    );
    // The receiver is on loopback: refused without RESULT_WEBHOOK_ALLOW_LOCAL.
    let webhook = record.deliveries["webhook"].reason.clone().unwrap();
    assert!(
        webhook.starts_with("webhook is off: RESULT_WEBHOOK_URL is not valid")
            && webhook.contains("RESULT_WEBHOOK_ALLOW_LOCAL"),
        "{webhook}"
    );
    assert!(r.segment.calls().is_empty() && r.webhook.deliveries().is_empty());
    assert_eq!(record.deliveries["slack"].state, DeliveryStatus::Sent);
    assert_eq!(record.deliveries["customerio"].state, DeliveryStatus::Sent);
}

#[tokio::test]
async fn long_research_keeps_within_each_vendors_limits() {
    let r = rig().await;
    r.cio.add_person("u-1");
    // The stand-in's answer repeats the prompt: an answer of about 60,000 characters.
    let notes = "Watch the onboarding funnel & pricing <page> closely. ".repeat(1100);
    r.post("long-1", "churn_signal", "u-1", json!({"notes": notes})).await;
    r.run().await;
    let record = r.record("segment#long-1#churn").await;
    assert!(record.deliveries.values().all(|d| d.state == DeliveryStatus::Sent), "{:?}", record.deliveries);
    let content = record.result.unwrap()["content"].as_str().unwrap().to_owned();
    assert!(content.len() > 50_000, "{}", content.len());

    let slack = &r.slack.messages()[0];
    assert!(slack["blocks"].to_string().contains("Cut to fit Slack"), "a note says where the rest is");
    let person = r.cio.person("u-1").unwrap();
    assert_eq!(person.attributes["mavera_last_research"].as_str().unwrap().len(), 1000, "cut to 1000 bytes");
    assert_eq!(person.events[0]["data"]["content"], content.as_str(), "the event carries all of it");
    let track = r.segment.calls().into_iter().find(|c| c.path == "/v1/track").unwrap();
    assert!(track.bytes <= segment_standin::MAX_CALL_BYTES && track.status == 200, "{} bytes", track.bytes);
    assert_eq!(track.body.unwrap()["properties"]["content_truncated"], true);
    let webhook = r.webhook.messages()[0].json();
    assert!(r.webhook.messages()[0].body.len() <= 20_000);
    assert_eq!(webhook["data"]["content_truncated"], true);
}

#[tokio::test]
async fn a_customerio_region_mismatch_is_a_clear_failure() {
    let eu_account_on_us_host = CioTrackStandIn::start_for(Region::Eu, Region::Us).await;
    let r = rig_with(Options { cio: Some(eu_account_on_us_host), ..Options::default() }).await;
    r.post("region-1", "churn_signal", "u-1", json!({})).await;
    r.run().await;
    let cio = r.record("segment#region-1#churn").await.deliveries["customerio"].clone();
    assert_eq!(cio.state, DeliveryStatus::Failed);
    assert!(
        cio.reason.as_deref().unwrap().contains("307") && cio.reason.as_deref().unwrap().contains("CIO_REGION"),
        "{cio:?}"
    );
    assert_eq!(r.cio.requests().len(), 1, "the redirect is not followed");
}

#[tokio::test]
async fn a_webhook_rotation_verifies_with_either_secret_and_gone_disables_the_endpoint() {
    // The receiver still knows only the old secret; the relay signs with both.
    let new_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let receiver = WebhookReceiver::start_with(webhook_receiver::SECRET).await;
    let r = rig_with(Options {
        webhook: Some(receiver),
        vars: vec![
            ("RESULT_WEBHOOK_SECRET", Some(new_secret.to_owned())),
            ("RESULT_WEBHOOK_SECRET_PREVIOUS", Some(webhook_receiver::SECRET.to_owned())),
        ],
        ..Options::default()
    })
    .await;
    r.post("rotate-1", "churn_signal", "u-1", json!({})).await;
    r.run().await;
    let delivered = r.webhook.deliveries();
    assert!(delivered[0].verified, "verified with the previous secret");
    assert_eq!(delivered[0].signature.as_deref().unwrap().split(' ').count(), 2);

    r.webhook.script([Reply::status(410, "gone")]);
    r.post("rotate-2", "churn_signal", "u-2", json!({})).await;
    r.run().await;
    let gone = r.record("segment#rotate-2#churn").await.deliveries["webhook"].clone();
    assert_eq!(gone.state, DeliveryStatus::Failed);
    assert!(gone.reason.as_deref().unwrap().contains("410"), "{gone:?}");
    r.post("rotate-3", "churn_signal", "u-3", json!({})).await;
    r.run().await;
    let after = r.record("segment#rotate-3#churn").await.deliveries["webhook"].clone();
    assert_eq!(after.state, DeliveryStatus::Failed);
    assert!(after.reason.as_deref().unwrap().contains("answered 410 Gone"), "{after:?}");
    assert_eq!(r.webhook.deliveries().len(), 2, "after the 410 nothing more is sent to the endpoint");
}

#[tokio::test]
async fn the_batch_reports_what_each_destination_came_to() {
    let r = rig().await;
    r.webhook.script([Reply::status(400, "no")]);
    let (_, body) = churn_message("tally-1", "u-1");
    let (disposition, tally) = r.worker.process_tallied(&body, Instant::now() + JOB_TIME).await;
    assert_eq!(disposition, Disposition::Finished(JobStatus::Done));
    let by: HashMap<DestinationName, DeliveryStatus> =
        tally.deliveries.iter().map(|d| (d.destination, d.state)).collect();
    assert_eq!(by[&DestinationName::Webhook], DeliveryStatus::Failed);
    assert_eq!(by[&DestinationName::Slack], DeliveryStatus::Sent);
    assert_eq!(by.len(), 4);
}
