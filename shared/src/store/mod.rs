//! The event store: one record per job, keyed `{source}#{event id}#{rule}`, that decides
//! who may act on it. Ingest claims it; the worker moves it through `RUNNING` to `DONE`,
//! `FAILED` or `SKIPPED`. The same table holds the daily caps, once-per-user marks and the
//! attribute cache. Every record expires 8 days after it was written (longer than
//! Customer.io's 7 days of retries); expiry is checked in code, since DynamoDB deletes
//! expired items only eventually and moto never does.
//!
//! Narrow traits, one per party: ingest holds a [`ClaimStore`], the worker a [`JobStore`],
//! a [`GuardStore`] and a [`DeliveryStore`] (each destination's state on a `DONE` job, see
//! [`delivery`]), enrichment a [`CacheStore`].

pub mod delivery;
mod dynamo;
mod failure;
mod file;
mod memory;
mod time;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use delivery::{DeliveryClaim, DeliveryState, DeliveryStatus, DeliveryStore, OpenDeliveries};
pub use dynamo::{DynamoStore, KEY_ATTRIBUTE, TTL_ATTRIBUTE, create_table};
pub use failure::FailureClass;
pub use file::{DATA_FILE, DataDirError, FileStore, open_database};
pub use memory::MemoryStore;
pub use time::{epoch_millis, epoch_secs, rfc3339, utc_day};

use crate::domain::{JobKey, RuleName};

/// How long every record lives.
pub const RECORD_TTL: Duration = Duration::from_secs(8 * 24 * 3600);

/// How long an ingest claim holds before another delivery may take it over. Ingest answers
/// every request within its request budget (3.5 s): by then it has sent the job or
/// deleted the claim, unless the process died in between. A claim that outlives its lease is
/// therefore sent or abandoned, and a later delivery takes it over and sends the job (again:
/// the worker runs a job once however often it is queued).
pub const CLAIM_LEASE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    /// Ingest holds it and is putting it on the queue (or has, or died first: the lease
    /// says which may still be the case).
    Claimed,
    /// A worker is calling Mavera under a lease.
    Running,
    /// A worker gave it back after a transient failure; the queue redelivers it.
    Retrying,
    Done,
    Failed,
    /// A guard stopped it (daily cap, once per user, conditions after enrichment).
    Skipped,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Claimed => "CLAIMED",
            JobStatus::Running => "RUNNING",
            JobStatus::Retrying => "RETRYING",
            JobStatus::Done => "DONE",
            JobStatus::Failed => "FAILED",
            JobStatus::Skipped => "SKIPPED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "CLAIMED" => JobStatus::Claimed,
            "RUNNING" => JobStatus::Running,
            "RETRYING" => JobStatus::Retrying,
            "DONE" => JobStatus::Done,
            "FAILED" => JobStatus::Failed,
            "SKIPPED" => JobStatus::Skipped,
            _ => return None,
        })
    }

    pub fn is_final(self) -> bool {
        matches!(self, JobStatus::Done | JobStatus::Failed | JobStatus::Skipped)
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What ingest asks for when it claims a job.
#[derive(Debug, Clone)]
pub struct NewJob<'a> {
    pub key: &'a JobKey,
    pub rule: &'a RuleName,
    /// Identifies this claim, so only its holder deletes it.
    pub token: &'a str,
    pub now: SystemTime,
}

/// The answer to a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This delivery holds the job now (a new claim, a takeover of an expired one, or its own
    /// claim seen again after a retried write): send it.
    Claimed,
    /// Another delivery claimed the job under a live lease and may not have sent it yet. Not
    /// a duplicate: acknowledging it could lose the event if that delivery fails. The sender
    /// must retry; once the lease has expired the retry takes the claim over.
    InFlight,
    /// A worker has the job (it was sent), or it has ended.
    Duplicate(JobStatus),
}

/// A worker's hold on a job while it calls Mavera.
#[derive(Debug, Clone)]
pub struct Lease {
    pub owner: String,
    pub until: SystemTime,
}

/// The answer to a worker's `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// This worker holds the job now; `attempt` counts from 1.
    Started { attempt: u32 },
    /// Nothing to do: it is `DONE`, `FAILED` or `SKIPPED`.
    Finished(JobStatus),
    /// Another worker holds a live lease; its own message will finish or redeliver it.
    Busy,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Done {
        result: Value,
    },
    /// `class` sorts the failure for metrics and alarms; `reason` says what happened.
    Failed {
        reason: String,
        class: FailureClass,
    },
    Skipped {
        reason: String,
    },
}

impl Outcome {
    pub fn status(&self) -> JobStatus {
        match self {
            Outcome::Done { .. } => JobStatus::Done,
            Outcome::Failed { .. } => JobStatus::Failed,
            Outcome::Skipped { .. } => JobStatus::Skipped,
        }
    }
}

/// A job record as an operator (or a test) reads it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRecord {
    pub key: JobKey,
    pub status: JobStatus,
    pub rule: Option<String>,
    pub attempts: u32,
    pub result: Option<Value>,
    pub error: Option<String>,
    /// Remarks along the way, e.g. that an attribute lookup failed.
    pub notes: Vec<String>,
    pub lease_until_ms: Option<u64>,
    pub expires_at: u64,
    /// A `DONE` job's destinations, by name (`slack`, `customerio`, …): see [`delivery`].
    pub deliveries: BTreeMap<String, DeliveryState>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the event store could not be reached or refused the request: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the event store holds a record it cannot read ({key}): {problem}")]
    Corrupt { key: String, problem: String },
    #[error("the lease on {0} was lost to another worker")]
    LeaseLost(JobKey),
}

impl StoreError {
    pub fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Unavailable(Box::new(e))
    }
}

#[async_trait]
pub trait ClaimStore: Send + Sync {
    /// Records the job as `CLAIMED` unless a live record exists (an expired claim or an
    /// expired record counts as absent). A live claim under the same token is this caller's
    /// own (its write was applied, then retried), so the answer is `Claimed` again.
    async fn claim(&self, job: &NewJob<'_>) -> Result<Claim, StoreError>;
    /// Deletes this claim (only if it is still `CLAIMED` under `token`), so the sender's
    /// retry can claim the job again.
    async fn release_claim(&self, key: &JobKey, token: &str) -> Result<(), StoreError>;
    /// Ends this claim as `DONE` (only if it is still `CLAIMED` under `token`): for a record
    /// that is only a mark (a batch signature used once), so later claims are duplicates.
    async fn seal_claim(&self, key: &JobKey, token: &str) -> Result<(), StoreError>;
}

#[async_trait]
pub trait JobStore: Send + Sync {
    /// Moves the job to `RUNNING` under `lease` if it is claimed, retrying, running under
    /// an expired lease, or absent (a redriven message whose record expired). A job already
    /// `RUNNING` under `lease.owner` is this caller's own (a retried write that was applied).
    async fn start(&self, key: &JobKey, rule: &RuleName, lease: &Lease, now: SystemTime) -> Result<Start, StoreError>;
    /// Records how the job ended; fails with `LeaseLost` if `owner` no longer holds it.
    async fn finish(
        &self,
        key: &JobKey,
        owner: &str,
        outcome: &Outcome,
        notes: &[String],
        now: SystemTime,
    ) -> Result<(), StoreError>;
    /// Gives the job back after a transient failure (`RETRYING`), keeping the reason.
    async fn release(&self, key: &JobKey, owner: &str, reason: &str, now: SystemTime) -> Result<(), StoreError>;
    async fn get(&self, key: &JobKey) -> Result<Option<JobRecord>, StoreError>;
}

#[async_trait]
pub trait GuardStore: Send + Sync {
    /// Counts `key` against `rule`'s cap for the UTC `day`. Idempotent per key: a retried
    /// job keeps its slot. `false` when the cap is reached.
    async fn take_daily_slot(
        &self,
        rule: &RuleName,
        day: &str,
        key: &JobKey,
        cap: u32,
        now: SystemTime,
    ) -> Result<bool, StoreError>;
    /// Reserves `rule` for `user`: `true` if `key` holds the reservation (now or already).
    async fn take_once_per_user(
        &self,
        rule: &RuleName,
        user: &str,
        key: &JobKey,
        now: SystemTime,
    ) -> Result<bool, StoreError>;
    /// Drops `key`'s reservation, after a permanent failure, so a later event may fire.
    async fn forget_once_per_user(&self, rule: &RuleName, user: &str, key: &JobKey) -> Result<(), StoreError>;
}

#[async_trait]
pub trait CacheStore: Send + Sync {
    /// A value cached under `key` that is still fresh.
    async fn cached(&self, key: &str, now: SystemTime) -> Result<Option<Value>, StoreError>;
    async fn cache(&self, key: &str, value: &Value, ttl: Duration, now: SystemTime) -> Result<(), StoreError>;
}

/// Everything at once, for wiring. Handlers take the narrow traits.
pub trait Store: ClaimStore + JobStore + GuardStore + CacheStore + DeliveryStore {}
impl<T: ClaimStore + JobStore + GuardStore + CacheStore + DeliveryStore> Store for T {}

/// Keys of the non-job records, kept apart from job keys by their prefixes.
pub(crate) fn cap_key(rule: &RuleName, day: &str) -> String {
    format!("cap#{rule}#{day}")
}

pub(crate) fn once_key(rule: &RuleName, user: &str) -> String {
    format!("once#{rule}#{user}")
}

pub(crate) fn cache_key(key: &str) -> String {
    format!("cache#{key}")
}

/// The adapter contract suite, for the integration tests of other adapters.
#[cfg(any(test, feature = "test-support"))]
pub mod contract;
