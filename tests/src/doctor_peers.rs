//! The peers `relay doctor` checks the destinations' credentials against, until the
//! destinations' own stand-ins land with issue 11: Customer.io's Track API region endpoint,
//! a Slack incoming webhook, and a Standard Webhooks receiver that verifies signatures. Each
//! behaves as `reference/destinations.md` says, errors included, and records what it got.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::standin::{StandInServer, Stop, lock};

/// A Customer.io data center, as the Track API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Region {
    Us,
    Eu,
}

impl Region {
    fn name(self) -> &'static str {
        match self {
            Region::Us => "us",
            Region::Eu => "eu",
        }
    }

    fn url(self) -> &'static str {
        match self {
            Region::Us => "https://track.customer.io",
            Region::Eu => "https://track-eu.customer.io",
        }
    }
}

pub const SITE_ID: &str = "standin-site-id";
pub const TRACK_API_KEY: &str = "standin-track-api-key";

struct TrackShared {
    host: Region,
    account: Region,
    calls: Mutex<Vec<Option<String>>>,
    stop: Stop,
}

/// One region's Track API host, for one account (Site ID [`SITE_ID`], key [`TRACK_API_KEY`])
/// in `account`. `GET /api/v1/accounts/region` answers `{"url", "region", "environment_id"}`
/// to good credentials, 401 to bad ones, and 401 when a US account asks the EU host.
pub struct TrackRegion {
    server: StandInServer,
    shared: Arc<TrackShared>,
}

impl TrackRegion {
    pub async fn start(host: Region, account: Region) -> Self {
        let shared = Arc::new(TrackShared { host, account, calls: Mutex::default(), stop: Stop::default() });
        let router = Router::new().route("/api/v1/accounts/region", get(region)).with_state(shared.clone());
        let server = StandInServer::start("Customer.io Track", router, shared.stop.clone()).await;
        TrackRegion { server, shared }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// The `Authorization` header of each call, as sent.
    pub fn calls(&self) -> Vec<Option<String>> {
        lock(&self.shared.calls).clone()
    }
}

async fn region(State(shared): State<Arc<TrackShared>>, headers: HeaderMap) -> Response {
    let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
    lock(&shared.calls).push(auth.clone());
    let expected = format!("Basic {}", STANDARD.encode(format!("{SITE_ID}:{TRACK_API_KEY}")));
    let unauthorized = (StatusCode::UNAUTHORIZED, axum::Json(json!({"meta": {"error": "Unauthorized request"}})));
    if auth.as_deref() != Some(expected.as_str()) {
        return unauthorized.into_response();
    }
    // "A US account's requests to the EU host fail."
    if shared.account == Region::Us && shared.host == Region::Eu {
        return unauthorized.into_response();
    }
    let account = shared.account;
    axum::Json(json!({"url": account.url(), "region": account.name(), "environment_id": 3})).into_response()
}

/// What a Slack incoming webhook does with the next post.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlackState {
    Live,
    /// Revoked: 404 `no_service`.
    Revoked,
}

struct SlackShared {
    state: Mutex<SlackState>,
    posts: Mutex<Vec<Value>>,
    stop: Stop,
}

/// A Slack incoming webhook at `/services/T000/B000/XXXX`: `{"text": …}` answers `200 ok`,
/// anything else `400 invalid_payload`; a revoked one `404 no_service`.
pub struct Slack {
    server: StandInServer,
    shared: Arc<SlackShared>,
}

impl Slack {
    pub const PATH: &'static str = "/services/T000/B000/XXXXXXXX";

    pub async fn start() -> Self {
        let shared = Arc::new(SlackShared {
            state: Mutex::new(SlackState::Live),
            posts: Mutex::default(),
            stop: Stop::default(),
        });
        let router = Router::new().route(Self::PATH, post(slack_post)).with_state(shared.clone());
        let server = StandInServer::start("Slack", router, shared.stop.clone()).await;
        Slack { server, shared }
    }

    /// The webhook's URL (the credential).
    pub fn url(&self) -> String {
        format!("http://{}{}", self.server.addr(), Self::PATH)
    }

    pub fn set_state(&self, state: SlackState) {
        *lock(&self.shared.state) = state;
    }

    /// The bodies of the posts it accepted.
    pub fn posts(&self) -> Vec<Value> {
        lock(&self.shared.posts).clone()
    }
}

async fn slack_post(State(shared): State<Arc<SlackShared>>, body: Bytes) -> Response {
    if *lock(&shared.state) == SlackState::Revoked {
        return (StatusCode::NOT_FOUND, "no_service").into_response();
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(message) if message["text"].as_str().is_some_and(|t| !t.is_empty()) => {
            lock(&shared.posts).push(message);
            (StatusCode::OK, "ok").into_response()
        }
        _ => (StatusCode::BAD_REQUEST, "invalid_payload").into_response(),
    }
}

struct ReceiverShared {
    keys: Vec<Vec<u8>>,
    answer: Mutex<Option<StatusCode>>,
    events: Mutex<Vec<(String, Value)>>,
    stop: Stop,
}

/// A Standard Webhooks receiver at `/hooks` that verifies each delivery as the spec says:
/// `webhook-id`, `webhook-timestamp` (within 5 minutes) and `webhook-signature` (`v1,<base64>`
/// entries, any of which may match). A bad or missing signature answers 401.
pub struct Receiver {
    server: StandInServer,
    shared: Arc<ReceiverShared>,
}

/// Spec: timestamps further than this from now are refused.
const TOLERANCE_SECS: u64 = 300;

impl Receiver {
    /// Verifies with the `whsec_…` secret `secret`.
    pub async fn start(secret: &str) -> Self {
        let key =
            STANDARD.decode(secret.strip_prefix("whsec_").expect("a whsec_ secret")).expect("base64 after whsec_");
        let shared = Arc::new(ReceiverShared {
            keys: vec![key],
            answer: Mutex::default(),
            events: Mutex::default(),
            stop: Stop::default(),
        });
        let router = Router::new().route("/hooks", post(receive)).with_state(shared.clone());
        let server = StandInServer::start("webhook receiver", router, shared.stop.clone()).await;
        Receiver { server, shared }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hooks", self.server.addr())
    }

    /// Answers `status` to every verified delivery instead of 204 (e.g. 410: disable me).
    pub fn answer_with(&self, status: StatusCode) {
        *lock(&self.shared.answer) = Some(status);
    }

    /// The verified deliveries: their `webhook-id` and body.
    pub fn events(&self) -> Vec<(String, Value)> {
        lock(&self.shared.events).clone()
    }
}

async fn receive(State(shared): State<Arc<ReceiverShared>>, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let (id, timestamp, signatures) = (header("webhook-id"), header("webhook-timestamp"), header("webhook-signature"));
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let fresh = timestamp.parse::<u64>().is_ok_and(|t| t.abs_diff(now) <= TOLERANCE_SECS);
    let signed = format!("{id}.{timestamp}.{}", String::from_utf8_lossy(&body));
    let expected: Vec<String> = shared
        .keys
        .iter()
        .map(|key| {
            let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
            mac.update(signed.as_bytes());
            STANDARD.encode(mac.finalize().into_bytes())
        })
        .collect();
    let valid = signatures
        .split(' ')
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .any(|signature| expected.iter().any(|e| e == signature));
    if id.is_empty() || !fresh || !valid {
        return (StatusCode::UNAUTHORIZED, "invalid signature").into_response();
    }
    lock(&shared.events).push((id, serde_json::from_slice(&body).unwrap_or(Value::Null)));
    lock(&shared.answer).unwrap_or(StatusCode::NO_CONTENT).into_response()
}
