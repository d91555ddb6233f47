//! Group commit: every change to the data file goes through one writer thread, which puts all
//! the changes waiting for it into one redb write transaction and one fsync.
//!
//! Callers hand changes over without waiting (the store does it under its lock, so the file
//! sees them in the order memory did) and, when an answer depends on them, wait with
//! [`Journal::settled`] for everything handed over so far to be on disk. While one commit is
//! being written, the next batch gathers in the channel; the writer takes it as soon as the
//! commit ends (up to [`MAX_BATCH`] changes). Under load, a thousand concurrent changes cost
//! one fsync instead of a thousand; alone, a change costs what it did before, one commit.
//!
//! Commits apply in order and each is atomic, so the file always holds a prefix of the
//! changes: a change that is on disk brings every earlier one with it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use redb::{Database, ReadableTable, TableDefinition, WriteTransaction};
use shared::store::Item;
use tokio::sync::watch;

/// The store's table: record key → the record as JSON.
pub const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("records");
/// The queue's table: message id → the message as JSON.
pub const MESSAGES: TableDefinition<u64, &[u8]> = TableDefinition::new("queue");
/// Bodies of messages that failed `max_receives` times, kept for inspection, numbered in
/// their own sequence (message ids are unique only among the messages still queued).
pub const DEAD_LETTERS: TableDefinition<u64, &[u8]> = TableDefinition::new("dead_letters");

/// Most changes in one commit: enough that a burst shares an fsync, few enough that one
/// commit never takes long.
pub const MAX_BATCH: usize = 4096;

/// One change to the data file.
#[derive(Debug)]
pub enum Change {
    /// A store record written (`Some`) or deleted. Boxed: a record is ten times the size of
    /// the other changes, and every change in the channel would take its size.
    Record { key: String, item: Option<Box<Item>> },
    /// A queue message accepted or handed back, with its deliveries so far.
    PutMessage { id: u64, body: String, receives: u32 },
    /// A queue message deleted; kept among the dead letters when `dead`.
    RemoveMessage { id: u64, dead_body: Option<String> },
}

#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "the data file could not be written: {0}. Nothing more is accepted; restart `relay serve` once the cause (a full or failing disk?) is fixed"
)]
pub struct JournalFailed(Arc<str>);

/// What is on disk: how many changes, counted from the journal's start; or the failure that
/// stopped the writer.
#[derive(Debug, Clone)]
enum Progress {
    Committed(u64),
    Failed(JournalFailed),
}

/// The handle callers share: hand changes over, wait for them to be on disk.
pub struct Journal {
    /// The sender and the count of changes handed over, under one lock: a change's number is
    /// its place in the channel, which is the order the writer commits in.
    sending: Mutex<(Sender<Change>, u64)>,
    handed_over: AtomicU64,
    /// Shared with the writer thread, which reports each commit.
    progress: Arc<watch::Sender<Progress>>,
    commits: Arc<AtomicU64>,
    writer: Mutex<Option<JoinHandle<()>>>,
    #[cfg(test)]
    db: Arc<Database>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("handed_over", &self.handed_over.load(Ordering::Relaxed)).finish()
    }
}

impl Journal {
    /// Starts the writer thread over `db`.
    pub fn start(db: Arc<Database>) -> Arc<Journal> {
        let (sender, receiver) = channel();
        let progress = Arc::new(watch::Sender::new(Progress::Committed(0)));
        let commits = Arc::new(AtomicU64::new(0));
        let writer = {
            let (db, progress, commits) = (db.clone(), progress.clone(), commits.clone());
            std::thread::Builder::new()
                .name("relay-data-file".into())
                .spawn(move || write_batches(&db, &receiver, &progress, &commits))
                .expect("the data file's writer thread starts")
        };
        Arc::new(Journal {
            sending: Mutex::new((sender, 0)),
            handed_over: AtomicU64::new(0),
            progress,
            commits,
            writer: Mutex::new(Some(writer)),
            #[cfg(test)]
            db,
        })
    }

    /// Commits so far: with [`Journal::changes`], how well changes were grouped.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Changes handed over so far.
    pub fn changes(&self) -> u64 {
        self.handed_over.load(Ordering::Relaxed)
    }

    /// The file, for tests to read what is on disk.
    #[cfg(test)]
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Acts as if a commit had failed with `reason`.
    #[cfg(test)]
    pub fn fail_for_test(&self, reason: &str) {
        self.progress.send_replace(Progress::Failed(JournalFailed(reason.into())));
    }

    /// Hands `change` to the writer without waiting for it. Fails only once the writer has
    /// failed (nothing more reaches the disk then).
    pub fn record(&self, change: Change) -> Result<(), JournalFailed> {
        if let Progress::Failed(e) = &*self.progress.borrow() {
            return Err(e.clone());
        }
        let mut sending = self.sending.lock().unwrap_or_else(|p| p.into_inner());
        let (sender, count) = &mut *sending;
        if sender.send(change).is_err() {
            return Err(JournalFailed("the writer thread has stopped".into()));
        }
        *count += 1;
        self.handed_over.store(*count, Ordering::Release);
        Ok(())
    }

    /// Waits until every change handed over before this call is on disk.
    pub async fn settled(&self) -> Result<(), JournalFailed> {
        let target = self.handed_over.load(Ordering::Acquire);
        let mut progress = self.progress.subscribe();
        let reached = progress
            .wait_for(|p| match p {
                Progress::Committed(n) => *n >= target,
                Progress::Failed(_) => true,
            })
            .await;
        match reached.as_deref() {
            Ok(Progress::Committed(_)) => Ok(()),
            Ok(Progress::Failed(e)) => Err(e.clone()),
            Err(_) => Err(JournalFailed("the writer thread has stopped".into())),
        }
    }

    /// Writes what is still waiting and stops the writer; later changes are refused.
    pub fn close(&self) {
        let (closed, _) = channel();
        drop(std::mem::replace(&mut self.sending.lock().unwrap_or_else(|p| p.into_inner()).0, closed));
        if let Some(writer) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = writer.join();
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.close();
    }
}

/// The writer thread: a batch per commit until every sender is gone or a commit fails.
fn write_batches(db: &Database, changes: &Receiver<Change>, progress: &watch::Sender<Progress>, commits: &AtomicU64) {
    let mut committed = 0u64;
    let mut batch = Vec::new();
    // Blocks for the first change of a batch; the rest are whatever arrived meanwhile.
    while let Ok(first) = changes.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match changes.try_recv() {
                Ok(change) => batch.push(change),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        match commit(db, &batch) {
            Ok(()) => {
                committed += batch.len() as u64;
                commits.fetch_add(1, Ordering::Relaxed);
                progress.send_replace(Progress::Committed(committed));
                batch.clear();
            }
            Err(e) => {
                let failed = JournalFailed(e.to_string().into());
                tracing::error!("{failed}");
                progress.send_replace(Progress::Failed(failed));
                return;
            }
        }
    }
}

type CommitError = Box<dyn std::error::Error + Send + Sync>;

/// One durable redb transaction with every change of `batch`, in order.
fn commit(db: &Database, batch: &[Change]) -> Result<(), CommitError> {
    let write = db.begin_write()?;
    apply(&write, batch)?;
    write.commit()?;
    Ok(())
}

fn apply(write: &WriteTransaction, batch: &[Change]) -> Result<(), CommitError> {
    let mut records = write.open_table(RECORDS)?;
    let mut messages = write.open_table(MESSAGES)?;
    let mut dead_letters = write.open_table(DEAD_LETTERS)?;
    let mut next_dead = None;
    for change in batch {
        match change {
            Change::Record { key, item: Some(item) } => {
                records.insert(key.as_str(), serde_json::to_vec(item)?.as_slice())?;
            }
            Change::Record { key, item: None } => {
                records.remove(key.as_str())?;
            }
            Change::PutMessage { id, body, receives } => {
                let value = serde_json::to_vec(&StoredMessage { body: body.as_str().into(), receives: *receives })?;
                messages.insert(*id, value.as_slice())?;
            }
            Change::RemoveMessage { id, dead_body } => {
                messages.remove(*id)?;
                if let Some(body) = dead_body {
                    let n = match next_dead {
                        Some(n) => n,
                        None => dead_letters.last()?.map_or(1, |(n, _)| n.value() + 1),
                    };
                    dead_letters.insert(n, body.as_bytes())?;
                    next_dead = Some(n + 1);
                }
            }
        }
    }
    Ok(())
}

/// A queue message as the file keeps it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct StoredMessage<'a> {
    #[serde(borrow)]
    pub body: std::borrow::Cow<'a, str>,
    pub receives: u32,
}
