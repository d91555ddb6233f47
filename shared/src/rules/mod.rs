//! Trigger rules: which webhook events make Mavera do what, and matching events against
//! them. The `[[rule]]` tables of `triggers.toml` (read by `triggers::Triggers`, with the
//! rest of the file) and `[enrichment]`, how enriching rules look people up.

mod action;
mod condition;
mod enrichment;
mod raw;

use std::collections::HashMap;

pub use action::{Action, GenerateAction, PersonaAction, ResearchAction};
pub use condition::{Condition, Test};
pub(crate) use enrichment::RawEnrichment;
pub use enrichment::{Classifier, EnrichmentConfig};
pub use raw::MAX_DAILY_CAP;
pub(crate) use raw::parse;

use crate::deliver::{DestinationName, ResultKind, Target};
use crate::domain::{Event, RuleName, Source};

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: RuleName,
    pub source: Source,
    /// Event names (Segment `event`/`type`, Customer.io `metric`); any one matches.
    pub events: Vec<String>,
    /// Checked at ingest, on the webhook's own fields.
    pub conditions: Vec<Condition>,
    /// Conditions on `customer.*`, checked by the worker after the attribute lookup.
    pub after_enrichment: Vec<Condition>,
    pub action: Action,
    /// At most this many Mavera calls per UTC day for this rule.
    pub daily_cap: Option<u32>,
    /// Fire at most once per user (by `user_id`) while the record lives (8 days).
    pub once_per_user: bool,
    /// Look the person's Customer.io attributes up before the action runs.
    pub enrich: bool,
    /// Where the result goes once Mavera has answered, in the order written.
    pub deliver: Vec<Target>,
}

impl Rule {
    /// Whether the event meets the conditions checkable at ingest.
    pub fn matches(&self, event: &Event) -> bool {
        self.conditions.iter().all(|c| c.holds(event))
    }

    /// What kind of result the rule's action makes.
    pub fn result_kind(&self) -> ResultKind {
        match &self.action {
            Action::CreatePersona(_) => ResultKind::Persona,
            Action::Research(_) => ResultKind::Research,
            Action::Generate(_) => ResultKind::Generation,
        }
    }

    /// Whether the enriched event meets the `customer.*` conditions.
    pub fn matches_after_enrichment(&self, event: &Event) -> bool {
        self.after_enrichment.iter().all(|c| c.holds(event))
    }
}

/// The rules, indexed for matching.
#[derive(Debug, Clone)]
pub struct Rules {
    rules: Vec<Rule>,
    /// Per source (in `Source::ALL` order): event name → indexes into `rules`.
    by_event: [HashMap<String, Vec<usize>>; 2],
}

fn slot(source: Source) -> usize {
    match source {
        Source::Segment => 0,
        Source::CustomerIo => 1,
    }
}

impl Rules {
    /// Indexes validated rules (in file order) by source and event name.
    pub fn new(rules: Vec<Rule>) -> Self {
        let mut by_event: [HashMap<String, Vec<usize>>; 2] = Default::default();
        for (i, rule) in rules.iter().enumerate() {
            for event in &rule.events {
                by_event[slot(rule.source)].entry(event.clone()).or_default().push(i);
            }
        }
        Rules { rules, by_event }
    }

    /// Whether any rule listens for this event name: the cheap first test, before the
    /// event's fields are parsed.
    pub fn listens_for(&self, source: Source, event_name: &str) -> bool {
        self.by_event[slot(source)].contains_key(event_name)
    }

    /// The rules the event fires, in file order.
    pub fn matching<'a>(&'a self, event: &'a Event) -> impl Iterator<Item = &'a Rule> + 'a {
        self.by_event[slot(event.source)]
            .get(event.name.as_str())
            .into_iter()
            .flatten()
            .map(|&i| &self.rules[i])
            .filter(|rule| rule.matches(event))
    }

    pub fn get(&self, name: &RuleName) -> Option<&Rule> {
        self.rules.iter().find(|r| &r.name == name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter()
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Sources with at least one rule: these need a signing secret.
    pub fn sources(&self) -> Vec<Source> {
        Source::ALL.into_iter().filter(|s| !self.by_event[slot(*s)].is_empty()).collect()
    }

    /// Whether any rule looks Customer.io attributes up (and so needs `CIO_APP_KEY`).
    pub fn needs_enrichment(&self) -> bool {
        self.rules.iter().any(|r| r.enrich)
    }

    /// The rules that deliver to `destination`.
    pub fn delivering_to(&self, destination: DestinationName) -> Vec<&Rule> {
        self.rules.iter().filter(|r| r.deliver.iter().any(|t| t.name() == destination)).collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::EventId;
    use crate::mavera::MaveraRequest;
    use crate::triggers::Triggers;

    /// The shipped rules.
    fn shipped() -> Rules {
        Triggers::embedded().unwrap().rules
    }

    fn event(source: Source, name: &str, fields: serde_json::Value) -> Event {
        Event {
            source,
            id: EventId::parse("m1").unwrap(),
            name: name.into(),
            user_id: fields.get("user_id").and_then(|v| v.as_str()).map(str::to_owned),
            fields: fields.as_object().unwrap().clone(),
        }
    }

    #[test]
    fn the_shipped_file_is_valid_and_reproduces_the_seeds() {
        let rules = shipped();
        for name in ["trial_started", "plan_upgraded", "feature_milestone", "churn_signal"] {
            assert!(rules.listens_for(Source::Segment, name), "segment {name}");
        }
        for metric in ["unsubscribed", "bounced", "spammed"] {
            assert!(rules.listens_for(Source::CustomerIo, metric), "customerio {metric}");
        }
        assert!(!rules.listens_for(Source::CustomerIo, "complained"), "complained is not a Customer.io metric");
        assert_eq!(rules.sources(), vec![Source::Segment, Source::CustomerIo]);
    }

    #[test]
    fn trial_started_renders_the_seed_persona() {
        let rules = shipped();
        let e = event(
            Source::Segment,
            "trial_started",
            json!({"user_id": "usr_k8m2n", "plan": "pro", "source": "google", "seats": 3, "nested": {"x": 1}}),
        );
        let fired: Vec<_> = rules.matching(&e).collect();
        assert_eq!(fired.len(), 1);
        let MaveraRequest::CreatePersona(p) = fired[0].action.render(&e) else { panic!("persona expected") };
        assert_eq!(p.name, "Segment RT: Trial User — usr_k8m2n");
        assert_eq!(
            p.description,
            "Real-time persona created when user usr_k8m2n started a trial. Plan: pro. Source: google."
        );
        assert_eq!(
            MaveraRequest::CreatePersona(p).body(),
            json!({
                "name": "Segment RT: Trial User — usr_k8m2n",
                "description": "Real-time persona created when user usr_k8m2n started a trial. Plan: pro. Source: google.",
                "pipeline_type": "north_star",
                "type": "B2B",
                "triggers": ["Started a trial of the pro plan"],
                "channels": ["google"],
            }),
            "the reference's fields only: no psychographic"
        );
    }

    #[test]
    fn an_event_property_cannot_pass_for_the_relays_own_fields() {
        // The shipped rules send no such object; a rule that asks for one gets the event's name.
        let text = "[[rule]]\nname = \"p\"\nsource = \"segment\"\nevent = \"trial_started\"\naction = \"create_persona\"\n\
                    [rule.persona]\nname = \"N\"\ndescription = \"D\"\ncontext_field = \"psychographic\"\n";
        let rules = crate::triggers::Triggers::parse(text, "t.toml").unwrap().rules;
        let e = event(Source::Segment, "trial_started", json!({"user_id": "u1", "trigger_event": "plan_upgraded"}));
        let rule = rules.matching(&e).next().unwrap();
        let MaveraRequest::CreatePersona(p) = rule.action.render(&e) else { panic!("persona expected") };
        assert_eq!(p.extra["psychographic"]["trigger_event"], "trial_started");
    }

    #[test]
    fn plan_upgraded_renders_the_seed_prompt() {
        let rules = shipped();
        let e = event(Source::Segment, "plan_upgraded", json!({"previous_plan": "basic", "new_plan": "pro"}));
        let rule = rules.matching(&e).next().unwrap();
        let MaveraRequest::Research(r) = rule.action.render(&e) else { panic!("research expected") };
        assert!(r.message.starts_with("A user just upgraded from basic to pro. Research:"), "{}", r.message);
    }

    #[test]
    fn churn_signal_with_missing_fields_reads_unknown() {
        let rules = shipped();
        let e = event(Source::Segment, "churn_signal", json!({"ltv": 420}));
        let rule = rules.matching(&e).next().unwrap();
        let MaveraRequest::Research(r) = rule.action.render(&e) else { panic!("research expected") };
        assert!(r.message.starts_with("A user with LTV $420 just triggered a churn signal: unknown."), "{}", r.message);
    }

    #[test]
    fn customerio_alerts_wait_for_enrichment_to_check_the_plan() {
        let rules = shipped();
        let e = event(Source::CustomerIo, "unsubscribed", json!({"object_type": "email"}));
        let rule = rules.matching(&e).next().expect("the metric alone queues the job");
        assert!(rule.enrich);
        assert!(!rule.after_enrichment.is_empty());
        assert!(!rule.matches_after_enrichment(&e), "no customer.plan yet");
        let mut enriched = e.clone();
        enriched.fields.insert("customer".into(), json!({"plan": "enterprise"}));
        assert!(rule.matches_after_enrichment(&enriched));
    }

    #[test]
    fn unmatched_events_fire_nothing() {
        let rules = shipped();
        let e = event(Source::Segment, "Page Viewed", json!({}));
        assert!(!rules.listens_for(Source::Segment, "Page Viewed"));
        assert_eq!(rules.matching(&e).count(), 0);
    }

    #[test]
    fn every_matching_rule_fires_and_conditions_filter() {
        let rules = Triggers::parse(
            r#"
            [[rule]]
            name = "big"
            source = "segment"
            event = "order"
            action = "research"
            conditions = [{ field = "total", gte = 100 }]
            research = { prompt = "big {total}" }

            [[rule]]
            name = "any"
            source = "segment"
            event = ["order", "refund"]
            action = "research"
            research = { prompt = "any {total}" }
            "#,
            "test.toml",
        )
        .unwrap()
        .rules;
        let small = event(Source::Segment, "order", json!({"total": 5}));
        let big = event(Source::Segment, "order", json!({"total": 500}));
        let names = |e: &Event| rules.matching(e).map(|r| r.name.to_string()).collect::<Vec<_>>();
        assert_eq!(names(&small), ["any"]);
        assert_eq!(names(&big), ["big", "any"]);
        assert_eq!(names(&event(Source::Segment, "refund", json!({}))), ["any"]);
        assert_eq!(names(&event(Source::CustomerIo, "order", json!({}))), Vec::<String>::new());
    }
}
