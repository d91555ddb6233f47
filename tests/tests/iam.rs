//! Least privilege, checked against what the code really calls. Each function's paths run
//! against moto through the real AWS SDK, with an interceptor that records every request's
//! action and table key (`pk`); each recorded call must be allowed by a statement of that
//! function's role in `template.yaml` (the action, and `dynamodb:LeadingKeys` for the key),
//! and each table and queue statement must be used by some call, so no grant outlives the
//! code that needed it. (The Secrets Manager read happens at cold start and is checked by
//! scripts/check-template: each role reads exactly its own secret.)

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use relay_tests::app::TestApp;
use relay_tests::aws::Aws;
use relay_tests::cio_standin::{CampaignSeed, CioStandIn, Person};
use relay_tests::env::Env;
use relay_tests::mavera_standin::{MaveraStandIn, Reply};
use relay_tests::payloads::{cio_email, segment_track};
use saphyr::YamlOwned as Yaml;
use serde_json::{Value, json};
use shared::cio_sync::{self, RunRequest, SyncJob};
use shared::domain::{JobKey, RuleName, Source};
use shared::queue::{JobMessage, SqsQueue};
use shared::store::DynamoStore;
use shared::triggers::Triggers;
use shared::worker::{self, Worker};
use tokio::time::Instant;

use super::template::{TEMPLATE, at, get, get_att, strings};

const JOB_TIME: Duration = Duration::from_secs(30);

/// One request as IAM sees it: `dynamodb:PutItem` on key `segment#...`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Call {
    action: String,
    key: Option<String>,
}

/// Records every request a client sends, as IAM would authorize it.
#[derive(Debug, Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Call>>>);

impl Intercept for Recorder {
    fn name(&self) -> &'static str {
        "iam-recorder"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request();
        let body = request.body().bytes().unwrap_or_default();
        // JSON protocols name the operation in X-Amz-Target ("DynamoDB_20120810.PutItem",
        // "AmazonSQS.SendMessage"); the query protocol in the form body ("Action=...").
        let (service, operation) = match request.headers().get("x-amz-target") {
            Some(target) => target.split_once('.').map(|(s, o)| (s.to_owned(), o.to_owned())).unwrap_or_default(),
            None => {
                let form = String::from_utf8_lossy(body);
                let action = form.split('&').find_map(|kv| kv.strip_prefix("Action=")).unwrap_or("?").to_owned();
                ("AmazonSQS".to_owned(), action)
            }
        };
        let prefix = if service.starts_with("DynamoDB") { "dynamodb" } else { "sqs" };
        let json: Value = serde_json::from_slice(body).unwrap_or_default();
        let key = ["/Key/pk/S", "/Item/pk/S"].iter().find_map(|p| json.pointer(p)).and_then(Value::as_str);
        self.0.lock().unwrap().push(Call { action: format!("{prefix}:{operation}"), key: key.map(str::to_owned) });
        Ok(())
    }
}

impl Recorder {
    fn calls(&self) -> BTreeSet<Call> {
        self.0.lock().unwrap().iter().cloned().collect()
    }
}

/// The stack's table and queue through clients that record what they send.
fn watched(aws: &Aws, recorder: &Recorder) -> (DynamoStore, SqsQueue, aws_sdk_sqs::Client) {
    let dynamo = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&aws.sdk).interceptor(recorder.clone()).build(),
    );
    let sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(&aws.sdk).interceptor(recorder.clone()).build(),
    );
    (DynamoStore::new(dynamo, &aws.table), SqsQueue::new(sqs.clone(), &aws.queue_url), sqs)
}

// ----------------------------------------------------------------- the role's statements

#[derive(Debug)]
struct Statement {
    actions: Vec<String>,
    resource: Vec<String>,
    /// `dynamodb:LeadingKeys` patterns and whether they are globs (StringLike).
    leading_keys: Option<(Vec<String>, bool)>,
}

impl Statement {
    fn allows(&self, call: &Call) -> bool {
        if !self.actions.contains(&call.action) {
            return false;
        }
        let on = if call.action.starts_with("dynamodb:") { "EventsTable.Arn" } else { "JobsQueue.Arn" };
        if !self.resource.iter().any(|r| r == on) {
            return false;
        }
        match (&self.leading_keys, &call.key) {
            (None, _) => true,
            // ForAllValues over no key (a request without one) would pass; none is granted.
            (Some(_), None) => false,
            (Some((patterns, like)), Some(key)) => patterns.iter().any(|p| if *like { glob(p, key) } else { p == key }),
        }
    }
}

/// IAM's StringLike: `*` matches any run of characters (`?` is not used here).
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => {
            text.starts_with(head) && (0..=text.len() - head.len()).any(|i| glob(tail, &text[head.len() + i..]))
        }
    }
}

fn statements(role: &str) -> Vec<Statement> {
    let policies = at(&TEMPLATE, &["Resources", role, "Properties", "Policies"]).as_vec().expect("Policies");
    let mut out = Vec::new();
    for policy in policies {
        for s in at(policy, &["PolicyDocument", "Statement"]).as_vec().expect("a list of statements") {
            let mut actions = Vec::new();
            strings(at(s, &["Action"]), &mut actions);
            let resource: Vec<String> = match at(s, &["Resource"]) {
                Yaml::Sequence(items) => items.iter().filter_map(get_att).collect(),
                one => get_att(one).into_iter().collect(),
            };
            let leading_keys = get(s, "Condition").map(|condition| {
                let (operator, keys) =
                    condition.as_mapping().and_then(|m| m.iter().next()).expect("one condition operator");
                let operator = operator.as_str().unwrap();
                assert!(operator.starts_with("ForAllValues:"), "{role}: {operator} on LeadingKeys");
                let mut patterns = Vec::new();
                strings(at(keys, &["dynamodb:LeadingKeys"]), &mut patterns);
                (patterns, operator.ends_with("StringLike"))
            });
            out.push(Statement { actions, resource, leading_keys });
        }
    }
    out
}

/// What Lambda's SQS poller does with the worker's role, beside the worker's own calls.
const SQS_POLLER: [&str; 3] = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"];

/// Every call allowed by some statement of the role, and every table and queue statement
/// used by some call, but for one statement of exactly `exempt`'s actions (used by AWS on
/// the role's behalf).
fn check(role: &str, calls: &BTreeSet<Call>, exempt: &[&str]) {
    assert!(!calls.is_empty(), "{role}: no calls were recorded");
    let statements = statements(role);
    let refused: Vec<&Call> = calls.iter().filter(|c| !statements.iter().any(|s| s.allows(c))).collect();
    assert!(refused.is_empty(), "{role} does not allow {refused:#?}\n(recorded: {calls:#?})");
    for s in &statements {
        let ours = s.actions.iter().all(|a| a.starts_with("dynamodb:") || a.starts_with("sqs:"));
        let mut actions: Vec<&str> = s.actions.iter().map(String::as_str).collect();
        actions.sort_unstable();
        let mut exempt = exempt.to_vec();
        exempt.sort_unstable();
        if !ours || (!exempt.is_empty() && actions == exempt) {
            continue;
        }
        assert!(calls.iter().any(|c| s.allows(c)), "{role}: no call uses {s:?}; drop it\n(recorded: {calls:#?})");
    }
}

#[test]
fn ingest_may_touch_only_webhook_job_keys_of_every_source() {
    let mut patterns = BTreeSet::new();
    for s in statements("IngestRole") {
        if let Some((keys, true)) = s.leading_keys {
            patterns.extend(keys);
        }
    }
    let sources: BTreeSet<String> = Source::ALL.iter().map(|s| format!("{s}#*")).collect();
    assert_eq!(patterns, sources, "ingest's key prefixes are exactly the sources' job keys");
}

#[test]
fn the_glob_matches_as_iam_does() {
    assert!(glob("segment#*", "segment#m1#rule"));
    assert!(glob("cache#*", "cache#cio-attributes#id#42"));
    assert!(!glob("segment#*", "cache#segment#x"));
    assert!(!glob("once#*", "once"));
    assert!(glob("*", ""));
}

// ----------------------------------------------------------------- each function's paths

fn track(id: &str, event: &str, user: &str) -> String {
    segment_track(id, event, user, json!({"plan": "pro", "source": "google"})).to_string()
}

#[tokio::test]
async fn ingest_calls_only_what_its_role_allows() {
    let aws = Aws::fresh().await;
    let recorder = Recorder::default();
    let (store, queue, sqs) = watched(&aws, &recorder);
    store.warm().await.unwrap();
    queue.warm().await.unwrap();
    let store_arc = Arc::new(store.clone());
    let app = TestApp::spawn_reporting(store_arc.clone(), Arc::new(queue), store_arc).await;
    // /healthz reads the worker's and cio-sync's reports: the worker's was written (by the
    // worker's role), cio-sync's not yet.
    let (unwatched, _, _) = watched(&aws, &Recorder::default());
    let off =
        vec![shared::health::Off { name: "cio-high-value-alert".into(), reason: "CIO_APP_KEY is not set".into() }];
    let report = shared::health::Report::new("worker", vec!["segment-trial-started".into()], off, SystemTime::now());
    shared::health::publish(&unwatched, &report, SystemTime::now()).await.unwrap();
    let health = app.get("/healthz").await.body;
    assert_eq!(health["functions"]["worker"]["off"][0]["reason"], "CIO_APP_KEY is not set", "{health}");
    assert_eq!(health["functions"]["worker"]["live"][0], "segment-trial-started", "{health}");
    assert_eq!(health["functions"]["cio-sync"]["status"], "unknown", "{health}");
    let body = track("iam-1", "trial_started", "u1");
    assert_eq!(app.post_segment(&body).await.body["status"], "queued");
    // The same event again before a worker has it: the claim may not be sent, so 503 in_flight.
    assert_eq!(app.post_segment(&body).await.body["error"]["code"], "in_flight");
    let cio = cio_email("iam-cio-1", "unsubscribed", "cust-1").to_string();
    let answer = app.post_customerio(&cio).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    // A batch signed on its first event only: its signature is marked used, then sealed.
    let first_event_app = TestApp::spawn_with(
        shared::triggers::Triggers::embedded().unwrap().rules,
        relay_tests::app::verifiers(true),
        Arc::new(store.clone()),
        Arc::new(SqsQueue::new(sqs.clone(), &aws.queue_url)),
    )
    .await;
    let first = track("iam-b1", "trial_started", "u3");
    let batch = format!("[{first},{}]", track("iam-b2", "trial_started", "u4"));
    let signature = shared::verify::segment::sign(relay_tests::app::SEGMENT_SECRET, first.as_bytes());
    let headers = [("content-type", "application/json".to_owned()), ("x-signature", signature)];
    let answer = first_event_app.post("/webhooks/segment", &headers, batch.into_bytes()).await;
    assert_eq!(answer.body["status"], "queued", "{:?}", answer.body);
    // A queue that fails: the claim is released.
    let broken = SqsQueue::new(sqs, format!("{}-missing", aws.queue_url));
    let app = TestApp::spawn(Arc::new(store), Arc::new(broken)).await;
    assert_eq!(app.post_segment(&track("iam-2", "trial_started", "u2")).await.status, 503);

    let calls = recorder.calls();
    assert!(calls.iter().any(|c| c.action == "dynamodb:DeleteItem"), "the release path ran: {calls:?}");
    check("IngestRole", &calls, &[]);
}

/// A queue message for a webhook event, as ingest would write it.
fn message(source: Source, body: &str, rule: &str) -> String {
    let event = shared::parse::envelopes(source, body.as_bytes()).unwrap().remove(0).to_event().unwrap();
    let rule = RuleName::parse(rule).unwrap();
    let key = JobKey::for_event(source, &event.id, &rule);
    JobMessage::event_body(&key, &rule, &event).unwrap()
}

const SYNC_JOBS: &str = r#"
[cio_sync.campaign_strategy]
enabled = true
top_n = 1
min_delivered = 10
[cio_sync.campaign_strategy.generate]
app_id = "email-variations"
input = { brief = "{mave.content}" }

[cio_sync.attribute_personas]
enabled = true
segment_id = 42
page_size = 10
clusters = 2
min_cluster_size = 2
cluster_by = [{ attribute = "plan_type", name = "plan" }]
"#;

/// Wednesday 2026-03-04, 15:00 UTC.
fn wednesday() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_772_636_400)
}

fn seed(cio: &CioStandIn) {
    cio.add_campaign(CampaignSeed::new(1, "Welcome series"));
    cio.set_campaign_metrics(1, &[("delivered", &[300]), ("converted", &[30])]);
    let members: Vec<Person> = (0..6)
        .map(|i| {
            let person = Person::new(&format!("cio{i}"))
                .id(&format!("cust-{i}"))
                .attribute("plan_type", if i % 2 == 0 { "pro" } else { "free" });
            cio.add_person(person.clone());
            person
        })
        .collect();
    cio.add_segment(42, members);
    cio.add_person(Person::new("cio-alert").id("cust-alert").attribute("plan_type", "enterprise"));
}

struct Services {
    mavera: MaveraStandIn,
    cio: CioStandIn,
}

impl Services {
    async fn start() -> Self {
        let services = Services { mavera: MaveraStandIn::start().await, cio: CioStandIn::start().await };
        seed(&services.cio);
        services
    }

    /// The functions' variables pointing at the stand-ins and at `aws`.
    fn env(&self, aws: &Aws) -> Env {
        Env::new().aws(aws).mavera(&self.mavera).customerio(&self.cio)
    }
}

fn worker(triggers: Triggers, store: &DynamoStore, env: &Env) -> Worker {
    let settings = worker::Settings::from_vars(env, triggers.for_worker()).unwrap();
    worker::build(settings, Arc::new(store.clone())).unwrap()
}

#[tokio::test]
async fn the_worker_and_cio_sync_call_only_what_their_roles_allow() {
    let aws = Aws::fresh().await;
    let services = Services::start().await;

    // cio-sync: claims, checkpoints and the attribute cache, then the jobs it queued.
    let sync_recorder = Recorder::default();
    let (sync_store, sync_queue, _) = watched(&aws, &sync_recorder);
    let triggers = Triggers::parse(SYNC_JOBS, "t.toml").unwrap();
    let env = services.env(&aws);
    let settings = cio_sync::Settings::from_vars(&env, triggers.for_cio_sync()).unwrap();
    let sync = cio_sync::build(settings, Arc::new(sync_store), Arc::new(sync_queue)).unwrap();
    let (report_store, _, _) = watched(&aws, &sync_recorder);
    shared::health::publish(&report_store, &sync.health_report(SystemTime::now()), SystemTime::now()).await.unwrap();
    for job in [SyncJob::CampaignStrategy, SyncJob::AttributePersonas] {
        let summary = sync.run(RunRequest { job, dry_run: false }, wednesday(), Instant::now() + JOB_TIME).await;
        assert!(!summary.failed(), "{summary:?}");
    }
    let calls = sync_recorder.calls();
    assert!(calls.iter().any(|c| c.key.as_deref() == Some("cache#health#cio-sync")), "{calls:#?}");
    check("CioSyncRole", &calls, &[]);
    let queued = aws.drain(&aws.queue_url).await;
    assert!(queued.len() >= 2, "cio-sync queued {} jobs", queued.len());

    // The worker: every kind of job, and every way one ends.
    let recorder = Recorder::default();
    let (store, _, _) = watched(&aws, &recorder);
    store.warm().await.unwrap();
    let deadline = || Instant::now() + JOB_TIME;
    let sync_worker = worker(triggers, &store, &env);
    for body in &queued {
        // The campaign analysis keeps Mave's answer between its two calls (cache#...).
        sync_worker.process(body, deadline()).await;
    }
    let shipped = worker(Triggers::embedded().unwrap(), &store, &env);
    shared::health::publish(&store, &shipped.health_report(SystemTime::now()), SystemTime::now()).await.unwrap();
    let trial = message(Source::Segment, &track("iam-w1", "trial_started", "u1"), "segment-trial-started");
    shipped.process(&trial, deadline()).await; // start, once per user, daily cap, finish
    shipped.process(&trial, deadline()).await; // already finished
    services.mavera.script("/personas", [Reply::CreditsExhausted]);
    let broke = message(Source::Segment, &track("iam-w2", "trial_started", "u2"), "segment-trial-started");
    shipped.process(&broke, deadline()).await; // failed for good: the once-per-user mark is dropped
    let upgrade = message(Source::Segment, &track("iam-w3", "plan_upgraded", "u3"), "segment-plan-upgraded");
    // Too little time for a Mave call: released for a retry.
    shipped.process(&upgrade, Instant::now() + Duration::from_secs(3)).await;
    let alert = cio_email("iam-w4", "unsubscribed", "cust-alert").to_string();
    shipped.process(&message(Source::CustomerIo, &alert, "cio-high-value-alert"), deadline()).await; // enrichment

    let calls = recorder.calls();
    for (action, prefix) in [
        ("dynamodb:UpdateItem", "cap#"),
        ("dynamodb:PutItem", "once#"),
        ("dynamodb:DeleteItem", "once#"),
        ("dynamodb:PutItem", "cache#"),
        ("dynamodb:PutItem", "cache#health#worker"),
    ] {
        assert!(
            calls.iter().any(|c| c.action == action && c.key.as_deref().is_some_and(|k| k.starts_with(prefix))),
            "the worker's paths did not {action} a {prefix} key: {calls:#?}"
        );
    }
    check("WorkerRole", &calls, &SQS_POLLER);
}
