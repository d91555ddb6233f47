//! `cio-sync` job 1 in the worker: ask Mave what the winning campaigns share, then ask
//! Generate for new variations from Mave's answer. The `DONE` record keeps both.
//!
//! Two paid calls in one job: if Generate fails after Mave answered, the job goes back to the
//! queue, and the retry must not pay for Mave again. So Mave's answer is kept in the event
//! store (a cache record under the job's key) before Generate is called, and a retry that
//! finds it asks Generate only.
//!
//! The requests are rendered here from the message's facts (winners and their metrics) with
//! the `[cio_sync.campaign_strategy]` templates of the worker's own `triggers.toml`.

use std::time::SystemTime;

use backon::Retryable;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::result::bounded;
use super::{Called, MAX_TEXT_CHARS, Transient, Worker};
use crate::domain::{JobKey, RankBy, percent};
use crate::mavera::{Generation, GenerationRequest, MaveChatRequest, MaveMessage, MaveraRequest, MaveraResponse};
use crate::queue::{CampaignAnalysis, WINNER_METRICS, Winner};
use crate::retry;
use crate::store::{FailureClass, Outcome, RECORD_TTL};
use crate::telemetry::chain;
use crate::template::{JsonTemplate, Template, render_entries};

/// Fields a campaign-strategy prompt can name: what `fields` (below) provides.
pub const PROMPT_FIELDS: [&str; 8] = [
    "winners",
    "winner_count",
    "rank_by",
    "min_delivered",
    "campaigns_considered",
    "window.start",
    "window.end",
    "window.days",
];
/// Fields the Generate step can name besides [`PROMPT_FIELDS`].
pub const MAVE_FIELDS: [&str; 2] = ["mave.content", "mave.thread_id"];

/// How a campaign analysis becomes Mavera requests: `prompt`, `workspace_id` and `generate`
/// of `[cio_sync.campaign_strategy]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalysisTemplates {
    pub prompt: Template,
    /// Mave's `workspace_id`.
    pub workspace_id: Option<String>,
    pub generate: GenerateStep,
}

/// The `POST /generations` after Mave. Mavera does not document which app suits message
/// variations, so `app_id` has no default.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateStep {
    pub app_id: String,
    pub title: Option<Template>,
    pub input: Vec<(String, JsonTemplate)>,
    pub brand_voice_id: Option<String>,
    pub persona_id: Option<String>,
    pub workspace_id: Option<String>,
}

/// Each of the two texts on the record is cut here, so both fit DynamoDB's 400 KB item.
const RECORD_TEXT_CHARS: usize = MAX_TEXT_CHARS / 2;

/// Retries of keeping Mave's answer after the first try (3 tries in all).
const KEEP_RETRIES: u32 = 2;

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

    /// What Generate's request shows in a dry run, where Mave was not asked.
    fn stand_in() -> Self {
        MaveStep {
            thread_id: "(Mave's thread)".into(),
            message_id: None,
            content: "(Mave's analysis goes here)".into(),
            truncated: false,
            credits: None,
        }
    }
}

impl Worker {
    /// Mave, then Generate. When Generate fails for good after Mave answered, `spent` is set to
    /// what Mave charged (in this attempt or the one that kept its answer): a failed outcome has
    /// no result to carry it, and those credits were spent all the same.
    pub(super) async fn analyse(
        &self,
        job: &CampaignAnalysis,
        key: &JobKey,
        notes: &mut Vec<String>,
        spent: &mut Option<f64>,
        deadline: Instant,
    ) -> Result<Outcome, Transient> {
        let Some(config) = &self.scheduled.campaign_strategy else {
            return Ok(Outcome::Skipped {
                reason: "[cio_sync.campaign_strategy] is not enabled in this worker's triggers.toml, so queued analyses are not run".into(),
            });
        };
        let step_key = format!("{key}#mave");
        let kept = match self.guards.cached(&step_key, SystemTime::now()).await? {
            Some(value) => serde_json::from_value::<MaveStep>(value).ok(),
            None => None,
        };
        // In a dry run, the requests as they would have been sent.
        let mut would_send = Vec::new();
        let mave = match kept {
            Some(step) => {
                notes.push(format!(
                    "Mave's analysis (thread {}) was kept from an earlier attempt; Mave was not asked again",
                    step.thread_id
                ));
                step
            }
            None => match self
                .call(&mave_request(job, config), deadline)
                .await
                .map_err(|Transient(e)| Transient(format!("Mave: {e}")))?
            {
                Called::Answered(MaveraResponse::Research(m)) => {
                    let step = MaveStep::from_message(&m);
                    self.keep(&step_key, &step, notes).await;
                    step
                }
                Called::Answered(MaveraResponse::DryRun(would)) => {
                    // Nothing was asked: Generate's request is shown with stand-ins for the answer.
                    would_send.push(would.to_json());
                    MaveStep::stand_in()
                }
                Called::Answered(_) => {
                    return Ok(Outcome::Failed {
                        reason: "Mavera answered POST /mave/chat with something other than a Mave message".into(),
                        class: FailureClass::UnexpectedResponse,
                    });
                }
                Called::AlreadyDone(e) | Called::Failed(e) => {
                    return Ok(Outcome::Failed { reason: format!("Mave: {e}"), class: e.failure_class() });
                }
            },
        };

        let generate = generate_request(job, config, &mave.content, &mave.thread_id);
        let called = self.call(&generate, deadline).await.map_err(|Transient(e)| {
            Transient(format!(
                "Generate: {e}; Mave's analysis (thread {}) is kept, so the retry asks Generate only",
                mave.thread_id
            ))
        })?;
        let failed = match called {
            Called::Answered(MaveraResponse::Generation(g)) => {
                return Ok(Outcome::Done { result: analysis_result(job, &mave, &g) });
            }
            Called::Answered(MaveraResponse::DryRun(would)) => {
                would_send.push(would.to_json());
                return Ok(Outcome::Done { result: json!({"dry_run": true, "requests": would_send}) });
            }
            Called::Answered(_) => Outcome::Failed {
                reason: "Mavera answered POST /generations with something other than a generation".into(),
                class: FailureClass::UnexpectedResponse,
            },
            Called::AlreadyDone(e) | Called::Failed(e) => Outcome::Failed {
                reason: format!("Generate: {e}; Mave's analysis is in thread {}", mave.thread_id),
                class: e.failure_class(),
            },
        };
        if let Some(credits) = mave.credits {
            notes.push(format!("Mave's analysis cost {credits} credits before Generate failed"));
        }
        *spent = mave.credits;
        Ok(failed)
    }

    /// Keeps Mave's answer for a retry, trying a little harder than usual (a lost answer costs
    /// a second Mave call); if it cannot, the job goes on and the record says so.
    async fn keep(&self, step_key: &str, step: &MaveStep, notes: &mut Vec<String>) {
        let value = serde_json::to_value(step).unwrap_or(Value::Null);
        let mut failed_attempts = 0u32;
        let kept = (|| self.guards.cache(step_key, &value, RECORD_TTL, SystemTime::now()))
            .retry(retry::store_write(KEEP_RETRIES))
            .notify(|e, _| {
                failed_attempts += 1;
                tracing::warn!(attempt = failed_attempts, error = %chain(e), "could not keep Mave's answer; trying again");
            })
            .await;
        if let Err(e) = kept {
            tracing::warn!(error = %chain(&e), "could not keep Mave's answer; a retry of this job would ask Mave again");
            notes.push("Mave's analysis could not be kept in the event store; had Generate failed, Mave would have been asked again".into());
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

/// The fields the templates can name ([`PROMPT_FIELDS`]).
fn fields(job: &CampaignAnalysis) -> Map<String, Value> {
    let winners: Vec<String> =
        job.winners.iter().enumerate().map(|(i, w)| winner_line(i + 1, w, job.rank_by)).collect();
    let mut fields = Map::new();
    fields.insert("winners".into(), Value::String(winners.join("\n")));
    fields.insert("winner_count".into(), json!(job.winners.len()));
    fields.insert("rank_by".into(), json!(job.rank_by.label()));
    fields.insert("min_delivered".into(), json!(job.min_delivered));
    fields.insert("campaigns_considered".into(), json!(job.campaigns_considered));
    fields
        .insert("window".into(), json!({"start": job.metrics.start, "end": job.metrics.end, "days": job.metrics.days}));
    fields
}

/// `POST /mave/chat`: what do the winners share?
fn mave_request(job: &CampaignAnalysis, config: &AnalysisTemplates) -> MaveraRequest {
    MaveraRequest::Research(MaveChatRequest {
        message: config.prompt.render(&fields(job)),
        thread_id: None,
        workspace_id: config.workspace_id.clone(),
    })
}

/// `POST /generations`: new variations, from Mave's answer.
fn generate_request(
    job: &CampaignAnalysis,
    config: &AnalysisTemplates,
    mave_content: &str,
    mave_thread_id: &str,
) -> MaveraRequest {
    let mut fields = fields(job);
    fields.insert("mave".into(), json!({"content": mave_content, "thread_id": mave_thread_id}));
    let g = &config.generate;
    MaveraRequest::Generate(GenerationRequest {
        app_id: g.app_id.clone(),
        input_data: render_entries(&g.input, &fields),
        title: g.title.as_ref().map(|t| t.render(&fields)),
        brand_voice_id: g.brand_voice_id.clone(),
        persona_id: g.persona_id.clone(),
        workspace_id: g.workspace_id.clone(),
    })
}

/// `1. "Welcome" (campaign 5; tags: new, welcome): conversion rate 4.2%; 1000 delivered, …`
fn winner_line(rank: usize, w: &Winner, rank_by: RankBy) -> String {
    let tags = if w.tags.is_empty() { "no tags".to_owned() } else { format!("tags: {}", w.tags.join(", ")) };
    let delivered = w.totals.get("delivered").copied().unwrap_or(0);
    let counts: Vec<String> = WINNER_METRICS
        .iter()
        .filter_map(|m| w.totals.get(*m).map(|n| (*m, *n)))
        .map(|(m, n)| match m {
            "sent" | "delivered" => format!("{n} {m}"),
            _ => format!("{n} {m} ({})", percent(n, delivered)),
        })
        .collect();
    format!(
        "{rank}. \"{}\" (campaign {}; {tags}): {} {:.1}%; {}",
        w.name,
        w.id,
        rank_by.label(),
        w.rate * 100.0,
        counts.join(", ")
    )
}

/// The first `max` characters, and whether anything was cut.
fn cut(text: &str, max: usize) -> (String, bool) {
    let (kept, cut) = bounded(text, max);
    (kept.to_owned(), cut)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::domain::{FieldPath, RuleName};
    use crate::mavera::DryRun;
    use crate::queue::{Job, JobMessage, MESSAGE_VERSION, MetricsDates};
    use crate::store::{JobStatus, JobStore, MemoryStore};
    use crate::template::FieldSource;
    use crate::triggers::Triggers;
    use crate::worker::Disposition;

    #[tokio::test]
    async fn a_dry_run_records_both_requests_and_sends_nothing() {
        let triggers = Triggers::parse(
            "[cio_sync.campaign_strategy]\nenabled = true\ngenerate = { app_id = \"email-variations\" }",
            "t.toml",
        )
        .unwrap();
        let store = Arc::new(MemoryStore::new());
        let scheduled = triggers.cio_sync.for_worker();
        let worker =
            Worker::new(Arc::new(triggers.rules), scheduled, store.clone(), store.clone(), Arc::new(DryRun), None)
                .unwrap();
        let rule = RuleName::parse("campaign-strategy").unwrap();
        let key = JobKey::for_sync(&rule, &["2026-03-02_7d"]);
        let analysis = CampaignAnalysis {
            run_window: "2026-03-02_7d".into(),
            metrics: MetricsDates { start: "2026-01-31".into(), end: "2026-03-01".into(), days: 30 },
            rank_by: RankBy::ClickRate,
            min_delivered: 100,
            campaigns_considered: 4,
            winners: vec![Winner { id: 5, name: "Welcome".into(), tags: vec![], rate: 0.2, totals: BTreeMap::new() }],
        };
        let message = JobMessage { v: MESSAGE_VERSION, key: key.clone(), rule, job: Job::CampaignAnalysis(analysis) };
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

    fn analysis() -> CampaignAnalysis {
        let totals = |d: u64, c: u64, k: u64| {
            BTreeMap::from([("delivered".into(), d), ("clicked".into(), k), ("converted".into(), c)])
        };
        CampaignAnalysis {
            run_window: "2026-03-02_7d".into(),
            metrics: MetricsDates { start: "2026-01-31".into(), end: "2026-03-01".into(), days: 30 },
            rank_by: RankBy::ConversionRate,
            min_delivered: 100,
            campaigns_considered: 7,
            winners: vec![
                Winner {
                    id: 5,
                    name: "Welcome".into(),
                    tags: vec!["new".into(), "welcome".into()],
                    rate: 0.05,
                    totals: totals(1000, 50, 200),
                },
                Winner { id: 9, name: "Winback".into(), tags: vec![], rate: 0.031, totals: totals(400, 12, 40) },
            ],
        }
    }

    fn config(generate: &str) -> Triggers {
        Triggers::parse(
            &format!("[cio_sync.campaign_strategy]\nenabled = true\n[cio_sync.campaign_strategy.generate]\n{generate}"),
            "t.toml",
        )
        .unwrap()
    }

    #[test]
    fn the_prompt_lists_the_winners_with_their_metrics() {
        let triggers = config("app_id = \"email-variations\"");
        let MaveraRequest::Research(r) = mave_request(&analysis(), &triggers.cio_sync.campaign_strategy.analysis)
        else {
            panic!()
        };
        assert!(r.message.starts_with("These are our 2 best Customer.io campaigns by conversion rate (at least 100 messages delivered) from 2026-01-31 to 2026-03-01, out of 7 running campaigns:"), "{}", r.message);
        assert!(r.message.contains("1. \"Welcome\" (campaign 5; tags: new, welcome): conversion rate 5.0%; 1000 delivered, 200 clicked (20%), 50 converted (5%)"), "{}", r.message);
        assert!(r.message.contains("2. \"Winback\" (campaign 9; no tags): conversion rate 3.1%"), "{}", r.message);
        assert!(!r.message.contains("unknown"), "{}", r.message);
    }

    #[test]
    fn every_prompt_field_is_provided() {
        let fields = fields(&analysis());
        for f in PROMPT_FIELDS {
            assert!(fields.field(&FieldPath::parse(f).unwrap()).is_some(), "{f}");
        }
    }

    #[test]
    fn generate_gets_the_app_and_maves_answer() {
        let triggers = config(
            "app_id = \"email-variations\"\nbrand_voice_id = \"bv1\"\ninput = { brief = \"{mave.content}\", n = 3 }",
        );
        let MaveraRequest::Generate(g) =
            generate_request(&analysis(), &triggers.cio_sync.campaign_strategy.analysis, "Lead with the value.", "t1")
        else {
            panic!()
        };
        assert_eq!(g.app_id, "email-variations");
        assert_eq!(Value::Object(g.input_data), json!({"brief": "Lead with the value.", "n": 3}));
        assert_eq!(g.brand_voice_id.as_deref(), Some("bv1"));
        assert_eq!(g.title.as_deref(), Some("Customer.io message variations, 2026-01-31 to 2026-03-01"));
        assert_eq!(g.workspace_id, None, "optional in Mavera's reference: sent only when set");
    }

    #[test]
    fn the_scheduled_job_sends_the_workspace_it_is_given() {
        let triggers = config("app_id = \"email-variations\"\nworkspace_id = \"ws_42\"");
        let templates = &triggers.cio_sync.campaign_strategy.analysis;
        let MaveraRequest::Generate(g) = generate_request(&analysis(), templates, "x", "t1") else { panic!() };
        assert_eq!(g.workspace_id.as_deref(), Some("ws_42"));
    }

    #[test]
    fn texts_are_cut_by_characters() {
        assert_eq!(cut("héllo", 2), ("hé".to_owned(), true));
        assert_eq!(cut("hé", 2), ("hé".to_owned(), false));
    }
}
