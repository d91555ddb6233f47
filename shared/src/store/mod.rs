//! The event store: one record per job, keyed `{source}#{event id}#{rule}`, that decides
//! who may act on it. Ingest claims it; the worker moves it through `RUNNING` to `DONE`,
//! `FAILED` or `SKIPPED`. The same table holds the daily caps, once-per-user marks and the
//! attribute cache. Every record expires 8 days after it was written (longer than
//! Customer.io's 7 days of retries); expiry is checked in code, since DynamoDB deletes
//! expired items only eventually and moto never does.
//!
//! Narrow traits, one per party: ingest holds a [`ClaimStore`], the worker a [`JobStore`],
//! a [`GuardStore`] and a [`DeliveryStore`] (each destination's state on a `DONE` job, see
//! [`delivery`]), enrichment a [`CacheStore`], operators (`relay events`, `show`, `replay`,
//! the console) a [`ListStore`] and a [`ReplayStore`].

pub mod delivery;
mod dynamo;
mod dynamo_listing;
mod failure;
pub mod listing;
mod memory;
mod time;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use delivery::{DeliveryClaim, DeliveryState, DeliveryStatus, DeliveryStore, OpenDeliveries};
pub use dynamo::{
    DAY_ATTRIBUTE, DynamoStore, KEY_ATTRIBUTE, LISTING_INDEX, LISTING_PROJECTION, RECEIVED_ATTRIBUTE, TTL_ATTRIBUTE,
    create_table,
};
pub use failure::FailureClass;
pub use listing::{JobSummary, ListFilter, ListPage, ListQuery, Position, Step};
pub use memory::{Item, JobItem, MemoryStore, Persist};
pub use time::{epoch_millis, epoch_secs, rfc3339, sortable_millis, utc_day};

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

/// What the worker asks for when it starts a job.
#[derive(Debug, Clone)]
pub struct StartJob<'a> {
    pub key: &'a JobKey,
    pub rule: &'a RuleName,
    pub lease: &'a Lease,
    /// The queue message being run, kept on the record so that an operator can replay the
    /// job (`relay replay`) after its message has left the queue.
    pub message: &'a str,
    /// Whom the event is about, so an operator can find the job by user.
    pub user: Option<&'a str>,
    pub now: SystemTime,
}

impl<'a> StartJob<'a> {
    /// A start for a job about no particular user.
    pub fn new(key: &'a JobKey, rule: &'a RuleName, lease: &'a Lease, message: &'a str, now: SystemTime) -> Self {
        StartJob { key, rule, lease, message, user: None, now }
    }
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// Its place in the listing (when it was received); none for records written before
    /// the listing index existed.
    #[serde(default)]
    pub position: Option<Position>,
    #[serde(default)]
    pub user: Option<String>,
    /// The queue message the worker last ran (to replay the job).
    #[serde(default)]
    pub message: Option<String>,
    /// Each attempt's start and end, and each replay, oldest first.
    #[serde(default)]
    pub history: Vec<Step>,
    /// A `DONE` job's destinations, by name (`slack`, `customerio`, …): see [`delivery`].
    #[serde(default)]
    pub deliveries: BTreeMap<String, DeliveryState>,
}

impl JobRecord {
    /// The record as a listing shows it.
    pub fn summary(&self) -> JobSummary {
        JobSummary {
            key: self.key.clone(),
            position: self.position.clone().unwrap_or_else(|| Position::new(std::time::UNIX_EPOCH, &self.key)),
            status: self.status,
            rule: self.rule.clone(),
            user: self.user.clone(),
            summary: listing::summary_text(self.result.as_ref(), self.error.as_deref()),
            credits: listing::credits_of(self.result.as_ref()),
            attempts: self.attempts,
        }
    }

    /// Whether a worker holds it under a lease that has not run out at `now`.
    pub fn is_held(&self, now: SystemTime) -> bool {
        matches!(self.status, JobStatus::Running | JobStatus::Claimed)
            && self.lease_until_ms.is_some_and(|until| until >= epoch_millis(now))
    }
}

/// The answer to a replay's requeue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requeue {
    /// The record is `RETRYING` now, as a new attempt: send `message` to the queue.
    Requeued { message: String },
    /// The record was no longer in the status the operator saw (it is this one now), or is
    /// held under a live lease; nothing changed.
    Changed(Option<JobStatus>),
    /// The record keeps no queue message (it never started, or was written before messages
    /// were kept), so there is nothing to replay; nothing changed.
    NoMessage,
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
    /// The record keeps the message and the user, and gets a place in the listing if it had
    /// none.
    async fn start(&self, job: &StartJob<'_>) -> Result<Start, StoreError>;
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

/// Listing the jobs received in a time window, newest first: one index query per UTC day
/// of the window, never a scan of the table.
#[async_trait]
pub trait ListStore: Send + Sync {
    async fn list(&self, query: &ListQuery) -> Result<ListPage, StoreError>;
}

/// An operator's replay: the job becomes a new attempt.
#[async_trait]
pub trait ReplayStore: Send + Sync {
    /// Moves the job from `seen` (the status the operator was shown) to `RETRYING`, noting
    /// the replay in its history, and hands back the message to queue again. Refused when the
    /// status is no longer `seen` or a lease is live. The caller decides which statuses may
    /// be replayed (`relay replay` refuses `DONE` without `--force`).
    async fn requeue(&self, key: &JobKey, seen: JobStatus, now: SystemTime) -> Result<Requeue, StoreError>;
}

/// Everything at once, for wiring. Handlers take the narrow traits.
pub trait Store: ClaimStore + JobStore + GuardStore + CacheStore + DeliveryStore + ListStore + ReplayStore {}
impl<T: ClaimStore + JobStore + GuardStore + CacheStore + DeliveryStore + ListStore + ReplayStore> Store for T {}

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
