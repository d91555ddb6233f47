//! What can stop a `relay` command, each saying what happened and what to do.

use std::net::SocketAddr;

use shared::config::ConfigError;
use shared::customerio::CioError;
use shared::deliver::ClientError;
use shared::mavera::MaveraConfigError;
use shared::queue::QueueError;
use shared::store::StoreError;
use shared::triggers::TriggersError;
use shared::worker::{BuildError, WorkerSetupError};

use crate::data_dir::DataDirError;

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Triggers(#[from] TriggersError),
    #[error(transparent)]
    Worker(#[from] WorkerSetupError),
    #[error("the Mavera client could not be built: {0}")]
    Mavera(#[from] MaveraConfigError),
    #[error("the Customer.io client could not be built: {0}")]
    CustomerIo(#[from] CioError),
    #[error(transparent)]
    Destination(#[from] ClientError),
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error("the event store: {0}")]
    Store(#[from] StoreError),
    #[error("reading the data directory's queue: {0}")]
    Queue(#[from] QueueError),
    #[error("cannot listen on {addr}: {source} (is another `relay serve` running? pick another port with --addr)")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("the HTTP server stopped: {0}")]
    Serve(#[source] std::io::Error),
    #[error("cannot read {path}: {source}")]
    ReadFile { path: String, source: std::io::Error },
    #[error("{path} is not JSON: {source}")]
    NotJson { path: String, source: serde_json::Error },
    #[error("no signing secret for {sender}: pass --secret, or set {var} to the value the server uses")]
    NoSecret { sender: &'static str, var: &'static str },
    #[error("{0}")]
    BadUrl(String),
    #[error("could not reach {url}: {source}{hint}")]
    Unreachable { url: String, source: reqwest::Error, hint: &'static str },
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
    #[error("SQS {operation} on {queue_url} failed: {message}")]
    Sqs { operation: &'static str, queue_url: String, message: String },
    #[error(
        "say where the job records are: --data-dir DIR (a relay serve data directory), --table NAME (the deployed events table) or --stack NAME (the deployed stack)"
    )]
    NoRecords,
    #[error(
        "a replay sends to the jobs queue: with --table, also pass --queue-url (the stack output JobsQueueUrl), or use --stack"
    )]
    NoJobsQueue,
    #[error(
        "say which queues: --stack NAME, or --queue-url URL and --dlq-url URL (the stack outputs JobsQueueUrl and JobsDlqUrl)"
    )]
    NoQueues,
    #[error(
        "{key} is RETRYING now, but its message could not be sent to the jobs queue ({source}); run the same relay replay again"
    )]
    ReplaySend { key: String, source: QueueError },
    #[error(
        "{path} is in use by a process that did not say where it listens (a relay serve from before this version?): stop it, or use its console page"
    )]
    DataDirBusy { path: String },
    #[error("cannot write {path}: {source}")]
    WriteFile { path: String, source: std::io::Error },
    #[error("{url} refused the request ({status}): {body}")]
    ServerRefused { url: String, status: u16, body: String },
    #[error("cannot read the outputs of stack {stack}: {problem}")]
    Stack { stack: String, problem: String },
    #[error("no job {key} in {place} (keys are SOURCE#EVENT_ID#RULE, as relay events lists them; records live 8 days)")]
    NoSuchJob { key: String, place: String },
    #[error("name the jobs to replay (KEY…), or select them: --status failed --since 1d (and --rule, --user)")]
    NothingToReplay,
    #[error("name jobs by key or select them with --status/--rule/--user, not both")]
    KeysAndFilters,
    #[error("cannot encode JSON output: {0}")]
    Encode(#[source] serde_json::Error),
}

/// The worker's build errors, each as `relay` has always said it.
impl From<BuildError> for RelayError {
    fn from(error: BuildError) -> Self {
        match error {
            BuildError::Mavera(e) => RelayError::Mavera(e),
            BuildError::CustomerIo(e) => RelayError::CustomerIo(e),
            BuildError::Setup(e) => RelayError::Worker(e),
            BuildError::Destination(e) => RelayError::Destination(e),
        }
    }
}
