//! What can stop a `relay` command, each saying what happened and what to do.

use std::net::SocketAddr;

use shared::config::ConfigError;
use shared::customerio::CioError;
use shared::deliver::ClientError;
use shared::mavera::MaveraConfigError;
use shared::queue::QueueError;
use shared::store::{DataDirError, StoreError};
use shared::triggers::TriggersError;
use shared::worker::{BuildError, WorkerSetupError};

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
    #[error("reading the data directory's event store: {0}")]
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
