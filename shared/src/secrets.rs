//! Secrets at cold start. With `SECRETS_ARN` set, the function reads that one JSON secret
//! from Secrets Manager, once, and its keys take precedence over the environment; without it
//! (local runs, tests) the environment alone is used. Values never reach a log line.
//!
//! Each function has its own secret and may read only its keys: ingest the signing secret
//! ([`vars::SIGNING_SECRET_KEYS`]), the worker and cio-sync the API keys secret
//! ([`vars::API_KEYS_SECRET_KEYS`]). A key of another secret is refused, so that a secret
//! wired to the wrong function is found at start-up rather than quietly readable.

use std::collections::HashMap;

use crate::config::{ConfigError, Layered, Vars, optional, vars};

pub async fn load<'a>(
    sdk: &aws_config::SdkConfig,
    base: &'a dyn Vars,
    keys: &'static [&'static str],
) -> Result<Layered<'a>, ConfigError> {
    let Some(arn) = optional(base, vars::SECRETS_ARN) else {
        return Ok(Layered { secrets: HashMap::new(), base });
    };
    let client = aws_sdk_secretsmanager::Client::new(sdk);
    let out = client.get_secret_value().secret_id(&arn).send().await.map_err(|e| ConfigError::SecretsManager {
        arn: arn.clone(),
        problem: format!(
            "{} (check that the secret exists and the function's role may read it)",
            aws_sdk_secretsmanager::error::DisplayErrorContext(e)
        ),
    })?;
    let text = out.secret_string().ok_or_else(|| ConfigError::SecretsManager {
        arn: arn.clone(),
        problem: "it has no SecretString; store the secrets as a JSON object of strings".into(),
    })?;
    let secrets = parse(text, keys).map_err(|problem| ConfigError::SecretsManager { arn: arn.clone(), problem })?;
    let names: Vec<&str> = secrets.keys().map(String::as_str).collect();
    tracing::info!(secret = %arn, keys = ?names, "read secrets");
    Ok(Layered { secrets, base })
}

/// Reads the secret's JSON, holding only `keys`. Errors never quote the text, which holds
/// the secrets.
fn parse(text: &str, keys: &[&str]) -> Result<HashMap<String, String>, String> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| format!("its value is not JSON (line {}, column {})", e.line(), e.column()))?;
    let object = value.as_object().ok_or("its value is not a JSON object")?;
    let mut secrets = HashMap::new();
    for (key, value) in object {
        if !keys.contains(&key.as_str()) {
            let whose = if vars::SIGNING_SECRET_KEYS.contains(&key.as_str()) {
                " (a signing secret: it belongs in the signing secret, which only ingest reads)"
            } else if vars::API_KEYS_SECRET_KEYS.contains(&key.as_str()) {
                " (an API key: it belongs in the API keys secret, which ingest never reads)"
            } else {
                ""
            };
            return Err(format!(
                "it has the key `{key}`{whose}, which this function may not read; its secret holds only {}",
                keys.join(", ")
            ));
        }
        match value {
            serde_json::Value::String(s) => {
                secrets.insert(key.clone(), s.clone());
            }
            serde_json::Value::Null => {}
            _ => return Err(format!("`{key}` is not a string")),
        }
    }
    Ok(secrets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_functions_own_keys() {
        let s = parse(
            r#"{"SEGMENT_SHARED_SECRET":"a,b","SEGMENT_SHARED_SECRET_PREVIOUS":"c","CIO_WEBHOOK_SECRET":null}"#,
            &vars::SIGNING_SECRET_KEYS,
        )
        .unwrap();
        assert_eq!(s.get("SEGMENT_SHARED_SECRET").map(String::as_str), Some("a,b"));
        assert_eq!(s.get("SEGMENT_SHARED_SECRET_PREVIOUS").map(String::as_str), Some("c"));
        assert!(!s.contains_key("CIO_WEBHOOK_SECRET"));
    }

    #[test]
    fn another_functions_keys_are_refused() {
        let err = parse(r#"{"SEGMENT_SHARED_SECRET":"s","MAVERA_API_KEY":"mvra_live_x"}"#, &vars::SIGNING_SECRET_KEYS)
            .unwrap_err();
        assert!(err.contains("`MAVERA_API_KEY` (an API key") && !err.contains("mvra_live_x"), "{err}");
        let err = parse(r#"{"MAVERA_API_KEY":"k","CIO_WEBHOOK_SECRET":"w"}"#, &vars::API_KEYS_SECRET_KEYS).unwrap_err();
        assert!(err.contains("`CIO_WEBHOOK_SECRET` (a signing secret"), "{err}");
    }

    #[test]
    fn errors_never_quote_the_secret() {
        let keys = &vars::API_KEYS_SECRET_KEYS;
        let err = parse(r#"{"MAVERA_API_KEY": "mvra_live_super_secret_value", "TYPO": "x"}"#, keys).unwrap_err();
        assert!(err.contains("TYPO") && !err.contains("super_secret_value"), "{err}");
        let err = parse(r#"{"MAVERA_API_KEY": "mvra_live_super_secret_value""#, keys).unwrap_err();
        assert!(!err.contains("super_secret_value"), "{err}");
        let err = parse(r#"{"MAVERA_API_KEY": 42}"#, keys).unwrap_err();
        assert!(err.contains("not a string"), "{err}");
    }
}
