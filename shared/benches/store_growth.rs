//! The in-memory event store while it grows to `RECORDS` records (1 million by default): the
//! time of each insert, the slowest and where in the run they fell. First the two map types
//! side by side under the same inserts (a hash map, as the store used, and the B-tree it uses
//! now), then the store's own `claim`, then the time to sweep every record once expired. Run:
//! `cargo bench --workspace --bench store_growth` (`RECORDS=200000` for a shorter run; figures
//! in BENCHMARKS.md).
//!
//! A hash map grows by doubling and rehashing every record in one insert; under the store's
//! one lock, that insert holds up every request waiting on it.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use shared::domain::{EventId, JobKey, RuleName, Source};
use shared::store::{ClaimStore, Item, JobItem, JobStatus, MemoryStore, NewJob, RECORD_TTL};

const TOKEN: &str = "6f1c2a3e-8d4b-4c5a-9e7f-0a1b2c3d4e5f";

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let records: usize = std::env::var("RECORDS").ok().and_then(|n| n.parse().ok()).unwrap_or(1_000_000);
    let rule = RuleName::parse("segment-trial-started").unwrap();
    // Segment-like message ids in no particular order, as they arrive.
    let keys: Vec<JobKey> = (0..records)
        .map(|i| {
            let id = EventId::parse(format!("ajs-next-{:016x}{:016x}", mix(i as u64), mix(!(i as u64)))).unwrap();
            JobKey::for_event(Source::Segment, &id, &rule)
        })
        .collect();
    println!("records: {records}, keys like {}", keys[0]);

    let item = || {
        Item::Job(JobItem {
            status: JobStatus::Claimed,
            rule: rule.to_string(),
            holder: TOKEN.to_owned(),
            lease_until_ms: 1,
            attempts: 0,
            result: None::<Value>,
            error: None,
            notes: vec![],
            expires_at: 1,
            position: None,
            user: None,
            message: None,
            history: vec![],
            delivery: Default::default(),
        })
    };
    let mut hash = HashMap::new();
    report("HashMap insert", &time_each(&keys, |key| drop(hash.insert(key.to_string(), item()))));
    drop(hash);
    let mut tree = BTreeMap::new();
    report("BTreeMap insert", &time_each(&keys, |key| drop(tree.insert(key.to_string(), item()))));
    drop(tree);

    let store = MemoryStore::new();
    let now = SystemTime::now();
    let mut took = Vec::with_capacity(records);
    let started = Instant::now();
    for key in &keys {
        let t = Instant::now();
        store.claim(&NewJob { key, rule: &rule, token: TOKEN, now }).await.unwrap();
        took.push(t.elapsed());
    }
    println!("store claims: {:.0}/s", records as f64 / started.elapsed().as_secs_f64());
    report("MemoryStore claim", &took);
    println!("resident: {} MiB with {records} records", rss_kib() / 1024);

    let t = Instant::now();
    let swept = store.sweep_expired(now + RECORD_TTL + Duration::from_secs(1)).unwrap();
    println!("sweep: {swept} expired records removed in {:.2?}, a chunk per hold of the lock", t.elapsed());
    println!("resident: {} MiB after the sweep", rss_kib() / 1024);
}

/// Runs `insert` for each key, timing each call.
fn time_each(keys: &[JobKey], mut insert: impl FnMut(&JobKey)) -> Vec<Duration> {
    keys.iter()
        .map(|key| {
            let t = Instant::now();
            insert(key);
            t.elapsed()
        })
        .collect()
}

fn report(what: &str, took: &[Duration]) {
    let mut sorted = took.to_vec();
    sorted.sort();
    let pct = |p: f64| sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)];
    let total: Duration = took.iter().sum();
    let mut slowest: Vec<(usize, Duration)> = took.iter().copied().enumerate().collect();
    slowest.sort_by_key(|(_, took)| std::cmp::Reverse(*took));
    let worst: Vec<String> = slowest.iter().take(4).map(|(i, d)| format!("{d:.1?} at {i}")).collect();
    println!(
        "{what:<18} total {total:>8.2?}  p50 {:>7.2?}  p99.9 {:>7.2?}  max {:>8.2?}  calls over 1 ms: {:>3}  slowest: {}",
        pct(0.5),
        pct(0.999),
        sorted[sorted.len() - 1],
        took.iter().filter(|d| **d > Duration::from_millis(1)).count(),
        worst.join(", ")
    );
}

/// A 64-bit mixing function (splitmix64's finalizer): distinct inputs, scattered outputs.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// This process's resident memory, in KiB (Linux).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(|l| l.to_owned()))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}
