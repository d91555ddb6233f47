//! What every Lambda function does first, in this order: logging (so that a start-up problem
//! is logged), the AWS SDK configuration, then the secrets (one Secrets Manager secret over
//! the environment) and, at the same time, the function's warm-up, then `triggers.toml`.
//!
//! The warm-up opens connections to the function's own resources (the events table, the
//! queue), whose names are plain variables, never in the secret; so their handshakes overlap
//! the secret's instead of following it. Every service client built from the same SDK
//! configuration shares its connection pool, so the clients the function keeps find the
//! connections open.
//!
//! Each phase's duration is logged at debug level (message "init phase", fields `phase` and
//! `ms`), the mains adding theirs, so an init time can be explained:
//! `AWS_LAMBDA_LOG_LEVEL=info,shared::startup=debug` shows them alone.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::config::{ConfigError, Layered, ProcessEnv};
use crate::telemetry::{self, LogFormat};
use crate::triggers::{Triggers, TriggersError};

pub struct ColdStart {
    pub sdk: aws_config::SdkConfig,
    /// Settings: the secret's keys first, then the environment.
    pub vars: Layered<'static>,
    pub triggers: Triggers,
    /// The clock of the phases so far; the main goes on with it.
    pub phases: Phases,
}

/// What stops a function from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Triggers(#[from] TriggersError),
}

/// The cold start with nothing to warm up.
///
/// `secret_keys`: the keys of this function's own secret (`vars::SIGNING_SECRET_KEYS` for
/// ingest, `vars::API_KEYS_SECRET_KEYS` for the worker and cio-sync).
pub async fn cold_start(secret_keys: &'static [&'static str]) -> Result<ColdStart, StartupError> {
    let (cold, ()) = cold_start_warming(secret_keys, |_| async { Ok(()) }).await?;
    Ok(cold)
}

/// The cold start, running `warm_up` beside the secret's fetch and handing back what it
/// returns (the warmed clients). `warm_up` may read only the process environment: the
/// secret is not there yet.
pub async fn cold_start_warming<T, F>(
    secret_keys: &'static [&'static str],
    warm_up: impl FnOnce(aws_config::SdkConfig) -> F,
) -> Result<(ColdStart, T), StartupError>
where
    F: Future<Output = Result<T, ConfigError>>,
{
    let mut phases = Phases::start();
    telemetry::init(LogFormat::from_env());
    phases.done("logging");
    let sdk = crate::aws::sdk_config().await;
    phases.done("sdk");
    let (vars, warmed) = tokio::join!(
        Phases::time("secrets", crate::secrets::load(&sdk, &ProcessEnv, secret_keys)),
        Phases::time("warm-up", warm_up(sdk.clone())),
    );
    phases.done("secrets and warm-up");
    let (vars, warmed) = (vars?, warmed?);
    telemetry::redact(crate::config::secret_values(&vars));
    let triggers = Triggers::from_vars(&vars)?;
    phases.done("triggers");
    Ok((ColdStart { sdk, vars, triggers, phases }, warmed))
}

/// Times the phases of a cold start, one debug line each, and their total at the end.
#[derive(Debug)]
pub struct Phases {
    started: Instant,
    last: Instant,
}

impl Phases {
    pub fn start() -> Self {
        let now = Instant::now();
        Phases { started: now, last: now }
    }

    /// Logs how long `phase` took: the time since the previous phase ended.
    pub fn done(&mut self, phase: &'static str) {
        let now = Instant::now();
        log(phase, now - self.last);
        self.last = now;
    }

    /// Logs the time since the first phase began, as the phase `total`.
    pub fn finish(self) {
        log("total", self.started.elapsed());
    }

    /// Runs `work`, logging its own duration as `phase` (for work that runs beside other work).
    pub async fn time<T>(phase: &'static str, work: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let out = work.await;
        log(phase, started.elapsed());
        out
    }
}

fn log(phase: &'static str, took: Duration) {
    tracing::debug!(phase, ms = (took.as_secs_f64() * 1e6).round() / 1e3, "init phase");
}
