//! Wrappers that count or break calls to a port, to prove what a code path does (or does
//! not do) to its store and queue.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use shared::domain::JobKey;
use shared::queue::{JobQueue, QueueError};
use shared::store::{Claim, ClaimStore, NewJob, StoreError};

/// Counts every call to the wrapped claim store; can be told to fail them.
pub struct Watched<S> {
    pub inner: S,
    pub calls: Arc<AtomicUsize>,
    pub broken: Arc<AtomicBool>,
}

impl<S> Watched<S> {
    pub fn new(inner: S) -> Self {
        Watched { inner, calls: Arc::default(), broken: Arc::default() }
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn call(&self) -> Result<(), StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.broken.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable(std::io::Error::other("the test broke the store")));
        }
        Ok(())
    }
}

#[async_trait]
impl<S: ClaimStore> ClaimStore for Watched<S> {
    async fn claim(&self, job: &NewJob<'_>) -> Result<Claim, StoreError> {
        self.call()?;
        self.inner.claim(job).await
    }

    async fn release_claim(&self, key: &JobKey, token: &str) -> Result<(), StoreError> {
        self.call()?;
        self.inner.release_claim(key, token).await
    }

    async fn seal_claim(&self, key: &JobKey, token: &str) -> Result<(), StoreError> {
        self.call()?;
        self.inner.seal_claim(key, token).await
    }
}

/// Counts sends to the wrapped queue.
pub struct WatchedQueue<Q> {
    pub inner: Q,
    pub sends: Arc<AtomicUsize>,
}

impl<Q> WatchedQueue<Q> {
    pub fn new(inner: Q) -> Self {
        WatchedQueue { inner, sends: Arc::default() }
    }

    pub fn sends(&self) -> usize {
        self.sends.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl<Q: JobQueue> JobQueue for WatchedQueue<Q> {
    async fn send(&self, body: String) -> Result<(), QueueError> {
        self.sends.fetch_add(1, Ordering::SeqCst);
        self.inner.send(body).await
    }
}

/// Where a simulated process death stops a call to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Death {
    /// Before the call reaches the store: nothing of it is applied.
    Before,
    /// After the store applied it, before the answer is used.
    After,
}

/// A worker's store that "kills the process" at its `at`-th call (counting from 1): that call
/// never returns, as if the process died there (the test drops the job's future). What the
/// store had applied stays, as it would in DynamoDB.
pub struct Dying<S> {
    pub inner: S,
    at: usize,
    death: Death,
    calls: AtomicUsize,
}

impl<S> Dying<S> {
    pub fn new(inner: S, at: usize, death: Death) -> Self {
        Dying { inner, at, death, calls: AtomicUsize::new(0) }
    }

    /// Calls made, the fatal one included.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    async fn step<T>(&self, call: impl std::future::Future<Output = T>) -> T {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if n != self.at {
            return call.await;
        }
        if self.death == Death::After {
            let _applied = call.await;
        }
        std::future::pending().await
    }
}

use shared::domain::RuleName;
use shared::store::{
    CacheStore, DeliveryClaim, DeliveryState, DeliveryStore, GuardStore, JobRecord, JobStore, Lease, Outcome, Start,
    StartJob,
};
use std::time::{Duration, SystemTime};

#[async_trait]
impl<S: JobStore> JobStore for Dying<S> {
    async fn start(&self, job: &StartJob<'_>) -> Result<Start, StoreError> {
        self.step(self.inner.start(job)).await
    }

    async fn finish(
        &self,
        key: &JobKey,
        owner: &str,
        outcome: &Outcome,
        notes: &[String],
        now: SystemTime,
    ) -> Result<(), StoreError> {
        self.step(self.inner.finish(key, owner, outcome, notes, now)).await
    }

    async fn release(&self, key: &JobKey, owner: &str, reason: &str, now: SystemTime) -> Result<(), StoreError> {
        self.step(self.inner.release(key, owner, reason, now)).await
    }

    async fn get(&self, key: &JobKey) -> Result<Option<JobRecord>, StoreError> {
        self.inner.get(key).await
    }
}

#[async_trait]
impl<S: GuardStore> GuardStore for Dying<S> {
    async fn take_daily_slot(
        &self,
        rule: &RuleName,
        day: &str,
        key: &JobKey,
        cap: u32,
        now: SystemTime,
    ) -> Result<bool, StoreError> {
        self.step(self.inner.take_daily_slot(rule, day, key, cap, now)).await
    }

    async fn take_once_per_user(
        &self,
        rule: &RuleName,
        user: &str,
        key: &JobKey,
        now: SystemTime,
    ) -> Result<bool, StoreError> {
        self.step(self.inner.take_once_per_user(rule, user, key, now)).await
    }

    async fn forget_once_per_user(&self, rule: &RuleName, user: &str, key: &JobKey) -> Result<(), StoreError> {
        self.step(self.inner.forget_once_per_user(rule, user, key)).await
    }
}

#[async_trait]
impl<S: CacheStore> CacheStore for Dying<S> {
    async fn cached(&self, key: &str, now: SystemTime) -> Result<Option<serde_json::Value>, StoreError> {
        self.step(self.inner.cached(key, now)).await
    }

    async fn cache(
        &self,
        key: &str,
        value: &serde_json::Value,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        self.step(self.inner.cache(key, value, ttl, now)).await
    }
}

#[async_trait]
impl<S: DeliveryStore> DeliveryStore for Dying<S> {
    async fn open_deliveries(
        &self,
        key: &JobKey,
        destinations: &[&str],
        lease: &Lease,
        now: SystemTime,
    ) -> Result<DeliveryClaim, StoreError> {
        self.step(self.inner.open_deliveries(key, destinations, lease, now)).await
    }

    async fn record_delivery(
        &self,
        key: &JobKey,
        owner: &str,
        destination: &str,
        state: &DeliveryState,
    ) -> Result<(), StoreError> {
        self.step(self.inner.record_delivery(key, owner, destination, state)).await
    }

    async fn release_deliveries(&self, key: &JobKey, owner: &str) -> Result<(), StoreError> {
        self.step(self.inner.release_deliveries(key, owner)).await
    }
}
