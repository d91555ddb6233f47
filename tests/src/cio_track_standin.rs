//! A local stand-in for Customer.io's Track API, behaving as the Track API reference says:
//!
//! - HTTP Basic auth with the Site ID and the Track API key; anything else answers 401.
//! - `PUT /api/v1/customers/{identifier}`: a flat JSON object of attributes; a value that is
//!   not a string, number or boolean, a value over 1000 bytes, a name over 150 bytes or more
//!   than 300 attributes answer 400. `_update: true` updates a person who exists and never
//!   creates one; without it the person is created. `_timestamp` orders updates: an older one
//!   than the last applied is ignored. A `cio_<id>` identifier names a person by Customer.io id.
//! - `POST /api/v1/customers/{identifier}/events`: `{"name", "data"}`; a name over 100 bytes
//!   or data over 100,000 bytes answer 400. Each event is kept (there is no deduplication).
//! - `GET /api/v1/accounts/region`: the account's region.
//! - Regions: each stand-in is one region's host for one account. A US account's requests to
//!   the EU host fail (401); an EU account's requests to the US host are redirected (307).
//! - Scripted replies ([`Reply`]): 429 with `Retry-After`, 5xx, slow answers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use axum::routing::{get, post, put};
use base64::Engine;
use serde_json::{Map, Value, json};

use crate::reply::{Reply, respond};
use crate::standin::{RequestLog, Script, StandInServer, Stop, lock};

pub const SITE_ID: &str = "standinsite1";
pub const TRACK_KEY: &str = "standin-track-key";
pub const MAX_VALUE_BYTES: usize = 1000;
pub const MAX_NAME_BYTES: usize = 150;
pub const MAX_ATTRIBUTES: usize = 300;
pub const MAX_EVENT_NAME_BYTES: usize = 100;
pub const MAX_EVENT_DATA_BYTES: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Region {
    Us,
    Eu,
}

/// One request as it arrived (identifier decoded), and its answer.
#[derive(Debug, Clone)]
pub struct TrackRequest {
    pub method: String,
    pub path: String,
    pub identifier: Option<String>,
    pub body: Option<Value>,
    pub status: u16,
    pub answer: String,
}

/// A person's profile and the events they received.
#[derive(Debug, Clone, Default)]
pub struct Person {
    pub attributes: Map<String, Value>,
    pub last_timestamp: u64,
    pub events: Vec<Value>,
}

#[derive(Default)]
struct Shared {
    log: RequestLog<TrackRequest>,
    script: Script<Reply>,
    people: Mutex<BTreeMap<String, Person>>,
    /// Events for identifiers with no person.
    orphan_events: Mutex<Vec<(String, Value)>>,
    account: Mutex<Option<(Region, Region)>>,
    stop: Stop,
}

pub struct CioTrackStandIn {
    server: StandInServer,
    shared: Arc<Shared>,
}

impl CioTrackStandIn {
    /// The `host` region's Track API, for an account in `account`.
    pub async fn start_for(account: Region, host: Region) -> Self {
        let shared = Arc::new(Shared::default());
        *lock(&shared.account) = Some((account, host));
        let router = Router::new()
            .route("/api/v1/customers/{identifier}", put(update))
            .route("/api/v1/customers/{identifier}/events", post(event))
            .route("/api/v1/accounts/region", get(region))
            .with_state(shared.clone());
        let server = StandInServer::start("Customer.io Track", router, shared.stop.clone()).await;
        CioTrackStandIn { server, shared }
    }

    /// The US host of a US account.
    pub async fn start() -> Self {
        Self::start_for(Region::Us, Region::Us).await
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// A person who exists in the workspace.
    pub fn add_person(&self, id: &str) {
        lock(&self.shared.people).insert(id.to_owned(), Person::default());
    }

    pub fn person(&self, id: &str) -> Option<Person> {
        lock(&self.shared.people).get(id).cloned()
    }

    pub fn people(&self) -> usize {
        lock(&self.shared.people).len()
    }

    pub fn orphan_events(&self) -> Vec<(String, Value)> {
        lock(&self.shared.orphan_events).clone()
    }

    pub fn script(&self, prefix: &str, replies: impl IntoIterator<Item = Reply>) {
        self.shared.script.push(prefix, replies);
    }

    pub fn requests(&self) -> Vec<TrackRequest> {
        self.shared.log.all()
    }
}

fn authorized(headers: &HeaderMap) -> bool {
    let expected = base64::engine::general_purpose::STANDARD.encode(format!("{SITE_ID}:{TRACK_KEY}"));
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Basic {expected}"))
}

fn error(status: u16, message: &str) -> (u16, String) {
    (status, json!({"meta": {"error": message}}).to_string())
}

/// What every request goes through first: the log, the script, auth, the region.
async fn admit(
    shared: &Shared,
    method: &Method,
    path: &str,
    identifier: Option<&str>,
    headers: &HeaderMap,
    body: Option<&Value>,
) -> (usize, Option<Response>) {
    let index = shared.log.push(TrackRequest {
        method: method.to_string(),
        path: path.to_owned(),
        identifier: identifier.map(str::to_owned),
        body: body.cloned(),
        status: 0,
        answer: String::new(),
    });
    let done = |status: u16, headers: &[(&'static str, String)], answer: String| {
        shared.log.update(index, |r| {
            r.status = status;
            r.answer = answer.clone();
        });
        Some(respond(status, headers, &answer))
    };
    match shared.script.next(path) {
        Some(Reply::Status { status, headers, body }) => return (index, done(status, &headers, body)),
        Some(Reply::Slow(wait)) => {
            shared.stop.pause(wait).await;
        }
        None => {}
    }
    let (account, host) = lock(&shared.account).unwrap_or((Region::Us, Region::Us));
    match (account, host) {
        (Region::Us, Region::Eu) => {
            let (s, b) = error(401, "Unauthorized request");
            return (index, done(s, &[], b));
        }
        // EU traffic to the US host is redirected; the region check answers on either host.
        (Region::Eu, Region::Us) if path != "/api/v1/accounts/region" => {
            let to = format!("https://track-eu.customer.io{path}");
            return (index, done(307, &[("location", to)], String::new()));
        }
        _ => {}
    }
    if !authorized(headers) {
        let (s, b) = error(401, "Unauthorized request");
        return (index, done(s, &[], b));
    }
    (index, None)
}

fn finish(shared: &Shared, index: usize, status: u16, answer: String) -> Response {
    shared.log.update(index, |r| {
        r.status = status;
        r.answer = answer.clone();
    });
    respond(status, &[], &answer)
}

async fn body_of(request: Request) -> (Method, HeaderMap, Option<Value>) {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
    (parts.method, parts.headers, serde_json::from_slice(&bytes).ok())
}

async fn update(State(shared): State<Arc<Shared>>, Path(identifier): Path<String>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let (method, headers, body) = body_of(request).await;
    let (index, early) = admit(&shared, &method, &path, Some(&identifier), &headers, body.as_ref()).await;
    if let Some(response) = early {
        return response;
    }
    let Some(Value::Object(attributes)) = body else {
        let (s, b) = error(400, "the body must be a JSON object of attributes");
        return finish(&shared, index, s, b);
    };
    if attributes.len() > MAX_ATTRIBUTES {
        let (s, b) = error(400, "too many attributes");
        return finish(&shared, index, s, b);
    }
    for (name, value) in &attributes {
        let problem = if name.len() > MAX_NAME_BYTES {
            Some("attribute name too long")
        } else {
            match value {
                Value::String(s) if s.len() > MAX_VALUE_BYTES => Some("attribute value too long (1000 bytes at most)"),
                Value::String(_) | Value::Number(_) | Value::Bool(_) | Value::Null => None,
                _ => Some("attribute values must be strings, numbers or booleans"),
            }
        };
        if let Some(problem) = problem {
            let (s, b) = error(400, &format!("{name}: {problem}"));
            return finish(&shared, index, s, b);
        }
    }
    let update_only = attributes.get("_update") == Some(&Value::Bool(true));
    let timestamp = attributes.get("_timestamp").and_then(Value::as_u64).unwrap_or(0);
    let mut people = lock(&shared.people);
    let person = match people.get_mut(&identifier) {
        Some(p) => p,
        // `_update: true` never creates a person: the call succeeds and changes nothing.
        None if update_only => return finish(&shared, index, 200, "{}".into()),
        None => people.entry(identifier.clone()).or_default(),
    };
    if timestamp >= person.last_timestamp {
        person.last_timestamp = timestamp;
        for (name, value) in attributes {
            if !name.starts_with('_') {
                person.attributes.insert(name, value);
            }
        }
    }
    drop(people);
    finish(&shared, index, 200, "{}".into())
}

async fn event(State(shared): State<Arc<Shared>>, Path(identifier): Path<String>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let (method, headers, body) = body_of(request).await;
    let (index, early) = admit(&shared, &method, &path, Some(&identifier), &headers, body.as_ref()).await;
    if let Some(response) = early {
        return response;
    }
    let Some(body @ Value::Object(_)) = body else {
        let (s, b) = error(400, "the body must be a JSON object");
        return finish(&shared, index, s, b);
    };
    let name = body["name"].as_str().unwrap_or("");
    if name.is_empty() || name.len() > MAX_EVENT_NAME_BYTES {
        let (s, b) = error(400, "event name missing or over 100 bytes");
        return finish(&shared, index, s, b);
    }
    if body.get("data").is_some_and(|d| d.to_string().len() > MAX_EVENT_DATA_BYTES) {
        let (s, b) = error(400, "event data over 100,000 bytes");
        return finish(&shared, index, s, b);
    }
    match lock(&shared.people).get_mut(&identifier) {
        Some(person) => person.events.push(body),
        None => lock(&shared.orphan_events).push((identifier, body)),
    }
    finish(&shared, index, 200, "{}".into())
}

async fn region(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let (method, headers, _) = body_of(request).await;
    let (index, early) = admit(&shared, &method, &path, None, &headers, None).await;
    if let Some(response) = early {
        return response;
    }
    let (account, _) = lock(&shared.account).unwrap_or((Region::Us, Region::Us));
    let body = match account {
        Region::Us => json!({"url": "https://track.customer.io", "region": "us", "environment_id": 1}),
        Region::Eu => json!({"url": "https://track-eu.customer.io", "region": "eu", "environment_id": 1}),
    };
    finish(&shared, index, 200, body.to_string())
}
