//! The worker end to end: webhooks through ingest onto SQS (moto), the worker's batch
//! handler as Lambda calls it, the Mavera stand-in over HTTP, records in DynamoDB (moto).

use std::sync::Arc;
use std::time::Duration;

use relay_tests::app::{TestApp, verifiers};
use relay_tests::aws::{Aws, text};
use relay_tests::cio_standin::{CioStandIn, Person};
use relay_tests::env::Env;
use relay_tests::mavera_standin::{DuplicateError, MaveraStandIn, Reply};
use relay_tests::payloads::{cio_email, segment_track};
use relay_tests::sqs_driver::{drive, sqs_event};
use serde_json::{Value, json};
use shared::customerio::NOT_FOUND_TTL;
use shared::domain::{EventId, JobKey, PersonaName, RuleName, Source};
use shared::queue::JobMessage;
use shared::store::{DynamoStore, FailureClass, JobRecord, JobStatus, JobStore, Lease, Start, StartJob};
use shared::telemetry::Metrics;
use shared::triggers::Triggers;
use shared::worker::{self, Disposition, Worker, sqs};
use tokio::time::Instant;

const JOB_TIME: Duration = Duration::from_secs(30);

struct Rig {
    aws: Aws,
    mavera: MaveraStandIn,
    cio: CioStandIn,
    store: DynamoStore,
    worker: Worker,
    app: TestApp,
}

struct Options {
    triggers: Triggers,
    dry_run: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { triggers: Triggers::embedded().unwrap(), dry_run: false }
    }
}

/// The name the worker gives job `key`'s persona: the rendered text and the job's tag.
fn persona_name(text: &str, key: &str) -> String {
    shared::domain::PersonaName::for_job(text, &shared::domain::JobKey::from_stored(key)).into_string()
}

async fn rig() -> Rig {
    rig_with(Options::default()).await
}

async fn rig_with(options: Options) -> Rig {
    // maxReceiveCount 3 and a 1 s visibility timeout, so retries and the DLQ come quickly.
    let aws = Aws::fresh_with(3, 1).await;
    let mavera = MaveraStandIn::start().await;
    let cio = CioStandIn::start().await;
    let store = aws.store();
    let env = Env::new().mavera(&mavera).customerio(&cio).set("DRY_RUN", options.dry_run.to_string());
    let settings = worker::Settings::from_vars(&env, options.triggers.for_worker()).unwrap();
    let worker = worker::build(settings, Arc::new(store.clone())).unwrap();
    let app =
        TestApp::spawn_with(options.triggers.rules, verifiers(false), Arc::new(store.clone()), Arc::new(aws.queue()))
            .await;
    Rig { aws, mavera, cio, store, worker, app }
}

impl Rig {
    async fn run(&self) -> relay_tests::sqs_driver::Drive {
        drive(&self.aws, &self.worker, 10, JOB_TIME, Duration::from_secs(60)).await
    }

    async fn record(&self, key: &str) -> JobRecord {
        self.store.get(&JobKey::from_stored(key)).await.unwrap().unwrap_or_else(|| panic!("no record {key}"))
    }
}

fn track(id: &str, event: &str, user: &str, properties: Value) -> String {
    segment_track(id, event, user, properties).to_string()
}

/// A queue message body for a Segment event, as ingest would write it.
fn message(id: &str, event: &str, user: &str, rule: &str, properties: Value) -> (String, String) {
    let body = track(id, event, user, properties);
    let event = shared::parse::envelopes(Source::Segment, body.as_bytes()).unwrap().remove(0).to_event().unwrap();
    let rule = RuleName::parse(rule).unwrap();
    let key = JobKey::for_event(Source::Segment, &EventId::parse(id).unwrap(), &rule);
    (key.to_string(), JobMessage::event_body(&key, &rule, &event).unwrap())
}

#[tokio::test]
async fn each_shipped_segment_rule_sends_its_request_and_keeps_the_result() {
    let r = rig().await;
    // The shipped persona bodies are the reference's: they pass the stand-in's strict mode.
    r.mavera.strict_personas(true);
    for (id, event, props) in [
        ("t-1", "trial_started", json!({"plan": "pro", "source": "google"})),
        ("u-1", "plan_upgraded", json!({"previous_plan": "basic", "new_plan": "pro"})),
        ("f-1", "feature_milestone", json!({"milestone": "100 reports", "feature_name": "Dashboards"})),
        ("c-1", "churn_signal", json!({"ltv": 480, "signal_type": "seat_drop", "tenure_days": 95})),
    ] {
        let answer = r.app.post_segment(&track(id, event, "usr_k8m2n", props)).await;
        assert_eq!(answer.body["status"], "queued", "{event}: {:?}", answer.body);
    }
    let d = r.run().await;
    assert_eq!((d.delivered, d.reported_failed), (4, 0));

    let personas = r.mavera.requests_to("/personas");
    assert_eq!(personas.len(), 2);
    let trial_name = persona_name("Segment RT: Trial User — usr_k8m2n", "segment#t-1#segment-trial-started");
    let trial = personas.iter().find(|p| p.body.as_ref().unwrap()["name"] == trial_name.as_str()).unwrap();
    let body = trial.body.as_ref().unwrap();
    assert_eq!(
        body["description"],
        "Real-time persona created when user usr_k8m2n started a trial. Plan: pro. Source: google."
    );
    assert_eq!((&body["pipeline_type"], &body["type"]), (&json!("north_star"), &json!("B2B")));
    assert_eq!(body["triggers"], json!(["Started a trial of the pro plan"]));
    assert_eq!(body["channels"], json!(["google"]));
    assert_eq!(body.get("psychographic"), None, "not in Mavera's reference");
    let champion = personas.iter().find(|p| p.body.as_ref().unwrap()["name"] != trial.body.as_ref().unwrap()["name"]);
    let champion = champion.unwrap().body.as_ref().unwrap();
    assert_eq!(champion["triggers"], json!(["Reached the 100 reports milestone in Dashboards"]));
    assert_eq!(champion["win_factors"], json!(["Dashboards"]));
    assert!(trial.headers["authorization"].to_str().unwrap().starts_with("Bearer mvra_live_"));

    let research: Vec<String> = r
        .mavera
        .requests_to("/mave/chat")
        .iter()
        .map(|q| q.body.as_ref().unwrap()["message"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(research.len(), 2);
    assert!(research.iter().any(|m| m.starts_with("A user just upgraded from basic to pro.")), "{research:?}");
    assert!(
        research.iter().any(|m| m.starts_with(
            "A user with LTV $480 just triggered a churn signal: seat_drop. They've been a customer for 95 days."
        )),
        "{research:?}"
    );

    let persona = r.record("segment#t-1#segment-trial-started").await;
    assert_eq!(persona.status, JobStatus::Done);
    let result = persona.result.unwrap();
    assert!(result["persona_id"].as_str().is_some_and(|id| !id.is_empty()), "{result}");
    assert_eq!(result["name"], persona_name("Segment RT: Trial User — usr_k8m2n", "segment#t-1#segment-trial-started"));
    assert_eq!(result["credits"], 300.0);
    let upgrade = r.record("segment#u-1#segment-plan-upgraded").await.result.unwrap();
    assert!(upgrade["thread_id"].as_str().is_some_and(|t| !t.is_empty()), "{upgrade}");
    assert!(upgrade["content"].as_str().is_some_and(|c| !c.is_empty()), "{upgrade}");
    assert!(upgrade["credits"].as_f64().is_some(), "{upgrade}");
}

#[tokio::test]
async fn a_generate_rule_posts_app_and_input_and_keeps_the_output() {
    let triggers = Triggers::parse(
        r#"[[rule]]
name = "winback-copy"
source = "segment"
event = "churn_signal"
action = "generate"
[rule.generate]
app_id = "email-variations"
title = "Win back {user_id}"
input = { topic = "Win back a {plan} customer", tone = "warm" }"#,
        "t.toml",
    )
    .unwrap();
    let r = rig_with(Options { triggers, ..Options::default() }).await;
    r.app.post_segment(&track("g-1", "churn_signal", "u7", json!({"plan": "pro"}))).await;
    r.run().await;
    let sent = r.mavera.requests_to("/generations");
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].body.as_ref().unwrap(),
        &json!({"app_id": "email-variations", "title": "Win back u7", "input_data": {"topic": "Win back a pro customer", "tone": "warm"}})
    );
    let result = r.record("segment#g-1#winback-copy").await.result.unwrap();
    assert!(result["generation_id"].as_str().is_some(), "{result}");
    assert!(result["output"].as_str().is_some_and(|o| !o.is_empty()), "{result}");
}

#[tokio::test]
async fn a_batch_with_one_failing_record_reports_exactly_that_one() {
    let r = rig().await;
    // Mave asks to wait ten minutes: more than the job has, so it goes back to the queue.
    r.mavera.script("/mave/chat", [Reply::RateLimited { retry_after_secs: Some(600) }]);
    let (k1, b1) = message("b-1", "trial_started", "u1", "segment-trial-started", json!({}));
    let (k2, b2) = message("b-2", "plan_upgraded", "u2", "segment-plan-upgraded", json!({}));
    let (k3, b3) = message("b-3", "feature_milestone", "u3", "segment-feature-milestone", json!({}));
    let event = sqs_event(&[("m-1", &b1), ("m-2", &b2), ("m-3", &b3)]);
    let started = Instant::now();
    let response = sqs::handle_batch(&r.worker, event, Instant::now() + JOB_TIME, &Metrics::disabled()).await;
    let failed: Vec<_> = response.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect();
    assert_eq!(failed, ["m-2"]);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a wait that cannot fit is not waited: {:?}",
        started.elapsed()
    );
    assert_eq!(r.record(&k1).await.status, JobStatus::Done);
    assert_eq!(r.record(&k3).await.status, JobStatus::Done);
    let retrying = r.record(&k2).await;
    assert_eq!(retrying.status, JobStatus::Retrying);
    assert!(retrying.error.unwrap().contains("429"), "the reason is kept");
}

#[tokio::test]
async fn twenty_concurrent_deliveries_of_one_job_make_one_call() {
    let r = rig().await;
    r.mavera.set_path_latency("/personas", Duration::from_millis(300));
    let (key, body) = message("d-1", "trial_started", "u1", "segment-trial-started", json!({}));
    let records: Vec<(String, &str)> = (0..20).map(|i| (format!("m-{i}"), body.as_str())).collect();
    let records: Vec<(&str, &str)> = records.iter().map(|(id, b)| (id.as_str(), *b)).collect();
    let response =
        sqs::handle_batch(&r.worker, sqs_event(&records), Instant::now() + JOB_TIME, &Metrics::disabled()).await;
    assert!(response.batch_item_failures.is_empty(), "duplicates are dropped, not retried");
    assert_eq!(r.mavera.count("/personas"), 1);
    assert_eq!(r.record(&key).await.status, JobStatus::Done);
}

#[tokio::test]
async fn twenty_deliveries_in_sequence_make_one_call() {
    let r = rig().await;
    let (key, body) = message("d-2", "plan_upgraded", "u1", "segment-plan-upgraded", json!({}));
    for i in 0..20 {
        let d = r.worker.process(&body, Instant::now() + JOB_TIME).await;
        if i == 0 {
            assert_eq!(d, Disposition::Finished(JobStatus::Done));
        } else {
            assert_eq!(d, Disposition::AlreadyFinished(JobStatus::Done));
        }
    }
    assert_eq!(r.mavera.count("/mave/chat"), 1);
    assert_eq!(r.record(&key).await.attempts, 1);
}

#[tokio::test]
async fn a_job_whose_worker_died_while_running_is_retried_once_the_lease_expires() {
    let r = rig().await;
    let (key, body) = message("crash-1", "trial_started", "u1", "segment-trial-started", json!({}));
    let rule = RuleName::parse("segment-trial-started").unwrap();
    let now = std::time::SystemTime::now();
    // A worker took the job and died: its lease runs out two seconds from now.
    let dead = Lease { owner: "dead-worker".into(), until: now + Duration::from_secs(2) };
    assert_eq!(
        r.store.start(&StartJob::new(&JobKey::from_stored(&key), &rule, &dead, "{}", now)).await.unwrap(),
        Start::Started { attempt: 1 }
    );

    assert_eq!(r.worker.process(&body, Instant::now() + JOB_TIME).await, Disposition::HeldElsewhere);
    assert_eq!(r.mavera.count("/personas"), 0, "a live lease keeps others out");

    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(r.worker.process(&body, Instant::now() + JOB_TIME).await, Disposition::Finished(JobStatus::Done));
    let record = r.record(&key).await;
    assert_eq!((record.status, record.attempts), (JobStatus::Done, 2));
    assert_eq!(r.mavera.count("/personas"), 1);
}

#[tokio::test]
async fn rate_limits_are_waited_out_and_server_errors_retried() {
    let r = rig().await;
    r.mavera.script(
        "/mave/chat",
        [Reply::RateLimited { retry_after_secs: Some(1) }, Reply::ServerError(500), Reply::ServerError(503)],
    );
    let (key, body) = message("rl-1", "plan_upgraded", "u1", "segment-plan-upgraded", json!({}));
    let started = Instant::now();
    assert_eq!(r.worker.process(&body, Instant::now() + JOB_TIME).await, Disposition::Finished(JobStatus::Done));
    assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After was honoured");
    assert_eq!(r.mavera.count("/mave/chat"), 4);
    assert_eq!(r.record(&key).await.status, JobStatus::Done);
}

#[tokio::test]
async fn credits_exhausted_is_failed_with_maveras_message_and_never_retried() {
    let r = rig().await;
    r.mavera.script("/personas", [Reply::CreditsExhausted]);
    let (key, body) = message("pay-1", "trial_started", "u1", "segment-trial-started", json!({}));
    assert_eq!(r.worker.process(&body, Instant::now() + JOB_TIME).await, Disposition::Finished(JobStatus::Failed));
    let record = r.record(&key).await;
    assert_eq!(record.status, JobStatus::Failed);
    let error = record.error.unwrap();
    assert!(error.contains("402") && error.to_lowercase().contains("credits"), "{error}");
    assert_eq!(
        r.worker.process(&body, Instant::now() + JOB_TIME).await,
        Disposition::AlreadyFinished(JobStatus::Failed)
    );
    assert_eq!(r.mavera.count("/personas"), 1);

    // The once-per-user mark is dropped, so the user's next trial event may still fire.
    let (_, again) = message("pay-2", "trial_started", "u1", "segment-trial-started", json!({}));
    assert_eq!(r.worker.process(&again, Instant::now() + JOB_TIME).await, Disposition::Finished(JobStatus::Done));
}

#[tokio::test]
async fn a_duplicate_persona_name_counts_as_done() {
    let r = rig().await;
    r.mavera.script("/personas", [Reply::DuplicateName]);
    let (key, body) = message("dup-1", "trial_started", "u1", "segment-trial-started", json!({}));
    assert_eq!(r.worker.process(&body, Instant::now() + JOB_TIME).await, Disposition::Finished(JobStatus::Done));
    let record = r.record(&key).await;
    let result = record.result.unwrap();
    assert_eq!(result["already_existed"], true);
    // Mavera's code said duplicate, but it lists no persona of that name: done, id unknown.
    assert_eq!(result["persona_id"], Value::Null);
    assert!(record.notes.iter().any(|n| n.contains("422")), "{:?}", record.notes);
    assert!(record.notes.iter().any(|n| n.contains("its id is not recorded")), "{:?}", record.notes);
}

/// The name the shipped trial rule gives user `u1`'s persona in the job `key` (the worker
/// tags each job's persona name, so only this job's earlier call can have made it).
fn trial_persona_name(key: &str) -> String {
    PersonaName::for_job("Segment RT: Trial User — u1", &JobKey::from_stored(key)).into_string()
}

#[tokio::test]
async fn a_duplicate_records_the_existing_personas_id() {
    let r = rig().await;
    let (key, body) = message("dup-2", "trial_started", "u1", "segment-trial-started", json!({}));
    // Made by this job's earlier call, whose answer was lost.
    let id = r.mavera.add_persona(&trial_persona_name(&key));

    assert_eq!(r.worker.process(&body, Instant::now() + JOB_TIME).await, Disposition::Finished(JobStatus::Done));

    let result = r.record(&key).await.result.unwrap();
    assert_eq!((&result["already_existed"], &result["persona_id"]), (&json!(true), &json!(id)));
    let methods: Vec<String> = r.mavera.requests_to("/personas").iter().map(|q| q.method.to_string()).collect();
    assert_eq!(methods, ["POST", "GET"], "one refused POST, then the free lookup");
}

#[tokio::test]
async fn a_422_that_only_names_the_name_field_is_a_duplicate_only_if_the_name_exists() {
    let r = rig().await;
    r.mavera.set_duplicate_error(DuplicateError::NameField);
    let (key, body) = message("nf-1", "trial_started", "u1", "segment-trial-started", json!({}));
    let id = r.mavera.add_persona(&trial_persona_name(&key));
    assert_eq!(r.worker.process(&body, Instant::now() + JOB_TIME).await, Disposition::Finished(JobStatus::Done));
    assert_eq!(r.record(&key).await.result.unwrap()["persona_id"], json!(id));

    // The same refusal when no persona has the name: the name itself was refused.
    r.mavera.script(
        "/personas",
        [Reply::Error {
            status: 422,
            kind: "invalid_request_error".into(),
            code: "invalid_field".into(),
            message: "Invalid value for 'name': contains unsupported characters.".into(),
            param: Some("name".into()),
        }],
    );
    let (key, body) = message("nf-2", "trial_started", "u2", "segment-trial-started", json!({}));
    let (disposition, tally) = r.worker.process_tallied(&body, Instant::now() + JOB_TIME).await;
    assert_eq!((disposition, tally.failure), (Disposition::Finished(JobStatus::Failed), Some(FailureClass::Rejected)));
    let record = r.record(&key).await;
    assert!(record.error.as_deref().unwrap().contains("unsupported characters"), "{record:?}");
    assert!(record.notes.iter().any(|n| n.contains("not a duplicate")), "{:?}", record.notes);
}

#[tokio::test]
async fn any_other_422_fails_with_maveras_message_and_creates_nothing() {
    let r = rig().await;
    let unprocessable = |code: &str, param: Option<&str>, message: &str| Reply::Error {
        status: 422,
        kind: "invalid_request_error".into(),
        code: code.into(),
        message: message.into(),
        param: param.map(str::to_owned),
    };
    r.mavera.script(
        "/personas",
        [
            unprocessable("invalid_field", Some("type"), "Persona type B2B is not enabled for this workspace."),
            // A duplicate said only in words: not read as one (the safe side: FAILED, not a
            // silent DONE), and Mavera's words are in the record.
            unprocessable("unprocessable_entity", None, "A persona with this name already exists."),
        ],
    );
    for (id, user, words) in [("u422-1", "u1", "not enabled for this workspace"), ("u422-2", "u2", "already exists")] {
        let (key, body) = message(id, "trial_started", user, "segment-trial-started", json!({}));
        let (disposition, tally) = r.worker.process_tallied(&body, Instant::now() + JOB_TIME).await;
        assert_eq!(disposition, Disposition::Finished(JobStatus::Failed));
        assert_eq!(tally.failure, Some(FailureClass::Rejected));
        let record = r.record(&key).await;
        assert!(record.error.as_deref().unwrap().contains(words), "{record:?}");
        assert_eq!(record.result, None);
    }
    assert!(r.mavera.requests_to("/personas").iter().all(|q| q.method == "POST"), "no lookup for these");
    assert!(r.mavera.persona_names().is_empty());
}

#[tokio::test]
async fn a_strict_mavera_refuses_a_persona_body_outside_the_reference() {
    let triggers = Triggers::parse(
        r#"[[rule]]
name = "legacy-persona"
source = "segment"
event = "trial_started"
action = "create_persona"
[rule.persona]
name = "Legacy {user_id}"
description = "As Mavera's Segment page sends it."
context_field = "psychographic""#,
        "t.toml",
    )
    .unwrap();
    let r = rig_with(Options { triggers, ..Options::default() }).await;
    r.mavera.strict_personas(true);
    let (key, body) = message("strict-1", "trial_started", "u1", "legacy-persona", json!({"plan": "pro"}));
    assert_eq!(r.worker.process(&body, Instant::now() + JOB_TIME).await, Disposition::Finished(JobStatus::Failed));
    let error = r.record(&key).await.error.unwrap();
    assert!(error.contains("(400 invalid_field)") && error.contains("field `psychographic`"), "{error}");
}

#[tokio::test]
async fn a_generation_mavera_wants_a_workspace_for_fails_saying_to_set_it() {
    let rule = |workspace: &str| {
        format!(
            "[[rule]]\nname = \"copy\"\nsource = \"segment\"\nevent = \"churn_signal\"\naction = \"generate\"\n\
             [rule.generate]\napp_id = \"email-variations\"\ninput = {{ topic = \"{{plan}}\" }}\n{workspace}"
        )
    };
    let r = rig_with(Options { triggers: Triggers::parse(&rule(""), "t.toml").unwrap(), ..Options::default() }).await;
    r.mavera.require_workspace(true);
    let (key, body) = message("ws-1", "churn_signal", "u1", "copy", json!({"plan": "pro"}));
    assert_eq!(r.worker.process(&body, Instant::now() + JOB_TIME).await, Disposition::Finished(JobStatus::Failed));
    let error = r.record(&key).await.error.unwrap();
    assert!(error.contains("set `workspace_id` in the rule's [rule.generate]"), "{error}");

    let triggers = Triggers::parse(&rule("workspace_id = \"ws_42\""), "t.toml").unwrap();
    let r = rig_with(Options { triggers, ..Options::default() }).await;
    r.mavera.require_workspace(true);
    let (key, body) = message("ws-2", "churn_signal", "u1", "copy", json!({"plan": "pro"}));
    assert_eq!(r.worker.process(&body, Instant::now() + JOB_TIME).await, Disposition::Finished(JobStatus::Done));
    assert_eq!(r.mavera.requests_to("/generations")[0].body.as_ref().unwrap()["workspace_id"], "ws_42");
    assert!(r.record(&key).await.result.unwrap()["generation_id"].is_string());
}

#[tokio::test]
async fn a_persona_call_that_timed_out_but_ran_reads_as_done_on_retry() {
    let r = rig().await;
    r.mavera.set_path_latency("/personas", Duration::from_secs(6));
    let (key, body) = message("slow-1", "trial_started", "u1", "segment-trial-started", json!({}));
    // 8 s for the job leaves 3 s for the call (5 s are kept to record the result).
    let d = r.worker.process(&body, Instant::now() + Duration::from_secs(8)).await;
    assert!(matches!(d, Disposition::Retry { .. }), "{d:?}");
    assert_eq!(r.record(&key).await.status, JobStatus::Retrying);

    // Mavera finished creating it after we hung up: the retry is told the name exists.
    r.mavera.set_path_latency("/personas", Duration::ZERO);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(r.worker.process(&body, Instant::now() + JOB_TIME).await, Disposition::Finished(JobStatus::Done));
    assert_eq!(r.mavera.persona_names().len(), 1, "one persona, not two");
    let result = r.record(&key).await.result.unwrap();
    assert_eq!(result["already_existed"], true);
    assert_eq!(
        result["persona_id"],
        json!(r.mavera.persona_id(&trial_persona_name(&key)).unwrap()),
        "the one that ran"
    );
}

#[tokio::test]
async fn once_per_user_and_daily_caps_skip_the_call() {
    let triggers = Triggers::parse(
        r#"[[rule]]
name = "capped"
source = "segment"
event = "plan_upgraded"
action = "research"
daily_cap = 2
research = { prompt = "why {new_plan}" }

[[rule]]
name = "once"
source = "segment"
event = "trial_started"
action = "create_persona"
once_per_user = true
persona = { name = "Trial {user_id}", description = "d" }"#,
        "t.toml",
    )
    .unwrap();
    let r = rig_with(Options { triggers, ..Options::default() }).await;
    for i in 0..3 {
        let (_, body) =
            message(&format!("cap-{i}"), "plan_upgraded", &format!("u{i}"), "capped", json!({"new_plan": "pro"}));
        r.worker.process(&body, Instant::now() + JOB_TIME).await;
    }
    assert_eq!(r.mavera.count("/mave/chat"), 2, "a cap of 2 allows 2 calls a day");
    let skipped = r.record("segment#cap-2#capped").await;
    assert_eq!(skipped.status, JobStatus::Skipped);
    assert!(skipped.error.unwrap().contains("daily cap of 2"));

    for id in ["once-1", "once-2"] {
        let (_, body) = message(id, "trial_started", "same-user", "once", json!({}));
        r.worker.process(&body, Instant::now() + JOB_TIME).await;
    }
    assert_eq!(r.mavera.count("/personas"), 1);
    assert_eq!(r.record("segment#once-2#once").await.status, JobStatus::Skipped);
}

#[tokio::test]
async fn dry_run_records_the_request_and_calls_nothing() {
    let r = rig_with(Options { dry_run: true, ..Options::default() }).await;
    let (key, body) = message("dry-1", "trial_started", "u1", "segment-trial-started", json!({"plan": "pro"}));
    assert_eq!(r.worker.process(&body, Instant::now() + JOB_TIME).await, Disposition::Finished(JobStatus::Done));
    assert!(r.mavera.requests().is_empty());
    let result = r.record(&key).await.result.unwrap();
    assert_eq!(result["dry_run"], true);
    assert_eq!(result["request"]["path"], "/personas");
    assert_eq!(result["request"]["body"]["name"], persona_name("Segment RT: Trial User — u1", &key));
}

#[tokio::test]
async fn customerio_alerts_look_attributes_up_once_and_research_only_high_value_plans() {
    let r = rig().await;
    r.cio.add_person(
        Person::new("cio-1").id("cust-1").attribute("plan_type", "Enterprise").attribute("industry", "Fintech"),
    );
    r.cio.add_person(Person::new("cio-2").id("cust-2").attribute("plan_type", "free"));
    for (id, metric, customer) in
        [("e-1", "unsubscribed", "cust-1"), ("e-2", "bounced", "cust-1"), ("e-3", "spammed", "cust-2")]
    {
        let answer = r.app.post_customerio(&cio_email(id, metric, customer).to_string()).await;
        assert_eq!(answer.body["status"], "queued", "{:?}", answer.body);
    }
    r.run().await;

    assert_eq!(
        r.cio.requests_to("/v1/customers/cust-1/attributes").len(),
        1,
        "the second event used the cached attributes"
    );
    let prompts: Vec<String> = r
        .mavera
        .requests_to("/mave/chat")
        .iter()
        .map(|q| q.body.as_ref().unwrap()["message"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(prompts.len(), 2, "{prompts:?}");
    assert!(prompts.iter().all(|p| p.contains("enterprise plan customer in fintech with low usage")), "{prompts:?}");
    let skipped = r.record("customerio#e-3#cio-high-value-alert").await;
    assert_eq!(skipped.status, JobStatus::Skipped);
    assert!(skipped.error.unwrap().contains("customer.plan"), "a free plan is not high-value");
}

/// A queue message body for a Customer.io event, as ingest would write it.
fn cio_message(id: &str, metric: &str, customer: &str) -> (String, String) {
    let body = cio_email(id, metric, customer).to_string();
    let event = shared::parse::envelopes(Source::CustomerIo, body.as_bytes()).unwrap().remove(0).to_event().unwrap();
    let rule = RuleName::parse("cio-high-value-alert").unwrap();
    let key = JobKey::for_event(Source::CustomerIo, &EventId::parse(id).unwrap(), &rule);
    (key.to_string(), JobMessage::event_body(&key, &rule, &event).unwrap())
}

#[tokio::test]
async fn a_person_customerio_does_not_know_is_counted_and_only_briefly_cached() {
    let r = rig().await;
    r.cio.add_person(Person::new("c1").id("cust-1").attribute("plan_type", "pro"));

    let (_, known) = cio_message("nf-known", "unsubscribed", "cust-1");
    let (_, tally) = r.worker.process_tallied(&known, Instant::now() + JOB_TIME).await;
    assert_eq!(tally.lookup_not_found, Some(false));

    let (key, unknown) = cio_message("nf-unknown", "unsubscribed", "cust-404");
    let (disposition, tally) = r.worker.process_tallied(&unknown, Instant::now() + JOB_TIME).await;
    assert_eq!(disposition, Disposition::Finished(JobStatus::Skipped), "the plan is unknown, so not high-value");
    assert_eq!(tally.lookup_not_found, Some(true), "counted for the customers_not_found metric");
    let record = r.record(&key).await;
    assert!(record.notes.iter().any(|n| n.contains("no attributes for id cust-404")), "{:?}", record.notes);

    let cached = r
        .aws
        .items()
        .await
        .into_iter()
        .find(|i| text(i, "pk") == Some("cache#cio-attributes#id#cust-404"))
        .expect("the not-found answer is cached");
    let fresh_ms: u64 = cached["fresh_until"].as_n().unwrap().parse().unwrap();
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    assert!(fresh_ms <= now_ms + NOT_FOUND_TTL.as_millis() as u64, "kept at most {NOT_FOUND_TTL:?}");
    assert_eq!(text(&cached, "value"), Some("null"));
}

#[tokio::test]
async fn a_lookup_that_keeps_failing_is_retried_then_skipped_never_run_as_if_the_plan_held() {
    // The shipped rule exists to keep free users from costing credits: unknown attributes
    // must not count as a high-value plan.
    let r = rig().await;
    for _ in 0..40 {
        r.cio.push_reply("/v1/customers", relay_tests::cio_standin::Reply::status(503));
    }
    let answer = r.app.post_customerio(&cio_email("e-down", "unsubscribed", "cust-9").to_string()).await;
    assert_eq!(answer.body["status"], "queued");
    r.run().await;
    let record = r.record("customerio#e-down#cio-high-value-alert").await;
    assert_eq!(record.status, JobStatus::Skipped, "{record:?}");
    assert_eq!(record.attempts, shared::worker::ENRICHMENT_ATTEMPTS, "retried while the lookup was transient");
    let reason = record.error.unwrap_or_default();
    assert!(reason.contains("could not be checked after 3 attempts") && reason.contains("lookup"), "{reason}");
    assert_eq!(r.mavera.count("/mave/chat"), 0, "no research for a customer whose plan is unknown");
    assert_eq!(r.aws.depth(&r.aws.dlq_url).await, 0, "skipped with the reason, not dead-lettered");
}

#[tokio::test]
async fn a_lookup_that_recovers_is_checked_on_the_next_delivery() {
    let r = rig().await;
    r.cio.add_person(Person::new("cio-7").id("cust-7").attribute("plan_type", "Enterprise"));
    // The first delivery's lookup (the first call and three retries) fails.
    for _ in 0..4 {
        r.cio.push_reply("/v1/customers", relay_tests::cio_standin::Reply::status(503));
    }
    let answer = r.app.post_customerio(&cio_email("e-flaky", "unsubscribed", "cust-7").to_string()).await;
    assert_eq!(answer.body["status"], "queued");
    r.run().await;
    let record = r.record("customerio#e-flaky#cio-high-value-alert").await;
    assert_eq!((record.status, record.attempts), (JobStatus::Done, 2), "{record:?}");
    assert_eq!(r.mavera.count("/mave/chat"), 1);
}

#[tokio::test]
async fn an_event_without_a_person_id_is_skipped_with_the_reason() {
    let r = rig().await;
    let body = json!({"metric": "unsubscribed", "event_id": "e-anon", "object_type": "email", "data": {"recipient": "x@example.com"}});
    assert_eq!(r.app.post_customerio(&body.to_string()).await.body["status"], "queued");
    r.run().await;
    let record = r.record("customerio#e-anon#cio-high-value-alert").await;
    assert_eq!((record.status, record.attempts), (JobStatus::Skipped, 1), "{record:?}");
    assert!(record.error.unwrap_or_default().contains("has no `user_id`"));
    assert_eq!(r.mavera.count("/mave/chat"), 0);
}

#[tokio::test]
async fn nothing_is_lost_every_job_ends_finished_or_in_the_dlq() {
    let r = rig().await;
    r.mavera.script("/personas", [Reply::CreditsExhausted, Reply::ServerError(503)]);
    r.mavera.script("/mave/chat", [Reply::RateLimited { retry_after_secs: Some(1) }]);
    let mut keys = Vec::new();
    for i in 0..12 {
        let (id, event, rule) = match i % 3 {
            0 => (format!("n-{i}"), "trial_started", "segment-trial-started"),
            1 => (format!("n-{i}"), "plan_upgraded", "segment-plan-upgraded"),
            _ => (format!("n-{i}"), "churn_signal", "segment-churn-signal"),
        };
        let answer = r.app.post_segment(&track(&id, event, &format!("user-{i}"), json!({}))).await;
        assert_eq!(answer.body["status"], "queued");
        keys.push(format!("segment#{id}#{rule}"));
    }
    // A message no worker can read: it must end in the DLQ, not vanish.
    r.aws.sqs.send_message().queue_url(&r.aws.queue_url).message_body("{not a job").send().await.unwrap();

    let d = r.run().await;
    assert!(d.reported_failed >= 3, "the poison message was reported on each of its 3 receives: {d:?}");

    let mut failed = Vec::new();
    for key in &keys {
        let record = r.record(key).await;
        assert!(matches!(record.status, JobStatus::Done | JobStatus::Failed), "{key}: {:?}", record.status);
        if record.status == JobStatus::Failed {
            failed.push(key.clone());
        }
    }
    // Which persona job drew the scripted 402 depends on the batch's concurrency.
    assert_eq!(failed.len(), 1, "exactly the 402 is permanent: {failed:?}");
    assert!(failed[0].ends_with("#segment-trial-started"), "{failed:?}");
    assert_eq!(r.mavera.count("/personas"), 5, "4 jobs, one of them retried after its 503");
    assert_eq!(r.aws.depth(&r.aws.queue_url).await, 0);
    let dead = r.aws.drain(&r.aws.dlq_url).await;
    assert_eq!(dead, ["{not a job"], "what keeps failing lands in the DLQ");
}

#[tokio::test]
async fn a_job_tells_the_metrics_why_it_failed_and_what_it_cost() {
    let r = rig().await;
    let (_, persona) = message("tally-1", "trial_started", "u1", "segment-trial-started", json!({}));
    let (disposition, tally) = r.worker.process_tallied(&persona, Instant::now() + JOB_TIME).await;
    assert_eq!(disposition, Disposition::Finished(JobStatus::Done));
    assert_eq!(tally.rule.as_ref().map(RuleName::as_str), Some("segment-trial-started"));
    assert_eq!((tally.failure, tally.credits), (None, Some(300.0)), "the stand-in charges 300 per persona");

    r.mavera.script("/personas", [Reply::CreditsExhausted]);
    let (_, broke) = message("tally-2", "trial_started", "u2", "segment-trial-started", json!({}));
    let (disposition, tally) = r.worker.process_tallied(&broke, Instant::now() + JOB_TIME).await;
    assert_eq!(disposition, Disposition::Finished(JobStatus::Failed));
    assert_eq!((tally.failure, tally.credits), (Some(FailureClass::CreditsExhausted), None));

    // A revoked key: the stand-in answers 401 invalid_api_key to any other key.
    let env = Env::new().mavera(&r.mavera).customerio(&r.cio).set("MAVERA_API_KEY", "mvra_test_revoked");
    let settings = worker::Settings::from_vars(&env, Triggers::embedded().unwrap().for_worker()).unwrap();
    let revoked = worker::build(settings, Arc::new(r.store.clone())).unwrap();
    let (_, research) = message("tally-3", "plan_upgraded", "u3", "segment-plan-upgraded", json!({}));
    let (disposition, tally) = revoked.process_tallied(&research, Instant::now() + JOB_TIME).await;
    assert_eq!(disposition, Disposition::Finished(JobStatus::Failed));
    assert_eq!(tally.failure, Some(FailureClass::Unauthorized));
}

#[tokio::test]
async fn two_users_whose_ids_begin_alike_each_get_their_persona() {
    // The shipped name once kept 12 characters of the user id: the second user's persona met
    // Mavera's "name exists" and was silently never created.
    let r = rig().await;
    for (id, user) in [("twin-1", "usr_0123456789ab_first"), ("twin-2", "usr_0123456789ab_second")] {
        let answer = r.app.post_segment(&track(id, "trial_started", user, json!({"plan": "pro"}))).await;
        assert_eq!(answer.body["status"], "queued");
    }
    r.run().await;
    assert_eq!(r.mavera.persona_names().len(), 2, "{:?}", r.mavera.persona_names());
    for id in ["twin-1", "twin-2"] {
        let result = r.record(&format!("segment#{id}#segment-trial-started")).await.result.unwrap();
        assert!(result.get("already_existed").is_none(), "{result}");
    }
}
