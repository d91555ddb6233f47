//! mavera-relay's shared library: everything the `ingest`, `worker` and `cio-sync`
//! functions and the `relay` command have in common.
//!
//! The request path is [`ingest`]: [`verify`] the signature on the raw bytes, [`parse`]
//! into [`domain::Event`]s, match [`rules`], claim each job in the [`store`] and put it on
//! the [`queue`]. The [`worker`] takes jobs off the queue, calls [`mavera`] and hands the
//! result to the rule's destinations ([`deliver`]). The scheduled
//! [`cio_sync`] jobs read [`customerio`] and put their work on the same queue. [`triggers`]
//! loads `triggers.toml` (rules, enrichment, scheduled jobs) for all three. Every retry
//! loop (Mavera, Customer.io, the worker's own writes) is backon's, waiting as [`retry`] says.
//!
//! Each of the three has a `Settings` read from variables and one builder
//! ([`ingest::build`], [`worker::build`], [`cio_sync::build`]): the Lambda mains, `relay serve`
//! and the tests put them together the same way, and differ only in the adapters they pass.
//!
//! # Layering
//!
//! A module uses only modules on its own layer or lower ones, and none imports its way back
//! to itself: `tests/tests/layering.rs` fails on a circle and on a broken *never* below.
//!
//! 1. Foundations: [`domain`] (checked values, `truncate_chars`, `PersonaName`), [`toml_table`]
//!    (how a `triggers.toml` table is read), [`vars`] (environment variable names),
//!    [`retry`] (waits between tries), [`deadline`] (an invocation's), [`telemetry`], [`aws`],
//!    [`verify`]. `domain`, `toml_table`, `vars`, `retry` and `deadline` *never* use another
//!    module.
//! 2. [`template`]: `{field}` and JSON templates over a `FieldSource`; *never* anything but
//!    `domain`.
//! 3. Ports and their adapters: [`mavera`] (with the dry-run adapter), [`store`], [`queue`]
//!    (its `message` is the one contract between producers and the worker), [`parse`],
//!    [`customerio`] (with the attribute lookup, cached in the `store`), [`deliver`] (the
//!    destinations a result goes to, and each rule's settings for them), [`health`] (what
//!    each function has live, kept in the `store`). *Never* `rules`, `config`, or anything
//!    above.
//! 4. [`rules`]: webhook rules, matching, `[enrichment]`.
//! 5. [`config`] (environment variables, and the verifiers the rules need) and [`secrets`].
//! 6. The three jobs: [`ingest`]; [`worker`], which renders scheduled jobs' requests itself
//!    and *never* uses `cio_sync`; [`cio_sync`], which may use the worker's template types to
//!    check and preview what it queues.
//! 7. [`triggers`]: the whole `triggers.toml`, each table read by its owner (`rules`,
//!    `cio_sync`), and each function's part of it handed to its settings.
//! 8. [`startup`]: a Lambda's cold start (logging, SDK, secrets, triggers).

pub mod aws;
pub mod cio_sync;
pub mod config;
pub mod customerio;
pub mod deadline;
pub mod deliver;
pub mod domain;
pub mod health;
pub mod ingest;
pub mod mavera;
pub mod parse;
pub mod queue;
pub mod retry;
pub mod rules;
pub mod secrets;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod template;
pub mod toml_table;
pub mod triggers;
pub mod vars;
pub mod verify;
pub mod worker;
