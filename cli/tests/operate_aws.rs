//! `relay events`, `show`, `replay`, `redrive` and `console` against a deployment on moto:
//! ingest's router and the worker's Lambda handler (as `relay_tests` runs them) write the
//! table and queues; the commands find them by `--stack` (a CloudFormation stack on moto
//! whose outputs name them) or `--table`.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use relay_tests::app::TestApp;
use relay_tests::aws::Aws;
use relay_tests::cio_standin::CioStandIn;
use relay_tests::env::Env;
use relay_tests::mavera_standin::{MaveraStandIn, Reply};
use relay_tests::payloads::segment_track;
use relay_tests::sqs_driver::drive;
use serde_json::{Value, json};
use shared::domain::{EventId, JobKey, RuleName, Source};
use shared::queue::JobMessage;
use shared::triggers::Triggers;
use shared::worker::{self, Worker};

use crate::support::{aws_env, relay, relay_cmd};

const JOB_TIME: Duration = Duration::from_secs(30);

struct Deployment {
    aws: Aws,
    mavera: MaveraStandIn,
    _cio: CioStandIn,
    worker: Worker,
    app: TestApp,
    stack: String,
}

impl Deployment {
    /// A table and queues on moto (a message goes to the DLQ after 2 receives), a stack
    /// whose outputs name them, ingest and the worker on them.
    async fn start() -> Self {
        let aws = Aws::fresh_with(2, 1).await;
        let (mavera, cio) = (MaveraStandIn::start().await, CioStandIn::start().await);
        let store = Arc::new(aws.store());
        let env = Env::new().mavera(&mavera).customerio(&cio);
        let settings = worker::Settings::from_vars(&env, Triggers::embedded().unwrap().for_worker()).unwrap();
        let worker = worker::build(settings, store.clone()).unwrap();
        let app = TestApp::spawn(store, Arc::new(aws.queue())).await;
        let stack = format!("relay-{}", uuid::Uuid::new_v4().simple());
        let template = json!({
            "Resources": {"Placeholder": {"Type": "AWS::SQS::Queue"}},
            "Outputs": {
                "EventsTableName": {"Value": aws.table},
                "JobsQueueUrl": {"Value": aws.queue_url},
                "JobsDlqUrl": {"Value": aws.dlq_url},
            }
        });
        aws_sdk_cloudformation::Client::new(&aws.sdk)
            .create_stack()
            .stack_name(&stack)
            .template_body(template.to_string())
            .send()
            .await
            .expect("create the stack on moto");
        Deployment { aws, mavera, _cio: cio, worker, app, stack }
    }

    async fn run_worker(&self) {
        drive(&self.aws, &self.worker, 10, JOB_TIME, Duration::from_secs(30)).await;
    }

    async fn relay(&self, args: &[&str]) -> (bool, String, String) {
        let env = aws_env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        relay_cmd(args, &env).await
    }

    async fn record(&self, key: &str) -> Value {
        let (ok, out, err) = self.relay(&["show", key, "--stack", &self.stack, "--json"]).await;
        assert!(ok, "{err}");
        serde_json::from_str(&out).unwrap()
    }
}

fn trial(id: &str, user: &str) -> String {
    segment_track(id, "trial_started", user, json!({"plan": "pro", "source": "google"})).to_string()
}

fn trial_key(id: &str) -> String {
    format!("segment#{id}#segment-trial-started")
}

#[tokio::test]
async fn failed_jobs_are_found_read_replayed_and_listed_done_on_the_deployed_table() {
    let d = Deployment::start().await;
    d.mavera.script("/personas", [Reply::CreditsExhausted, Reply::CreditsExhausted]);
    for (id, user) in [("t-1", "u-1"), ("t-2", "u-2")] {
        assert_eq!(d.app.post_segment(&trial(id, user)).await.body["status"], "queued");
    }
    let upgrade = segment_track("up-1", "plan_upgraded", "u-3", json!({"previous_plan": "basic", "new_plan": "pro"}));
    assert_eq!(d.app.post_segment(&upgrade.to_string()).await.body["status"], "queued");
    d.run_worker().await;

    let (ok, out, err) = d.relay(&["events", "--stack", &d.stack]).await;
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 4, "a header and three jobs:\n{out}");
    assert!(out.lines().nth(1).unwrap().contains("up-1"), "newest first:\n{out}");
    assert_eq!(out.lines().filter(|l| l.contains("FAILED") && l.contains("credits")).count(), 2, "{out}");
    assert!(err.contains(&format!("stack {}", d.stack)), "{err}");

    let (ok, out, _) =
        d.relay(&["events", "--table", &d.aws.table, "--status", "failed", "--user", "u-1", "--json"]).await;
    assert!(ok);
    let lines: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert_eq!(lines[0]["key"], trial_key("t-1"));

    let (ok, out, _) = d.relay(&["show", &trial_key("t-1"), "--stack", &d.stack]).await;
    assert!(ok);
    assert!(out.contains("FAILED (1 attempt)") && out.contains("402"), "{out}");

    // With --table alone, a replay has no queue to send to, and says so.
    let (ok, _, err) = d.relay(&["replay", &trial_key("t-1"), "--table", &d.aws.table, "--yes"]).await;
    assert!(!ok);
    assert!(err.contains("--queue-url"), "{err}");

    // Every failed job of the last hour, at once; the stand-in answers again now.
    let (ok, out, err) =
        d.relay(&["replay", "--status", "failed", "--since", "1h", "--stack", &d.stack, "--yes"]).await;
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("Estimated cost: 600 credits (2 × create_persona)") && out.contains("2 replayed, 0 not"),
        "{out}"
    );
    let queued = d.aws.depth(&d.aws.queue_url).await;
    assert_eq!(queued, 2, "two messages back on the jobs queue");
    d.run_worker().await;
    assert_eq!(d.mavera.count("/personas"), 4, "each replay called Mavera once more");
    for id in ["t-1", "t-2"] {
        let record = d.record(&trial_key(id)).await;
        assert_eq!((record["status"].as_str(), record["attempts"].as_u64()), (Some("DONE"), Some(2)), "{record}");
        let history: Vec<&str> =
            record["history"].as_array().unwrap().iter().map(|s| s["status"].as_str().unwrap()).collect();
        assert_eq!(history, ["RUNNING", "FAILED", "RETRYING", "RUNNING", "DONE"]);
        assert_eq!(record["history"][2]["detail"], "replayed by an operator (it was FAILED)");
    }
    let (ok, out, _) = d.relay(&["events", "--stack", &d.stack, "--status", "done", "--json"]).await;
    assert!(ok);
    assert_eq!(out.lines().count(), 3, "all three done now:\n{out}");
    assert!(out.contains("\"credits\":300.0"), "{out}");

    // A DONE job needs --force; the explicit key goes straight to the queue.
    let (ok, out, _) = d.relay(&["replay", &trial_key("t-1"), "--stack", &d.stack, "--yes"]).await;
    assert!(!ok && out.contains("--force"), "{out}");
    let (ok, out, _) = d.relay(&["replay", &trial_key("t-1"), "--stack", &d.stack, "--yes", "--force"]).await;
    assert!(ok && out.contains("1 replayed"), "{out}");
    let bodies = d.aws.drain(&d.aws.queue_url).await;
    assert_eq!(bodies.len(), 1);
    let message = JobMessage::from_body(&bodies[0]).expect("the replayed body is the job message the worker ran");
    assert_eq!(message.key.as_str(), trial_key("t-1"));
}

#[tokio::test]
async fn redrive_moves_the_dead_letters_back_and_a_dry_run_moves_nothing() {
    let d = Deployment::start().await;
    // A message for a rule this worker does not know (renamed, say) fails every delivery and
    // lands in the DLQ after the queue's maxReceiveCount (2).
    let rule = RuleName::parse("segment-renamed").unwrap();
    let event = shared::parse::envelopes(Source::Segment, trial("dl-1", "u-1").as_bytes())
        .unwrap()
        .remove(0)
        .to_event()
        .unwrap();
    let key = JobKey::for_event(Source::Segment, &EventId::parse("dl-1").unwrap(), &rule);
    let body = JobMessage::event_body(&key, &rule, &event).unwrap();
    d.aws.sqs.send_message().queue_url(&d.aws.queue_url).message_body(&body).send().await.unwrap();
    d.aws.sqs.send_message().queue_url(&d.aws.queue_url).message_body("not a job").send().await.unwrap();
    d.run_worker().await;
    // moto moves a message to the DLQ when it is received past the limit.
    let _ = d.aws.sqs.receive_message().queue_url(&d.aws.queue_url).send().await.unwrap();
    assert_eq!(d.aws.depth(&d.aws.dlq_url).await, 2, "both dead-lettered");

    let (ok, out, err) = d.relay(&["redrive", "--stack", &d.stack, "--dry-run"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("segment#dl-1#segment-renamed (rule segment-renamed)"), "{out}");
    assert!(out.contains("not a job message"), "{out}");
    assert!(out.contains("2 message(s) would move; nothing moved"), "{out}");
    assert_eq!(d.aws.depth(&d.aws.queue_url).await, 0);

    let (queue, dlq) = (d.aws.queue_url.clone(), d.aws.dlq_url.clone());
    let (ok, out, err) = d.relay(&["redrive", "--queue-url", &queue, "--dlq-url", &dlq]).await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("2 moved, 0 not"), "{out}");
    assert_eq!(d.aws.depth(&d.aws.dlq_url).await, 0, "the DLQ is empty");
    let mut moved = d.aws.drain(&d.aws.queue_url).await;
    moved.sort();
    let mut expected = vec![body, "not a job".to_owned()];
    expected.sort();
    assert_eq!(moved, expected, "the same bodies, on the jobs queue");

    let (ok, out, _) = d.relay(&["redrive", "--stack", &d.stack]).await;
    assert!(ok && out.contains("0 moved, 0 not"), "{out}");
    let (ok, _, err) = d.relay(&["redrive"]).await;
    assert!(!ok && err.contains("--stack NAME, or --queue-url URL and --dlq-url URL"), "{err}");
}

#[tokio::test]
async fn the_console_shows_a_deployment_on_loopback_only() {
    let d = Deployment::start().await;
    let upgrade = segment_track("c-1", "plan_upgraded", "u-9", json!({"previous_plan": "basic", "new_plan": "pro"}));
    assert_eq!(d.app.post_segment(&upgrade.to_string()).await.body["status"], "queued");
    d.run_worker().await;

    let env = aws_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut child = relay(&["console", "--stack", &d.stack, "--port", "0"], &env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start relay console");
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout).lines().map_while(Result::ok).find(|l| l.contains("/console")).unwrap_or_default()
    })
    .await
    .unwrap();
    let url =
        line.split_whitespace().find(|w| w.starts_with("http://127.0.0.1:")).expect("the console's URL").to_owned();
    let base = url.trim_end_matches("/console").to_owned();
    let http = reqwest::Client::new();

    let page = http.get(&url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-security-policy"].to_str().unwrap().starts_with("default-src 'none'"));
    let html = page.text().await.unwrap();
    assert!(html.contains("c-1") && html.contains("segment-plan-upgraded") && html.contains("DONE"), "{html}");
    assert!(html.contains("Per rule") && html.contains("<svg"), "totals and the chart");
    assert!(!html.contains("<script"), "no script");

    let job = http
        .get(format!("{base}/console/job?key={}", "segment%23c-1%23segment-plan-upgraded"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(job.contains("Stand-in research answering: A user just upgraded from basic to pro."), "{job}");
    assert!(
        job.contains(&format!("relay replay &#39;segment#c-1#segment-plan-upgraded&#39; --stack {}", d.stack)),
        "{job}"
    );

    let rebound = http.get(&url).header("host", "attacker.example:80").send().await.unwrap();
    assert_eq!(rebound.status(), 403, "another host name (DNS rebinding) is refused");
    let api = http.get(format!("{base}/console/api/jobs?since_ms=0&until_ms=1&limit=1")).send().await.unwrap();
    assert_eq!(api.status(), 401, "relay console opens no records API");
    let _ = child.kill();
    let _ = child.wait();
}
