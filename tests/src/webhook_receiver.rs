//! A receiver of Standard Webhooks (standardwebhooks.com), as a customer's endpoint would be:
//! it checks the `webhook-id`, `webhook-timestamp` and `webhook-signature` headers against its
//! own `whsec_` secret, written here from the spec (not with the relay's code): the
//! signature list must hold a `v1` HMAC-SHA256 of `{id}.{timestamp}.{body}` that matches, and
//! the timestamp must be within five minutes. A bad or missing signature answers 401; a good
//! one 204, and the message is kept once per `webhook-id` (a repeat is acknowledged and
//! dropped, as the spec asks of receivers). Scripted replies ([`Reply`]): 410 Gone, 429 with
//! `Retry-After`, 5xx, redirects, slow answers.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::reply::{Reply, respond};
use crate::standin::{RequestLog, Script, StandInServer, Stop, lock};

pub const PATH: &str = "/hooks/mavera";
/// The receiver's secret unless told otherwise.
pub const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const TOLERANCE: Duration = Duration::from_secs(300);

/// A request as it arrived, and whether its signature held.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: Option<String>,
    pub timestamp: Option<String>,
    pub signature: Option<String>,
    pub body: String,
    pub verified: bool,
    pub status: u16,
    /// Kept as a new message (verified, and not a repeat of a `webhook-id`).
    pub kept: bool,
}

impl Delivery {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

#[derive(Default)]
struct Shared {
    log: RequestLog<Delivery>,
    script: Script<Reply>,
    secret: Mutex<Vec<u8>>,
    seen: Mutex<BTreeSet<String>>,
    stop: Stop,
}

pub struct WebhookReceiver {
    server: StandInServer,
    shared: Arc<Shared>,
}

impl WebhookReceiver {
    /// A receiver verifying with `secret` (`whsec_…`).
    pub async fn start_with(secret: &str) -> Self {
        let shared = Arc::new(Shared::default());
        *lock(&shared.secret) = decode(secret);
        let router = Router::new().route(PATH, post(receive)).with_state(shared.clone());
        let server = StandInServer::start("webhook receiver", router, shared.stop.clone()).await;
        WebhookReceiver { server, shared }
    }

    pub async fn start() -> Self {
        Self::start_with(SECRET).await
    }

    pub fn url(&self) -> String {
        format!("http://{}{PATH}", self.server.addr())
    }

    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.shared.script.push(PATH, replies);
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.log.all()
    }

    /// The messages the endpoint acted on, once per `webhook-id`.
    pub fn messages(&self) -> Vec<Delivery> {
        self.shared.log.matching(|d| d.kept)
    }
}

fn decode(secret: &str) -> Vec<u8> {
    STANDARD.decode(secret.trim_start_matches("whsec_")).expect("a base64 secret")
}

/// The spec's check, from the receiving side.
fn verify(key: &[u8], id: &str, timestamp: &str, signatures: &str, body: &[u8]) -> bool {
    let Ok(ts) = timestamp.parse::<u64>() else { return false };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    if now.abs_diff(ts) > TOLERANCE.as_secs() {
        return false;
    }
    // Any `v1` signature in the list may match (the sender signs with each secret it holds).
    signatures.split(' ').filter_map(|s| s.strip_prefix("v1,")).filter_map(|s| STANDARD.decode(s).ok()).any(|sig| {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(body);
        mac.verify_slice(&sig).is_ok()
    })
}

async fn receive(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 4 << 20).await.unwrap_or_default();
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (id, timestamp, signature) = (header("webhook-id"), header("webhook-timestamp"), header("webhook-signature"));
    let verified = match (&id, &timestamp, &signature) {
        (Some(id), Some(ts), Some(sig)) => verify(&lock(&shared.secret), id, ts, sig, &bytes),
        _ => false,
    };
    let index = shared.log.push(Delivery {
        id: id.clone(),
        timestamp,
        signature,
        body: String::from_utf8_lossy(&bytes).into_owned(),
        verified,
        status: 0,
        kept: false,
    });
    let done = |status: u16, headers: &[(&'static str, String)], answer: &str, kept: bool| {
        shared.log.update(index, |d| {
            d.status = status;
            d.kept = kept;
        });
        respond(status, headers, answer)
    };
    match shared.script.next(PATH) {
        Some(Reply::Status { status, headers, body }) => return done(status, &headers, &body, false),
        Some(Reply::Slow(wait)) => {
            shared.stop.pause(wait).await;
        }
        None => {}
    }
    if !verified {
        return done(401, &[], "bad signature", false);
    }
    let new = lock(&shared.seen).insert(id.unwrap_or_default());
    done(204, &[], "", new)
}
