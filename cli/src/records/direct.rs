//! Records read and replayed in this process: the deployed table and queue through the AWS
//! SDK, or a data directory's store and queue opened from its file.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use shared::domain::JobKey;
use shared::queue::{JobQueue, SqsQueue};
use shared::store::{
    DynamoStore, JobRecord, JobStatus, JobStore, ListPage, ListQuery, ListStore, ReplayStore, Requeue,
};

use super::{Records, Remote, running};
use crate::data_dir::DataDirError;
use crate::embedded::Embedded;
use crate::error::RelayError;

/// What a store needs to be listed, read and replayed.
pub trait OpsStore: ListStore + ReplayStore + JobStore {}
impl<T: ListStore + ReplayStore + JobStore> OpsStore for T {}

pub struct Direct {
    store: Arc<dyn OpsStore>,
    /// Where a replay sends the job; `None` when it is not known (`--table` alone).
    queue: Option<Arc<dyn JobQueue>>,
    label: String,
}

impl Direct {
    pub fn new(store: Arc<dyn OpsStore>, queue: Option<Arc<dyn JobQueue>>, label: String) -> Self {
        Direct { store, queue, label }
    }

    /// The deployed table (and jobs queue, if known), with the user's AWS settings.
    pub async fn deployed(table: &str, queue_url: Option<&str>, label: String) -> Self {
        let sdk = crate::aws::sdk_config().await;
        let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table);
        let queue =
            queue_url.map(|url| Arc::new(SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), url)) as Arc<dyn JobQueue>);
        Direct::new(Arc::new(store), queue, label)
    }
}

/// A data directory: its file, or the `relay serve` holding it.
pub fn open_data_dir(dir: &Path) -> Result<Box<dyn Records>, RelayError> {
    let visibility = crate::serve::visibility(crate::serve::DEFAULT_JOB_TIME);
    match Embedded::in_dir(dir, visibility, crate::serve::MAX_RECEIVES) {
        Ok(embedded) => {
            // The store and queue keep the data file's journal; it writes what is left when
            // the last of them is dropped.
            let queue = embedded.settled_queue();
            Ok(Box::new(Direct::new(embedded.store(), Some(queue), format!("data directory {}", dir.display()))))
        }
        Err(DataDirError::InUse(path)) => match running::read(dir)? {
            Some(server) => Ok(Box::new(Remote::new(server)?)),
            None => Err(RelayError::DataDirBusy { path }),
        },
        Err(e) => Err(e.into()),
    }
}

#[async_trait]
impl Records for Direct {
    fn describe(&self) -> String {
        self.label.clone()
    }

    async fn list(&self, query: &ListQuery) -> Result<ListPage, RelayError> {
        Ok(self.store.list(query).await?)
    }

    async fn get(&self, key: &JobKey) -> Result<Option<JobRecord>, RelayError> {
        Ok(self.store.get(key).await?)
    }

    async fn replay(&self, key: &JobKey, seen: JobStatus) -> Result<Requeue, RelayError> {
        let queue = self.queue.as_ref().ok_or(RelayError::NoJobsQueue)?;
        replay(self.store.as_ref(), queue.as_ref(), key, seen).await
    }
}

/// Requeues the record, then sends its message: the one replay, whichever process runs it.
pub async fn replay(
    store: &dyn OpsStore,
    queue: &dyn JobQueue,
    key: &JobKey,
    seen: JobStatus,
) -> Result<Requeue, RelayError> {
    let answer = store.requeue(key, seen, SystemTime::now()).await?;
    if let Requeue::Requeued { message } = &answer {
        // The record already says RETRYING; if the send fails, a second replay (RETRYING is
        // replayable) sends it.
        queue.send(message.clone()).await.map_err(|source| RelayError::ReplaySend { key: key.to_string(), source })?;
    }
    Ok(answer)
}
