//! An operator's day against `relay serve --data-dir`: find the failed job, read why, fix
//! the cause, replay it, see it done; with the server running (its records API) and after it
//! stopped (the data file itself).

use std::time::Duration;

use relay_tests::cio_standin::CioStandIn;
use relay_tests::mavera_standin::{MaveraStandIn, Reply};
use relay_tests::payloads::segment_track;
use serde_json::{Value, json};

use crate::support::{Serve, TempDir, eventually, relay_cmd, run_with_input, secrets, text};

const WAIT: Duration = Duration::from_secs(10);
const FAILED_KEY: &str = "segment#m-402#segment-trial-started";
const DONE_KEY: &str = "segment#m-up#segment-plan-upgraded";

fn env(mavera: &MaveraStandIn, cio: &CioStandIn) -> Vec<(&'static str, String)> {
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

/// `relay show KEY --json` through the data directory.
async fn record(dir: &str, key: &str) -> Value {
    let (ok, out, err) = relay_cmd(&["show", key, "--data-dir", dir, "--json"], &[]).await;
    assert!(ok, "relay show failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[tokio::test]
async fn find_a_failed_job_read_why_replay_it_and_see_it_done() {
    let data = TempDir::new("operate");
    let dir = data.path();
    let (mavera, cio) = (MaveraStandIn::start().await, CioStandIn::start().await);
    mavera.script("/personas", [Reply::CreditsExhausted]);
    let env = env(&mavera, &cio);
    let mut serve = Serve::start(&["--data-dir", dir], &refs(&env)).await;
    let trial = segment_track("m-402", "trial_started", "usr_402", json!({"plan": "pro", "source": "google"}));
    assert_eq!(serve.post_segment(&trial).await.1["status"], "queued");
    let upgrade =
        segment_track("m-up", "plan_upgraded", "usr_up", json!({"previous_plan": "basic", "new_plan": "pro"}));
    assert_eq!(serve.post_segment(&upgrade).await.1["status"], "queued");
    serve.wait_for_line(|l| l.contains("m-402") && l.contains("failed"), WAIT).await;
    serve.wait_for_line(|l| l.contains("m-up") && l.contains(" done "), WAIT).await;

    // Find: the listing, newest first, through the running server.
    let (ok, out, err) = relay_cmd(&["events", "--data-dir", dir], &[]).await;
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "a header and one line per job:\n{out}");
    assert!(lines[0].starts_with("TIME") && lines[0].contains("EVENT ID") && lines[0].ends_with("RESULT"), "{out}");
    let failed = lines.iter().find(|l| l.contains("m-402")).expect("the failed job is listed");
    for part in ["segment", "segment-trial-started", "FAILED", "credits"] {
        assert!(failed.contains(part), "`{part}` in {failed}");
    }
    let done = lines.iter().find(|l| l.contains("m-up")).expect("the research job is listed");
    assert!(done.contains("DONE") && done.contains("Findings Stand-in research answering"), "{done}");
    assert!(err.contains("relay serve at http://127.0.0.1:"), "it went through the running server: {err}");

    let (ok, out, _) = relay_cmd(&["events", "--data-dir", dir, "--status", "failed", "--json"], &[]).await;
    assert!(ok);
    let jobs: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(jobs.len(), 1, "{out}");
    assert_eq!(
        (jobs[0]["key"].as_str(), jobs[0]["event_id"].as_str(), jobs[0]["user"].as_str(), jobs[0]["status"].as_str()),
        (Some(FAILED_KEY), Some("m-402"), Some("usr_402"), Some("FAILED"))
    );
    let (ok, out, _) = relay_cmd(&["events", "--data-dir", dir, "--user", "usr_up", "--json"], &[]).await;
    assert!(ok && out.lines().count() == 1 && out.contains(DONE_KEY), "{out}");

    // Read why.
    let (ok, out, err) = relay_cmd(&["show", FAILED_KEY, "--data-dir", dir], &[]).await;
    assert!(ok, "{err}");
    assert!(out.contains("FAILED (1 attempt)"), "{out}");
    assert!(out.contains("402") && out.to_lowercase().contains("credits"), "the reason is shown:\n{out}");
    assert!(out.contains("`trial_started` from usr_402") && out.contains("google"), "the event is shown:\n{out}");
    let (ok, out, _) = relay_cmd(&["show", DONE_KEY, "--data-dir", dir], &[]).await;
    assert!(ok);
    assert!(
        out.contains("Stand-in research answering: A user just upgraded from basic to pro."),
        "the whole research:\n{out}"
    );
    assert!(out.contains("2. Follow up within 48 hours."), "as paragraphs, line by line:\n{out}");

    // Fix (credits topped up: the stand-in answers again) and replay; the prompt is answered no first.
    let out = run_with_input(&["replay", FAILED_KEY, "--data-dir", dir], &[], "n\n");
    assert!(!out.status.success());
    let said = text(&out.stdout);
    assert!(said.contains("create_persona: 300 credits") && said.contains("Estimated cost: 300 credits"), "{said}");
    assert!(said.contains("Replay? [y/N]") && said.contains("Nothing replayed"), "{said}");
    assert_eq!(mavera.count("/personas"), 1, "nothing ran");

    let out = run_with_input(&["replay", FAILED_KEY, "--data-dir", dir], &[], "y\n");
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("1 replayed, 0 not"), "{}", text(&out.stdout));
    assert!(eventually(WAIT, || mavera.count("/personas") == 2).await, "{}", serve.output());
    serve.wait_for_line(|l| l.contains("m-402") && l.contains(" done "), WAIT).await;
    let replayed = record(dir, FAILED_KEY).await;
    assert_eq!((replayed["status"].as_str(), replayed["attempts"].as_u64()), (Some("DONE"), Some(2)), "{replayed}");
    let history: Vec<&str> =
        replayed["history"].as_array().unwrap().iter().map(|s| s["status"].as_str().unwrap()).collect();
    assert_eq!(history, ["RUNNING", "FAILED", "RETRYING", "RUNNING", "DONE"], "{replayed}");
    assert_eq!(replayed["message"]["job"]["event"]["id"], "m-402", "the message is kept, as JSON: {replayed}");

    // A DONE job is refused without --force.
    let out = run_with_input(&["replay", DONE_KEY, "--data-dir", dir, "--yes"], &[], "");
    assert!(!out.status.success());
    assert!(text(&out.stdout).contains("DONE: it had its effect; --force runs it again"), "{}", text(&out.stdout));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(mavera.count("/mave/chat"), 1);
    let out = run_with_input(&["replay", DONE_KEY, "--data-dir", dir, "--force", "--yes"], &[], "");
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("research: 10–75 credits"), "{}", text(&out.stdout));
    assert!(eventually(WAIT, || mavera.count("/mave/chat") == 2).await, "{}", serve.output());

    // After the server stops, the data directory is read directly.
    serve.signal("INT");
    assert!(serve.exit(WAIT).await.success());
    assert!(!data.0.join("serve.json").exists(), "the server's note is gone with it");
    let (ok, out, err) = relay_cmd(&["events", "--data-dir", dir, "--status", "done"], &[]).await;
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(err.contains(&format!("data directory {dir}")), "{err}");
}

#[tokio::test]
async fn the_commands_say_what_is_missing() {
    let (ok, _, err) = relay_cmd(&["events"], &[]).await;
    assert!(!ok);
    assert!(err.contains("--data-dir DIR") && err.contains("--table NAME") && err.contains("--stack NAME"), "{err}");
    let data = TempDir::new("missing");
    let (ok, _, err) = relay_cmd(&["show", "segment#nope#rule", "--data-dir", data.path()], &[]).await;
    assert!(!ok);
    assert!(err.contains("no job segment#nope#rule"), "{err}");
    let (ok, _, err) = relay_cmd(&["replay", "--data-dir", data.path()], &[]).await;
    assert!(!ok);
    assert!(err.contains("--status failed --since 1d"), "{err}");
    let (ok, _, err) = relay_cmd(&["events", "--data-dir", data.path(), "--since", "2 hours"], &[]).await;
    assert!(!ok);
    assert!(err.contains("the unit must be s, m, h, d or w"), "{err}");
}
