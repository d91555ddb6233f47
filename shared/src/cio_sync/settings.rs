//! What the `cio-sync` function runs with, and [`build`], the one way its jobs are put
//! together (the Lambda and the tests call it). The Customer.io client is built here, from
//! the settings: one per process, so its gate keeps every call under the 10-per-second limit.

use std::sync::Arc;
use std::time::Duration;

use super::{CioSync, SyncConfig, SyncSetupError};
use crate::config::{self, AwsResources, ConfigError, Vars};
use crate::customerio::{CioClient, CioConfig, CioError, CustomerIoApi};
use crate::queue::JobQueue;
use crate::store::{CacheStore, ClaimStore};

/// The function's part of `triggers.toml`.
#[derive(Debug, Clone)]
pub struct TriggerConfig {
    /// `[cio_sync.*]`: which jobs run, and how.
    pub jobs: SyncConfig,
    /// The enrichment's `cache_ttl`: both read and write the same cached attributes.
    pub attribute_ttl: Duration,
}

/// The function's environment: `EVENTS_TABLE`, `JOBS_QUEUE_URL`, and the App API key and
/// region (`CIO_APP_KEY`, `CIO_REGION`), the key being required as soon as a job is enabled.
#[derive(Debug, Clone)]
pub struct Settings {
    pub resources: AwsResources,
    /// `None` when both jobs are off and no key is set: every run then reports "disabled".
    pub customerio: Option<CioConfig>,
    pub triggers: TriggerConfig,
}

impl Settings {
    pub fn from_vars(vars: &dyn Vars, triggers: TriggerConfig) -> Result<Self, ConfigError> {
        Ok(Settings {
            resources: AwsResources::from_vars(vars)?,
            customerio: config::customerio(vars, triggers.jobs.any_enabled())?,
            triggers,
        })
    }
}

/// Why the jobs could not be put together.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    CustomerIo(#[from] CioError),
    #[error(transparent)]
    Setup(#[from] SyncSetupError),
}

/// Puts the jobs together over `store` (claims, checkpoints, the attribute cache) and `queue`,
/// and logs which jobs are on.
pub fn build<S: ClaimStore + CacheStore + 'static>(
    settings: Settings,
    store: Arc<S>,
    queue: Arc<dyn JobQueue>,
) -> Result<CioSync, BuildError> {
    let Settings { customerio, triggers: TriggerConfig { jobs, attribute_ttl }, .. } = settings;
    let api = match customerio {
        Some(config) => Some(Arc::new(CioClient::new(config)?) as Arc<dyn CustomerIoApi>),
        None => None,
    };
    for line in jobs.describe() {
        tracing::info!("{line}");
    }
    Ok(CioSync::new(jobs, attribute_ttl, api, store.clone(), store, queue)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::triggers::Triggers;

    #[test]
    fn the_app_key_is_required_once_a_job_is_on() {
        let off = Triggers::parse("", "t.toml").unwrap().for_cio_sync();
        let base = [("EVENTS_TABLE", "events"), ("JOBS_QUEUE_URL", "http://q"), ("CIO_REGION", "eu")];
        assert!(Settings::from_vars(&base, off).unwrap().customerio.is_none());
        let on = Triggers::parse("[cio_sync.attribute_personas]\nenabled = true\nsegment_id = 4", "t.toml")
            .unwrap()
            .for_cio_sync();
        let err = Settings::from_vars(&base, on.clone()).unwrap_err();
        assert!(err.to_string().starts_with("CIO_APP_KEY is not set"), "{err}");
        let vars =
            [("EVENTS_TABLE", "events"), ("JOBS_QUEUE_URL", "http://q"), ("CIO_REGION", "eu"), ("CIO_APP_KEY", "k")];
        let settings = Settings::from_vars(&vars, on).unwrap();
        let cio = settings.customerio.unwrap();
        assert_eq!(
            cio.effective_base_url(),
            "https://api-eu.customer.io",
            "CIO_REGION=eu reads from the EU data center"
        );
        assert_eq!(settings.resources.table, "events");
    }
}
