//! A local stand-in for the Customer.io App API, for black-box tests of the real client.
//!
//! It serves the endpoints mavera-relay reads, as documented (see the client's
//! `shared::customerio` docs for sources): campaigns, version-2 campaign metrics (400 without
//! `version`), customer attributes by `id_type`, lookup by email, and segment membership paged
//! with `start`/`limit`/`next`. Like the real API it refuses anything past 10 requests in a
//! sliding second with 429 "Your request is over the 10-per-second limit.", and checks the
//! bearer key. Every request is recorded with its arrival time, and tests can queue extra
//! replies (429 with or without `Retry-After`, 5xx, slow answers) per path prefix.
//!
//! Binds 127.0.0.1 on a free port; stops when dropped or on [`CioStandIn::shutdown`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use crate::standin::{RequestLog, Script, StandInServer, Stop, lock};

/// The App API key the stand-in accepts unless told otherwise.
pub const APP_KEY: &str = "cio-standin-app-key";
/// The body of Customer.io's 429.
pub const RATE_LIMIT_MESSAGE: &str = "Your request is over the 10-per-second limit.";
/// Requests allowed in any sliding window of [`RATE_WINDOW`].
pub const RATE_LIMIT: usize = 10;
pub const RATE_WINDOW: Duration = Duration::from_secs(1);

const DEFAULT_LIMIT: usize = 1000;
const MAX_LIMIT: usize = 30_000;

/// One request as it arrived: path and query exactly as sent (still percent-encoded).
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub arrived: Instant,
    /// Refused by the 10-per-second window.
    pub throttled: bool,
    /// The status answered; `None` if the client hung up first.
    pub status: Option<u16>,
}

impl RecordedRequest {
    /// A query parameter, decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        let query = self.query.as_deref()?;
        form_pairs(query).into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }
}

/// An extra reply queued for the next request under a path prefix.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Answer this instead of the real thing.
    Status { status: u16, retry_after: Option<String>, body: String },
    /// Wait this long, then answer as usual.
    Slow(Duration),
}

impl Reply {
    /// 429 with Customer.io's text and no `Retry-After` (the documented case).
    pub fn rate_limited() -> Self {
        Reply::Status { status: 429, retry_after: None, body: RATE_LIMIT_MESSAGE.to_owned() }
    }

    /// 429 with a `Retry-After` value: seconds (`"1"`) or an HTTP date.
    pub fn rate_limited_retry_after(value: impl Into<String>) -> Self {
        Reply::Status { status: 429, retry_after: Some(value.into()), body: RATE_LIMIT_MESSAGE.to_owned() }
    }

    /// Any status with an App API error body, e.g. 500 or 503.
    pub fn status(status: u16) -> Self {
        let body = json!({"errors": [{"detail": "stand-in scripted failure", "status": status}]}).to_string();
        Reply::Status { status, retry_after: None, body }
    }

    pub fn slow(delay: Duration) -> Self {
        Reply::Slow(delay)
    }
}

/// A campaign as `GET /v1/campaigns` lists it.
#[derive(Debug, Clone)]
pub struct CampaignSeed {
    pub id: u64,
    pub name: String,
    pub active: bool,
    pub state: String,
    pub tags: Vec<String>,
}

impl CampaignSeed {
    /// An active, running campaign.
    pub fn new(id: u64, name: &str) -> Self {
        CampaignSeed { id, name: name.to_owned(), active: true, state: "running".to_owned(), tags: vec![] }
    }

    pub fn inactive(mut self, state: &str) -> Self {
        self.active = false;
        self.state = state.to_owned();
        self
    }

    pub fn tags(mut self, tags: &[&str]) -> Self {
        self.tags = tags.iter().map(|t| (*t).to_owned()).collect();
        self
    }

    /// The documented shape, with the extra fields a client must ignore.
    fn to_json(&self) -> Value {
        json!({
            "id": self.id, "deduplicate_id": format!("{}:1492548073", self.id), "name": self.name,
            "description": "", "created": 1552341937, "updated": 1552341937, "active": self.active,
            "state": self.state, "actions": [{"type": "email", "id": self.id * 100}],
            "first_started": 1552341937, "tags": self.tags, "trigger_segment_ids": [],
            "filter_segment_ids": [], "audience": {"type": 0},
        })
    }
}

/// A person in the workspace.
#[derive(Debug, Clone, Default)]
pub struct Person {
    pub cio_id: String,
    pub id: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub attributes: Map<String, Value>,
}

impl Person {
    pub fn new(cio_id: &str) -> Self {
        Person { cio_id: cio_id.to_owned(), ..Person::default() }
    }

    pub fn id(mut self, id: &str) -> Self {
        self.id = Some(id.to_owned());
        self
    }

    pub fn email(mut self, email: &str) -> Self {
        self.email = Some(email.to_owned());
        self
    }

    pub fn phone(mut self, phone: &str) -> Self {
        self.phone = Some(phone.to_owned());
        self
    }

    /// Customer.io's example stores even numbers and timestamps as strings; tests choose.
    pub fn attribute(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.attributes.insert(name.to_owned(), value.into());
        self
    }
}

/// How `GET /v1/customers/{id}/attributes?id_type=cio_id` wants the cio_id written: the spec is
/// silent (other endpoints' paths take `cio_<id>`, membership lists it bare).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CioIdPath {
    /// `a3000001` only.
    #[default]
    Bare,
    /// `cio_a3000001` only; the bare form is a 404.
    Prefixed,
}

#[derive(Default)]
struct Workspace {
    campaigns: BTreeMap<u64, CampaignSeed>,
    metrics: BTreeMap<u64, BTreeMap<String, Vec<u64>>>,
    people: Vec<Person>,
    segments: BTreeMap<u64, Vec<Person>>,
    email_disabled: bool,
    phone_disabled: bool,
    empty_next_on_last_page: bool,
    cio_id_path: CioIdPath,
}

struct Shared {
    app_key: String,
    workspace: Mutex<Workspace>,
    /// Arrivals inside the current window, oldest first.
    window: Mutex<VecDeque<Instant>>,
    replies: Script<Reply>,
    log: RequestLog<RecordedRequest>,
    stop: Stop,
}

pub struct CioStandIn {
    server: StandInServer,
    shared: Arc<Shared>,
}

impl CioStandIn {
    /// Starts on 127.0.0.1 and a free port, accepting [`APP_KEY`].
    pub async fn start() -> Self {
        Self::start_with_key(APP_KEY).await
    }

    pub async fn start_with_key(app_key: &str) -> Self {
        let shared = Arc::new(Shared {
            app_key: app_key.to_owned(),
            workspace: Mutex::new(Workspace::default()),
            window: Mutex::new(VecDeque::new()),
            replies: Script::default(),
            log: RequestLog::default(),
            stop: Stop::default(),
        });
        let app = Router::new()
            .route("/v1/campaigns", get(list_campaigns))
            .route("/v1/campaigns/{campaign_id}/metrics", get(campaign_metrics))
            .route("/v1/customers", get(customers_by_email))
            .route("/v1/customers/{customer_id}/attributes", get(customer_attributes))
            .route("/v1/segments/{segment_id}/membership", get(segment_membership))
            .fallback(|| async { api_error(StatusCode::NOT_FOUND, "resource not found") })
            .layer(middleware::from_fn_with_state(shared.clone(), gatekeeper))
            .with_state(shared.clone());
        let server = StandInServer::start("Customer.io", app, shared.stop.clone()).await;
        CioStandIn { server, shared }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://127.0.0.1:<port>`; the client appends `/v1/...`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr())
    }

    pub fn app_key(&self) -> &str {
        &self.shared.app_key
    }

    pub fn add_campaign(&self, campaign: CampaignSeed) {
        lock(&self.shared.workspace).campaigns.insert(campaign.id, campaign);
    }

    /// A campaign's counts per period, e.g. `[("sent", &[10, 20]), ("delivered", &[9, 20])]`.
    pub fn set_campaign_metrics(&self, campaign_id: u64, series: &[(&str, &[u64])]) {
        let series = series.iter().map(|(name, counts)| ((*name).to_owned(), counts.to_vec())).collect();
        lock(&self.shared.workspace).metrics.insert(campaign_id, series);
    }

    pub fn add_person(&self, person: Person) {
        lock(&self.shared.workspace).people.push(person);
    }

    /// A segment and its members, in membership order.
    pub fn add_segment(&self, segment_id: u64, members: Vec<Person>) {
        lock(&self.shared.workspace).segments.insert(segment_id, members);
    }

    /// Whether `id_type=email` works (it answers 400 when the workspace lacks the identifier).
    pub fn set_email_identifier(&self, enabled: bool) {
        lock(&self.shared.workspace).email_disabled = !enabled;
    }

    pub fn set_phone_identifier(&self, enabled: bool) {
        lock(&self.shared.workspace).phone_disabled = !enabled;
    }

    /// How the attributes endpoint wants a `cio_id` spelled.
    pub fn set_cio_id_path(&self, form: CioIdPath) {
        lock(&self.shared.workspace).cio_id_path = form;
    }

    /// End the last membership page with `"next": ""` instead of leaving `next` out.
    pub fn end_pages_with_empty_next(&self, empty: bool) {
        lock(&self.shared.workspace).empty_next_on_last_page = empty;
    }

    /// Queues `reply` for the next request whose path starts with `path_prefix`. Each prefix
    /// has its own queue, served first in, first out; the longest matching prefix wins.
    pub fn push_reply(&self, path_prefix: &str, reply: Reply) {
        self.shared.replies.push(path_prefix, [reply]);
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.log.all()
    }

    /// Requests whose path starts with `path_prefix`.
    pub fn requests_to(&self, path_prefix: &str) -> Vec<RecordedRequest> {
        self.shared.log.matching(|r| r.path.starts_with(path_prefix))
    }

    /// How many requests the 10-per-second window refused.
    pub fn throttled(&self) -> usize {
        self.shared.log.count(|r| r.throttled)
    }

    /// The most requests that arrived within any span shorter than `window`.
    pub fn max_arrivals_within(&self, window: Duration) -> usize {
        let mut arrivals: Vec<Instant> = self.requests().iter().map(|r| r.arrived).collect();
        arrivals.sort();
        let mut most = 0;
        let mut first = 0;
        for last in 0..arrivals.len() {
            while arrivals[last] - arrivals[first] >= window {
                first += 1;
            }
            most = most.max(last - first + 1);
        }
        most
    }

    /// Stops accepting requests and waits (at most 2 s) for the server task to end; slow
    /// scripted answers end at once with a 503.
    pub async fn shutdown(self) {
        self.server.shutdown(Duration::from_secs(2)).await;
    }
}

/// Records the request, then applies the rate window, the key and any queued reply.
async fn gatekeeper(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let (arrived, throttled) = {
        let mut window = lock(&shared.window);
        let now = Instant::now();
        while window.front().is_some_and(|&oldest| now - oldest >= RATE_WINDOW) {
            window.pop_front();
        }
        // Every arrival counts, refused or not: the limit is on requests sent.
        window.push_back(now);
        (now, window.len() > RATE_LIMIT)
    };
    let path = request.uri().path().to_owned();
    let index = shared.log.push(RecordedRequest {
        method: request.method().to_string(),
        path: path.clone(),
        query: request.uri().query().map(str::to_owned),
        arrived,
        throttled,
        status: None,
    });

    let expected = format!("Bearer {}", shared.app_key);
    let authorized = request.headers().get(header::AUTHORIZATION).is_some_and(|v| v.as_bytes() == expected.as_bytes());
    let response = if throttled {
        (StatusCode::TOO_MANY_REQUESTS, RATE_LIMIT_MESSAGE).into_response()
    } else if !authorized {
        api_error(StatusCode::UNAUTHORIZED, "unauthorized")
    } else {
        match shared.replies.next(&path) {
            Some(Reply::Status { status, retry_after, body }) => scripted(status, retry_after, body),
            Some(Reply::Slow(delay)) if !shared.stop.pause(delay).await => {
                api_error(StatusCode::SERVICE_UNAVAILABLE, "the stand-in is shutting down")
            }
            Some(Reply::Slow(_)) | None => next.run(request).await,
        }
    };
    shared.log.update(index, |entry| entry.status = Some(response.status().as_u16()));
    response
}

fn scripted(status: u16, retry_after: Option<String>, body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, body).into_response();
    if let Some(value) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// The App API's error body: `{"errors":[{"detail":…,"status":…}]}`.
fn api_error(status: StatusCode, detail: &str) -> Response {
    (status, Json(json!({"errors": [{"detail": detail, "status": status.as_u16()}]}))).into_response()
}

async fn list_campaigns(State(shared): State<Arc<Shared>>) -> Response {
    let campaigns: Vec<Value> = lock(&shared.workspace).campaigns.values().map(CampaignSeed::to_json).collect();
    Json(json!({ "campaigns": campaigns })).into_response()
}

async fn campaign_metrics(
    State(shared): State<Arc<Shared>>,
    Path(campaign_id): Path<u64>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    match query.get("version").map(String::as_str) {
        None => return api_error(StatusCode::BAD_REQUEST, "version is required"),
        Some("1" | "2") => {}
        Some(_) => return api_error(StatusCode::BAD_REQUEST, "version must be 1 or 2"),
    }
    if query.get("version").is_some_and(|v| v == "2") {
        const RES: [&str; 8] = ["hours", "hourly", "days", "daily", "weeks", "weekly", "months", "monthly"];
        if query.get("res").is_some_and(|r| !RES.contains(&r.as_str())) {
            return api_error(StatusCode::BAD_REQUEST, "res must be hours, days, weeks or months");
        }
        let stamp = |name: &str| query.get(name).map(|v| v.parse::<u64>());
        match (stamp("start"), stamp("end")) {
            (Some(Err(_)), _) | (_, Some(Err(_))) => {
                return api_error(StatusCode::BAD_REQUEST, "start and end must be unix timestamps");
            }
            (Some(Ok(start)), Some(Ok(end))) if end <= start => {
                return api_error(StatusCode::BAD_REQUEST, "end must be after start");
            }
            _ => {}
        }
    }
    let workspace = lock(&shared.workspace);
    if !workspace.campaigns.contains_key(&campaign_id) {
        return api_error(StatusCode::NOT_FOUND, "The campaign and/or action do not exist.");
    }
    let series = workspace.metrics.get(&campaign_id).cloned().unwrap_or_default();
    Json(json!({ "metric": { "series": series } })).into_response()
}

async fn customer_attributes(
    State(shared): State<Arc<Shared>>,
    Path(customer_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let workspace = lock(&shared.workspace);
    // "If you don't provide this parameter, we assume that the customer_id … is a person's id."
    let id_type = query.get("id_type").map(String::as_str).unwrap_or("id");
    match id_type {
        "id" | "cio_id" => {}
        "email" if workspace.email_disabled => {
            return api_error(StatusCode::BAD_REQUEST, "email is not an identifier in this workspace");
        }
        "phone" if workspace.phone_disabled => {
            return api_error(StatusCode::BAD_REQUEST, "phone is not an identifier in this workspace");
        }
        "email" | "phone" => {}
        _ => return api_error(StatusCode::BAD_REQUEST, "id_type must be id, email, phone or cio_id"),
    }
    let wanted = match (id_type, workspace.cio_id_path) {
        ("cio_id", CioIdPath::Prefixed) => customer_id.strip_prefix("cio_").map(str::to_owned),
        _ => Some(customer_id.clone()),
    };
    let found = wanted.and_then(|id| workspace.people.iter().find(|p| identifier(p, id_type) == Some(id.as_str())));
    let Some(person) = found else {
        return api_error(StatusCode::NOT_FOUND, "The customer_id does not exist.");
    };
    // As in the documented example: identifiers appear among the attributes, as strings.
    let mut attributes = person.attributes.clone();
    attributes.insert("cio_id".into(), json!(person.cio_id));
    if let Some(email) = &person.email {
        attributes.insert("email".into(), json!(email));
    }
    if let Some(id) = &person.id {
        attributes.insert("id".into(), json!(id));
    }
    Json(json!({"customer": {"id": person.id, "attributes": attributes, "timestamps": {}, "unsubscribed": false}}))
        .into_response()
}

fn identifier<'a>(person: &'a Person, id_type: &str) -> Option<&'a str> {
    match id_type {
        "id" => person.id.as_deref(),
        "email" => person.email.as_deref(),
        "phone" => person.phone.as_deref(),
        "cio_id" => Some(&person.cio_id),
        _ => None,
    }
}

async fn customers_by_email(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(email) = query.get("email").filter(|e| !e.is_empty()) else {
        return api_error(StatusCode::BAD_REQUEST, "email is required");
    };
    let workspace = lock(&shared.workspace);
    let results: Vec<Value> = workspace
        .people
        .iter()
        .filter(|p| p.email.as_deref() == Some(email.as_str()))
        .map(|p| {
            // The documented example sends a numeric id as a number.
            let id = match p.id.as_deref().map(|id| (id, id.parse::<u64>())) {
                Some((_, Ok(n))) => json!(n),
                Some((id, Err(_))) => json!(id),
                None => Value::Null,
            };
            json!({"email": p.email, "id": id, "cio_id": p.cio_id})
        })
        .collect();
    Json(json!({ "results": results })).into_response()
}

async fn segment_membership(
    State(shared): State<Arc<Shared>>,
    Path(segment_id): Path<u64>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let limit = match query.get("limit").map(|l| l.parse::<usize>()) {
        None => DEFAULT_LIMIT,
        Some(Ok(l)) if (1..=MAX_LIMIT).contains(&l) => l,
        Some(_) => return api_error(StatusCode::BAD_REQUEST, "limit must be between 1 and 30000"),
    };
    let offset = match query.get("start").filter(|s| !s.is_empty()).map(|s| parse_token(s)) {
        None => 0,
        Some(Some(offset)) => offset,
        Some(None) => return api_error(StatusCode::BAD_REQUEST, "start is not a token this API issued"),
    };
    let workspace = lock(&shared.workspace);
    let Some(members) = workspace.segments.get(&segment_id) else {
        return api_error(StatusCode::NOT_FOUND, "The `segment_id` does not exist.");
    };
    let page = members.iter().skip(offset).take(limit);
    let identifiers: Vec<Value> =
        page.clone().map(|p| json!({"email": p.email, "id": p.id, "cio_id": p.cio_id})).collect();
    let ids: Vec<Value> = page.map(|p| json!(p.id.clone().unwrap_or_default())).collect();
    let end = offset.saturating_add(limit);
    let mut body = json!({"segment_id": segment_id, "ids": ids, "identifiers": identifiers});
    if end < members.len() {
        body["next"] = json!(token(end));
    } else if workspace.empty_next_on_last_page {
        body["next"] = json!("");
    }
    Json(body).into_response()
}

/// Opaque-looking page tokens: `pg` and the offset in hex.
fn token(offset: usize) -> String {
    format!("pg{offset:x}")
}

fn parse_token(token: &str) -> Option<usize> {
    usize::from_str_radix(token.strip_prefix("pg")?, 16).ok()
}

/// Decodes `application/x-www-form-urlencoded` pairs (`+` is a space, `%2B` a plus).
fn form_pairs(query: &str) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://stand-in/?{query}"))
        .map(|url| url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
        .unwrap_or_default()
}
