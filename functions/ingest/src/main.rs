//! The ingest Lambda: verifies Segment and Customer.io webhooks, records and queues the
//! events that match a rule. All logic is in `shared::ingest`; this file only wires.

use std::sync::Arc;

use shared::config::{self, AwsResources, ProcessEnv, Verifiers};
use shared::ingest::{Ingest, router};
use shared::queue::SqsQueue;
use shared::store::DynamoStore;
use shared::telemetry::{self, Fatal, LogFormat, Metrics};

#[tokio::main]
async fn main() -> Result<(), Fatal> {
    telemetry::init(LogFormat::from_env());
    let sdk = shared::aws::sdk_config().await;
    let vars = shared::secrets::load(&sdk, &ProcessEnv).await?;
    let rules = Arc::new(config::rules(&vars)?);
    let verifiers = Verifiers::from_vars(&vars, &rules)?;
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
    tracing::info!(rules = rules.len(), sources = ?rules.sources(), "ingest ready");

    let ingest = Arc::new(Ingest::new(rules, verifiers, Arc::new(store), Arc::new(queue)));
    lambda_http::run(router(ingest, Metrics::from_env("ingest"))).await.map_err(Fatal::boxed)
}
