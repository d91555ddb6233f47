//! What can go wrong talking to the App API, and whether trying again later can help.
//!
//! Messages name the endpoint as a template (`GET /v1/customers/{id}/attributes`), never the
//! filled-in URL: ids and emails are personal data, and the key never appears anywhere.

use std::sync::Arc;
use std::time::Duration;

/// An App API call that did not produce a usable answer. Cheap to clone (the retry loop
/// keeps the error that prompted a retry, in case the retry cannot start).
#[derive(Debug, Clone, thiserror::Error)]
pub enum CioError {
    #[error(
        "Customer.io refused the App API key on {endpoint} (401): check CIO_APP_KEY holds an App API key \
         (not a Track API key) for this workspace and region, with a scope that allows this call"
    )]
    Unauthorized { endpoint: &'static str },

    #[error(
        "Customer.io denied {endpoint} (403): the App API key is valid but its scope does not cover this \
         call; widen the key's scope in Account Settings → API Credentials"
    )]
    Forbidden { endpoint: &'static str },

    #[error("Customer.io rejected {endpoint} as malformed (400): {detail}{}", hint.map(|h| format!("; {h}")).unwrap_or_default())]
    BadRequest { endpoint: &'static str, detail: String, hint: Option<&'static str> },

    #[error("Customer.io has no such resource for {endpoint} (404): check the id exists in this workspace")]
    NotFound { endpoint: &'static str },

    #[error(
        "Customer.io rate-limited {endpoint} (429) and retries ran out or would pass the deadline: \
         lower the request rate or run the job later"
    )]
    RateLimited { endpoint: &'static str, retry_after: Option<Duration> },

    #[error(
        "Customer.io failed {endpoint} with {status} and retries ran out or would pass the deadline: try again later"
    )]
    Server { endpoint: &'static str, status: u16, retry_after: Option<Duration> },

    #[error("Customer.io answered {endpoint} with unexpected status {status}: {detail}")]
    UnexpectedStatus { endpoint: &'static str, status: u16, detail: String },

    #[error("could not complete {endpoint} with Customer.io (network or TLS failure): {source}")]
    Transport {
        endpoint: &'static str,
        #[source]
        source: Arc<reqwest::Error>,
    },

    #[error("the deadline passed before {endpoint} could {waiting_for}: give the call more time or retry later")]
    DeadlineExceeded { endpoint: &'static str, waiting_for: &'static str },

    #[error("Customer.io's answer to {endpoint} does not match the documented JSON: {source}")]
    Decode {
        endpoint: &'static str,
        #[source]
        source: Arc<serde_json::Error>,
    },

    #[error("{endpoint} was not sent: {reason}")]
    InvalidInput { endpoint: &'static str, reason: &'static str },

    #[error("the Customer.io client is misconfigured: {0}")]
    Config(String),
}

impl CioError {
    /// The HTTP status Customer.io answered with, when it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            CioError::Unauthorized { .. } => Some(401),
            CioError::Forbidden { .. } => Some(403),
            CioError::BadRequest { .. } => Some(400),
            CioError::NotFound { .. } => Some(404),
            CioError::RateLimited { .. } => Some(429),
            CioError::Server { status, .. } | CioError::UnexpectedStatus { status, .. } => Some(*status),
            CioError::Transport { .. } | CioError::DeadlineExceeded { .. } | CioError::Decode { .. } => None,
            CioError::InvalidInput { .. } | CioError::Config(_) => None,
        }
    }

    /// Whether the same call may succeed later: 429, 5xx, network failures and timeouts.
    /// Decided by status and kind, never by message text.
    pub fn is_transient(&self) -> bool {
        match self {
            CioError::Transport { .. } | CioError::DeadlineExceeded { .. } => true,
            CioError::Decode { .. } | CioError::InvalidInput { .. } | CioError::Config(_) => false,
            _ => self.status().is_some_and(is_transient_status),
        }
    }

    /// How long Customer.io asked us to wait (`Retry-After`), if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            CioError::RateLimited { retry_after, .. } | CioError::Server { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// 429 and every 5xx are worth another try; other statuses will answer the same again.
pub(crate) fn is_transient_status(status: u16) -> bool {
    status == 429 || (500..=599).contains(&status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_is_decided_by_status() {
        let e = "GET /v1/campaigns";
        assert!(CioError::RateLimited { endpoint: e, retry_after: None }.is_transient());
        assert!(CioError::Server { endpoint: e, status: 503, retry_after: None }.is_transient());
        assert!(CioError::DeadlineExceeded { endpoint: e, waiting_for: "answer" }.is_transient());
        assert!(!CioError::Unauthorized { endpoint: e }.is_transient());
        assert!(!CioError::NotFound { endpoint: e }.is_transient());
        assert!(!CioError::BadRequest { endpoint: e, detail: String::new(), hint: None }.is_transient());
        assert!(!CioError::UnexpectedStatus { endpoint: e, status: 409, detail: String::new() }.is_transient());
        assert!(CioError::UnexpectedStatus { endpoint: e, status: 599, detail: String::new() }.is_transient());
    }

    #[test]
    fn messages_say_what_to_do() {
        let e = "GET /v1/campaigns";
        assert!(CioError::Unauthorized { endpoint: e }.to_string().contains("CIO_APP_KEY"));
        let hinted = CioError::BadRequest { endpoint: e, detail: "bad id_type".into(), hint: Some("enable email") };
        assert_eq!(
            hinted.to_string(),
            "Customer.io rejected GET /v1/campaigns as malformed (400): bad id_type; enable email"
        );
        let bare = CioError::BadRequest { endpoint: e, detail: "x".into(), hint: None };
        assert!(bare.to_string().ends_with("(400): x"));
    }
}
