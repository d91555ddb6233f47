//! Resident memory of the in-memory store and queue (what `relay serve` embeds) over a long
//! run: `ROUNDS` rounds of `EVENTS` accepted webhooks each (1 million and 2 by default), each
//! through ingest's router (verify, parse, match, claim, queue) with the worker in dry run
//! taking every job to `DONE` meanwhile; after each round, a sweep as if the 8 days of the
//! records' TTL had passed. Memory is bounded if the second round needs no more than the first.
//! Run: `cargo bench --workspace --bench memory_bound` (`EVENTS=200000` for a shorter run;
//! figures in BENCHMARKS.md).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use http::Request;
use relay_tests::env::Env;
use relay_tests::payloads::segment_track;
use serde_json::json;
use shared::queue::{Consumer, MemoryQueue};
use shared::store::{MemoryStore, RECORD_TTL};
use shared::telemetry::Metrics;
use shared::triggers::Triggers;
use shared::verify::segment;
use shared::worker::local::LocalRunner;
use shared::{ingest, worker};
use tokio::sync::watch;
use tower::ServiceExt;

const SECRET: &str = "memory-bench-secret";

/// The four shipped Segment rules' events, in turn.
const EVENTS: [&str; 4] = ["trial_started", "plan_upgraded", "feature_milestone", "churn_signal"];

#[tokio::main]
async fn main() {
    let events: usize = std::env::var("EVENTS").ok().and_then(|n| n.parse().ok()).unwrap_or(1_000_000);
    let rounds: usize = std::env::var("ROUNDS").ok().and_then(|n| n.parse().ok()).unwrap_or(2);
    // The shipped rules, the worker in dry run (no Mavera key).
    let triggers = Triggers::embedded().unwrap();
    let env = Env::new().set("SEGMENT_SHARED_SECRET", SECRET).set("DRY_RUN", "true");
    let store = MemoryStore::new();
    let queue = MemoryQueue::default();
    let settings = ingest::Settings::from_vars(&env, Arc::new(triggers.rules.clone())).unwrap();
    let router = ingest::build(settings, Arc::new(store.clone()), Arc::new(queue.clone()), Metrics::from_env("bench"));
    let settings = worker::Settings::from_vars(&env, triggers.for_worker()).unwrap();
    let worker = Arc::new(worker::build(settings, Arc::new(store.clone())).unwrap());
    let (stop, stopped) = watch::channel(false);
    let runner = LocalRunner { concurrency: 10, ..LocalRunner::default() };
    let consumer = Arc::new(queue.clone()) as Arc<dyn Consumer>;
    let worker_task = tokio::spawn(async move {
        let mut stopped = stopped;
        runner.run(worker, consumer, async move { drop(stopped.wait_for(|s| *s).await) }).await
    });

    println!("{rounds} rounds of {events} signed Segment events through ingest, the worker in dry run");
    println!("resident at start: {} MiB", rss_mib());
    let mut sweep_at = SystemTime::now();
    for round in 0..rounds {
        let started = Instant::now();
        for i in 0..events {
            let name = EVENTS[i % EVENTS.len()];
            let body = segment_track(
                &format!("mem-{round}-{i}"),
                name,
                &format!("usr_{round}_{i}"),
                json!({"plan": "pro", "new_plan": "growth", "previous_plan": "starter", "milestone": "10 reports", "ltv": 500, "signal_type": "seat_drop"}),
            )
            .to_string();
            let request = Request::post("/webhooks/segment")
                .header("content-type", "application/json")
                .header("x-signature", segment::sign(SECRET, body.as_bytes()))
                .body(Body::from(body))
                .unwrap();
            let answer = router.clone().oneshot(request).await.unwrap();
            assert!(answer.status().is_success(), "{}", answer.status());
        }
        let accepted = started.elapsed();
        while queue.depth() > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        println!(
            "round {}: {events} accepted in {:.1} s, all done after {:.1} s; {} records; resident {} MiB",
            round + 1,
            accepted.as_secs_f64(),
            started.elapsed().as_secs_f64(),
            store.len(),
            rss_mib()
        );
        // Every record of this round was written before now: 8 days on, all have expired.
        sweep_at = sweep_at.max(SystemTime::now());
        let t = Instant::now();
        let swept = store.sweep_expired(sweep_at + RECORD_TTL + Duration::from_secs(1)).unwrap();
        println!(
            "  8 days later: {swept} expired records swept in {:.2} s; {} records; resident {} MiB",
            t.elapsed().as_secs_f64(),
            store.len(),
            rss_mib()
        );
    }
    stop.send_replace(true);
    worker_task.await.unwrap();
}

/// This process's resident memory, in MiB (Linux).
fn rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(|l| l.to_owned()))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse::<u64>().ok()))
        .unwrap_or(0)
        / 1024
}
