//! `cio-sync` job 2 in the worker: create the persona of one attribute cluster. The name is
//! rendered from the cluster's values only, so when the job runs again after its record has
//! expired, Mavera's duplicate-name 422 says it exists, and the job is done without a second
//! 300-credit persona.

use serde_json::{Value, json};
use tokio::time::Instant;

use super::{FINISH_MARGIN, Transient, Worker, already_done_result, dry_run_result, summarize};
use crate::mavera::ErrorClass;
use crate::store::Outcome;
use crate::sync::ClusterPersona;

impl Worker {
    pub(super) async fn create_cluster_persona(
        &self,
        job: &ClusterPersona,
        notes: &mut Vec<String>,
        deadline: Instant,
    ) -> Result<Outcome, Transient> {
        let config = &self.rules.cio_sync().attribute_personas;
        if !config.enabled {
            return Ok(Outcome::Skipped {
                reason: "[cio_sync.attribute_personas] is not enabled in this worker's triggers.toml, so queued personas are not created".into(),
            });
        }
        let request = job.persona_request(config);
        let Some(mavera) = &self.mavera else {
            tracing::info!(body = %request.body(), "dry run: would send POST /personas");
            return Ok(Outcome::Done { result: with_cluster(dry_run_result(&request), job) });
        };
        let call_deadline = deadline.checked_sub(FINISH_MARGIN).unwrap_or_else(Instant::now);
        match mavera.send(&request, call_deadline).await {
            Ok(response) => Ok(Outcome::Done { result: with_cluster(summarize(&response), job) }),
            Err(e) => match e.class() {
                ErrorClass::Transient => Err(Transient(e.to_string())),
                ErrorClass::AlreadyDone => {
                    notes.push(format!("Mavera: {e}"));
                    Ok(Outcome::Done { result: with_cluster(already_done_result(&request), job) })
                }
                ErrorClass::Permanent => Ok(Outcome::Failed { reason: e.to_string(), class: e.failure_class() }),
            },
        }
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
