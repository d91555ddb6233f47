//! The variables a test rig gives the functions' settings: the stand-ins' and moto's
//! addresses, as a deployment gives the real ones. The rigs then build ingest, the worker and
//! cio-sync with the same `Settings::from_vars` and builders as the Lambda functions.

use std::collections::HashMap;

use shared::config::{Vars, vars};

use crate::aws::Aws;
use crate::cio_standin::CioStandIn;
use crate::mavera_standin::MaveraStandIn;

#[derive(Debug, Clone, Default)]
pub struct Env(HashMap<String, String>);

impl Env {
    pub fn new() -> Self {
        Env::default()
    }

    pub fn set(mut self, name: &str, value: impl Into<String>) -> Self {
        self.0.insert(name.to_owned(), value.into());
        self
    }

    /// `MAVERA_API_KEY` and `MAVERA_BASE_URL` of the Mavera stand-in.
    pub fn mavera(self, mavera: &MaveraStandIn) -> Self {
        self.set(vars::MAVERA_API_KEY, mavera.api_key()).set(vars::MAVERA_BASE_URL, mavera.base_url())
    }

    /// `CIO_APP_KEY` and `CIO_APP_API_URL` of the Customer.io stand-in.
    pub fn customerio(self, cio: &CioStandIn) -> Self {
        self.set(vars::CIO_APP_KEY, cio.app_key()).set(vars::CIO_APP_API_URL, cio.base_url())
    }

    /// `EVENTS_TABLE` and `JOBS_QUEUE_URL` of a fresh table and queue on moto.
    pub fn aws(self, aws: &Aws) -> Self {
        self.set(vars::EVENTS_TABLE, aws.table.clone()).set(vars::JOBS_QUEUE_URL, aws.queue_url.clone())
    }
}

impl Vars for Env {
    fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}
