//! Black-box integration tests. One binary (modules below) keeps link time down.
mod mavera_client;
