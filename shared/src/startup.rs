//! What every Lambda function does first, in this order: logging (so that a start-up problem
//! is logged), the AWS SDK configuration, the secrets (one Secrets Manager secret over the
//! environment), then the rules. Each phase's duration is logged at debug level ("init
//! phase", with `phase` and `ms`), and the mains add theirs (`config`, `warm-up`), so an init
//! time can be explained: `AWS_LAMBDA_LOG_LEVEL=info,shared::startup=debug` shows them alone.

use std::time::Instant;

use crate::config::{self, ConfigError, Layered, ProcessEnv};
use crate::rules::Rules;
use crate::telemetry::{self, LogFormat};

pub struct ColdStart {
    pub sdk: aws_config::SdkConfig,
    /// Settings: the secret's keys first, then the environment.
    pub vars: Layered<'static>,
    pub rules: Rules,
    /// The clock of the phases so far; the main goes on with it.
    pub phases: Phases,
}

pub async fn cold_start() -> Result<ColdStart, ConfigError> {
    let mut phases = Phases::start();
    telemetry::init(LogFormat::from_env());
    phases.done("logging");
    let sdk = crate::aws::sdk_config().await;
    phases.done("sdk");
    let vars = crate::secrets::load(&sdk, &ProcessEnv).await?;
    phases.done("secrets");
    let rules = config::rules(&vars)?;
    phases.done("rules");
    Ok(ColdStart { sdk, vars, rules, phases })
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
        tracing::debug!(phase, ms = millis(now - self.last), "init phase");
        self.last = now;
    }

    /// Logs the time since the first phase began, as the phase `total`.
    pub fn finish(self) {
        tracing::debug!(phase = "total", ms = millis(self.started.elapsed()), "init phase");
    }
}

fn millis(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}
