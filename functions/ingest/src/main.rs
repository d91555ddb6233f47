//! The ingest Lambda: verifies Segment and Customer.io webhooks, records and queues the
//! events that match a rule. All logic is in `shared::ingest`; this file only wires.

use std::sync::Arc;

use shared::config::{AwsResources, ProcessEnv};
use shared::ingest::{self, Settings};
use shared::queue::SqsQueue;
use shared::startup::{ColdStart, cold_start_warming};
use shared::store::DynamoStore;
use shared::telemetry::{Fatal, Metrics};

#[tokio::main]
async fn main() -> Result<(), Fatal> {
    // The table and the queue are named by plain variables, so both connections open (during
    // init, instead of on the first webhook) while the secret is being read.
    let (ColdStart { vars, triggers, mut phases, .. }, (store, queue)) =
        cold_start_warming(&shared::config::vars::SIGNING_SECRET_KEYS, |sdk| async move {
            let resources = AwsResources::from_vars(&ProcessEnv)?;
            let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), resources.table);
            let queue = SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), resources.queue_url);
            let (warm_store, warm_queue) = tokio::join!(store.warm(), queue.warm());
            for problem in
                [warm_store.err().map(|e| e.to_string()), warm_queue.err().map(|e| e.to_string())].into_iter().flatten()
            {
                tracing::warn!(%problem, "warm-up call failed; the first request will retry the connection");
            }
            Ok((store, queue))
        })
        .await?;
    let settings = Settings::from_vars(&vars, Arc::new(triggers.rules))?;
    phases.done("config");
    tracing::info!(rules = settings.rules.len(), sources = ?settings.rules.sources(), "ingest ready");
    phases.finish();

    let store = Arc::new(store);
    let app = ingest::build_reporting(settings, store.clone(), Arc::new(queue), store, Metrics::from_env("ingest"));
    lambda_http::run(app).await.map_err(Fatal::boxed)
}
