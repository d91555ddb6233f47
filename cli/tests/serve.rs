//! `relay serve` as a process: the whole pipeline against the Mavera and Customer.io stand-ins.

use std::time::Duration;

use relay_tests::cio_standin::{CioStandIn, Person};
use relay_tests::mavera_standin::MaveraStandIn;
use relay_tests::payloads::{cio_email, segment_track};
use relay_tests::slack_standin::SlackStandIn;
use relay_tests::webhook_receiver::{self, WebhookReceiver};
use serde_json::{Value, json};

use crate::support::{Serve, TempDir, eventually, run, secrets, text};

const WAIT: Duration = Duration::from_secs(10);

/// Everything a live run needs: secrets, the Mavera stand-in and its key, the Customer.io
/// stand-in for the enriching rule.
fn live_env(mavera: &MaveraStandIn, cio: &CioStandIn) -> Vec<(&'static str, String)> {
    let mut env: Vec<(&'static str, String)> = secrets().into_iter().map(|(k, v)| (k, v.to_owned())).collect();
    env.push(("MAVERA_BASE_URL", mavera.base_url()));
    env.push(("MAVERA_API_KEY", mavera.api_key().to_owned()));
    env.push(("CIO_APP_KEY", cio.app_key().to_owned()));
    env.push(("CIO_APP_API_URL", cio.base_url()));
    env
}

fn refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

async fn live(args: &[&str]) -> (Serve, MaveraStandIn, CioStandIn) {
    let (mavera, cio) = (MaveraStandIn::start().await, CioStandIn::start().await);
    let env = live_env(&mavera, &cio);
    let serve = Serve::start(args, &refs(&env)).await;
    (serve, mavera, cio)
}

fn trial(id: &str, user: &str) -> Value {
    segment_track(id, "trial_started", user, json!({"plan": "pro", "source": "google"}))
}

#[tokio::test]
async fn a_signed_trial_started_creates_one_persona() {
    let (mut serve, mavera, _cio) = live(&[]).await;
    let (status, body) = serve.post_segment(&trial("m-trial", "usr_k8m2n")).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("queued")), "{body}");
    assert!(eventually(WAIT, || mavera.count("/personas") == 1).await, "no persona request:\n{}", serve.output());
    let request = &mavera.requests_to("/personas")[0];
    let sent = request.body.as_ref().unwrap();
    assert_eq!(sent["name"], "Segment RT: Trial User — usr_k8m2n");
    assert_eq!(
        sent["description"],
        "Real-time persona created when user usr_k8m2n started a trial. Plan: pro. Source: google."
    );
    assert!(request.auth_valid);
    // One line per step: source, id, rule, outcome.
    let done = serve.wait_for_line(|l| l.contains("m-trial") && l.contains(" done "), WAIT).await;
    assert!(done.contains("segment") && done.contains("segment-trial-started") && done.contains("300"), "{done}");
    assert!(
        serve
            .output()
            .lines()
            .any(|l| l.contains("m-trial") && l.contains("segment-trial-started") && l.trim_end().ends_with("queued"))
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(mavera.count("/personas"), 1, "exactly one request");
}

#[tokio::test]
async fn plan_upgraded_researches_with_the_plans_in_the_prompt() {
    let (serve, mavera, _cio) = live(&[]).await;
    let event = segment_track(
        "m-up",
        "plan_upgraded",
        "usr_p4x9q",
        json!({"previous_plan": "basic", "new_plan": "enterprise"}),
    );
    let (status, body) = serve.post_segment(&event).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("queued")), "{body}");
    assert!(eventually(WAIT, || mavera.count("/mave/chat") == 1).await, "no research request:\n{}", serve.output());
    let message = mavera.requests_to("/mave/chat")[0].body.as_ref().unwrap()["message"].as_str().unwrap().to_owned();
    assert!(message.starts_with("A user just upgraded from basic to enterprise. Research:"), "{message}");
    assert_eq!(mavera.count("/personas"), 0);
}

#[tokio::test]
async fn a_duplicate_is_acknowledged_and_sends_nothing_more() {
    let (serve, mavera, _cio) = live(&[]).await;
    assert_eq!(serve.post_segment(&trial("m-dup", "usr_d")).await.1["status"], "queued");
    assert!(eventually(WAIT, || mavera.count("/personas") == 1).await, "{}", serve.output());
    let (status, body) = serve.post_segment(&trial("m-dup", "usr_d")).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("duplicate")), "{body}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(mavera.count("/personas"), 1);
}

#[tokio::test]
async fn bad_signatures_are_refused_and_unmatched_events_ignored() {
    let (serve, mavera, _cio) = live(&[]).await;
    let body = trial("m-bad", "usr_b").to_string().into_bytes();
    let (status, answer) = serve.post("/webhooks/segment", &[("x-signature", "0".repeat(40))], body).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (401, Some("bad_signature")), "{answer}");

    let (status, answer) = serve.post_segment(&segment_track("m-page", "Page Viewed", "usr_b", json!({}))).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("ignored")), "{answer}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(mavera.requests().is_empty());
}

#[tokio::test]
async fn the_customerio_rule_looks_the_plan_up_before_it_calls_mavera() {
    let (serve, mavera, cio) = live(&[]).await;
    cio.add_person(
        Person::new("cio-1").id("cust-1").attribute("plan_type", "Enterprise").attribute("industry", "Fintech"),
    );
    cio.add_person(Person::new("cio-2").id("cust-2").attribute("plan_type", "free"));
    for (id, customer) in [("e-1", "cust-1"), ("e-2", "cust-2")] {
        assert_eq!(serve.post_customerio(&cio_email(id, "bounced", customer)).await.1["status"], "queued");
    }
    assert!(eventually(WAIT, || mavera.count("/mave/chat") == 1).await, "{}", serve.output());
    let message = mavera.requests_to("/mave/chat")[0].body.as_ref().unwrap()["message"].as_str().unwrap().to_owned();
    assert!(message.contains("enterprise plan customer in fintech"), "{message}");
    let mut serve = serve;
    serve.wait_for_line(|l| l.contains("e-2") && l.contains("skipped"), WAIT).await;
    assert_eq!(mavera.count("/mave/chat"), 1, "the free-plan person is skipped");
}

#[tokio::test]
async fn without_a_mavera_key_it_prints_each_request_instead() {
    let mut serve = Serve::start(&[], &secrets()).await;
    assert_eq!(serve.post_segment(&trial("m-dry", "usr_dry")).await.1["status"], "queued");
    serve.wait_for_line(|l| l.contains("m-dry") && l.contains("would send POST /personas"), WAIT).await;
    serve.wait_for_line(|l| l.contains("\"name\": \"Segment RT: Trial User — usr_dry\""), WAIT).await;
    serve.wait_for_line(|l| l.contains("m-dry") && l.contains(" done ") && l.contains("dry run"), WAIT).await;
    let output = serve.output();
    assert!(output.contains("dry run (MAVERA_API_KEY is not set)"), "{output}");
    assert!(output.contains("CIO_APP_KEY is not set"), "the enriching rule's limits are said up front:\n{output}");
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let mut serve = Serve::start(&["--log-format", "json"], &secrets()).await;
    assert_eq!(serve.post_segment(&trial("m-json", "usr_j")).await.1["status"], "queued");
    serve.wait_for_line(|l| l.contains("m-json") && l.contains("\"done\""), WAIT).await;
    let lines: Vec<Value> =
        serve.output().lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    let queued = lines.iter().find(|l| l["outcome"] == "queued").expect("an ingest line");
    assert_eq!((queued["source"].as_str(), queued["event_id"].as_str()), (Some("segment"), Some("m-json")));
    assert_eq!(queued["rule"], "segment-trial-started");
}

#[tokio::test]
async fn a_queued_event_survives_a_crash_and_runs_once_after_the_restart() {
    let data = TempDir::new("data");
    let args = ["--data-dir", data.path(), "--workers", "1"];
    // First run: Mavera never answers, so the first job is in flight and the second waits
    // in the queue when the process is killed.
    let (stuck, cio) = (MaveraStandIn::start().await, CioStandIn::start().await);
    stuck.set_latency(Duration::from_secs(3600));
    let env = live_env(&stuck, &cio);
    let serve = Serve::start(&args, &refs(&env)).await;
    assert_eq!(serve.post_segment(&trial("m-crash-1", "usr_c1")).await.1["status"], "queued");
    let upgrade =
        segment_track("m-crash-2", "plan_upgraded", "usr_c2", json!({"previous_plan": "basic", "new_plan": "pro"}));
    assert_eq!(serve.post_segment(&upgrade).await.1["status"], "queued");
    assert!(eventually(WAIT, || stuck.in_flight("/personas") == 1).await, "{}", serve.output());
    serve.signal("KILL");
    drop(serve);

    // Second run, same data directory, a Mavera that answers.
    let mavera = MaveraStandIn::start().await;
    let env = live_env(&mavera, &cio);
    let mut serve = Serve::start(&args, &refs(&env)).await;
    serve.wait_for_line(|l| l.contains("2 jobs waiting from before"), WAIT).await;
    assert!(
        eventually(WAIT, || mavera.count("/personas") == 1 && mavera.count("/mave/chat") == 1).await,
        "{}",
        serve.output()
    );
    serve.wait_for_line(|l| l.contains("m-crash-2") && l.contains(" done "), WAIT).await;
    let (status, body) = serve.post_segment(&trial("m-crash-1", "usr_c1")).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("duplicate")), "the store survived too: {body}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!((mavera.count("/personas"), mavera.count("/mave/chat")), (1, 1), "each job ran once");
}

#[tokio::test]
async fn ctrl_c_lets_the_job_in_flight_finish() {
    let (mut serve, mavera, _cio) = live(&[]).await;
    mavera.set_latency(Duration::from_millis(800));
    assert_eq!(serve.post_segment(&trial("m-int", "usr_i")).await.1["status"], "queued");
    assert!(eventually(WAIT, || mavera.in_flight("/personas") == 1).await, "{}", serve.output());
    serve.signal("INT");
    let status = serve.exit(WAIT).await;
    assert!(status.success(), "{status}:\n{}", serve.output());
    let output = serve.output();
    assert!(
        output.lines().any(|l| l.contains("m-int") && l.contains(" done ")),
        "the job finished before the exit:\n{output}"
    );
    assert!(output.contains("stopped"), "{output}");
}

#[tokio::test]
async fn start_up_problems_are_named_and_exit_non_zero() {
    let dir = TempDir::new("rules");
    let bad = dir.0.join("triggers.toml");
    std::fs::write(&bad, "[[rule]]\nname = \"r\"\nsource = \"segment\"\nevent = \"e\"\naction = \"research\"\nresearch = { promt = \"x\" }\n").unwrap();
    let out = run(&["serve", "--addr", "127.0.0.1:0", "--triggers", bad.to_str().unwrap()], &secrets());
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("rule `r`, field `promt`"), "{stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"), "{stderr}");

    let out = run(&["serve", "--addr", "127.0.0.1:0"], &[("CIO_WEBHOOK_SECRET", "x")]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.starts_with("error: SEGMENT_SHARED_SECRET is not set"), "{stderr}");

    // A real Mavera key with an enriching rule and no way to look attributes up.
    let mut env = secrets();
    env.push(("MAVERA_API_KEY", "mvra_live_test_placeholder"));
    let out = run(&["serve", "--addr", "127.0.0.1:0"], &env);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("rule `cio-high-value-alert` sets `enrich = true`") && stderr.contains("CIO_APP_KEY"),
        "{stderr}"
    );
}

/// A research rule that delivers to Slack and the signed webhook.
const DELIVERING_RULES: &str = r#"
[[rule]]
name = "churn"
source = "segment"
event = "churn_signal"
action = "research"
research = { prompt = "Why would {user_id} leave?" }
deliver = ["slack", "webhook"]
"#;

async fn delivering(args: &[&str]) -> (Serve, SlackStandIn, WebhookReceiver, TempDir) {
    let (slack, receiver) = (SlackStandIn::start().await, WebhookReceiver::start().await);
    let dir = TempDir::new("serve-deliver");
    let path = dir.0.join("triggers.toml");
    std::fs::write(&path, DELIVERING_RULES).unwrap();
    let mut env: Vec<(&'static str, String)> = secrets().into_iter().map(|(k, v)| (k, v.to_owned())).collect();
    env.push(("TRIGGERS_PATH", path.display().to_string()));
    env.push(("SLACK_WEBHOOK_URL", slack.webhook_url()));
    env.push(("RESULT_WEBHOOK_URL", receiver.url()));
    env.push(("RESULT_WEBHOOK_SECRET", webhook_receiver::SECRET.to_owned()));
    env.push(("RESULT_WEBHOOK_ALLOW_LOCAL", "true".to_owned()));
    let serve = Serve::start(args, &refs(&env)).await;
    (serve, slack, receiver, dir)
}

#[tokio::test]
async fn serve_delivers_to_a_test_slack_channel_without_spending_credits() {
    // No MAVERA_API_KEY: Mavera's part is a dry run, but the result still goes out.
    let (mut serve, slack, receiver, _dir) = delivering(&[]).await;
    serve.wait_for_line(|l| l.contains("deliveries: slack on, webhook on"), WAIT).await;
    let event = segment_track("m-deliver", "churn_signal", "usr_1", json!({}));
    assert_eq!(serve.post_segment(&event).await.1["status"], "queued");
    assert!(
        eventually(WAIT, || slack.messages().len() == 1 && receiver.messages().len() == 1).await,
        "not delivered:\n{}",
        serve.output()
    );
    assert!(slack.messages()[0].to_string().contains("Dry run: Mavera was not called"));
    assert!(receiver.messages()[0].verified);
    assert!(!serve.output().contains("standin-secret-token"), "the Slack URL is a credential: never printed");
}

#[tokio::test]
async fn a_dry_run_prints_each_delivery_request_and_sends_nothing() {
    let (mut serve, slack, receiver, _dir) = delivering(&["--dry-run"]).await;
    serve.wait_for_line(|l| l.contains("deliveries: dry run"), WAIT).await;
    let event = segment_track("m-dry-deliver", "churn_signal", "usr_2", json!({}));
    assert_eq!(serve.post_segment(&event).await.1["status"], "queued");
    let slack_line =
        serve.wait_for_line(|l| l.contains("would send POST Slack incoming webhook (SLACK_WEBHOOK_URL)"), WAIT).await;
    assert!(slack_line.contains("m-dry-deliver") && slack_line.contains("churn"), "{slack_line}");
    serve.wait_for_line(|l| l.contains("would send POST RESULT_WEBHOOK_URL"), WAIT).await;
    // The body follows, pretty-printed, as for the Mavera request.
    assert!(serve.output().contains("\"blocks\": ["), "{}", serve.output());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(slack.posts().is_empty() && receiver.deliveries().is_empty(), "a dry run sends nothing");
    assert!(!serve.output().contains("standin-secret-token"));
}
