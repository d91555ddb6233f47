//! The Mavera API: typed requests and responses, and the HTTPS client.

mod types;

pub use types::*;
