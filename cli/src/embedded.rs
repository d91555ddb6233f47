//! The event store and jobs queue `relay serve` embeds: in memory, or in a data directory
//! (`--data-dir`). Either way the same store state machine and queue; the data directory adds
//! the file, and answers to webhooks that wait for it.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use shared::ingest::ApiError;
use shared::queue::{Consumer, JobQueue, MemoryQueue, QueueError};
use shared::store::{self, JobStatus, MemoryStore, StoreError};
use shared::worker::{self, Worker, WorkerState};

use crate::data_dir::{DataDir, DataDirError, FileQueue, FileStore, Journal};
use crate::records::direct::OpsStore;

/// How often records past their expiry are swept out. They expire after 8 days, so the
/// precise moment does not matter; often enough that memory stays flat, rarely enough that
/// the sweep (a look at every record, a chunk at a time) costs nothing noticeable.
pub const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// What `relay serve` needs of its store beyond the store traits.
pub trait EmbeddedStore: store::Store + WorkerState + OpsStore {
    fn running_jobs(&self) -> usize;
    /// Removes the records expired at `now`; how many went.
    fn sweep_expired(&self, now: SystemTime) -> Result<usize, StoreError>;
}

/// What `relay serve` needs of its queue.
pub trait EmbeddedQueue: JobQueue + Consumer {
    /// Messages waiting or in flight.
    fn depth(&self) -> usize;
}

pub struct Embedded {
    store: Store,
    pub queue: Arc<dyn EmbeddedQueue>,
    /// The data file's journal, with `--data-dir`.
    journal: Option<Arc<Journal>>,
}

/// The store by its own type, which the worker's builder wants.
enum Store {
    Memory(Arc<MemoryStore>),
    File(Arc<FileStore>),
}

impl Embedded {
    pub fn in_memory(visibility: Duration, max_receives: u32) -> Embedded {
        Embedded {
            store: Store::Memory(Arc::new(MemoryStore::new())),
            queue: Arc::new(MemoryQueue::new(visibility, max_receives)),
            journal: None,
        }
    }

    pub fn in_dir(dir: &Path, visibility: Duration, max_receives: u32) -> Result<Embedded, DataDirError> {
        let DataDir { store, queue, journal } = DataDir::open(dir, visibility, max_receives)?;
        Ok(Embedded { store: Store::File(Arc::new(store)), queue: Arc::new(queue), journal: Some(journal) })
    }

    pub fn store(&self) -> Arc<dyn EmbeddedStore> {
        match &self.store {
            Store::Memory(store) => store.clone(),
            Store::File(store) => store.clone(),
        }
    }

    /// The worker, over this store.
    pub fn build_worker(&self, settings: worker::Settings) -> Result<Worker, worker::BuildError> {
        match &self.store {
            Store::Memory(store) => worker::build(settings, store.clone()),
            Store::File(store) => worker::build(settings, store.clone()),
        }
    }

    /// The queue for a sender that is not a webhook (`relay replay` on a data directory): each
    /// send returns once it is on disk, as a webhook's answer does.
    pub fn settled_queue(&self) -> Arc<dyn JobQueue> {
        match &self.journal {
            Some(journal) => Arc::new(SettledSends { queue: self.queue.clone(), journal: journal.clone() }),
            None => self.queue.clone(),
        }
    }

    pub fn is_kept(&self) -> bool {
        self.journal.is_some()
    }

    /// `router` answering a webhook with success only once what it changed is on disk, with
    /// `--data-dir`. The store and queue calls of a request hand their changes to the journal
    /// without waiting; this waits once, for all of them and for everyone else's of the same
    /// moment, so concurrent webhooks share one fsync. Failures (4xx, 5xx) are answered at
    /// once: nothing they did needs keeping, and the sender retries a 5xx.
    pub fn durable_answers(&self, router: Router) -> Router {
        match &self.journal {
            Some(journal) => router.layer(middleware::from_fn_with_state(journal.clone(), answer_when_settled)),
            None => router,
        }
    }

    /// Sweeps expired records every [`SWEEP_EVERY`] until the process ends.
    pub fn spawn_sweeper(&self) {
        self.spawn_sweeper_on(SWEEP_EVERY, SystemTime::now);
    }

    /// Sweeps the records expired by `clock`'s time every `every` (the first after one
    /// period). The clock is a parameter so a test can move it past the records' expiry.
    fn spawn_sweeper_on(
        &self,
        every: Duration,
        clock: impl Fn() -> SystemTime + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let store = self.store();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let (sweep, now) = (store.clone(), clock());
                match tokio::task::spawn_blocking(move || sweep.sweep_expired(now)).await {
                    Ok(Ok(0)) => {}
                    Ok(Ok(n)) => tracing::debug!("swept {n} expired records from the event store"),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %shared::telemetry::chain(&e), "sweeping expired records failed")
                    }
                    Err(e) => tracing::warn!(error = %e, "sweeping expired records failed"),
                }
            }
        })
    }

    /// With `--data-dir`, writes what is still waiting (acks, mostly) to the file.
    pub fn close(&self) {
        if let Some(journal) = &self.journal {
            journal.close();
            tracing::info!("data file: {} changes in {} commits", journal.changes(), journal.commits());
        }
    }
}

struct SettledSends {
    queue: Arc<dyn EmbeddedQueue>,
    journal: Arc<Journal>,
}

#[async_trait::async_trait]
impl JobQueue for SettledSends {
    async fn send(&self, body: String) -> Result<(), QueueError> {
        self.queue.send(body).await?;
        self.journal.settled().await.map_err(QueueError::unavailable)
    }
}

async fn answer_when_settled(State(journal): State<Arc<Journal>>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if !response.status().is_success() {
        return response;
    }
    match journal.settled().await {
        Ok(()) => response,
        // The store's own 503, so the sender retries.
        Err(e) => ApiError::Store(StoreError::unavailable(e)).into_response(),
    }
}

impl EmbeddedStore for MemoryStore {
    fn running_jobs(&self) -> usize {
        self.jobs().iter().filter(|j| j.status == JobStatus::Running).count()
    }

    fn sweep_expired(&self, now: SystemTime) -> Result<usize, StoreError> {
        MemoryStore::sweep_expired(self, now)
    }
}

impl EmbeddedStore for FileStore {
    fn running_jobs(&self) -> usize {
        self.jobs().iter().filter(|j| j.status == JobStatus::Running).count()
    }

    fn sweep_expired(&self, now: SystemTime) -> Result<usize, StoreError> {
        FileStore::sweep_expired(self, now)
    }
}

impl EmbeddedQueue for MemoryQueue {
    fn depth(&self) -> usize {
        MemoryQueue::depth(self)
    }
}

impl EmbeddedQueue for FileQueue {
    fn depth(&self) -> usize {
        FileQueue::depth(self)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use shared::domain::{JobKey, RuleName};
    use shared::store::{NewJob, RECORD_TTL};

    use super::*;

    /// The sweeper `relay serve` runs, on a clock the test moves: records stay until their
    /// expiry, then go, in memory and in a data directory alike.
    #[tokio::test]
    async fn the_sweeper_removes_records_once_the_clock_passes_their_expiry() {
        let dir = std::env::temp_dir().join(format!("relay-sweeper-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let visibility = Duration::from_secs(60);
        for embedded in [Embedded::in_memory(visibility, 5), Embedded::in_dir(&dir, visibility, 5).unwrap()] {
            let store = embedded.store();
            let rule = RuleName::parse("r").unwrap();
            let t0 = SystemTime::now();
            let day = Duration::from_secs(24 * 3600);
            let (old, young) = (JobKey::from_stored("segment#old#r"), JobKey::from_stored("segment#young#r"));
            store.claim(&NewJob { key: &old, rule: &rule, token: "t", now: t0 }).await.unwrap();
            store.claim(&NewJob { key: &young, rule: &rule, token: "t", now: t0 + day }).await.unwrap();

            let clock = Arc::new(Mutex::new(t0 + RECORD_TTL - Duration::from_secs(1)));
            let read = clock.clone();
            let sweeper = embedded.spawn_sweeper_on(Duration::from_millis(10), move || *read.lock().unwrap());
            let count = || async {
                let mut n = 0;
                for key in [&old, &young] {
                    // `get` reads on the real clock, by which nothing has expired: a record
                    // is gone only if the sweeper removed it.
                    n += usize::from(store.get(key).await.unwrap().is_some());
                }
                n
            };
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert_eq!(count().await, 2, "nothing has expired yet");

            *clock.lock().unwrap() = t0 + RECORD_TTL + Duration::from_secs(1);
            assert!(eventually(|| async { count().await == 1 }).await, "the older record is swept");
            assert_eq!(count().await, 1, "the younger one stays");

            *clock.lock().unwrap() = t0 + day + RECORD_TTL + Duration::from_secs(1);
            assert!(eventually(|| async { count().await == 0 }).await, "then the younger one goes too");
            sweeper.abort();
            embedded.close();
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    async fn eventually<F: std::future::Future<Output = bool>>(check: impl Fn() -> F) -> bool {
        for _ in 0..200 {
            if check().await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }
}
