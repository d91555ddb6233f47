//! The dry-run adapter of the Mavera port: each request is logged and answered with a record
//! of itself ([`MaveraResponse::DryRun`]), and nothing is sent. The worker runs it like any
//! client, so a dry run takes the same path as a live one: guards, records, logs.

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::client::{MaveraApi, MaveraResponse};
use super::error::MaveraError;
use super::types::{MaveraRequest, PersonaSummary};

/// Records requests instead of sending them (`DRY_RUN=true`, `relay serve --dry-run`, or
/// `relay serve` without `MAVERA_API_KEY`).
#[derive(Debug, Clone, Copy, Default)]
pub struct DryRun;

/// What a dry run answers: the request as it would have been sent.
#[derive(Debug, Clone, PartialEq)]
pub struct WouldSend {
    pub path: &'static str,
    pub body: Value,
}

impl WouldSend {
    pub fn of(request: &MaveraRequest) -> Self {
        WouldSend { path: request.path(), body: request.body() }
    }

    /// As a job record shows it: `{"method": "POST", "path": …, "body": …}`.
    pub fn to_json(&self) -> Value {
        json!({"method": "POST", "path": self.path, "body": self.body})
    }
}

#[async_trait]
impl MaveraApi for DryRun {
    async fn send(&self, request: &MaveraRequest, _deadline: Instant) -> Result<MaveraResponse, MaveraError> {
        let would = WouldSend::of(request);
        tracing::info!(path = would.path, body = %would.body, "dry run: would send POST {}", would.path);
        Ok(MaveraResponse::DryRun(would))
    }

    /// Nothing was ever created, so nothing can be found.
    async fn find_persona(&self, _name: &str, _deadline: Instant) -> Result<Option<PersonaSummary>, MaveraError> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mavera::MaveChatRequest;

    #[tokio::test]
    async fn a_dry_run_answers_with_the_request() {
        let request =
            MaveraRequest::Research(MaveChatRequest { message: "why?".into(), thread_id: None, workspace_id: None });
        let answer = DryRun.send(&request, Instant::now()).await.unwrap();
        let MaveraResponse::DryRun(would) = answer else { panic!("a dry-run answer, got {answer:?}") };
        assert_eq!(would.to_json(), json!({"method": "POST", "path": "/mave/chat", "body": {"message": "why?"}}));
    }
}
