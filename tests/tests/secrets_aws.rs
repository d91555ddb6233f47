//! Secrets at cold start, through the real AWS SDK against moto's Secrets Manager: each
//! function's JSON secret named by its `SECRETS_ARN`, its keys over the environment, and a
//! clear start-up error when it cannot be read, lacks a key, holds another function's key or
//! a guessable signing secret.

use std::collections::HashMap;

use relay_tests::aws::sdk_config;
use shared::config::{ConfigError, Vars, vars::API_KEYS_SECRET_KEYS, vars::SIGNING_SECRET_KEYS};
use shared::triggers::Triggers;
use shared::verify::Verifiers;

async fn secret(value: &str) -> String {
    let sdk = sdk_config().await;
    let client = aws_sdk_secretsmanager::Client::new(&sdk);
    let name = format!("mavera-relay-{}", uuid::Uuid::new_v4().simple());
    client.create_secret().name(name).secret_string(value).send().await.expect("create the secret").arn.unwrap()
}

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

#[tokio::test]
async fn the_secret_is_read_once_and_wins_over_the_environment() {
    let arn =
        secret(r#"{"SEGMENT_SHARED_SECRET":"from-the-signing-secret","CIO_WEBHOOK_SECRET":"cio-signing-key-0123"}"#)
            .await;
    let base = env(&[("SECRETS_ARN", &arn), ("SEGMENT_SHARED_SECRET", "from-the-env"), ("EVENTS_TABLE", "t")]);
    let vars = shared::secrets::load(&sdk_config().await, &base, &SIGNING_SECRET_KEYS).await.unwrap();
    assert_eq!(vars.get("SEGMENT_SHARED_SECRET").as_deref(), Some("from-the-signing-secret"));
    assert_eq!(vars.get("EVENTS_TABLE").as_deref(), Some("t"), "other settings still come from the environment");
    let verifiers = Verifiers::from_vars(&vars, &Triggers::embedded().unwrap().rules).unwrap();
    assert!(verifiers.segment.is_some() && verifiers.customerio.is_some());
}

#[tokio::test]
async fn a_secret_without_one_sources_key_turns_only_that_source_off() {
    let arn = secret(r#"{"SEGMENT_SHARED_SECRET":"a-long-enough-secret","CIO_WEBHOOK_SECRET":""}"#).await;
    let base = env(&[("SECRETS_ARN", &arn)]);
    let vars = shared::secrets::load(&sdk_config().await, &base, &SIGNING_SECRET_KEYS).await.unwrap();
    let verifiers = Verifiers::from_vars(&vars, &Triggers::embedded().unwrap().rules).unwrap();
    assert!(verifiers.segment.is_some(), "Segment runs");
    assert!(verifiers.customerio.is_none(), "Customer.io is off (503 source_disabled), never unverified");
}

#[tokio::test]
async fn an_unreadable_or_malformed_secret_stops_the_start_with_its_arn() {
    let missing = "arn:aws:secretsmanager:us-east-1:123456789012:secret:does-not-exist-AbCdEf";
    let err = shared::secrets::load(&sdk_config().await, &env(&[("SECRETS_ARN", missing)]), &API_KEYS_SECRET_KEYS)
        .await
        .unwrap_err();
    assert!(matches!(err, ConfigError::SecretsManager { .. }), "{err}");
    assert!(err.to_string().contains(missing), "{err}");

    let arn = secret(r#"{"MAVERA_API_KEY":"mvra_live_test_placeholder","SEGMENT_SECRET":"typo"}"#).await;
    let err = shared::secrets::load(&sdk_config().await, &env(&[("SECRETS_ARN", &arn)]), &API_KEYS_SECRET_KEYS)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("SEGMENT_SECRET") && !text.contains("typo") && !text.contains("mvra_live_test_placeholder"),
        "{text}"
    );
}

#[tokio::test]
async fn each_function_reads_only_its_own_secrets_keys() {
    // The API keys in ingest's secret: refused, so ingest can never read them.
    let arn =
        secret(r#"{"SEGMENT_SHARED_SECRET":"a-long-enough-secret","MAVERA_API_KEY":"mvra_live_test_placeholder"}"#)
            .await;
    let err = shared::secrets::load(&sdk_config().await, &env(&[("SECRETS_ARN", &arn)]), &SIGNING_SECRET_KEYS)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("MAVERA_API_KEY"), "{err}");
    assert!(!err.to_string().contains("mvra_live_test_placeholder"), "{err}");
    // The worker's secret holds the API keys and nothing else.
    let arn = secret(r#"{"MAVERA_API_KEY":"mvra_live_test_placeholder","CIO_APP_KEY":"cio-app"}"#).await;
    let base = env(&[("SECRETS_ARN", &arn)]);
    let vars = shared::secrets::load(&sdk_config().await, &base, &API_KEYS_SECRET_KEYS).await.unwrap();
    assert_eq!(vars.get("CIO_APP_KEY").as_deref(), Some("cio-app"));
}

#[tokio::test]
async fn a_deployed_ingest_refuses_a_guessable_signing_secret_at_start_up() {
    let arn = secret(r#"{"SEGMENT_SHARED_SECRET":"dev","CIO_WEBHOOK_SECRET":"a-long-enough-secret"}"#).await;
    let base = env(&[("SECRETS_ARN", &arn)]);
    let vars = shared::secrets::load(&sdk_config().await, &base, &SIGNING_SECRET_KEYS).await.unwrap();
    let err = Verifiers::from_vars(&vars, &Triggers::embedded().unwrap().rules).unwrap_err();
    assert!(err.to_string().starts_with("SEGMENT_SHARED_SECRET is 3 characters long"), "{err}");
}
