//! The HTTP face of ingest: one axum router that the Lambda hands to `lambda_http::run`
//! and `relay serve` to `axum::serve`, so both share every line of request handling.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, FailedToBufferBody};
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use super::{Accepted, ApiError, Ingest, source_ip};
use crate::domain::Source;
use crate::telemetry::{Metric, Metrics};

/// Larger bodies get 413. Segment events are at most 32 KB; a 1 MiB batch holds hundreds.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A body that has not arrived by then gets 408 (under Lambda it has always arrived).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct AppState {
    ingest: Arc<Ingest>,
    metrics: Metrics,
    body_timeout: Duration,
}

pub fn router(ingest: Arc<Ingest>, metrics: Metrics) -> Router {
    router_with_body_timeout(ingest, metrics, BODY_TIMEOUT)
}

/// The router, giving a request's body `body_timeout` to arrive (`relay serve
/// --request-timeout`).
pub fn router_with_body_timeout(ingest: Arc<Ingest>, metrics: Metrics, body_timeout: Duration) -> Router {
    Router::new()
        .route("/webhooks/{source}", post(webhook))
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(AppState { ingest, metrics, body_timeout })
}

/// What is live, for all three functions: ingest's sources and rules, then what the worker and
/// cio-sync reported at their cold starts (see `shared::health`).
async fn healthz(State(state): State<AppState>) -> Json<serde_json::Value> {
    let sources: serde_json::Map<String, serde_json::Value> =
        state.ingest.source_states().into_iter().map(|(source, s)| (source.as_str().to_owned(), json!(s))).collect();
    let rules = state.ingest.rules().len();
    let mut functions = serde_json::Map::new();
    functions.insert("ingest".into(), json!({"rules": rules, "sources": sources}));
    functions.extend(state.ingest.other_functions().await);
    Json(json!({"status": "ok", "rules": rules, "sources": sources, "functions": functions}))
}

async fn not_found() -> Response {
    let body = json!({"error": {"code": "not_found", "message": "POST webhooks to /webhooks/segment or /webhooks/customerio; GET /healthz"}});
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

async fn webhook(State(state): State<AppState>, Path(source): Path<String>, request: Request) -> Response {
    let source_name = source.clone();
    let mut counts = state.metrics.counts();
    let result = accept(&state, &source, request).await;
    match result {
        Ok(Accepted { report, signed_age_secs }) => {
            if let Some(age) = signed_age_secs {
                counts.observe(Metric::SignedAge, age.max(0) as f64);
            }
            for event in report.events() {
                counts.add(Metric::Received, 1);
                if let Some(error) = &event.error {
                    counts.add_rejected(error.code, error.kind);
                    tracing::warn!(source = %source_name, event_id = %event.event_id, index = event.index, outcome = "rejected", code = error.code, reason = %error.message, "event of a batch rejected; the others go on");
                    continue;
                }
                if event.jobs.is_empty() {
                    counts.add(Metric::Ignored, 1);
                    tracing::info!(source = %source_name, event_id = %event.event_id, outcome = "ignored", reason = event.reason.as_deref().unwrap_or(""), signed_age_secs, "event ignored");
                }
                for job in &event.jobs {
                    let (metric, message) = match job.status {
                        super::Status::Queued => (Metric::Queued, "event queued"),
                        _ => (Metric::Duplicate, "already received (a sender retry); not queued again"),
                    };
                    counts.add(metric, 1);
                    tracing::info!(source = %source_name, event_id = %event.event_id, rule = %job.rule, outcome = job.status.as_str(), signed_age_secs, "{message}");
                }
            }
            counts.flush();
            (StatusCode::OK, Json(report)).into_response()
        }
        Err(error) => {
            counts.add_rejected(error.code(), error.kind());
            counts.flush();
            if !error.is_server_error() {
                tracing::warn!(source = %source_name, status = error.status().as_u16(), code = error.code(), "webhook rejected: {error}");
            }
            error.into_response()
        }
    }
}

/// Headers first (source, sender's address, signature headers, content type), then the
/// body within its size and time limits, then verification and the rest.
async fn accept(state: &AppState, source: &str, request: Request) -> Result<Accepted, ApiError> {
    let source = Source::parse(source).map_err(ApiError::UnknownSource)?;
    let (parts, body) = request.into_parts();
    state.ingest.admit(source, &parts.headers, source_ip(&parts.extensions))?;
    check_json(&parts.headers)?;
    let headers = parts.headers.clone();
    let read = Bytes::from_request(Request::from_parts(parts, body), state);
    let body = tokio::time::timeout(state.body_timeout, read)
        .await
        .map_err(|_| ApiError::BodyTimeout { secs: state.body_timeout.as_secs() })?
        .map_err(|rejection| match rejection {
            BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_)) => {
                ApiError::TooLarge { limit: MAX_BODY_BYTES }
            }
            other => ApiError::Body(axum::Error::new(other)),
        })?;
    state.ingest.handle(source, &headers, &body).await
}

/// `application/json`, with parameters, or any `+json` type.
fn check_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let value = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json")) {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(if value.is_empty() { "none".into() } else { value.to_owned() }))
    }
}
