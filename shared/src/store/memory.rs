//! The in-memory twin of the DynamoDB store: the same state machine over a map, for unit
//! tests and `relay serve`. An optional [`Persist`] hook hears of every changed record, so
//! `relay serve --data-dir` (`cli/src/data_dir/`) can keep them on disk. Beside the map, the
//! job keys in the order they were received ([`Records`]), as the table's listing index.
//!
//! The map is a `BTreeMap`: it grows a node at a time, where a hash map doubles and rehashes
//! every record in one call under the lock (tens of milliseconds at a million records, felt
//! by every request waiting on the lock). Records past their expiry are removed by
//! [`MemoryStore::sweep_expired`], a chunk of keys per hold of the lock.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::listing::{self, window_bounds};
use super::{
    CLAIM_LEASE, CacheStore, Claim, ClaimStore, DeliveryClaim, DeliveryState, DeliveryStore, GuardStore, JobRecord,
    JobStatus, JobStore, Lease, ListPage, ListQuery, ListStore, NewJob, OpenDeliveries, Outcome, Position, RECORD_TTL,
    ReplayStore, Requeue, Start, StartJob, Step, StoreError, cache_key, cap_key, epoch_millis, epoch_secs, once_key,
    sortable_millis,
};
use crate::domain::{JobKey, RuleName};

/// One stored record, in the shape the file store persists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
// Nearly every item is a job, so boxing jobs would add an allocation to each and save nothing.
#[allow(clippy::large_enum_variant)]
pub enum Item {
    Job(JobItem),
    Cap { members: BTreeSet<String>, expires_at: u64 },
    Once { owner: String, expires_at: u64 },
    Cache { value: Value, fresh_until_ms: u64, expires_at: u64 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobItem {
    pub status: JobStatus,
    pub rule: String,
    /// The claim token while `CLAIMED`, the worker's lease owner while `RUNNING`.
    pub holder: String,
    pub lease_until_ms: u64,
    pub attempts: u32,
    pub result: Option<Value>,
    pub error: Option<String>,
    pub notes: Vec<String>,
    pub expires_at: u64,
    /// Set when the record is first written and never changed (the listing's order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<Step>,
    /// A `DONE` job's destinations and their lease (`store::delivery`).
    #[serde(default)]
    pub delivery: DeliveryItem,
}

/// The delivery part of a job record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeliveryItem {
    pub states: BTreeMap<String, DeliveryState>,
    /// The delivery lease's owner, and until when it holds (0: free).
    pub holder: String,
    pub until_ms: u64,
    /// When the deliveries were first opened.
    pub opened_ms: u64,
}

impl Item {
    /// When the record expires, in epoch seconds.
    pub fn expires_at(&self) -> u64 {
        match self {
            Item::Job(j) => j.expires_at,
            Item::Cap { expires_at, .. } | Item::Once { expires_at, .. } | Item::Cache { expires_at, .. } => {
                *expires_at
            }
        }
    }

    fn position(&self) -> Option<&Position> {
        match self {
            Item::Job(j) => j.position.as_ref(),
            _ => None,
        }
    }
}

/// Receives every change, in the order the store makes them, while the store's lock is held:
/// `Some(item)` written, `None` deleted. It must not block (hand the change on and return).
pub trait Persist: Send + Sync {
    fn write(&self, key: &str, item: Option<&Item>) -> Result<(), StoreError>;
}

/// The records by key, and the jobs' positions in time order (the listing index). Every
/// write goes through `insert` and `remove`, which keep the two in step; a job's position is
/// set when it is first written and never changed in place.
#[derive(Debug, Default)]
pub(super) struct Records {
    items: BTreeMap<String, Item>,
    by_position: BTreeSet<Position>,
}

impl Records {
    fn new(items: BTreeMap<String, Item>) -> Self {
        let by_position = items.values().filter_map(Item::position).cloned().collect();
        Records { items, by_position }
    }

    fn get(&self, key: &str) -> Option<&Item> {
        self.items.get(key)
    }

    fn get_mut(&mut self, key: &str) -> Option<&mut Item> {
        self.items.get_mut(key)
    }

    fn insert(&mut self, key: String, item: Item) {
        if let Some(position) = item.position() {
            self.by_position.insert(position.clone());
        }
        if let Some(old) = self.items.insert(key, item)
            && let Some(position) = old.position()
        {
            self.unindex_if_moved(position.clone());
        }
    }

    fn remove(&mut self, key: &str) -> Option<Item> {
        let old = self.items.remove(key)?;
        if let Some(position) = old.position() {
            self.by_position.remove(position);
        }
        Some(old)
    }

    /// Drops `position` unless the record under its key still has it.
    fn unindex_if_moved(&mut self, position: Position) {
        let key = position.key();
        if self.items.get(key.as_str()).and_then(Item::position) != Some(&position) {
            self.by_position.remove(&position);
        }
    }
}

#[derive(Default, Clone)]
pub struct MemoryStore {
    items: Arc<Mutex<Records>>,
    persist: Option<Arc<dyn Persist>>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").field("persistent", &self.persist.is_some()).finish()
    }
}

fn expires(now: SystemTime) -> u64 {
    epoch_secs(now + RECORD_TTL)
}

/// Records a sweep looks at per hold of the lock: a quarter of a millisecond of work when all
/// of them have expired (benches/store_growth), so a sweep of a million records never holds up a
/// claim for longer than that.
const SWEEP_CHUNK: usize = 256;

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store starting from `items` (read back from disk) that reports changes to `persist`.
    /// Delivery leases in them belonged to the process that wrote them, which has ended.
    pub fn with_persistence(mut items: BTreeMap<String, Item>, persist: Arc<dyn Persist>) -> Self {
        for item in items.values_mut() {
            if let Item::Job(job) = item {
                job.delivery.until_ms = 0;
            }
        }
        MemoryStore { items: Arc::new(Mutex::new(Records::new(items))), persist: Some(persist) }
    }

    /// Records held, expired or not.
    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().items.is_empty()
    }

    /// Removes every record expired at `now` (as DynamoDB's TTL deletes them), reporting each
    /// removal to the persistence hook; returns how many went. The lock is taken per chunk of
    /// keys, so claims go on in between. `now` is a parameter, as in every store call, so a
    /// test (or a benchmark) can sweep as if days had passed.
    pub fn sweep_expired(&self, now: SystemTime) -> Result<usize, StoreError> {
        let now_secs = epoch_secs(now);
        let mut removed = 0;
        let mut after: Option<String> = None;
        loop {
            let (gone, last) = self.update(|items| {
                let from = after.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
                let mut expired = Vec::new();
                let mut last = None;
                for (key, item) in items.items.range::<str, _>((from, Bound::Unbounded)).take(SWEEP_CHUNK) {
                    if item.expires_at() <= now_secs {
                        expired.push(key.clone());
                    }
                    last = Some(key);
                }
                let last = last.cloned();
                for key in &expired {
                    items.remove(key);
                }
                ((expired.len(), last), expired)
            })?;
            removed += gone;
            match last {
                Some(key) => after = Some(key),
                None => return Ok(removed),
            }
        }
    }

    /// Every job record, in key order, for tests and `relay` status output.
    pub fn jobs(&self) -> Vec<JobRecord> {
        self.lock()
            .items
            .iter()
            .filter_map(|(k, item)| match item {
                Item::Job(j) => Some(record(k, j)),
                _ => None,
            })
            .collect()
    }

    /// Runs `change` on the records under the lock, then persists the keys it reports.
    fn update<T>(&self, change: impl FnOnce(&mut Records) -> (T, Vec<String>)) -> Result<T, StoreError> {
        let mut items = self.lock();
        let (out, touched) = change(&mut items);
        if let Some(persist) = &self.persist {
            for key in touched {
                persist.write(&key, items.get(&key))?;
            }
        }
        Ok(out)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Records> {
        // A panic while holding the lock cannot leave a half-written record: every change
        // replaces whole items. So a poisoned lock is still consistent.
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A live (unexpired) item under `key`.
fn live<'a>(items: &'a mut Records, key: &str, now: SystemTime) -> Option<&'a mut Item> {
    let now_secs = epoch_secs(now);
    items.get_mut(key).filter(|i| i.expires_at() > now_secs)
}

fn record(key: &str, j: &JobItem) -> JobRecord {
    JobRecord {
        key: JobKey::from_stored(key),
        status: j.status,
        rule: Some(j.rule.clone()),
        attempts: j.attempts,
        result: j.result.clone(),
        error: j.error.clone(),
        notes: j.notes.clone(),
        lease_until_ms: (j.lease_until_ms > 0).then_some(j.lease_until_ms),
        expires_at: j.expires_at,
        position: j.position.clone(),
        user: j.user.clone(),
        message: j.message.clone(),
        history: j.history.clone(),
        deliveries: j.delivery.states.clone(),
    }
}

fn step(now: SystemTime, status: JobStatus, detail: Option<String>) -> Step {
    Step { at: sortable_millis(now), status, detail }
}

#[async_trait]
impl ClaimStore for MemoryStore {
    async fn claim(&self, job: &NewJob<'_>) -> Result<Claim, StoreError> {
        let now_ms = epoch_millis(job.now);
        self.update(|items| {
            let key = job.key.as_str();
            match live(items, key, job.now) {
                Some(Item::Job(j)) if j.status == JobStatus::Claimed && j.holder == job.token => {
                    (Claim::Claimed, vec![])
                }
                Some(Item::Job(j)) if j.status == JobStatus::Claimed && j.lease_until_ms >= now_ms => {
                    (Claim::InFlight, vec![])
                }
                Some(Item::Job(j)) if j.status != JobStatus::Claimed => (Claim::Duplicate(j.status), vec![]),
                _ => {
                    let item = JobItem {
                        status: JobStatus::Claimed,
                        rule: job.rule.to_string(),
                        holder: job.token.to_owned(),
                        lease_until_ms: epoch_millis(job.now + CLAIM_LEASE),
                        attempts: 0,
                        result: None,
                        error: None,
                        notes: vec![],
                        expires_at: expires(job.now),
                        position: Some(Position::new(job.now, job.key)),
                        user: None,
                        message: None,
                        history: vec![],
                        delivery: DeliveryItem::default(),
                    };
                    items.insert(key.to_owned(), Item::Job(item));
                    (Claim::Claimed, vec![key.to_owned()])
                }
            }
        })
    }

    async fn seal_claim(&self, key: &JobKey, token: &str) -> Result<(), StoreError> {
        self.update(|items| match items.get(key.as_str()) {
            Some(Item::Job(j)) if j.status == JobStatus::Claimed && j.holder == token => {
                // A mark, not a job: out of the listing, as DynamoDB's whole-item seal leaves it.
                let sealed = JobItem { status: JobStatus::Done, lease_until_ms: 0, position: None, ..j.clone() };
                items.insert(key.to_string(), Item::Job(sealed));
                ((), vec![key.to_string()])
            }
            _ => ((), vec![]),
        })
    }

    async fn release_claim(&self, key: &JobKey, token: &str) -> Result<(), StoreError> {
        self.update(|items| match items.get(key.as_str()) {
            Some(Item::Job(j)) if j.status == JobStatus::Claimed && j.holder == token => {
                items.remove(key.as_str());
                ((), vec![key.to_string()])
            }
            _ => ((), vec![]),
        })
    }
}

#[async_trait]
impl JobStore for MemoryStore {
    async fn start(&self, job: &StartJob<'_>) -> Result<Start, StoreError> {
        let StartJob { key, rule, lease, message, user, now } = *job;
        let now_ms = epoch_millis(now);
        self.update(|items| {
            let k = key.as_str();
            let (attempts, notes, position, known_user, history) = match live(items, k, now) {
                Some(Item::Job(j)) => match j.status {
                    s if s.is_final() => return (Start::Finished(s), vec![]),
                    JobStatus::Running if j.holder == lease.owner => {
                        return (Start::Started { attempt: j.attempts }, vec![]);
                    }
                    JobStatus::Running if j.lease_until_ms >= now_ms => return (Start::Busy, vec![]),
                    _ => {
                        (j.attempts, j.notes.clone(), j.position.clone(), j.user.take(), std::mem::take(&mut j.history))
                    }
                },
                _ => (0, vec![], None, None, vec![]),
            };
            let mut history = history;
            history.push(step(now, JobStatus::Running, None));
            let item = JobItem {
                status: JobStatus::Running,
                rule: rule.to_string(),
                holder: lease.owner.clone(),
                lease_until_ms: epoch_millis(lease.until),
                attempts: attempts + 1,
                result: None,
                error: None,
                notes,
                expires_at: expires(now),
                position: Some(position.unwrap_or_else(|| Position::new(now, key))),
                user: user.map(str::to_owned).or(known_user),
                message: Some(message.to_owned()),
                history,
                delivery: DeliveryItem::default(),
            };
            items.insert(k.to_owned(), Item::Job(item));
            (Start::Started { attempt: attempts + 1 }, vec![k.to_owned()])
        })
    }

    async fn finish(
        &self,
        key: &JobKey,
        owner: &str,
        outcome: &Outcome,
        notes: &[String],
        now: SystemTime,
    ) -> Result<(), StoreError> {
        self.update(|items| match items.get_mut(key.as_str()) {
            Some(Item::Job(j)) if j.status == JobStatus::Running && j.holder == owner => {
                j.status = outcome.status();
                j.lease_until_ms = 0;
                j.notes.extend(notes.iter().cloned());
                j.expires_at = expires(now);
                match outcome {
                    Outcome::Done { result } => j.result = Some(result.clone()),
                    Outcome::Failed { reason, .. } | Outcome::Skipped { reason } => j.error = Some(reason.clone()),
                }
                let detail = listing::summary_text(j.result.as_ref(), j.error.as_deref());
                j.history.push(step(now, j.status, detail));
                (Ok(()), vec![key.to_string()])
            }
            // Recorded already by this owner (the same call, repeated).
            Some(Item::Job(j)) if j.status == outcome.status() && j.holder == owner => (Ok(()), vec![]),
            _ => (Err(StoreError::LeaseLost(key.clone())), vec![]),
        })?
    }

    async fn release(&self, key: &JobKey, owner: &str, reason: &str, now: SystemTime) -> Result<(), StoreError> {
        self.update(|items| match items.get_mut(key.as_str()) {
            Some(Item::Job(j)) if j.status == JobStatus::Running && j.holder == owner => {
                j.status = JobStatus::Retrying;
                j.lease_until_ms = 0;
                j.error = Some(reason.to_owned());
                j.expires_at = expires(now);
                j.history.push(step(now, JobStatus::Retrying, listing::summary_text(None, Some(reason))));
                (Ok(()), vec![key.to_string()])
            }
            Some(Item::Job(j)) if j.status == JobStatus::Retrying && j.holder == owner => (Ok(()), vec![]),
            _ => (Err(StoreError::LeaseLost(key.clone())), vec![]),
        })?
    }

    async fn get(&self, key: &JobKey) -> Result<Option<JobRecord>, StoreError> {
        Ok(match self.lock().get(key.as_str()) {
            Some(Item::Job(j)) => Some(record(key.as_str(), j)),
            _ => None,
        })
    }
}

#[async_trait]
impl DeliveryStore for MemoryStore {
    async fn open_deliveries(
        &self,
        key: &JobKey,
        destinations: &[&str],
        lease: &Lease,
        now: SystemTime,
    ) -> Result<DeliveryClaim, StoreError> {
        let now_ms = epoch_millis(now);
        self.update(|items| {
            let k = key.as_str();
            let job = match live(items, k, now) {
                Some(Item::Job(j)) if j.status == JobStatus::Done => j,
                Some(Item::Job(j)) => return (DeliveryClaim::NotDone(Some(j.status)), vec![]),
                _ => return (DeliveryClaim::NotDone(None), vec![]),
            };
            if job.delivery.until_ms >= now_ms && job.delivery.until_ms > 0 {
                return (DeliveryClaim::Busy, vec![]);
            }
            let d = &mut job.delivery;
            d.holder = lease.owner.clone();
            d.until_ms = epoch_millis(lease.until);
            if d.opened_ms == 0 {
                d.opened_ms = now_ms;
            }
            for name in destinations {
                d.states.entry((*name).to_owned()).or_insert_with(|| DeliveryState::pending(now));
            }
            let open = OpenDeliveries {
                result: job.result.clone().unwrap_or(Value::Null),
                states: d.states.clone(),
                opened_at: SystemTime::UNIX_EPOCH + Duration::from_millis(d.opened_ms),
            };
            (DeliveryClaim::Open(open), vec![k.to_owned()])
        })
    }

    async fn record_delivery(
        &self,
        key: &JobKey,
        owner: &str,
        destination: &str,
        state: &DeliveryState,
    ) -> Result<(), StoreError> {
        self.update(|items| match items.get_mut(key.as_str()) {
            Some(Item::Job(j)) if j.status == JobStatus::Done && j.delivery.holder == owner => {
                j.delivery.states.insert(destination.to_owned(), state.clone());
                (Ok(()), vec![key.to_string()])
            }
            _ => (Err(StoreError::LeaseLost(key.clone())), vec![]),
        })?
    }

    async fn release_deliveries(&self, key: &JobKey, owner: &str) -> Result<(), StoreError> {
        self.update(|items| match items.get_mut(key.as_str()) {
            Some(Item::Job(j)) if j.delivery.holder == owner && j.delivery.until_ms > 0 => {
                j.delivery.until_ms = 0;
                ((), vec![key.to_string()])
            }
            _ => ((), vec![]),
        })
    }
}

#[async_trait]
impl GuardStore for MemoryStore {
    async fn take_daily_slot(
        &self,
        rule: &RuleName,
        day: &str,
        key: &JobKey,
        cap: u32,
        now: SystemTime,
    ) -> Result<bool, StoreError> {
        let k = cap_key(rule, day);
        self.update(|items| {
            if !matches!(live(items, &k, now), Some(Item::Cap { .. })) {
                items.insert(k.clone(), Item::Cap { members: BTreeSet::new(), expires_at: expires(now) });
            }
            let Some(Item::Cap { members, .. }) = items.get_mut(&k) else { unreachable!("just inserted") };
            if members.contains(key.as_str()) {
                (true, vec![])
            } else if members.len() < cap as usize {
                members.insert(key.to_string());
                (true, vec![k.clone()])
            } else {
                (false, vec![])
            }
        })
    }

    async fn take_once_per_user(
        &self,
        rule: &RuleName,
        user: &str,
        key: &JobKey,
        now: SystemTime,
    ) -> Result<bool, StoreError> {
        let k = once_key(rule, user);
        self.update(|items| match live(items, &k, now) {
            Some(Item::Once { owner, .. }) => (owner == key.as_str(), vec![]),
            _ => {
                items.insert(k.clone(), Item::Once { owner: key.to_string(), expires_at: expires(now) });
                (true, vec![k.clone()])
            }
        })
    }

    async fn forget_once_per_user(&self, rule: &RuleName, user: &str, key: &JobKey) -> Result<(), StoreError> {
        let k = once_key(rule, user);
        self.update(|items| match items.get(&k) {
            Some(Item::Once { owner, .. }) if owner == key.as_str() => {
                items.remove(&k);
                ((), vec![k.clone()])
            }
            _ => ((), vec![]),
        })
    }
}

#[async_trait]
impl CacheStore for MemoryStore {
    async fn cached(&self, key: &str, now: SystemTime) -> Result<Option<Value>, StoreError> {
        let now_ms = epoch_millis(now);
        Ok(match self.lock().get(&cache_key(key)) {
            Some(Item::Cache { value, fresh_until_ms, .. }) if *fresh_until_ms > now_ms => Some(value.clone()),
            _ => None,
        })
    }

    async fn cache(&self, key: &str, value: &Value, ttl: Duration, now: SystemTime) -> Result<(), StoreError> {
        let k = cache_key(key);
        let item =
            Item::Cache { value: value.clone(), fresh_until_ms: epoch_millis(now + ttl), expires_at: expires(now) };
        self.update(|items| {
            items.insert(k.clone(), item);
            ((), vec![k])
        })
    }
}

#[async_trait]
impl ListStore for MemoryStore {
    async fn list(&self, query: &ListQuery) -> Result<ListPage, StoreError> {
        let (low, high) = window_bounds(query.since, query.until);
        let records = self.lock();
        // Newest first: from the window's end (or below the previous page's last job) down.
        let upper = match &query.after {
            Some(after) if after.as_str() < high.as_str() => Bound::Excluded(after.as_str()),
            _ => Bound::Included(high.as_str()),
        };
        let now_secs = epoch_secs(SystemTime::now());
        let mut page = ListPage::default();
        for position in records.by_position.range::<str, _>((Bound::Included(low.as_str()), upper)).rev() {
            if page.jobs.len() == query.limit {
                page.next = page.jobs.last().map(|j| j.position.clone());
                break;
            }
            let key = position.key();
            let Some(Item::Job(job)) = records.get(key.as_str()) else { continue };
            if job.expires_at <= now_secs {
                continue;
            }
            let summary = record(key.as_str(), job).summary();
            if query.filter.keeps(&summary) {
                page.jobs.push(summary);
            }
        }
        Ok(page)
    }
}

#[async_trait]
impl ReplayStore for MemoryStore {
    async fn requeue(&self, key: &JobKey, seen: JobStatus, now: SystemTime) -> Result<Requeue, StoreError> {
        let now_ms = epoch_millis(now);
        self.update(|items| match live(items, key.as_str(), now) {
            Some(Item::Job(j))
                if j.status != seen
                    || (matches!(j.status, JobStatus::Running | JobStatus::Claimed) && j.lease_until_ms >= now_ms) =>
            {
                (Requeue::Changed(Some(j.status)), vec![])
            }
            Some(Item::Job(j)) => match j.message.clone() {
                None => (Requeue::NoMessage, vec![]),
                Some(message) => {
                    j.status = JobStatus::Retrying;
                    j.lease_until_ms = 0;
                    j.expires_at = expires(now);
                    j.history.push(step(now, JobStatus::Retrying, Some(replay_note(seen))));
                    (Requeue::Requeued { message }, vec![key.to_string()])
                }
            },
            _ => (Requeue::Changed(None), vec![]),
        })
    }
}

/// The history line of a replay.
pub(super) fn replay_note(seen: JobStatus) -> String {
    format!("replayed by an operator (it was {seen})")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::contract;

    #[tokio::test]
    async fn satisfies_the_store_contract() {
        contract::run_all(|| async { MemoryStore::new() }).await;
    }

    #[tokio::test]
    async fn persistence_sees_every_change() {
        #[derive(Default)]
        struct Log(Mutex<Vec<(String, bool)>>);
        impl Persist for Log {
            fn write(&self, key: &str, item: Option<&Item>) -> Result<(), StoreError> {
                self.0.lock().unwrap().push((key.to_owned(), item.is_some()));
                Ok(())
            }
        }
        let log = Arc::new(Log::default());
        let store = MemoryStore::with_persistence(BTreeMap::new(), log.clone());
        let key = JobKey::from_stored("segment#m#r");
        let rule = RuleName::parse("r").unwrap();
        let now = SystemTime::now();
        store.claim(&NewJob { key: &key, rule: &rule, token: "t", now }).await.unwrap();
        store.release_claim(&key, "t").await.unwrap();
        assert_eq!(*log.0.lock().unwrap(), vec![("segment#m#r".to_owned(), true), ("segment#m#r".to_owned(), false)]);
    }

    #[tokio::test]
    async fn the_sweep_removes_what_has_expired_and_keeps_the_rest() {
        #[derive(Default)]
        struct Deleted(Mutex<Vec<String>>);
        impl Persist for Deleted {
            fn write(&self, key: &str, item: Option<&Item>) -> Result<(), StoreError> {
                if item.is_none() {
                    self.0.lock().unwrap().push(key.to_owned());
                }
                Ok(())
            }
        }
        let deleted = Arc::new(Deleted::default());
        let store = MemoryStore::with_persistence(BTreeMap::new(), deleted.clone());
        let rule = RuleName::parse("r").unwrap();
        let day = Duration::from_secs(24 * 3600);
        let t0 = SystemTime::now();
        // More records than one chunk of the sweep, half of them a day younger.
        let keys: Vec<JobKey> =
            (0..3 * SWEEP_CHUNK).map(|i| JobKey::from_stored(format!("segment#m{i:05}#r"))).collect();
        for (i, key) in keys.iter().enumerate() {
            let now = if i % 2 == 0 { t0 } else { t0 + day };
            store.claim(&NewJob { key, rule: &rule, token: "t", now }).await.unwrap();
        }

        assert_eq!(store.sweep_expired(t0 + RECORD_TTL - Duration::from_secs(1)).unwrap(), 0, "nothing is due yet");
        assert_eq!(store.sweep_expired(t0 + RECORD_TTL + Duration::from_secs(1)).unwrap(), keys.len() / 2);
        assert_eq!(store.len(), keys.len() / 2);
        assert!(store.get(&keys[0]).await.unwrap().is_none());
        assert_eq!(store.get(&keys[1]).await.unwrap().unwrap().status, JobStatus::Claimed, "the younger half stays");
        assert_eq!(deleted.0.lock().unwrap().len(), keys.len() / 2, "each removal reaches the persistence hook");

        assert_eq!(store.sweep_expired(t0 + day + RECORD_TTL + Duration::from_secs(1)).unwrap(), keys.len() / 2);
        assert!(store.is_empty());
    }

    #[tokio::test]
    async fn a_swept_job_can_be_claimed_again_as_new() {
        let store = MemoryStore::new();
        let rule = RuleName::parse("r").unwrap();
        let key = JobKey::from_stored("segment#m#r");
        let t0 = SystemTime::now();
        store.claim(&NewJob { key: &key, rule: &rule, token: "t", now: t0 }).await.unwrap();
        let later = t0 + RECORD_TTL + Duration::from_secs(1);
        assert_eq!(store.sweep_expired(later).unwrap(), 1);
        assert_eq!(
            store.claim(&NewJob { key: &key, rule: &rule, token: "t2", now: later }).await.unwrap(),
            Claim::Claimed
        );
    }
}
