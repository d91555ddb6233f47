//! The worker Lambda: takes jobs off the SQS queue and runs each rule's Mavera action once,
//! reporting only the records to retry. All logic is in `shared::worker`; this file wires.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use shared::config::{self, vars};
use shared::customerio::CioClient;
use shared::mavera::{DryRun, MaveraApi, MaveraClient};
use shared::startup::{ColdStart, cold_start};
use shared::store::DynamoStore;
use shared::telemetry::{self, Fatal, Metrics};
use shared::worker::{CioEnricher, Enrich, Worker, sqs};

#[tokio::main]
async fn main() -> Result<(), Fatal> {
    let ColdStart { sdk, vars, triggers } = cold_start(&shared::config::vars::API_KEYS_SECRET_KEYS).await?;
    let rules = Arc::new(triggers.rules);
    let table = config::required(&vars, vars::EVENTS_TABLE, "set it to the events table's name (template.yaml does)")?;
    let store = Arc::new(DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table));

    let mavera = config::mavera(&vars)?.map(MaveraClient::new).transpose()?;
    // Without CIO_APP_KEY the enriching rules are disabled (the worker says so); the rest run.
    let enricher = match config::customerio(&vars, false)? {
        Some(cio) => {
            Some(Arc::new(CioEnricher::new(Arc::new(CioClient::new(cio)?), store.clone(), triggers.enrichment))
                as Arc<dyn Enrich>)
        }
        None => None,
    };

    // Open the connections during init rather than on the first job.
    let warm_mavera = async {
        if let Some(m) = &mavera {
            m.warm().await;
        }
    };
    let (warm_store, ()) = tokio::join!(store.warm(), warm_mavera);
    if let Err(e) = warm_store {
        tracing::warn!(error = %telemetry::chain(&e), "event store warm-up failed; the first job will connect");
    }
    let dry_run = mavera.is_none();
    let mavera: Arc<dyn MaveraApi> = match mavera {
        Some(client) => Arc::new(client),
        None => {
            tracing::warn!("DRY_RUN=true: requests are recorded in the events table, never sent to Mavera");
            Arc::new(DryRun)
        }
    };
    let worker = Worker::new(rules.clone(), triggers.cio_sync.for_worker(), store.clone(), store, mavera, enricher)?;
    tracing::info!(rules = rules.len(), dry_run, "worker ready");
    let timeout = config::number(&vars, vars::FUNCTION_TIMEOUT_SECS, sqs::DEFAULT_FUNCTION_TIMEOUT.as_secs())?;
    let timeout = std::time::Duration::from_secs(timeout);
    let (worker, metrics) = (&worker, &Metrics::from_env("worker"));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let deadline = sqs::deadline_from(event.context.deadline(), timeout);
        Ok::<SqsBatchResponse, Error>(sqs::handle_batch(worker, event.payload, deadline, metrics).await)
    }))
    .await
    .map_err(Fatal::boxed)
}
