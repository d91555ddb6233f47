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
use crate::verify::{Refused, VerifyError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}: POST to /webhooks/segment or /webhooks/customerio")]
    UnknownSource(#[source] UnknownSource),
    #[error("no rule uses {0} and no signing secret is configured for it, so /webhooks/{0} is off")]
    SourceNotConfigured(Source),
    #[error("the body is larger than {limit} bytes; for Segment batches, lower the batch size in the mapping")]
    TooLarge { limit: usize },
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
            ApiError::TooLarge { .. } | ApiError::TooLargeForQueue { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Signature(_) => StatusCode::UNAUTHORIZED,
            ApiError::Payload(_) | ApiError::Body(_) => StatusCode::BAD_REQUEST,
            // 503, not 500: Customer.io waits an hour after a 500 but backs off normally
            // after a 503, and both senders retry it.
            ApiError::Store(_) | ApiError::Queue(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A stable code for response bodies, logs and the `rejected` metric.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::UnknownSource(_) => "unknown_source",
            ApiError::SourceNotConfigured(_) => "source_not_configured",
            ApiError::TooLarge { .. } | ApiError::TooLargeForQueue { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Signature(e) => e.code(),
            ApiError::Payload(e) => e.code(),
            ApiError::Store(_) => "store_unavailable",
            ApiError::Queue(_) => "queue_unavailable",
            ApiError::Body(_) => "unreadable_body",
        }
    }

    pub fn is_server_error(&self) -> bool {
        self.status().is_server_error()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
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
