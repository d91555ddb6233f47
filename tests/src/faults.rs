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
