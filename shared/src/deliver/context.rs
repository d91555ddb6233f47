//! What every destination's request is rendered from: the job (key, rule), the event that
//! fired it, and its result. Templates read `result.*` from the result and every other field
//! from the event, as the rule's own templates do.

use std::time::SystemTime;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::result::{JobResult, ResultKind};
use crate::domain::{Event, FieldPath, JobKey, LookedUp, RuleName};
use crate::template::FieldSource;

/// One job's result, ready to be delivered.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub key: &'a JobKey,
    pub rule: &'a RuleName,
    pub event: &'a Event,
    pub result: &'a JobResult,
    /// The rule's action (a dry run's result says it too, an odd record might not).
    pub kind: ResultKind,
    /// When the result was saved; the same on every retry, so a repeat carries the same time.
    pub at: SystemTime,
}

impl FieldSource for Context<'_> {
    fn field(&self, path: &FieldPath) -> Option<LookedUp<'_>> {
        match path.as_str().strip_prefix("result.") {
            Some(name) => self.result.field(name),
            None => self.event.lookup(path),
        }
    }
}

impl Context<'_> {
    /// A stable id for one of this job's messages (`call` tells a job's messages apart):
    /// the same on every retry and redelivery, so a receiver that drops repeats by id
    /// (Segment's `messageId`, a Standard Webhooks receiver's `webhook-id`) drops ours.
    /// Made of hex digits and `-`, so it has no `.` (which Standard Webhooks forbids).
    pub fn stable_id(&self, call: &str) -> String {
        let digest = Sha256::digest(self.key.as_str().as_bytes());
        format!("mavera-relay-{}-{call}", hex::encode(&digest[..16]))
    }

    pub fn at_unix_secs(&self) -> u64 {
        crate::store::epoch_secs(self.at)
    }

    pub fn at_rfc3339(&self) -> String {
        crate::store::rfc3339(self.at)
    }

    /// The result's facts every destination's body carries: the action, the credits, whether
    /// it was a dry run, and the ids and names Mavera gave.
    pub fn put_result_facts(&self, map: &mut Map<String, Value>) {
        map.insert("action".into(), json!(self.kind.action()));
        map.insert("credits".into(), json!(self.result.credits()));
        if self.result.is_dry_run() {
            map.insert("dry_run".into(), json!(true));
        }
        for (name, value) in [
            ("persona_id", self.result.persona_id()),
            ("persona_name", self.result.persona_name()),
            ("thread_id", self.result.thread_id()),
            ("generation_id", self.result.generation_id()),
        ] {
            if let Some(value) = value {
                map.insert(name.into(), json!(value));
            }
        }
    }

    /// What a person's profile keeps of the result (Customer.io attributes, Segment traits):
    /// the persona's id and name, or the latest research or generation and its id. None for a
    /// dry run, whose result is no answer of Mavera's.
    pub fn profile_fields(&self) -> Vec<(&'static str, &str)> {
        if self.result.is_dry_run() {
            return Vec::new();
        }
        let fields = match self.kind {
            ResultKind::Persona => {
                [("mavera_persona_id", self.result.persona_id()), ("mavera_persona_name", self.result.persona_name())]
            }
            ResultKind::Research => {
                [("mavera_last_research", self.result.text()), ("mavera_thread_id", self.result.thread_id())]
            }
            ResultKind::Generation => {
                [("mavera_last_generation", self.result.text()), ("mavera_generation_id", self.result.generation_id())]
            }
        };
        fields.into_iter().filter_map(|(name, value)| Some((name, value?))).collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::{EventId, Source};
    use crate::template::Template;

    #[test]
    fn templates_read_the_result_and_the_event() {
        let event = Event {
            source: Source::Segment,
            id: EventId::parse("m1").unwrap(),
            name: "churn_signal".into(),
            user_id: Some("u1".into()),
            fields: json!({"user_id": "u1", "ltv": 1200, "result": "an event field named result"})
                .as_object()
                .unwrap()
                .clone(),
        };
        let result =
            JobResult::new(json!({"action": "research", "thread_id": "t1", "content": "Call them.", "credits": 25.0}));
        let (key, rule) = (JobKey::from_stored("segment#m1#churn"), RuleName::parse("churn").unwrap());
        let ctx = Context {
            key: &key,
            rule: &rule,
            event: &event,
            result: &result,
            kind: ResultKind::Research,
            at: SystemTime::UNIX_EPOCH,
        };
        let t = Template::parse(
            "{user_id} (LTV {ltv}): {result.content} [{result.credits} credits, {result.persona.name}]",
        )
        .unwrap();
        assert_eq!(t.render(&ctx), "u1 (LTV 1200): Call them. [25.0 credits, unknown]");
        assert_eq!(Template::parse("{result}").unwrap().render(&ctx), "an event field named result");
    }

    #[test]
    fn stable_ids_depend_on_the_job_and_the_call_only() {
        let event = Event {
            source: Source::Segment,
            id: EventId::parse("m1").unwrap(),
            name: "e".into(),
            user_id: None,
            fields: Default::default(),
        };
        let result = JobResult::new(json!({}));
        let rule = RuleName::parse("r").unwrap();
        let (k1, k2) = (JobKey::from_stored("segment#m1#r"), JobKey::from_stored("segment#m2#r"));
        let ctx = |key| Context {
            key,
            rule: &rule,
            event: &event,
            result: &result,
            kind: ResultKind::Research,
            at: SystemTime::now(),
        };
        assert_eq!(ctx(&k1).stable_id("track"), ctx(&k1).stable_id("track"));
        assert_ne!(ctx(&k1).stable_id("track"), ctx(&k1).stable_id("identify"));
        assert_ne!(ctx(&k1).stable_id("track"), ctx(&k2).stable_id("track"));
        assert!(!ctx(&k1).stable_id("track").contains('.'));
    }
}
