//! A local stand-in for the Mavera API (`reference/mavera-api.md`), for black-box tests and
//! benchmarks of the real client.
//!
//! It serves `/api/v1` on a loopback port: `POST /personas`, `POST /mave/chat`,
//! `POST /generations` and `GET /personas`. Like Mavera it checks the bearer key (401),
//! validates bodies (400 `missing_field`/`invalid_field` with `param`), refuses a persona
//! name it already created (422), answers with the documented bodies and sends
//! `X-RateLimit-*` headers on every answer. Tests script what happens next per path
//! ([`Reply`]), set latencies, and read back every request and the peak concurrency.
//!
//! Where Mavera's documentation leaves a choice open, the stand-in can be told which way to go,
//! so that tests cover each reading: [`MaveraStandIn::strict_personas`] (the reference's
//! persona fields only, `pipeline_type` and `type` required), [`MaveraStandIn::set_duplicate_error`]
//! (the undocumented body of the duplicate-name 422), [`MaveraStandIn::ignore_name_filter`]
//! (whether `GET /personas?name=` filters), [`MaveraStandIn::require_workspace`] (the workspaces
//! page calls `workspace_id` required for generations; the reference calls it optional).
//!
//! ```no_run
//! # async fn demo() {
//! use relay_tests::mavera_standin::{MaveraStandIn, Reply};
//! let mavera = MaveraStandIn::start().await;
//! mavera.script("/mave/chat", [Reply::RateLimited { retry_after_secs: Some(1) }]);
//! mavera.set_path_latency("/mave/chat", std::time::Duration::from_secs(5));
//! // point the client at mavera.base_url() with mavera.api_key() ...
//! assert_eq!(mavera.count("/mave/chat"), 0);
//! # }
//! ```

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::time::Instant;

use crate::standin::{RequestLog, Script, StandInServer, Stop, lock};

/// The key the stand-in accepts. Shaped like a Mavera key, plainly not a real one.
pub const STANDIN_API_KEY: &str = "mvra_live_standin_not_a_real_key_0000";

const PREFIX: &str = "/api/v1";
/// The paths tests can script, relative to `/api/v1`.
pub const PATHS: [&str; 3] = ["/personas", "/mave/chat", "/generations"];
/// Reported in `X-RateLimit-Limit` (Mavera's Enterprise plan); enforced only on request.
const DEFAULT_RATE_LIMIT: u32 = 600;
const RATE_WINDOW_SECS: u64 = 60;

/// What the stand-in does with the next valid request to a path.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// The documented success, after the path's latency.
    Success,
    /// The documented success, after this latency instead.
    Slow(Duration),
    /// 429 `rate_limit_exceeded`, with `Retry-After` when given.
    RateLimited { retry_after_secs: Option<u64> },
    /// 429 without `Retry-After`; `X-RateLimit-Reset` lies this many seconds ahead.
    RateLimitedUntilReset { reset_in_secs: u64 },
    /// A 5xx with Mavera's body (`internal_error`, `service_unavailable`, …).
    ServerError(u16),
    /// 402 `credits_exhausted`.
    CreditsExhausted,
    /// 422: a persona with this name exists (in the shape [`MaveraStandIn::set_duplicate_error`] chose).
    DuplicateName,
    /// 400 `invalid_field`.
    BadRequest,
    /// Any error in the documented shape.
    Error { status: u16, kind: String, code: String, message: String, param: Option<String> },
    /// Never answers: the request stays in flight until the client gives up or the
    /// stand-in shuts down.
    Hang,
    /// A 200 whose body is not the documented object.
    Malformed,
}

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: Method,
    /// Relative to `/api/v1`, e.g. `/mave/chat`.
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    /// `None` when the body was empty or not JSON.
    pub body: Option<Value>,
    pub auth_valid: bool,
    pub arrived: Instant,
}

/// A running stand-in. Stops serving when dropped or on [`MaveraStandIn::shutdown`].
pub struct MaveraStandIn {
    server: StandInServer,
    shared: Arc<Shared>,
}

struct Shared {
    api_key: String,
    state: Mutex<StandInState>,
    requests: RequestLog<RecordedRequest>,
    script: Script<Reply>,
    stop: Stop,
}

#[derive(Default)]
struct StandInState {
    latency: HashMap<String, Duration>,
    default_latency: Duration,
    in_flight: HashMap<String, Gauge>,
    persona_names: HashSet<String>,
    personas: Vec<Value>,
    window: RateWindow,
    enforced_limit: Option<u32>,
    strict_personas: bool,
    duplicate_error: DuplicateError,
    ignore_name_filter: bool,
    require_workspace: bool,
}

/// The body of the duplicate-name 422. Mavera's Shopify page documents the status only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DuplicateError {
    /// `code: "duplicate_name"`, `param: "name"`.
    #[default]
    Coded,
    /// `code: "invalid_field"`, `param: "name"`: names the field, not the reason.
    NameField,
    /// `code: "unprocessable_entity"`, `param: null`: only the message says it.
    MessageOnly,
}

/// The persona fields Mavera's API reference shows: the create example's keys, `description`
/// (in the answer, and updatable by PATCH), and the `details` fields (PATCH updates "any custom
/// persona fields"). Written out here from the reference, independently of the client.
pub const REFERENCE_PERSONA_FIELDS: [&str; 46] = [
    "name",
    "description",
    "pipeline_type",
    "type",
    // the create example
    "role_segment",
    "buying_stage",
    "decision_role",
    "primary_objectives",
    "mcda_weights",
    "goals",
    "pains",
    "triggers",
    "channels",
    "proof_types",
    "alternatives",
    "win_factors",
    "objections",
    // `details`
    "persona_type",
    "primary_use_case",
    "values",
    "proof_preferences",
    "brand_voice_fit",
    "reading_level",
    "tone_guardrails",
    "role_title",
    "seniority",
    "industry",
    "company_size",
    "tech_stack",
    "budget_authority",
    "procurement_constraints",
    "committee_mapping",
    "life_stage",
    "age_band",
    "income_band",
    "household_context",
    "lifestyle_affinities",
    "purchase_cadence",
    "key_differentiators",
    "regulatory_context",
    "is_localized",
    "locale_scope",
    "locale_value",
    "local_channels",
    "local_objections",
    "local_keywords",
];

#[derive(Default, Clone, Copy)]
struct Gauge {
    current: usize,
    peak: usize,
}

#[derive(Default)]
struct RateWindow {
    start: u64,
    count: u32,
}

impl MaveraStandIn {
    /// Binds `127.0.0.1:0` and starts serving.
    pub async fn start() -> Self {
        let shared = Arc::new(Shared {
            api_key: STANDIN_API_KEY.to_owned(),
            state: Mutex::new(StandInState::default()),
            requests: RequestLog::default(),
            script: Script::default(),
            stop: Stop::default(),
        });
        let router = Router::new()
            .route(&format!("{PREFIX}/personas"), get(list_personas).post(create_persona))
            .route(&format!("{PREFIX}/mave/chat"), post(mave_chat))
            .route(&format!("{PREFIX}/generations"), post(generate))
            .fallback(not_found)
            .with_state(shared.clone());
        let server = StandInServer::start("Mavera", router, shared.stop.clone()).await;
        Self { server, shared }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://127.0.0.1:<port>/api/v1`, the client's `base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}{PREFIX}", self.addr())
    }

    pub fn api_key(&self) -> &str {
        &self.shared.api_key
    }

    /// Queues replies for the next valid requests to `path` (`/personas`, `/mave/chat`,
    /// `/generations`); once they are used up, requests succeed.
    pub fn script(&self, path: &str, replies: impl IntoIterator<Item = Reply>) {
        self.shared.script.push(known_path(path), replies);
    }

    /// Scripted replies not yet used on `path`.
    pub fn pending_replies(&self, path: &str) -> usize {
        self.shared.script.pending(known_path(path))
    }

    /// The latency of every successful answer without a per-path latency.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.lock().default_latency = latency;
    }

    /// The latency of successful answers on `path`, e.g. 5 s for `/mave/chat`.
    pub fn set_path_latency(&self, path: &str, latency: Duration) {
        let path = known_path(path);
        self.shared.lock().latency.insert(path.to_owned(), latency);
    }

    /// Refuses persona bodies outside the reference: `pipeline_type` and `type` required (with
    /// their documented values), only [`REFERENCE_PERSONA_FIELDS`], lists of text where the
    /// reference shows lists. Off by default, as Mavera's integration pages send other fields.
    pub fn strict_personas(&self, strict: bool) {
        self.shared.lock().strict_personas = strict;
    }

    /// The shape of the duplicate-name 422.
    pub fn set_duplicate_error(&self, shape: DuplicateError) {
        self.shared.lock().duplicate_error = shape;
    }

    /// `GET /personas` ignores `name=` (an undocumented filter) and lists from the start.
    pub fn ignore_name_filter(&self, ignore: bool) {
        self.shared.lock().ignore_name_filter = ignore;
    }

    /// `POST /generations` without `workspace_id` answers 400 `missing_field`.
    pub fn require_workspace(&self, require: bool) {
        self.shared.lock().require_workspace = require;
    }

    /// Creates a custom persona directly, as if made in Mavera's app; returns its id.
    pub fn add_persona(&self, name: &str) -> String {
        let mut body = Map::new();
        body.insert("name".into(), json!(name));
        let persona = persona_body(&body);
        let mut state = self.shared.lock();
        state.persona_names.insert(name.to_owned());
        state.personas.push(persona.clone());
        persona["id"].as_str().unwrap_or_default().to_owned()
    }

    /// The id of the persona created with `name`, if any.
    pub fn persona_id(&self, name: &str) -> Option<String> {
        let state = self.shared.lock();
        state.personas.iter().find(|p| p["name"] == name).and_then(|p| p["id"].as_str()).map(str::to_owned)
    }

    /// Answers 429 to authenticated requests beyond `per_minute` in the current 60 s window,
    /// with `Retry-After` until the window resets; `None` (the default) only reports.
    pub fn enforce_rate_limit(&self, per_minute: Option<u32>) {
        self.shared.lock().enforced_limit = per_minute;
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests.all()
    }

    /// Requests to `path` (relative to `/api/v1`), any method.
    pub fn requests_to(&self, path: &str) -> Vec<RecordedRequest> {
        self.shared.requests.matching(|r| r.path == path)
    }

    pub fn count(&self, path: &str) -> usize {
        self.shared.requests.count(|r| r.path == path)
    }

    /// Forgets recorded requests (long benchmarks).
    pub fn clear_requests(&self) {
        self.shared.requests.clear();
    }

    /// Requests to `path` being answered right now.
    pub fn in_flight(&self, path: &str) -> usize {
        self.shared.lock().in_flight.get(path).map_or(0, |g| g.current)
    }

    /// The most requests to `path` ever in flight at once.
    pub fn peak_in_flight(&self, path: &str) -> usize {
        self.shared.lock().in_flight.get(path).map_or(0, |g| g.peak)
    }

    /// Restarts peak counting from the current in-flight numbers.
    pub fn reset_peaks(&self) {
        for gauge in self.shared.lock().in_flight.values_mut() {
            gauge.peak = gauge.current;
        }
    }

    /// Names of the personas created so far.
    pub fn persona_names(&self) -> Vec<String> {
        let mut names: Vec<_> = self.shared.lock().persona_names.iter().cloned().collect();
        names.sort();
        names
    }

    /// Stops accepting, ends hanging and slow requests with a 503, and waits (at most 5 s)
    /// for open connections to close.
    pub async fn shutdown(self) {
        self.server.shutdown(Duration::from_secs(5)).await;
    }
}

fn known_path(path: &str) -> &str {
    assert!(PATHS.contains(&path), "the Mavera stand-in serves {PATHS:?} (relative to /api/v1), not {path:?}");
    path
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, StandInState> {
        lock(&self.state)
    }

    /// Records the request and opens its in-flight slot; the returned guard closes it, also
    /// when the client hangs up and the handler is dropped.
    fn arrive(
        self: &Arc<Self>,
        method: Method,
        path: &str,
        query: Option<String>,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Arrival {
        let auth_valid = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|key| key == self.api_key);
        let auth_present = headers.contains_key(header::AUTHORIZATION);
        let parsed = serde_json::from_slice::<Value>(body).ok();
        self.requests.push(RecordedRequest {
            method,
            path: path.to_owned(),
            query,
            headers: headers.clone(),
            body: parsed.clone(),
            auth_valid,
            arrived: Instant::now(),
        });
        let mut state = self.lock();
        let gauge = state.in_flight.entry(path.to_owned()).or_default();
        gauge.current += 1;
        gauge.peak = gauge.peak.max(gauge.current);
        let rate = state.window.count_one(auth_valid);
        let limited = auth_valid && state.enforced_limit.is_some_and(|limit| rate.used > limit);
        let limit = state.enforced_limit.unwrap_or(DEFAULT_RATE_LIMIT);
        Arrival {
            guard: InFlight { shared: self.clone(), path: path.to_owned() },
            auth_valid,
            auth_present,
            body: parsed,
            rate: RateHeaders { limit, remaining: limit.saturating_sub(rate.used), reset: rate.reset },
            limited,
        }
    }

    fn next_reply(&self, path: &str) -> (Reply, Duration) {
        let reply = self.script.next(path).unwrap_or(Reply::Success);
        let state = self.lock();
        let latency = state.latency.get(path).copied().unwrap_or(state.default_latency);
        (reply, latency)
    }
}

struct Arrival {
    guard: InFlight,
    auth_valid: bool,
    auth_present: bool,
    body: Option<Value>,
    rate: RateHeaders,
    limited: bool,
}

struct InFlight {
    shared: Arc<Shared>,
    path: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(gauge) = self.shared.lock().in_flight.get_mut(&self.path) {
            gauge.current = gauge.current.saturating_sub(1);
        }
    }
}

struct WindowUse {
    used: u32,
    reset: u64,
}

impl RateWindow {
    /// A fixed 60 s window per key (Mavera's is sliding; close enough for headers).
    fn count_one(&mut self, counted: bool) -> WindowUse {
        let now = unix_now();
        let start = now - now % RATE_WINDOW_SECS;
        if start != self.start {
            self.start = start;
            self.count = 0;
        }
        if counted {
            self.count += 1;
        }
        WindowUse { used: self.count, reset: start + RATE_WINDOW_SECS }
    }
}

#[derive(Clone, Copy)]
struct RateHeaders {
    limit: u32,
    remaining: u32,
    reset: u64,
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn iso_now() -> String {
    OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

fn short_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

// ---- answers ----------------------------------------------------------------------------

/// An answer before the rate-limit headers go on.
struct Answer {
    status: StatusCode,
    body: AnswerBody,
    retry_after: Option<u64>,
    reset_override: Option<u64>,
}

enum AnswerBody {
    Json(Value),
    Raw(&'static str),
}

impl Answer {
    fn ok(status: StatusCode, body: Value) -> Self {
        Self { status, body: AnswerBody::Json(body), retry_after: None, reset_override: None }
    }

    fn error(status: u16, kind: &str, code: &str, message: &str, param: Option<&str>) -> Self {
        let body = json!({"error": {"message": message, "type": kind, "code": code, "param": param}});
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self { status, body: AnswerBody::Json(body), retry_after: None, reset_override: None }
    }

    fn missing(param: &str) -> Self {
        let message = format!("Missing required field: '{param}'.");
        Self::error(400, "invalid_request_error", "missing_field", &message, Some(param))
    }

    fn invalid(param: Option<&str>, message: &str) -> Self {
        Self::error(400, "invalid_request_error", "invalid_field", message, param)
    }

    fn rate_limited(retry_after: Option<u64>, reset: Option<u64>) -> Self {
        let message = match retry_after {
            Some(secs) => format!("Rate limit exceeded. Please retry after {secs} seconds."),
            None => "Rate limit exceeded.".to_owned(),
        };
        let mut answer = Self::error(429, "rate_limit_error", "rate_limit_exceeded", &message, None);
        answer.retry_after = retry_after;
        answer.reset_override = reset;
        answer
    }

    fn into_response(self, rate: RateHeaders) -> Response {
        let mut headers = HeaderMap::new();
        headers.insert("x-ratelimit-limit", HeaderValue::from(rate.limit));
        let remaining = if self.status == StatusCode::TOO_MANY_REQUESTS { 0 } else { rate.remaining };
        headers.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
        headers.insert("x-ratelimit-reset", HeaderValue::from(self.reset_override.unwrap_or(rate.reset)));
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        match self.body {
            AnswerBody::Json(body) => (self.status, headers, axum::Json(body)).into_response(),
            AnswerBody::Raw(text) => {
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                (self.status, headers, text).into_response()
            }
        }
    }
}

fn scripted_error(reply: &Reply) -> Option<Answer> {
    Some(match reply {
        Reply::Success | Reply::Slow(_) | Reply::Hang | Reply::Malformed => return None,
        Reply::RateLimited { retry_after_secs } => Answer::rate_limited(*retry_after_secs, None),
        Reply::RateLimitedUntilReset { reset_in_secs } => Answer::rate_limited(None, Some(unix_now() + reset_in_secs)),
        Reply::ServerError(503) => Answer::error(
            503,
            "api_error",
            "service_unavailable",
            "Service temporarily unavailable. Please try again later.",
            None,
        ),
        Reply::ServerError(status) => {
            Answer::error(*status, "api_error", "internal_error", "An internal error occurred. Please try again.", None)
        }
        Reply::CreditsExhausted => Answer::error(
            402,
            "insufficient_credits",
            "credits_exhausted",
            "Insufficient credits. Please upgrade your subscription or wait for your next billing cycle.",
            None,
        ),
        Reply::DuplicateName => return None,
        Reply::BadRequest => Answer::invalid(None, "The request could not be processed as sent."),
        Reply::Error { status, kind, code, message, param } => {
            Answer::error(*status, kind, code, message, param.as_deref())
        }
    })
}

fn duplicate_name(shape: DuplicateError) -> Answer {
    let message = "A persona with this name already exists. Use PATCH /personas/{id} to update it.";
    match shape {
        DuplicateError::Coded => Answer::error(422, "invalid_request_error", "duplicate_name", message, Some("name")),
        DuplicateError::NameField => {
            Answer::error(422, "invalid_request_error", "invalid_field", message, Some("name"))
        }
        DuplicateError::MessageOnly => {
            Answer::error(422, "invalid_request_error", "unprocessable_entity", message, None)
        }
    }
}

// ---- handlers ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum Route {
    CreatePersona,
    MaveChat,
    Generate,
}

impl Route {
    fn path(self) -> &'static str {
        match self {
            Route::CreatePersona => "/personas",
            Route::MaveChat => "/mave/chat",
            Route::Generate => "/generations",
        }
    }
}

async fn create_persona(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    handle_post(shared, Route::CreatePersona, headers, body).await
}

async fn mave_chat(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    handle_post(shared, Route::MaveChat, headers, body).await
}

async fn generate(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    handle_post(shared, Route::Generate, headers, body).await
}

/// Auth, then rate limit, then validation, then the scripted or normal outcome.
async fn handle_post(shared: Arc<Shared>, route: Route, headers: HeaderMap, raw: Bytes) -> Response {
    let arrival = shared.arrive(Method::POST, route.path(), None, &headers, &raw);
    let rate = arrival.rate;
    let answer = answer_post(&shared, route, &arrival).await;
    drop(arrival.guard);
    answer.into_response(rate)
}

async fn answer_post(shared: &Arc<Shared>, route: Route, arrival: &Arrival) -> Answer {
    if let Some(refusal) = refuse(arrival) {
        return refusal;
    }
    let Some(body) = arrival.body.as_ref().and_then(Value::as_object) else {
        return Answer::invalid(None, "The request body must be a JSON object.");
    };
    let (strict, require_workspace, duplicate_shape) = {
        let state = shared.lock();
        (state.strict_personas, state.require_workspace, state.duplicate_error)
    };
    if let Err(invalid) = validate(route, body) {
        return invalid;
    }
    if route == Route::CreatePersona
        && strict
        && let Err(invalid) = validate_strict_persona(body)
    {
        return invalid;
    }
    if route == Route::Generate && require_workspace && body.get("workspace_id").is_none_or(Value::is_null) {
        return Answer::missing("workspace_id");
    }
    let (reply, latency) = shared.next_reply(route.path());
    if reply == Reply::DuplicateName {
        return duplicate_name(duplicate_shape);
    }
    if let Some(error) = scripted_error(&reply) {
        return error;
    }
    // Create the persona before the wait: Mavera finishes a call even if the client hangs up,
    // and lists it from then on.
    let created = if route == Route::CreatePersona {
        let name = body.get("name").and_then(Value::as_str).unwrap_or_default();
        let mut state = shared.lock();
        if !state.persona_names.insert(name.to_owned()) {
            return duplicate_name(duplicate_shape);
        }
        let persona = persona_body(body);
        state.personas.push(persona.clone());
        Some(persona)
    } else {
        None
    };
    let wait = match reply {
        Reply::Slow(latency) => latency,
        Reply::Hang => Duration::MAX,
        _ => latency,
    };
    if !wait.is_zero() && !shared.stop.pause(wait).await {
        return Answer::error(503, "api_error", "service_unavailable", "The stand-in is shutting down.", None);
    }
    if reply == Reply::Malformed {
        return Answer {
            body: AnswerBody::Raw(r#"{"object":"unexpected"}"#),
            ..Answer::ok(StatusCode::OK, Value::Null)
        };
    }
    match route {
        // The general guide: 201 for POSTs that create a resource.
        Route::CreatePersona => Answer::ok(StatusCode::CREATED, created.unwrap_or_default()),
        Route::MaveChat => Answer::ok(StatusCode::OK, mave_body(body)),
        Route::Generate => Answer::ok(StatusCode::OK, generation_body(body)),
    }
}

/// 401 for a missing or wrong key; 429 when an enforced rate limit is exceeded.
fn refuse(arrival: &Arrival) -> Option<Answer> {
    if !arrival.auth_present {
        return Some(Answer::error(
            401,
            "authentication_error",
            "missing_api_key",
            "No API key provided. Send it as 'Authorization: Bearer mvra_live_...'.",
            None,
        ));
    }
    if !arrival.auth_valid {
        return Some(Answer::error(
            401,
            "authentication_error",
            "invalid_api_key",
            "Invalid API key. Ensure your key starts with 'mvra_live_' and has not been revoked.",
            None,
        ));
    }
    if arrival.limited {
        let retry_after = arrival.rate.reset.saturating_sub(unix_now()).max(1);
        return Some(Answer::rate_limited(Some(retry_after), None));
    }
    None
}

fn validate(route: Route, body: &Map<String, Value>) -> Result<(), Answer> {
    match route {
        Route::CreatePersona => {
            let name = required_str(body, "name")?;
            let chars = name.chars().count();
            if !(2..=100).contains(&chars) {
                return Err(Answer::invalid(
                    Some("name"),
                    "Invalid value for 'name': must be between 2 and 100 characters.",
                ));
            }
            one_of(body, "pipeline_type", &["north_star", "intermediate", "advanced"])?;
            one_of(body, "type", &["B2B", "B2C"])?;
            optional_str(body, "description")
        }
        Route::MaveChat => {
            if required_str(body, "message")?.trim().is_empty() {
                return Err(Answer::invalid(Some("message"), "Invalid value for 'message': must not be empty."));
            }
            optional_str(body, "thread_id")?;
            optional_str(body, "workspace_id")
        }
        Route::Generate => {
            required_str(body, "app_id")?;
            match body.get("input_data") {
                None => return Err(Answer::missing("input_data")),
                Some(Value::Object(_)) => {}
                Some(_) => {
                    return Err(Answer::invalid(
                        Some("input_data"),
                        "Invalid value for 'input_data': must be an object.",
                    ));
                }
            }
            for field in ["title", "brand_voice_id", "persona_id", "workspace_id"] {
                optional_str(body, field)?;
            }
            Ok(())
        }
    }
}

/// The reference's persona body: its two enums required, only its fields, lists of text
/// where its example has lists, numbers in `mcda_weights`.
fn validate_strict_persona(body: &Map<String, Value>) -> Result<(), Answer> {
    if let Some(unknown) = body.keys().find(|k| !REFERENCE_PERSONA_FIELDS.contains(&k.as_str())) {
        let message = format!("Unknown field: '{unknown}'.");
        return Err(Answer::invalid(Some(unknown), &message));
    }
    for field in ["pipeline_type", "type"] {
        required_str(body, field)?;
    }
    const LISTS: [&str; 12] = [
        "role_segment",
        "primary_objectives",
        "goals",
        "pains",
        "triggers",
        "channels",
        "proof_types",
        "alternatives",
        "win_factors",
        "objections",
        "values",
        "tone_guardrails",
    ];
    for field in LISTS {
        match body.get(field) {
            None => {}
            Some(Value::Array(items)) if items.iter().all(Value::is_string) => {}
            Some(_) => {
                let message = format!("Invalid value for '{field}': must be an array of strings.");
                return Err(Answer::invalid(Some(field), &message));
            }
        }
    }
    match body.get("mcda_weights") {
        None => Ok(()),
        Some(Value::Object(weights)) if weights.values().all(Value::is_number) => Ok(()),
        Some(_) => Err(Answer::invalid(
            Some("mcda_weights"),
            "Invalid value for 'mcda_weights': must map criteria to numbers.",
        )),
    }
}

fn required_str<'a>(body: &'a Map<String, Value>, field: &str) -> Result<&'a str, Answer> {
    match body.get(field) {
        None | Some(Value::Null) => Err(Answer::missing(field)),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(Answer::invalid(Some(field), &format!("Invalid value for '{field}': must be a string."))),
    }
}

fn optional_str(body: &Map<String, Value>, field: &str) -> Result<(), Answer> {
    match body.get(field) {
        None | Some(Value::Null) | Some(Value::String(_)) => Ok(()),
        Some(_) => Err(Answer::invalid(Some(field), &format!("Invalid value for '{field}': must be a string."))),
    }
}

fn one_of(body: &Map<String, Value>, field: &str, allowed: &[&str]) -> Result<(), Answer> {
    match body.get(field) {
        None => Ok(()),
        Some(Value::String(s)) if allowed.contains(&s.as_str()) => Ok(()),
        Some(_) => {
            Err(Answer::invalid(Some(field), &format!("Invalid value for '{field}': must be one of {allowed:?}.")))
        }
    }
}

fn persona_body(request: &Map<String, Value>) -> Value {
    let name = request.get("name").cloned().unwrap_or(Value::Null);
    let pipeline_type = request.get("pipeline_type").cloned().unwrap_or_else(|| json!("north_star"));
    let persona_type = request.get("type").cloned().unwrap_or_else(|| json!("B2C"));
    let description = request.get("description").cloned().unwrap_or_else(|| json!(""));
    let list = |field: &str| request.get(field).cloned().unwrap_or_else(|| json!([]));
    json!({
        "id": format!("clx{}", &short_id()[..22]),
        "object": "custom_persona",
        "name": name,
        "category": "Custom",
        "description": description,
        "pipeline_type": pipeline_type,
        "type": persona_type,
        "is_custom": true,
        "created_at": unix_now(),
        "credits_charged": 300,
        "details": {
            "pipeline_type": pipeline_type,
            "persona_type": persona_type,
            "goals": list("goals"),
            "pains": list("pains"),
            "triggers": list("triggers"),
            "channels": list("channels"),
        }
    })
}

fn mave_body(request: &Map<String, Value>) -> Value {
    let message = request.get("message").and_then(Value::as_str).unwrap_or_default();
    let thread_id = request
        .get("thread_id")
        .and_then(Value::as_str)
        .map_or_else(|| format!("mave_thread_{}", &short_id()[..12]), str::to_owned);
    json!({
        "id": format!("msg_{}", short_id()),
        "object": "mave_message",
        "thread_id": thread_id,
        "role": "assistant",
        "content": format!("## Findings\n\nStand-in research answering: {message}\n\n1. Lead with the value the user already saw.\n2. Follow up within 48 hours."),
        "sources": [{"title": "Stand-in source", "url": "https://example.com/research", "domain": "example.com"}],
        "personas_used": [{"id": "clx1abc2d0001abcdef123456", "name": "Gen Z Consumer"}],
        "usage": {"credits_used": 25},
        "created_at": iso_now(),
    })
}

fn generation_body(request: &Map<String, Value>) -> Value {
    let app_id = request.get("app_id").and_then(Value::as_str).unwrap_or_default();
    let input = request.get("input_data").cloned().unwrap_or_else(|| json!({}));
    let title = request.get("title").and_then(Value::as_str).map_or_else(|| format!("{app_id} draft"), str::to_owned);
    let text = format!("# {title}\n\nStand-in content from `{app_id}` for input {input}.");
    let now = iso_now();
    let brand_voice =
        request.get("brand_voice_id").and_then(Value::as_str).map(|id| json!({"id": id, "label": "Stand-in voice"}));
    json!({
        "id": format!("gen_{}", &short_id()[..12]),
        "object": "generation",
        "title": title,
        "app": {"id": app_id, "name": app_id, "category": "Marketing"},
        "brand_voice": brand_voice,
        "input_data": input,
        "output": text,
        "content": text,
        "content_type": "markdown",
        "workspace_id": request.get("workspace_id").cloned().unwrap_or_else(|| json!("ws_standin_default")),
        "usage": {"prompt_tokens": 120, "completion_tokens": 480, "total_tokens": 600, "credits_used": 15},
        "created_at": now,
        "updated_at": now,
    })
}

/// `GET /personas`: one base persona, then the custom ones created here; honours `limit`.
async fn list_personas(State(shared): State<Arc<Shared>>, RawQuery(query): RawQuery, headers: HeaderMap) -> Response {
    let arrival = shared.arrive(Method::GET, "/personas", query.clone(), &headers, &Bytes::new());
    let rate = arrival.rate;
    if let Some(refusal) = refuse(&arrival) {
        return refusal.into_response(rate);
    }
    let pairs = form_pairs(query.as_deref().unwrap_or_default());
    let param = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let limit = param("limit").and_then(|v| v.parse::<usize>().ok()).unwrap_or(50).min(100);
    // "Search by name or description": a case-insensitive substring, so near names come too.
    let search = param("name").filter(|_| !shared.lock().ignore_name_filter).map(|s| s.to_lowercase());
    let base = json!({
        "id": "clx1abc2d0001abcdef123456",
        "object": "persona",
        "name": "Gen Z Consumer",
        "category": "Generational",
        "description": "Digital-native consumer aged 18-25 with strong social media influence.",
        "is_custom": false,
        "is_expert": false,
        "created_at": 1706140800,
    });
    let custom: Vec<Value> = shared
        .lock()
        .personas
        .iter()
        .map(|p| {
            json!({
                "id": p["id"], "object": "persona", "name": p["name"], "category": p["category"],
                "description": p["description"], "is_custom": true, "is_expert": false, "created_at": p["created_at"],
            })
        })
        .collect();
    let matches = |p: &Value| {
        search.as_deref().is_none_or(|needle| {
            ["name", "description"].iter().any(|f| p[*f].as_str().is_some_and(|t| t.to_lowercase().contains(needle)))
        })
    };
    let data: Vec<Value> = std::iter::once(base).chain(custom).filter(matches).take(limit).collect();
    drop(arrival.guard);
    Answer::ok(StatusCode::OK, json!({"object": "list", "data": data})).into_response(rate)
}

/// Decodes `application/x-www-form-urlencoded` pairs.
fn form_pairs(query: &str) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://stand-in/?{query}"))
        .map(|url| url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
        .unwrap_or_default()
}

async fn not_found(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().strip_prefix(PREFIX).unwrap_or(uri.path());
    let arrival = shared.arrive(method, path, uri.query().map(str::to_owned), &headers, &body);
    let message = format!("No such endpoint: {}.", uri.path());
    Answer::error(404, "invalid_request_error", "resource_not_found", &message, None).into_response(arrival.rate)
}
