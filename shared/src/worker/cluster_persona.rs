//! `cio-sync` job 2 in the worker: create the persona of one attribute cluster. The name is
//! rendered from the cluster's values only, so when the job runs again after its record has
//! expired, Mavera's duplicate-name 422 says it exists, and the job is done without a second
//! 300-credit persona.
//!
//! The request is rendered here from the message's facts (the cluster's values, size and
//! spread) with the `[cio_sync.attribute_personas]` templates of the worker's own
//! `triggers.toml`.

use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::{Called, Transient, Worker, summarize};
use crate::domain::{PersonaName, percent, share};
use crate::mavera::{CreatePersonaRequest, MaveraRequest, PersonaType, PipelineType};
use crate::queue::ClusterPersona;
use crate::store::Outcome;
use crate::template::{JsonTemplate, Template, render_entries};

/// Fields a cluster persona can name besides `cluster.<name>` of each `cluster_by` entry.
pub const CLUSTER_FIELDS: [&str; 6] =
    ["cluster.label", "cluster.size", "cluster.share", "distribution", "members", "segment_id"];

/// The persona body for a cluster: `persona` of `[cio_sync.attribute_personas]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterPersonaTemplate {
    pub name: Template,
    pub description: Template,
    /// The reference's `pipeline_type` and `type`.
    pub pipeline_type: Option<PipelineType>,
    pub persona_type: Option<PersonaType>,
    /// A body field for the cluster's facts as an object (Mavera's Stripe page sends
    /// `attributes`); `None` (the default) leaves them out: the description carries them.
    pub context_field: Option<String>,
    pub extra: Vec<(String, JsonTemplate)>,
}

impl Worker {
    pub(super) async fn create_cluster_persona(
        &self,
        job: &ClusterPersona,
        notes: &mut Vec<String>,
        deadline: Instant,
    ) -> Result<Outcome, Transient> {
        let Some(template) = &self.scheduled.attribute_personas else {
            return Ok(Outcome::Skipped {
                reason: "[cio_sync.attribute_personas] is not enabled in this worker's triggers.toml, so queued personas are not created".into(),
            });
        };
        let request = persona_request(job, template);
        let failed = match self.call(&request, deadline).await? {
            Called::Answered(response) => {
                return Ok(Outcome::Done { result: with_cluster(summarize(&response), job) });
            }
            Called::AlreadyDone(e) => match self.existing_persona(&request, &e, notes, deadline).await? {
                Some(result) => return Ok(Outcome::Done { result: with_cluster(result, job) }),
                None => e,
            },
            Called::Failed(e) => e,
        };
        Ok(Outcome::Failed { reason: failed.to_string(), class: failed.failure_class() })
    }
}

fn with_cluster(mut result: Value, job: &ClusterPersona) -> Value {
    if let Value::Object(map) = &mut result {
        map.insert(
            "cluster".into(),
            json!({"id": job.cluster_id, "label": job.label(), "size": job.size, "members": job.members, "segment_id": job.segment_id}),
        );
    }
    result
}

/// `POST /personas` for a cluster. The name depends only on the cluster's values (the
/// templates may only name those), so a second attempt meets Mavera's duplicate-name 422.
pub fn persona_request(job: &ClusterPersona, p: &ClusterPersonaTemplate) -> MaveraRequest {
    let fields = fields(job);
    let name = PersonaName::new(p.name.render(&fields).trim());
    let mut extra = Map::new();
    if let Some(field) = &p.context_field {
        let mut facts = Map::new();
        for v in &job.values {
            facts.insert(v.name.clone(), Value::String(v.value.clone()));
        }
        facts.insert("customer_count".into(), json!(job.size));
        facts.insert("share_of_members".into(), json!(share(job.size, job.members)));
        facts.insert("segment_id".into(), json!(job.segment_id));
        facts.insert("source".into(), json!("customer.io"));
        extra.insert(field.clone(), Value::Object(facts));
    }
    extra.extend(render_entries(&p.extra, &fields));
    MaveraRequest::CreatePersona(CreatePersonaRequest {
        name: name.into_string(),
        description: p.description.render(&fields).trim().to_owned(),
        pipeline_type: p.pipeline_type,
        persona_type: p.persona_type,
        extra,
    })
}

/// The fields a cluster persona's templates can name ([`CLUSTER_FIELDS`] and
/// `cluster.<name>` per `cluster_by` entry).
fn fields(job: &ClusterPersona) -> Map<String, Value> {
    let mut cluster = Map::new();
    for v in &job.values {
        cluster.insert(v.name.clone(), Value::String(v.value.clone()));
    }
    cluster.insert("label".into(), Value::String(job.label()));
    cluster.insert("size".into(), json!(job.size));
    cluster.insert("share".into(), Value::String(percent(job.size, job.members)));
    let mut fields = Map::new();
    fields.insert("cluster".into(), Value::Object(cluster));
    fields.insert("distribution".into(), Value::String(job.distribution_text()));
    fields.insert("members".into(), json!(job.members));
    fields.insert("segment_id".into(), json!(job.segment_id));
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::FieldPath;
    use crate::queue::{ClusterValue, Spread};
    use crate::template::FieldSource;
    use crate::triggers::Triggers;

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
        let triggers = Triggers::parse(
            "[cio_sync.attribute_personas]\ncluster_by = [{ attribute = \"plan_type\", name = \"plan\" }, { attribute = \"ltv\", buckets = [100, 1000] }]\n\
             persona = { type = \"B2C\", context_field = \"attributes\", extra = { note = \"{cluster.plan} buyers\" } }",
            "t.toml",
        )
        .unwrap();
        let MaveraRequest::CreatePersona(p) =
            persona_request(&cluster(), &triggers.cio_sync.attribute_personas.persona)
        else {
            panic!()
        };
        assert_eq!(p.name, "Customer.io cluster: plan: pro, ltv: 100-1000");
        assert_eq!(
            p.description,
            "30 of the 120 people read from Customer.io segment 42 (25%) share plan: pro, ltv: 100-1000. country: us 60%, de 30%, others 10%"
        );
        assert_eq!(p.persona_type, Some(PersonaType::B2C));
        assert_eq!(p.pipeline_type, Some(PipelineType::NorthStar), "the job's default");
        assert_eq!(p.extra["note"], "pro buyers");
        assert_eq!(
            p.extra["attributes"],
            json!({"plan": "pro", "ltv": "100-1000", "customer_count": 30, "share_of_members": 0.25, "segment_id": 42, "source": "customer.io"})
        );
        let fields = fields(&cluster());
        for f in CLUSTER_FIELDS.iter().copied().chain(["cluster.plan", "cluster.ltv"]) {
            assert!(fields.field(&FieldPath::parse(f).unwrap()).is_some(), "{f}");
        }
    }

    #[test]
    fn without_describe_the_description_has_no_dangling_text() {
        let triggers = Triggers::parse("", "t.toml").unwrap();
        let mut c = cluster();
        c.distribution.clear();
        let MaveraRequest::CreatePersona(p) = persona_request(&c, &triggers.cio_sync.attribute_personas.persona) else {
            panic!()
        };
        assert!(p.description.ends_with("share plan: pro, ltv: 100-1000."), "{}", p.description);
    }
}
