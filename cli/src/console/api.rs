//! The records API of a running `relay serve` (`/console/api/`): what `relay events`,
//! `show` and `replay --data-dir DIR` use while the server holds the directory's file. Every
//! call carries the token the server wrote beside the file (`records::running`); without it
//! the API answers 401, so the pages' browser cannot be made to call it.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use shared::domain::JobKey;
use shared::store::{JobStatus, ListFilter, ListQuery, Position, Requeue, epoch_millis};

use super::ConsoleState;
use crate::selection::parse_status;

/// A listing query as query-string parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListParams {
    pub since_ms: u64,
    pub until_ms: u64,
    /// Comma-separated statuses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    pub limit: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

impl ListParams {
    pub fn from_query(q: &ListQuery) -> Self {
        let statuses: Vec<&str> = q.filter.statuses.iter().map(|s| s.as_str()).collect();
        ListParams {
            since_ms: epoch_millis(q.since),
            until_ms: epoch_millis(q.until),
            status: (!statuses.is_empty()).then(|| statuses.join(",")),
            rule: q.filter.rule.clone(),
            user: q.filter.user.clone(),
            limit: q.limit,
            after: q.after.as_ref().map(|p| p.to_string()),
        }
    }

    fn into_query(self) -> Result<ListQuery, String> {
        let at = |ms: u64| UNIX_EPOCH + Duration::from_millis(ms);
        let statuses = match &self.status {
            Some(list) => list.split(',').map(parse_status).collect::<Result<_, _>>()?,
            None => vec![],
        };
        let after = self.after.map(Position::parse).transpose().map_err(|e| e.to_string())?;
        Ok(ListQuery {
            since: at(self.since_ms),
            until: at(self.until_ms),
            filter: ListFilter { statuses, rule: self.rule, user: self.user },
            limit: self.limit.min(10_000),
            after,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplayRequest {
    pub key: JobKey,
    /// The status the operator was shown.
    pub seen: JobStatus,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ReplayAnswer {
    Requeued,
    Changed { status: Option<JobStatus> },
    NoMessage,
}

impl ReplayAnswer {
    /// The answer as the store's (the message stays with the server).
    pub fn into_requeue(self) -> Requeue {
        match self {
            ReplayAnswer::Requeued => Requeue::Requeued { message: String::new() },
            ReplayAnswer::Changed { status } => Requeue::Changed(status),
            ReplayAnswer::NoMessage => Requeue::NoMessage,
        }
    }
}

/// Whether the request carries the server's token (compared without an early exit).
fn authorized(headers: &HeaderMap, token: Option<&str>) -> bool {
    let (Some(token), Some(given)) = (token, headers.get("authorization").and_then(|v| v.to_str().ok())) else {
        return false;
    };
    let Some(given) = given.strip_prefix("Bearer ") else { return false };
    given.len() == token.len() && given.bytes().zip(token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

fn refused() -> Response {
    (StatusCode::UNAUTHORIZED, "the records API needs the token relay serve wrote to serve.json in its data directory")
        .into_response()
}

fn failed(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "records API");
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
}

pub async fn jobs(
    State(state): State<Arc<ConsoleState>>,
    headers: HeaderMap,
    Query(params): Query<ListParams>,
) -> Response {
    if !authorized(&headers, state.token.as_deref()) {
        return refused();
    }
    let query = match params.into_query() {
        Ok(q) => q,
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    match state.records.list(&query).await {
        Ok(page) => Json(page).into_response(),
        Err(e) => failed(shared::telemetry::chain(&e)),
    }
}

#[derive(Debug, Deserialize)]
pub struct KeyParam {
    pub key: String,
}

pub async fn job(State(state): State<Arc<ConsoleState>>, headers: HeaderMap, Query(p): Query<KeyParam>) -> Response {
    if !authorized(&headers, state.token.as_deref()) {
        return refused();
    }
    match state.records.get(&JobKey::from_stored(p.key)).await {
        Ok(Some(record)) => Json(record).into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => failed(shared::telemetry::chain(&e)),
    }
}

pub async fn replay(
    State(state): State<Arc<ConsoleState>>,
    headers: HeaderMap,
    Json(request): Json<ReplayRequest>,
) -> Response {
    if !authorized(&headers, state.token.as_deref()) {
        return refused();
    }
    let answer = match state.records.replay(&request.key, request.seen).await {
        Ok(Requeue::Requeued { .. }) => ReplayAnswer::Requeued,
        Ok(Requeue::Changed(status)) => ReplayAnswer::Changed { status },
        Ok(Requeue::NoMessage) => ReplayAnswer::NoMessage,
        Err(e) => return failed(shared::telemetry::chain(&e)),
    };
    tracing::info!(key = %request.key, outcome = ?answer, "replay requested through the records API");
    Json(answer).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_survives_the_trip_through_parameters() {
        let now = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let q = ListQuery {
            since: now - Duration::from_secs(3600),
            until: now,
            filter: ListFilter {
                statuses: vec![JobStatus::Failed, JobStatus::Retrying],
                rule: Some("r".into()),
                user: None,
            },
            limit: 50,
            after: Some(Position::new(now, &JobKey::from_stored("segment#m#r"))),
        };
        assert_eq!(ListParams::from_query(&q).into_query().unwrap(), q);
    }

    #[test]
    fn only_the_token_opens_the_api() {
        let mut headers = HeaderMap::new();
        assert!(!authorized(&headers, Some("secret-token")));
        headers.insert("authorization", "Bearer secret-tokem".parse().unwrap());
        assert!(!authorized(&headers, Some("secret-token")));
        headers.insert("authorization", "Bearer secret-token".parse().unwrap());
        assert!(authorized(&headers, Some("secret-token")));
        assert!(!authorized(&headers, None), "no token configured: the API is closed");
    }
}
