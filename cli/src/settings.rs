//! The configuration `relay serve` runs with, resolved from the same environment variables
//! and by the same `shared::config` functions as the Lambda functions' cold start, plus the
//! command line's overrides. `relay check` reports on the same resolution.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use shared::config::{self, Layered, ProcessEnv, Vars, vars};
use shared::ingest;
use shared::triggers::Triggers;
use shared::worker::{self, Deliveries, Enrichment, Mavera};

use crate::error::RelayError;

/// The process environment, with `--triggers` standing in for `TRIGGERS_PATH`.
pub fn environment(triggers: Option<&Path>) -> Layered<'static> {
    let mut overrides = HashMap::new();
    if let Some(path) = triggers {
        overrides.insert(vars::TRIGGERS_PATH.to_owned(), path.display().to_string());
    }
    Layered { secrets: overrides, base: &ProcessEnv }
}

/// `relay serve`'s ingest and worker, as its environment and command line set them.
#[derive(Debug)]
pub struct Settings {
    /// Where the rules came from: their file, or the ones built in.
    pub origin: String,
    pub ingest: ingest::Settings,
    pub worker: worker::Settings,
}

impl Settings {
    /// Everything `relay serve` needs, or the first thing that stops it from starting. Unlike
    /// the worker function, a missing `MAVERA_API_KEY` means a dry run, and so does a missing
    /// `CIO_APP_KEY` for enriching rules when nothing is sent anyway.
    pub fn resolve(vars: &dyn Vars, force_dry_run: bool) -> Result<Self, RelayError> {
        let triggers = Triggers::from_vars(vars)?;
        let ingest = ingest::Settings::from_vars(vars, Arc::new(triggers.rules.clone()))?;
        let rules = &ingest.rules;
        let mavera = if force_dry_run {
            Mavera::DryRun { reason: "--dry-run" }
        } else if config::flag(vars, vars::DRY_RUN, false)? {
            Mavera::DryRun { reason: "DRY_RUN=true" }
        } else {
            match config::optional(vars, vars::MAVERA_API_KEY) {
                None => Mavera::DryRun { reason: "MAVERA_API_KEY is not set" },
                Some(key) => Mavera::Live(config::mavera_with_key(vars, key)?),
            }
        };
        let enriching: Vec<String> = rules.iter().filter(|r| r.enrich).map(|r| r.name.to_string()).collect();
        let enrichment = match (config::customerio(vars, false)?, enriching.first()) {
            (_, None) => Enrichment::NotNeeded,
            (Some(cio), Some(_)) => Enrichment::Lookup(cio),
            (None, Some(_)) => Enrichment::Unavailable { rules: enriching },
        };
        // An explicit dry run prints deliveries too; without MAVERA_API_KEY alone they are sent,
        // so a developer can see a (dry-run) result reach a test Slack channel or endpoint.
        let deliveries = match mavera {
            Mavera::DryRun { reason: "--dry-run" | "DRY_RUN=true" } => Deliveries::Print,
            _ => Deliveries::Send(Box::new(config::destinations(vars))),
        };
        let worker = worker::Settings { triggers: triggers.for_worker(), mavera, enrichment, deliveries };
        Ok(Settings { origin: triggers.origin().to_owned(), ingest, worker })
    }
}
