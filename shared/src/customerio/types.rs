//! Typed App API answers. Only the fields mavera-relay reads are typed; everything else is
//! ignored, since Customer.io adds fields without notice ("build your integration to ignore
//! fields it doesn't recognize"). Fields that may be missing or `null` fall back to defaults.
//!
//! Sources: Customer.io's App API OpenAPI document, <https://docs.customer.io/files/journeys-app.json>
//! (read via its mirror in `api-evangelist/customer-io`, `openapi/_original/customer-io-app-api-openapi.json`),
//! operations `listCampaigns`, `campaignMetrics`, `getSegmentMembership`; and
//! `reference/customerio-app-api.md` for attributes and email lookup.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use crate::domain::RankBy;

/// One campaign from `GET /v1/campaigns`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Campaign {
    pub id: u64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    /// "If true, the campaign is active and can still send messages." Filter on this: Mavera's
    /// sample filters on `state == "active"`, a value `state` never takes.
    #[serde(default, deserialize_with = "null_as_default")]
    pub active: bool,
    /// `running`, `draft` or `stopped` in the spec; kept as text in case more appear.
    #[serde(default, deserialize_with = "null_as_default")]
    pub state: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub tags: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub actions: Vec<CampaignAction>,
    /// Unix seconds.
    #[serde(default)]
    pub created: Option<i64>,
    #[serde(default)]
    pub updated: Option<i64>,
    #[serde(default)]
    pub first_started: Option<i64>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub trigger_segment_ids: Vec<u64>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub filter_segment_ids: Vec<u64>,
}

/// A message or webhook step of a campaign.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CampaignAction {
    pub id: u64,
    /// `email`, `webhook`, `twilio`, …
    #[serde(rename = "type", default, deserialize_with = "null_as_default")]
    pub kind: String,
}

#[derive(Deserialize)]
pub(crate) struct CampaignList {
    #[serde(default, deserialize_with = "null_as_default")]
    pub campaigns: Vec<Campaign>,
}

/// The `res` of a version-2 metrics request: how long each period of the series is.
/// The spec accepts `hours`/`hourly`, `days`/`daily`, `weeks`/`weekly`, `months`/`monthly`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    Hours,
    Days,
    Weeks,
    Months,
}

impl Resolution {
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Hours => "hours",
            Resolution::Days => "days",
            Resolution::Weeks => "weeks",
            Resolution::Months => "months",
        }
    }
}

/// The window of a version-2 metrics request (`start`, `end`, `res`, `tz`, `type`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsWindow {
    start: u64,
    end: u64,
    resolution: Resolution,
    time_zone: Option<String>,
    message_type: Option<String>,
}

/// Longest window the API serves: "`end` … limited to 10 years from the `start`".
const MAX_WINDOW_SECS: u64 = 10 * 365 * 24 * 3600;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("a metrics window must end after it starts (start {start}, end {end}, Unix seconds)")]
    Empty { start: u64, end: u64 },
    #[error("a metrics window may span at most 10 years (Customer.io's limit)")]
    TooLong,
    #[error("a metrics window cannot start before 1970")]
    BeforeEpoch,
}

impl MetricsWindow {
    /// `[start, end)` in Unix seconds.
    pub fn new(start: u64, end: u64, resolution: Resolution) -> Result<Self, WindowError> {
        if end <= start {
            return Err(WindowError::Empty { start, end });
        }
        if end - start > MAX_WINDOW_SECS {
            return Err(WindowError::TooLong);
        }
        Ok(MetricsWindow { start, end, resolution, time_zone: None, message_type: None })
    }

    /// The `length` of time up to `now`, e.g. the last 7 days by day.
    pub fn last(length: Duration, now: SystemTime, resolution: Resolution) -> Result<Self, WindowError> {
        let end = now.duration_since(UNIX_EPOCH).map_err(|_| WindowError::BeforeEpoch)?.as_secs();
        let start = end.checked_sub(length.as_secs()).ok_or(WindowError::BeforeEpoch)?;
        Self::new(start, end, resolution)
    }

    /// Periods in a region time zone such as `Europe/Berlin`; Customer.io uses EST without one.
    pub fn in_time_zone(mut self, tz: impl Into<String>) -> Self {
        self.time_zone = Some(tz.into());
        self
    }

    /// Only one channel's messages (`email`, `webhook`, `push`, …); all channels without it.
    pub fn of_type(mut self, message_type: impl Into<String>) -> Self {
        self.message_type = Some(message_type.into());
        self
    }

    pub fn start(&self) -> u64 {
        self.start
    }

    pub fn end(&self) -> u64 {
        self.end
    }

    pub fn resolution(&self) -> Resolution {
        self.resolution
    }

    /// The query parameters, `version=2` first (required: without it the API answers with the
    /// deprecated version 1, a period/steps window always in Eastern time).
    pub(crate) fn query(&self) -> Vec<(&'static str, String)> {
        let mut query = vec![
            ("version", "2".to_owned()),
            ("res", self.resolution.as_str().to_owned()),
            ("start", self.start.to_string()),
            ("end", self.end.to_string()),
        ];
        if let Some(tz) = &self.time_zone {
            query.push(("tz", tz.clone()));
        }
        if let Some(kind) = &self.message_type {
            query.push(("type", kind.clone()));
        }
        query
    }
}

/// A campaign's version-2 metrics: `{"metric": {"series": {"sent": [..], "delivered": [..], …}}}`,
/// one count per period, oldest first.
///
/// Series named in the spec: `attempted`, `bounced`, `clicked`, `human_clicked`,
/// `prefetch_clicked`, `converted`, `created`, `deferred`, `delivered`, `drafted`, `failed`,
/// `opened`, `human_opened`, `prefetch_opened`, `sent`, `spammed`, `suppressed`,
/// `undeliverable`, `topic_unsubscribed`, `unsubscribed`, and for webhooks `2xx`…`5xx`.
/// Version 2 has no totals, so totals are sums over the window. Not documented: how the
/// periods align with `start`/`end`, and whether counts are by send time or event time.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CampaignMetrics {
    series: BTreeMap<String, Vec<u64>>,
}

impl CampaignMetrics {
    pub fn from_series(series: BTreeMap<String, Vec<u64>>) -> Self {
        CampaignMetrics { series }
    }

    /// One metric's counts per period; empty when Customer.io sent none.
    pub fn series(&self, metric: &str) -> &[u64] {
        self.series.get(metric).map(Vec::as_slice).unwrap_or(&[])
    }

    /// One metric summed over the window; 0 when absent.
    pub fn total(&self, metric: &str) -> u64 {
        self.series(metric).iter().fold(0u64, |sum, n| sum.saturating_add(*n))
    }

    /// Every metric's total.
    pub fn totals(&self) -> BTreeMap<&str, u64> {
        self.series.keys().map(|name| (name.as_str(), self.total(name))).collect()
    }

    pub fn sent(&self) -> u64 {
        self.total("sent")
    }

    pub fn delivered(&self) -> u64 {
        self.total("delivered")
    }

    pub fn opened(&self) -> u64 {
        self.total("opened")
    }

    pub fn clicked(&self) -> u64 {
        self.total("clicked")
    }

    pub fn converted(&self) -> u64 {
        self.total("converted")
    }

    pub fn bounced(&self) -> u64 {
        self.total("bounced")
    }

    pub fn unsubscribed(&self) -> u64 {
        self.total("unsubscribed")
    }

    /// Conversions per delivered message; `None` when nothing was delivered (or the channel,
    /// like webhooks, reports no deliveries).
    pub fn conversion_rate(&self) -> Option<f64> {
        ratio(self.converted(), self.delivered())
    }

    /// Clicks per delivered message; `None` when nothing was delivered.
    pub fn click_rate(&self) -> Option<f64> {
        ratio(self.clicked(), self.delivered())
    }

    /// The rate campaigns are ranked by; `None` when nothing was delivered.
    pub fn rate(&self, rank_by: RankBy) -> Option<f64> {
        match rank_by {
            RankBy::ConversionRate => self.conversion_rate(),
            RankBy::ClickRate => self.click_rate(),
        }
    }
}

/// `part / whole`, or `None` for an empty whole.
pub fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

#[derive(Deserialize)]
pub(crate) struct MetricsEnvelope {
    metric: MetricsBody,
}

#[derive(Deserialize)]
struct MetricsBody {
    #[serde(default, deserialize_with = "null_as_default")]
    series: Map<String, Value>,
}

impl MetricsEnvelope {
    /// Keeps the series that are arrays of counts; anything else Customer.io adds is skipped.
    pub(crate) fn into_metrics(self) -> CampaignMetrics {
        let series = self
            .metric
            .series
            .into_iter()
            .filter_map(|(name, value)| {
                let Value::Array(items) = value else { return None };
                let counts = items.iter().map(|v| v.as_u64().unwrap_or(0)).collect();
                Some((name, counts))
            })
            .collect();
        CampaignMetrics { series }
    }
}

/// A person's attributes from `GET /v1/customers/{id}/attributes`. Values stay JSON: the
/// documented example has only strings (timestamps too), but nothing promises that.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Attributes {
    #[serde(default, deserialize_with = "lenient_id")]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub attributes: Map<String, Value>,
}

impl Attributes {
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.attributes.get(name)
    }

    /// An attribute as text: strings as they are, numbers and booleans written out.
    pub fn text(&self, name: &str) -> Option<String> {
        match self.get(name)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct AttributesEnvelope {
    pub customer: Attributes,
}

/// The identifiers of one person. `id` may come as a number (email lookup example) and unset
/// ones as `null`; both are normalized, and an empty string counts as unset.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct Identifiers {
    #[serde(default, deserialize_with = "lenient_id")]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "lenient_id")]
    pub email: Option<String>,
    #[serde(default, deserialize_with = "lenient_id")]
    pub cio_id: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct EmailLookup {
    #[serde(default, deserialize_with = "null_as_default")]
    pub results: Vec<Identifiers>,
}

/// One page of `GET /v1/segments/{id}/membership`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MembershipPage {
    pub identifiers: Vec<Identifiers>,
    /// Pass as `start` for the next page; `None` on the last page.
    pub next: Option<String>,
}

/// The page as sent: `identifiers` (`email`/`id` nullable, `cio_id`), the legacy `ids` (empty
/// string for people without an id), and `next`. The spec does not say how the last page
/// ends, so an absent, `null` or empty `next` all mean "no more".
#[derive(Deserialize)]
pub(crate) struct MembershipBody {
    #[serde(default)]
    identifiers: Option<Vec<Identifiers>>,
    #[serde(default, deserialize_with = "null_as_default")]
    ids: Vec<Value>,
    #[serde(default)]
    next: Option<String>,
}

impl MembershipBody {
    pub(crate) fn into_page(self) -> MembershipPage {
        let identifiers = match self.identifiers {
            Some(identifiers) => identifiers,
            // Only the legacy list: keep the people who have an id.
            None => self
                .ids
                .into_iter()
                .filter_map(|v| id_text(v).map(|id| Identifiers { id: Some(id), ..Identifiers::default() }))
                .collect(),
        };
        MembershipPage { identifiers, next: self.next.filter(|n| !n.is_empty()) }
    }
}

/// Why [`CustomerIoApi::scan_segment`](super::CustomerIoApi::scan_segment) stopped.
#[derive(Debug)]
pub enum ScanStop {
    /// The segment was read to its last page.
    Complete,
    /// `max_members` were collected; more remain.
    ReachedMax,
    /// The deadline came before the next page; resume later.
    Deadline,
    /// A page failed (after the client's own retries); resume later or give up.
    Failed(super::CioError),
}

/// Members read so far and where to pick up.
#[derive(Debug)]
pub struct SegmentScan {
    pub members: Vec<Identifiers>,
    /// The `start` token for the first unread page; `None` once the segment is read to its end.
    pub resume_from: Option<String>,
    pub stop: ScanStop,
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn lenient_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(id_text(Value::deserialize(d)?))
}

/// Strings and numbers as text; `null`, `""` and anything else as unset.
fn id_text(value: Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_documented_campaign_parses_and_unknown_fields_are_ignored() {
        let body = json!({"campaigns":[{"id":5,"deduplicate_id":"15:1492548073","name":"Welcome","created":1552341937,
            "updated":1552341937,"active":true,"state":"running","actions":[{"type":"email","id":259}],
            "first_started":1552341937,"tags":["new","welcome"],"trigger_segment_ids":[90],
            "filter_segment_ids":[21,42],"audience":{"type":1},"something_new":{"x":1}},
            {"id":6,"name":null,"tags":null}]});
        let list: CampaignList = serde_json::from_value(body).unwrap();
        let c = &list.campaigns[0];
        assert_eq!((c.id, c.name.as_str(), c.active, c.state.as_str()), (5, "Welcome", true, "running"));
        assert_eq!(c.actions, vec![CampaignAction { id: 259, kind: "email".into() }]);
        assert_eq!(c.tags, vec!["new", "welcome"]);
        assert_eq!(c.filter_segment_ids, vec![21, 42]);
        let sparse = &list.campaigns[1];
        assert_eq!((sparse.name.as_str(), sparse.active, sparse.tags.len()), ("", false, 0));
    }

    #[test]
    fn metrics_v2_sums_each_series() {
        let body = json!({"metric":{"series":{"sent":[10,20,0],"delivered":[8,20,0],"clicked":[2,3,0],
            "converted":[1,1,0],"2xx":[1],"future_scalar":7}}});
        let m = serde_json::from_value::<MetricsEnvelope>(body).unwrap().into_metrics();
        assert_eq!((m.sent(), m.delivered(), m.clicked(), m.converted()), (30, 28, 5, 2));
        assert_eq!(m.series("sent"), &[10, 20, 0]);
        assert_eq!(m.total("opened"), 0);
        assert_eq!(m.total("2xx"), 1);
        assert!(!m.totals().contains_key("future_scalar"));
        assert_eq!(m.conversion_rate(), Some(2.0 / 28.0));
        assert_eq!(m.click_rate(), Some(5.0 / 28.0));
    }

    #[test]
    fn rates_guard_against_nothing_delivered() {
        let m = CampaignMetrics::from_series(BTreeMap::from([("sent".into(), vec![5]), ("converted".into(), vec![0])]));
        assert_eq!(m.conversion_rate(), None);
        assert_eq!(m.click_rate(), None);
        assert_eq!(CampaignMetrics::default().conversion_rate(), None);
        assert_eq!(ratio(0, 4), Some(0.0));
        assert_eq!(ratio(3, 0), None);
        let empty = serde_json::from_value::<MetricsEnvelope>(json!({"metric":{"series":null}})).unwrap();
        assert_eq!(empty.into_metrics(), CampaignMetrics::default());
    }

    #[test]
    fn saturating_totals_do_not_panic() {
        let m = CampaignMetrics::from_series(BTreeMap::from([("sent".into(), vec![u64::MAX, 5])]));
        assert_eq!(m.sent(), u64::MAX);
    }

    #[test]
    fn windows_are_validated_and_ask_for_version_2() {
        assert_eq!(MetricsWindow::new(10, 10, Resolution::Days), Err(WindowError::Empty { start: 10, end: 10 }));
        assert_eq!(MetricsWindow::new(0, MAX_WINDOW_SECS + 1, Resolution::Days), Err(WindowError::TooLong));
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let w = MetricsWindow::last(Duration::from_secs(7 * 86400), now, Resolution::Days)
            .unwrap()
            .in_time_zone("Europe/Berlin");
        assert_eq!((w.start(), w.end()), (1_700_000_000 - 7 * 86400, 1_700_000_000));
        let q = w.query();
        assert_eq!(q[0], ("version", "2".to_owned()));
        assert!(q.contains(&("res", "days".to_owned())));
        assert!(q.contains(&("tz", "Europe/Berlin".to_owned())));
        assert!(!q.iter().any(|(k, _)| *k == "type"));
        assert_eq!(
            MetricsWindow::last(Duration::from_secs(10), UNIX_EPOCH, Resolution::Hours),
            Err(WindowError::BeforeEpoch)
        );
    }

    #[test]
    fn attributes_keep_json_values() {
        let body = json!({"customer":{"id":"1","attributes":{"_last_emailed":"1528932553","plan":"pro","seats":3,
            "trial":false,"tags":["a"]},"timestamps":{"plan":1}}});
        let a = serde_json::from_value::<AttributesEnvelope>(body).unwrap().customer;
        assert_eq!(a.id.as_deref(), Some("1"));
        assert_eq!(a.text("plan").as_deref(), Some("pro"));
        assert_eq!(a.text("seats").as_deref(), Some("3"));
        assert_eq!(a.text("trial").as_deref(), Some("false"));
        assert_eq!(a.text("tags"), None);
        assert_eq!(a.get("_last_emailed"), Some(&json!("1528932553")));
    }

    #[test]
    fn identifiers_accept_numbers_and_nulls() {
        let body = json!({"results":[{"email":"hugh.mann@example.com","id":2,"cio_id":"a3000001"},
            {"email":null,"id":"","cio_id":"b1"}]});
        let found = serde_json::from_value::<EmailLookup>(body).unwrap().results;
        assert_eq!(
            found[0],
            Identifiers {
                id: Some("2".into()),
                email: Some("hugh.mann@example.com".into()),
                cio_id: Some("a3000001".into())
            }
        );
        assert_eq!(found[1], Identifiers { id: None, email: None, cio_id: Some("b1".into()) });
    }

    #[test]
    fn membership_prefers_identifiers_and_normalizes_next() {
        let body = json!({"segment_id":7,"ids":["42",""],"identifiers":[{"email":"a@x.io","id":"42","cio_id":"c1"},
            {"email":"b@x.io","id":null,"cio_id":"c2"}],"next":"MTAw"});
        let page = serde_json::from_value::<MembershipBody>(body).unwrap().into_page();
        assert_eq!(page.identifiers.len(), 2);
        assert_eq!(page.identifiers[1].id, None);
        assert_eq!(page.next.as_deref(), Some("MTAw"));
        for last in
            [json!({"identifiers":[]}), json!({"identifiers":[],"next":""}), json!({"identifiers":[],"next":null})]
        {
            assert_eq!(serde_json::from_value::<MembershipBody>(last).unwrap().into_page().next, None);
        }
    }

    #[test]
    fn legacy_ids_are_used_only_without_identifiers() {
        let page = serde_json::from_value::<MembershipBody>(json!({"ids":["1","",2]})).unwrap().into_page();
        let ids: Vec<_> = page.identifiers.iter().map(|i| i.id.as_deref().unwrap()).collect();
        assert_eq!(ids, vec!["1", "2"]);
    }
}
