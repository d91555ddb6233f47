//! mavera-relay's shared library: everything the `ingest`, `worker` and `cio-sync`
//! functions and the `relay` command have in common.
//!
//! The request path is [`ingest`]: [`verify`] the signature on the raw bytes, [`parse`]
//! into [`domain::Event`]s, match [`rules`], claim each job in the [`store`] and put it on
//! the [`queue`]. The [`worker`] takes jobs off the queue and calls [`mavera`]. The scheduled
//! [`sync`] jobs read [`customerio`] and put their work on the same queue. Every retry
//! loop (Mavera, Customer.io, the worker's own writes) is backon's, waiting as [`retry`] says.

pub mod aws;
pub mod config;
pub mod customerio;
pub mod domain;
pub mod ingest;
pub mod mavera;
pub mod parse;
pub mod queue;
pub mod retry;
pub mod rules;
pub mod secrets;
pub mod startup;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod verify;
pub mod worker;
