//! What each function has live, so that one URL (ingest's `/healthz`) tells the truth for all
//! three. The worker and cio-sync each write a report at cold start — what runs, what is off
//! and why — to the events table under `health#<function>` (through the cache, so it carries
//! a freshness and expires like any record); ingest reads them when asked, keeping what it
//! read for a few seconds so a busy health check costs at most one read per function each
//! time.
//!
//! A report is versioned by time: it names when it was written and by which function
//! version, and the newest cold start's report is the one kept (during a canary both versions
//! start; the page says which one reported).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use crate::store::{CacheStore, RECORD_TTL, StoreError};

/// The functions that report (ingest answers for itself).
pub const REPORTING: [&str; 2] = ["worker", "cio-sync"];

/// How long ingest reuses what it read.
pub const READ_CACHE: Duration = Duration::from_secs(15);

/// The cache key of `function`'s report (stored as `cache#health#<function>`).
pub fn key(function: &str) -> String {
    format!("health#{function}")
}

/// One thing a function runs (a rule, a scheduled job) that is off, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Off {
    pub name: String,
    pub reason: String,
}

/// What one function has live, as it found at cold start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub function: String,
    /// Unix seconds of the cold start that wrote it.
    pub reported_at: u64,
    /// The function version that wrote it (`AWS_LAMBDA_FUNCTION_VERSION`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// What runs: rules, or scheduled jobs.
    pub live: Vec<String>,
    /// What is off, each with the reason (the variable to set, the setting to change).
    pub off: Vec<Off>,
    /// Anything else worth knowing at a glance (a dry run, say).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Report {
    /// A report of `function` written now, naming the running version when Lambda gives it.
    pub fn new(function: &str, live: Vec<String>, off: Vec<Off>, now: SystemTime) -> Self {
        Report {
            function: function.to_owned(),
            reported_at: now.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
            version: std::env::var("AWS_LAMBDA_FUNCTION_VERSION").ok().filter(|v| !v.is_empty()),
            live,
            off,
            notes: Vec::new(),
        }
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }
}

/// Writes `report` unless a newer one is stored (a cold start that began later).
pub async fn publish(store: &dyn CacheStore, report: &Report, now: SystemTime) -> Result<(), StoreError> {
    let key = key(&report.function);
    if let Some(stored) = store.cached(&key, now).await?
        && serde_json::from_value::<Report>(stored).is_ok_and(|s| s.reported_at > report.reported_at)
    {
        return Ok(());
    }
    let value = serde_json::to_value(report).unwrap_or(Value::Null);
    store.cache(&key, &value, RECORD_TTL, now).await
}

/// [`publish`] at a cold start: a failure is logged, never fatal (the function works without).
pub async fn publish_at_start(store: &dyn CacheStore, report: &Report) {
    if let Err(e) = publish(store, report, SystemTime::now()).await {
        tracing::warn!(function = %report.function, error = %crate::telemetry::chain(&e), "could not record this function's health for /healthz");
    }
}

/// Ingest's view of the other functions' reports, read on demand and kept [`READ_CACHE`].
pub struct Board {
    store: Arc<dyn CacheStore>,
    last: Mutex<Option<(Instant, Map<String, Value>)>>,
}

impl Board {
    pub fn new(store: Arc<dyn CacheStore>) -> Self {
        Board { store, last: Mutex::new(None) }
    }

    /// Each reporting function's latest report, or why there is none.
    pub async fn read(&self) -> Map<String, Value> {
        if let Some((at, read)) = self.last.lock().unwrap_or_else(|p| p.into_inner()).as_ref()
            && at.elapsed() < READ_CACHE
        {
            return read.clone();
        }
        let now = SystemTime::now();
        let reads = futures::future::join_all(REPORTING.iter().map(|function| {
            let (store, key) = (&self.store, key(function));
            async move { store.cached(&key, now).await }
        }))
        .await;
        let mut read = Map::new();
        for (function, found) in REPORTING.iter().zip(reads) {
            let state = match found {
                Ok(Some(report)) => report,
                Ok(None) => json!({
                    "status": "unknown",
                    "reason": format!("no report: {function} writes one at each cold start, and none has run in the last {} days", RECORD_TTL.as_secs() / 86_400),
                }),
                Err(e) => json!({"status": "unknown", "reason": format!("its report could not be read: {e}")}),
            };
            read.insert((*function).to_owned(), state);
        }
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), read.clone()));
        read
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn report(at: u64) -> Report {
        let off = vec![Off { name: "cio-high-value-alert".into(), reason: "CIO_APP_KEY is not set".into() }];
        Report::new(
            "worker",
            vec!["segment-trial-started".into()],
            off,
            SystemTime::UNIX_EPOCH + Duration::from_secs(at),
        )
    }

    #[tokio::test]
    async fn the_newest_cold_start_is_the_one_shown() {
        let store: Arc<dyn CacheStore> = Arc::new(MemoryStore::new());
        let now = SystemTime::now();
        let (older, newer) = (report(1_000), report(2_000));
        publish(store.as_ref(), &newer, now).await.unwrap();
        publish(store.as_ref(), &older, now).await.unwrap();
        let board = Board::new(store.clone());
        let read = board.read().await;
        assert_eq!(read["worker"]["reported_at"], 2_000);
        assert_eq!(read["worker"]["off"][0]["name"], "cio-high-value-alert");
        assert_eq!(read["cio-sync"]["status"], "unknown");
        assert!(read["cio-sync"]["reason"].as_str().unwrap().contains("cold start"));
    }

    #[tokio::test]
    async fn reads_are_reused_for_a_few_seconds() {
        let store: Arc<dyn CacheStore> = Arc::new(MemoryStore::new());
        let board = Board::new(store.clone());
        assert_eq!(board.read().await["worker"]["status"], "unknown");
        publish(store.as_ref(), &report(1_000), SystemTime::now()).await.unwrap();
        assert_eq!(board.read().await["worker"]["status"], "unknown", "within READ_CACHE, the earlier read");
    }
}
