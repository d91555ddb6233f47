//! `relay serve --data-dir` killed with SIGKILL under load: every webhook it acknowledged is
//! found after the restart, and runs once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use relay_tests::app::SEGMENT_SECRET;
use relay_tests::mavera_standin::MaveraStandIn;
use relay_tests::payloads::segment_track;
use serde_json::{Value, json};
use shared::verify;

use crate::support::{Serve, TempDir, eventually, secrets};

/// One research rule without guards, so that every accepted event makes exactly one Mave call,
/// whose prompt names the event's user.
const RULES: &str = r#"
[[rule]]
name = "trial-research"
source = "segment"
event = "trial_started"
action = "research"
research = { prompt = "Why did user {user_id} start a trial?" }
"#;

/// Concurrent senders, and the acknowledgements to wait for before the kill.
const SENDERS: usize = 16;
const ACKED_BEFORE_KILL: usize = 300;

fn user(n: usize) -> String {
    format!("usr-{n:06}-x")
}

/// The event whose user a Mave prompt names.
fn event_of(prompt: &str) -> Option<usize> {
    let (_, rest) = prompt.split_once("usr-")?;
    rest.split_once("-x")?.0.parse().ok()
}

#[tokio::test]
async fn every_acknowledged_event_survives_a_kill_under_load_and_runs_once() {
    let data = TempDir::new("kill-data");
    let rules_dir = TempDir::new("kill-rules");
    let rules = rules_dir.0.join("triggers.toml");
    std::fs::write(&rules, RULES).unwrap();
    let args = ["--data-dir", data.path(), "--triggers", rules.to_str().unwrap(), "--workers", "8"];

    // First run: Mavera never answers, so no job can finish before the kill; whatever was
    // acknowledged must be on disk, claimed and queued.
    let stuck = MaveraStandIn::start().await;
    stuck.set_latency(Duration::from_secs(3600));
    let env = live_env(&stuck);
    let serve = Serve::start(&args, &refs(&env)).await;

    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let next = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let senders: Vec<_> = (0..SENDERS)
        .map(|_| {
            let (acked, next, stop, http, base) =
                (acked.clone(), next.clone(), stop.clone(), http.clone(), serve.base.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    match post(&http, &base, n).await {
                        Some(status) if status == "queued" => {
                            acked.lock().unwrap().insert(n);
                        }
                        Some(other) => panic!("event {n} was answered {other}, not queued"),
                        // The process was killed while this request was open: not acknowledged.
                        None => break,
                    }
                }
            })
        })
        .collect();
    assert!(
        eventually(Duration::from_secs(60), || acked.lock().unwrap().len() >= ACKED_BEFORE_KILL).await,
        "only {} events acknowledged:\n{}",
        acked.lock().unwrap().len(),
        serve.output()
    );
    serve.signal("KILL");
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.await.unwrap();
    }
    drop(serve);
    let acked = acked.lock().unwrap().clone();
    let sent = next.load(Ordering::Relaxed);
    assert!(acked.len() >= ACKED_BEFORE_KILL);

    // Second run, same data directory, a Mavera that answers at once.
    let mavera = MaveraStandIn::start().await;
    let env = live_env(&mavera);
    let mut serve = Serve::start(&args, &refs(&env)).await;
    let waiting = serve.wait_for_line(|l| l.contains("jobs waiting from before"), Duration::from_secs(10)).await;
    // "event store and queue in DIR (N jobs waiting from before)"
    let waiting: usize = waiting
        .rsplit_once('(')
        .and_then(|(_, count)| count.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in: {waiting}"));
    assert!(waiting >= acked.len(), "{waiting} jobs kept for {} acknowledged events", acked.len());

    // Every acknowledged event reaches Mavera; none twice.
    let calls = || -> BTreeMap<usize, usize> {
        let mut per_user = BTreeMap::new();
        for request in mavera.requests_to("/mave/chat") {
            let message = request.body.as_ref().and_then(|b| b["message"].as_str()).unwrap_or_default().to_owned();
            let n = event_of(&message).filter(|n| *n < sent);
            *per_user.entry(n.unwrap_or_else(|| panic!("a call for no event sent: {message}"))).or_insert(0) += 1;
        }
        per_user
    };
    assert!(
        eventually(Duration::from_secs(60), || acked.iter().all(|n| calls().contains_key(n))).await,
        "acknowledged events never ran after the restart: {:?}\n{}",
        acked.iter().filter(|n| !calls().contains_key(n)).take(10).collect::<Vec<_>>(),
        serve.output()
    );
    // Unacknowledged ones that made it to disk run too; give them and any repeat time to show.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let calls = calls();
    let twice: Vec<_> = calls.iter().filter(|(_, count)| **count > 1).collect();
    assert!(twice.is_empty(), "events called twice: {twice:?}");
    eprintln!(
        "{sent} events sent, {} acknowledged before the kill, {waiting} jobs kept, {} run after the restart",
        acked.len(),
        calls.len()
    );

    // The store kept them too: a redelivery of each is a duplicate.
    for n in acked.iter().take(20) {
        assert_eq!(post(&reqwest::Client::new(), &serve.base, *n).await.as_deref(), Some("duplicate"));
    }
}

/// Posts event `n`; its answer's status, or `None` if the connection failed.
async fn post(http: &reqwest::Client, base: &str, n: usize) -> Option<String> {
    let body = segment_track(&format!("m-kill-{n}"), "trial_started", &user(n), json!({"plan": "pro"}))
        .to_string()
        .into_bytes();
    let signature = verify::segment::sign(SEGMENT_SECRET, &body);
    let response = http
        .post(format!("{base}/webhooks/segment"))
        .header("content-type", "application/json")
        .header("x-signature", signature)
        .body(body)
        .send()
        .await
        .ok()?;
    let status = response.status();
    let answer: Value = response.json().await.ok()?;
    if !status.is_success() {
        return Some(format!("{status} {answer}"));
    }
    answer["status"].as_str().map(str::to_owned)
}

fn live_env(mavera: &MaveraStandIn) -> Vec<(&'static str, String)> {
    let mut env: Vec<(&'static str, String)> = secrets().into_iter().map(|(k, v)| (k, v.to_owned())).collect();
    env.push(("MAVERA_BASE_URL", mavera.base_url()));
    env.push(("MAVERA_API_KEY", mavera.api_key().to_owned()));
    env
}

fn refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}
