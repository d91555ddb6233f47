//! `relay serve --data-dir`: the event store and the jobs queue kept in one redb file, so a
//! restart loses nothing. Only `relay` has this; the Lambda functions use DynamoDB and SQS
//! (and do not carry redb).
//!
//! Both keep their working state in memory (the state machine is the in-memory store's) and
//! write every change through the [`journal`]: one writer thread that commits whatever changes
//! are waiting in one durable redb transaction. redb commits are atomic and durable
//! (copy-on-write pages, a checksummed commit slot, fsync), so a crash loses at most the batch
//! being committed, whose callers have not been answered yet, and never leaves half of one.

mod journal;
mod queue;
mod store;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use redb::{Database, DatabaseError};
use shared::queue::QueueError;
use shared::store::StoreError;

pub use journal::Journal;
pub use queue::FileQueue;
pub use store::FileStore;

/// The redb file in a data directory.
pub const DATA_FILE: &str = "relay.redb";

/// redb's page cache. The store and queue are read from the file only at start (memory holds
/// the working state), so a small cache does; redb's default (1 GiB) would grow towards it.
const CACHE_BYTES: usize = 16 * 1024 * 1024;

/// The event store and queue of one data directory, sharing one file and one journal.
#[derive(Debug)]
pub struct DataDir {
    pub store: FileStore,
    pub queue: FileQueue,
    pub journal: Arc<Journal>,
}

impl DataDir {
    /// Opens (or creates) the data file in `dir`, creating the directory if needed, and reads
    /// the store's live records and the queue's messages back.
    pub fn open(dir: &Path, visibility: Duration, max_receives: u32) -> Result<DataDir, DataDirError> {
        let db = open_database(dir)?;
        let journal = Journal::start(db.clone());
        let store = FileStore::open(&db, journal.clone(), SystemTime::now()).map_err(DataDirError::Store)?;
        let queue = FileQueue::open(&db, journal.clone(), visibility, max_receives).map_err(DataDirError::Queue)?;
        Ok(DataDir { store, queue, journal })
    }
}

fn open_database(dir: &Path) -> Result<Arc<Database>, DataDirError> {
    std::fs::create_dir_all(dir).map_err(|e| DataDirError::Create(dir.display().to_string(), e))?;
    let path = dir.join(DATA_FILE);
    match Database::builder().set_cache_size(CACHE_BYTES).create(&path) {
        Ok(db) => Ok(Arc::new(db)),
        Err(DatabaseError::DatabaseAlreadyOpen) => Err(DataDirError::InUse(path.display().to_string())),
        Err(e) => Err(DataDirError::Open(path.display().to_string(), e)),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("cannot create the data directory {0}: {1}")]
    Create(String, #[source] std::io::Error),
    #[error("{0} is in use by another process (is another `relay serve` running with this --data-dir?)")]
    InUse(String),
    #[error("cannot open {0}: {1}")]
    Open(String, #[source] DatabaseError),
    #[error("reading the data directory's event store: {0}")]
    Store(#[source] StoreError),
    #[error("reading the data directory's queue: {0}")]
    Queue(#[source] QueueError),
}

#[cfg(test)]
mod tests;
