//! A local stand-in for Segment's HTTP Tracking API, behaving as Segment documents it:
//!
//! - `POST /v1/track`, `/v1/identify`, `/v1/batch`, authenticated with the source's write key
//!   as the Basic auth user name (empty password) or `writeKey` in the body; else 401.
//! - A call over 32 KB (a batch over 500 KB) or a body that is not JSON answers 400; every
//!   other call answers `200 {"success": true}`, even one Segment then drops.
//! - Repeats of a `messageId` are dropped (Segment dedupes for about a day): they are
//!   answered 200 and not counted again.
//! - Regions: a workspace's events sent to the other region's host are answered 200 and
//!   silently disappear, as Segment warns for EU workspaces.
//! - Scripted replies ([`Reply`]): 429 with `Retry-After`, 5xx, slow answers.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::post;
use base64::Engine;
use serde_json::{Value, json};

use crate::reply::{Reply, respond};
use crate::standin::{RequestLog, Script, StandInServer, Stop, lock};

pub const WRITE_KEY: &str = "standin-write-key";
pub const MAX_CALL_BYTES: usize = 32 * 1024;
pub const MAX_BATCH_BYTES: usize = 500 * 1024;

/// A call as it arrived, and what became of it.
#[derive(Debug, Clone)]
pub struct Call {
    pub path: String,
    pub body: Option<Value>,
    pub bytes: usize,
    pub status: u16,
    /// Kept as a new event (not a repeat, not lost to the wrong region).
    pub kept: bool,
}

#[derive(Default)]
struct Shared {
    log: RequestLog<Call>,
    script: Script<Reply>,
    seen: Mutex<BTreeSet<String>>,
    /// Whether this host is the workspace's region.
    wrong_region: Mutex<bool>,
    stop: Stop,
}

pub struct SegmentStandIn {
    server: StandInServer,
    shared: Arc<Shared>,
}

impl SegmentStandIn {
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let router = Router::new()
            .route("/v1/track", post(call))
            .route("/v1/identify", post(call))
            .route("/v1/batch", post(call))
            .with_state(shared.clone());
        let server = StandInServer::start("Segment", router, shared.stop.clone()).await;
        SegmentStandIn { server, shared }
    }

    /// The host, as `SEGMENT_API_URL` takes it.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// Plays the other region's host: calls are answered 200 and lost.
    pub fn wrong_region(&self) {
        *lock(&self.shared.wrong_region) = true;
    }

    pub fn script(&self, path: &str, replies: impl IntoIterator<Item = Reply>) {
        self.shared.script.push(path, replies);
    }

    pub fn calls(&self) -> Vec<Call> {
        self.shared.log.all()
    }

    /// The events Segment kept, repeats dropped.
    pub fn events(&self) -> Vec<Value> {
        self.shared.log.matching(|c| c.kept).into_iter().filter_map(|c| c.body).collect()
    }
}

fn authorized(headers: &axum::http::HeaderMap, body: Option<&Value>) -> bool {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{WRITE_KEY}:"));
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Basic {basic}"))
        || body.and_then(|b| b["writeKey"].as_str()) == Some(WRITE_KEY)
}

async fn call(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 4 << 20).await.unwrap_or_default();
    let json: Option<Value> = serde_json::from_slice(&bytes).ok();
    let index =
        shared.log.push(Call { path: path.clone(), body: json.clone(), bytes: bytes.len(), status: 0, kept: false });
    let done = |status: u16, headers: &[(&'static str, String)], answer: &str, kept: bool| {
        shared.log.update(index, |c| {
            c.status = status;
            c.kept = kept;
        });
        respond(status, headers, answer)
    };
    match shared.script.next(&path) {
        Some(Reply::Status { status, headers, body }) => return done(status, &headers, &body, false),
        Some(Reply::Slow(wait)) => {
            shared.stop.pause(wait).await;
        }
        None => {}
    }
    if !authorized(&parts.headers, json.as_ref()) {
        return done(401, &[], &json!({"success": false, "message": "Invalid write key"}).to_string(), false);
    }
    let limit = if path == "/v1/batch" { MAX_BATCH_BYTES } else { MAX_CALL_BYTES };
    if bytes.len() > limit {
        return done(400, &[], &json!({"success": false, "message": "Exceeded payload size limit"}).to_string(), false);
    }
    let Some(body) = json else {
        return done(400, &[], &json!({"success": false, "message": "Invalid JSON"}).to_string(), false);
    };
    let ok = json!({"success": true}).to_string();
    if *lock(&shared.wrong_region) {
        return done(200, &[], &ok, false);
    }
    let new = match body["messageId"].as_str() {
        Some(id) => lock(&shared.seen).insert(id.to_owned()),
        None => true,
    };
    done(200, &[], &ok, new)
}
