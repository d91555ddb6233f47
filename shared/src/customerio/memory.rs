//! The in-memory twin of the Customer.io App API port, for unit tests: seeded campaigns,
//! metrics, people and segments, a log of every call with whether it was answered, and
//! one-shot failures. Segment pages use offsets as their `next` tokens.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use serde_json::{Map, Value};
use tokio::time::Instant;

use super::IdType;
use super::{
    Attributes, Campaign, CampaignMetrics, CioError, CustomerIoApi, Identifiers, MembershipPage, MetricsWindow,
};

/// One call to the twin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Campaigns,
    Metrics(u64),
    Attributes { id: String, id_type: IdType },
    CustomersByEmail(String),
    SegmentPage { segment: u64, start: Option<String>, limit: u32 },
}

type Failure = (Box<dyn Fn(&Call) -> bool + Send>, CioError);

#[derive(Default)]
struct State {
    campaigns: Vec<Campaign>,
    metrics: BTreeMap<u64, CampaignMetrics>,
    people: Vec<(Identifiers, Map<String, Value>)>,
    segments: BTreeMap<u64, Vec<Identifiers>>,
    failures: Vec<Failure>,
    /// Every call, and whether it was answered (not failed).
    calls: Vec<(Call, bool)>,
}

#[derive(Default)]
pub struct MemoryCustomerIo {
    state: Mutex<State>,
}

impl MemoryCustomerIo {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn add_campaign(&self, campaign: Campaign, metrics: Option<CampaignMetrics>) {
        let mut state = self.lock();
        if let Some(metrics) = metrics {
            state.metrics.insert(campaign.id, metrics);
        }
        state.campaigns.push(campaign);
    }

    /// A person findable by any of `ids`, with `attributes` (a JSON object).
    pub fn add_person(&self, ids: Identifiers, attributes: Value) {
        let attributes = match attributes {
            Value::Object(map) => map,
            other => panic!("a person's attributes are a JSON object, not {other}"),
        };
        self.lock().people.push((ids, attributes));
    }

    pub fn add_segment(&self, segment: u64, members: Vec<Identifiers>) {
        self.lock().segments.insert(segment, members);
    }

    /// The next call that `matches` fails with `error` (once).
    pub fn fail_once(&self, matches: impl Fn(&Call) -> bool + Send + 'static, error: CioError) {
        self.lock().failures.push((Box::new(matches), error));
    }

    /// Every call so far, answered or failed.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.iter().map(|(c, _)| c.clone()).collect()
    }

    /// The calls that were answered (not failed).
    pub fn answered(&self) -> Vec<Call> {
        self.lock().calls.iter().filter(|(_, ok)| *ok).map(|(c, _)| c.clone()).collect()
    }

    /// Logs `call`, failing it if a scripted failure matches.
    fn record(&self, call: Call) -> Result<MutexGuard<'_, State>, CioError> {
        let mut state = self.lock();
        let failure = state.failures.iter().position(|(matches, _)| matches(&call)).map(|i| state.failures.remove(i).1);
        state.calls.push((call, failure.is_none()));
        match failure {
            Some(error) => Err(error),
            None => Ok(state),
        }
    }
}

fn identifier(ids: &Identifiers, id_type: IdType) -> Option<&str> {
    match id_type {
        IdType::Id => ids.id.as_deref(),
        IdType::Email => ids.email.as_deref(),
        IdType::CioId => ids.cio_id.as_deref(),
        IdType::Phone => None,
    }
}

#[async_trait]
impl CustomerIoApi for MemoryCustomerIo {
    async fn campaigns(&self, _: Instant) -> Result<Vec<Campaign>, CioError> {
        Ok(self.record(Call::Campaigns)?.campaigns.clone())
    }

    async fn campaign_metrics(&self, id: u64, _: &MetricsWindow, _: Instant) -> Result<CampaignMetrics, CioError> {
        let state = self.record(Call::Metrics(id))?;
        state.metrics.get(&id).cloned().ok_or(CioError::NotFound { endpoint: "metrics" })
    }

    async fn customer_attributes(&self, id: &str, id_type: IdType, _: Instant) -> Result<Option<Attributes>, CioError> {
        let state = self.record(Call::Attributes { id: id.to_owned(), id_type })?;
        // The ideal API: a cio_id is found in either spelling (the HTTPS client's concern).
        let wanted = if id_type == IdType::CioId { super::bare_cio_id(id) } else { id };
        let person = state.people.iter().find(|(ids, _)| identifier(ids, id_type) == Some(wanted));
        Ok(person.map(|(ids, attributes)| Attributes { id: ids.id.clone(), attributes: attributes.clone() }))
    }

    async fn customers_by_email(&self, email: &str, _: Instant) -> Result<Vec<Identifiers>, CioError> {
        let state = self.record(Call::CustomersByEmail(email.to_owned()))?;
        Ok(state
            .people
            .iter()
            .filter(|(ids, _)| ids.email.as_deref() == Some(email))
            .map(|(ids, _)| ids.clone())
            .collect())
    }

    async fn segment_members(
        &self,
        segment: u64,
        start: Option<&str>,
        limit: u32,
        _: Instant,
    ) -> Result<MembershipPage, CioError> {
        let state = self.record(Call::SegmentPage { segment, start: start.map(str::to_owned), limit })?;
        let members = state.segments.get(&segment).ok_or(CioError::NotFound { endpoint: "segment membership" })?;
        let from: usize = start.and_then(|s| s.parse().ok()).unwrap_or(0).min(members.len());
        let to = (from + limit as usize).min(members.len());
        Ok(MembershipPage {
            identifiers: members[from..to].to_vec(),
            next: (to < members.len()).then(|| to.to_string()),
        })
    }
}
