//! The event store on disk, for `relay serve --data-dir`: the memory store's records kept
//! in a redb file. Every change the memory store makes is written through in its own redb
//! transaction before the store call returns, so an answer that depended on it (a 200
//! `queued`, a `DONE`) is on disk first. redb commits are atomic and durable (copy-on-write
//! pages, a checksummed commit slot, fsync), so a crash loses at most the change in progress
//! and never leaves half of one.
//!
//! One process owns the file at a time (redb locks it). So when a store is opened, every
//! lease in it belongs to a process that has ended: the leases are expired on load, and the
//! queue's redelivered messages run at once instead of waiting for them.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use redb::{Database, DatabaseError, ReadableTable, TableDefinition};

use super::memory::{Item, Persist};
use super::{JobStatus, MemoryStore, StoreError, epoch_secs};

/// The store's table: record key → the record as JSON.
const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("records");

/// The redb file in a data directory; the queue keeps its own table in the same file.
pub const DATA_FILE: &str = "relay.redb";

/// Opens (or creates) the data file in `dir`, creating the directory if needed.
pub fn open_database(dir: &Path) -> Result<Arc<Database>, DataDirError> {
    std::fs::create_dir_all(dir).map_err(|e| DataDirError::Create(dir.display().to_string(), e))?;
    let path = dir.join(DATA_FILE);
    match Database::create(&path) {
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
}

/// Writes the memory store's changes to the data file.
pub struct FileStore {
    db: Arc<Database>,
}

impl FileStore {
    /// A memory store holding the file's live records, writing every change back to it.
    /// Records past their TTL are dropped, and leases held by the previous process expire.
    pub fn open(db: Arc<Database>) -> Result<MemoryStore, StoreError> {
        let items = load(&db, SystemTime::now())?;
        Ok(MemoryStore::with_persistence(items, Arc::new(FileStore { db })))
    }
}

fn load(db: &Database, now: SystemTime) -> Result<HashMap<String, Item>, StoreError> {
    // Create the table on first use, and delete what has expired since the last run.
    let now_secs = epoch_secs(now);
    let write = db.begin_write().map_err(StoreError::unavailable)?;
    let mut items = HashMap::new();
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

impl Persist for FileStore {
    fn write(&self, key: &str, item: Option<&Item>) -> Result<(), StoreError> {
        let write = self.db.begin_write().map_err(StoreError::unavailable)?;
        {
            let mut table = write.open_table(RECORDS).map_err(StoreError::unavailable)?;
            match item {
                Some(item) => {
                    let bytes = serde_json::to_vec(item).map_err(StoreError::unavailable)?;
                    table.insert(key, bytes.as_slice()).map_err(StoreError::unavailable)?;
                }
                None => {
                    table.remove(key).map_err(StoreError::unavailable)?;
                }
            }
        }
        write.commit().map_err(StoreError::unavailable)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::domain::{JobKey, RuleName};
    use crate::store::{Claim, ClaimStore, JobStore, Lease, NewJob, Outcome, Start, StartJob, contract};

    use redb::ReadableDatabase;

    /// The file's records as stored.
    fn read_records(db: &Database) -> Result<HashMap<String, Item>, StoreError> {
        let read = db.begin_read().map_err(StoreError::unavailable)?;
        let table = match read.open_table(RECORDS) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(HashMap::new()),
            Err(e) => return Err(StoreError::unavailable(e)),
        };
        let mut items = HashMap::new();
        for entry in table.iter().map_err(StoreError::unavailable)? {
            let (key, value) = entry.map_err(StoreError::unavailable)?;
            let key = key.value().to_owned();
            let item = serde_json::from_slice(value.value())
                .map_err(|e| StoreError::Corrupt { key: key.clone(), problem: e.to_string() })?;
            items.insert(key, item);
        }
        Ok(items)
    }

    /// A fresh directory under the system's temp dir, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            let dir = std::env::temp_dir().join(format!("relay-file-store-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[tokio::test]
    async fn satisfies_the_store_contract() {
        let dir = TempDir::new();
        let counter = std::sync::atomic::AtomicUsize::new(0);
        contract::run_all(|| {
            // A separate file per case: each case wants a fresh store.
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let db = open_database(&dir.0.join(n.to_string())).unwrap();
            async move { FileStore::open(db).unwrap() }
        })
        .await;
    }

    #[tokio::test]
    async fn records_survive_reopening_and_leases_of_the_old_process_expire() {
        let dir = TempDir::new();
        let key = JobKey::from_stored("segment#m1#r");
        let done = JobKey::from_stored("segment#m2#r");
        let rule = RuleName::parse("r").unwrap();
        let now = SystemTime::now();
        {
            let store = FileStore::open(open_database(&dir.0).unwrap()).unwrap();
            store.claim(&NewJob { key: &key, rule: &rule, token: "t", now }).await.unwrap();
            let lease = Lease { owner: "w1".into(), until: now + Duration::from_secs(300) };
            assert_eq!(
                store.start(&StartJob::new(&key, &rule, &lease, "{}", now)).await.unwrap(),
                Start::Started { attempt: 1 }
            );
            store.claim(&NewJob { key: &done, rule: &rule, token: "t", now }).await.unwrap();
            store.start(&StartJob::new(&done, &rule, &lease, "{}", now)).await.unwrap();
            store.finish(&done, "w1", &Outcome::Done { result: serde_json::json!({"ok": 1}) }, &[], now).await.unwrap();
        }
        let store = FileStore::open(open_database(&dir.0).unwrap()).unwrap();
        assert_eq!(
            store.claim(&NewJob { key: &done, rule: &rule, token: "t2", now }).await.unwrap(),
            Claim::Duplicate(JobStatus::Done),
            "a finished job stays finished across a restart"
        );
        assert_eq!(store.get(&done).await.unwrap().unwrap().result, Some(serde_json::json!({"ok": 1})));
        let lease = Lease { owner: "w2".into(), until: now + Duration::from_secs(300) };
        assert_eq!(
            store.start(&StartJob::new(&key, &rule, &lease, "{}", now)).await.unwrap(),
            Start::Started { attempt: 2 },
            "the dead process's lease no longer blocks the job"
        );
    }

    #[tokio::test]
    async fn expired_records_are_dropped_on_open() {
        let dir = TempDir::new();
        let db = open_database(&dir.0).unwrap();
        let key = JobKey::from_stored("segment#old#r");
        let rule = RuleName::parse("r").unwrap();
        let long_ago = SystemTime::now() - crate::store::RECORD_TTL - Duration::from_secs(60);
        {
            let store = FileStore::open(db.clone()).unwrap();
            store.claim(&NewJob { key: &key, rule: &rule, token: "t", now: long_ago }).await.unwrap();
        }
        assert_eq!(read_records(&db).unwrap().len(), 1);
        let store = FileStore::open(db.clone()).unwrap();
        assert!(store.get(&key).await.unwrap().is_none());
        assert!(read_records(&db).unwrap().is_empty(), "deleted from the file too");
    }

    #[test]
    fn a_second_process_is_refused_with_a_clear_message() {
        let dir = TempDir::new();
        let _first = open_database(&dir.0).unwrap();
        let err = open_database(&dir.0).unwrap_err();
        assert!(err.to_string().contains("in use by another process"), "{err}");
    }
}
