//! What the Mavera client needs to start, checked once at cold start.

use std::net::IpAddr;

use http::HeaderValue;
use secrecy::{ExposeSecret, SecretString};

use crate::domain::truncate_chars;

pub const DEFAULT_BASE_URL: &str = "https://app.mavera.io/api/v1";
/// Mavera documents "Max 10 concurrent requests" for `/mave/chat`.
pub const DEFAULT_MAVE_CONCURRENCY: usize = 10;

/// The client's settings. `Debug` shows the key as `[REDACTED]`.
#[derive(Clone, Debug)]
pub struct MaveraConfig {
    /// Ends in `/api/v1`; `https`, or `http` to a loopback address (test stand-ins).
    pub base_url: String,
    /// `mvra_live_…`; surrounding whitespace (a trailing newline in a secret) is ignored.
    pub api_key: SecretString,
    /// Most `/mave/chat` requests in flight at once, across all clones of the client.
    pub mave_concurrency: usize,
}

impl MaveraConfig {
    /// The production base URL and Mavera's documented Mave concurrency.
    pub fn new(api_key: SecretString) -> Self {
        Self { base_url: DEFAULT_BASE_URL.to_owned(), api_key, mave_concurrency: DEFAULT_MAVE_CONCURRENCY }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MaveraConfigError {
    #[error(
        "the Mavera API key is empty; set MAVERA_API_KEY (or the relay secret) to a key from Mavera's \
         Settings > Developer > API Keys"
    )]
    EmptyApiKey,

    #[error(
        "the Mavera API key contains characters an HTTP header cannot carry; copy the key again \
         (it looks like mvra_live_ followed by letters and digits)"
    )]
    MalformedApiKey,

    #[error("MAVERA_BASE_URL `{url}` is not a valid URL; use e.g. {DEFAULT_BASE_URL}")]
    InvalidBaseUrl {
        url: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    #[error(
        "MAVERA_BASE_URL `{url}` must use https, so the API key never crosses the network in clear \
         (plain http is accepted only for localhost stand-ins)"
    )]
    InsecureBaseUrl { url: String },

    #[error("MAVERA_BASE_URL must be a plain base such as {DEFAULT_BASE_URL}: {reason}")]
    UnsupportedBaseUrl { reason: &'static str },

    #[error("mave_concurrency is 0, so no Mave call could ever run; set it to 1–10 (Mavera allows 10)")]
    ZeroConcurrency,

    #[error("could not build the HTTPS client for Mavera (TLS or resolver setup failed)")]
    HttpClient(#[source] reqwest::Error),
}

/// Checks the base URL and drops any trailing `/`, so that paths append cleanly.
pub(crate) fn normalize_base_url(raw: &str) -> Result<String, MaveraConfigError> {
    let url = reqwest::Url::parse(raw.trim())
        .map_err(|e| MaveraConfigError::InvalidBaseUrl { url: raw.to_owned(), source: Box::new(e) })?;
    if !url.username().is_empty() || url.password().is_some() {
        // Not echoed: it holds credentials.
        return Err(MaveraConfigError::UnsupportedBaseUrl { reason: "it must not carry a user name or password" });
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(MaveraConfigError::UnsupportedBaseUrl { reason: "it must not carry a query or fragment" });
    }
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(url.host_str().unwrap_or_default()) => {}
        "http" => {
            return Err(MaveraConfigError::InsecureBaseUrl { url: url.to_string() });
        }
        _ => {
            return Err(MaveraConfigError::UnsupportedBaseUrl { reason: "the scheme must be https" });
        }
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The `Authorization` header, marked sensitive so HTTP-layer logs and `Debug` hide it.
pub(crate) fn bearer_header(api_key: &SecretString) -> Result<HeaderValue, MaveraConfigError> {
    let key = api_key.expose_secret().trim();
    if key.is_empty() {
        return Err(MaveraConfigError::EmptyApiKey);
    }
    let mut value = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| MaveraConfigError::MalformedApiKey)?;
    value.set_sensitive(true);
    Ok(value)
}

/// At most the first 8 characters (`mvra_liv…`), for logs; nothing of a short key.
pub(crate) fn key_hint(api_key: &SecretString) -> String {
    let key = api_key.expose_secret().trim();
    if key.chars().count() >= 24 { format!("{}…", truncate_chars(key, 8)) } else { "…".to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "mvra_live_test_0123456789abcdefghijklmnop";

    #[test]
    fn base_url_is_normalized() {
        assert_eq!(normalize_base_url(DEFAULT_BASE_URL).unwrap(), DEFAULT_BASE_URL);
        assert_eq!(normalize_base_url("https://app.mavera.io/api/v1/").unwrap(), DEFAULT_BASE_URL);
        assert_eq!(normalize_base_url("http://127.0.0.1:4010/api/v1").unwrap(), "http://127.0.0.1:4010/api/v1");
        assert_eq!(normalize_base_url("http://localhost:4010/api/v1").unwrap(), "http://localhost:4010/api/v1");
        assert_eq!(normalize_base_url("http://[::1]:4010/api/v1").unwrap(), "http://[::1]:4010/api/v1");
    }

    #[test]
    fn base_url_rejects_cleartext_to_remote_hosts_and_odd_shapes() {
        assert!(matches!(
            normalize_base_url("http://app.mavera.io/api/v1"),
            Err(MaveraConfigError::InsecureBaseUrl { .. })
        ));
        assert!(matches!(normalize_base_url("app.mavera.io/api/v1"), Err(MaveraConfigError::InvalidBaseUrl { .. })));
        assert!(matches!(
            normalize_base_url("ftp://app.mavera.io/api/v1"),
            Err(MaveraConfigError::UnsupportedBaseUrl { .. })
        ));
        let with_password = normalize_base_url("https://user:hunter2@app.mavera.io/api/v1").unwrap_err();
        assert!(!with_password.to_string().contains("hunter2"), "{with_password}");
        assert!(matches!(
            normalize_base_url("https://app.mavera.io/api/v1?x=1"),
            Err(MaveraConfigError::UnsupportedBaseUrl { .. })
        ));
    }

    #[test]
    fn bearer_header_is_sensitive_and_trimmed() {
        let value = bearer_header(&SecretString::from(format!("  {KEY}\n"))).unwrap();
        assert!(value.is_sensitive());
        assert_eq!(value.to_str().unwrap(), format!("Bearer {KEY}"));
        assert!(!format!("{value:?}").contains("0123456789"));
    }

    #[test]
    fn empty_or_malformed_keys_are_refused_without_echoing_them() {
        assert!(matches!(bearer_header(&SecretString::from(" \n")), Err(MaveraConfigError::EmptyApiKey)));
        let err = bearer_header(&SecretString::from("mvra_live_abc\u{7}secretpart")).unwrap_err();
        assert!(matches!(err, MaveraConfigError::MalformedApiKey));
        assert!(!format!("{err} {err:?}").contains("secretpart"));
    }

    #[test]
    fn key_hint_shows_only_a_short_prefix() {
        assert_eq!(key_hint(&SecretString::from(KEY)), "mvra_liv…");
        assert_eq!(key_hint(&SecretString::from("short_key_123")), "…");
    }

    #[test]
    fn config_debug_redacts_the_key() {
        let config = MaveraConfig::new(SecretString::from(KEY));
        let shown = format!("{config:?}");
        assert!(!shown.contains("0123456789"), "{shown}");
        assert!(shown.contains(DEFAULT_BASE_URL));
    }
}
