//! The event store on disk: the in-memory store's state machine, its records read from the
//! data file at start and every change journaled back to it.
//!
//! Which calls wait for the disk: the worker's (`start`, `finish`, `release`, the guards and
//! the cache) each wait until the change, and everything journaled before it, is on disk, so a
//! job runs only once its acceptance is durable and is reported done only once that is. Ingest's
//! `claim` and `release_claim` do not wait: a claim is followed by a queue send journaled after
//! it, and the answer to the webhook waits for both together (see `serve`'s durable answers).
//! That is one fsync per webhook, shared with every other webhook of the same moment.
//!
//! One process owns the file at a time (redb locks it). So when the store is opened, every
//! lease in it belongs to a process that has ended: the leases are expired on load, and the
//! queue's redelivered messages run at once instead of waiting for them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use redb::{Database, ReadableTable};
use serde_json::Value;
use shared::domain::{JobKey, RuleName};
use shared::store::{
    CacheStore, Claim, ClaimStore, DeliveryClaim, DeliveryState, DeliveryStore, GuardStore, Item, JobRecord, JobStatus,
    JobStore, Lease, ListPage, ListQuery, ListStore, MemoryStore, NewJob, Outcome, Persist, ReplayStore, Requeue,
    Start, StartJob, StoreError, epoch_secs,
};

use super::journal::{Change, Journal, RECORDS};

/// The event store of a data directory.
#[derive(Debug, Clone)]
pub struct FileStore {
    records: MemoryStore,
    journal: Arc<Journal>,
}

/// Hands the in-memory store's changes to the journal.
struct Journaled(Arc<Journal>);

impl Persist for Journaled {
    fn write(&self, key: &str, item: Option<&Item>) -> Result<(), StoreError> {
        self.0
            .record(Change::Record { key: key.to_owned(), item: item.cloned().map(Box::new) })
            .map_err(StoreError::unavailable)
    }
}

impl FileStore {
    /// The store kept in `db`, journaling through `journal`. Records past their TTL are
    /// dropped (from the file too), and leases held by the previous process expire.
    pub(super) fn open(db: &Database, journal: Arc<Journal>, now: SystemTime) -> Result<FileStore, StoreError> {
        let items = load(db, now)?;
        let records = MemoryStore::with_persistence(items, Arc::new(Journaled(journal.clone())));
        Ok(FileStore { records, journal })
    }

    /// Every job record, in key order.
    pub fn jobs(&self) -> Vec<JobRecord> {
        self.records.jobs()
    }

    /// Removes the records expired at `now`, from memory at once and from the file with the
    /// next commit (a crash before it loses nothing: expired records are dropped on load).
    pub fn sweep_expired(&self, now: SystemTime) -> Result<usize, StoreError> {
        self.records.sweep_expired(now)
    }

    /// Records held in memory.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Waits until every change so far is on disk.
    async fn settled(&self) -> Result<(), StoreError> {
        self.journal.settled().await.map_err(StoreError::unavailable)
    }

    /// `result` once it and everything before it is on disk.
    async fn durable<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        // Waited for even when the call failed: a `LeaseLost` may stand on a change that is not
        // on disk yet.
        self.settled().await?;
        result
    }
}

fn load(db: &Database, now: SystemTime) -> Result<BTreeMap<String, Item>, StoreError> {
    // Creates the table on first use, and deletes what has expired since the last run.
    let now_secs = epoch_secs(now);
    let write = db.begin_write().map_err(StoreError::unavailable)?;
    let mut items = BTreeMap::new();
    {
        let mut table = write.open_table(RECORDS).map_err(StoreError::unavailable)?;
        let mut expired = Vec::new();
        for entry in table.iter().map_err(StoreError::unavailable)? {
            let (key, value) = entry.map_err(StoreError::unavailable)?;
            let key = key.value().to_owned();
            let mut item: Item = serde_json::from_slice(value.value())
                .map_err(|e| StoreError::Corrupt { key: key.clone(), problem: e.to_string() })?;
            if item.expires_at() <= now_secs {
                expired.push(key);
                continue;
            }
            if let Item::Job(job) = &mut item
                && matches!(job.status, JobStatus::Claimed | JobStatus::Running)
            {
                // Its holder was the previous process, which has ended.
                job.lease_until_ms = 0;
            }
            items.insert(key, item);
        }
        for key in expired {
            table.remove(key.as_str()).map_err(StoreError::unavailable)?;
        }
    }
    write.commit().map_err(StoreError::unavailable)?;
    Ok(items)
}

#[async_trait]
impl ClaimStore for FileStore {
    async fn claim(&self, job: &NewJob<'_>) -> Result<Claim, StoreError> {
        self.records.claim(job).await
    }

    async fn release_claim(&self, key: &JobKey, token: &str) -> Result<(), StoreError> {
        self.records.release_claim(key, token).await
    }

    async fn seal_claim(&self, key: &JobKey, token: &str) -> Result<(), StoreError> {
        self.records.seal_claim(key, token).await
    }
}

#[async_trait]
impl JobStore for FileStore {
    async fn start(&self, job: &StartJob<'_>) -> Result<Start, StoreError> {
        self.durable(self.records.start(job).await).await
    }

    async fn finish(
        &self,
        key: &JobKey,
        owner: &str,
        outcome: &Outcome,
        notes: &[String],
        now: SystemTime,
    ) -> Result<(), StoreError> {
        self.durable(self.records.finish(key, owner, outcome, notes, now).await).await
    }

    async fn release(&self, key: &JobKey, owner: &str, reason: &str, now: SystemTime) -> Result<(), StoreError> {
        self.durable(self.records.release(key, owner, reason, now).await).await
    }

    async fn get(&self, key: &JobKey) -> Result<Option<JobRecord>, StoreError> {
        self.durable(self.records.get(key).await).await
    }
}

#[async_trait]
impl GuardStore for FileStore {
    async fn take_daily_slot(
        &self,
        rule: &RuleName,
        day: &str,
        key: &JobKey,
        cap: u32,
        now: SystemTime,
    ) -> Result<bool, StoreError> {
        self.durable(self.records.take_daily_slot(rule, day, key, cap, now).await).await
    }

    async fn take_once_per_user(
        &self,
        rule: &RuleName,
        user: &str,
        key: &JobKey,
        now: SystemTime,
    ) -> Result<bool, StoreError> {
        self.durable(self.records.take_once_per_user(rule, user, key, now).await).await
    }

    async fn forget_once_per_user(&self, rule: &RuleName, user: &str, key: &JobKey) -> Result<(), StoreError> {
        self.durable(self.records.forget_once_per_user(rule, user, key).await).await
    }
}

#[async_trait]
impl DeliveryStore for FileStore {
    async fn open_deliveries(
        &self,
        key: &JobKey,
        destinations: &[&str],
        lease: &Lease,
        now: SystemTime,
    ) -> Result<DeliveryClaim, StoreError> {
        self.durable(self.records.open_deliveries(key, destinations, lease, now).await).await
    }

    async fn record_delivery(
        &self,
        key: &JobKey,
        owner: &str,
        destination: &str,
        state: &DeliveryState,
    ) -> Result<(), StoreError> {
        self.durable(self.records.record_delivery(key, owner, destination, state).await).await
    }

    async fn release_deliveries(&self, key: &JobKey, owner: &str) -> Result<(), StoreError> {
        self.durable(self.records.release_deliveries(key, owner).await).await
    }
}

#[async_trait]
impl ListStore for FileStore {
    async fn list(&self, query: &ListQuery) -> Result<ListPage, StoreError> {
        self.records.list(query).await
    }
}

#[async_trait]
impl ReplayStore for FileStore {
    async fn requeue(&self, key: &JobKey, seen: JobStatus, now: SystemTime) -> Result<Requeue, StoreError> {
        self.durable(self.records.requeue(key, seen, now).await).await
    }
}

#[async_trait]
impl CacheStore for FileStore {
    async fn cached(&self, key: &str, now: SystemTime) -> Result<Option<Value>, StoreError> {
        self.records.cached(key, now).await
    }

    async fn cache(&self, key: &str, value: &Value, ttl: Duration, now: SystemTime) -> Result<(), StoreError> {
        self.durable(self.records.cache(key, value, ttl, now).await).await
    }
}
