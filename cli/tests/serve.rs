//! `relay serve` as a process: the whole pipeline against the Mavera and Customer.io stand-ins.

use std::time::Duration;

use relay_tests::cio_standin::{CioStandIn, Person};
use relay_tests::mavera_standin::{MaveraStandIn, Reply};
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

/// The name the worker gives job `key`'s persona: the rendered text and the job's tag.
fn persona_name(text: &str, key: &str) -> String {
    shared::domain::PersonaName::for_job(text, &shared::domain::JobKey::from_stored(key)).into_string()
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
    assert_eq!(
        sent["name"],
        persona_name("Segment RT: Trial User — usr_k8m2n", "segment#m-trial#segment-trial-started")
    );
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
    let name = persona_name("Segment RT: Trial User — usr_dry", "segment#m-dry#segment-trial-started");
    serve.wait_for_line(|l| l.contains(&format!("\"name\": \"{name}\"")), WAIT).await;
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

    let out = run(&["serve", "--addr", "127.0.0.1:0"], &[("CIO_WEBHOOK_SECRET_PREVIOUS", "x")]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("CIO_WEBHOOK_SECRET_PREVIOUS is set but CIO_WEBHOOK_SECRET is not"), "{stderr}");
}

#[tokio::test]
async fn a_source_without_its_secret_is_off_and_says_so_while_the_other_runs() {
    let mut serve = Serve::start(&[], &[("CIO_WEBHOOK_SECRET", relay_tests::app::CIO_SECRET)]).await;
    serve.wait_for_line(|l| l.contains("SEGMENT_SHARED_SECRET is not set") && l.contains("is off"), WAIT).await;
    let (status, body) = serve.post_segment(&trial("m-off", "usr_off")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("source_disabled")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap_or("").contains("SEGMENT_SHARED_SECRET"), "{body}");
    let (status, body) = serve.post_customerio(&cio_email("e-on", "bounced", "42")).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("queued")), "{body}");
    let health: Value = reqwest::get(format!("{}/healthz", serve.base)).await.unwrap().json().await.unwrap();
    assert_eq!(health["sources"]["customerio"], "live", "{health}");
    assert!(health["sources"]["segment"].as_str().unwrap().contains("SEGMENT_SHARED_SECRET is not set"), "{health}");
}

#[tokio::test]
async fn the_readmes_first_command_and_the_same_with_a_mavera_key_both_just_work() {
    // SEGMENT_SHARED_SECRET=dev CIO_WEBHOOK_SECRET=dev relay serve
    let first = Serve::start(&[], &[("SEGMENT_SHARED_SECRET", "dev"), ("CIO_WEBHOOK_SECRET", "dev")]).await;
    drop(first);

    // ... with MAVERA_API_KEY added (and no CIO_APP_KEY): the Segment rules call Mavera; only
    // the rule that looks Customer.io attributes up is off, said once at start-up.
    let mavera = MaveraStandIn::start().await;
    let env = [
        ("SEGMENT_SHARED_SECRET", "dev".to_owned()),
        ("CIO_WEBHOOK_SECRET", "dev".to_owned()),
        ("MAVERA_API_KEY", mavera.api_key().to_owned()),
        ("MAVERA_BASE_URL", mavera.base_url()),
    ];
    let mut serve = Serve::start(&[], &refs(&env)).await;
    let warning = serve.wait_for_line(|l| l.contains("cio-high-value-alert") && l.contains("disabled"), WAIT).await;
    assert!(warning.contains("CIO_APP_KEY"), "the warning names the variable to set: {warning}");
    let (status, body) = serve.post_segment_with("dev", &trial("m-first", "usr_first")).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("queued")), "{body}");
    assert!(eventually(WAIT, || mavera.count("/personas") >= 1).await, "{}", serve.output());
    let (status, body) = serve.post_customerio_with("dev", &cio_email("e-off", "unsubscribed", "42")).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("queued")), "{body}");
    let line = serve.wait_for_line(|l| l.contains("e-off") && l.contains(" skipped "), WAIT).await;
    assert!(line.contains("disabled") && line.contains("CIO_APP_KEY"), "the job is recorded with the reason: {line}");
    assert_eq!(mavera.count("/mave/chat"), 0);
    // One URL says what is live in every function: here the worker runs in the same process.
    let health: Value = reqwest::get(format!("{}/healthz", serve.base)).await.unwrap().json().await.unwrap();
    let worker = &health["functions"]["worker"];
    assert_eq!(worker["off"][0]["name"], "cio-high-value-alert", "{health}");
    assert!(worker["off"][0]["reason"].as_str().unwrap_or("").contains("CIO_APP_KEY"), "{health}");
    assert!(worker["live"].as_array().unwrap().iter().any(|r| r == "segment-trial-started"), "{health}");
    assert_eq!(health["functions"]["ingest"]["sources"]["segment"], "live", "{health}");
}

#[tokio::test]
async fn a_half_sent_request_is_cut_off_after_the_request_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let serve = Serve::start(&["--request-timeout", "1"], &secrets()).await;
    let addr = serve.base.trim_start_matches("http://").to_owned();
    let read_all = |mut stream: tokio::net::TcpStream| async move {
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
        (read.is_ok(), String::from_utf8_lossy(&answer).into_owned())
    };

    // Headers that never end: the connection is closed, not held.
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stream.write_all(b"POST /webhooks/segment HTTP/1.1\r\nHost: relay\r\nX-Signature: ").await.unwrap();
    let started = std::time::Instant::now();
    let (closed, _) = read_all(stream).await;
    assert!(closed, "the server closed the connection");
    assert!(started.elapsed() < Duration::from_secs(4), "within the timeout: {:?}", started.elapsed());

    // A body that never ends: 408.
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /webhooks/segment HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\nX-Signature: {}\r\nContent-Length: 100\r\n\r\n{{\"type\"",
        "0".repeat(40)
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (closed, answer) = read_all(stream).await;
    assert!(closed, "the server answered and closed");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
}

#[tokio::test]
async fn a_forged_line_break_in_the_path_cannot_forge_a_log_line() {
    let mut serve = Serve::start(&[], &secrets()).await;
    let (status, _) = serve.post("/webhooks/hubspot%0a12:00:00%20%20segment%20forged", &[], b"{}".to_vec()).await;
    assert_eq!(status, 404);
    let line = serve.wait_for_line(|l| l.contains("hubspot"), WAIT).await;
    assert!(line.contains("\\n12:00:00"), "the line break is shown escaped: {line}");
    assert!(!serve.output().lines().any(|l| l.starts_with("12:00:00  segment")), "{}", serve.output());
}

#[tokio::test]
async fn an_upstream_error_that_echoes_the_api_key_is_logged_without_it() {
    let (mut serve, mavera, _cio) = live(&[]).await;
    let key = mavera.api_key().to_owned();
    mavera.script(
        "/personas",
        [Reply::Error {
            status: 400,
            kind: "invalid_request_error".into(),
            code: "invalid_field".into(),
            message: format!("the request with Authorization: Bearer {key} has a bad field"),
            param: None,
        }],
    );
    assert_eq!(serve.post_segment(&trial("m-echo", "usr_e")).await.1["status"], "queued");
    serve.wait_for_line(|l| l.contains("m-echo") && l.contains(" failed "), WAIT).await;
    let output = serve.output();
    assert!(!output.contains(&key), "the key reached the log:\n{output}");
    assert!(output.contains("[REDACTED]"), "{output}");
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

    // The job's console page says where the result went.
    let url = format!("{}/console/job?key=segment%23m-deliver%23churn", serve.base);
    let deadline = std::time::Instant::now() + WAIT;
    let page = loop {
        let page = reqwest::get(&url).await.unwrap().text().await.unwrap();
        if page.matches(">sent<").count() == 2 || std::time::Instant::now() > deadline {
            break page;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(page.contains("<h2>Deliveries</h2>"), "{page}");
    for destination in ["<td>slack</td>", "<td>webhook</td>"] {
        assert!(page.contains(destination), "{destination}: {page}");
    }
    assert_eq!(page.matches(">sent<").count(), 2, "both destinations sent: {page}");
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
