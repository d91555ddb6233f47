//! The Mavera API: typed requests and responses, the port ([`MaveraApi`]), the HTTPS client
//! and the dry-run adapter.

mod client;
mod config;
mod dry_run;
mod endpoint;
mod error;
mod retry;
mod types;

pub use client::{MaveraApi, MaveraClient, MaveraResponse};
pub use config::{DEFAULT_BASE_URL, DEFAULT_MAVE_CONCURRENCY, MaveraConfig, MaveraConfigError};
pub use dry_run::{DryRun, WouldSend};
pub use endpoint::Endpoint;
pub use error::{Duplicate, ErrorClass, MaveraError};
pub use types::*;
