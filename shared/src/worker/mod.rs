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
mod deliver;
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
pub use deliver::{DRY_RUN_REASON, DeliveryTally};
pub use enrich::{CioEnricher, Enrich, Enriched, Unknown, classify};
pub use result::{MAX_TEXT_CHARS, summarize};
pub use settings::{BuildError, Deliveries, Enrichment, Mavera, Settings, TriggerConfig, build};

use crate::deliver::Destinations;
use crate::domain::{Event, JobKey, PersonaName, RuleName};
use crate::mavera::{Duplicate, ErrorClass, MaveraApi, MaveraError, MaveraRequest, MaveraResponse};
use crate::queue::{CampaignAnalysis, ClusterPersona, Job, JobMessage};
use crate::retry;
use crate::rules::{Rule, Rules};
use crate::store::{
    CacheStore, DeliveryStore, FailureClass, GuardStore, JobStatus, JobStore, Lease, Outcome, Start, StartJob,
    StoreError, utc_day,
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
    /// The job's result is saved, but some destinations are still unsent: hand the message
    /// back, so its next delivery sends only those. `finished` is set when the job ended
    /// now (this delivery called Mavera), not on an earlier one.
    Undelivered { finished: Option<JobStatus>, reason: String },
}

impl Disposition {
    /// Whether the message can be deleted from the queue.
    pub fn ack(&self) -> bool {
        !matches!(self, Disposition::Retry { .. } | Disposition::Undelivered { .. })
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
    /// The job looked the person up in Customer.io: whether nobody was found.
    pub lookup_not_found: Option<bool>,
    /// What each destination came to in this delivery.
    pub deliveries: Vec<DeliveryTally>,
}

impl JobTally {
    /// `spent`: credits a job that did not finish `Done` is known to have cost.
    fn of(rule: &RuleName, outcome: &Outcome, spent: Option<f64>) -> Self {
        let (failure, credits) = match outcome {
            Outcome::Done { result } => (None, result.get("credits").and_then(serde_json::Value::as_f64)),
            Outcome::Failed { class, .. } => (Some(*class), spent),
            Outcome::Skipped { .. } => (None, spent),
        };
        JobTally { rule: Some(rule.clone()), failure, credits, lookup_not_found: None, deliveries: Vec::new() }
    }
}

/// What the worker keeps in the event store beside the job's status: guard marks (daily caps,
/// once per user), the progress of multi-step jobs (a campaign analysis keeps Mave's answer
/// until Generate has run) and each destination's delivery state. Every store implements all.
pub trait WorkerState: GuardStore + CacheStore + DeliveryStore {}
impl<T: GuardStore + CacheStore + DeliveryStore> WorkerState for T {}

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
    /// Where results go; none until [`Worker::with_destinations`].
    destinations: Destinations,
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
    /// Mavera refused a persona as a duplicate name (see [`Worker::existing_persona`]).
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
        Ok(Worker { rules, scheduled, jobs, guards, mavera, enricher, disabled, destinations: Destinations::none() })
    }

    /// Delivers results to `destinations` (without them, every rule's deliveries are
    /// recorded failed). Warns of each rule whose destination is off, once, at start-up.
    pub fn with_destinations(mut self, destinations: Destinations) -> Self {
        for destination in crate::deliver::DestinationName::ALL {
            let rules = self.rules.delivering_to(destination);
            if let (Some(why), false) = (destinations.off(destination), rules.is_empty()) {
                let names: Vec<&str> = rules.iter().map(|r| r.name.as_str()).collect();
                tracing::warn!(
                    destination = destination.as_str(),
                    "{destination} is off ({why}): the deliveries of {} to it are recorded failed; the rest run",
                    names.join(", ")
                );
            }
        }
        self.destinations = destinations;
        self
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
        let disposition = self.run(message, body, deadline, &mut tally).instrument(span).await;
        (disposition, tally)
    }

    /// Runs `message`; `body` is its text, which the record keeps for a replay.
    async fn run(&self, message: JobMessage, body: &str, deadline: Instant, tally: &mut JobTally) -> Disposition {
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
        let user = match &work {
            Work::Event { event, .. } => event.user_id.clone(),
            Work::Analysis(_) | Work::Persona(_) => None,
        };
        let starting =
            StartJob { key: &key, rule: &rule_name, lease: &lease, message: body, user: user.as_deref(), now };
        let attempt = match self.jobs.start(&starting).await {
            Ok(Start::Started { attempt }) => attempt,
            Ok(Start::Finished(JobStatus::Done)) if let Work::Event { rule, event } = &mut work => {
                // Mavera's part is done; the result may still be owed to some destinations.
                return self.deliver_again(rule, event, &key, deadline, tally).await;
            }
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

        let mut trail = Trail::default();
        let mut spent = None;
        let result = match &mut work {
            Work::Event { rule, event } => self.execute(rule, event, &key, attempt, &mut trail, deadline).await,
            Work::Analysis(job) => self.analyse(job, &key, &mut trail.notes, &mut spent, deadline).await,
            Work::Persona(job) => self.create_cluster_persona(job, &mut trail.notes, deadline).await,
        };
        match result {
            Ok(outcome) => {
                let status = outcome.status();
                log_outcome(&outcome, attempt, started);
                *tally =
                    JobTally { lookup_not_found: trail.lookup_not_found, ..JobTally::of(&rule_name, &outcome, spent) };
                let recorded = self.record(&key, &owner, &outcome, &trail.notes).await;
                if let (JobStatus::Done, true, Work::Event { rule, event }) = (status, recorded, &work)
                    && let deliver::Delivered::Unsent(reason) =
                        self.deliver(rule, event, &key, deadline, &mut tally.deliveries).await
                {
                    return Disposition::Undelivered { finished: Some(status), reason };
                }
                Disposition::Finished(status)
            }
            Err(Transient(reason)) => {
                tally.lookup_not_found = trail.lookup_not_found;
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
        trail: &mut Trail,
        deadline: Instant,
    ) -> Result<Outcome, Transient> {
        let Trail { notes, lookup_not_found } = trail;
        if let Some((_, why)) = self.disabled.iter().find(|(name, _)| *name == rule.name) {
            return Ok(Outcome::Skipped { reason: format!("rule `{}` is disabled: {why}", rule.name) });
        }
        let mut unknown = None;
        if rule.enrich
            && let Some(enricher) = &self.enricher
        {
            let enriched = enricher.enrich(event, deadline).await;
            unknown = enriched.unknown;
            if enriched.known {
                *lookup_not_found = Some(enriched.not_found);
            }
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
        let failed = match self.call(&request, deadline).await? {
            Called::Answered(response) => return Ok(Outcome::Done { result: summarize(&response) }),
            Called::AlreadyDone(e) => match self.existing_persona(&request, &e, notes, deadline).await? {
                Some(result) => return Ok(Outcome::Done { result }),
                None => e,
            },
            Called::Failed(e) => e,
        };
        if let Some(user) = reserved_user
            && let Err(forget) = self.guards.forget_once_per_user(&rule.name, &user, key).await
        {
            tracing::warn!(error = %chain(&forget), "could not drop the once_per_user mark after a permanent failure");
        }
        Ok(Outcome::Failed { reason: failed.to_string(), class: failed.failure_class() })
    }

    /// Mavera refused a persona as a duplicate (`refusal`): the persona that has the name, looked
    /// up with the free `GET /personas`, so the record names it. `Some(result)` when the job
    /// counts as done; `None` when the refusal turns out not to be a duplicate (its reason
    /// only named the `name` field, and no persona has the name), which fails the job.
    async fn existing_persona(
        &self,
        request: &MaveraRequest,
        refusal: &MaveraError,
        notes: &mut Vec<String>,
        deadline: Instant,
    ) -> Result<Option<serde_json::Value>, Transient> {
        let MaveraRequest::CreatePersona(persona) = request else {
            return Ok(None);
        };
        let name = persona.name.as_str();
        let stated = refusal.duplicate() == Some(Duplicate::Stated);
        let lookup_deadline = deadline.checked_sub(FINISH_MARGIN).unwrap_or_else(Instant::now);
        match self.mavera.find_persona(name, lookup_deadline).await {
            Ok(Some(existing)) => {
                notes.push(format!("Mavera: {refusal}; persona {} has this name", existing.id));
                Ok(Some(already_done_result(name, Some(&existing.id))))
            }
            Ok(None) if stated => {
                notes.push(format!("Mavera: {refusal}"));
                notes.push(format!(
                    "GET /personas does not list a persona named exactly \"{name}\", so its id is not recorded"
                ));
                Ok(Some(already_done_result(name, None)))
            }
            Ok(None) => {
                notes.push(format!("no persona is named exactly \"{name}\", so Mavera's 422 is not a duplicate"));
                Ok(None)
            }
            Err(e) if e.class() == ErrorClass::Transient => Err(Transient(format!(
                "Mavera refused the persona as a duplicate and looking it up failed: {e}; the retry asks again (a \
                 refused POST costs nothing)"
            ))),
            Err(e) if stated => {
                notes.push(format!("Mavera: {refusal}"));
                notes.push(format!("looking the persona up failed, so its id is not recorded: {e}"));
                Ok(Some(already_done_result(name, None)))
            }
            Err(e) => {
                notes.push(format!("looking the name up to confirm a duplicate failed: {e}"));
                Ok(None)
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

    /// A message of a job already `DONE`: sends what its destinations still lack. Mavera is
    /// not called again.
    async fn deliver_again(
        &self,
        rule: &Rule,
        event: &mut Event,
        key: &JobKey,
        deadline: Instant,
        tally: &mut JobTally,
    ) -> Disposition {
        if rule.deliver.is_empty() {
            tracing::info!(outcome = "already_finished", status = %JobStatus::Done, "job already ended; message dropped");
            return Disposition::AlreadyFinished(JobStatus::Done);
        }
        tally.rule = Some(rule.name.clone());
        // Templates reading customer.* need the attributes again (usually from the cache).
        if rule.enrich
            && rule.deliver.iter().any(|t| t.fields().iter().any(|f| f.first() == "customer"))
            && let Some(enricher) = &self.enricher
        {
            enricher.enrich(event, deadline).await;
        }
        match self.deliver(rule, event, key, deadline, &mut tally.deliveries).await {
            deliver::Delivered::Unsent(reason) => Disposition::Undelivered { finished: None, reason },
            deliver::Delivered::Busy => Disposition::HeldElsewhere,
            deliver::Delivered::Ended | deliver::Delivered::Nothing => {
                tracing::info!(outcome = "already_finished", status = %JobStatus::Done, "job already ended; nothing left to deliver");
                Disposition::AlreadyFinished(JobStatus::Done)
            }
        }
    }

    /// Records the outcome, trying a little harder than usual: the Mavera call has happened,
    /// and a retry would repeat it. If it still fails the message is deleted anyway (a
    /// stuck `RUNNING` record beats a second 300-credit persona) and the log says so.
    /// `true` once it is recorded.
    async fn record(&self, key: &JobKey, owner: &str, outcome: &Outcome, notes: &[String]) -> bool {
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
            Ok(()) => return true,
            Err(StoreError::LeaseLost(_)) => {
                tracing::warn!(
                    "lost the lease while calling Mavera (the call outlived it); another delivery owns the job now"
                );
            }
            Err(e) => {
                tracing::error!(error = %chain(&e), status = %outcome.status(), result = ?outcome, "could not record the outcome; the message is deleted so Mavera is not called twice, and the record stays RUNNING");
            }
        }
        false
    }
}

/// What a job leaves besides its outcome: remarks for its record, and whether its attribute
/// lookup found nobody (for the `customers_not_found` metric).
#[derive(Debug, Default)]
struct Trail {
    notes: Vec<String>,
    lookup_not_found: Option<bool>,
}

/// One message's work, once its rule is known.
enum Work<'a> {
    Event { rule: &'a Rule, event: Event },
    Analysis(CampaignAnalysis),
    Persona(ClusterPersona),
}

/// A persona that existed before the job: its name and, when found, its id.
fn already_done_result(name: &str, persona_id: Option<&str>) -> serde_json::Value {
    serde_json::json!({"action": "create_persona", "already_existed": true, "name": name, "persona_id": persona_id})
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
