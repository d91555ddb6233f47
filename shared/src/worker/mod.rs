//! The worker: takes a job off the queue and runs its rule's action against Mavera, so
//! that each job has exactly one effect however often it is delivered.
//!
//! Per message: decode → `start` (a lease in the event store; skip if `DONE`/`FAILED`/
//! `SKIPPED` or held by a live lease) → enrich (Customer.io attributes, if the rule asks)
//! → conditions on `customer.*` → once per user → daily cap → render → `call` Mavera →
//! `finish`. A dry run is only another Mavera adapter (`mavera::DryRun`), which records the
//! request instead of sending it: same path, same record. A transient failure releases the
//! job and hands the message back to the queue; a permanent one records `FAILED` and is never
//! retried. [`sqs`] adapts this to a Lambda SQS batch, [`local`] to the in-process queue.
//!
//! Jobs from the scheduled `cio-sync` function take their own path after the lease:
//! `analysis` (Mave, then Generate, for the best campaigns) and `cluster_persona` (one
//! persona per attribute cluster). The worker renders their requests from the message's facts
//! with the templates of `[cio_sync.*]` ([`ScheduledJobs`]); it meets `cio-sync` only at the
//! queue message.

mod analysis;
mod cluster_persona;
mod enrich;
pub mod local;
mod result;
mod settings;
pub mod sqs;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use backon::Retryable;
use tokio::time::Instant;
use tracing::Instrument;

pub use analysis::{AnalysisTemplates, GenerateStep, MAVE_FIELDS, PROMPT_FIELDS};
pub use cluster_persona::{CLUSTER_FIELDS, ClusterPersonaTemplate, persona_request};
pub use enrich::{CioEnricher, Enrich, Enriched, Unknown, classify};
pub use result::{MAX_TEXT_CHARS, summarize};
pub use settings::{BuildError, Enrichment, Mavera, Settings, TriggerConfig, build};

use crate::domain::{Event, JobKey, PersonaName, RuleName};
use crate::mavera::{ErrorClass, MaveraApi, MaveraError, MaveraRequest, MaveraResponse};
use crate::queue::{CampaignAnalysis, ClusterPersona, Job, JobMessage};
use crate::retry;
use crate::rules::{Rule, Rules};
use crate::store::{
    CacheStore, FailureClass, GuardStore, JobStatus, JobStore, Lease, Outcome, Start, StoreError, utc_day,
};
use crate::telemetry::chain;

/// Deliveries of a job whose Customer.io lookup keeps failing transiently before it is
/// skipped: fewer than the queue's `maxReceiveCount` (5), so such a job ends `SKIPPED` with the
/// reason rather than in the DLQ.
pub const ENRICHMENT_ATTEMPTS: u32 = 3;

/// Retries of the final write after the first try (4 tries in all).
const RECORD_RETRIES: u32 = 3;

/// Time kept back from the deadline to record the result after the Mavera call.
pub const FINISH_MARGIN: Duration = Duration::from_secs(5);
/// The lease outlives the deadline by this much, so it expires only once the invocation
/// that holds it is surely over.
pub const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// What became of one message: delete it from the queue, or hand it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// The job ended now (`DONE`, `FAILED` or `SKIPPED`).
    Finished(JobStatus),
    /// Nothing to do: the job had already ended.
    AlreadyFinished(JobStatus),
    /// Another delivery holds a live lease; its own message finishes or redelivers the job.
    HeldElsewhere,
    /// Hand the message back to the queue; after `maxReceiveCount` receives it goes to the DLQ.
    Retry { reason: String },
}

impl Disposition {
    /// Whether the message can be deleted from the queue.
    pub fn ack(&self) -> bool {
        !matches!(self, Disposition::Retry { .. })
    }
}

/// What a job that ended now adds to the metrics beside its disposition: why it failed and
/// what it cost, under its rule.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobTally {
    pub rule: Option<RuleName>,
    pub failure: Option<FailureClass>,
    /// Credits Mavera reported for the job (none in dry run), including what a job that then
    /// failed had spent (a campaign analysis whose Generate failed after Mave answered).
    pub credits: Option<f64>,
}

impl JobTally {
    /// `spent`: credits a job that did not finish `Done` is known to have cost.
    fn of(rule: &RuleName, outcome: &Outcome, spent: Option<f64>) -> Self {
        let (failure, credits) = match outcome {
            Outcome::Done { result } => (None, result.get("credits").and_then(serde_json::Value::as_f64)),
            Outcome::Failed { class, .. } => (Some(*class), spent),
            Outcome::Skipped { .. } => (None, spent),
        };
        JobTally { rule: Some(rule.clone()), failure, credits }
    }
}

/// What the worker keeps in the event store beside job records: guard marks (daily caps, once
/// per user) and the progress of multi-step jobs (a campaign analysis keeps Mave's answer
/// until Generate has run). Every store implements both.
pub trait WorkerState: GuardStore + CacheStore {}
impl<T: GuardStore + CacheStore> WorkerState for T {}

/// How the worker runs the scheduled jobs' messages: the `[cio_sync.*]` templates of its own
/// `triggers.toml`. `None` for a job that is off there; its queued messages are skipped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScheduledJobs {
    pub campaign_strategy: Option<AnalysisTemplates>,
    pub attribute_personas: Option<ClusterPersonaTemplate>,
}

pub struct Worker {
    rules: Arc<Rules>,
    scheduled: ScheduledJobs,
    jobs: Arc<dyn JobStore>,
    guards: Arc<dyn WorkerState>,
    /// The client, or in a dry run `mavera::DryRun`.
    mavera: Arc<dyn MaveraApi>,
    enricher: Option<Arc<dyn Enrich>>,
    /// Rules that cannot run in this configuration, and why (the variable to set). Their jobs
    /// are recorded `SKIPPED` with the reason; every other rule runs.
    disabled: Vec<(RuleName, String)>,
}

/// What stops a worker from being built: nothing any more (a rule that cannot run is
/// disabled, not fatal); kept so the wiring need not change when something can.
#[derive(Debug, thiserror::Error)]
pub enum WorkerSetupError {}

/// Why a job could not finish this time (it goes back to the queue).
struct Transient(String);

/// How one Mavera call ended, sorted by error class (`Worker::call`).
enum Called {
    /// Mavera's answer; in a dry run, the record of the request.
    Answered(MaveraResponse),
    /// Mavera says it was done before: a persona with this name exists.
    AlreadyDone(MaveraError),
    /// Refused for good; a retry would not help.
    Failed(MaveraError),
}

impl From<StoreError> for Transient {
    fn from(e: StoreError) -> Self {
        Transient(format!("event store: {}", chain(&e)))
    }
}

impl Worker {
    /// The rules this worker cannot run, with the reason.
    pub fn disabled_rules(&self) -> &[(RuleName, String)] {
        &self.disabled
    }

    /// What this worker runs and what it cannot, for `/healthz` ([`crate::health`]).
    pub fn health_report(&self, now: SystemTime) -> crate::health::Report {
        let is_off = |name: &RuleName| self.disabled.iter().any(|(off, _)| off == name);
        let live = self.rules.iter().filter(|r| !is_off(&r.name)).map(|r| r.name.as_str().to_owned()).collect();
        let off = self
            .disabled
            .iter()
            .map(|(name, reason)| crate::health::Off { name: name.as_str().to_owned(), reason: reason.clone() })
            .collect();
        crate::health::Report::new("worker", live, off, now)
    }

    /// Joins ready-made parts. Everything outside the crate goes through [`build`], which makes
    /// them from [`Settings`]; unit tests hand in twins here.
    pub(crate) fn new(
        rules: Arc<Rules>,
        scheduled: ScheduledJobs,
        jobs: Arc<dyn JobStore>,
        guards: Arc<dyn WorkerState>,
        mavera: Arc<dyn MaveraApi>,
        enricher: Option<Arc<dyn Enrich>>,
    ) -> Result<Self, WorkerSetupError> {
        // A missing Customer.io key disables only the rules that look attributes up.
        let disabled: Vec<(RuleName, String)> = match &enricher {
            Some(_) => Vec::new(),
            None => rules
                .iter()
                .filter(|r| r.enrich)
                .map(|r| {
                    let why = "it looks Customer.io attributes up (`enrich = true`), and CIO_APP_KEY is not set: set the Customer.io App API key to run it";
                    (r.name.clone(), why.to_owned())
                })
                .collect(),
        };
        for (rule, why) in &disabled {
            tracing::warn!(rule = %rule, "rule `{rule}` is disabled: {why}; its jobs are recorded SKIPPED");
        }
        Ok(Worker { rules, scheduled, jobs, guards, mavera, enricher, disabled })
    }

    /// Opens the Mavera connection during a cold start (the dry-run adapter has none to open).
    pub async fn warm(&self) {
        self.mavera.warm().await;
    }

    /// Processes one queue message, by `deadline` (the invocation's end).
    pub async fn process(&self, body: &str, deadline: Instant) -> Disposition {
        self.process_tallied(body, deadline).await.0
    }

    /// [`Worker::process`], with what the job adds to the metrics.
    pub async fn process_tallied(&self, body: &str, deadline: Instant) -> (Disposition, JobTally) {
        let mut tally = JobTally::default();
        let message = match JobMessage::from_body(body) {
            Ok(message) => message,
            Err(e) => {
                tracing::error!(error = %chain(&e), outcome = "undecodable", "queue message is not a job; it goes to the DLQ after maxReceiveCount receives");
                return (Disposition::Retry { reason: e.to_string() }, tally);
            }
        };
        let span = match &message.job {
            Job::Event { event } => {
                tracing::info_span!("job", source = %event.source, event_id = %event.id, rule = %message.rule)
            }
            Job::CampaignAnalysis(_) | Job::ClusterPersona(_) => {
                tracing::info_span!("job", key = %message.key, rule = %message.rule)
            }
        };
        let disposition = self.run(message, deadline, &mut tally).instrument(span).await;
        (disposition, tally)
    }

    async fn run(&self, message: JobMessage, deadline: Instant, tally: &mut JobTally) -> Disposition {
        let started = Instant::now();
        let JobMessage { key, rule: rule_name, job, .. } = message;
        let mut work = match job {
            Job::Event { event } => {
                let Some(rule) = self.rules.get(&rule_name) else {
                    tracing::error!(
                        outcome = "unknown_rule",
                        "rule `{rule_name}` is not among this worker's rules (were the rules changed?); the message goes to the DLQ after maxReceiveCount receives, to be redriven once the rule is back"
                    );
                    return Disposition::Retry { reason: format!("unknown rule `{rule_name}`") };
                };
                Work::Event { rule, event }
            }
            Job::CampaignAnalysis(job) => Work::Analysis(job),
            Job::ClusterPersona(job) => Work::Persona(job),
        };

        let owner = uuid::Uuid::new_v4().to_string();
        let now = SystemTime::now();
        let lease = Lease {
            owner: owner.clone(),
            until: now + deadline.saturating_duration_since(Instant::now()) + LEASE_MARGIN,
        };
        let attempt = match self.jobs.start(&key, &rule_name, &lease, now).await {
            Ok(Start::Started { attempt }) => attempt,
            Ok(Start::Finished(status)) => {
                tracing::info!(outcome = "already_finished", status = %status, "job already ended; message dropped");
                return Disposition::AlreadyFinished(status);
            }
            Ok(Start::Busy) => {
                tracing::info!(
                    outcome = "held_elsewhere",
                    "another delivery holds a live lease on this job; message dropped"
                );
                return Disposition::HeldElsewhere;
            }
            Err(e) => {
                tracing::warn!(outcome = "retry", error = %chain(&e), "could not start the job; the queue redelivers it");
                return Disposition::Retry { reason: format!("event store: {e}") };
            }
        };

        let mut notes = Vec::new();
        let mut spent = None;
        let result = match &mut work {
            Work::Event { rule, event } => self.execute(rule, event, &key, attempt, &mut notes, deadline).await,
            Work::Analysis(job) => self.analyse(job, &key, &mut notes, &mut spent, deadline).await,
            Work::Persona(job) => self.create_cluster_persona(job, &mut notes, deadline).await,
        };
        match result {
            Ok(outcome) => {
                let status = outcome.status();
                log_outcome(&outcome, attempt, started);
                *tally = JobTally::of(&rule_name, &outcome, spent);
                self.record(&key, &owner, &outcome, &notes).await;
                Disposition::Finished(status)
            }
            Err(Transient(reason)) => {
                tracing::warn!(outcome = "retry", attempt, elapsed_ms = started.elapsed().as_millis() as u64, reason = %reason, "transient failure; the job goes back to the queue");
                if let Err(e) = self.jobs.release(&key, &owner, &reason, SystemTime::now()).await {
                    // The lease expires by itself; the redelivered message takes it then.
                    tracing::warn!(error = %chain(&e), "could not release the job");
                }
                Disposition::Retry { reason }
            }
        }
    }

    /// Everything between holding the lease and knowing the outcome.
    async fn execute(
        &self,
        rule: &Rule,
        event: &mut Event,
        key: &JobKey,
        attempt: u32,
        notes: &mut Vec<String>,
        deadline: Instant,
    ) -> Result<Outcome, Transient> {
        if let Some((_, why)) = self.disabled.iter().find(|(name, _)| *name == rule.name) {
            return Ok(Outcome::Skipped { reason: format!("rule `{}` is disabled: {why}", rule.name) });
        }
        let mut unknown = None;
        if rule.enrich
            && let Some(enricher) = &self.enricher
        {
            let enriched = enricher.enrich(event, deadline).await;
            unknown = enriched.unknown;
            notes.extend(enriched.notes);
        }
        // Conditions on attributes that could not be read never count as met (the shipped
        // rule exists to keep free users from costing credits): ask again while that may help,
        // then skip the job, saying why.
        if let Some(unknown) = unknown.filter(|_| !rule.after_enrichment.is_empty()) {
            if unknown.transient && attempt < ENRICHMENT_ATTEMPTS {
                return Err(Transient(format!("{} (attempt {attempt} of {ENRICHMENT_ATTEMPTS})", unknown.reason)));
            }
            let after = if unknown.transient { format!(" after {attempt} attempts") } else { String::new() };
            return Ok(Outcome::Skipped {
                reason: format!("conditions on customer.* could not be checked{after}: {}", unknown.reason),
            });
        }
        if let Some(failed) = rule.after_enrichment.iter().find(|c| !c.holds(event)) {
            return Ok(Outcome::Skipped {
                reason: format!("condition not met after the attribute lookup: {}", failed.describe()),
            });
        }

        let now = SystemTime::now();
        let mut reserved_user = None;
        if rule.once_per_user {
            match &event.user_id {
                Some(user) => {
                    if !self.guards.take_once_per_user(&rule.name, user, key, now).await? {
                        return Ok(Outcome::Skipped {
                            reason: format!("`{}` already fired for user {user} (once_per_user)", rule.name),
                        });
                    }
                    reserved_user = Some(user.clone());
                }
                None => notes.push("the event has no user id, so once_per_user could not apply".into()),
            }
        }
        if let Some(cap) = rule.daily_cap {
            let day = utc_day(now);
            if !self.guards.take_daily_slot(&rule.name, &day, key, cap, now).await? {
                return Ok(Outcome::Skipped {
                    reason: format!("daily cap of {cap} reached for `{}` on {day} (UTC)", rule.name),
                });
            }
        }

        let mut request = rule.action.render(event);
        if let MaveraRequest::CreatePersona(persona) = &mut request {
            persona.name = PersonaName::for_job(&persona.name, key).into_string();
        }
        match self.call(&request, deadline).await? {
            Called::Answered(response) => Ok(Outcome::Done { result: summarize(&response) }),
            Called::AlreadyDone(e) => {
                notes.push(format!("Mavera: {e}"));
                Ok(Outcome::Done { result: already_done_result(&request) })
            }
            Called::Failed(e) => {
                if let Some(user) = reserved_user
                    && let Err(forget) = self.guards.forget_once_per_user(&rule.name, &user, key).await
                {
                    tracing::warn!(error = %chain(&forget), "could not drop the once_per_user mark after a permanent failure");
                }
                Ok(Outcome::Failed { reason: e.to_string(), class: e.failure_class() })
            }
        }
    }

    /// Sends one request to Mavera, keeping [`FINISH_MARGIN`] before `deadline` to record the
    /// outcome. The one place that sorts Mavera's errors: a transient one is `Err` (the job goes
    /// back to the queue), the others are outcomes for the caller to record.
    async fn call(&self, request: &MaveraRequest, deadline: Instant) -> Result<Called, Transient> {
        let call_deadline = deadline.checked_sub(FINISH_MARGIN).unwrap_or_else(Instant::now);
        match self.mavera.send(request, call_deadline).await {
            Ok(response) => Ok(Called::Answered(response)),
            Err(e) => match e.class() {
                ErrorClass::Transient => Err(Transient(e.to_string())),
                ErrorClass::AlreadyDone => Ok(Called::AlreadyDone(e)),
                ErrorClass::Permanent => Ok(Called::Failed(e)),
            },
        }
    }

    /// Records the outcome, trying a little harder than usual: the Mavera call has happened,
    /// and a retry would repeat it. If it still fails the message is deleted anyway (a
    /// stuck `RUNNING` record beats a second 300-credit persona) and the log says so.
    async fn record(&self, key: &JobKey, owner: &str, outcome: &Outcome, notes: &[String]) {
        let mut failed_attempts = 0u32;
        let recorded = (|| self.jobs.finish(key, owner, outcome, notes, SystemTime::now()))
            .retry(retry::store_write(RECORD_RETRIES))
            .when(|e| !matches!(e, StoreError::LeaseLost(_)))
            .notify(|e, _| {
                failed_attempts += 1;
                tracing::warn!(attempt = failed_attempts, error = %chain(e), "could not record the outcome; trying again");
            })
            .await;
        match recorded {
            Ok(()) => {}
            Err(StoreError::LeaseLost(_)) => {
                tracing::warn!(
                    "lost the lease while calling Mavera (the call outlived it); another delivery owns the job now"
                );
            }
            Err(e) => {
                tracing::error!(error = %chain(&e), status = %outcome.status(), result = ?outcome, "could not record the outcome; the message is deleted so Mavera is not called twice, and the record stays RUNNING");
            }
        }
    }
}

/// One message's work, once its rule is known.
enum Work<'a> {
    Event { rule: &'a Rule, event: Event },
    Analysis(CampaignAnalysis),
    Persona(ClusterPersona),
}

fn already_done_result(request: &MaveraRequest) -> serde_json::Value {
    let name = match request {
        MaveraRequest::CreatePersona(p) => Some(p.name.as_str()),
        _ => None,
    };
    serde_json::json!({"action": "create_persona", "already_existed": true, "name": name})
}

fn log_outcome(outcome: &Outcome, attempt: u32, started: Instant) {
    let elapsed_ms = started.elapsed().as_millis() as u64;
    match outcome {
        Outcome::Done { result } => {
            let id = ["/persona_id", "/thread_id", "/generation_id", "/generation/generation_id"]
                .iter()
                .find_map(|k| result.pointer(k))
                .and_then(|v| v.as_str());
            let credits = result.get("credits").and_then(|v| v.as_f64());
            let dry_run = result.get("dry_run").is_some();
            tracing::info!(
                outcome = "done",
                attempt,
                elapsed_ms,
                mavera_id = id.unwrap_or("-"),
                credits,
                dry_run,
                "job done"
            );
        }
        Outcome::Failed { reason, class } => {
            tracing::warn!(outcome = "failed", class = class.as_str(), attempt, elapsed_ms, %reason, "job failed permanently; not retried")
        }
        Outcome::Skipped { reason } => tracing::info!(outcome = "skipped", attempt, elapsed_ms, %reason, "job skipped"),
    }
}
