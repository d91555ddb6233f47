//! The queue message: the one contract between the producers (ingest, `cio-sync`) and the
//! worker. A message carries facts, not a rendered request: the normalized event and the rule
//! *name* for a webhook, the winners or the cluster for a scheduled job. The worker renders
//! with the `triggers.toml` it runs with, so a message replayed from the DLQ after a fix uses
//! the fixed rules and templates.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::QueueError;
use crate::domain::{Event, JobKey, RankBy, RuleName, percent};

/// SQS refuses bodies over 256 KiB; checked before a job is claimed, so an oversized event
/// is refused up front instead of failing after the claim.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// The current message format.
pub const MESSAGE_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobMessage {
    pub v: u32,
    pub key: JobKey,
    pub rule: RuleName,
    pub job: Job,
}

/// What the worker is asked to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Job {
    /// Run `rule`'s action for a webhook event.
    Event { event: Event },
    /// `cio-sync` job 1: ask Mave what the winning campaigns share, then Generate for new
    /// variations (`rule` is `campaign-strategy`).
    CampaignAnalysis(CampaignAnalysis),
    /// `cio-sync` job 2: create the persona of one attribute cluster (`rule` is
    /// `attribute-personas`).
    ClusterPersona(ClusterPersona),
}

impl JobMessage {
    pub fn for_event(key: JobKey, rule: RuleName, event: Event) -> Self {
        JobMessage { v: MESSAGE_VERSION, key, rule, job: Job::Event { event } }
    }

    /// The SQS body, refusing what SQS would refuse.
    pub fn to_body(&self) -> Result<String, QueueError> {
        checked(serde_json::to_string(self))
    }

    /// The body of an event job, encoded from borrowed parts (no copy of the event).
    pub fn event_body(key: &JobKey, rule: &RuleName, event: &Event) -> Result<String, QueueError> {
        #[derive(Serialize)]
        struct EventJob<'a> {
            v: u32,
            key: &'a JobKey,
            rule: &'a RuleName,
            job: EventPart<'a>,
        }
        #[derive(Serialize)]
        #[serde(tag = "kind", rename = "event")]
        struct EventPart<'a> {
            event: &'a Event,
        }
        checked(serde_json::to_string(&EventJob { v: MESSAGE_VERSION, key, rule, job: EventPart { event } }))
    }

    pub fn from_body(body: &str) -> Result<Self, QueueError> {
        let message: JobMessage = serde_json::from_str(body).map_err(QueueError::Decode)?;
        if message.v != MESSAGE_VERSION {
            return Err(QueueError::Version(message.v));
        }
        Ok(message)
    }
}

fn checked(body: serde_json::Result<String>) -> Result<String, QueueError> {
    let body = body.map_err(QueueError::Encode)?;
    if body.len() > MAX_MESSAGE_BYTES {
        return Err(QueueError::TooLarge { bytes: body.len() });
    }
    Ok(body)
}

/// Job 1's one message per run window: the best campaigns, for Mave to explain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignAnalysis {
    /// The run window this analysis belongs to (`2026-03-02_7d`).
    pub run_window: String,
    /// The days whose metrics were ranked.
    pub metrics: MetricsDates,
    pub rank_by: RankBy,
    pub min_delivered: u64,
    /// Running campaigns whose metrics were read.
    pub campaigns_considered: u64,
    /// Best first.
    pub winners: Vec<Winner>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsDates {
    /// First day, `YYYY-MM-DD` (UTC).
    pub start: String,
    /// Last day, inclusive.
    pub end: String,
    pub days: u32,
}

/// A campaign that ranked among the best.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Winner {
    pub id: u64,
    pub name: String,
    pub tags: Vec<String>,
    /// The ranking rate (conversions or clicks per delivered message).
    pub rate: f64,
    /// Totals over the window of the metrics a prompt shows (`delivered`, `opened`, …).
    pub totals: BTreeMap<String, u64>,
}

/// The metrics a winner's line in the prompt shows, in this order.
pub const WINNER_METRICS: [&str; 6] = ["sent", "delivered", "opened", "clicked", "converted", "unsubscribed"];

/// Job 2's message for one cluster: create a persona for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterPersona {
    pub segment_id: u64,
    /// Derived from the segment and the cluster's values only, so every run finds the same id
    /// for the same cluster (it is the last part of the job key).
    pub cluster_id: String,
    /// One per `cluster_by` entry, in order.
    pub values: Vec<ClusterValue>,
    pub size: u64,
    /// Members clustered in the run that found this cluster.
    pub members: u64,
    /// Per `describe` attribute: the most common values in the cluster.
    pub distribution: Vec<Spread>,
    /// The run window that found it.
    pub run_window: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterValue {
    /// The template name (`{cluster.<name>}`).
    pub name: String,
    /// The Customer.io attribute.
    pub attribute: String,
    /// The lower-cased value or bucket label.
    pub value: String,
}

/// How one attribute's values spread within a cluster: the most common, then the rest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub attribute: String,
    /// Most common first.
    pub top: Vec<(String, u64)>,
    /// Members with any other value.
    pub others: u64,
}

impl CampaignAnalysis {
    pub fn winner_ids(&self) -> Vec<u64> {
        self.winners.iter().map(|w| w.id).collect()
    }
}

impl ClusterPersona {
    /// `plan: pro, industry: saas`.
    pub fn label(&self) -> String {
        self.values.iter().map(|v| format!("{}: {}", v.name, v.value)).collect::<Vec<_>>().join(", ")
    }

    /// `country: us 60%, de 30%, others 10%; source: ads 100%`, or empty without `describe`.
    pub fn distribution_text(&self) -> String {
        self.distribution
            .iter()
            .map(|s| {
                let total = s.top.iter().map(|(_, n)| n).sum::<u64>() + s.others;
                let mut parts: Vec<String> = s.top.iter().map(|(v, n)| format!("{v} {}", percent(*n, total))).collect();
                if s.others > 0 {
                    parts.push(format!("others {}", percent(s.others, total)));
                }
                format!("{}: {}", s.attribute, parts.join(", "))
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EventId, Source};

    fn message(size: usize) -> JobMessage {
        let event = Event {
            source: Source::Segment,
            id: EventId::parse("m1").unwrap(),
            name: "trial_started".into(),
            user_id: Some("u1".into()),
            fields: serde_json::json!({"pad": "x".repeat(size)}).as_object().unwrap().clone(),
        };
        let rule = RuleName::parse("r").unwrap();
        JobMessage::for_event(JobKey::for_event(Source::Segment, &event.id, &rule), rule, event)
    }

    #[test]
    fn round_trips() {
        let m = message(10);
        let body = m.to_body().unwrap();
        assert!(body.contains(r#""kind":"event""#), "{body}");
        assert_eq!(JobMessage::from_body(&body).unwrap(), m);
    }

    #[test]
    fn the_borrowing_encoder_writes_the_same_body() {
        let m = message(10);
        let Job::Event { event } = &m.job else { panic!("an event job") };
        assert_eq!(JobMessage::event_body(&m.key, &m.rule, event).unwrap(), m.to_body().unwrap());
    }

    #[test]
    fn scheduled_jobs_carry_their_kind() {
        let persona = ClusterPersona {
            segment_id: 7,
            cluster_id: "c1".into(),
            values: vec![],
            size: 3,
            members: 9,
            distribution: vec![],
            run_window: "2026-03-02_7d".into(),
        };
        let m = JobMessage {
            v: MESSAGE_VERSION,
            key: JobKey::from_stored("cio-sync#attribute-personas#seg7#c1"),
            rule: RuleName::parse("attribute-personas").unwrap(),
            job: Job::ClusterPersona(persona),
        };
        let body = m.to_body().unwrap();
        assert!(body.contains(r#""job":{"kind":"cluster_persona","segment_id":7"#), "{body}");
        assert_eq!(JobMessage::from_body(&body).unwrap(), m);
    }

    #[test]
    fn refuses_what_sqs_would_refuse() {
        assert!(matches!(message(MAX_MESSAGE_BYTES).to_body(), Err(QueueError::TooLarge { .. })));
    }

    #[test]
    fn refuses_unknown_versions_and_shapes() {
        let body = message(1).to_body().unwrap().replace(r#""v":1"#, r#""v":2"#);
        assert!(matches!(JobMessage::from_body(&body), Err(QueueError::Version(2))));
        assert!(matches!(JobMessage::from_body("{}"), Err(QueueError::Decode(_))));
        let bad_id = message(1).to_body().unwrap().replace(r#""id":"m1""#, r#""id":"""#);
        assert!(
            matches!(JobMessage::from_body(&bad_id), Err(QueueError::Decode(_))),
            "ids are validated on the way in"
        );
    }
}
