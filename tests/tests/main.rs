//! Black-box integration tests. One binary (modules below) keeps link time down.
//! AWS tests need moto: run them with `./scripts/test`.

mod ingest;
mod ingest_aws;
mod mavera_client;
mod cio_client;
mod worker;
mod cio_sync;
mod template;
mod secrets_aws;
