//! Customer.io's 10 App API requests a second are per account: how should the worker and
//! cio-sync share them? This measures the two designs issue 15 names, against the App API
//! stand-in (which refuses the 11th request in any second) and moto:
//!
//! - **static split** (shipped): each process gets a fixed share (`CIO_REQUESTS_PER_SECOND`,
//!   2/s per worker invocation, 3/s per cio-sync run) and spaces its own requests; no calls.
//! - **shared limiter** (prototype, here only): before each request a process takes a 105 ms
//!   slot in the events table with a conditional `PutItem` (`attribute_not_exists`), moving to
//!   the next slot when another process holds it; at most 10 slot starts fit in any second.
//!
//! For each: requests sent, refusals, the busiest second, and for the limiter the table writes
//! per request (a refused conditional write is billed too) and their latency. Run:
//! `scripts/venv test && cargo bench --workspace --bench cio_budget` (it starts moto itself
//! when `AWS_ENDPOINT_URL` is unset; rates, not CPU, decide the figures, so `--profile dev`
//! gives the same ones without a release build). Figures in BENCHMARKS.md.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;
use futures::future::join_all;
use relay_tests::cio_standin::{CioStandIn, Person};
use shared::customerio::{CioClient, CioConfig, CioRegion, IdType};
use tokio::time::Instant;

const RUN: Duration = Duration::from_secs(10);
const SLOT_MS: u64 = 105;
/// How late after its slot's start a request may still leave.
const LATE_MS: u64 = 20;
const IN_FLIGHT: usize = 5;

fn main() {
    // Before the runtime's threads exist: `Moto::ensure` may set the endpoint variables.
    let _moto = Moto::ensure();
    tokio::runtime::Runtime::new().expect("a tokio runtime").block_on(run());
}

async fn run() {
    let aws = relay_tests::aws::Aws::fresh_with(3, 30).await;

    println!("{RUN:?} per case; every process keeps {IN_FLIGHT} lookups in flight\n");
    println!(
        "| case | requests | per second | refused (429) | busiest second | table writes per request | write latency p50 / p99 |"
    );
    println!("|---|---|---|---|---|---|---|");
    // The template's processes: 2 worker invocations at 2/s, 2 cio-sync runs at 3/s.
    let all = [2, 2, 3, 3];
    static_split("static split, all 4 busy", &all).await;
    static_split("static split, one cio-sync run alone", &[3]).await;
    shared_limiter("shared limiter, all 4 busy", 4, &aws).await;
    shared_limiter("shared limiter, one cio-sync run alone", 1, &aws).await;
}

async fn stand_in() -> CioStandIn {
    let cio = CioStandIn::start().await;
    cio.add_person(Person::new("c1").id("p1").attribute("plan_type", "pro"));
    cio
}

fn client(cio: &CioStandIn, per_second: u32) -> CioClient {
    let config = CioConfig::new(cio.app_key().to_owned().into(), CioRegion::Us)
        .with_base_url(cio.base_url())
        .with_requests_per_second(per_second);
    CioClient::new(config).unwrap()
}

fn report(case: &str, cio: &CioStandIn, writes: Option<(u64, Vec<Duration>)>) {
    let sent = cio.requests().len() as u64;
    let per_request = match &writes {
        Some((w, _)) => format!("{:.2}", *w as f64 / sent.max(1) as f64),
        None => "0".into(),
    };
    let latency = match writes {
        Some((_, mut times)) if !times.is_empty() => {
            times.sort();
            let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
            format!("{:.1} ms / {:.1} ms", at(0.5).as_secs_f64() * 1e3, at(0.99).as_secs_f64() * 1e3)
        }
        _ => "-".into(),
    };
    println!(
        "| {case} | {sent} | {:.2} | {} | {} | {per_request} | {latency} |",
        sent as f64 / RUN.as_secs_f64(),
        cio.throttled(),
        cio.max_arrivals_within(Duration::from_secs(1)),
    );
}

async fn static_split(case: &str, rates: &[u32]) {
    let cio = stand_in().await;
    let clients: Vec<CioClient> = rates.iter().map(|r| client(&cio, *r)).collect();
    let deadline = Instant::now() + RUN;
    join_all(clients.iter().map(|c| async move {
        join_all(
            (0..IN_FLIGHT)
                .map(|_| async move { while c.customer_attributes("p1", IdType::Id, deadline).await.is_ok() {} }),
        )
        .await
    }))
    .await;
    report(case, &cio, None);
}

async fn shared_limiter(case: &str, processes: usize, aws: &relay_tests::aws::Aws) {
    let cio = stand_in().await;
    let writes = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let deadline = Instant::now() + RUN;
    let limiters: Vec<SlotLimiter> = (0..processes)
        .map(|_| SlotLimiter {
            dynamo: aws.dynamo.clone(),
            table: aws.table.clone(),
            next: tokio::sync::Mutex::new(0),
            writes: writes.clone(),
            latencies: latencies.clone(),
        })
        .collect();
    // Each process's own gate is the account's whole 10/s: the table decides.
    let clients: Vec<CioClient> = (0..processes).map(|_| client(&cio, 10)).collect();
    join_all(clients.iter().zip(&limiters).map(|(c, limiter)| async move {
        join_all((0..IN_FLIGHT).map(|_| async move {
            while limiter.acquire(deadline).await && c.customer_attributes("p1", IdType::Id, deadline).await.is_ok() {}
        }))
        .await
    }))
    .await;
    let times = latencies.lock().unwrap().clone();
    report(case, &cio, Some((writes.load(Ordering::Relaxed), times)));
}

/// The prototype: one item per 105 ms slot, taken with a conditional put.
struct SlotLimiter {
    dynamo: aws_sdk_dynamodb::Client,
    table: String,
    /// The next slot worth trying; one acquisition at a time per process.
    next: tokio::sync::Mutex<u64>,
    writes: Arc<AtomicU64>,
    latencies: Arc<std::sync::Mutex<Vec<Duration>>>,
}

impl SlotLimiter {
    /// Takes a slot and waits for its start; `false` once the slot would start after `deadline`.
    async fn acquire(&self, deadline: Instant) -> bool {
        let mut next = self.next.lock().await;
        // Only slots still to start: requests leave at slot starts, so 105 ms apart. A slot
        // taken late in its span would let 11 leave within one second.
        let mut slot = (*next).max(now_ms() / SLOT_MS + 1);
        loop {
            let starts_in = Duration::from_millis((slot * SLOT_MS).saturating_sub(now_ms()));
            if Instant::now() + starts_in > deadline {
                return false;
            }
            let started = std::time::Instant::now();
            let put = self
                .dynamo
                .put_item()
                .table_name(&self.table)
                .item("pk", AttributeValue::S(format!("rate#cio#{slot}")))
                .item("expires_at", AttributeValue::N((slot * SLOT_MS / 1000 + 60).to_string()))
                .condition_expression("attribute_not_exists(pk)")
                .send()
                .await;
            self.writes.fetch_add(1, Ordering::Relaxed);
            self.latencies.lock().unwrap().push(started.elapsed());
            match put {
                // Won after the slot began (a slow write): leaving now could put 11 requests
                // in one second, so the slot is given up and the next one tried.
                Ok(_) if now_ms() > slot * SLOT_MS + LATE_MS => slot = (slot + 1).max(now_ms() / SLOT_MS + 1),
                Ok(_) => {
                    *next = slot + 1;
                    drop(next);
                    tokio::time::sleep(Duration::from_millis((slot * SLOT_MS).saturating_sub(now_ms()))).await;
                    return true;
                }
                Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {
                    slot += 1;
                }
                Err(e) => panic!("the slot table failed: {e:?}"),
            }
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// moto on a free loopback port, unless `AWS_ENDPOINT_URL` already names one.
struct Moto(Option<Child>);

impl Moto {
    fn ensure() -> Self {
        if std::env::var_os("AWS_ENDPOINT_URL").is_some() {
            return Moto(None);
        }
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(format!("{root}/.venv/bin/python"))
            .args([&format!("{root}/scripts/moto_server.py"), "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto: run scripts/venv test first");
        let url = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // SAFETY: called first in `main`, before the runtime or any other thread exists.
        unsafe {
            std::env::set_var("AWS_ENDPOINT_URL", &url);
            std::env::set_var("AWS_ACCESS_KEY_ID", "test");
            std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
            std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        }
        Moto(Some(child))
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
        }
    }
}
