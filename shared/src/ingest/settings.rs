//! What ingest runs with, read from its variables: the rules, and a verifier for each source
//! they use (`Verifiers::from_vars`, in `config`).

use std::sync::Arc;

use crate::config::{ConfigError, Vars};
use crate::rules::Rules;
use crate::verify::{IpAllowList, Verifiers};

#[derive(Debug, Clone)]
pub struct Settings {
    pub rules: Arc<Rules>,
    pub verifiers: Verifiers,
    /// `CIO_ALLOWED_SOURCE_IPS`: where Customer.io webhooks may come from (`None`: anywhere).
    pub cio_sources: Option<IpAllowList>,
}

impl Settings {
    /// `rules`, and a verifier for each source they use, from the signing secrets.
    pub fn from_vars(vars: &dyn Vars, rules: Arc<Rules>) -> Result<Self, ConfigError> {
        let verifiers = Verifiers::from_vars(vars, &rules)?;
        let cio_sources = crate::config::cio_allowed_source_ips(vars)?;
        Ok(Settings { rules, verifiers, cio_sources })
    }
}
