//! Secrets at cold start. With `SECRETS_ARN` set, the function reads that one JSON secret
//! (`{"SEGMENT_SHARED_SECRET": "...", "MAVERA_API_KEY": "...", ...}`) from Secrets
//! Manager, once, and its keys take precedence over the environment; without it (local
//! runs, tests) the environment alone is used. Values never reach a log line.

use std::collections::HashMap;

use crate::config::{ConfigError, Layered, Vars, optional, vars};

pub async fn load<'a>(sdk: &aws_config::SdkConfig, base: &'a dyn Vars) -> Result<Layered<'a>, ConfigError> {
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
    let secrets = parse(text).map_err(|problem| ConfigError::SecretsManager { arn: arn.clone(), problem })?;
    let names: Vec<&str> = secrets.keys().map(String::as_str).collect();
    tracing::info!(secret = %arn, keys = ?names, "read secrets");
    Ok(Layered { secrets, base })
}

/// Reads the secret's JSON. Errors never quote the text, which holds the secrets.
fn parse(text: &str) -> Result<HashMap<String, String>, String> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| format!("its value is not JSON (line {}, column {})", e.line(), e.column()))?;
    let object = value.as_object().ok_or("its value is not a JSON object")?;
    let mut secrets = HashMap::new();
    for (key, value) in object {
        if !vars::SECRET_KEYS.contains(&key.as_str()) {
            return Err(format!("it has an unknown key `{key}`; the keys are {}", vars::SECRET_KEYS.join(", ")));
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
    fn reads_known_keys() {
        let s = parse(r#"{"SEGMENT_SHARED_SECRET":"a,b","MAVERA_API_KEY":"k","CIO_APP_KEY":null}"#).unwrap();
        assert_eq!(s.get("SEGMENT_SHARED_SECRET").map(String::as_str), Some("a,b"));
        assert!(!s.contains_key("CIO_APP_KEY"));
    }

    #[test]
    fn errors_never_quote_the_secret() {
        let err = parse(r#"{"MAVERA_API_KEY": "mvra_live_super_secret_value", "TYPO": "x"}"#).unwrap_err();
        assert!(err.contains("TYPO") && !err.contains("super_secret_value"), "{err}");
        let err = parse(r#"{"MAVERA_API_KEY": "mvra_live_super_secret_value""#).unwrap_err();
        assert!(!err.contains("super_secret_value"), "{err}");
        let err = parse(r#"{"MAVERA_API_KEY": 42}"#).unwrap_err();
        assert!(err.contains("not a string"), "{err}");
    }
}
