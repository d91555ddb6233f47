//! The request path of the ingest function: verify → parse → match → claim → queue.
//! Framework-free ([`Ingest::handle`] takes a source, headers and raw bytes); [`router`]
//! puts it behind HTTP. [`build`] is the one wiring the Lambda, `relay serve` and the tests
//! share: [`Settings`] from the variables, a claim store and a queue in, the router out.

mod error;
mod report;
mod router;
mod settings;
mod source_ip;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use futures::StreamExt;
use http::HeaderMap;
use tokio::time::{Instant, timeout_at};

pub use error::ApiError;
pub use report::{EventError, EventReport, JobReport, Report, Status};
pub use router::{BODY_TIMEOUT, MAX_BODY_BYTES, router, router_with_body_timeout};
pub use settings::Settings;
pub use source_ip::source_ip;

pub use crate::verify::IpAllowList;

use crate::domain::{Event, JobKey, RuleName, Source};
use crate::health::Board;
use crate::parse::{self, Envelope, ParseError};
use crate::queue::{JobMessage, JobQueue, QueueError};
use crate::rules::Rules;
use crate::store::{CacheStore, Claim, ClaimStore, NewJob, StoreError};
use crate::telemetry::Metrics;
use crate::verify::{self, SignatureCoverage, Verifiers, VerifyError};

/// How many jobs of one request are claimed and queued at once (a Segment batch can hold
/// hundreds of events).
const CONCURRENT_JOBS: usize = 16;

/// Every request is answered within this, inside the shortest sender deadline (Customer.io
/// gives up after 4 s; Segment after 5 s). A sender that gave up retries, and a retry that
/// meets a claim still being sent is told to retry again rather than `duplicate`, so an
/// answer that comes too late loses nothing; but a request that always times out never
/// gets through, and Customer.io holds back every later event behind it.
pub const REQUEST_BUDGET: Duration = Duration::from_millis(3500);

/// Kept back from [`REQUEST_BUDGET`] to delete the claims of jobs whose send did not finish.
const RELEASE_RESERVE: Duration = Duration::from_millis(500);

pub struct Ingest {
    rules: Arc<Rules>,
    verifiers: Verifiers,
    claims: Arc<dyn ClaimStore>,
    queue: Arc<dyn JobQueue>,
    /// `CIO_ALLOWED_SOURCE_IPS`: where Customer.io webhooks may come from (`None`: anywhere).
    cio_sources: Option<IpAllowList>,
    /// The other functions' health reports, for `/healthz` (`None`: none to read here).
    health: Option<Board>,
}

/// The most events a batch signed on its first event only may hold: its other events are
/// unauthenticated, so this bounds what one captured signature can carry.
pub const MAX_FIRST_EVENT_SIGNED_EVENTS: usize = 100;

static FIRST_EVENT_MARKER: std::sync::LazyLock<RuleName> =
    std::sync::LazyLock::new(|| RuleName::parse("first-event-signed-batch").expect("a valid name"));

/// The record that a first-event signature was used, held while its request is handled.
struct FirstUse {
    key: JobKey,
    token: String,
}

impl FirstUse {
    /// Keeps the marker for good once the batch was accepted; drops it if the request failed.
    async fn settle(self, claims: &dyn ClaimStore, accepted: bool, deadline: Instant) {
        let settled = if accepted {
            timeout_at(deadline, claims.seal_claim(&self.key, &self.token)).await
        } else {
            timeout_at(deadline, claims.release_claim(&self.key, &self.token)).await
        };
        match settled {
            Ok(Ok(())) => {}
            // Kept too long: the marker's lease runs out, after which the signature could be
            // used once more; dropped too late: the retry waits out the lease.
            Ok(Err(e)) => {
                tracing::error!(key = %self.key, accepted, error = %crate::telemetry::chain(&e), "could not settle the batch signature marker")
            }
            Err(_) => tracing::error!(key = %self.key, accepted, "could not settle the batch signature marker in time"),
        }
    }
}

/// What [`Ingest::handle`] accepted: the answer, and what the log and metrics add to it.
#[derive(Debug)]
pub struct Accepted {
    pub report: Report,
    /// How long ago a Customer.io request was signed (its `X-CIO-Timestamp`), in seconds:
    /// a retry Customer.io held back shows here as hours or days.
    pub signed_age_secs: Option<i64>,
}

struct Verified {
    coverage: SignatureCoverage,
    signed_age_secs: Option<i64>,
}

/// One job ready to claim and send: everything that can fail on bad input has been
/// checked before any job of the request is stored.
struct Prepared {
    index: usize,
    event_id: String,
    key: JobKey,
    rule: RuleName,
    body: String,
    /// Already known without a claim: a second copy of a job in the same request.
    status: Option<Status>,
}

/// Puts ingest together and behind HTTP, the same way wherever it runs.
pub fn build(settings: Settings, claims: Arc<dyn ClaimStore>, queue: Arc<dyn JobQueue>, metrics: Metrics) -> Router {
    router(Arc::new(Ingest::new(settings, claims, queue, None)), metrics)
}

/// [`build`], with `/healthz` also showing what the worker and cio-sync reported at their
/// cold starts, read from `health` (the events table).
pub fn build_reporting(
    settings: Settings,
    claims: Arc<dyn ClaimStore>,
    queue: Arc<dyn JobQueue>,
    health: Arc<dyn CacheStore>,
    metrics: Metrics,
) -> Router {
    router(Arc::new(Ingest::new(settings, claims, queue, Some(health))), metrics)
}

/// [`build_reporting`], giving a request's body `body_timeout` to arrive (`relay serve
/// --request-timeout`).
pub fn build_with_body_timeout(
    settings: Settings,
    claims: Arc<dyn ClaimStore>,
    queue: Arc<dyn JobQueue>,
    health: Arc<dyn CacheStore>,
    metrics: Metrics,
    body_timeout: Duration,
) -> Router {
    router_with_body_timeout(Arc::new(Ingest::new(settings, claims, queue, Some(health))), metrics, body_timeout)
}

impl Ingest {
    fn new(
        settings: Settings,
        claims: Arc<dyn ClaimStore>,
        queue: Arc<dyn JobQueue>,
        health: Option<Arc<dyn CacheStore>>,
    ) -> Self {
        let Settings { rules, verifiers, cio_sources } = settings;
        Ingest { rules, verifiers, claims, queue, cio_sources, health: health.map(Board::new) }
    }

    /// What the worker and cio-sync reported at their cold starts, or why that is unknown.
    pub async fn other_functions(&self) -> serde_json::Map<String, serde_json::Value> {
        match &self.health {
            Some(board) => board.read().await,
            None => crate::health::REPORTING
                .iter()
                .map(|f| {
                    (
                        (*f).to_owned(),
                        serde_json::json!({"status": "unknown", "reason": "this ingest reads no reports"}),
                    )
                })
                .collect(),
        }
    }

    /// Whether webhooks from `source` can be verified (its secret is set).
    pub fn is_live(&self, source: Source) -> bool {
        match source {
            Source::Segment => self.verifiers.segment.is_some(),
            Source::CustomerIo => self.verifiers.customerio.is_some(),
        }
    }

    /// What each source's endpoint does now, for `/healthz`: `live`, or why it is off.
    pub fn source_states(&self) -> Vec<(Source, String)> {
        let listened = self.rules.sources();
        Source::ALL
            .iter()
            .map(|&source| {
                let state = match (self.is_live(source), listened.contains(&source)) {
                    (true, _) => "live".to_owned(),
                    (false, true) => format!("off: {} is not set (503 source_disabled)", secret_var(source)),
                    (false, false) => "off: no rule and no secret (404)".to_owned(),
                };
                (source, state)
            })
            .collect()
    }

    /// The checks that need only the request line and headers, made before the body is read
    /// (cheapest first): the source is on, the sender's address is allowed, the request is
    /// signed.
    pub fn admit(&self, source: Source, headers: &HeaderMap, from: Option<std::net::IpAddr>) -> Result<(), ApiError> {
        if !self.is_live(source) {
            return Err(match self.rules.sources().contains(&source) {
                true => ApiError::SourceDisabled { sender: source, var: secret_var(source) },
                false => ApiError::SourceNotConfigured(source),
            });
        }
        if source == Source::CustomerIo
            && let Some(allowed) = &self.cio_sources
            && !from.is_some_and(|ip| allowed.allows(ip))
        {
            return Err(ApiError::SourceIpNotAllowed {
                sender: source,
                var: crate::config::vars::CIO_ALLOWED_SOURCE_IPS,
                ip: from,
            });
        }
        verify::require_signature_headers(source, headers).map_err(ApiError::Signature)
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Handles one webhook request. `Err` means nothing was queued by this request, except
    /// for store or queue failures, after which the sender's retry is deduplicated. In a
    /// Segment batch a bad event is reported in the answer and the others go on (Segment
    /// does not retry a 4xx, which would lose the good ones too).
    pub async fn handle(&self, source: Source, headers: &HeaderMap, body: &[u8]) -> Result<Accepted, ApiError> {
        let deadline = Instant::now() + REQUEST_BUDGET;
        let Verified { coverage, signed_age_secs } = self.verify(source, headers, body)?;
        let parsed = parse::batch(source, body).map_err(ApiError::Payload)?;
        let batch = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
        let now = SystemTime::now();

        let marker = match coverage {
            SignatureCoverage::WholeBody => None,
            SignatureCoverage::FirstEventOnly => Some(self.first_use_of_signature(&parsed, now, deadline).await?),
        };
        let result = self.accept(source, &parsed, batch, now, deadline).await;
        if let Some(marker) = marker {
            marker.settle(self.claims.as_ref(), result.is_ok(), deadline).await;
        }
        Ok(Accepted { report: result?, signed_age_secs })
    }

    /// Matches, claims and queues the events of a verified request.
    async fn accept(
        &self,
        source: Source,
        parsed: &[Result<Envelope<'_>, ParseError>],
        batch: bool,
        now: SystemTime,
        deadline: Instant,
    ) -> Result<Report, ApiError> {
        // Phase 1, no side effects: match rules and encode every job. A bad event fails a
        // single-event request; in a batch it is reported and skipped.
        let mut reports = Vec::with_capacity(parsed.len());
        let mut prepared = Vec::new();
        let mut first_refusal = None;
        // A batch may carry the same event twice: claimed once, the other copy is its duplicate
        // (two claims of one job in one request would meet each other's claim in flight).
        let mut keys = std::collections::HashSet::new();
        for (index, envelope) in parsed.iter().enumerate() {
            let jobs_before = prepared.len();
            let read = self.prepare(source, index, envelope, now, &mut keys, &mut prepared);
            match read {
                Ok(report) => reports.push(report),
                Err((event_id, error)) if batch => {
                    prepared.truncate(jobs_before);
                    reports.push(EventReport::rejected(event_id, index, error.code(), error.kind(), error.to_string()));
                    first_refusal.get_or_insert(error);
                }
                Err((_, error)) => return Err(error),
            }
        }
        if let Some(error) = first_refusal
            && reports.iter().all(|r| r.status == Status::Rejected)
        {
            // Nothing in the batch was usable: say why the first event was not.
            return Err(error);
        }

        // Phase 2: claim and send, a bounded number at once; results keep their order.
        let outcomes: Vec<_> = futures::stream::iter(prepared)
            .map(|job| async move {
                let status = match job.status {
                    Some(status) => Ok(status),
                    None => self.enqueue(&job, now, deadline).await,
                };
                (job, status)
            })
            .buffered(CONCURRENT_JOBS)
            .collect()
            .await;
        let mut first_error = None;
        for (job, status) in outcomes {
            match status {
                Ok(status) => reports[job.index].jobs.push(JobReport { rule: job.rule.to_string(), status }),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        for report in &mut reports {
            report.settle();
        }
        Ok(if batch { Report::batch(reports) } else { Report::Single(reports.remove(0)) })
    }

    /// One event's report and jobs, or why it cannot be accepted (with its id, if it has one).
    fn prepare(
        &self,
        source: Source,
        index: usize,
        envelope: &Result<Envelope<'_>, ParseError>,
        now: SystemTime,
        keys: &mut std::collections::HashSet<JobKey>,
        prepared: &mut Vec<Prepared>,
    ) -> Result<EventReport, (Option<String>, ApiError)> {
        let envelope = envelope.as_ref().map_err(|e| (None, ApiError::Payload(e.clone())))?;
        let id = || Some(envelope.id.to_string());
        verify::segment::check_event_age(envelope.sent_at, now).map_err(|e| (id(), ApiError::Signature(e)))?;
        let mut report = EventReport::new(envelope.id.as_str());
        if !self.rules.listens_for(source, &envelope.name) {
            report.reason = Some(format!("no rule listens for `{}` from {source}", envelope.name));
            return Ok(report);
        }
        let event: Event = envelope.to_event().map_err(|e| (id(), ApiError::Payload(e)))?;
        let jobs_before = prepared.len();
        for rule in self.rules.matching(&event) {
            let key = JobKey::for_event(source, &event.id, &rule.name);
            let body = JobMessage::event_body(&key, &rule.name, &event)
                .map_err(|e| (id(), ApiError::TooLargeForQueue { event_id: event.id.to_string(), source: e }))?;
            let status = (!keys.insert(key.clone())).then_some(Status::Duplicate);
            prepared.push(Prepared {
                index,
                event_id: event.id.to_string(),
                key,
                rule: rule.name.clone(),
                body,
                status,
            });
        }
        if prepared.len() == jobs_before {
            report.reason = Some(format!("`{}` matched no rule's conditions", envelope.name));
        }
        Ok(report)
    }

    /// A batch signed on its first event only (`SEGMENT_ALLOW_FIRST_EVENT_SIGNATURE=true`):
    /// events 2..n are unauthenticated, and Segment signs no timestamp, so such a signature
    /// is accepted once. Its first event must be dated within the dedupe horizon and never
    /// accepted before, and the batch is bounded. The marker returned is settled once the
    /// request is answered: kept if it was accepted, dropped if it failed (so Segment's retry
    /// of a failed request gets through).
    async fn first_use_of_signature(
        &self,
        parsed: &[Result<Envelope<'_>, ParseError>],
        now: SystemTime,
        deadline: Instant,
    ) -> Result<FirstUse, ApiError> {
        if parsed.len() > MAX_FIRST_EVENT_SIGNED_EVENTS {
            return Err(ApiError::BatchTooLarge { events: parsed.len(), limit: MAX_FIRST_EVENT_SIGNED_EVENTS });
        }
        let first = match parsed.first() {
            Some(Ok(first)) => first,
            Some(Err(e)) => return Err(ApiError::Payload(e.clone())),
            None => return Err(ApiError::Payload(ParseError::EmptyBatch)),
        };
        let Some(sent_at) = first.sent_at else {
            return Err(ApiError::Signature(VerifyError::UndatedFirstEvent));
        };
        verify::segment::check_event_age(Some(sent_at), now).map_err(ApiError::Signature)?;
        // Under the source's own key prefix (ingest may touch no other), with a suffix no
        // rule name can have, so it is never a job's key.
        let key = JobKey::from_stored(format!("segment#{}#~first-event-signature", first.id));
        let token = uuid::Uuid::new_v4().to_string();
        let claim = timeout_at(
            deadline.checked_sub(RELEASE_RESERVE).unwrap_or(deadline),
            self.claims.claim(&NewJob { key: &key, rule: &FIRST_EVENT_MARKER, token: &token, now }),
        )
        .await
        .unwrap_or_else(|_| Err(StoreError::unavailable(too_slow("recording the batch's signature"))));
        match claim.map_err(ApiError::Store)? {
            Claim::Claimed => {}
            Claim::InFlight => return Err(ApiError::InFlight { event_id: first.id.to_string() }),
            Claim::Duplicate(_) => {
                return Err(ApiError::Signature(VerifyError::BatchReplayed { first_event: first.id.to_string() }));
            }
        }
        tracing::warn!(
            events = parsed.len(),
            first_event = %first.id,
            "accepting a batch signed on its first event only (SEGMENT_ALLOW_FIRST_EVENT_SIGNATURE=true): events 2..n are unauthenticated"
        );
        Ok(FirstUse { key, token })
    }

    fn verify(&self, source: Source, headers: &HeaderMap, body: &[u8]) -> Result<Verified, ApiError> {
        match source {
            Source::Segment => {
                let verifier = self.verifiers.segment.as_ref().ok_or(ApiError::SourceNotConfigured(source))?;
                let coverage = verifier.verify(headers, body).map_err(ApiError::Signature)?;
                Ok(Verified { coverage, signed_age_secs: None })
            }
            Source::CustomerIo => {
                let verifier = self.verifiers.customerio.as_ref().ok_or(ApiError::SourceNotConfigured(source))?;
                let age = verifier.verify(headers, body, SystemTime::now()).map_err(ApiError::Signature)?;
                Ok(Verified { coverage: SignatureCoverage::WholeBody, signed_age_secs: Some(age) })
            }
        }
    }

    /// Claim, then send, by `deadline`; if the send fails or does not finish in time,
    /// delete the claim so the sender's retry can claim it again, and answer 5xx.
    async fn enqueue(&self, job: &Prepared, now: SystemTime, deadline: Instant) -> Result<Status, ApiError> {
        let work_deadline = deadline.checked_sub(RELEASE_RESERVE).unwrap_or(deadline);
        let token = uuid::Uuid::new_v4().to_string();
        let claim = timeout_at(
            work_deadline,
            self.claims.claim(&NewJob { key: &job.key, rule: &job.rule, token: &token, now }),
        )
        .await
        .unwrap_or_else(|_| Err(StoreError::unavailable(too_slow("claiming the job"))));
        match claim.map_err(ApiError::Store)? {
            Claim::Duplicate(_) => Ok(Status::Duplicate),
            Claim::InFlight => Err(ApiError::InFlight { event_id: job.event_id.clone() }),
            Claim::Claimed => {
                let sent = timeout_at(work_deadline, self.queue.send(job.body.clone()))
                    .await
                    .unwrap_or_else(|_| Err(QueueError::unavailable(too_slow("sending the job"))));
                let Err(send_error) = sent else { return Ok(Status::Queued) };
                // A send that timed out may still arrive: then the job is queued twice if the
                // retry queues it again, which the worker absorbs. Deleting the claim is what
                // lets the retry through.
                let released = timeout_at(deadline, self.claims.release_claim(&job.key, &token))
                    .await
                    .unwrap_or_else(|_| Err(StoreError::unavailable(too_slow("deleting the claim"))));
                if let Err(release_error) = released {
                    // The claim expires with its lease, after which a retry takes it over.
                    tracing::error!(key = %job.key, error = %crate::telemetry::chain(&release_error), "could not delete the claim after a failed send");
                }
                Err(ApiError::Queue(send_error))
            }
        }
    }
}

/// The variable holding `source`'s signing secret.
fn secret_var(source: Source) -> &'static str {
    match source {
        Source::Segment => crate::vars::SEGMENT_SHARED_SECRET,
        Source::CustomerIo => crate::vars::CIO_WEBHOOK_SECRET,
    }
}

fn too_slow(what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("{what} did not finish within the request budget ({} ms)", REQUEST_BUDGET.as_millis()),
    )
}
