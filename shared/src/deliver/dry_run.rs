//! The dry-run adapter of every destination's port: each request is logged, as the Mavera
//! dry run logs its own, and nothing is sent. Credentials never appear: a Slack webhook is
//! named by its variable, not its URL.

use async_trait::async_trait;
use serde_json::Value;
use tokio::time::Instant;

use super::cio_track::CioUpdate;
use super::segment::SegmentCalls;
use super::send::{Port, SendError};
use super::slack::SlackMessage;
use super::webhook::WebhookMessage;

/// What a request looks like when printed: method, where it would go, body.
pub trait Describe {
    fn describe(&self) -> Vec<(&'static str, String, Value)>;
}

impl Describe for SlackMessage {
    fn describe(&self) -> Vec<(&'static str, String, Value)> {
        vec![("POST", "Slack incoming webhook (SLACK_WEBHOOK_URL)".into(), self.payload.clone())]
    }
}

impl Describe for CioUpdate {
    fn describe(&self) -> Vec<(&'static str, String, Value)> {
        let mut out =
            vec![("PUT", format!("Customer.io {}", self.person_path()), Value::Object(self.attributes.clone()))];
        if let Some(event) = &self.event {
            out.push(("POST", format!("Customer.io {}", self.event_path()), CioUpdate::event_body(event)));
        }
        out
    }
}

impl Describe for SegmentCalls {
    fn describe(&self) -> Vec<(&'static str, String, Value)> {
        self.calls.iter().map(|c| ("POST", format!("Segment {}", c.kind.path()), c.body.clone())).collect()
    }
}

impl Describe for WebhookMessage {
    fn describe(&self) -> Vec<(&'static str, String, Value)> {
        let body = serde_json::from_str(&self.body).unwrap_or_else(|_| Value::String(self.body.clone()));
        vec![("POST", format!("RESULT_WEBHOOK_URL (webhook-id {})", self.id), body)]
    }
}

/// Prints requests instead of sending them (`DRY_RUN=true`, `relay serve --dry-run`).
#[derive(Debug, Clone, Copy, Default)]
pub struct DryRun;

#[async_trait]
impl<R: Describe + Sync + ?Sized> Port<R> for DryRun {
    async fn send(&self, request: &R, _deadline: Instant) -> Result<(), SendError> {
        // The same fields as the Mavera dry run's line, so `relay serve` prints both alike.
        for (method, target, body) in request.describe() {
            tracing::info!(method, path = %target, body = %body, "dry run: would send {method} {target}");
        }
        Ok(())
    }
}
