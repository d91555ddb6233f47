//! What ingest runs with, read from its variables: the rules, and a verifier for each source
//! they use (`Verifiers::from_vars`, in `config`).

use std::sync::Arc;

use crate::config::{ConfigError, Vars};
use crate::rules::Rules;
use crate::verify::Verifiers;

#[derive(Debug, Clone)]
pub struct Settings {
    pub rules: Arc<Rules>,
    pub verifiers: Verifiers,
}

impl Settings {
    /// `rules`, and a verifier for each source they use, from the signing secrets.
    pub fn from_vars(vars: &dyn Vars, rules: Arc<Rules>) -> Result<Self, ConfigError> {
        let verifiers = Verifiers::from_vars(vars, &rules)?;
        Ok(Settings { rules, verifiers })
    }
}
