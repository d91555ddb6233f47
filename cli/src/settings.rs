//! The configuration `relay serve` runs with, resolved from the same environment variables
//! and by the same `shared::config` functions as the Lambda functions' cold start, plus the
//! command line's overrides. `relay check` reports on the same resolution.

use std::collections::HashMap;
use std::path::Path;

use shared::config::{self, Layered, ProcessEnv, Vars, Verifiers, vars};
use shared::customerio::CioConfig;
use shared::ingest::IpAllowList;
use shared::mavera::MaveraConfig;
use shared::triggers::Triggers;

use crate::error::RelayError;

/// The process environment, with `--triggers` standing in for `TRIGGERS_PATH`.
pub fn environment(triggers: Option<&Path>) -> Layered<'static> {
    let mut overrides = HashMap::new();
    if let Some(path) = triggers {
        overrides.insert(vars::TRIGGERS_PATH.to_owned(), path.display().to_string());
    }
    Layered { secrets: overrides, base: &ProcessEnv }
}

/// Where Mavera requests go.
#[derive(Debug)]
pub enum Mavera {
    /// Printed, never sent; the reason is shown at start-up.
    DryRun {
        reason: &'static str,
    },
    Live(MaveraConfig),
}

/// How enriching rules get Customer.io attributes.
#[derive(Debug)]
pub enum Enrichment {
    /// No rule enriches.
    NotNeeded,
    /// Looked up with the App API.
    Lookup(CioConfig),
    /// No `CIO_APP_KEY`: these rules are disabled (their jobs recorded `SKIPPED`), the rest run.
    Unavailable { rules: Vec<String> },
}

#[derive(Debug)]
pub struct Settings {
    pub triggers: Triggers,
    pub verifiers: Verifiers,
    /// `CIO_ALLOWED_SOURCE_IPS`, checked against the peer address.
    pub cio_sources: Option<IpAllowList>,
    pub mavera: Mavera,
    pub enrichment: Enrichment,
}

impl Settings {
    /// Everything `relay serve` needs, or the first thing that stops it from starting.
    pub fn resolve(vars: &dyn Vars, force_dry_run: bool) -> Result<Self, RelayError> {
        let triggers = Triggers::from_vars(vars)?;
        let rules = &triggers.rules;
        let verifiers = Verifiers::from_vars(vars, rules)?;
        let cio_sources = config::cio_allowed_source_ips(vars)?;
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
        Ok(Settings { triggers, verifiers, cio_sources, mavera, enrichment })
    }
}
