//! The HTTPS client: bearer auth, one shared rate gate, retries within a deadline.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::SystemTime;

use backon::Retryable;
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, HeaderValue};
use reqwest::{StatusCode, Url};
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use super::IdType;
use super::config::CioConfig;
use super::error::CioError;
use super::limiter::RateGate;
use super::path::encode_segment;
use super::retry;
use super::types::{
    Attributes, AttributesEnvelope, Campaign, CampaignList, CampaignMetrics, EmailLookup, Identifiers, MembershipBody,
    MembershipPage, MetricsEnvelope, MetricsWindow,
};

/// Largest `limit` the membership endpoint accepts.
pub const MAX_PAGE_SIZE: u32 = 30_000;
/// The membership endpoint's own default `limit`.
pub const DEFAULT_PAGE_SIZE: u32 = 1_000;
/// Longest error text kept from a Customer.io answer.
const MAX_DETAIL_CHARS: usize = 300;

const CAMPAIGNS: &str = "GET /v1/campaigns";
const CAMPAIGN_METRICS: &str = "GET /v1/campaigns/{id}/metrics";
const ATTRIBUTES: &str = "GET /v1/customers/{id}/attributes";
const CUSTOMERS_BY_EMAIL: &str = "GET /v1/customers?email=";
const MEMBERSHIP: &str = "GET /v1/segments/{id}/membership";

const IDENTIFIER_NOT_ENABLED: &str = "email and phone lookups only work when that identifier is enabled in the \
     workspace settings, so enable it there or look the person up by id or cio_id";

/// The App API client. Cheap to clone; every clone shares one connection pool and one rate
/// gate, so all calls in the process together stay under the configured rate. Build it once
/// per process and hand out clones: two separately built clients would each allow the rate.
#[derive(Clone)]
pub struct CioClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base_url: String,
    /// `Bearer <key>`, marked sensitive so `http` and `reqwest` redact it.
    auth: HeaderValue,
    gate: RateGate,
    /// The `cio_id` spelling the attributes endpoint answered to ([`CioIdForm`]), once one has.
    cio_id_form: AtomicU8,
}

/// How a `cio_id` is written in the attributes path. Customer.io's spec writes it `cio_<id>`
/// in other endpoints' paths, and is silent for `GET /v1/customers/{id}/attributes?id_type=cio_id`;
/// segment membership lists it without the prefix. The client tries the bare form first and
/// the prefixed one on a 404, and keeps the form that found someone for the rest of the
/// process (one 404 more per lookup until then, none after).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CioIdForm {
    /// `a3000001`
    Bare,
    /// `cio_a3000001`
    Prefixed,
}

impl CioIdForm {
    const UNKNOWN: u8 = 0;

    fn code(self) -> u8 {
        match self {
            CioIdForm::Bare => 1,
            CioIdForm::Prefixed => 2,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(CioIdForm::Bare),
            2 => Some(CioIdForm::Prefixed),
            _ => None,
        }
    }

    /// `id` in this form; `id` may come in either.
    pub fn write(self, id: &str) -> String {
        let bare = bare_cio_id(id);
        match self {
            CioIdForm::Bare => bare.to_owned(),
            CioIdForm::Prefixed => format!("cio_{bare}"),
        }
    }

    fn other(self) -> Self {
        match self {
            CioIdForm::Bare => CioIdForm::Prefixed,
            CioIdForm::Prefixed => CioIdForm::Bare,
        }
    }
}

/// A `cio_id` without the `cio_` prefix the Track API puts in paths.
pub fn bare_cio_id(id: &str) -> &str {
    id.strip_prefix("cio_").unwrap_or(id)
}

impl fmt::Debug for CioClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CioClient")
            .field("base_url", &self.inner.base_url)
            .field("app_key", &"[REDACTED]")
            .field("request_spacing", &self.inner.gate.spacing())
            .finish()
    }
}

/// Why an attempt produced no body.
enum Failure {
    /// The gate's next start slot comes after the deadline; nothing was sent.
    NoSlot,
    /// Sent, and answered with an error or not at all.
    Call(CioError),
}

/// One request: a template name for errors and logs, and the filled-in URL.
struct Call {
    endpoint: &'static str,
    url: Url,
    /// Added to a 400's message: what usually causes it on this endpoint.
    hint_400: Option<&'static str>,
}

impl CioClient {
    pub fn new(config: CioConfig) -> Result<Self, CioError> {
        let rate = NonZeroU32::new(config.requests_per_second)
            .ok_or_else(|| CioError::Config("requests_per_second must be at least 1".into()))?;
        let base_url = config.effective_base_url().to_owned();
        match Url::parse(&base_url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {}
            _ => return Err(CioError::Config(format!("base URL `{base_url}` is not an http(s) URL"))),
        }
        let key = config.app_key.expose_secret().trim();
        if key.is_empty() {
            return Err(CioError::Config("CIO_APP_KEY is empty: set it to a Customer.io App API key".into()));
        }
        let mut auth = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
            CioError::Config("CIO_APP_KEY holds characters an HTTP header cannot carry (a stray newline?)".into())
        })?;
        auth.set_sensitive(true);
        let http = reqwest::Client::builder()
            .user_agent(concat!("mavera-relay/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CioError::Config(format!("cannot build the HTTPS client: {e}")))?;
        let gate = RateGate::per_second(rate);
        let cio_id_form = AtomicU8::new(CioIdForm::UNKNOWN);
        Ok(CioClient { inner: Arc::new(Inner { http, base_url, auth, gate, cio_id_form }) })
    }

    /// Where requests go, e.g. `https://api-eu.customer.io`.
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// `GET /v1/campaigns`: every campaign, active or not (filter on [`Campaign::active`]).
    pub async fn campaigns(&self, deadline: Instant) -> Result<Vec<Campaign>, CioError> {
        let call = self.call(CAMPAIGNS, "/v1/campaigns", &[], None)?;
        let list: CampaignList = self.get_json(&call, deadline).await?;
        Ok(list.campaigns)
    }

    /// `GET /v1/campaigns/{id}/metrics?version=2&res=…&start=…&end=…[&tz=…][&type=…]`.
    pub async fn campaign_metrics(
        &self,
        campaign_id: u64,
        window: &MetricsWindow,
        deadline: Instant,
    ) -> Result<CampaignMetrics, CioError> {
        let query = window.query();
        let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let path = format!("/v1/campaigns/{campaign_id}/metrics");
        let call = self.call(CAMPAIGN_METRICS, &path, &query, None)?;
        let envelope: MetricsEnvelope = self.get_json(&call, deadline).await?;
        Ok(envelope.into_metrics())
    }

    /// `GET /v1/customers/{id}/attributes?id_type=…`; `None` when no such person exists.
    ///
    /// An `id`, `email` or `phone` is sent as given (percent-encoded). A `cio_id` may come with
    /// or without its `cio_` prefix: it is sent in the form the endpoint is known to take, or,
    /// until one has found someone, bare and then prefixed on a 404 ([`CioIdForm`]).
    pub async fn customer_attributes(
        &self,
        id: &str,
        id_type: IdType,
        deadline: Instant,
    ) -> Result<Option<Attributes>, CioError> {
        if id_type != IdType::CioId {
            return self.attributes_as_sent(id, id_type, deadline).await;
        }
        let known = CioIdForm::from_code(self.inner.cio_id_form.load(Ordering::Relaxed));
        let first = known.unwrap_or(CioIdForm::Bare);
        if let Some(found) = self.attributes_as_sent(&first.write(id), id_type, deadline).await? {
            self.learn(first);
            return Ok(Some(found));
        }
        if known.is_some() {
            return Ok(None);
        }
        let second = first.other();
        let found = self.attributes_as_sent(&second.write(id), id_type, deadline).await?;
        if found.is_some() {
            self.learn(second);
        }
        Ok(found)
    }

    /// The `cio_id` form this client has seen the attributes endpoint answer to.
    pub fn cio_id_form(&self) -> Option<CioIdForm> {
        CioIdForm::from_code(self.inner.cio_id_form.load(Ordering::Relaxed))
    }

    fn learn(&self, form: CioIdForm) {
        let before = self.inner.cio_id_form.swap(form.code(), Ordering::Relaxed);
        if before != form.code() {
            tracing::info!(form = ?form, "Customer.io's attributes endpoint found a person by cio_id in this form; it is used from now on");
        }
    }

    async fn attributes_as_sent(
        &self,
        id: &str,
        id_type: IdType,
        deadline: Instant,
    ) -> Result<Option<Attributes>, CioError> {
        let segment = path_segment(ATTRIBUTES, id)?;
        let hint = matches!(id_type, IdType::Email | IdType::Phone).then_some(IDENTIFIER_NOT_ENABLED);
        let path = format!("/v1/customers/{segment}/attributes");
        let call = self.call(ATTRIBUTES, &path, &[("id_type", id_type.as_str())], hint)?;
        match self.get_json::<AttributesEnvelope>(&call, deadline).await {
            Ok(envelope) => Ok(Some(envelope.customer)),
            Err(CioError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /v1/customers?email=…`: everyone with that email (several people can share one
    /// where email is not a unique identifier); empty when nobody has it.
    pub async fn customers_by_email(&self, email: &str, deadline: Instant) -> Result<Vec<Identifiers>, CioError> {
        if email.is_empty() {
            return Err(CioError::InvalidInput { endpoint: CUSTOMERS_BY_EMAIL, reason: "the email is empty" });
        }
        let call = self.call(CUSTOMERS_BY_EMAIL, "/v1/customers", &[("email", email)], None)?;
        let found: EmailLookup = self.get_json(&call, deadline).await?;
        Ok(found.results)
    }

    /// One page of `GET /v1/segments/{id}/membership`. `start` is the previous page's `next`
    /// (`None` for the first page); `limit` is clamped to 1..=30000.
    pub async fn segment_members(
        &self,
        segment_id: u64,
        start: Option<&str>,
        limit: u32,
        deadline: Instant,
    ) -> Result<MembershipPage, CioError> {
        let limit = limit.clamp(1, MAX_PAGE_SIZE).to_string();
        let mut query = vec![("limit", limit.as_str())];
        if let Some(start) = start.filter(|s| !s.is_empty()) {
            query.push(("start", start));
        }
        let path = format!("/v1/segments/{segment_id}/membership");
        let call = self.call(MEMBERSHIP, &path, &query, None)?;
        let body: MembershipBody = self.get_json(&call, deadline).await?;
        Ok(body.into_page())
    }

    fn call(
        &self,
        endpoint: &'static str,
        path: &str,
        query: &[(&str, &str)],
        hint_400: Option<&'static str>,
    ) -> Result<Call, CioError> {
        let mut url = Url::parse(&format!("{}{path}", self.inner.base_url))
            .map_err(|e| CioError::Config(format!("cannot form a URL for {endpoint}: {e}")))?;
        if !query.is_empty() {
            // Form encoding: `+` → %2B, `@` → %40, as Customer.io asks for emails.
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(Call { endpoint, url, hint_400 })
    }

    async fn get_json<T: DeserializeOwned>(&self, call: &Call, deadline: Instant) -> Result<T, CioError> {
        let body = self.get(call, deadline).await?;
        serde_json::from_slice(&body)
            .map_err(|source| CioError::Decode { endpoint: call.endpoint, source: Arc::new(source) })
    }

    /// Sends `call` until it succeeds, fails for good, runs out of retries, or the next wait
    /// would pass `deadline`; then the last error is returned at once.
    async fn get(&self, call: &Call, deadline: Instant) -> Result<Bytes, CioError> {
        let mut failed_attempts = 0u32;
        let mut prompted_retry: Option<CioError> = None;
        let outcome = (|| self.gated_attempt(call, deadline))
            .retry(retry::backoff())
            .when(|failure: &Failure| matches!(failure, Failure::Call(error) if retry::should_retry(error)))
            .adjust(|failure, ceiling| match failure {
                Failure::Call(error) => retry::next_wait(error, ceiling, Instant::now(), deadline),
                Failure::NoSlot => None,
            })
            .notify(|failure, wait| {
                failed_attempts += 1;
                if let Failure::Call(error) = failure {
                    tracing::warn!(
                        endpoint = call.endpoint,
                        attempt = failed_attempts,
                        status = error.status(),
                        wait_ms = wait.as_millis() as u64,
                        "Customer.io call failed; retrying"
                    );
                    prompted_retry = Some(error.clone());
                }
            })
            .await;
        match outcome {
            Ok(body) => Ok(body),
            Err(Failure::Call(error)) => Err(error),
            // A retry that cannot start before the deadline ends with the error that prompted it.
            Err(Failure::NoSlot) => Err(prompted_retry.unwrap_or(CioError::DeadlineExceeded {
                endpoint: call.endpoint,
                waiting_for: "get a slot under the 10-per-second limit",
            })),
        }
    }

    /// One attempt. Every attempt, retries included, first takes a slot from the shared gate.
    async fn gated_attempt(&self, call: &Call, deadline: Instant) -> Result<Bytes, Failure> {
        self.inner.gate.acquire(deadline).await.map_err(|_| Failure::NoSlot)?;
        tracing::debug!(endpoint = call.endpoint, "Customer.io call starts");
        self.attempt(call, deadline).await.map_err(Failure::Call)
    }

    async fn attempt(&self, call: &Call, deadline: Instant) -> Result<Bytes, CioError> {
        let request = self
            .inner
            .http
            .get(call.url.clone())
            .header(AUTHORIZATION, self.inner.auth.clone())
            .header(ACCEPT, "application/json");
        let exchange = async {
            let response = request.send().await?;
            let status = response.status();
            let retry_after = crate::retry::retry_after(response.headers(), SystemTime::now());
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, retry_after, body))
        };
        let (status, retry_after, body) = match tokio::time::timeout_at(deadline, exchange).await {
            Ok(Ok(answer)) => answer,
            // The URL holds ids and emails; keep it out of errors and logs.
            Ok(Err(source)) => {
                return Err(CioError::Transport { endpoint: call.endpoint, source: Arc::new(source.without_url()) });
            }
            Err(_) => return Err(CioError::DeadlineExceeded { endpoint: call.endpoint, waiting_for: "get an answer" }),
        };
        tracing::debug!(endpoint = call.endpoint, status = status.as_u16(), "Customer.io answered");
        classify(call, status, retry_after, body)
    }
}

/// Maps an answer to its body or to the error its status means.
fn classify(
    call: &Call,
    status: StatusCode,
    retry_after: Option<std::time::Duration>,
    body: Bytes,
) -> Result<Bytes, CioError> {
    let endpoint = call.endpoint;
    match status.as_u16() {
        200..=299 => Ok(body),
        400 => Err(CioError::BadRequest { endpoint, detail: error_detail(&body), hint: call.hint_400 }),
        401 => Err(CioError::Unauthorized { endpoint }),
        403 => Err(CioError::Forbidden { endpoint }),
        404 => Err(CioError::NotFound { endpoint }),
        429 => Err(CioError::RateLimited { endpoint, retry_after }),
        status @ 500..=599 => Err(CioError::Server { endpoint, status, retry_after }),
        status => Err(CioError::UnexpectedStatus { endpoint, status, detail: error_detail(&body) }),
    }
}

/// An id as one path segment. Empty, `.` and `..` would change the path itself.
fn path_segment(endpoint: &'static str, id: &str) -> Result<String, CioError> {
    match id {
        "" => Err(CioError::InvalidInput { endpoint, reason: "the person's identifier is empty" }),
        "." | ".." => Err(CioError::InvalidInput { endpoint, reason: "`.` and `..` cannot be sent as identifiers" }),
        _ => Ok(encode_segment(id)),
    }
}

/// The reason Customer.io gave: `errors[0].detail` or `meta.error` when the body is its error
/// JSON, else the text itself; cut short either way.
fn error_detail(body: &[u8]) -> String {
    let from_json = serde_json::from_slice::<serde_json::Value>(body).ok().and_then(|v| {
        v.pointer("/errors/0/detail")
            .or_else(|| v.pointer("/meta/error"))
            .or_else(|| v.get("error"))
            .and_then(|d| d.as_str().map(str::to_owned))
    });
    let text = from_json.unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned());
    if text.is_empty() {
        return "no reason given".to_owned();
    }
    let mut cut = crate::domain::truncate_chars(&text, MAX_DETAIL_CHARS).to_owned();
    if cut.len() < text.len() {
        cut.push('…');
    }
    cut
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;
    use crate::customerio::CioRegion;

    fn client(region: CioRegion) -> CioClient {
        CioClient::new(CioConfig::new(SecretString::from("sk_test_topsecret"), region)).unwrap()
    }

    #[test]
    fn the_region_picks_the_host() {
        assert_eq!(client(CioRegion::Us).base_url(), "https://api.customer.io");
        assert_eq!(client(CioRegion::Eu).base_url(), "https://api-eu.customer.io");
        let config = CioConfig::new(SecretString::from("k"), CioRegion::Eu).with_base_url("http://127.0.0.1:8080/");
        assert_eq!(CioClient::new(config).unwrap().base_url(), "http://127.0.0.1:8080");
    }

    #[test]
    fn urls_encode_ids_in_paths_and_emails_in_queries() {
        let c = client(CioRegion::Us);
        let id = path_segment(ATTRIBUTES, "jane+x@example.com").unwrap();
        let call =
            c.call(ATTRIBUTES, &format!("/v1/customers/{id}/attributes"), &[("id_type", "email")], None).unwrap();
        assert_eq!(
            call.url.as_str(),
            "https://api.customer.io/v1/customers/jane%2Bx%40example.com/attributes?id_type=email"
        );
        let call =
            c.call(CUSTOMERS_BY_EMAIL, "/v1/customers", &[("email", "jane+notifications@example.com")], None).unwrap();
        assert_eq!(call.url.query(), Some("email=jane%2Bnotifications%40example.com"));
    }

    #[test]
    fn identifiers_that_would_change_the_path_are_refused() {
        for bad in ["", ".", ".."] {
            assert!(matches!(path_segment(ATTRIBUTES, bad), Err(CioError::InvalidInput { .. })), "{bad:?}");
        }
        assert_eq!(path_segment(ATTRIBUTES, "...").unwrap(), "...");
    }

    #[test]
    fn bad_configuration_is_refused_without_echoing_the_key() {
        let bad_rate = CioConfig::new(SecretString::from("k"), CioRegion::Us).with_requests_per_second(0);
        assert!(matches!(CioClient::new(bad_rate), Err(CioError::Config(_))));
        let bad_url = CioConfig::new(SecretString::from("k"), CioRegion::Us).with_base_url("ftp://x");
        assert!(matches!(CioClient::new(bad_url), Err(CioError::Config(_))));
        let empty = CioConfig::new(SecretString::from("  "), CioRegion::Us);
        assert!(CioClient::new(empty).unwrap_err().to_string().contains("CIO_APP_KEY"));
        let newline = CioConfig::new(SecretString::from("secret-part\nrest"), CioRegion::Us);
        let err = CioClient::new(newline).unwrap_err().to_string();
        assert!(err.contains("CIO_APP_KEY") && !err.contains("secret-part"), "{err}");
    }

    #[test]
    fn debug_hides_the_key() {
        let shown = format!("{:?}", client(CioRegion::Us));
        assert!(!shown.contains("topsecret"), "{shown}");
        assert!(shown.contains("api.customer.io"));
    }

    #[test]
    fn statuses_map_to_errors() {
        let call = client(CioRegion::Us).call(ATTRIBUTES, "/v1/x", &[], Some("hint")).unwrap();
        let err = |status: u16, body: &str| {
            classify(&call, StatusCode::from_u16(status).unwrap(), None, Bytes::from(body.to_owned())).unwrap_err()
        };
        assert!(matches!(err(401, ""), CioError::Unauthorized { .. }));
        assert!(matches!(err(404, ""), CioError::NotFound { .. }));
        assert!(matches!(err(503, ""), CioError::Server { status: 503, .. }));
        assert!(matches!(err(409, "conflict"), CioError::UnexpectedStatus { status: 409, .. }));
        let bad = err(400, r#"{"errors":[{"detail":"email is not an identifier","status":400}]}"#);
        assert_eq!(
            bad.to_string(),
            format!("Customer.io rejected {ATTRIBUTES} as malformed (400): email is not an identifier; hint")
        );
    }

    #[test]
    fn error_details_are_read_and_cut() {
        assert_eq!(error_detail(br#"{"meta":{"error":"version is required"}}"#), "version is required");
        assert_eq!(error_detail(b"plain words"), "plain words");
        assert_eq!(error_detail(b""), "no reason given");
        let long = "x".repeat(1000);
        assert_eq!(error_detail(long.as_bytes()).chars().count(), MAX_DETAIL_CHARS + 1);
    }
}
