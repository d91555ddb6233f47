//! The Mavera API: typed requests and responses, and the HTTPS client.

mod client;
mod config;
mod endpoint;
mod error;
mod retry;
mod types;

pub use client::{MaveraApi, MaveraClient, MaveraResponse};
pub use config::{DEFAULT_BASE_URL, DEFAULT_MAVE_CONCURRENCY, MaveraConfig, MaveraConfigError};
pub use endpoint::Endpoint;
pub use error::{ErrorClass, MaveraError};
pub use types::*;
