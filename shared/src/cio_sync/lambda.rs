//! What the `cio-sync` Lambda is given on each invocation: the schedule's input (which job,
//! dry run or not).

use serde_json::Value;

use super::SyncJob;

/// One invocation's request, from the schedule's constant input `{"job": "campaign-strategy"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunRequest {
    pub job: SyncJob,
    /// Read from Customer.io and report what would be queued, without queueing or checkpointing
    /// anything (attribute lookups are still cached).
    pub dry_run: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error(
        "the invocation input has no `job`: give the schedule the input {{\"job\": \"campaign-strategy\"}} or \
         {{\"job\": \"attribute-personas\"}} (add \"dry_run\": true to only report what would be queued)"
    )]
    NoJob,
    #[error("`job` is {0}, not a job: use \"campaign-strategy\" or \"attribute-personas\"")]
    UnknownJob(String),
    #[error("`dry_run` must be true or false, not {0}")]
    BadDryRun(String),
}

impl RunRequest {
    /// Reads `{"job": …, "dry_run": …}`. The job may also sit under `detail` (an EventBridge
    /// rule passing its event through); other fields are ignored.
    pub fn from_payload(payload: &Value) -> Result<Self, InputError> {
        let body = match payload.get("job") {
            Some(_) => payload,
            None => payload.get("detail").filter(|d| d.get("job").is_some()).ok_or(InputError::NoJob)?,
        };
        let job = match body.get("job") {
            Some(Value::String(name)) => {
                SyncJob::parse(name).ok_or_else(|| InputError::UnknownJob(format!("\"{name}\"")))?
            }
            Some(other) => return Err(InputError::UnknownJob(other.to_string())),
            None => return Err(InputError::NoJob),
        };
        let dry_run = match body.get("dry_run") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => return Err(InputError::BadDryRun(other.to_string())),
        };
        Ok(RunRequest { job, dry_run })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_schedules_input_names_the_job() {
        let r = RunRequest::from_payload(&json!({"job": "campaign-strategy"})).unwrap();
        assert_eq!(r, RunRequest { job: SyncJob::CampaignStrategy, dry_run: false });
        let r = RunRequest::from_payload(&json!({"job": "attribute_personas", "dry_run": true, "extra": 1})).unwrap();
        assert_eq!(r, RunRequest { job: SyncJob::AttributePersonas, dry_run: true });
        let r = RunRequest::from_payload(
            &json!({"detail-type": "Scheduled Event", "detail": {"job": "attribute-personas"}}),
        )
        .unwrap();
        assert_eq!(r.job, SyncJob::AttributePersonas);
    }

    #[test]
    fn a_bad_input_says_what_to_send() {
        let no_job = RunRequest::from_payload(&json!({"detail-type": "Scheduled Event", "detail": {}})).unwrap_err();
        assert_eq!(no_job, InputError::NoJob);
        assert!(no_job.to_string().contains(r#"{"job": "campaign-strategy"}"#), "{no_job}");
        assert_eq!(
            RunRequest::from_payload(&json!({"job": "personas"})).unwrap_err(),
            InputError::UnknownJob("\"personas\"".into())
        );
        assert!(matches!(RunRequest::from_payload(&json!({"job": 1})), Err(InputError::UnknownJob(_))));
        assert!(matches!(
            RunRequest::from_payload(&json!({"job": "campaign-strategy", "dry_run": "yes"})),
            Err(InputError::BadDryRun(_))
        ));
    }
}
