//! The scheduled Customer.io jobs behind the `cio-sync` function. Each run does one job:
//!
//! - **campaign-strategy** (`campaigns`): rank the running campaigns by conversion or click
//!   rate over finished days, and queue one analysis of the winners per run window; the worker
//!   asks Mave what they share, then Generate for new variations.
//! - **attribute-personas** (`personas`): read a segment's members page by page, look up
//!   their attributes (through the attribute cache enrichment also uses), cluster them, and
//!   queue one persona per large cluster.
//!
//! Promises common to both:
//! - **Once per run window** ([`RunWindow`]): a finished window is checkpointed, and every
//!   queued job is claimed in the event store first, so a re-run in the window queues nothing.
//! - **Deadline**: the caller passes when to stop (the Lambda's end minus [`STOP_MARGIN`]);
//!   every App API call fits inside it, and a run that runs out of time checkpoints where it
//!   is and reports `partial`. The next run in the window resumes there.
//! - **One summary** per run ([`Summary`]): logged as one line, returned by the Lambda.

mod campaigns;
mod checkpoint;
mod clusters;
mod config;
mod lambda;
mod personas;
mod settings;
mod summary;
mod window;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::time::Instant;

pub use checkpoint::{CheckpointError, MAX_CHECKPOINT_BYTES};
pub use clusters::cluster_id;
pub(crate) use config::parse as parse_config;
pub use config::{
    ATTRIBUTE_PERSONAS, AttributePersonasConfig, CAMPAIGN_STRATEGY, CampaignStrategyConfig, ClusterAttribute,
    MAX_EVERY_DAYS, SyncConfig, bucket_label,
};
pub use lambda::{InputError, RunRequest};
pub use settings::{BuildError, Settings, TriggerConfig, build};
pub use summary::{RunFailed, RunStatus, Summary};
pub use window::RunWindow;

use crate::customerio::{CioError, CustomerIoApi, WindowError};
use crate::domain::RuleName;
use crate::queue::{JobMessage, JobQueue, QueueError};
use crate::store::{CacheStore, Claim, ClaimStore, JobStatus, NewJob, StoreError};
use crate::telemetry::chain;

/// Kept back from the Lambda's deadline: time to write the checkpoint and, when the work is
/// done, claim and queue the jobs (each store or queue call gives up within 5 s).
pub const STOP_MARGIN: Duration = Duration::from_secs(20);

/// Which job a run does. The names are the schedule inputs and the first part of job keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SyncJob {
    #[serde(rename = "campaign-strategy")]
    CampaignStrategy,
    #[serde(rename = "attribute-personas")]
    AttributePersonas,
}

impl SyncJob {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncJob::CampaignStrategy => "campaign-strategy",
            SyncJob::AttributePersonas => "attribute-personas",
        }
    }

    /// `campaign-strategy` or `attribute-personas` (`_` for `-` accepted).
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim().replace('_', "-").as_str() {
            "campaign-strategy" => Some(SyncJob::CampaignStrategy),
            "attribute-personas" => Some(SyncJob::AttributePersonas),
            _ => None,
        }
    }

    /// The "rule" of the jobs it queues: the job records and queue messages carry it.
    pub fn rule(self) -> RuleName {
        RuleName::parse(self.as_str()).expect("job names are valid rule names")
    }

    fn section(self) -> &'static str {
        match self {
            SyncJob::CampaignStrategy => CAMPAIGN_STRATEGY,
            SyncJob::AttributePersonas => ATTRIBUTE_PERSONAS,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    CustomerIo(#[from] CioError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("the metrics window cannot be asked for: {0}")]
    Window(#[from] WindowError),
    #[error("job {0} is being queued by another run right now; the next run queues it if that one did not")]
    InFlight(crate::domain::JobKey),
}

#[derive(Debug, thiserror::Error)]
pub enum SyncSetupError {
    #[error("a cio-sync job is enabled in triggers.toml, but no Customer.io client was given: set CIO_APP_KEY")]
    NoCustomerIo,
}

/// Runs the jobs; built once per process and used by every invocation.
pub struct CioSync {
    config: SyncConfig,
    /// Freshness of cached attributes: the enrichment's, as both share the entries.
    attribute_ttl: Duration,
    api: Option<Arc<dyn CustomerIoApi>>,
    claims: Arc<dyn ClaimStore>,
    cache: Arc<dyn CacheStore>,
    queue: Arc<dyn JobQueue>,
}

/// Whether a job went on the queue now or had been claimed before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Enqueued {
    Sent,
    AlreadyQueued(JobStatus),
}

impl CioSync {
    /// Which scheduled jobs run and which are off, for `/healthz` ([`crate::health`]).
    pub fn health_report(&self, now: SystemTime) -> crate::health::Report {
        let mut live = Vec::new();
        let mut off = Vec::new();
        for (name, enabled) in [
            (config::CAMPAIGN_STRATEGY, self.config.campaign_strategy.enabled),
            (config::ATTRIBUTE_PERSONAS, self.config.attribute_personas.enabled),
        ] {
            match enabled {
                true => live.push(name.to_owned()),
                false => off.push(crate::health::Off {
                    name: name.to_owned(),
                    reason: format!("[{name}] enabled = false in triggers.toml"),
                }),
            }
        }
        crate::health::Report::new("cio-sync", live, off, now)
    }

    /// Joins ready-made parts. Everything outside the crate goes through [`build`], which makes
    /// them from [`Settings`]; unit tests hand in twins here. `attribute_ttl` is the
    /// enrichment's `cache_ttl`: both read and write the same cached attributes.
    pub(crate) fn new(
        config: SyncConfig,
        attribute_ttl: Duration,
        api: Option<Arc<dyn CustomerIoApi>>,
        claims: Arc<dyn ClaimStore>,
        cache: Arc<dyn CacheStore>,
        queue: Arc<dyn JobQueue>,
    ) -> Result<Self, SyncSetupError> {
        if api.is_none() && config.any_enabled() {
            return Err(SyncSetupError::NoCustomerIo);
        }
        Ok(CioSync { config, attribute_ttl, api, claims, cache, queue })
    }

    /// Runs one job until it is done or `deadline` comes, and logs its summary line.
    pub async fn run(&self, request: RunRequest, now: SystemTime, deadline: Instant) -> Summary {
        let enabled = match request.job {
            SyncJob::CampaignStrategy => self.config.campaign_strategy.enabled,
            SyncJob::AttributePersonas => self.config.attribute_personas.enabled,
        };
        let summary = match (&self.api, enabled) {
            (Some(api), true) => match request.job {
                SyncJob::CampaignStrategy => campaigns::run(self, api.as_ref(), request.dry_run, now, deadline).await,
                SyncJob::AttributePersonas => personas::run(self, api.as_ref(), request.dry_run, now, deadline).await,
            },
            _ => {
                let mut summary = Summary::new(request.job, RunStatus::Disabled);
                summary.dry_run = request.dry_run;
                summary.message = Some(format!(
                    "[{}] is not enabled in triggers.toml; set `enabled = true` there to run it",
                    request.job.section()
                ));
                summary
            }
        };
        summary.log();
        summary
    }

    /// Claims the job, then sends it; if the send fails the claim is dropped, so the next run
    /// can queue it. A job claimed before (by an earlier run) is not sent again.
    async fn enqueue(&self, message: &JobMessage, now: SystemTime) -> Result<Enqueued, SyncError> {
        let body = message.to_body()?;
        let token = uuid::Uuid::new_v4().to_string();
        let claim = self.claims.claim(&NewJob { key: &message.key, rule: &message.rule, token: &token, now }).await?;
        match claim {
            Claim::Claimed => {}
            Claim::Duplicate(status) => return Ok(Enqueued::AlreadyQueued(status)),
            // Not sent yet as far as we know: counting it as queued could lose it.
            Claim::InFlight => return Err(SyncError::InFlight(message.key.clone())),
        }
        if let Err(send) = self.queue.send(body).await {
            if let Err(release) = self.claims.release_claim(&message.key, &token).await {
                // The claim's lease runs out by itself; a later run claims the job again then.
                tracing::error!(key = %message.key, error = %chain(&release), "could not drop the claim after a failed send");
            }
            return Err(send.into());
        }
        Ok(Enqueued::Sent)
    }
}
