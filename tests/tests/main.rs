//! Black-box integration tests. One binary (modules below) keeps link time down.

mod cio_client;
