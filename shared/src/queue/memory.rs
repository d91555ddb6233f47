//! The in-process twin of SQS, for tests and `relay serve`: at-least-once delivery with a
//! visibility timeout, a receive count, and a dead-letter list after `max_receives`, so the
//! worker code path is the same as under Lambda. An optional [`QueuePersist`] hook hears of
//! every change, so `relay serve --data-dir` (`cli/src/data_dir/`) keeps its queue on disk.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{JobQueue, QueueError};

#[derive(Debug, Clone)]
pub struct Delivery {
    pub receipt: u64,
    pub body: String,
    /// 1 on the first delivery, as SQS's `ApproximateReceiveCount`.
    pub receive_count: u32,
}

#[derive(Debug)]
struct Entry {
    id: u64,
    body: String,
    receives: u32,
    visible_at: Instant,
}

#[derive(Debug, Default)]
struct State {
    ready: VecDeque<Entry>,
    in_flight: HashMap<u64, Entry>,
    dead: Vec<String>,
    next_id: u64,
    refuse_sends: bool,
    sent: u64,
}

/// Receives every change to the queue's messages, in order, while the queue's lock is held (so
/// it must not block: hand the change on and return). In-flight state is not reported: after
/// a restart every message kept is visible again.
pub trait QueuePersist: Send + Sync {
    /// Message `id` was accepted (`receives` 0) or handed back after `receives` deliveries.
    fn put(&self, id: u64, body: &str, receives: u32) -> Result<(), QueueError>;
    /// Message `id` was deleted, or moved to the dead letters when `dead`.
    fn remove(&self, id: u64, body: &str, dead: bool) -> Result<(), QueueError>;
}

/// A message read back from disk: id, body, deliveries so far.
pub type StoredMessage = (u64, String, u32);

#[derive(Clone)]
pub struct MemoryQueue {
    state: Arc<Mutex<State>>,
    notify: Arc<Notify>,
    visibility: Duration,
    max_receives: u32,
    persist: Option<Arc<dyn QueuePersist>>,
}

impl std::fmt::Debug for MemoryQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryQueue")
            .field("visibility", &self.visibility)
            .field("max_receives", &self.max_receives)
            .field("persistent", &self.persist.is_some())
            .finish()
    }
}

/// As the deployed queue: a message stays hidden longer than any job may run (the local
/// runner gives a job 300 s; SQS's visibility is 6× the worker timeout), so a running job is
/// never redelivered to a second worker; 5 receives before the dead letters.
impl Default for MemoryQueue {
    fn default() -> Self {
        Self::new(Duration::from_secs(1800), 5)
    }
}

impl MemoryQueue {
    /// `visibility`: how long a received message stays hidden before it is delivered again;
    /// `max_receives`: deliveries before a message moves to the dead letters.
    pub fn new(visibility: Duration, max_receives: u32) -> Self {
        MemoryQueue {
            state: Arc::default(),
            notify: Arc::default(),
            visibility,
            max_receives: max_receives.max(1),
            persist: None,
        }
    }

    /// A queue starting from `messages` (read back from disk, all visible) that reports
    /// changes to `persist`.
    pub fn with_persistence(
        visibility: Duration,
        max_receives: u32,
        messages: Vec<StoredMessage>,
        persist: Arc<dyn QueuePersist>,
    ) -> Self {
        let now = Instant::now();
        let mut state = State::default();
        for (id, body, receives) in messages {
            state.next_id = state.next_id.max(id);
            state.ready.push_back(Entry { id, body, receives, visible_at: now });
        }
        MemoryQueue {
            state: Arc::new(Mutex::new(state)),
            persist: Some(persist),
            ..Self::new(visibility, max_receives)
        }
    }

    /// Reports a change to the persistence hook; a failure is logged, since the message
    /// is then only delivered once more than needed (its job is idempotent).
    fn persisted(&self, change: impl FnOnce(&dyn QueuePersist) -> Result<(), QueueError>) {
        if let Some(persist) = &self.persist
            && let Err(e) = change(persist.as_ref())
        {
            tracing::error!(error = %crate::telemetry::chain(&e), "could not write a queue change to disk; the message may be delivered again after a restart");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes every later `send` fail, to test what happens when the queue is down.
    pub fn refuse_sends(&self, refuse: bool) {
        self.lock().refuse_sends = refuse;
    }

    /// Waits up to `wait` for visible messages and hands out at most `max`, each hidden for
    /// the visibility timeout.
    pub async fn receive(&self, max: usize, wait: Duration) -> Vec<Delivery> {
        let deadline = Instant::now() + wait;
        loop {
            let notified = self.notify.notified();
            let next_visible = {
                let mut state = self.lock();
                let now = Instant::now();
                // Messages whose visibility ran out come back, or go to the dead letters.
                let expired: Vec<u64> =
                    state.in_flight.iter().filter(|(_, e)| e.visible_at <= now).map(|(id, _)| *id).collect();
                for id in expired {
                    if let Some(entry) = state.in_flight.remove(&id) {
                        self.requeue(&mut state, entry, now);
                    }
                }
                // Take the first `max` visible messages; stop there, so a long queue costs
                // a receive only the messages it looks at. Messages still delayed keep their
                // place in front.
                let mut out = Vec::new();
                let mut delayed = VecDeque::new();
                while out.len() < max {
                    let Some(mut entry) = state.ready.pop_front() else { break };
                    if entry.visible_at <= now {
                        entry.receives += 1;
                        entry.visible_at = now + self.visibility;
                        out.push(Delivery {
                            receipt: entry.id,
                            body: entry.body.clone(),
                            receive_count: entry.receives,
                        });
                        state.in_flight.insert(entry.id, entry);
                    } else {
                        delayed.push_back(entry);
                    }
                }
                while let Some(entry) = delayed.pop_back() {
                    state.ready.push_front(entry);
                }
                if !out.is_empty() {
                    return out;
                }
                state.ready.iter().chain(state.in_flight.values()).map(|e| e.visible_at).min()
            };
            let until = next_visible.map_or(deadline, |t| t.min(deadline));
            if Instant::now() >= deadline {
                return Vec::new();
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(until) => {}
            }
        }
    }

    fn requeue(&self, state: &mut State, entry: Entry, now: Instant) {
        if entry.receives >= self.max_receives {
            self.persisted(|p| p.remove(entry.id, &entry.body, true));
            state.dead.push(entry.body);
        } else {
            state.ready.push_back(Entry { visible_at: now, ..entry });
        }
    }

    /// The message was handled: delete it.
    pub fn ack(&self, receipt: u64) {
        let mut state = self.lock();
        if let Some(entry) = state.in_flight.remove(&receipt) {
            self.persisted(|p| p.remove(entry.id, &entry.body, false));
        }
    }

    /// The message failed: make it visible again after `delay` (or dead-letter it).
    pub fn nack(&self, receipt: u64, delay: Duration) {
        let mut state = self.lock();
        if let Some(mut entry) = state.in_flight.remove(&receipt) {
            let now = Instant::now();
            if entry.receives >= self.max_receives {
                self.persisted(|p| p.remove(entry.id, &entry.body, true));
                state.dead.push(entry.body);
            } else {
                self.persisted(|p| p.put(entry.id, &entry.body, entry.receives));
                entry.visible_at = now + delay;
                state.ready.push_back(entry);
            }
        }
        drop(state);
        self.notify.notify_waiters();
    }

    /// Bodies that failed `max_receives` times.
    pub fn dead_letters(&self) -> Vec<String> {
        self.lock().dead.clone()
    }

    /// Messages waiting or in flight.
    pub fn depth(&self) -> usize {
        let state = self.lock();
        state.ready.len() + state.in_flight.len()
    }

    /// Every message ever accepted by `send`.
    pub fn sent(&self) -> u64 {
        self.lock().sent
    }

    /// A copy of the waiting messages' bodies, oldest first.
    pub fn peek(&self) -> Vec<String> {
        self.lock().ready.iter().map(|e| e.body.clone()).collect()
    }
}

#[async_trait]
impl super::Consumer for MemoryQueue {
    async fn receive(&self, max: usize, wait: Duration) -> Vec<Delivery> {
        MemoryQueue::receive(self, max, wait).await
    }

    fn ack(&self, receipt: u64) {
        MemoryQueue::ack(self, receipt)
    }

    fn nack(&self, receipt: u64, delay: Duration) {
        MemoryQueue::nack(self, receipt, delay)
    }
}

#[async_trait]
impl JobQueue for MemoryQueue {
    async fn send(&self, body: String) -> Result<(), QueueError> {
        let mut state = self.lock();
        if state.refuse_sends {
            return Err(QueueError::unavailable(std::io::Error::other("the in-memory queue was told to refuse sends")));
        }
        let id = state.next_id + 1;
        if let Some(persist) = &self.persist {
            persist.put(id, &body, 0)?;
        }
        state.next_id = id;
        state.sent += 1;
        state.ready.push_back(Entry { id, body, receives: 0, visible_at: Instant::now() });
        drop(state);
        self.notify.notify_waiters();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn delivers_acks_and_redelivers_after_visibility() {
        let q = MemoryQueue::new(Duration::from_secs(30), 3);
        q.send("a".into()).await.unwrap();
        let got = q.receive(10, Duration::from_secs(1)).await;
        assert_eq!((got.len(), got[0].receive_count), (1, 1));
        assert!(q.receive(10, Duration::from_secs(1)).await.is_empty(), "hidden while in flight");
        tokio::time::advance(Duration::from_secs(31)).await;
        let again = q.receive(10, Duration::from_secs(1)).await;
        assert_eq!(again[0].receive_count, 2, "redelivered after the visibility timeout");
        q.ack(again[0].receipt);
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(q.receive(10, Duration::from_secs(1)).await.is_empty());
        assert_eq!(q.depth(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn dead_letters_after_max_receives() {
        let q = MemoryQueue::new(Duration::from_secs(30), 2);
        q.send("poison".into()).await.unwrap();
        for _ in 0..2 {
            let d = q.receive(1, Duration::from_secs(1)).await;
            q.nack(d[0].receipt, Duration::ZERO);
        }
        assert_eq!(q.dead_letters(), vec!["poison".to_owned()]);
        assert_eq!(q.depth(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_receiver_wakes_on_send() {
        let q = MemoryQueue::default();
        let q2 = q.clone();
        let waiter = tokio::spawn(async move { q2.receive(1, Duration::from_secs(20)).await });
        tokio::task::yield_now().await;
        q.send("x".into()).await.unwrap();
        assert_eq!(waiter.await.unwrap()[0].body, "x");
    }

    #[tokio::test(start_paused = true)]
    async fn a_delayed_message_keeps_its_place_while_later_ones_are_delivered() {
        let q = MemoryQueue::new(Duration::from_secs(30), 5);
        for body in ["a", "b", "c"] {
            q.send(body.into()).await.unwrap();
        }
        let a = q.receive(1, Duration::from_secs(1)).await;
        q.nack(a[0].receipt, Duration::from_secs(10));
        assert_eq!(q.receive(1, Duration::from_secs(1)).await[0].body, "b");
        assert_eq!(q.receive(1, Duration::from_secs(1)).await[0].body, "c");
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(q.receive(1, Duration::from_secs(1)).await[0].body, "a", "back once its delay is over");
    }

    #[tokio::test]
    async fn refusing_sends_fails_them() {
        let q = MemoryQueue::default();
        q.refuse_sends(true);
        assert!(q.send("x".into()).await.is_err());
        assert_eq!(q.sent(), 0);
    }
}
