//! Worker throughput against the Mavera stand-in: 100 research jobs, Mave answering in 5 s,
//! the concurrent-Mave cap at 10. Ideal: 100 / 10 × 5 s = 50 s. Run:
//! `cargo bench -p relay-tests --bench worker_throughput` (figures in BENCHMARKS.md).

use std::sync::Arc;
use std::time::Duration;

use relay_tests::env::Env;
use relay_tests::mavera_standin::MaveraStandIn;
use serde_json::json;
use shared::domain::{Event, EventId, JobKey, RuleName, Source};
use shared::queue::{Consumer, JobMessage, JobQueue, MemoryQueue};
use shared::store::{JobStatus, MemoryStore};
use shared::triggers::Triggers;
use shared::worker;
use shared::worker::local::LocalRunner;
use tokio::time::Instant;

const JOBS: usize = 100;
const LATENCY: Duration = Duration::from_secs(5);
const CAP: usize = 10;

#[tokio::main]
async fn main() {
    let mavera = MaveraStandIn::start().await;
    mavera.set_path_latency("/mave/chat", LATENCY);
    let triggers = Triggers::parse(
        "[[rule]]\nname = \"research\"\nsource = \"segment\"\nevent = \"plan_upgraded\"\naction = \"research\"\nresearch = { prompt = \"Why did {user_id} upgrade to {new_plan}?\" }",
        "bench.toml",
    )
    .unwrap();
    let store = MemoryStore::new();
    let queue = MemoryQueue::new(Duration::from_secs(600), 5);
    let env = Env::new().mavera(&mavera).set("MAVE_CONCURRENCY", CAP.to_string());
    let settings = worker::Settings::from_vars(&env, triggers.for_worker()).unwrap();
    let worker = Arc::new(worker::build(settings, Arc::new(store.clone())).unwrap());

    let rule = RuleName::parse("research").unwrap();
    for i in 0..JOBS {
        let event = Event {
            source: Source::Segment,
            id: EventId::parse(format!("bench-{i}")).unwrap(),
            name: "plan_upgraded".into(),
            user_id: Some(format!("user-{i}")),
            fields: json!({"user_id": format!("user-{i}"), "new_plan": "pro"}).as_object().unwrap().clone(),
        };
        let key = JobKey::for_event(Source::Segment, &event.id, &rule);
        queue.send(JobMessage::event_body(&key, &rule, &event).unwrap()).await.unwrap();
    }

    // The runner may take every job at once: only the client's Mave cap limits the calls.
    let runner = LocalRunner { concurrency: JOBS, ..LocalRunner::default() };
    let done = {
        let store = store.clone();
        async move {
            while store.jobs().iter().filter(|j| j.status == JobStatus::Done).count() < JOBS {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let started = Instant::now();
    runner.run(worker, Arc::new(queue.clone()) as Arc<dyn Consumer>, done).await;
    let elapsed = started.elapsed();

    let ideal = LATENCY * (JOBS / CAP) as u32;
    let calls = mavera.count("/mave/chat");
    let peak = mavera.peak_in_flight("/mave/chat");
    println!("worker throughput: {JOBS} research jobs, Mave latency {LATENCY:?}, cap {CAP}");
    println!("  elapsed      {:.2} s", elapsed.as_secs_f64());
    println!("  ideal        {:.2} s", ideal.as_secs_f64());
    println!(
        "  overhead     {:+.2}% of ideal (target: within 10%)",
        (elapsed.as_secs_f64() / ideal.as_secs_f64() - 1.0) * 100.0
    );
    println!("  Mave calls   {calls} (one per job)");
    println!("  peak in flight at the stand-in: {peak} (cap {CAP})");
    assert_eq!(calls, JOBS, "one call per job");
    assert!(peak <= CAP, "the cap held");
}
