//! Job 2, attribute personas: read a segment's members a page at a time, look up each
//! member's attributes (cached; at most the process's `CIO_REQUESTS_PER_SECOND` App API calls a
//! second), count
//! them into clusters, and once the segment is read queue a persona for each of the largest.
//!
//! Checkpoints: after each page, that page's cluster counts are stored as their own record
//! and the progress record moves to the next page's token. A run cut short mid-page resumes
//! with that page; the members it had already looked up come from the attribute cache.
//!
//! A cluster's persona job is keyed by the cluster (segment and values), not by the run, so a
//! later run that finds the same cluster finds its claim and queues nothing; once that record
//! has expired (8 days), the persona's name, which depends on the values only, meets Mavera's
//! duplicate-name 422, which the worker records as already done.

use std::time::SystemTime;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::checkpoint::{self, fingerprint};
use super::clusters::Tally;
use super::config::AttributePersonasConfig;
use super::summary::{RunStatus, Summary};
use super::window::RunWindow;
use super::{CioSync, Enqueued, SyncError, SyncJob};
use crate::customerio::{CioError, CustomerIoApi, Found, Identifiers, Lookup, LookupTally, ScanStop};
use crate::domain::{JobKey, percent};
use crate::mavera::MaveraRequest;
use crate::queue::{Job, JobMessage, MESSAGE_VERSION};
use crate::worker::persona_request;

/// Lookups in flight at once; the client's gate keeps them to its rate.
const LOOKUPS_IN_FLIGHT: usize = 10;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Progress {
    /// The membership `start` token of the next unread page (`None`: the first page).
    cursor: Option<String>,
    /// Pages counted so far; page `i`'s counts are stored under [`Run::page_key`].
    pages: u32,
    /// Members read from the segment so far.
    members_read: u64,
    /// The segment is read (to its end, or to `max_members`).
    scan_complete: bool,
    finished: Option<Finished>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Finished {
    clusters: Vec<String>,
    queued: u64,
    already_queued: u64,
}

/// Why a page's lookups stopped.
enum PageStop {
    Deadline,
    Failed(CioError),
}

pub(super) async fn run(
    sync: &CioSync,
    api: &dyn CustomerIoApi,
    dry_run: bool,
    now: SystemTime,
    deadline: Instant,
) -> Summary {
    let config = &sync.config.attribute_personas;
    let window = RunWindow::containing(now, config.every_days);
    let mut summary = Summary::starting(SyncJob::AttributePersonas, &window, dry_run);
    let Some(segment_id) = config.segment_id else {
        // Validation refuses an enabled job without a segment; this only guards a hand-built config.
        summary.status = RunStatus::Failed;
        summary.message = Some("[cio_sync.attribute_personas] has no `segment_id`".into());
        return summary;
    };
    let mut run = Run {
        sync,
        api,
        config,
        segment_id,
        window,
        dry_run,
        now,
        deadline,
        summary,
        progress: Progress::default(),
        first_new_page: 0,
        new_pages: Vec::new(),
        lookups: LookupTally::default(),
    };
    if let Err(error) = run.go().await {
        run.summary.status = RunStatus::Failed;
        run.summary.message =
            Some(format!("{}; the next run resumes from the checkpoint", crate::telemetry::chain(&error)));
    }
    run.summary.counts.insert("members_read", run.progress.members_read);
    if let Some(warning) = run.lookups.warning(config.id_type) {
        tracing::warn!("{warning}");
        run.summary.message = Some(match run.summary.message.take() {
            Some(message) => format!("{message}; {warning}"),
            None => warning,
        });
    }
    run.summary
}

struct Run<'a> {
    sync: &'a CioSync,
    api: &'a dyn CustomerIoApi,
    config: &'a AttributePersonasConfig,
    segment_id: u64,
    window: RunWindow,
    dry_run: bool,
    now: SystemTime,
    deadline: Instant,
    summary: Summary,
    progress: Progress,
    /// Pages before this one were counted by earlier runs (and are read back from the store).
    first_new_page: u32,
    /// Pages counted by this run, in order.
    new_pages: Vec<Tally>,
    /// This run's attribute lookups, to warn when most found nobody.
    lookups: LookupTally,
}

impl Run<'_> {
    async fn go(&mut self) -> Result<(), SyncError> {
        if !self.dry_run {
            let stored = checkpoint::load(self.sync.cache.as_ref(), &self.progress_key(), self.now).await?;
            self.progress = stored.unwrap_or_default();
            self.first_new_page = self.progress.pages;
        }
        if let Some(finished) = &self.progress.finished {
            self.summary.status = RunStatus::AlreadyDone;
            self.summary.message = Some(format!(
                "this window's clusters were handled by an earlier run ({} queued, {} queued before)",
                finished.queued, finished.already_queued
            ));
            return Ok(());
        }
        while !self.progress.scan_complete {
            if let Some(stop) = self.next_page().await? {
                return self.stop(stop).await;
            }
        }
        self.queue().await
    }

    /// Reads and counts one page; `Some` when the run has to stop.
    async fn next_page(&mut self) -> Result<Option<PageStop>, SyncError> {
        let wanted = (self.config.max_members as u64).saturating_sub(self.progress.members_read);
        if wanted == 0 {
            self.progress.scan_complete = true;
            return Ok(None);
        }
        if Instant::now() >= self.deadline {
            return Ok(Some(PageStop::Deadline));
        }
        let page_size = self.config.page_size;
        let cursor = self.progress.cursor.clone();
        let resumed = cursor.is_some();
        let scan = self
            .api
            .scan_segment(self.segment_id, cursor, wanted.min(u64::from(page_size)) as usize, page_size, self.deadline)
            .await;
        match scan.stop {
            ScanStop::Complete | ScanStop::ReachedMax => {}
            ScanStop::Deadline => return Ok(Some(PageStop::Deadline)),
            // A page token from an earlier run may no longer be accepted: read the segment
            // again from the start (every lookup so far is cached).
            ScanStop::Failed(CioError::BadRequest { .. }) if resumed => {
                tracing::warn!(
                    segment = self.segment_id,
                    "Customer.io refused the saved page token; reading the segment from the start"
                );
                self.progress = Progress::default();
                self.first_new_page = 0;
                self.new_pages.clear();
                self.count("restarted", 1);
                return Ok(None);
            }
            ScanStop::Failed(e) => return Ok(Some(PageStop::Failed(e))),
        }
        let complete = scan.is_complete();
        let tally = match self.count_page(&scan.members).await {
            Ok(tally) => tally,
            Err(stop) => return Ok(Some(stop)),
        };
        let page = self.progress.pages;
        if !self.dry_run {
            checkpoint::save(self.sync.cache.as_ref(), &self.page_key(page), &tally, self.now).await?;
        }
        self.new_pages.push(tally);
        self.progress.pages += 1;
        self.progress.members_read += scan.members.len() as u64;
        self.progress.cursor = scan.resume_from;
        self.progress.scan_complete = complete || self.progress.members_read >= self.config.max_members as u64;
        self.save().await?;
        Ok(None)
    }

    /// Looks every member of a page up and counts them; the page counts only if all were.
    async fn count_page(&mut self, members: &[Identifiers]) -> Result<Tally, PageStop> {
        let lookup = Lookup {
            api: self.api,
            cache: self.sync.cache.as_ref(),
            ttl: self.sync.attribute_ttl,
            id_type: self.config.id_type,
        };
        let deadline = self.deadline;
        let lookup = &lookup;
        // `None`: the member has no identifier to look them up by.
        let results: Vec<Option<Result<Found, CioError>>> = futures::stream::iter(members)
            .map(|member| async move {
                match lookup.identifier(member) {
                    Some((id_type, id)) => Some(lookup.attributes(id_type, id, deadline).await),
                    None => None,
                }
            })
            .buffered(LOOKUPS_IN_FLIGHT)
            .collect()
            .await;
        let mut tally = Tally::default();
        let mut stop = None;
        for result in results {
            let Some(result) = result else {
                self.count("without_identifier", 1);
                continue;
            };
            match result {
                Ok(found @ Found::Attributes { .. }) => {
                    self.lookups.add(&found);
                    self.count(if found.cached() { "attributes_cached" } else { "attributes_fetched" }, 1);
                    tally.add(self.config, &found.into_attributes());
                }
                Ok(found @ (Found::Nothing { .. } | Found::NotFound { .. })) => {
                    // Both count as without attributes; nobody found is also counted apart.
                    self.count("without_attributes", 1);
                    if !found.cached() {
                        self.count("attributes_fetched", 1);
                    }
                    if matches!(found, Found::NotFound { .. }) {
                        self.count("not_found", 1);
                    }
                    self.lookups.add(&found);
                }
                // One person Customer.io will not look up (an identifier it refuses) does not
                // hold the whole segment up.
                Err(CioError::BadRequest { .. } | CioError::InvalidInput { .. }) => self.count("lookup_refused", 1),
                Err(CioError::DeadlineExceeded { .. }) => {
                    stop.get_or_insert(PageStop::Deadline);
                }
                Err(e) => {
                    if !matches!(stop, Some(PageStop::Failed(_))) {
                        stop = Some(PageStop::Failed(e));
                    }
                }
            }
        }
        match stop {
            None => Ok(tally),
            Some(stop) => Err(stop),
        }
    }

    /// The segment is read: queue a persona job for each of the largest clusters.
    async fn queue(&mut self) -> Result<(), SyncError> {
        let mut total = Tally::default();
        for page in 0..self.first_new_page {
            match checkpoint::load::<Tally>(self.sync.cache.as_ref(), &self.page_key(page), self.now).await? {
                Some(tally) => total.merge(tally),
                None => {
                    // Lost (expired, or unreadable): count the segment again from the start.
                    tracing::warn!(page, "a page's cluster counts are missing; reading the segment again");
                    self.progress = Progress::default();
                    self.save().await?;
                    self.summary.status = RunStatus::Partial;
                    self.summary.message = Some(
                        "a page's counts were missing, so the next run reads the segment again (lookups are cached)"
                            .into(),
                    );
                    return Ok(());
                }
            }
        }
        for tally in std::mem::take(&mut self.new_pages) {
            total.merge(tally);
        }
        self.count("clustered", total.members);
        self.count("clusters", total.clusters.len() as u64);
        let label = self.window.label();
        let jobs: Vec<_> = total
            .largest(self.config)
            .into_iter()
            .map(|(key, count)| total.persona_job(self.config, self.segment_id, key, count, &label))
            .collect();
        self.summary.planned = jobs
            .iter()
            .map(|j| {
                let name = match persona_request(j, &self.config.persona) {
                    MaveraRequest::CreatePersona(p) => p.name,
                    _ => String::new(),
                };
                json!({"cluster": j.cluster_id, "label": j.label(), "size": j.size, "share": percent(j.size, j.members), "persona": name})
            })
            .collect();
        if self.dry_run {
            self.summary.message = Some(format!("dry run: would queue {} persona job(s)", jobs.len()));
            return Ok(());
        }
        let (mut queued, mut before) = (0, 0);
        for job in &jobs {
            let key = JobKey::for_sync(
                &SyncJob::AttributePersonas.rule(),
                &[&format!("seg{}", self.segment_id), &job.cluster_id],
            );
            let message = JobMessage {
                v: MESSAGE_VERSION,
                key,
                rule: SyncJob::AttributePersonas.rule(),
                job: Job::ClusterPersona(job.clone()),
            };
            match self.sync.enqueue(&message, self.now).await? {
                Enqueued::Sent => queued += 1,
                Enqueued::AlreadyQueued(_) => before += 1,
            }
        }
        self.count("queued", queued);
        self.count("already_queued", before);
        self.summary.message = Some(match jobs.len() {
            0 => format!("no cluster has at least {} members; nothing to queue", self.config.min_cluster_size),
            n => format!("{n} largest cluster(s): {queued} persona job(s) queued, {before} queued by earlier runs"),
        });
        self.progress.finished = Some(Finished {
            clusters: jobs.iter().map(|j| j.cluster_id.clone()).collect(),
            queued,
            already_queued: before,
        });
        self.save().await
    }

    /// Reports why the run stopped; the checkpoint is already at the last counted page.
    async fn stop(&mut self, stop: PageStop) -> Result<(), SyncError> {
        match stop {
            PageStop::Deadline => {
                self.summary.status = RunStatus::Partial;
                self.summary.message = Some(format!(
                    "stopped at the deadline after {} member(s); the next run resumes there",
                    self.progress.members_read
                ));
                Ok(())
            }
            PageStop::Failed(e) => Err(e.into()),
        }
    }

    async fn save(&self) -> Result<(), SyncError> {
        if self.dry_run {
            return Ok(());
        }
        checkpoint::save(self.sync.cache.as_ref(), &self.progress_key(), &self.progress, self.now).await?;
        Ok(())
    }

    fn count(&mut self, name: &'static str, n: u64) {
        *self.summary.counts.entry(name).or_default() += n;
    }

    /// Under the settings that shape the counts: changing one starts the window over.
    fn progress_key(&self) -> String {
        let c = self.config;
        let clusters: Vec<Value> = c.cluster_by.iter().map(|a| json!([a.attribute, a.buckets, a.default])).collect();
        let settings = json!([self.segment_id, c.id_type.as_str(), clusters, c.describe, c.max_members, c.page_size]);
        format!("cio-sync#attribute-personas#{}#progress-{}", self.window.label(), fingerprint(&settings))
    }

    fn page_key(&self, page: u32) -> String {
        format!("{}#page-{page}", self.progress_key())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::cio_sync::RunRequest;
    use crate::customerio::memory::{Call, MemoryCustomerIo};
    use crate::queue::ClusterPersona;
    use crate::queue::MemoryQueue;
    use crate::store::{JobStore, Lease, MemoryStore, Outcome, StartJob};
    use crate::triggers::Triggers;

    /// Segment 7: 12 pro/saas, 8 free/retail, 3 team/saas, 2 without attributes of
    /// interest; each person's id is their position.
    fn segment() -> Arc<MemoryCustomerIo> {
        let mut people = Vec::new();
        people.extend((0..12).map(|_| json!({"plan_type": "Pro", "industry": "SaaS"})));
        people.extend((0..8).map(|_| json!({"plan_type": "free", "industry": "Retail"})));
        people.extend((0..3).map(|_| json!({"plan_type": "team", "industry": "saas"})));
        people.extend((0..2).map(|_| json!({"email": "x@example.com"})));
        let api = MemoryCustomerIo::new();
        let mut members = Vec::new();
        for (n, attributes) in people.into_iter().enumerate() {
            let ids = Identifiers { id: Some(n.to_string()), ..Identifiers::default() };
            api.add_person(ids.clone(), attributes);
            members.push(ids);
        }
        api.add_segment(7, members);
        Arc::new(api)
    }

    /// The people whose attributes Customer.io answered, one entry per answer.
    fn looked_up(api: &MemoryCustomerIo) -> Vec<String> {
        api.answered()
            .into_iter()
            .filter_map(|c| match c {
                Call::Attributes { id, .. } => Some(id),
                _ => None,
            })
            .collect()
    }

    fn sync(api: Arc<MemoryCustomerIo>) -> (CioSync, MemoryQueue, MemoryStore) {
        let triggers = Triggers::parse(
            "[cio_sync.attribute_personas]\nenabled = true\nsegment_id = 7\npage_size = 5\nclusters = 2\nmin_cluster_size = 3\n\
             cluster_by = [{ attribute = \"plan_type\", name = \"plan\" }, { attribute = \"industry\" }]",
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
        (sync, queue, store)
    }

    /// Does what the worker would: takes each queued job and records it done.
    async fn work_off(queue: &MemoryQueue, store: &MemoryStore) -> Vec<ClusterPersona> {
        let mut jobs = Vec::new();
        for delivery in queue.receive(50, Duration::ZERO).await {
            let message = JobMessage::from_body(&delivery.body).unwrap();
            let lease = Lease { owner: "w".into(), until: SystemTime::now() + Duration::from_secs(60) };
            store.start(&StartJob::new(&message.key, &message.rule, &lease, "{}", SystemTime::now())).await.unwrap();
            let done = Outcome::Done { result: json!({}) };
            store.finish(&message.key, "w", &done, &[], SystemTime::now()).await.unwrap();
            let Job::ClusterPersona(p) = message.job else { panic!() };
            jobs.push(p);
        }
        jobs
    }

    fn request() -> RunRequest {
        RunRequest { job: SyncJob::AttributePersonas, dry_run: false }
    }

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_772_636_400)
    }

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    async fn queued(queue: &MemoryQueue) -> Vec<ClusterPersona> {
        queue
            .receive(50, Duration::ZERO)
            .await
            .iter()
            .map(|d| match JobMessage::from_body(&d.body).unwrap().job {
                Job::ClusterPersona(p) => p,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[tokio::test]
    async fn the_largest_clusters_become_persona_jobs() {
        let api = segment();
        let (sync, queue, _) = sync(api.clone());
        let summary = sync.run(request(), now(), later()).await;
        assert_eq!(summary.status, RunStatus::Done, "{summary:?}");
        assert_eq!(summary.counts["members_read"], 25);
        assert_eq!(summary.counts["clustered"], 25);
        assert_eq!(summary.counts["queued"], 2);
        let jobs = queued(&queue).await;
        let labels: Vec<_> = jobs.iter().map(|j| (j.label(), j.size)).collect();
        assert_eq!(
            labels,
            [("plan: pro, industry: saas".to_owned(), 12), ("plan: free, industry: retail".to_owned(), 8)]
        );
        assert_eq!(jobs[0].members, 25);
        assert_eq!(looked_up(&api).len(), 25);
    }

    #[tokio::test]
    async fn a_failed_lookup_keeps_the_pages_before_it_and_the_next_run_resumes() {
        let api = segment();
        api.fail_once(
            |c| matches!(c, Call::Attributes { id, .. } if id == "12"),
            CioError::Server { endpoint: "attributes", status: 503, retry_after: None },
        );
        let (sync, queue, _) = sync(api.clone());
        let failed = sync.run(request(), now(), later()).await;
        assert_eq!(failed.status, RunStatus::Failed);
        assert_eq!(failed.counts["members_read"], 10, "pages 1 and 2 are counted; page 3 held the failure");
        assert!(failed.message.unwrap().contains("503"));
        assert!(queued(&queue).await.is_empty());

        let resumed = sync.run(request(), now(), later()).await;
        assert_eq!(resumed.status, RunStatus::Done, "{resumed:?}");
        assert_eq!(resumed.counts["attributes_cached"], 4, "page 3's other members were cached");
        let mut answered = looked_up(&api);
        answered.sort();
        answered.dedup();
        assert_eq!((looked_up(&api).len(), answered.len()), (25, 25), "everybody was fetched once, nobody twice");
        let sizes: Vec<u64> = queued(&queue).await.iter().map(|j| j.size).collect();
        assert_eq!(sizes, [12, 8]);
    }

    #[tokio::test]
    async fn a_rerun_in_the_window_queues_nothing_and_a_later_window_finds_the_same_clusters() {
        let api = segment();
        let (sync, queue, store) = sync(api.clone());
        sync.run(request(), now(), later()).await;
        let first: Vec<String> = work_off(&queue, &store).await.into_iter().map(|j| j.cluster_id).collect();
        let again = sync.run(request(), now(), later()).await;
        assert_eq!(again.status, RunStatus::AlreadyDone);
        let next_week = sync.run(request(), now() + Duration::from_secs(7 * 86_400), later()).await;
        assert_eq!(next_week.status, RunStatus::Done);
        assert_eq!((next_week.counts["queued"], next_week.counts["already_queued"]), (0, 2));
        assert_eq!(next_week.counts["attributes_cached"], 25, "within the cache's freshness nobody is fetched again");
        assert!(queued(&queue).await.is_empty());
        assert_eq!(first.len(), 2);
    }
}
