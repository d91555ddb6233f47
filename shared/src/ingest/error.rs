//! Every way a webhook request can fail, and the one place that turns them into HTTP
//! answers. The caller's mistakes (4xx) say exactly what was wrong; our own failures (5xx)
//! carry only a code, with the details in the log.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::domain::{Source, UnknownSource};
use crate::parse::ParseError;
use crate::queue::QueueError;
use crate::store::StoreError;
use crate::telemetry::RejectionKind;
use crate::verify::{Refused, VerifyError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}: POST to /webhooks/segment or /webhooks/customerio")]
    UnknownSource(#[source] UnknownSource),
    #[error("no rule uses {0} and no signing secret is configured for it, so /webhooks/{0} is off")]
    SourceNotConfigured(Source),
    #[error(
        "/webhooks/{sender} is off: its signing secret ({var}) is not set, so nothing from it can be verified; retry once it is"
    )]
    SourceDisabled { sender: Source, var: &'static str },
    #[error("the body is larger than {limit} bytes; for Segment batches, lower the batch size in the mapping")]
    TooLarge { limit: usize },
    #[error(
        "this batch holds {events} events; a batch signed on its first event only may hold at most {limit} (its other events are unauthenticated): lower the batch size in the Segment mapping, or turn batching off"
    )]
    BatchTooLarge { events: usize, limit: usize },
    #[error(
        "{sender} webhooks are accepted only from the addresses in {var}; this one came from {}",
        ip.map(|ip| ip.to_string()).unwrap_or_else(|| "an unknown address".into())
    )]
    SourceIpNotAllowed { sender: Source, var: &'static str, ip: Option<std::net::IpAddr> },
    #[error("the request body did not arrive within {secs} s")]
    BodyTimeout { secs: u64 },
    #[error("Content-Type must be application/json (got {0})")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Signature(#[source] VerifyError),
    #[error("{0}")]
    Payload(#[source] ParseError),
    #[error("event {event_id}: {source}")]
    TooLargeForQueue { event_id: String, source: QueueError },
    #[error("the event could not be stored")]
    Store(#[source] StoreError),
    #[error(
        "event {event_id} is being queued by an earlier delivery of it that has not finished; retry in a few seconds (it is never acknowledged before it is queued)"
    )]
    InFlight { event_id: String },
    #[error("the event could not be queued")]
    Queue(#[source] QueueError),
    #[error("the request body could not be read")]
    Body(#[source] axum::Error),
}

impl From<Refused> for ApiError {
    fn from(refused: Refused) -> Self {
        match refused {
            Refused::SourceOff(source) => ApiError::SourceNotConfigured(source),
            Refused::Signature(error) => ApiError::Signature(error),
        }
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::UnknownSource(_) | ApiError::SourceNotConfigured(_) => StatusCode::NOT_FOUND,
            ApiError::TooLarge { .. } | ApiError::TooLargeForQueue { .. } | ApiError::BatchTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::SourceIpNotAllowed { .. } => StatusCode::FORBIDDEN,
            ApiError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::Signature(_) => StatusCode::UNAUTHORIZED,
            ApiError::Payload(_) | ApiError::Body(_) => StatusCode::BAD_REQUEST,
            // 503, not 500: Customer.io waits an hour after a 500 but backs off normally
            // after a 503, and both senders retry it.
            ApiError::Store(_) | ApiError::Queue(_) | ApiError::InFlight { .. } | ApiError::SourceDisabled { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// A stable code for response bodies, logs and the `rejected` metric.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::UnknownSource(_) => "unknown_source",
            ApiError::SourceNotConfigured(_) => "source_not_configured",
            ApiError::SourceDisabled { .. } => "source_disabled",
            ApiError::TooLarge { .. } | ApiError::TooLargeForQueue { .. } => "payload_too_large",
            ApiError::BatchTooLarge { .. } => "batch_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::SourceIpNotAllowed { .. } => "source_ip_not_allowed",
            ApiError::BodyTimeout { .. } => "request_timeout",
            ApiError::Signature(e) => e.code(),
            ApiError::Payload(e) => e.code(),
            ApiError::Store(_) => "store_unavailable",
            ApiError::InFlight { .. } => "in_flight",
            ApiError::Queue(_) => "queue_unavailable",
            ApiError::Body(_) => "unreadable_body",
        }
    }

    /// Who has to act on it: the `Kind` of the `rejected` metric, which the alarms watch.
    pub fn kind(&self) -> RejectionKind {
        match self {
            ApiError::Signature(e) => e.kind(),
            ApiError::Payload(e) => e.kind(),
            ApiError::UnknownSource(_) | ApiError::SourceNotConfigured(_) | ApiError::SourceIpNotAllowed { .. } => {
                RejectionKind::NotAllowed
            }
            ApiError::TooLarge { .. }
            | ApiError::TooLargeForQueue { .. }
            | ApiError::BatchTooLarge { .. }
            | ApiError::UnsupportedMediaType(_)
            | ApiError::BodyTimeout { .. }
            | ApiError::Body(_) => RejectionKind::Malformed,
            ApiError::InFlight { .. } => RejectionKind::Busy,
            ApiError::SourceDisabled { .. } => RejectionKind::Misconfigured,
            ApiError::Store(_) | ApiError::Queue(_) => RejectionKind::Unavailable,
        }
    }

    pub fn is_server_error(&self) -> bool {
        self.status().is_server_error()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::SourceDisabled { .. } = self {
            // A configuration to fix, said in full; the sender retries meanwhile.
            tracing::error!(code = self.code(), "{self}");
            let body = Json(json!({"error": {"code": self.code(), "message": self.to_string()}}));
            return (self.status(), body).into_response();
        }
        if let ApiError::InFlight { .. } = self {
            // Ours to say in full: nothing failed, the sender only has to come back.
            tracing::warn!(code = self.code(), "{self}");
            let body = Json(json!({"error": {"code": self.code(), "message": self.to_string()}}));
            let wait = crate::store::CLAIM_LEASE.as_secs().to_string();
            return (self.status(), [(axum::http::header::RETRY_AFTER, wait)], body).into_response();
        }
        let message = if self.is_server_error() {
            // Details go to the log, not to the sender.
            tracing::error!(code = self.code(), error = %crate::telemetry::chain(&self), "webhook not accepted; the sender will retry");
            format!("{self}; nothing was accepted, retry later")
        } else {
            self.to_string()
        };
        (self.status(), Json(json!({"error": {"code": self.code(), "message": message}}))).into_response()
    }
}
