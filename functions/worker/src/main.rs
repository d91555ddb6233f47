//! The worker Lambda: takes jobs off the SQS queue and runs each rule's Mavera action once,
//! reporting only the records to retry. All logic is in `shared::worker`; this file wires.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use shared::config::{self, ProcessEnv, vars};
use shared::startup::{ColdStart, cold_start_warming};
use shared::store::DynamoStore;
use shared::telemetry::{self, Fatal, Metrics};
use shared::worker::{self, Mavera, Settings, sqs};

#[tokio::main]
async fn main() -> Result<(), Fatal> {
    // The table is named by a plain variable, so its connection opens (during init rather than
    // on the first job) while the secret is being read.
    let (ColdStart { vars, triggers, mut phases, .. }, store) =
        cold_start_warming(&vars::API_KEYS_SECRET_KEYS, |sdk| async move {
            let table = config::required(
                &ProcessEnv,
                vars::EVENTS_TABLE,
                "set it to the events table's name (template.yaml does)",
            )?;
            let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table);
            if let Err(e) = store.warm().await {
                tracing::warn!(error = %telemetry::chain(&e), "event store warm-up failed; the first job will connect");
            }
            Ok(Arc::new(store))
        })
        .await?;
    let settings = Settings::from_vars(&vars, triggers.for_worker())?;
    let (rules, dry_run) = (settings.triggers.rules.len(), matches!(settings.mavera, Mavera::DryRun { .. }));
    phases.done("config");
    let worker = worker::build(settings, store.clone())?;
    phases.done("clients");
    let mut report = worker.health_report(std::time::SystemTime::now());
    if dry_run {
        tracing::warn!("DRY_RUN=true: requests are recorded in the events table, never sent to Mavera");
        report = report.with_note("DRY_RUN=true: Mavera requests are recorded, never sent");
    }
    // Mavera's key is in the secret, so its connection opens only now; the health report's
    // write to the table goes out meanwhile rather than after it.
    tokio::join!(worker.warm(), shared::health::publish_at_start(store.as_ref(), &report));
    phases.done("mavera warm-up and health report");
    tracing::info!(rules, dry_run, "worker ready");
    // For when the runtime gives no usable deadline (cargo lambda watch).
    let timeout = config::number(&vars, vars::FUNCTION_TIMEOUT_SECS, sqs::DEFAULT_FUNCTION_TIMEOUT.as_secs())?;
    let timeout = std::time::Duration::from_secs(timeout);
    phases.finish();
    let (worker, metrics) = (&worker, &Metrics::from_env("worker"));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let deadline = shared::deadline::deadline_from(event.context.deadline(), timeout);
        Ok::<SqsBatchResponse, Error>(sqs::handle_batch(worker, event.payload, deadline, metrics).await)
    }))
    .await
    .map_err(Fatal::boxed)
}
