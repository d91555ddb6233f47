//! The work `cio-sync` puts on the jobs queue, and how the worker turns it into Mavera
//! requests. As with webhook events, a message carries facts (winners, a cluster), not a
//! rendered request: the worker renders with the templates of the `triggers.toml` it runs
//! with, so a message replayed from the DLQ after a fix uses the fixed templates.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::domain::{Event, EventId, PersonaName, RankBy, Source};
use crate::mavera::{CreatePersonaRequest, GenerationRequest, MaveChatRequest, MaveraRequest};
use crate::rules::{AttributePersonasConfig, CampaignStrategyConfig};
use crate::template::JsonTemplate;

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
    /// The fields the prompt can name (see `rules::PROMPT_FIELDS`).
    fn fields(&self) -> Map<String, Value> {
        let winners: Vec<String> =
            self.winners.iter().enumerate().map(|(i, w)| winner_line(i + 1, w, self.rank_by)).collect();
        let fields = json!({
            "winners": winners.join("\n"),
            "winner_count": self.winners.len(),
            "rank_by": self.rank_by.label(),
            "min_delivered": self.min_delivered,
            "campaigns_considered": self.campaigns_considered,
            "window": {"start": self.metrics.start, "end": self.metrics.end, "days": self.metrics.days},
        });
        into_map(fields)
    }

    /// `POST /mave/chat`: what do the winners share?
    pub fn mave_request(&self, config: &CampaignStrategyConfig) -> MaveraRequest {
        let context = context("campaign-strategy", &self.run_window, self.fields());
        MaveraRequest::Research(MaveChatRequest {
            message: config.prompt.render(&context),
            thread_id: None,
            workspace_id: config.workspace_id.clone(),
        })
    }

    /// `POST /generations`: new variations, from Mave's answer.
    pub fn generate_request(
        &self,
        config: &CampaignStrategyConfig,
        mave_content: &str,
        mave_thread_id: &str,
    ) -> MaveraRequest {
        let mut fields = self.fields();
        fields.insert("mave".into(), json!({"content": mave_content, "thread_id": mave_thread_id}));
        let context = context("campaign-strategy", &self.run_window, fields);
        let g = &config.generate;
        MaveraRequest::Generate(GenerationRequest {
            app_id: g.app_id.clone(),
            input_data: render_entries(&g.input, &context),
            title: g.title.as_ref().map(|t| t.render(&context)),
            brand_voice_id: g.brand_voice_id.clone(),
            persona_id: g.persona_id.clone(),
            workspace_id: g.workspace_id.clone(),
        })
    }

    pub fn winner_ids(&self) -> Vec<u64> {
        self.winners.iter().map(|w| w.id).collect()
    }
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

    fn fields(&self) -> Map<String, Value> {
        let mut cluster = Map::new();
        for v in &self.values {
            cluster.insert(v.name.clone(), Value::String(v.value.clone()));
        }
        cluster.insert("label".into(), Value::String(self.label()));
        cluster.insert("size".into(), json!(self.size));
        cluster.insert("share".into(), Value::String(percent(self.size, self.members)));
        into_map(json!({
            "cluster": cluster,
            "distribution": self.distribution_text(),
            "members": self.members,
            "segment_id": self.segment_id,
        }))
    }

    /// `POST /personas` for this cluster. The name depends only on the cluster's values (the
    /// templates may only name those), so a second attempt meets Mavera's duplicate-name 422.
    pub fn persona_request(&self, config: &AttributePersonasConfig) -> MaveraRequest {
        let context = context("attribute-personas", &self.cluster_id, self.fields());
        let p = &config.persona;
        let name = PersonaName::new(p.name.render(&context).trim());
        let mut extra = Map::new();
        if let Some(field) = &p.context_field {
            let mut facts = Map::new();
            for v in &self.values {
                facts.insert(v.name.clone(), Value::String(v.value.clone()));
            }
            facts.insert("customer_count".into(), json!(self.size));
            facts.insert("share_of_members".into(), json!(ratio(self.size, self.members)));
            facts.insert("segment_id".into(), json!(self.segment_id));
            facts.insert("source".into(), json!("customer.io"));
            extra.insert(field.clone(), Value::Object(facts));
        }
        extra.extend(render_entries(&p.extra, &context));
        MaveraRequest::CreatePersona(CreatePersonaRequest {
            name: name.into_string(),
            description: p.description.render(&context).trim().to_owned(),
            extra,
        })
    }
}

/// Templates read events, so the facts travel as the fields of one. Only the fields above
/// can be named: the config refuses any other placeholder at start-up.
fn context(name: &str, id: &str, fields: Map<String, Value>) -> Event {
    Event {
        source: Source::CustomerIo,
        id: EventId::parse(id).unwrap_or_else(|_| EventId::parse("cio-sync").expect("a valid literal id")),
        name: name.to_owned(),
        user_id: None,
        fields,
    }
}

fn render_entries(entries: &[(String, JsonTemplate)], context: &Event) -> Map<String, Value> {
    entries.iter().map(|(k, t)| (k.clone(), t.render(context))).collect()
}

fn into_map(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 { 0.0 } else { part as f64 / whole as f64 }
}

/// A whole percentage; `<1%` for a small but present part.
pub fn percent(part: u64, whole: u64) -> String {
    let p = ratio(part, whole) * 100.0;
    if p > 0.0 && p < 1.0 { "<1%".to_owned() } else { format!("{p:.0}%") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{CLUSTER_FIELDS, PROMPT_FIELDS, Rules};

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

    fn config(generate: &str) -> Rules {
        Rules::parse(
            &format!("[cio_sync.campaign_strategy]\nenabled = true\n[cio_sync.campaign_strategy.generate]\n{generate}"),
            "t.toml",
        )
        .unwrap()
    }

    #[test]
    fn the_prompt_lists_the_winners_with_their_metrics() {
        let rules = config("app_id = \"email-variations\"");
        let MaveraRequest::Research(r) = analysis().mave_request(&rules.cio_sync().campaign_strategy) else { panic!() };
        assert!(r.message.starts_with("These are our 2 best Customer.io campaigns by conversion rate (at least 100 messages delivered) from 2026-01-31 to 2026-03-01, out of 7 running campaigns:"), "{}", r.message);
        assert!(r.message.contains("1. \"Welcome\" (campaign 5; tags: new, welcome): conversion rate 5.0%; 1000 delivered, 200 clicked (20%), 50 converted (5%)"), "{}", r.message);
        assert!(r.message.contains("2. \"Winback\" (campaign 9; no tags): conversion rate 3.1%"), "{}", r.message);
        assert!(!r.message.contains("unknown"), "{}", r.message);
    }

    #[test]
    fn every_prompt_field_is_provided() {
        let fields = analysis().fields();
        let event = context("campaign-strategy", "w", fields);
        for f in PROMPT_FIELDS {
            assert!(event.lookup(&crate::domain::FieldPath::parse(f).unwrap()).is_some(), "{f}");
        }
    }

    #[test]
    fn generate_gets_the_app_and_maves_answer() {
        let rules = config(
            "app_id = \"email-variations\"\nbrand_voice_id = \"bv1\"\ninput = { brief = \"{mave.content}\", n = 3 }",
        );
        let MaveraRequest::Generate(g) =
            analysis().generate_request(&rules.cio_sync().campaign_strategy, "Lead with the value.", "t1")
        else {
            panic!()
        };
        assert_eq!(g.app_id, "email-variations");
        assert_eq!(Value::Object(g.input_data), json!({"brief": "Lead with the value.", "n": 3}));
        assert_eq!(g.brand_voice_id.as_deref(), Some("bv1"));
        assert_eq!(g.title.as_deref(), Some("Customer.io message variations, 2026-01-31 to 2026-03-01"));
    }

    fn cluster() -> ClusterPersona {
        ClusterPersona {
            segment_id: 42,
            cluster_id: "c0123456789abcdef".into(),
            values: vec![
                ClusterValue { name: "plan".into(), attribute: "plan_type".into(), value: "pro".into() },
                ClusterValue { name: "ltv".into(), attribute: "ltv".into(), value: "100-1000".into() },
            ],
            size: 30,
            members: 120,
            distribution: vec![Spread {
                attribute: "country".into(),
                top: vec![("us".into(), 18), ("de".into(), 9)],
                others: 3,
            }],
            run_window: "2026-03-02_7d".into(),
        }
    }

    #[test]
    fn a_cluster_persona_is_named_by_its_values_and_described_by_size_and_spread() {
        let rules = Rules::parse(
            "[cio_sync.attribute_personas]\ncluster_by = [{ attribute = \"plan_type\", name = \"plan\" }, { attribute = \"ltv\", buckets = [100, 1000] }]\n\
             persona = { extra = { type = \"B2C\", note = \"{cluster.plan} buyers\" } }",
            "t.toml",
        )
        .unwrap();
        let MaveraRequest::CreatePersona(p) = cluster().persona_request(&rules.cio_sync().attribute_personas) else {
            panic!()
        };
        assert_eq!(p.name, "Customer.io cluster: plan: pro, ltv: 100-1000");
        assert_eq!(
            p.description,
            "30 of the 120 people read from Customer.io segment 42 (25%) share plan: pro, ltv: 100-1000. country: us 60%, de 30%, others 10%"
        );
        assert_eq!(p.extra["type"], "B2C");
        assert_eq!(p.extra["note"], "pro buyers");
        assert_eq!(
            p.extra["attributes"],
            json!({"plan": "pro", "ltv": "100-1000", "customer_count": 30, "share_of_members": 0.25, "segment_id": 42, "source": "customer.io"})
        );
        let event = context("attribute-personas", "c", cluster().fields());
        for f in CLUSTER_FIELDS.iter().copied().chain(["cluster.plan", "cluster.ltv"]) {
            assert!(event.lookup(&crate::domain::FieldPath::parse(f).unwrap()).is_some(), "{f}");
        }
    }

    #[test]
    fn without_describe_the_description_has_no_dangling_text() {
        let rules = Rules::parse("", "t.toml").unwrap();
        let mut c = cluster();
        c.distribution.clear();
        let MaveraRequest::CreatePersona(p) = c.persona_request(&rules.cio_sync().attribute_personas) else { panic!() };
        assert!(p.description.ends_with("share plan: pro, ltv: 100-1000."), "{}", p.description);
    }

    #[test]
    fn percentages_round_and_never_hide_a_small_part() {
        assert_eq!(percent(1, 3), "33%");
        assert_eq!(percent(1, 1000), "<1%");
        assert_eq!(percent(0, 10), "0%");
        assert_eq!(percent(5, 0), "0%");
    }
}
