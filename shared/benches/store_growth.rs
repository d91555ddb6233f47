//! The in-memory event store while it grows: the time of each `claim` as the store goes from
//! empty to `RECORDS` records (1 million by default), the slowest calls and where in the run
//! they fell, then the time to sweep them all once they have expired. Run:
//! `cargo bench --workspace --bench store_growth` (`RECORDS=200000` for a shorter run; figures
//! in BENCHMARKS.md).
//!
//! A call that has to grow a hash table rehashes every record under the store's one lock;
//! the slowest calls show whether that happens, and how long it holds everyone else up.

use std::time::{Duration, Instant, SystemTime};

use shared::domain::{EventId, JobKey, RuleName, Source};
use shared::store::{ClaimStore, MemoryStore, NewJob, RECORD_TTL};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let records: usize = std::env::var("RECORDS").ok().and_then(|n| n.parse().ok()).unwrap_or(1_000_000);
    let store = MemoryStore::new();
    let rule = RuleName::parse("segment-trial-started").unwrap();
    let now = SystemTime::now();
    let token = "6f1c2a3e-8d4b-4c5a-9e7f-0a1b2c3d4e5f";

    let mut took = Vec::with_capacity(records);
    let started = Instant::now();
    for i in 0..records {
        let id = EventId::parse(format!("ajs-next-1700000000000-{i:016x}")).unwrap();
        let key = JobKey::for_event(Source::Segment, &id, &rule);
        let t = Instant::now();
        store.claim(&NewJob { key: &key, rule: &rule, token, now }).await.unwrap();
        took.push(t.elapsed());
    }
    let total = started.elapsed();
    let rss_full = rss_kib();

    let mut sorted = took.clone();
    sorted.sort();
    let pct = |p: f64| sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)];
    println!("records:       {records}");
    println!("claims:        {:.0}/s over {:.2?}", records as f64 / total.as_secs_f64(), total);
    println!(
        "claim time:    p50 {:?}  p99 {:?}  p99.9 {:?}  p99.99 {:?}  max {:?}",
        pct(0.5),
        pct(0.99),
        pct(0.999),
        pct(0.9999),
        sorted[sorted.len() - 1]
    );
    let mut slowest: Vec<(usize, Duration)> = took.iter().copied().enumerate().collect();
    slowest.sort_by_key(|(_, took)| std::cmp::Reverse(*took));
    let over_1ms = took.iter().filter(|d| **d > Duration::from_millis(1)).count();
    println!("calls > 1 ms:  {over_1ms}");
    println!("slowest calls (record count before the call: time):");
    for (i, d) in slowest.iter().take(8) {
        println!("  {i:>9}: {d:?}");
    }
    println!("resident:      {} MiB with {records} records", rss_full / 1024);

    let later = now + RECORD_TTL + Duration::from_secs(1);
    let t = Instant::now();
    let swept = store.sweep_expired(later).unwrap();
    println!(
        "sweep:         {swept} expired records removed in {:.2?} (the lock is held per chunk, not for all)",
        t.elapsed()
    );
    println!("resident:      {} MiB after the sweep", rss_kib() / 1024);
}

/// This process's resident memory, in KiB (Linux).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(|l| l.to_owned()))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}
