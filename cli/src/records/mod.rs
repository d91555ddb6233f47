//! Where the job records are, for `relay events`, `show`, `replay` and `console`: the
//! deployed table (`--table`, or `--stack` reading the stack's outputs), or a `relay serve`
//! data directory (`--data-dir`), opened directly, or through the `relay serve` that holds
//! it while it runs (its file is locked then; the running server says where it listens in
//! the directory). Every command reads and replays through one [`Records`].

pub mod direct;
mod remote;
pub mod running;
pub mod stack;

use std::path::PathBuf;

use async_trait::async_trait;
use shared::domain::JobKey;
use shared::store::{JobRecord, JobStatus, ListPage, ListQuery, Requeue};

pub use direct::Direct;
pub use remote::Remote;

use crate::error::RelayError;

/// The records of one deployment or data directory.
#[async_trait]
pub trait Records: Send + Sync {
    /// Where they are, for messages: `table events-prod`, `relay serve at http://…`.
    fn describe(&self) -> String;
    async fn list(&self, query: &ListQuery) -> Result<ListPage, RelayError>;
    async fn get(&self, key: &JobKey) -> Result<Option<JobRecord>, RelayError>;
    /// Makes the job a new attempt (if it is still `seen`) and puts its message on the jobs
    /// queue.
    async fn replay(&self, key: &JobKey, seen: JobStatus) -> Result<Requeue, RelayError>;
}

/// The command-line options that say where the records are.
#[derive(Debug, Clone, clap::Args)]
pub struct Where {
    /// A `relay serve --data-dir` directory (read directly, or through the `relay serve`
    /// that is running with it)
    #[arg(long, value_name = "DIR", conflicts_with_all = ["table", "stack"])]
    pub data_dir: Option<PathBuf>,
    /// The deployed events table (the stack output EventsTableName); AWS credentials and
    /// region come from the usual AWS settings (AWS_PROFILE, AWS_REGION, ~/.aws)
    #[arg(long, value_name = "NAME", conflicts_with = "stack")]
    pub table: Option<String>,
    /// The deployed stack: its outputs name the table and the queues
    #[arg(long, value_name = "NAME")]
    pub stack: Option<String>,
    /// The jobs queue a replay sends to (with --table; --stack finds it)
    #[arg(long, value_name = "URL", env = "JOBS_QUEUE_URL")]
    pub queue_url: Option<String>,
}

impl Where {
    pub async fn open(&self) -> Result<Box<dyn Records>, RelayError> {
        if let Some(dir) = &self.data_dir {
            return direct::open_data_dir(dir);
        }
        if let Some(name) = &self.stack {
            let outputs = stack::outputs(name).await?;
            return Ok(Box::new(
                Direct::deployed(&outputs.table, Some(&outputs.queue_url), format!("stack {name}")).await,
            ));
        }
        if let Some(table) = &self.table {
            return Ok(Box::new(Direct::deployed(table, self.queue_url.as_deref(), format!("table {table}")).await));
        }
        Err(RelayError::NoRecords)
    }
}
