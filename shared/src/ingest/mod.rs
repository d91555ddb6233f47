//! The request path of the ingest function: verify → parse → match → claim → queue.
//! Framework-free ([`Ingest::handle`] takes a source, headers and raw bytes); [`router`]
//! puts it behind HTTP for both Lambda and `relay serve`.

mod error;
mod report;
mod router;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use http::HeaderMap;
use tokio::time::{Instant, timeout_at};

pub use error::ApiError;
pub use report::{EventReport, JobReport, Report, Status};
pub use router::{MAX_BODY_BYTES, router};

use crate::config::Verifiers;
use crate::domain::{Event, JobKey, Source};
use crate::parse::envelopes;
use crate::queue::{JobMessage, JobQueue, QueueError};
use crate::rules::Rules;
use crate::store::{Claim, ClaimStore, NewJob, StoreError};
use crate::verify::SignatureCoverage;

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
    rule: crate::domain::RuleName,
    body: String,
    /// Already known without a claim: a second copy of a job in the same request.
    status: Option<Status>,
}

impl Ingest {
    pub fn new(rules: Arc<Rules>, verifiers: Verifiers, claims: Arc<dyn ClaimStore>, queue: Arc<dyn JobQueue>) -> Self {
        Ingest { rules, verifiers, claims, queue }
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Handles one webhook request. `Err` means nothing was queued by this request, except
    /// for store or queue failures, after which the sender's retry is deduplicated.
    pub async fn handle(&self, source: Source, headers: &HeaderMap, body: &[u8]) -> Result<Accepted, ApiError> {
        let deadline = Instant::now() + REQUEST_BUDGET;
        let Verified { coverage, signed_age_secs } = self.verify(source, headers, body)?;
        let envelopes = envelopes(source, body).map_err(ApiError::Payload)?;
        let batch = envelopes.len() > 1 || envelopes.first().is_some_and(|e| e.index.is_some());
        if coverage == SignatureCoverage::FirstEventOnly {
            tracing::warn!(
                %source,
                events = envelopes.len(),
                "accepted a batch signed on its first event only (SEGMENT_ALLOW_FIRST_EVENT_SIGNATURE=true): events 2..n are unauthenticated"
            );
        }

        // Phase 1, no side effects: match rules and encode every job.
        let mut reports = Vec::with_capacity(envelopes.len());
        let mut prepared = Vec::new();
        // A batch may carry the same event twice: claimed once, the other copy is its duplicate
        // (two claims of one job in one request would meet each other's claim in flight).
        let mut keys = std::collections::HashSet::new();
        for (index, envelope) in envelopes.iter().enumerate() {
            let mut report = EventReport::new(envelope.id.as_str());
            if !self.rules.listens_for(source, &envelope.name) {
                report.reason = Some(format!("no rule listens for `{}` from {source}", envelope.name));
                reports.push(report);
                continue;
            }
            let event: Event = envelope.to_event().map_err(ApiError::Payload)?;
            let jobs_before = prepared.len();
            for rule in self.rules.matching(&event) {
                let key = JobKey::for_event(source, &event.id, &rule.name);
                let body = JobMessage::event_body(&key, &rule.name, &event)
                    .map_err(|e| ApiError::TooLargeForQueue { event_id: event.id.to_string(), source: e })?;
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
            reports.push(report);
        }

        // Phase 2: claim and send, a bounded number at once; results keep their order.
        let now = SystemTime::now();
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
        let report = if batch { Report::batch(reports) } else { Report::Single(reports.remove(0)) };
        Ok(Accepted { report, signed_age_secs })
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

fn too_slow(what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("{what} did not finish within the request budget ({} ms)", REQUEST_BUDGET.as_millis()),
    )
}
