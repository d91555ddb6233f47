//! Where each of a job's destinations stands, kept on the job's own record so that a
//! redelivered message sends only what is not yet sent and never calls Mavera again.
//!
//! The shape, as `JobRecord::deliveries` (and `relay show`) has it: destination name →
//! `{"state": "pending" | "sending" | "sent" | "failed", "attempts": n, "reason": "…", "at": "<RFC 3339>"}`.
//!
//! - `pending`: not sent yet; `reason` says why the last try did not get through (a 429, a
//!   timeout …). The next delivery of the message tries again.
//! - `sending`: a send to a destination that cannot drop a repeat (Slack, a Customer.io
//!   event) has started. Written before the request goes out; if the worker dies before it
//!   records the outcome, the next delivery finds it here and records it `failed` rather
//!   than risk sending twice.
//! - `sent`: the destination took it (2xx). Never sent again.
//! - `failed`: refused for good, or its credentials are missing, or it may have arrived and
//!   cannot be repeated safely. `reason` says which. Never retried.
//!
//! While a worker delivers, it holds the record's *delivery lease* (apart from the Mavera
//! lease, which ended with `DONE`), so concurrent deliveries of one message cannot both send.

use std::collections::BTreeMap;
use std::time::SystemTime;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{JobStatus, Lease, StoreError};
use crate::domain::JobKey;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Sending,
    Sent,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Sending => "sending",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => DeliveryStatus::Pending,
            "sending" => DeliveryStatus::Sending,
            "sent" => DeliveryStatus::Sent,
            "failed" => DeliveryStatus::Failed,
            _ => return None,
        })
    }

    /// Whether nothing more will be done for this destination.
    pub fn is_final(self) -> bool {
        matches!(self, DeliveryStatus::Sent | DeliveryStatus::Failed)
    }
}

impl std::fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One destination's state on a job's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryState {
    pub state: DeliveryStatus,
    /// Requests made so far, in-invocation retries included.
    pub attempts: u32,
    /// Why it is not `sent`: the last failure, or why it was never tried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When this state was written (RFC 3339).
    pub at: String,
}

impl DeliveryState {
    pub fn new(state: DeliveryStatus, attempts: u32, reason: Option<String>, now: SystemTime) -> Self {
        DeliveryState { state, attempts, reason, at: super::rfc3339(now) }
    }

    /// Newly opened: nothing tried yet.
    pub fn pending(now: SystemTime) -> Self {
        Self::new(DeliveryStatus::Pending, 0, None, now)
    }
}

/// A job's result and its destinations' states, held under the delivery lease.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenDeliveries {
    pub result: Value,
    /// Every destination asked for, those new to the record as `pending`.
    pub states: BTreeMap<String, DeliveryState>,
    /// When the deliveries were first opened (the result's time for destinations), the same
    /// on every later delivery.
    pub opened_at: SystemTime,
}

/// The answer to [`DeliveryStore::open_deliveries`].
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryClaim {
    /// This worker holds the deliveries now.
    Open(OpenDeliveries),
    /// Another worker holds them under a live lease; its message finishes or redelivers them.
    Busy,
    /// No result to deliver: the job is not `DONE` (or has no live record).
    NotDone(Option<JobStatus>),
}

/// The worker's delivery bookkeeping on a `DONE` job's record.
#[async_trait]
pub trait DeliveryStore: Send + Sync {
    /// Takes the delivery lease on a `DONE` job whose lease is free or expired, adds each of
    /// `destinations` the record does not have yet as `pending`, and returns the result
    /// with every state.
    async fn open_deliveries(
        &self,
        key: &JobKey,
        destinations: &[&str],
        lease: &Lease,
        now: SystemTime,
    ) -> Result<DeliveryClaim, StoreError>;

    /// Records one destination's state; fails with `LeaseLost` unless `owner` holds the
    /// delivery lease.
    async fn record_delivery(
        &self,
        key: &JobKey,
        owner: &str,
        destination: &str,
        state: &DeliveryState,
    ) -> Result<(), StoreError>;

    /// Gives the delivery lease back (when destinations are left for the queue's next
    /// delivery), so it need not wait for the lease to expire. Not holding it is fine.
    async fn release_deliveries(&self, key: &JobKey, owner: &str) -> Result<(), StoreError>;
}
