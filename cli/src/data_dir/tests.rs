use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};
use serde_json::json;
use shared::domain::{JobKey, RuleName};
use shared::queue::{Consumer, JobQueue};
use shared::store::{
    Claim, ClaimStore, Item, JobStatus, JobStore, Lease, NewJob, Outcome, RECORD_TTL, Start, StartJob, StoreError,
    contract,
};

use super::journal::{DEAD_LETTERS, RECORDS};
use super::*;

/// A fresh directory under the system's temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        TempDir(std::env::temp_dir().join(format!("relay-data-dir-{}", uuid::Uuid::new_v4())))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const WAIT: Duration = Duration::from_millis(50);

fn open(dir: &Path) -> DataDir {
    DataDir::open(dir, Duration::from_secs(60), 3).unwrap()
}

/// The records in the file, read with redb directly once the data directory is closed.
fn records_on_disk(dir: &Path) -> BTreeMap<String, Item> {
    let db = open_database(dir).unwrap();
    let read = db.begin_read().unwrap();
    let table = match read.open_table(RECORDS) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return BTreeMap::new(),
        Err(e) => panic!("{e}"),
    };
    table
        .iter()
        .unwrap()
        .map(|entry| {
            let (key, value) = entry.unwrap();
            (key.value().to_owned(), serde_json::from_slice(value.value()).unwrap())
        })
        .collect()
}

fn dead_letters_on_disk(dir: &Path) -> Vec<String> {
    let db = open_database(dir).unwrap();
    let read = db.begin_read().unwrap();
    let table = read.open_table(DEAD_LETTERS).unwrap();
    table.iter().unwrap().map(|entry| String::from_utf8(entry.unwrap().1.value().to_vec()).unwrap()).collect()
}

fn new_job<'a>(key: &'a JobKey, rule: &'a RuleName, token: &'a str, now: SystemTime) -> NewJob<'a> {
    NewJob { key, rule, token, now }
}

#[tokio::test]
async fn the_file_store_satisfies_the_store_contract() {
    let dir = TempDir::new();
    let counter = AtomicUsize::new(0);
    contract::run_all(|| {
        // A separate file per case: each case wants a fresh store.
        let n = counter.fetch_add(1, Ordering::Relaxed);
        let data = open(&dir.0.join(n.to_string()));
        async move { data.store }
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
        let store = open(&dir.0).store;
        store.claim(&new_job(&key, &rule, "t", now)).await.unwrap();
        let lease = Lease { owner: "w1".into(), until: now + Duration::from_secs(300) };
        assert_eq!(
            store.start(&StartJob::new(&key, &rule, &lease, "{}", now)).await.unwrap(),
            Start::Started { attempt: 1 }
        );
        store.claim(&new_job(&done, &rule, "t", now)).await.unwrap();
        store.start(&StartJob::new(&done, &rule, &lease, "{}", now)).await.unwrap();
        store.finish(&done, "w1", &Outcome::Done { result: json!({"ok": 1}) }, &[], now).await.unwrap();
    }
    let store = open(&dir.0).store;
    assert_eq!(
        store.claim(&new_job(&done, &rule, "t2", now)).await.unwrap(),
        Claim::Duplicate(JobStatus::Done),
        "a finished job stays finished across a restart"
    );
    assert_eq!(store.get(&done).await.unwrap().unwrap().result, Some(json!({"ok": 1})));
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
    let key = JobKey::from_stored("segment#old#r");
    let rule = RuleName::parse("r").unwrap();
    let long_ago = SystemTime::now() - RECORD_TTL - Duration::from_secs(60);
    {
        let data = open(&dir.0);
        data.store.claim(&new_job(&key, &rule, "t", long_ago)).await.unwrap();
    }
    assert_eq!(records_on_disk(&dir.0).len(), 1);
    {
        let store = open(&dir.0).store;
        assert!(store.get(&key).await.unwrap().is_none());
    }
    assert!(records_on_disk(&dir.0).is_empty(), "deleted from the file too");
}

#[tokio::test]
async fn the_sweep_deletes_expired_records_from_the_file_too() {
    let dir = TempDir::new();
    let rule = RuleName::parse("r").unwrap();
    let (old, young) = (JobKey::from_stored("segment#old#r"), JobKey::from_stored("segment#young#r"));
    let t0 = SystemTime::now();
    {
        let store = open(&dir.0).store;
        store.claim(&new_job(&old, &rule, "t", t0)).await.unwrap();
        store.claim(&new_job(&young, &rule, "t", t0 + Duration::from_secs(3600))).await.unwrap();
        assert_eq!(store.sweep_expired(t0 + RECORD_TTL + Duration::from_secs(1)).unwrap(), 1);
        assert_eq!(store.len(), 1);
    }
    let on_disk = records_on_disk(&dir.0);
    assert_eq!(on_disk.keys().collect::<Vec<_>>(), [young.as_str()], "the swept record is gone from the file");
}

#[test]
fn a_second_process_is_refused_with_a_clear_message() {
    let dir = TempDir::new();
    let _first = open_database(&dir.0).unwrap();
    let err = open_database(&dir.0).unwrap_err();
    assert!(err.to_string().contains("in use by another process"), "{err}");
}

#[tokio::test]
async fn concurrent_changes_share_commits_and_are_on_disk_once_settled() {
    let dir = TempDir::new();
    let rule = RuleName::parse("r").unwrap();
    let now = SystemTime::now();
    let keys: Vec<JobKey> = (0..1000).map(|i| JobKey::from_stored(format!("segment#m{i}#r"))).collect();
    {
        let data = open(&dir.0);
        let before = data.journal.commits();
        // A burst: every claim is handed over while earlier ones are still being written.
        for key in &keys {
            data.store.claim(&new_job(key, &rule, "t", now)).await.unwrap();
            data.queue.send(format!("job {key}")).await.unwrap();
        }
        data.journal.settled().await.unwrap();
        let commits = data.journal.commits() - before;
        assert!(commits <= 20, "2,000 changes handed over at once took {commits} commits");

        // Settled means readable from the file by anyone, without closing it.
        let read = data.journal.database().begin_read().unwrap();
        assert_eq!(read.open_table(RECORDS).unwrap().len().unwrap(), 1000);
        assert_eq!(read.open_table(journal::MESSAGES).unwrap().len().unwrap(), 1000);
    }
    assert_eq!(records_on_disk(&dir.0).len(), 1000);
}

#[tokio::test]
async fn the_worker_calls_return_only_once_their_change_is_on_disk() {
    let dir = TempDir::new();
    let data = open(&dir.0);
    let rule = RuleName::parse("r").unwrap();
    let key = JobKey::from_stored("segment#m#r");
    let now = SystemTime::now();
    data.store.claim(&new_job(&key, &rule, "t", now)).await.unwrap();
    let lease = Lease { owner: "w".into(), until: now + Duration::from_secs(60) };
    data.store.start(&StartJob::new(&key, &rule, &lease, "{}", now)).await.unwrap();
    // No settled() here: start itself waited.
    let read = data.journal.database().begin_read().unwrap();
    let stored = read.open_table(RECORDS).unwrap().get(key.as_str()).unwrap().map(|v| v.value().to_vec());
    let item: Item = serde_json::from_slice(&stored.expect("the job is in the file")).unwrap();
    assert!(matches!(item, Item::Job(ref j) if j.status == JobStatus::Running), "{item:?}");
}

#[tokio::test]
async fn queued_and_in_flight_messages_survive_a_restart_and_acked_ones_do_not() {
    let dir = TempDir::new();
    {
        let q = open(&dir.0).queue;
        for body in ["a", "b", "c"] {
            q.send(body.into()).await.unwrap();
        }
        let first = q.receive(1, WAIT).await;
        assert_eq!(first[0].body, "a");
        q.ack(first[0].receipt);
        let second = q.receive(1, WAIT).await;
        assert_eq!(second[0].body, "b", "in flight when the process stops");
    }
    let q = open(&dir.0).queue;
    let bodies: Vec<String> = q.receive(10, WAIT).await.into_iter().map(|d| d.body).collect();
    assert_eq!(bodies, ["b", "c"], "the acked message is gone; the others are delivered again at once");
}

#[tokio::test]
async fn new_messages_after_a_restart_do_not_overwrite_kept_ones() {
    let dir = TempDir::new();
    {
        let q = open(&dir.0).queue;
        q.send("a".into()).await.unwrap();
        q.send("b".into()).await.unwrap();
        let a = q.receive(1, WAIT).await;
        q.ack(a[0].receipt);
    }
    {
        let q = open(&dir.0).queue;
        q.send("c".into()).await.unwrap();
    }
    let q = open(&dir.0).queue;
    let mut bodies: Vec<String> = q.receive(10, WAIT).await.into_iter().map(|d| d.body).collect();
    bodies.sort();
    assert_eq!(bodies, ["b", "c"]);
}

#[tokio::test]
async fn receive_counts_survive_and_dead_letters_are_kept() {
    let dir = TempDir::new();
    {
        let q = open(&dir.0).queue;
        q.send("poison".into()).await.unwrap();
        for _ in 0..2 {
            let d = q.receive(1, WAIT).await;
            q.nack(d[0].receipt, Duration::ZERO);
        }
    }
    {
        let q = open(&dir.0).queue;
        let d = q.receive(1, WAIT).await;
        assert_eq!(d[0].receive_count, 3, "two receives before the restart, one after");
        q.nack(d[0].receipt, Duration::ZERO);
        assert_eq!(q.depth(), 0);
    }
    assert_eq!(dead_letters_on_disk(&dir.0), ["poison"]);
    let q = open(&dir.0).queue;
    assert!(q.receive(1, WAIT).await.is_empty(), "a dead letter is not delivered again");
}

#[tokio::test]
async fn a_failed_write_refuses_everything_after_it_with_a_clear_error() {
    let dir = TempDir::new();
    let data = open(&dir.0);
    data.journal.fail_for_test("disk full");
    let rule = RuleName::parse("r").unwrap();
    let key = JobKey::from_stored("segment#m#r");
    let err = data.store.claim(&new_job(&key, &rule, "t", SystemTime::now())).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains("disk full") && err.to_string().contains("restart"), "{err}");
    assert!(data.queue.send("x".into()).await.is_err());
    assert!(data.journal.settled().await.is_err());
}
