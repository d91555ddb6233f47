//! Job 1, campaign messaging strategy: list the campaigns, keep the running ones
//! (`active == true`; Mavera's sample filters on a `state` value Customer.io never sends), read
//! each one's version-2 metrics over the finished days before the run window, rank them, and
//! queue one analysis of the top few for the window.
//!
//! Campaigns are read in ascending id order and the checkpoint keeps the last id read and the
//! best so far, so a run cut short resumes after the last campaign it read.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::checkpoint::{self, fingerprint};
use super::config::CampaignStrategyConfig;
use super::summary::{RunStatus, Summary};
use super::window::{RunWindow, metrics_dates};
use super::{CioSync, Enqueued, SyncError, SyncJob};
use crate::customerio::{Campaign, CampaignMetrics, CioError, CustomerIoApi, MetricsWindow};
use crate::domain::JobKey;
use crate::queue::{CampaignAnalysis, Job, JobMessage, MESSAGE_VERSION, MetricsDates, WINNER_METRICS, Winner};
use crate::telemetry::chain;

/// The checkpoint is also written every this many campaigns, in case the process dies.
const SAVE_EVERY: usize = 25;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Progress {
    /// Campaigns up to this id are read.
    after_id: Option<u64>,
    /// The best so far, best first, at most `top_n`.
    best: Vec<Winner>,
    /// Running campaigns whose metrics were read.
    considered: u64,
    /// Of those, delivered fewer than `min_delivered`.
    too_small: u64,
    /// Listed, then gone when their metrics were asked for.
    vanished: u64,
    /// Set once the window's work is done.
    finished: Option<Finished>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Finished {
    /// `queued`, `already_queued` or `no_winners`.
    outcome: String,
    winners: Vec<u64>,
}

pub(super) async fn run(
    sync: &CioSync,
    api: &dyn CustomerIoApi,
    dry_run: bool,
    now: SystemTime,
    deadline: Instant,
) -> Summary {
    let config = &sync.config.campaign_strategy;
    let window = RunWindow::containing(now, config.every_days);
    let summary = Summary::starting(SyncJob::CampaignStrategy, &window, dry_run);
    let mut run = Run {
        sync,
        api,
        config,
        key: JobKey::for_sync(&SyncJob::CampaignStrategy.rule(), &[&window.label()]),
        window,
        dry_run,
        now,
        deadline,
        summary,
        progress: Progress::default(),
    };
    match run.go().await {
        Ok(()) => {}
        Err(error) => {
            run.summary.status = RunStatus::Failed;
            run.summary.message = Some(format!("{}; the next run resumes from the checkpoint", chain(&error)));
        }
    }
    run.count_progress();
    run.summary
}

struct Run<'a> {
    sync: &'a CioSync,
    api: &'a dyn CustomerIoApi,
    config: &'a CampaignStrategyConfig,
    window: RunWindow,
    key: JobKey,
    dry_run: bool,
    now: SystemTime,
    deadline: Instant,
    summary: Summary,
    progress: Progress,
}

impl Run<'_> {
    async fn go(&mut self) -> Result<(), SyncError> {
        let metrics = self.metrics_window()?;
        if !self.dry_run {
            self.progress =
                checkpoint::load(self.sync.cache.as_ref(), &self.checkpoint_key(), self.now).await?.unwrap_or_default();
        }
        if let Some(finished) = &self.progress.finished {
            self.summary.status = RunStatus::AlreadyDone;
            self.summary.message = Some(format!(
                "this window's analysis was done by an earlier run ({}: campaigns {:?})",
                finished.outcome, finished.winners
            ));
            return Ok(());
        }

        let campaigns = match self.api.campaigns(self.deadline).await {
            Ok(campaigns) => campaigns,
            Err(e) => return self.stop(e).await,
        };
        let mut running: Vec<Campaign> = campaigns.into_iter().filter(|c| c.active).collect();
        running.sort_by_key(|c| c.id);
        self.summary.counts.insert("running_campaigns", running.len() as u64);
        let todo: Vec<Campaign> =
            running.into_iter().filter(|c| self.progress.after_id.is_none_or(|after| c.id > after)).collect();

        let mut read = 0u64;
        for (i, campaign) in todo.into_iter().enumerate() {
            let id = campaign.id;
            if Instant::now() >= self.deadline {
                self.summary.counts.insert("metrics_read", read);
                return self
                    .stop(CioError::DeadlineExceeded {
                        endpoint: "GET /v1/campaigns/{id}/metrics",
                        waiting_for: "start",
                    })
                    .await;
            }
            match self.api.campaign_metrics(id, &metrics, self.deadline).await {
                Ok(m) => self.consider(campaign, &m),
                // Deleted or stopped between the list and now: nothing to rank.
                Err(CioError::NotFound { .. }) => self.progress.vanished += 1,
                Err(e) => {
                    self.summary.counts.insert("metrics_read", read);
                    return self.stop(e).await;
                }
            }
            read += 1;
            // In ascending order, so everything up to this id is read.
            self.progress.after_id = Some(id);
            if (i + 1) % SAVE_EVERY == 0 {
                self.save().await?;
            }
        }
        self.summary.counts.insert("metrics_read", read);
        self.queue().await
    }

    /// Ranks one campaign among the best so far.
    fn consider(&mut self, campaign: Campaign, metrics: &CampaignMetrics) {
        self.progress.considered += 1;
        let delivered = metrics.delivered();
        let rate = metrics.rate(self.config.rank_by);
        let Some(rate) = rate.filter(|_| delivered >= self.config.min_delivered.max(1)) else {
            self.progress.too_small += 1;
            return;
        };
        // Only the series Customer.io sent: an absent one is not a zero.
        let totals = WINNER_METRICS
            .iter()
            .filter(|m| !metrics.series(m).is_empty())
            .map(|m| ((*m).to_owned(), metrics.total(m)))
            .collect();
        let best = &mut self.progress.best;
        best.push(Winner { id: campaign.id, name: campaign.name, tags: campaign.tags, rate, totals });
        // Ties go to the larger sample, then the older campaign, so every run ranks alike.
        best.sort_by(|a, b| {
            b.rate.total_cmp(&a.rate).then_with(|| delivered_of(b).cmp(&delivered_of(a))).then_with(|| a.id.cmp(&b.id))
        });
        best.truncate(self.config.top_n);
    }

    /// Every campaign is read: queue the analysis (or note that nothing qualified).
    async fn queue(&mut self) -> Result<(), SyncError> {
        let winners = self.progress.best.clone();
        let ids: Vec<u64> = winners.iter().map(|w| w.id).collect();
        if winners.is_empty() {
            self.summary.message = Some(format!(
                "no running campaign delivered at least {} messages in the metrics window; nothing to analyse",
                self.config.min_delivered
            ));
            return self.finish("no_winners", ids).await;
        }
        let (start, end, days) = metrics_dates(&self.metrics_window()?);
        let analysis = CampaignAnalysis {
            run_window: self.window.label(),
            metrics: MetricsDates { start, end, days },
            rank_by: self.config.rank_by,
            min_delivered: self.config.min_delivered,
            campaigns_considered: self.progress.considered,
            winners,
        };
        self.summary.planned = vec![planned(&analysis)];
        if self.dry_run {
            self.summary.message = Some(format!("dry run: would queue one analysis of campaigns {ids:?}"));
            return Ok(());
        }
        let message = JobMessage {
            v: MESSAGE_VERSION,
            key: self.key.clone(),
            rule: SyncJob::CampaignStrategy.rule(),
            job: Job::CampaignAnalysis(analysis),
        };
        let outcome = match self.sync.enqueue(&message, self.now).await {
            Ok(Enqueued::Sent) => {
                self.summary.counts.insert("queued", 1);
                self.summary.message = Some(format!("queued the analysis of campaigns {ids:?} as {}", self.key));
                "queued"
            }
            Ok(Enqueued::AlreadyQueued(status)) => {
                self.summary.counts.insert("already_queued", 1);
                self.summary.message =
                    Some(format!("this window's analysis was queued before ({status}); nothing new queued"));
                "already_queued"
            }
            Err(e) => {
                self.save().await?;
                return Err(e);
            }
        };
        self.finish(outcome, ids).await
    }

    async fn finish(&mut self, outcome: &str, winners: Vec<u64>) -> Result<(), SyncError> {
        self.progress.finished = Some(Finished { outcome: outcome.to_owned(), winners });
        self.save().await
    }

    /// Keeps what was read and reports why the run stopped: the deadline makes it `partial`,
    /// anything else `failed`.
    async fn stop(&mut self, error: CioError) -> Result<(), SyncError> {
        self.save().await?;
        if matches!(error, CioError::DeadlineExceeded { .. }) {
            self.summary.status = RunStatus::Partial;
            self.summary.message = Some(format!(
                "stopped at the deadline after campaign {:?}; the next run resumes after it",
                self.progress.after_id
            ));
            return Ok(());
        }
        Err(error.into())
    }

    async fn save(&self) -> Result<(), SyncError> {
        if self.dry_run {
            return Ok(());
        }
        checkpoint::save(self.sync.cache.as_ref(), &self.checkpoint_key(), &self.progress, self.now).await?;
        Ok(())
    }

    fn metrics_window(&self) -> Result<MetricsWindow, SyncError> {
        let mut window = self.window.metrics_before(self.config.metrics_days)?;
        if let Some(tz) = &self.config.time_zone {
            window = window.in_time_zone(tz.clone());
        }
        if let Some(kind) = &self.config.message_type {
            window = window.of_type(kind.clone());
        }
        Ok(window)
    }

    /// Under the settings that shape the ranking: changing one starts the window's reading over.
    fn checkpoint_key(&self) -> String {
        let c = self.config;
        let settings = json!([c.metrics_days, c.time_zone, c.message_type, c.rank_by, c.top_n, c.min_delivered]);
        format!("{}#progress-{}", self.key, fingerprint(&settings))
    }

    fn count_progress(&mut self) {
        let counts = &mut self.summary.counts;
        counts.insert("considered", self.progress.considered);
        counts.insert("too_small", self.progress.too_small);
        counts.insert("vanished", self.progress.vanished);
        counts.insert("winners", self.progress.best.len() as u64);
    }
}

fn delivered_of(w: &Winner) -> u64 {
    w.totals.get("delivered").copied().unwrap_or(0)
}

/// What the summary shows of a queued analysis.
fn planned(analysis: &CampaignAnalysis) -> Value {
    let winners: Vec<Value> = analysis
        .winners
        .iter()
        .map(|w| json!({"id": w.id, "name": w.name, "rate": w.rate, "delivered": delivered_of(w)}))
        .collect();
    json!({"analysis": analysis.run_window, "rank_by": analysis.rank_by, "metrics": analysis.metrics, "winners": winners})
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::cio_sync::RunRequest;
    use crate::customerio::memory::{Call, MemoryCustomerIo};
    use crate::queue::MemoryQueue;
    use crate::store::MemoryStore;
    use crate::triggers::Triggers;

    fn campaign(id: u64, name: &str, active: bool) -> Campaign {
        let json = json!({"id": id, "name": name, "active": active, "state": if active { "running" } else { "stopped" }, "tags": ["t"]});
        serde_json::from_value(json).unwrap()
    }

    fn metrics(delivered: u64, clicked: u64, converted: u64) -> CampaignMetrics {
        CampaignMetrics::from_series(BTreeMap::from([
            ("delivered".into(), vec![delivered]),
            ("clicked".into(), vec![clicked]),
            ("converted".into(), vec![converted]),
        ]))
    }

    /// Six campaigns; 3 is stopped, 6 has no metrics (deleted since it was listed).
    fn workspace() -> MemoryCustomerIo {
        let api = MemoryCustomerIo::new();
        api.add_campaign(campaign(1, "Welcome", true), Some(metrics(1000, 300, 40)));
        api.add_campaign(campaign(2, "Tiny", true), Some(metrics(20, 15, 10)));
        api.add_campaign(campaign(3, "Old", false), Some(metrics(5000, 4000, 3000)));
        api.add_campaign(campaign(4, "Winback", true), Some(metrics(500, 20, 30)));
        api.add_campaign(campaign(5, "Nurture", true), Some(metrics(2000, 100, 20)));
        api.add_campaign(campaign(6, "Deleted", true), None);
        api
    }

    /// The campaigns whose metrics were asked for, in order.
    fn asked(api: &MemoryCustomerIo) -> Vec<u64> {
        api.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Metrics(id) => Some(id),
                _ => None,
            })
            .collect()
    }

    fn sync(api: Arc<MemoryCustomerIo>, extra: &str) -> (CioSync, MemoryStore, MemoryQueue) {
        let triggers = Triggers::parse(
            &format!(
                "[cio_sync.campaign_strategy]\nenabled = true\ntop_n = 2\ngenerate = {{ app_id = \"a\" }}\n{extra}"
            ),
            "t.toml",
        )
        .unwrap();
        let store = MemoryStore::new();
        let queue = MemoryQueue::default();
        let sync = CioSync::new(
            triggers.cio_sync,
            triggers.enrichment.cache_ttl,
            Some(api),
            Arc::new(store.clone()),
            Arc::new(store.clone()),
            Arc::new(queue.clone()),
        )
        .unwrap();
        (sync, store, queue)
    }

    fn request() -> RunRequest {
        RunRequest { job: SyncJob::CampaignStrategy, dry_run: false }
    }

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_772_636_400)
    }

    async fn queued(queue: &MemoryQueue) -> Vec<JobMessage> {
        queue.receive(10, Duration::ZERO).await.iter().map(|d| JobMessage::from_body(&d.body).unwrap()).collect()
    }

    #[tokio::test]
    async fn running_campaigns_are_ranked_and_one_analysis_is_queued() {
        let api = Arc::new(workspace());
        let (sync, _, queue) = sync(api.clone(), "min_delivered = 100");
        let summary = sync.run(request(), now(), Instant::now() + Duration::from_secs(5)).await;
        assert_eq!(summary.status, RunStatus::Done, "{summary:?}");
        assert_eq!(asked(&api), [1, 2, 4, 5, 6], "only active campaigns, in id order");
        assert_eq!(summary.counts["considered"], 4);
        assert_eq!(summary.counts["too_small"], 1);
        assert_eq!(summary.counts["vanished"], 1);
        let messages = queued(&queue).await;
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].key.as_str(), "cio-sync#campaign-strategy#2026-03-02_7d");
        let Job::CampaignAnalysis(a) = &messages[0].job else { panic!("{:?}", messages[0].job) };
        assert_eq!(a.winner_ids(), [4, 1], "Winback 6% beats Welcome 4%; Tiny's 50% has too few deliveries");
        assert_eq!(a.metrics, MetricsDates { start: "2026-01-31".into(), end: "2026-03-01".into(), days: 30 });
        assert_eq!(a.winners[0].totals["delivered"], 500);
    }

    #[tokio::test]
    async fn click_rate_ranks_by_clicks() {
        let (sync, _, queue) = sync(Arc::new(workspace()), "min_delivered = 100\nrank_by = \"click_rate\"");
        sync.run(request(), now(), Instant::now() + Duration::from_secs(5)).await;
        let Job::CampaignAnalysis(a) = &queued(&queue).await[0].job else { panic!() };
        assert_eq!(a.winner_ids(), [1, 5]);
    }

    #[tokio::test]
    async fn a_second_run_in_the_window_reads_and_queues_nothing() {
        let api = Arc::new(workspace());
        let (sync, _, queue) = sync(api.clone(), "min_delivered = 100");
        sync.run(request(), now(), Instant::now() + Duration::from_secs(5)).await;
        let asked_before = asked(&api).len();
        let later = now() + Duration::from_secs(3 * 86_400);
        let again = sync.run(request(), later, Instant::now() + Duration::from_secs(5)).await;
        assert_eq!(again.status, RunStatus::AlreadyDone);
        assert_eq!(asked(&api).len(), asked_before);
        assert_eq!(queued(&queue).await.len(), 1);
        let next_week =
            sync.run(request(), now() + Duration::from_secs(7 * 86_400), Instant::now() + Duration::from_secs(5)).await;
        assert_eq!(next_week.window.as_deref(), Some("2026-03-09_7d"));
        assert_eq!(next_week.counts.get("queued"), Some(&1));
    }

    #[tokio::test]
    async fn a_dry_run_reports_the_winners_and_writes_nothing() {
        let api = Arc::new(workspace());
        let (sync, store, queue) = sync(api, "min_delivered = 100");
        let summary =
            sync.run(RunRequest { dry_run: true, ..request() }, now(), Instant::now() + Duration::from_secs(5)).await;
        assert_eq!(summary.planned[0]["winners"][0]["name"], "Winback");
        assert!(queued(&queue).await.is_empty());
        assert!(store.jobs().is_empty());
        let real = sync.run(request(), now(), Instant::now() + Duration::from_secs(5)).await;
        assert_eq!(real.counts.get("queued"), Some(&1), "the dry run left no checkpoint behind");
    }

    #[tokio::test]
    async fn without_enough_deliveries_nothing_is_queued_and_the_window_is_done() {
        let (sync, _, queue) = sync(Arc::new(workspace()), "min_delivered = 100000");
        let summary = sync.run(request(), now(), Instant::now() + Duration::from_secs(5)).await;
        assert_eq!(summary.status, RunStatus::Done);
        assert!(summary.message.unwrap().contains("at least 100000"));
        assert!(queued(&queue).await.is_empty());
        let again = sync.run(request(), now(), Instant::now() + Duration::from_secs(5)).await;
        assert_eq!(again.status, RunStatus::AlreadyDone);
    }

    #[tokio::test]
    async fn a_passed_deadline_checkpoints_and_the_next_run_finishes() {
        let api = Arc::new(workspace());
        let (sync, _, queue) = sync(api.clone(), "min_delivered = 100");
        let cut = sync.run(request(), now(), Instant::now()).await;
        assert_eq!(cut.status, RunStatus::Partial, "{cut:?}");
        assert!(queued(&queue).await.is_empty());
        let rest = sync.run(request(), now(), Instant::now() + Duration::from_secs(5)).await;
        assert_eq!(rest.status, RunStatus::Done);
        let Job::CampaignAnalysis(a) = &queued(&queue).await[0].job else { panic!() };
        assert_eq!(a.winner_ids(), [4, 1]);
    }
}
