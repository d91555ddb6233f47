//! The Mavera HTTPS client: one request in, its final outcome out, with retries, timeouts
//! and the Mave concurrency cap handled inside.
//!
//! Hazard: every call but the free `GET /personas` is a `POST`, none is idempotent, and
//! Mavera documents no idempotency key. A retry after a timeout or a broken connection may
//! repeat a call that did run (and was charged). For personas, the repeat answers 422
//! (duplicate name), which reads as [`ErrorClass::AlreadyDone`] and is confirmed by looking
//! the name up ([`MaveraApi::find_persona`]); Mave and generation repeats simply run twice.
//! Rejected calls (429, 5xx) and refused connections are safe to repeat.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use backon::Retryable;
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::Value;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::{Instant, timeout, timeout_at};

use super::config::{MaveraConfig, MaveraConfigError, bearer_header, key_hint, normalize_base_url};
use super::endpoint::Endpoint;
use super::error::{ErrorClass, MaveraError};
use super::retry;
use super::types::{
    ApiErrorBody, ApiErrorEnvelope, Generation, MaveMessage, MaveraRequest, Persona, PersonaList, PersonaSummary,
};

/// Long enough for DNS, TCP and TLS to a distant region; a stuck connect fails fast.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Cold start should not wait long for an optional warm-up.
const WARM_TIMEOUT: Duration = Duration::from_secs(5);

/// A successful call's decoded answer.
#[derive(Debug, Clone, PartialEq)]
pub enum MaveraResponse {
    Persona(Persona),
    Research(MaveMessage),
    Generation(Generation),
    /// The dry-run adapter's answer: nothing was sent.
    DryRun(super::dry_run::WouldSend),
}

impl MaveraResponse {
    fn decode(endpoint: Endpoint, status: StatusCode, body: &[u8]) -> Result<Self, MaveraError> {
        match endpoint {
            Endpoint::CreatePersona => decode(endpoint, status, body, "custom_persona").map(Self::Persona),
            Endpoint::MaveChat => decode(endpoint, status, body, "mave_message").map(Self::Research),
            Endpoint::Generate => decode(endpoint, status, body, "generation").map(Self::Generation),
            Endpoint::ListPersonas => unreachable!("GET /personas is no MaveraRequest"),
        }
    }
}

fn decode<T: serde::de::DeserializeOwned>(
    endpoint: Endpoint,
    status: StatusCode,
    body: &[u8],
    expected: &'static str,
) -> Result<T, MaveraError> {
    serde_json::from_slice(body).map_err(|source| MaveraError::Decode {
        endpoint,
        status: status.as_u16(),
        expected,
        source,
    })
}

/// The Mavera port: what the worker needs from Mavera.
#[async_trait::async_trait]
pub trait MaveraApi: Send + Sync {
    /// Sends one request, retrying transient failures until `deadline`; returns the final outcome.
    async fn send(&self, request: &MaveraRequest, deadline: Instant) -> Result<MaveraResponse, MaveraError>;

    /// The workspace's own persona named exactly `name`, if `GET /personas` lists it (0
    /// credits). Used when Mavera refuses a persona as a duplicate, to record its id.
    async fn find_persona(&self, name: &str, deadline: Instant) -> Result<Option<PersonaSummary>, MaveraError>;

    /// Opens the connection during a cold start, before the first job needs it. An adapter
    /// with nothing to open does nothing.
    async fn warm(&self) {}
}

/// The production [`MaveraApi`]. Clones share one connection pool and one Mave cap, so
/// build one per process and clone it freely.
#[derive(Clone)]
pub struct MaveraClient {
    http: reqwest::Client,
    base_url: Arc<str>,
    key_hint: Arc<str>,
    mave_slots: Arc<Semaphore>,
    mave_limit: usize,
}

impl fmt::Debug for MaveraClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MaveraClient")
            .field("base_url", &self.base_url)
            .field("api_key", &self.key_hint)
            .field("mave_concurrency", &self.mave_limit)
            .finish_non_exhaustive()
    }
}

impl MaveraClient {
    pub fn new(config: MaveraConfig) -> Result<Self, MaveraConfigError> {
        let base_url = normalize_base_url(&config.base_url)?;
        if config.mave_concurrency == 0 {
            return Err(MaveraConfigError::ZeroConcurrency);
        }
        if config.mave_concurrency > super::config::DEFAULT_MAVE_CONCURRENCY {
            tracing::warn!(
                mave_concurrency = config.mave_concurrency,
                "mave_concurrency is above Mavera's documented cap of 10 concurrent Mave requests"
            );
        }

        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, bearer_header(&config.api_key)?);
        // Mavera asks for this header on every request, GETs included.
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));

        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            // A redirect would turn a POST into a GET or leave Mavera's host; neither is wanted.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("mavera-relay/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .build()
            .map_err(MaveraConfigError::HttpClient)?;

        let key_hint = key_hint(&config.api_key);
        tracing::info!(%base_url, api_key = %key_hint, mave_concurrency = config.mave_concurrency, "Mavera client ready");
        Ok(Self {
            http,
            base_url: base_url.into(),
            key_hint: key_hint.into(),
            mave_slots: Arc::new(Semaphore::new(config.mave_concurrency)),
            mave_limit: config.mave_concurrency,
        })
    }

    /// Opens the TLS connection during cold start with `GET /personas?limit=1`, which costs
    /// no credits (it does count against the per-minute rate limit). Failures are only logged:
    /// the first real call opens the connection anyway. A 401 or 402 here is an early warning.
    pub async fn warm(&self) {
        // Mavera documents a result limit for the list but not the parameter's name; a
        // server that ignores `limit` just returns a longer list.
        let url = format!("{}/personas?limit=1", self.base_url);
        let started = Instant::now();
        let outcome = timeout(WARM_TIMEOUT, async {
            let response = self.http.get(url).send().await?;
            let status = response.status();
            // Read to the end, so that an HTTP/1.1 connection goes back to the pool.
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, body))
        })
        .await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match outcome {
            Ok(Ok((status, _))) if status.is_success() => {
                tracing::info!(elapsed_ms, "Mavera connection warmed");
            }
            Ok(Ok((status, body))) => {
                let error = error_body(&body);
                tracing::warn!(
                    status = status.as_u16(),
                    code = error.code.as_deref().unwrap_or("-"),
                    message = error.message.as_deref().unwrap_or("-"),
                    "Mavera refused the warm-up GET /personas; real calls will likely fail the same way"
                );
            }
            Ok(Err(error)) => {
                tracing::warn!(error = ?error, elapsed_ms, "Mavera warm-up failed; the first call will connect")
            }
            Err(_) => tracing::warn!(elapsed_ms, "Mavera warm-up timed out; the first call will connect"),
        }
    }

    /// `GET /personas` with `query` (0 credits; one page, retried like any call until
    /// `deadline`). Mavera documents the list's filters only by description, not by name.
    pub async fn list_personas(&self, query: &[(&str, &str)], deadline: Instant) -> Result<PersonaList, MaveraError> {
        let endpoint = Endpoint::ListPersonas;
        let (status, body) =
            self.with_retries(endpoint, deadline, || self.attempt(endpoint, Outgoing::Query(query), deadline)).await?;
        decode(endpoint, status, &body, "list")
    }

    /// Runs `attempt` until it succeeds, fails for good, or the next try would not fit
    /// before `deadline`.
    async fn with_retries<F, Fut>(
        &self,
        endpoint: Endpoint,
        deadline: Instant,
        mut attempt: F,
    ) -> Result<(StatusCode, Bytes), MaveraError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(StatusCode, Bytes), MaveraError>>,
    {
        let started = Instant::now();
        let mut attempts = 0_u32;
        let result = (|| {
            attempts += 1;
            attempt()
        })
        .retry(retry::backoff())
        .when(|error: &MaveraError| error.class() == ErrorClass::Transient)
        .adjust(|error, ceiling| retry::next_wait(error, ceiling, Instant::now(), deadline))
        .notify(|error, wait| {
            tracing::warn!(
                %endpoint,
                status = error.status(),
                code = error.code().unwrap_or("-"),
                wait_ms = wait.as_millis() as u64,
                error = %error,
                "Mavera call failed; retrying"
            );
        })
        .await;
        tracing::debug!(
            %endpoint,
            attempts,
            elapsed_ms = started.elapsed().as_millis() as u64,
            ok = result.is_ok(),
            "Mavera call finished"
        );
        result
    }

    /// One attempt: wait for a Mave slot if needed, send, read the whole answer; a status
    /// other than 2xx is an error.
    async fn attempt(
        &self,
        endpoint: Endpoint,
        outgoing: Outgoing<'_>,
        deadline: Instant,
    ) -> Result<(StatusCode, Bytes), MaveraError> {
        ensure_time(endpoint, deadline)?;
        // Held for this attempt only, not across backoff waits, so others may use the slot.
        let _slot = match endpoint {
            Endpoint::MaveChat => Some(self.mave_slot(deadline).await?),
            Endpoint::CreatePersona | Endpoint::Generate | Endpoint::ListPersonas => None,
        };
        let started = ensure_time(endpoint, deadline)?;
        let attempt_deadline = deadline.min(started + endpoint.timeout());

        let url = format!("{}{}", self.base_url, endpoint.path());
        let request = match outgoing {
            Outgoing::Json(body) => self.http.post(url).json(body),
            Outgoing::Query(query) => self.http.get(format!("{url}?{}", query_string(query))),
        };
        let exchange = async {
            let response = request.send().await?;
            let status = response.status();
            let retry_after = if status.is_success() {
                None
            } else {
                retry::server_wait(status, response.headers(), SystemTime::now())
            };
            let remaining = response.headers().get("x-ratelimit-remaining").cloned();
            let bytes = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, retry_after, remaining, bytes))
        };
        let outcome = timeout_at(attempt_deadline, exchange).await;
        let elapsed = started.elapsed();
        let (status, retry_after, remaining, bytes) = match outcome {
            Ok(Ok(answer)) => answer,
            Ok(Err(error)) => return Err(transport_error(endpoint, error)),
            Err(_) => {
                return Err(MaveraError::Timeout { endpoint, after: elapsed });
            }
        };
        tracing::debug!(
            %endpoint,
            status = status.as_u16(),
            elapsed_ms = elapsed.as_millis() as u64,
            rate_limit_remaining = remaining.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("-"),
            "Mavera answered"
        );
        answer(endpoint, status, retry_after, bytes)
    }

    /// Waits for a Mave slot, but only as long as a minimal attempt still fits afterwards.
    async fn mave_slot(&self, deadline: Instant) -> Result<SemaphorePermit<'_>, MaveraError> {
        let started = Instant::now();
        let latest = deadline.checked_sub(Endpoint::MaveChat.min_attempt()).unwrap_or(started);
        match timeout_at(latest, self.mave_slots.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            // `Err(AcquireError)` would need a closed semaphore; it is never closed.
            Ok(Err(_)) | Err(_) => Err(MaveraError::NoMaveSlot { limit: self.mave_limit, waited: started.elapsed() }),
        }
    }
}

/// What an attempt sends: a JSON body (`POST`) or a query (`GET`).
#[derive(Clone, Copy)]
enum Outgoing<'a> {
    Json(&'a Value),
    Query(&'a [(&'a str, &'a str)]),
}

#[async_trait::async_trait]
impl MaveraApi for MaveraClient {
    async fn send(&self, request: &MaveraRequest, deadline: Instant) -> Result<MaveraResponse, MaveraError> {
        let endpoint = Endpoint::of(request);
        let body = request.body();
        let (status, bytes) =
            self.with_retries(endpoint, deadline, || self.attempt(endpoint, Outgoing::Json(&body), deadline)).await?;
        MaveraResponse::decode(endpoint, status, &bytes)
    }

    /// Asks with `name=` (the filter Mavera's Shopify page uses; the reference describes a
    /// search without naming its parameter) and `limit=100` (the documented maximum), then
    /// keeps only an exact match among the workspace's own personas: a server that searches
    /// by substring, or ignores the filter, cannot hand back the wrong persona.
    async fn find_persona(&self, name: &str, deadline: Instant) -> Result<Option<PersonaSummary>, MaveraError> {
        let list = self.list_personas(&[("name", name), ("limit", "100")], deadline).await?;
        Ok(exact_custom(list, name))
    }

    async fn warm(&self) {
        MaveraClient::warm(self).await;
    }
}

/// `k=v&…`, every byte but RFC 3986's unreserved characters percent-encoded.
fn query_string(pairs: &[(&str, &str)]) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
    let pairs = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", utf8_percent_encode(k, COMPONENT), utf8_percent_encode(v, COMPONENT)));
    pairs.collect::<Vec<_>>().join("&")
}

/// The custom persona named exactly `name` (base personas are `is_custom: false`).
fn exact_custom(list: PersonaList, name: &str) -> Option<PersonaSummary> {
    list.data.into_iter().find(|p| p.name.as_deref() == Some(name) && p.is_custom != Some(false))
}

/// Returns now, or `NoTimeLeft` if a minimal attempt no longer fits before the deadline.
fn ensure_time(endpoint: Endpoint, deadline: Instant) -> Result<Instant, MaveraError> {
    let now = Instant::now();
    let remaining = deadline.saturating_duration_since(now);
    let needed = endpoint.min_attempt();
    if remaining < needed {
        return Err(MaveraError::NoTimeLeft { endpoint, remaining, needed });
    }
    Ok(now)
}

/// A 2xx answer as it came, any other status as the error it means.
fn answer(
    endpoint: Endpoint,
    status: StatusCode,
    retry_after: Option<Duration>,
    body: Bytes,
) -> Result<(StatusCode, Bytes), MaveraError> {
    if status.is_success() {
        return Ok((status, body));
    }
    Err(MaveraError::Api { endpoint, status: status.as_u16(), error: error_body(&body), retry_after })
}

/// Mavera's documented error body, or an empty one if the body is another shape (a proxy's
/// HTML page, say).
fn error_body(body: &[u8]) -> ApiErrorBody {
    serde_json::from_slice::<ApiErrorEnvelope>(body).map(|envelope| envelope.error).unwrap_or_default()
}

fn transport_error(endpoint: Endpoint, source: reqwest::Error) -> MaveraError {
    if source.is_builder() {
        MaveraError::InvalidRequest { endpoint, source }
    } else if source.is_connect() {
        MaveraError::Connect { endpoint, source }
    } else {
        MaveraError::Transport { endpoint, source }
    }
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;

    const KEY: &str = "mvra_live_test_0123456789abcdefghijklmnop";

    fn interpret(
        endpoint: Endpoint,
        status: StatusCode,
        retry_after: Option<Duration>,
        body: &Bytes,
    ) -> Result<MaveraResponse, MaveraError> {
        let (status, body) = answer(endpoint, status, retry_after, body.clone())?;
        MaveraResponse::decode(endpoint, status, &body)
    }

    fn client() -> MaveraClient {
        MaveraClient::new(MaveraConfig::new(SecretString::from(KEY))).unwrap()
    }

    #[test]
    fn debug_shows_only_the_key_prefix() {
        let shown = format!("{:?}", client());
        assert!(shown.contains("mvra_liv…"), "{shown}");
        assert!(!shown.contains("0123456789"), "{shown}");
    }

    #[test]
    fn zero_concurrency_is_refused() {
        let mut config = MaveraConfig::new(SecretString::from(KEY));
        config.mave_concurrency = 0;
        assert!(matches!(MaveraClient::new(config), Err(MaveraConfigError::ZeroConcurrency)));
    }

    #[test]
    fn error_statuses_carry_maveras_body() {
        let body = Bytes::from_static(
            br#"{"error":{"message":"Insufficient credits.","type":"insufficient_credits","code":"credits_exhausted","param":null}}"#,
        );
        let err = interpret(Endpoint::MaveChat, StatusCode::PAYMENT_REQUIRED, None, &body).unwrap_err();
        assert_eq!(err.status(), Some(402));
        assert_eq!(err.code(), Some("credits_exhausted"));
        assert_eq!(err.mavera_message(), Some("Insufficient credits."));
        assert_eq!(err.class(), ErrorClass::Permanent);
    }

    #[test]
    fn error_statuses_without_the_documented_body_still_classify() {
        let body = Bytes::from_static(b"<html>502 Bad Gateway</html>");
        let err = interpret(Endpoint::Generate, StatusCode::BAD_GATEWAY, None, &body).unwrap_err();
        assert_eq!(err.class(), ErrorClass::Transient);
        assert_eq!(err.code(), None);
    }

    #[test]
    fn undecodable_success_is_permanent() {
        let body = Bytes::from_static(br#"{"object":"mave_message"}"#);
        let err = interpret(Endpoint::MaveChat, StatusCode::OK, None, &body).unwrap_err();
        assert!(matches!(err, MaveraError::Decode { .. }), "{err:?}");
        assert_eq!(err.class(), ErrorClass::Permanent);
        assert!(err.to_string().contains("mave_message"), "{err}");
    }

    #[test]
    fn success_decodes_per_endpoint() {
        let body = Bytes::from_static(br#"{"id":"clx1","object":"custom_persona","name":"A","credits_charged":300}"#);
        let persona = interpret(Endpoint::CreatePersona, StatusCode::CREATED, None, &body).unwrap();
        assert!(matches!(persona, MaveraResponse::Persona(p) if p.id == "clx1"));
    }

    #[test]
    fn a_lookup_keeps_only_the_exact_custom_name() {
        let list: PersonaList = serde_json::from_value(serde_json::json!({"object": "list", "data": [
            {"id": "base", "name": "Trial User", "is_custom": false},
            {"id": "near", "name": "Trial User 2", "is_custom": true},
            {"id": "case", "name": "trial user", "is_custom": true},
            {"id": "mine", "name": "Trial User", "is_custom": true},
        ]}))
        .unwrap();
        assert_eq!(exact_custom(list.clone(), "Trial User").map(|p| p.id), Some("mine".to_owned()));
        assert_eq!(exact_custom(list, "Trial"), None);
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(
            query_string(&[("name", "Segment RT: Trial User — usr&x=1"), ("limit", "100")]),
            "name=Segment%20RT%3A%20Trial%20User%20%E2%80%94%20usr%26x%3D1&limit=100"
        );
    }

    #[tokio::test]
    async fn a_deadline_closer_than_a_minimal_attempt_sends_nothing() {
        let client = client();
        let request = MaveraRequest::Research(crate::mavera::MaveChatRequest {
            message: "m".into(),
            thread_id: None,
            workspace_id: None,
        });
        let err = client.send(&request, Instant::now() + Duration::from_secs(1)).await.unwrap_err();
        assert!(matches!(err, MaveraError::NoTimeLeft { .. }), "{err:?}");
        assert_eq!(err.class(), ErrorClass::Transient);
    }
}
