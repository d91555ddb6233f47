//! What delivering a result adds to a job: the same research job run with and without
//! `deliver = ["slack", "customerio", "segment", "webhook"]`, one job at a time, side by side,
//! against the Mavera stand-in (answering at once) and the four destination stand-ins, all on
//! loopback. The event store is the in-memory one, or DynamoDB on moto when
//! `AWS_ENDPOINT_URL` is set (each delivery adds store writes: the lease, a `sending` mark for
//! Slack and Customer.io, one state per destination). Run:
//! `cargo bench -p relay-tests --bench delivery_latency` (figures in BENCHMARKS.md).

use std::sync::Arc;
use std::time::Duration;

use relay_tests::cio_track_standin::CioTrackStandIn;
use relay_tests::env::Env;
use relay_tests::mavera_standin::MaveraStandIn;
use relay_tests::segment_standin::SegmentStandIn;
use relay_tests::slack_standin::SlackStandIn;
use relay_tests::webhook_receiver::WebhookReceiver;
use serde_json::json;
use shared::domain::{Event, EventId, JobKey, RuleName, Source};
use shared::queue::JobMessage;
use shared::store::{DynamoStore, JobStatus, MemoryStore};
use shared::triggers::Triggers;
use shared::worker::{self, Disposition, Worker};
use tokio::time::Instant;

const JOBS: usize = 200;

fn rules(deliver: bool) -> Triggers {
    let mut text = String::from(
        "[[rule]]\nname = \"research\"\nsource = \"segment\"\nevent = \"churn_signal\"\naction = \"research\"\n",
    );
    if deliver {
        text.push_str("deliver = [\"slack\", \"customerio\", \"segment\", \"webhook\"]\n");
    }
    text.push_str("research = { prompt = \"Why would {user_id} leave?\" }\n");
    Triggers::parse(&text, "bench.toml").unwrap()
}

fn message(i: usize, run: &str) -> String {
    let rule = RuleName::parse("research").unwrap();
    let user = format!("user-{i}");
    let event = Event {
        source: Source::Segment,
        id: EventId::parse(format!("{run}-{i}")).unwrap(),
        name: "churn_signal".into(),
        user_id: Some(user.clone()),
        fields: json!({"user_id": user}).as_object().unwrap().clone(),
    };
    let key = JobKey::for_event(Source::Segment, &event.id, &rule);
    JobMessage::event_body(&key, &rule, &event).unwrap()
}

async fn job(worker: &Worker, body: &str) -> Duration {
    let started = Instant::now();
    let disposition = worker.process(body, Instant::now() + Duration::from_secs(60)).await;
    assert_eq!(disposition, Disposition::Finished(JobStatus::Done));
    started.elapsed()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn summary(name: &str, mut times: Vec<Duration>) -> (f64, f64, f64) {
    times.sort();
    let mean = times.iter().map(Duration::as_secs_f64).sum::<f64>() / times.len() as f64 * 1000.0;
    let (p50, p95) = (percentile(&times, 0.5), percentile(&times, 0.95));
    println!("  {name:<28} p50 {p50:7.2} ms   p95 {p95:7.2} ms   mean {mean:7.2} ms");
    (p50, p95, mean)
}

#[tokio::main]
async fn main() {
    let mavera = MaveraStandIn::start().await;
    mavera.set_latency(Duration::ZERO);
    let (slack, cio, segment, webhook) = (
        SlackStandIn::start().await,
        CioTrackStandIn::start().await,
        SegmentStandIn::start().await,
        WebhookReceiver::start().await,
    );
    for i in 0..JOBS {
        cio.add_person(&format!("user-{i}"));
    }
    let env = Env::new().mavera(&mavera).slack(&slack).cio_track(&cio).segment(&segment).webhook(&webhook);

    let moto = std::env::var_os("AWS_ENDPOINT_URL").is_some();
    let env = &env;
    let build = |deliver: bool| async move {
        let settings = worker::Settings::from_vars(env, rules(deliver).for_worker()).unwrap();
        if moto {
            let aws = relay_tests::aws::Aws::fresh().await;
            let store: DynamoStore = aws.store();
            store.warm().await.unwrap();
            worker::build(settings, Arc::new(store)).unwrap()
        } else {
            worker::build(settings, Arc::new(MemoryStore::new())).unwrap()
        }
    };
    let (plain, delivering) = (build(false).await, build(true).await);
    // Warm every connection pool before measuring.
    job(&plain, &message(0, "warm-plain")).await;
    job(&delivering, &message(0, "warm-deliver")).await;

    let (mut without, mut with) = (Vec::with_capacity(JOBS), Vec::with_capacity(JOBS));
    for i in 1..=JOBS {
        without.push(job(&plain, &message(i, "plain")).await);
        with.push(job(&delivering, &message(i, "deliver")).await);
    }
    let store = if moto { "DynamoDB on moto" } else { "in-memory store" };
    println!("delivery latency: {JOBS} research jobs each way, one at a time, {store}, stand-ins on loopback");
    let (p50_a, p95_a, mean_a) = summary("without deliveries", without);
    let (p50_b, p95_b, mean_b) = summary("with 4 destinations", with);
    println!(
        "  added by delivering          p50 {:+7.2} ms   p95 {:+7.2} ms   mean {:+7.2} ms",
        p50_b - p50_a,
        p95_b - p95_a,
        mean_b - mean_a
    );
    assert_eq!(slack.messages().len(), JOBS + 1, "every job reached Slack");
    assert_eq!(webhook.messages().len(), JOBS + 1);
    assert_eq!(segment.events().len(), JOBS + 1);
}
