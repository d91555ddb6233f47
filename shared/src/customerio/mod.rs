//! The Customer.io App API: what the worker (attribute lookups) and the scheduled jobs
//! (campaign metrics, segment members) read from Customer.io.
//!
//! - [`CioClient`] is the HTTPS adapter: bearer auth with `CIO_APP_KEY`, the region's host
//!   (`CIO_REGION`), every request through one gate shared by all clones (at most 10 starts in
//!   any second, retries included), retries of 429/5xx within a caller's deadline.
//! - [`CustomerIoApi`] is the port callers depend on (`Arc<dyn CustomerIoApi>`), so tests and
//!   local runs can substitute a twin.
//!
//! What the vendor documents, and where (see also `reference/customerio-app-api.md`):
//! - Metrics: `version` is required; version 2 takes `res` (`hours`…`months`, or
//!   `hourly`…`monthly`), `tz` (region format, EST when absent), `start`/`end` (Unix seconds, at
//!   most 10 years apart), and answers `{"metric":{"series":{<metric>:[count per period]}}}`
//!   with no totals (OpenAPI `campaignMetrics` in `journeys-app.json`).
//! - Membership: `limit` defaults to 1000, at most 30000; the answer holds `identifiers`
//!   (`email` and `id` nullable, `cio_id`), the legacy `ids`, and a `next` token for `start`
//!   (OpenAPI `getSegmentMembership`).
//!
//! Not documented, so handled defensively: how the last membership page signals its end (an
//! absent, null or empty `next` all stop), whether 429s carry `Retry-After` (honoured when
//! present), how series periods align with `start`/`end`, and whether `id_type=cio_id`
//! expects the `cio_` prefix (both are tried, see [`CioIdForm`]).

mod client;
mod config;
mod error;
mod id_type;
mod limiter;
mod lookup;
/// The in-memory twin, for tests.
#[cfg(any(test, feature = "test-support"))]
pub mod memory;
mod path;
mod retry;
mod types;

use async_trait::async_trait;
use tokio::time::Instant;

pub use client::{CioClient, CioIdForm, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, bare_cio_id};
pub use config::{CioConfig, CioRegion, DEFAULT_REQUESTS_PER_SECOND, RegionError};
pub use error::CioError;
pub use id_type::IdType;
pub use lookup::{Found, Lookup, LookupTally, NOT_FOUND_TTL, attribute_cache_key};
pub use path::encode_segment;
pub use types::{
    Attributes, Campaign, CampaignAction, CampaignMetrics, Identifiers, MembershipPage, MetricsWindow, Resolution,
    ScanStop, SegmentScan, WindowError, ratio,
};

/// The App API calls mavera-relay makes. Every call takes the instant by which it must be
/// done: rate-limit waits, retries and backoff all fit inside it.
#[async_trait]
pub trait CustomerIoApi: Send + Sync {
    /// Every campaign in the workspace; callers keep those with `active == true`.
    async fn campaigns(&self, deadline: Instant) -> Result<Vec<Campaign>, CioError>;

    /// A campaign's version-2 metrics over `window`.
    async fn campaign_metrics(
        &self,
        campaign_id: u64,
        window: &MetricsWindow,
        deadline: Instant,
    ) -> Result<CampaignMetrics, CioError>;

    /// A person's attributes, or `None` when Customer.io has no such person.
    async fn customer_attributes(
        &self,
        id: &str,
        id_type: IdType,
        deadline: Instant,
    ) -> Result<Option<Attributes>, CioError>;

    /// Everyone with this email address.
    async fn customers_by_email(&self, email: &str, deadline: Instant) -> Result<Vec<Identifiers>, CioError>;

    /// One page of a segment's members; `start` is the previous page's `next`.
    async fn segment_members(
        &self,
        segment_id: u64,
        start: Option<&str>,
        limit: u32,
        deadline: Instant,
    ) -> Result<MembershipPage, CioError>;

    /// Reads a segment page by page from `resume_from` (`None`: the first page) until its end,
    /// `max_members`, the deadline or a failed page, whichever comes first. Pages never ask
    /// for more than the members still wanted, so nothing read is skipped on resume.
    ///
    /// Unless the scan is [`ScanStop::Complete`], pass `resume_from` back to continue.
    async fn scan_segment(
        &self,
        segment_id: u64,
        resume_from: Option<String>,
        max_members: usize,
        page_size: u32,
        deadline: Instant,
    ) -> SegmentScan {
        let mut members = Vec::new();
        let mut cursor = resume_from;
        loop {
            let wanted = max_members.saturating_sub(members.len());
            if wanted == 0 {
                return SegmentScan { members, resume_from: cursor, stop: ScanStop::ReachedMax };
            }
            if Instant::now() >= deadline {
                return SegmentScan { members, resume_from: cursor, stop: ScanStop::Deadline };
            }
            let limit = page_size.clamp(1, MAX_PAGE_SIZE).min(u32::try_from(wanted).unwrap_or(u32::MAX));
            match self.segment_members(segment_id, cursor.as_deref(), limit, deadline).await {
                Ok(page) => {
                    members.extend(page.identifiers);
                    match page.next {
                        Some(next) => cursor = Some(next),
                        None => return SegmentScan { members, resume_from: None, stop: ScanStop::Complete },
                    }
                }
                Err(CioError::DeadlineExceeded { .. }) => {
                    return SegmentScan { members, resume_from: cursor, stop: ScanStop::Deadline };
                }
                Err(error) => return SegmentScan { members, resume_from: cursor, stop: ScanStop::Failed(error) },
            }
        }
    }
}

#[async_trait]
impl CustomerIoApi for CioClient {
    async fn campaigns(&self, deadline: Instant) -> Result<Vec<Campaign>, CioError> {
        CioClient::campaigns(self, deadline).await
    }

    async fn campaign_metrics(
        &self,
        campaign_id: u64,
        window: &MetricsWindow,
        deadline: Instant,
    ) -> Result<CampaignMetrics, CioError> {
        CioClient::campaign_metrics(self, campaign_id, window, deadline).await
    }

    async fn customer_attributes(
        &self,
        id: &str,
        id_type: IdType,
        deadline: Instant,
    ) -> Result<Option<Attributes>, CioError> {
        CioClient::customer_attributes(self, id, id_type, deadline).await
    }

    async fn customers_by_email(&self, email: &str, deadline: Instant) -> Result<Vec<Identifiers>, CioError> {
        CioClient::customers_by_email(self, email, deadline).await
    }

    async fn segment_members(
        &self,
        segment_id: u64,
        start: Option<&str>,
        limit: u32,
        deadline: Instant,
    ) -> Result<MembershipPage, CioError> {
        CioClient::segment_members(self, segment_id, start, limit, deadline).await
    }
}

impl SegmentScan {
    /// Whether the segment was read to its end.
    pub fn is_complete(&self) -> bool {
        matches!(self.stop, ScanStop::Complete)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::memory::{Call, MemoryCustomerIo};
    use super::*;

    /// Segment 1 with `size` members `c0`, `c1`, …, paged by offset.
    fn segment(size: usize) -> MemoryCustomerIo {
        let api = MemoryCustomerIo::new();
        let members =
            (0..size).map(|n| Identifiers { cio_id: Some(format!("c{n}")), ..Identifiers::default() }).collect();
        api.add_segment(1, members);
        api
    }

    fn limits(api: &MemoryCustomerIo) -> Vec<u32> {
        api.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::SegmentPage { limit, .. } => Some(limit),
                _ => None,
            })
            .collect()
    }

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    fn ids(scan: &SegmentScan) -> Vec<String> {
        scan.members.iter().map(|m| m.cio_id.clone().unwrap()).collect()
    }

    #[tokio::test]
    async fn a_scan_reads_to_the_end() {
        let api = segment(7);
        let scan = api.scan_segment(1, None, 100, 3, later()).await;
        assert!(scan.is_complete());
        assert_eq!(scan.resume_from, None);
        assert_eq!(ids(&scan), (0..7).map(|n| format!("c{n}")).collect::<Vec<_>>());
        assert_eq!(limits(&api), vec![3, 3, 3]);
    }

    #[tokio::test]
    async fn a_scan_stops_at_the_maximum_without_overreading_and_resumes() {
        let api = segment(10);
        let first = api.scan_segment(1, None, 4, 3, later()).await;
        assert!(matches!(first.stop, ScanStop::ReachedMax));
        assert_eq!(ids(&first), vec!["c0", "c1", "c2", "c3"]);
        assert_eq!(limits(&api), vec![3, 1], "the second page asks only for what is wanted");
        let rest = api.scan_segment(1, first.resume_from, 100, 3, later()).await;
        assert!(rest.is_complete());
        assert_eq!(ids(&rest), (4..10).map(|n| format!("c{n}")).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_failed_page_keeps_what_was_read_and_where() {
        let api = segment(10);
        api.fail_once(
            |c| matches!(c, Call::SegmentPage { start: Some(s), .. } if s == "6"),
            CioError::Server { endpoint: "test", status: 503, retry_after: None },
        );
        let scan = api.scan_segment(1, None, 100, 3, later()).await;
        assert!(matches!(scan.stop, ScanStop::Failed(CioError::Server { status: 503, .. })));
        assert_eq!(scan.members.len(), 6);
        assert_eq!(scan.resume_from.as_deref(), Some("6"));
    }

    #[tokio::test]
    async fn a_passed_deadline_reads_nothing() {
        let api = segment(10);
        let scan = api.scan_segment(1, Some("3".into()), 100, 3, Instant::now()).await;
        assert!(matches!(scan.stop, ScanStop::Deadline));
        assert_eq!((scan.members.len(), scan.resume_from.as_deref()), (0, Some("3")));
        assert!(api.calls().is_empty());
    }
}
