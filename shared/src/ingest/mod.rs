//! The request path of the ingest function: verify → parse → match → claim → queue.
//! Framework-free ([`Ingest::handle`] takes a source, headers and raw bytes); [`router`]
//! puts it behind HTTP. [`build`] is the one wiring the Lambda, `relay serve` and the tests
//! share: [`Settings`] from the variables, a claim store and a queue in, the router out.

mod error;
mod report;
mod router;
mod settings;

use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use futures::StreamExt;
use http::HeaderMap;

pub use error::ApiError;
pub use report::{EventReport, JobReport, Report, Status};
pub use router::{MAX_BODY_BYTES, router};
pub use settings::Settings;

use crate::domain::{Event, JobKey, Source};
use crate::parse::envelopes;
use crate::queue::{JobMessage, JobQueue};
use crate::rules::Rules;
use crate::store::{Claim, ClaimStore, NewJob};
use crate::telemetry::Metrics;
use crate::verify::{SignatureCoverage, Verifiers};

/// How many jobs of one request are claimed and queued at once (a Segment batch can hold
/// hundreds of events).
const CONCURRENT_JOBS: usize = 16;

pub struct Ingest {
    rules: Arc<Rules>,
    verifiers: Verifiers,
    claims: Arc<dyn ClaimStore>,
    queue: Arc<dyn JobQueue>,
}

/// One job ready to claim and send: everything that can fail on bad input has been
/// checked before any job of the request is stored.
struct Prepared {
    index: usize,
    key: JobKey,
    rule: crate::domain::RuleName,
    body: String,
}

/// Puts ingest together and behind HTTP, the same way wherever it runs.
pub fn build(settings: Settings, claims: Arc<dyn ClaimStore>, queue: Arc<dyn JobQueue>, metrics: Metrics) -> Router {
    router(Arc::new(Ingest::new(settings, claims, queue)), metrics)
}

impl Ingest {
    fn new(settings: Settings, claims: Arc<dyn ClaimStore>, queue: Arc<dyn JobQueue>) -> Self {
        let Settings { rules, verifiers } = settings;
        Ingest { rules, verifiers, claims, queue }
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Handles one webhook request. `Err` means nothing was queued by this request, except
    /// for store or queue failures, after which the sender's retry is deduplicated.
    pub async fn handle(&self, source: Source, headers: &HeaderMap, body: &[u8]) -> Result<Report, ApiError> {
        let coverage = self.verifiers.verify(source, headers, body, SystemTime::now())?;
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
                prepared.push(Prepared { index, key, rule: rule.name.clone(), body });
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
                let status = self.enqueue(&job, now).await;
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

    /// Claim, then send; if the send fails, delete the claim so the sender's retry can
    /// claim it again, and answer 5xx.
    async fn enqueue(&self, job: &Prepared, now: SystemTime) -> Result<Status, ApiError> {
        let token = uuid::Uuid::new_v4().to_string();
        let claim = self.claims.claim(&NewJob { key: &job.key, rule: &job.rule, token: &token, now }).await;
        match claim.map_err(ApiError::Store)? {
            Claim::Duplicate(_) => Ok(Status::Duplicate),
            Claim::Claimed => match self.queue.send(job.body.clone()).await {
                Ok(()) => Ok(Status::Queued),
                Err(send_error) => {
                    if let Err(release_error) = self.claims.release_claim(&job.key, &token).await {
                        // The claim expires with its lease, after which a retry claims it again.
                        tracing::error!(key = %job.key, error = %crate::telemetry::chain(&release_error), "could not delete the claim after a failed send");
                    }
                    Err(ApiError::Queue(send_error))
                }
            },
        }
    }
}
