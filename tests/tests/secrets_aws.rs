//! Secrets at cold start, through the real AWS SDK against moto's Secrets Manager: one
//! JSON secret named by `SECRETS_ARN`, its keys over the environment, and a clear start-up
//! error when it cannot be read or lacks a key.

use std::collections::HashMap;

use relay_tests::aws::sdk_config;
use shared::config::{ConfigError, Vars};
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
    let arn = secret(r#"{"SEGMENT_SHARED_SECRET":"from-the-secret","CIO_WEBHOOK_SECRET":"cio-key","MAVERA_API_KEY":"mvra_live_test_placeholder"}"#).await;
    let base = env(&[("SECRETS_ARN", &arn), ("SEGMENT_SHARED_SECRET", "from-the-env"), ("EVENTS_TABLE", "t")]);
    let vars = shared::secrets::load(&sdk_config().await, &base).await.unwrap();
    assert_eq!(vars.get("SEGMENT_SHARED_SECRET").as_deref(), Some("from-the-secret"));
    assert_eq!(vars.get("EVENTS_TABLE").as_deref(), Some("t"), "other settings still come from the environment");
    let verifiers = Verifiers::from_vars(&vars, &Triggers::embedded().unwrap().rules).unwrap();
    assert!(verifiers.segment.is_some() && verifiers.customerio.is_some());
}

#[tokio::test]
async fn a_secret_without_a_needed_key_stops_the_start_naming_it() {
    let arn = secret(r#"{"SEGMENT_SHARED_SECRET":"s","CIO_WEBHOOK_SECRET":""}"#).await;
    let base = env(&[("SECRETS_ARN", &arn)]);
    let vars = shared::secrets::load(&sdk_config().await, &base).await.unwrap();
    let err = Verifiers::from_vars(&vars, &Triggers::embedded().unwrap().rules).unwrap_err();
    assert!(err.to_string().starts_with("CIO_WEBHOOK_SECRET is not set"), "{err}");
    assert!(err.to_string().contains("SECRETS_ARN"), "it says where to put it: {err}");
}

#[tokio::test]
async fn an_unreadable_or_malformed_secret_stops_the_start_with_its_arn() {
    let missing = "arn:aws:secretsmanager:us-east-1:123456789012:secret:does-not-exist-AbCdEf";
    let err = shared::secrets::load(&sdk_config().await, &env(&[("SECRETS_ARN", missing)])).await.unwrap_err();
    assert!(matches!(err, ConfigError::SecretsManager { .. }), "{err}");
    assert!(err.to_string().contains(missing), "{err}");

    let arn = secret(r#"{"MAVERA_API_KEY":"mvra_live_test_placeholder","SEGMENT_SECRET":"typo"}"#).await;
    let err = shared::secrets::load(&sdk_config().await, &env(&[("SECRETS_ARN", &arn)])).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("SEGMENT_SECRET") && !text.contains("typo") && !text.contains("mvra_live_test_placeholder"),
        "{text}"
    );
}
