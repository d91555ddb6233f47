//! The jobs queue on disk, for `relay serve --data-dir`: the in-process queue with its
//! messages kept in a table of the data file (see `store::open_database`). A message is
//! written, in its own redb transaction, before `send` returns (so before ingest answers
//! 200), and deleted when the worker acks it. Which messages are in flight is not kept:
//! after a restart every message still on disk is delivered again, and the event store
//! (whose leases from the old process have expired) decides whether it still has work to
//! do, so each job runs to its end exactly once.

use std::sync::Arc;
use std::time::Duration;

use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::memory::{QueuePersist, StoredMessage};
use super::{MemoryQueue, QueueError};

/// Message id → the message as JSON.
const MESSAGES: TableDefinition<u64, &[u8]> = TableDefinition::new("queue");
/// Bodies of messages that failed `max_receives` times, kept for inspection, numbered in their own
/// sequence (message ids are unique only among the messages still queued).
const DEAD_LETTERS: TableDefinition<u64, &[u8]> = TableDefinition::new("dead_letters");

#[derive(Serialize)]
struct Stored<'a> {
    body: &'a str,
    receives: u32,
}

#[derive(Deserialize)]
struct StoredOwned {
    body: String,
    receives: u32,
}

/// Writes the queue's changes to the data file.
pub struct FileQueue {
    db: Arc<Database>,
}

impl FileQueue {
    /// An in-process queue holding the messages kept in `db`, writing every change back.
    pub fn open(db: Arc<Database>, visibility: Duration, max_receives: u32) -> Result<MemoryQueue, QueueError> {
        let messages = load(&db)?;
        Ok(MemoryQueue::with_persistence(visibility, max_receives, messages, Arc::new(FileQueue { db })))
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
            let stored: StoredOwned = serde_json::from_slice(value.value()).map_err(QueueError::Decode)?;
            messages.push((id.value(), stored.body, stored.receives));
        }
        write.open_table(DEAD_LETTERS).map_err(QueueError::unavailable)?;
    }
    write.commit().map_err(QueueError::unavailable)?;
    Ok(messages)
}

impl QueuePersist for FileQueue {
    fn put(&self, id: u64, body: &str, receives: u32) -> Result<(), QueueError> {
        let value = serde_json::to_vec(&Stored { body, receives }).map_err(QueueError::Encode)?;
        let write = self.db.begin_write().map_err(QueueError::unavailable)?;
        write
            .open_table(MESSAGES)
            .map_err(QueueError::unavailable)?
            .insert(id, value.as_slice())
            .map_err(QueueError::unavailable)?;
        write.commit().map_err(QueueError::unavailable)
    }

    fn remove(&self, id: u64, body: &str, dead: bool) -> Result<(), QueueError> {
        let write = self.db.begin_write().map_err(QueueError::unavailable)?;
        write.open_table(MESSAGES).map_err(QueueError::unavailable)?.remove(id).map_err(QueueError::unavailable)?;
        if dead {
            let mut dead_letters = write.open_table(DEAD_LETTERS).map_err(QueueError::unavailable)?;
            let next = dead_letters.last().map_err(QueueError::unavailable)?.map_or(1, |(n, _)| n.value() + 1);
            dead_letters.insert(next, body.as_bytes()).map_err(QueueError::unavailable)?;
        }
        write.commit().map_err(QueueError::unavailable)
    }
}

/// The bodies of the dead letters kept in `db`, oldest first.
pub fn dead_letters(db: &Database) -> Result<Vec<String>, QueueError> {
    use redb::ReadableDatabase;
    let read = db.begin_read().map_err(QueueError::unavailable)?;
    let table = match read.open_table(DEAD_LETTERS) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(QueueError::unavailable(e)),
    };
    let mut bodies = Vec::new();
    for entry in table.iter().map_err(QueueError::unavailable)? {
        let (_, value) = entry.map_err(QueueError::unavailable)?;
        bodies.push(String::from_utf8_lossy(value.value()).into_owned());
    }
    Ok(bodies)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::queue::{Consumer, JobQueue};
    use crate::store::open_database;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            TempDir(std::env::temp_dir().join(format!("relay-file-queue-{}", uuid::Uuid::new_v4())))
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const WAIT: Duration = Duration::from_millis(50);

    fn open(dir: &TempDir) -> MemoryQueue {
        FileQueue::open(open_database(&dir.0).unwrap(), Duration::from_secs(60), 3).unwrap()
    }

    #[tokio::test]
    async fn queued_and_in_flight_messages_survive_a_restart_and_acked_ones_do_not() {
        let dir = TempDir::new();
        {
            let q = open(&dir);
            for body in ["a", "b", "c"] {
                q.send(body.into()).await.unwrap();
            }
            let first = Consumer::receive(&q, 1, WAIT).await;
            assert_eq!(first[0].body, "a");
            q.ack(first[0].receipt);
            let second = Consumer::receive(&q, 1, WAIT).await;
            assert_eq!(second[0].body, "b", "in flight when the process stops");
        }
        let q = open(&dir);
        let bodies: Vec<String> = Consumer::receive(&q, 10, WAIT).await.into_iter().map(|d| d.body).collect();
        assert_eq!(bodies, ["b", "c"], "the acked message is gone; the others are delivered again at once");
    }

    #[tokio::test]
    async fn new_messages_after_a_restart_do_not_overwrite_kept_ones() {
        let dir = TempDir::new();
        {
            let q = open(&dir);
            q.send("a".into()).await.unwrap();
            q.send("b".into()).await.unwrap();
            let a = Consumer::receive(&q, 1, WAIT).await;
            q.ack(a[0].receipt);
        }
        {
            let q = open(&dir);
            q.send("c".into()).await.unwrap();
        }
        let q = open(&dir);
        let mut bodies: Vec<String> = Consumer::receive(&q, 10, WAIT).await.into_iter().map(|d| d.body).collect();
        bodies.sort();
        assert_eq!(bodies, ["b", "c"]);
    }

    #[tokio::test]
    async fn receive_counts_survive_and_dead_letters_are_kept() {
        let dir = TempDir::new();
        {
            let q = open(&dir);
            q.send("poison".into()).await.unwrap();
            for _ in 0..2 {
                let d = Consumer::receive(&q, 1, WAIT).await;
                q.nack(d[0].receipt, Duration::ZERO);
            }
        }
        let q = open(&dir);
        let d = Consumer::receive(&q, 1, WAIT).await;
        assert_eq!(d[0].receive_count, 3, "two receives before the restart, one after");
        q.nack(d[0].receipt, Duration::ZERO);
        assert_eq!(q.depth(), 0);
        drop(q);
        let db = open_database(&dir.0).unwrap();
        assert_eq!(dead_letters(&db).unwrap(), ["poison"]);
        let q = FileQueue::open(db, Duration::from_secs(60), 3).unwrap();
        assert!(Consumer::receive(&q, 1, WAIT).await.is_empty(), "a dead letter is not delivered again");
    }
}
