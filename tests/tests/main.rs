//! Black-box integration tests. One binary (modules below) keeps link time down.
//! AWS tests need moto: run them with `./scripts/test`.

mod adversarial;
mod cio_client;
mod cio_sync;
mod deliver;
mod destination_standins;
mod iam;
mod ingest;
mod ingest_aws;
mod ingest_faults;
mod lambda_watch;
mod layering;
mod mavera_client;
mod secrets_aws;
mod template;
mod worker;
mod worker_crash;
