//! The jobs queue on disk: the in-process queue, its messages read from the data file at start
//! and every change journaled back. `send` hands the message to the journal and returns; the
//! webhook's answer waits for the disk (see `serve`'s durable answers), and the worker's
//! `start` waits for it before a job runs. A message is deleted from the file when the worker
//! acks it. Which messages are in flight is not kept: after a restart every message still on
//! disk is delivered again, and the event store (whose leases from the old process have
//! expired) decides whether it still has work to do, so each job runs to its end once.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redb::{Database, ReadableTable};
use shared::queue::{Consumer, Delivery, JobQueue, MemoryQueue, QueueError, QueuePersist, StoredMessage};

use super::journal::{self, Change, DEAD_LETTERS, Journal, MESSAGES};

/// The jobs queue of a data directory.
#[derive(Debug, Clone)]
pub struct FileQueue {
    messages: MemoryQueue,
}

/// Hands the in-process queue's changes to the journal.
struct Journaled(Arc<Journal>);

impl QueuePersist for Journaled {
    fn put(&self, id: u64, body: &str, receives: u32) -> Result<(), QueueError> {
        self.0.record(Change::PutMessage { id, body: body.to_owned(), receives }).map_err(QueueError::unavailable)
    }

    fn remove(&self, id: u64, body: &str, dead: bool) -> Result<(), QueueError> {
        let dead_body = dead.then(|| body.to_owned());
        self.0.record(Change::RemoveMessage { id, dead_body }).map_err(QueueError::unavailable)
    }
}

impl FileQueue {
    /// The queue kept in `db`, journaling through `journal`; every kept message is visible.
    pub(super) fn open(
        db: &Database,
        journal: Arc<Journal>,
        visibility: Duration,
        max_receives: u32,
    ) -> Result<FileQueue, QueueError> {
        let kept = load(db)?;
        Ok(FileQueue {
            messages: MemoryQueue::with_persistence(visibility, max_receives, kept, Arc::new(Journaled(journal))),
        })
    }

    /// Messages waiting or in flight.
    pub fn depth(&self) -> usize {
        self.messages.depth()
    }
}

fn load(db: &Database) -> Result<Vec<StoredMessage>, QueueError> {
    // A write transaction, so the tables exist from the first run on.
    let write = db.begin_write().map_err(QueueError::unavailable)?;
    let mut messages = Vec::new();
    {
        let table = write.open_table(MESSAGES).map_err(QueueError::unavailable)?;
        for entry in table.iter().map_err(QueueError::unavailable)? {
            let (id, value) = entry.map_err(QueueError::unavailable)?;
            let stored: journal::StoredMessage = serde_json::from_slice(value.value()).map_err(QueueError::Decode)?;
            messages.push((id.value(), stored.body.into_owned(), stored.receives));
        }
        write.open_table(DEAD_LETTERS).map_err(QueueError::unavailable)?;
    }
    write.commit().map_err(QueueError::unavailable)?;
    Ok(messages)
}

#[async_trait]
impl JobQueue for FileQueue {
    async fn send(&self, body: String) -> Result<(), QueueError> {
        self.messages.send(body).await
    }
}

#[async_trait]
impl Consumer for FileQueue {
    async fn receive(&self, max: usize, wait: Duration) -> Vec<Delivery> {
        self.messages.receive(max, wait).await
    }

    fn ack(&self, receipt: u64) {
        self.messages.ack(receipt)
    }

    fn nack(&self, receipt: u64, delay: Duration) {
        self.messages.nack(receipt, delay)
    }
}
