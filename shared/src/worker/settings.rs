//! What the worker runs with, and [`build`], the one way it is put together: the Lambda,
//! `relay serve` and the tests all call it, with settings read from variables and the event
//! store they use. The Mavera and Customer.io clients are built here, from the settings.

use std::sync::Arc;

use super::{CioEnricher, Enrich, ScheduledJobs, Worker, WorkerSetupError, WorkerState};
use crate::config::{self, ConfigError, Vars};
use crate::customerio::{CioClient, CioConfig, CioError};
use crate::deliver::{ClientError, DestinationSettings, Destinations};
use crate::mavera::{DryRun, MaveraApi, MaveraClient, MaveraConfig, MaveraConfigError};
use crate::rules::{EnrichmentConfig, Rules};
use crate::store::JobStore;

/// The worker's part of `triggers.toml`.
#[derive(Debug, Clone)]
pub struct TriggerConfig {
    pub rules: Arc<Rules>,
    /// `[enrichment]`: how enriching rules look people up.
    pub lookup: EnrichmentConfig,
    /// The `[cio_sync.*]` templates for the scheduled jobs' messages.
    pub scheduled: ScheduledJobs,
}

/// Where Mavera requests go.
#[derive(Debug)]
pub enum Mavera {
    /// Recorded, never sent (the dry-run adapter); the reason is shown at start-up.
    DryRun {
        reason: &'static str,
    },
    Live(MaveraConfig),
}

/// How enriching rules get Customer.io attributes.
#[derive(Debug)]
pub enum Enrichment {
    /// No lookups: no rule enriches (or, for the worker function, no `CIO_APP_KEY` is set
    /// and none needs it).
    NotNeeded,
    /// Looked up with the App API.
    Lookup(CioConfig),
    /// No `CIO_APP_KEY` while these rules enrich: they are disabled (their jobs recorded
    /// `SKIPPED` with the reason), the rest run.
    Unavailable { rules: Vec<String> },
}

/// Where results go after Mavera answers (the rules' `deliver = [...]`).
#[derive(Debug)]
pub enum Deliveries {
    /// Printed, never sent: an explicit dry run (`DRY_RUN=true`, `relay serve --dry-run`).
    Print,
    /// Sent to each destination whose settings are usable; the others are off, each with the
    /// reason its deliveries are recorded `failed` with.
    Send(Box<DestinationSettings>),
}

#[derive(Debug)]
pub struct Settings {
    pub triggers: TriggerConfig,
    pub mavera: Mavera,
    pub enrichment: Enrichment,
    pub deliveries: Deliveries,
}

impl Settings {
    /// The worker function's settings: `MAVERA_API_KEY` is required unless `DRY_RUN=true`;
    /// `CIO_APP_KEY` when a rule enriches, and used whenever it is set.
    pub fn from_vars(vars: &dyn Vars, triggers: TriggerConfig) -> Result<Self, ConfigError> {
        let mavera = match config::mavera(vars)? {
            Some(config) => Mavera::Live(config),
            None => Mavera::DryRun { reason: "DRY_RUN=true" },
        };
        // Without CIO_APP_KEY the enriching rules are disabled (the worker says so); the rest run.
        let enriching: Vec<String> = triggers.rules.iter().filter(|r| r.enrich).map(|r| r.name.to_string()).collect();
        let enrichment = match config::customerio(vars, false)? {
            Some(config) => Enrichment::Lookup(config),
            None if enriching.is_empty() => Enrichment::NotNeeded,
            None => Enrichment::Unavailable { rules: enriching },
        };
        // The worker function runs dry only when told to: then nothing is sent anywhere.
        let deliveries = match mavera {
            Mavera::DryRun { .. } => Deliveries::Print,
            Mavera::Live(_) => Deliveries::Send(Box::new(config::destinations(vars))),
        };
        Ok(Settings { triggers, mavera, enrichment, deliveries })
    }
}

/// Why the worker could not be put together.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Mavera(#[from] MaveraConfigError),
    #[error(transparent)]
    CustomerIo(#[from] CioError),
    #[error(transparent)]
    Setup(#[from] WorkerSetupError),
    #[error(transparent)]
    Destination(#[from] ClientError),
}

/// Puts the worker together over `store` (job records, guards and the attribute cache).
pub fn build<S: JobStore + WorkerState + 'static>(settings: Settings, store: Arc<S>) -> Result<Worker, BuildError> {
    let Settings { triggers: TriggerConfig { rules, lookup, scheduled }, mavera, enrichment, deliveries } = settings;
    let mavera: Arc<dyn MaveraApi> = match mavera {
        Mavera::DryRun { .. } => Arc::new(DryRun),
        Mavera::Live(config) => Arc::new(MaveraClient::new(config)?),
    };
    let enricher: Option<Arc<dyn Enrich>> = match enrichment {
        Enrichment::NotNeeded => None,
        Enrichment::Lookup(config) => {
            let api = Arc::new(CioClient::new(config)?);
            Some(Arc::new(CioEnricher::new(api, store.clone(), lookup)))
        }
        // The worker disables these rules, with one warning each; every other rule runs.
        Enrichment::Unavailable { .. } => None,
    };
    let destinations = match deliveries {
        Deliveries::Print => Destinations::dry_run(),
        Deliveries::Send(settings) => Destinations::live(*settings)?,
    };
    Ok(Worker::new(rules, scheduled, store.clone(), store, mavera, enricher)?.with_destinations(destinations))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use crate::triggers::Triggers;

    fn shipped() -> TriggerConfig {
        Triggers::embedded().unwrap().for_worker()
    }

    #[test]
    fn the_worker_function_needs_a_mavera_key_unless_dry_run() {
        let err = Settings::from_vars(&[("CIO_APP_KEY", "k")], shipped()).unwrap_err();
        assert!(err.to_string().contains("DRY_RUN=true"), "{err}");
        let dry = Settings::from_vars(&[("DRY_RUN", "true"), ("CIO_APP_KEY", "k")], shipped()).unwrap();
        assert!(matches!(dry.mavera, Mavera::DryRun { reason: "DRY_RUN=true" }));
        assert!(matches!(dry.deliveries, Deliveries::Print), "a dry run sends nothing anywhere");
        let live = Settings::from_vars(&[("MAVERA_API_KEY", "mvra_live_x"), ("CIO_APP_KEY", "k")], shipped()).unwrap();
        assert!(matches!(live.deliveries, Deliveries::Send(_)));
        assert!(matches!(dry.enrichment, Enrichment::Lookup(_)));
    }

    #[test]
    fn without_the_app_key_only_the_enriching_rules_are_off() {
        let settings = Settings::from_vars(&[("DRY_RUN", "true")], shipped()).unwrap();
        assert!(
            matches!(&settings.enrichment, Enrichment::Unavailable { rules } if rules == &["cio-high-value-alert"])
        );
        let worker = build(settings, Arc::new(MemoryStore::new())).unwrap();
        let disabled: Vec<&str> = worker.disabled_rules().iter().map(|(r, _)| r.as_str()).collect();
        assert_eq!(disabled, ["cio-high-value-alert"]);
        assert!(worker.disabled_rules()[0].1.contains("CIO_APP_KEY"));
    }

    #[test]
    fn a_client_that_cannot_be_built_stops_the_build() {
        let vars =
            [("MAVERA_API_KEY", "mvra_live_x"), ("MAVERA_BASE_URL", "http://mavera.example"), ("CIO_APP_KEY", "k")];
        let settings = Settings::from_vars(&vars, shipped()).unwrap();
        let Err(err) = build(settings, Arc::new(MemoryStore::new())) else { panic!("built with an http:// Mavera") };
        assert!(matches!(err, BuildError::Mavera(MaveraConfigError::InsecureBaseUrl { .. })), "{err}");
    }
}
