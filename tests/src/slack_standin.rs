//! A local stand-in for a Slack incoming webhook, behaving as Slack documents it:
//!
//! - `POST /services/{team}/{bot}/{token}` with a JSON body; an unknown URL answers
//!   `404 no_service` (a revoked webhook), a body that is not a JSON object with `text` or
//!   `blocks` `400 invalid_payload`, and success `200 ok`, all as plain text.
//! - Block Kit limits: more than 50 blocks, a section text over 3000 characters, a header
//!   over 150, more than 10 fields or one over 2000 answer `400 invalid_blocks`; block text
//!   over about 12,000 characters in all answers `400 msg_blocks_too_long`.
//! - About one message per second: [`SlackStandIn::rate_limit`] turns on a window of `n`
//!   posts per second, past which it answers `429 rate_limited` with `Retry-After: 1`.
//! - Scripted replies ([`Reply`]): 429 with `Retry-After`, `500 rollup_error`,
//!   `410 channel_is_archived`, slow answers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::post;
use bytes::Bytes;
use serde_json::Value;
use tokio::time::Instant;

use crate::reply::{Reply, respond};
use crate::standin::{RequestLog, Script, StandInServer, Stop, lock};

/// The webhook path the stand-in accepts.
pub const WEBHOOK_PATH: &str = "/services/T0STANDIN/B0STANDIN/standin-secret-token";
pub const MAX_BLOCKS: usize = 50;
pub const MAX_SECTION_TEXT: usize = 3000;
pub const MAX_HEADER_TEXT: usize = 150;
pub const MAX_FIELDS: usize = 10;
pub const MAX_FIELD_TEXT: usize = 2000;
/// Slack's undocumented combined limit of block text.
pub const MAX_BLOCK_TEXT_TOTAL: usize = 12_000;

/// One post as it arrived, and what it was answered.
#[derive(Debug, Clone)]
pub struct Post {
    pub path: String,
    pub body: Option<Value>,
    pub status: u16,
    /// The plain-text answer (`ok`, `invalid_blocks` …).
    pub answer: String,
}

#[derive(Default)]
struct Shared {
    log: RequestLog<Post>,
    script: Script<Reply>,
    /// Posts allowed per second, if rate limited; the arrival times in the current window.
    rate: Mutex<Option<(usize, Vec<Instant>)>>,
    stop: Stop,
}

pub struct SlackStandIn {
    server: StandInServer,
    shared: Arc<Shared>,
}

impl SlackStandIn {
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let router = Router::new().route("/services/{*path}", post(webhook)).with_state(shared.clone());
        let server = StandInServer::start("Slack", router, shared.stop.clone()).await;
        SlackStandIn { server, shared }
    }

    /// The incoming webhook URL (SLACK_WEBHOOK_URL).
    pub fn webhook_url(&self) -> String {
        format!("http://{}{WEBHOOK_PATH}", self.server.addr())
    }

    /// A webhook URL Slack does not know (revoked).
    pub fn revoked_url(&self) -> String {
        format!("http://{}/services/T0STANDIN/B0STANDIN/dead-token", self.server.addr())
    }

    /// At most `per_second` posts in any second; the rest answer 429 with `Retry-After: 1`.
    pub fn rate_limit(&self, per_second: usize) {
        *lock(&self.shared.rate) = Some((per_second, Vec::new()));
    }

    /// Queues replies for the next posts.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.shared.script.push("/services/", replies);
    }

    pub fn posts(&self) -> Vec<Post> {
        self.shared.log.all()
    }

    /// The messages Slack showed in the channel (answered `200 ok`).
    pub fn messages(&self) -> Vec<Value> {
        self.shared.log.matching(|p| p.status == 200).into_iter().filter_map(|p| p.body).collect()
    }
}

async fn webhook(State(shared): State<Arc<Shared>>, Path(path): Path<String>, body: Bytes) -> Response {
    let path = format!("/services/{path}");
    let body: Option<Value> = serde_json::from_slice(&body).ok();
    let index = shared.log.push(Post { path: path.clone(), body: body.clone(), status: 0, answer: String::new() });
    let (status, answer, headers) = answer(&shared, &path, body.as_ref()).await;
    shared.log.update(index, |p| {
        p.status = status;
        p.answer = answer.clone();
    });
    respond(status, &headers, &answer)
}

async fn answer(shared: &Shared, path: &str, body: Option<&Value>) -> (u16, String, Vec<(&'static str, String)>) {
    match shared.script.next(path) {
        Some(Reply::Status { status, headers, body }) => return (status, body, headers),
        Some(Reply::Slow(wait)) => {
            shared.stop.pause(wait).await;
        }
        None => {}
    }
    if path != WEBHOOK_PATH {
        return (404, "no_service".into(), vec![]);
    }
    if let Some((limit, arrivals)) = lock(&shared.rate).as_mut() {
        let now = Instant::now();
        arrivals.retain(|t| now.duration_since(*t) < Duration::from_secs(1));
        if arrivals.len() >= *limit {
            return (429, "rate_limited".into(), vec![("retry-after", "1".into())]);
        }
        arrivals.push(now);
    }
    match body.map(check) {
        None => (400, "invalid_payload".into(), vec![]),
        Some(Err(code)) => (400, code.into(), vec![]),
        Some(Ok(())) => (200, "ok".into(), vec![]),
    }
}

/// Slack's checks on a message body.
fn check(body: &Value) -> Result<(), &'static str> {
    let Some(object) = body.as_object() else { return Err("invalid_payload") };
    let blocks = match object.get("blocks") {
        None => {
            return if object.get("text").and_then(Value::as_str).is_some_and(|t| !t.is_empty()) {
                Ok(())
            } else {
                Err("no_text")
            };
        }
        Some(Value::Array(blocks)) => blocks,
        Some(_) => return Err("invalid_blocks"),
    };
    if blocks.len() > MAX_BLOCKS {
        return Err("invalid_blocks");
    }
    let mut total = 0;
    for block in blocks {
        let text = block.pointer("/text/text").and_then(Value::as_str).unwrap_or("");
        let chars = text.chars().count();
        total += chars;
        match block["type"].as_str() {
            Some("header")
                if chars > MAX_HEADER_TEXT || block.pointer("/text/type") != Some(&Value::from("plain_text")) =>
            {
                return Err("invalid_blocks");
            }
            Some("header") => {}
            Some("section") => {
                if chars > MAX_SECTION_TEXT {
                    return Err("invalid_blocks");
                }
                let fields = block["fields"].as_array().map(Vec::as_slice).unwrap_or_default();
                if fields.len() > MAX_FIELDS {
                    return Err("invalid_blocks");
                }
                for field in fields {
                    let n = field["text"].as_str().map_or(0, |t| t.chars().count());
                    if n > MAX_FIELD_TEXT {
                        return Err("invalid_blocks");
                    }
                    total += n;
                }
                if text.is_empty() && fields.is_empty() {
                    return Err("invalid_blocks");
                }
            }
            Some("context") => {
                for element in block["elements"].as_array().map(Vec::as_slice).unwrap_or_default() {
                    total += element["text"].as_str().map_or(0, |t| t.chars().count());
                }
            }
            Some("divider") => {}
            _ => return Err("invalid_blocks"),
        }
    }
    if total > MAX_BLOCK_TEXT_TOTAL {
        return Err("msg_blocks_too_long");
    }
    Ok(())
}
