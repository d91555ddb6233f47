//! What every Lambda function does first, in this order: logging (so that a start-up problem
//! is logged), the AWS SDK configuration, the secrets (one Secrets Manager secret over the
//! environment), then `triggers.toml`.

use crate::config::{ConfigError, Layered, ProcessEnv};
use crate::telemetry::{self, LogFormat};
use crate::triggers::{Triggers, TriggersError};

pub struct ColdStart {
    pub sdk: aws_config::SdkConfig,
    /// Settings: the secret's keys first, then the environment.
    pub vars: Layered<'static>,
    pub triggers: Triggers,
}

/// What stops a function from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Triggers(#[from] TriggersError),
}

/// `secret_keys`: the keys of this function's own secret (`vars::SIGNING_SECRET_KEYS` for
/// ingest, `vars::API_KEYS_SECRET_KEYS` for the worker and cio-sync).
pub async fn cold_start(secret_keys: &'static [&'static str]) -> Result<ColdStart, StartupError> {
    telemetry::init(LogFormat::from_env());
    let sdk = crate::aws::sdk_config().await;
    let vars = crate::secrets::load(&sdk, &ProcessEnv, secret_keys).await?;
    telemetry::redact(crate::config::secret_values(&vars));
    let triggers = Triggers::from_vars(&vars)?;
    Ok(ColdStart { sdk, vars, triggers })
}
