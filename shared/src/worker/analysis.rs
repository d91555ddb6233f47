//! `cio-sync` job 1 in the worker: ask Mave what the winning campaigns share, then ask
//! Generate for new variations from Mave's answer. The `DONE` record keeps both.
//!
//! Two paid calls in one job: if Generate fails after Mave answered, the job goes back to the
//! queue, and the retry must not pay for Mave again. So Mave's answer is kept in the event
//! store (a cache record under the job's key) before Generate is called, and a retry that
//! finds it asks Generate only.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::{FINISH_MARGIN, MAX_TEXT_CHARS, Transient, Worker};
use crate::domain::JobKey;
use crate::mavera::{ErrorClass, Generation, MaveMessage, MaveraRequest, MaveraResponse};
use crate::store::{FailureClass, Outcome, RECORD_TTL};
use crate::sync::CampaignAnalysis;
use crate::telemetry::chain;

/// Each of the two texts on the record is cut here, so both fit DynamoDB's 400 KB item.
const RECORD_TEXT_CHARS: usize = MAX_TEXT_CHARS / 2;

/// Mave's answer, as kept between attempts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct MaveStep {
    thread_id: String,
    message_id: Option<String>,
    content: String,
    truncated: bool,
    credits: Option<f64>,
}

impl MaveStep {
    fn from_message(m: &MaveMessage) -> Self {
        let (content, truncated) = cut(&m.content, MAX_TEXT_CHARS);
        MaveStep {
            thread_id: m.thread_id.clone(),
            message_id: m.id.clone(),
            content,
            truncated,
            credits: m.usage.as_ref().and_then(|u| u.credits_used),
        }
    }
}

impl Worker {
    pub(super) async fn analyse(
        &self,
        job: &CampaignAnalysis,
        key: &JobKey,
        notes: &mut Vec<String>,
        deadline: Instant,
    ) -> Result<Outcome, Transient> {
        let config = &self.rules.cio_sync().campaign_strategy;
        if !config.enabled {
            return Ok(Outcome::Skipped {
                reason: "[cio_sync.campaign_strategy] is not enabled in this worker's triggers.toml, so queued analyses are not run".into(),
            });
        }
        let Some(mavera) = &self.mavera else {
            let mave = job.mave_request(config);
            let generate = job.generate_request(config, "(Mave's analysis goes here)", "(Mave's thread)");
            tracing::info!(body = %mave.body(), "dry run: would send POST /mave/chat, then POST /generations");
            return Ok(Outcome::Done {
                result: json!({"dry_run": true, "requests": [request_json(&mave), request_json(&generate)]}),
            });
        };
        let call_deadline = deadline.checked_sub(FINISH_MARGIN).unwrap_or_else(Instant::now);

        let step_key = format!("{key}#mave");
        let kept = match self.guards.cached(&step_key, SystemTime::now()).await? {
            Some(value) => serde_json::from_value::<MaveStep>(value).ok(),
            None => None,
        };
        let mave = match kept {
            Some(step) => {
                notes.push(format!(
                    "Mave's analysis (thread {}) was kept from an earlier attempt; Mave was not asked again",
                    step.thread_id
                ));
                step
            }
            None => match mavera.send(&job.mave_request(config), call_deadline).await {
                Ok(MaveraResponse::Research(m)) => {
                    let step = MaveStep::from_message(&m);
                    self.keep(&step_key, &step, notes).await;
                    step
                }
                Ok(_) => {
                    return Ok(Outcome::Failed {
                        reason: "Mavera answered POST /mave/chat with something other than a Mave message".into(),
                        class: FailureClass::UnexpectedResponse,
                    });
                }
                Err(e) => {
                    return match e.class() {
                        ErrorClass::Transient => Err(Transient(format!("Mave: {e}"))),
                        _ => Ok(Outcome::Failed { reason: format!("Mave: {e}"), class: e.failure_class() }),
                    };
                }
            },
        };

        let generate = job.generate_request(config, &mave.content, &mave.thread_id);
        match mavera.send(&generate, call_deadline).await {
            Ok(MaveraResponse::Generation(g)) => Ok(Outcome::Done { result: analysis_result(job, &mave, &g) }),
            Ok(_) => Ok(Outcome::Failed {
                reason: "Mavera answered POST /generations with something other than a generation".into(),
                class: FailureClass::UnexpectedResponse,
            }),
            Err(e) => match e.class() {
                ErrorClass::Transient => Err(Transient(format!(
                    "Generate: {e}; Mave's analysis (thread {}) is kept, so the retry asks Generate only",
                    mave.thread_id
                ))),
                _ => Ok(Outcome::Failed {
                    reason: format!("Generate: {e}; Mave's analysis is in thread {}", mave.thread_id),
                    class: e.failure_class(),
                }),
            },
        }
    }

    /// Keeps Mave's answer for a retry, trying a little harder than usual (a lost answer costs
    /// a second Mave call); if it cannot, the job goes on and the record says so.
    async fn keep(&self, step_key: &str, step: &MaveStep, notes: &mut Vec<String>) {
        let value = serde_json::to_value(step).unwrap_or(Value::Null);
        let mut wait = Duration::from_millis(200);
        for attempt in 1..=3 {
            match self.guards.cache(step_key, &value, RECORD_TTL, SystemTime::now()).await {
                Ok(()) => return,
                Err(e) if attempt < 3 => {
                    tracing::warn!(attempt, error = %chain(&e), "could not keep Mave's answer; trying again");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                Err(e) => {
                    tracing::warn!(error = %chain(&e), "could not keep Mave's answer; a retry of this job would ask Mave again");
                    notes.push("Mave's analysis could not be kept in the event store; had Generate failed, Mave would have been asked again".into());
                }
            }
        }
    }
}

fn analysis_result(job: &CampaignAnalysis, mave: &MaveStep, g: &Generation) -> Value {
    let (content, cut_content) = cut(&mave.content, RECORD_TEXT_CHARS);
    let (output, cut_output) = cut(g.text().unwrap_or_default(), RECORD_TEXT_CHARS);
    let generate_credits = g.usage.as_ref().and_then(|u| u.credits_used);
    let credits = match (mave.credits, generate_credits) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
    };
    json!({
        "action": "campaign_strategy",
        "run_window": job.run_window,
        "metrics": job.metrics,
        "winners": job.winner_ids(),
        "mave": {
            "thread_id": mave.thread_id,
            "message_id": mave.message_id,
            "content": content,
            "truncated": mave.truncated || cut_content,
            "credits": mave.credits,
        },
        "generation": {
            "generation_id": g.id,
            "output": output,
            "truncated": cut_output,
            "credits": generate_credits,
        },
        "credits": credits,
    })
}

fn request_json(request: &MaveraRequest) -> Value {
    json!({"method": "POST", "path": request.path(), "body": request.body()})
}

/// The first `max` characters, and whether anything was cut.
fn cut(text: &str, max: usize) -> (String, bool) {
    match text.char_indices().nth(max) {
        Some((at, _)) => (text[..at].to_owned(), true),
        None => (text.to_owned(), false),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::queue::{Job, JobMessage, MESSAGE_VERSION};
    use crate::rules::{RankBy, Rules};
    use crate::store::{JobStatus, JobStore, MemoryStore};
    use crate::sync::{MetricsDates, SyncJob, Winner};
    use crate::worker::Disposition;

    #[tokio::test]
    async fn a_dry_run_records_both_requests_and_sends_nothing() {
        let rules = Rules::parse(
            "[cio_sync.campaign_strategy]\nenabled = true\ngenerate = { app_id = \"email-variations\" }",
            "t.toml",
        )
        .unwrap();
        let store = Arc::new(MemoryStore::new());
        let worker = Worker::new(Arc::new(rules), store.clone(), store.clone(), None, None).unwrap();
        let key = JobKey::for_sync(&SyncJob::CampaignStrategy.rule(), &["2026-03-02_7d"]);
        let analysis = CampaignAnalysis {
            run_window: "2026-03-02_7d".into(),
            metrics: MetricsDates { start: "2026-01-31".into(), end: "2026-03-01".into(), days: 30 },
            rank_by: RankBy::ClickRate,
            min_delivered: 100,
            campaigns_considered: 4,
            winners: vec![Winner { id: 5, name: "Welcome".into(), tags: vec![], rate: 0.2, totals: BTreeMap::new() }],
        };
        let message = JobMessage {
            v: MESSAGE_VERSION,
            key: key.clone(),
            rule: SyncJob::CampaignStrategy.rule(),
            job: Job::CampaignAnalysis(analysis),
        };
        let later = Instant::now() + Duration::from_secs(30);
        assert_eq!(worker.process(&message.to_body().unwrap(), later).await, Disposition::Finished(JobStatus::Done));
        let result = store.get(&key).await.unwrap().unwrap().result.unwrap();
        assert_eq!(result["dry_run"], true);
        assert_eq!(result["requests"][0]["path"], "/mave/chat");
        assert!(
            result["requests"][0]["body"]["message"]
                .as_str()
                .unwrap()
                .contains("\"Welcome\" (campaign 5; no tags): click rate 20.0%")
        );
        assert_eq!(result["requests"][1]["path"], "/generations");
        assert_eq!(result["requests"][1]["body"]["app_id"], "email-variations");
    }

    #[test]
    fn texts_are_cut_by_characters() {
        assert_eq!(cut("héllo", 2), ("hé".to_owned(), true));
        assert_eq!(cut("hé", 2), ("hé".to_owned(), false));
    }
}
