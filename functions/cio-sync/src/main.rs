//! The cio-sync Lambda: on each EventBridge schedule, runs the Customer.io job its input names
//! (`{"job": "campaign-strategy"}` or `{"job": "attribute-personas"}`) and returns the run's
//! summary. All logic is in `shared::cio_sync`; this file wires.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

use shared::cio_sync::{self, RunFailed, RunRequest, STOP_MARGIN, Settings};
use shared::config::{self, AwsResources, vars};
use shared::deadline::deadline_from;
use shared::queue::SqsQueue;
use shared::startup::{ColdStart, cold_start};
use shared::store::DynamoStore;
use shared::telemetry::{Fatal, Metrics};
use tokio::time::Instant;

#[tokio::main]
async fn main() -> Result<(), Fatal> {
    let ColdStart { sdk, vars, triggers, mut phases } = cold_start(&shared::config::vars::API_KEYS_SECRET_KEYS).await?;
    let settings = Settings::from_vars(&vars, triggers.for_cio_sync())?;
    phases.done("config");

    let AwsResources { table, queue_url } = settings.resources.clone();
    let store = Arc::new(DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table));
    let queue = Arc::new(SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), queue_url));
    let sync = cio_sync::build(settings, store.clone(), queue)?;
    shared::health::publish_at_start(store.as_ref(), &sync.health_report(SystemTime::now())).await;
    phases.finish();

    let (sync, metrics) = (&sync, &Metrics::from_env("cio-sync"));
    // The template's 600 s, for when the runtime gives no usable deadline (cargo lambda watch).
    let timeout = Duration::from_secs(config::number(&vars, vars::FUNCTION_TIMEOUT_SECS, 600)?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let request = RunRequest::from_payload(&event.payload)?;
        let end = deadline_from(event.context.deadline(), timeout);
        // Stop early enough to write the checkpoint and queue what is ready.
        let stop = end.checked_sub(STOP_MARGIN).filter(|s| *s > Instant::now()).unwrap_or_else(|| {
            tracing::warn!(
                "less than {STOP_MARGIN:?} left at the start: raise the function's timeout (600 s is planned)"
            );
            Instant::now()
        });
        let summary = sync.run(request, SystemTime::now(), stop).await;
        let mut counts = metrics.counts();
        summary.count_into(&mut counts);
        counts.flush();
        if summary.failed() {
            return Err(Error::from(RunFailed(summary)));
        }
        Ok::<Value, Error>(summary.to_json())
    }))
    .await
    .map_err(Fatal::boxed)
}
