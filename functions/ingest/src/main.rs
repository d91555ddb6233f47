//! The ingest Lambda: verifies Segment and Customer.io webhooks, records and queues the
//! events that match a rule. All logic is in `shared::ingest`; this file only wires.

use std::sync::Arc;

use shared::config::AwsResources;
use shared::ingest::{self, Settings};
use shared::queue::SqsQueue;
use shared::startup::{ColdStart, cold_start};
use shared::store::DynamoStore;
use shared::telemetry::{Fatal, Metrics};

#[tokio::main]
async fn main() -> Result<(), Fatal> {
    let ColdStart { sdk, vars, triggers } = cold_start(&shared::config::vars::SIGNING_SECRET_KEYS).await?;
    let settings = Settings::from_vars(&vars, Arc::new(triggers.rules))?;
    let resources = AwsResources::from_vars(&vars)?;

    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), resources.table);
    let queue = SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), resources.queue_url);
    // Open both connections now, during init, instead of on the first webhook.
    let (warm_store, warm_queue) = tokio::join!(store.warm(), queue.warm());
    for problem in
        [warm_store.err().map(|e| e.to_string()), warm_queue.err().map(|e| e.to_string())].into_iter().flatten()
    {
        tracing::warn!(%problem, "warm-up call failed; the first request will retry the connection");
    }
    tracing::info!(rules = settings.rules.len(), sources = ?settings.rules.sources(), "ingest ready");

    let store = Arc::new(store);
    let app = ingest::build_reporting(settings, store.clone(), Arc::new(queue), store, Metrics::from_env("ingest"));
    lambda_http::run(app).await.map_err(Fatal::boxed)
}
