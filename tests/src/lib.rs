//! Test support for mavera-relay's black-box tests: the app served on a free port, local
//! stand-ins for the SaaS APIs it calls, and helpers that reach the local AWS endpoint
//! (moto, started by `scripts/test`) through the real AWS SDK.

pub mod app;
pub mod aws;
pub mod cio_standin;
pub mod cio_track_standin;
pub mod env;
pub mod fault_proxy;
pub mod faults;
pub mod lambda_watch;
pub mod logs;
pub mod mavera_standin;
pub mod payloads;
pub mod reply;
pub mod segment_standin;
pub mod slack_standin;
pub mod sqs_driver;
pub mod standin;
pub mod webhook_receiver;
