//! `relay send` against the real ingest router (the test app), and the sample payloads.

use std::sync::Arc;

use relay_tests::app::{CIO_SECRET, SEGMENT_SECRET, TestApp};
use serde_json::Value;
use shared::queue::MemoryQueue;
use shared::store::MemoryStore;

use crate::support::{run, text};

fn examples(path: &str) -> String {
    format!("{}/../examples/{path}", env!("CARGO_MANIFEST_DIR"))
}

async fn app() -> (TestApp, MemoryQueue) {
    let queue = MemoryQueue::default();
    let app = TestApp::spawn(Arc::new(MemoryStore::new()), Arc::new(queue.clone())).await;
    (app, queue)
}

/// The JSON after the `HTTP ...` line of `relay send`'s output.
fn answer(stdout: &str) -> Value {
    let json: String = stdout.lines().skip_while(|l| !l.starts_with("HTTP ")).skip(1).collect::<Vec<_>>().join("\n");
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[tokio::test]
async fn every_sample_is_signed_as_its_sender_signs_and_meets_its_rule() {
    let (app, queue) = app().await;
    let base = app.url("");
    let cases = [
        ("segment", "segment/trial_started.json", "queued", Some("segment-trial-started")),
        ("segment", "segment/plan_upgraded.json", "queued", Some("segment-plan-upgraded")),
        ("segment", "segment/feature_milestone.json", "queued", Some("segment-feature-milestone")),
        ("segment", "segment/churn_signal.json", "queued", Some("segment-churn-signal")),
        ("segment", "segment/course_clicked.json", "ignored", None),
        ("customerio", "customerio/email_unsubscribed.json", "queued", Some("cio-high-value-alert")),
        ("customerio", "customerio/email_bounced.json", "queued", Some("cio-high-value-alert")),
        ("customerio", "customerio/email_spammed.json", "queued", Some("cio-high-value-alert")),
        ("customerio", "customerio/email_opened.json", "ignored", None),
    ];
    let env = [("SEGMENT_SHARED_SECRET", SEGMENT_SECRET), ("CIO_WEBHOOK_SECRET", CIO_SECRET)];
    for (source, file, status, rule) in cases {
        let out = tokio::task::spawn_blocking({
            let (base, file) = (base.clone(), examples(file));
            move || run(&["send", source, &file, "--url", &base], &env)
        })
        .await
        .unwrap();
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{file}: {stdout}{}", text(&out.stderr));
        let body = answer(&stdout);
        assert_eq!(body["status"], status, "{file}: {body}");
        assert_eq!(body["jobs"][0]["rule"].as_str(), rule, "{file}: {body}");
    }
    assert_eq!(queue.sent(), 7);
}

#[tokio::test]
async fn a_wrong_secret_is_refused_and_exits_non_zero() {
    let (app, queue) = app().await;
    let url = app.url("/webhooks/segment");
    let out = tokio::task::spawn_blocking(move || {
        run(
            &["send", "segment", &examples("segment/trial_started.json"), "--url", &url, "--secret", "not-the-secret"],
            &[],
        )
    })
    .await
    .unwrap();
    let stdout = text(&out.stdout);
    assert!(!out.status.success());
    assert!(stdout.contains("HTTP 401"), "{stdout}");
    assert_eq!(answer(&stdout)["error"]["code"], "bad_signature");
    assert_eq!(queue.sent(), 0);
}

#[tokio::test]
async fn a_fresh_id_makes_the_same_file_a_new_event() {
    let (app, queue) = app().await;
    let base = app.url("");
    let send = |extra: &'static [&'static str]| {
        let base = base.clone();
        tokio::task::spawn_blocking(move || {
            let file = examples("segment/churn_signal.json");
            let mut args = vec!["send", "segment", file.as_str(), "--url", base.as_str(), "--secret", SEGMENT_SECRET];
            args.extend_from_slice(extra);
            answer(&text(&run(&args, &[]).stdout))
        })
    };
    assert_eq!(send(&[]).await.unwrap()["status"], "queued");
    // No worker has taken the job yet, so it is still a claim: the resend is told to retry
    // (503 `in_flight`), never `duplicate`, until a worker has it or the claim's lease ends.
    assert_eq!(send(&[]).await.unwrap()["error"]["code"], "in_flight");
    assert_eq!(send(&["--new-id"]).await.unwrap()["status"], "queued");
    assert_eq!(queue.sent(), 2);
}

#[test]
fn problems_before_sending_are_explained() {
    let file = examples("segment/trial_started.json");
    let out = run(&["send", "segment", &file, "--url", "http://127.0.0.1:9"], &[]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("pass --secret, or set SEGMENT_SHARED_SECRET"), "{}", text(&out.stderr));

    let out = run(&["send", "segment", &file, "--url", "http://127.0.0.1:9", "--secret", "s"], &[]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("could not reach http://127.0.0.1:9/webhooks/segment"), "{}", text(&out.stderr));

    let out = run(&["send", "stripe", &file], &[]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("expected `segment` or `customerio`"), "{}", text(&out.stderr));
}
