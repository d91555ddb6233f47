//! The HTTPS plumbing the four adapters share: one way to build a client (rustls, never
//! following a redirect, a connect timeout), one way to make a request by a deadline and read
//! a bounded answer, and one way to tell a request that never left from one that may have
//! arrived. Error texts never carry a URL: a Slack webhook URL is itself the credential.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode};
use tokio::time::Instant;

use super::send::SendError;
use crate::retry::retry_after;
use crate::telemetry::chain;

/// Long enough for DNS, TCP and TLS to a distant region; a stuck connect fails fast.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// What is read of an answer's body, for error messages.
const MAX_BODY: usize = 2048;
/// What an error message quotes of it.
const MAX_QUOTED: usize = 200;

/// A client for one destination. A redirect is never followed: it would turn a POST into a
/// GET, or carry the credentials to another host.
pub fn client(builder: reqwest::ClientBuilder) -> Result<reqwest::Client, reqwest::Error> {
    builder
        .connect_timeout(CONNECT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("mavera-relay/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// An answer: its status, headers and the start of its body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    /// The body as an error message quotes it: one line, at most 200 characters.
    pub fn quoted(&self) -> String {
        let line: String =
            self.body.trim().chars().map(|c| if c.is_control() { ' ' } else { c }).take(MAX_QUOTED).collect();
        if line.is_empty() { "(no body)".to_owned() } else { line }
    }

    /// The common part of every destination's answer handling: a 429, a 5xx (and 408) are
    /// transient, with the wait the server asked for.
    pub fn transient(&self, service: &str) -> Option<SendError> {
        let status = self.status.as_u16();
        if status == 429 || status == 408 || self.status.is_server_error() {
            let wait = retry_after(&self.headers, SystemTime::now());
            let reason = format!("{service} answered {status} {}", self.quoted());
            return Some(SendError::Retry { reason, wait });
        }
        None
    }
}

/// Why a request got no answer.
#[derive(Debug)]
pub enum Failure {
    /// The connection was never made (DNS, TCP, TLS): nothing was sent.
    NotSent(String),
    /// It failed or timed out after the request may have gone out.
    MaybeSent(String),
}

impl Failure {
    /// As a send error for a destination that drops repeats (or where a repeat is
    /// harmless): retried either way.
    pub fn retryable(self, service: &str) -> SendError {
        let reason = match self {
            Failure::NotSent(why) => format!("could not connect to {service}: {why}"),
            Failure::MaybeSent(why) => format!("{service} did not answer: {why}"),
        };
        SendError::Retry { reason, wait: None }
    }

    /// As a send error for a destination that cannot drop a repeat: only a request that
    /// never left is retried.
    pub fn at_most_once(self, service: &str) -> SendError {
        match self {
            Failure::NotSent(why) => {
                SendError::Retry { reason: format!("could not connect to {service}: {why}"), wait: None }
            }
            Failure::MaybeSent(why) => SendError::Uncertain {
                reason: format!(
                    "{service} did not answer ({why}), so it may or may not have arrived; not sent again, as {service} cannot drop a repeat"
                ),
            },
        }
    }
}

/// Sends `request`, giving it `timeout` but never past `deadline`.
pub async fn exchange(
    request: reqwest::RequestBuilder,
    timeout: Duration,
    deadline: Instant,
) -> Result<Answer, Failure> {
    let until = deadline.min(Instant::now() + timeout);
    let waited = Instant::now();
    let outcome = tokio::time::timeout_at(until, async {
        let mut response = request.send().await?;
        let status = response.status();
        let headers = response.headers().clone();
        let mut body = Vec::new();
        // Read the whole answer, so an HTTP/1.1 connection goes back to the pool, keeping
        // only its start: a receiver could answer with anything.
        while let Some(chunk) = response.chunk().await? {
            if body.len() < MAX_BODY {
                body.extend_from_slice(&chunk[..chunk.len().min(MAX_BODY - body.len())]);
            }
        }
        Ok::<_, reqwest::Error>(Answer { status, headers, body: String::from_utf8_lossy(&body).into_owned() })
    })
    .await;
    match outcome {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(e)) => {
            // The URL can be the credential itself (a Slack webhook): never in a message.
            let connect = e.is_connect();
            let why = chain(&e.without_url()).to_string();
            Err(if connect { Failure::NotSent(why) } else { Failure::MaybeSent(why) })
        }
        Err(_) => Err(Failure::MaybeSent(format!("no answer within {} ms", waited.elapsed().as_millis()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer { status: StatusCode::from_u16(status).unwrap(), headers: HeaderMap::new(), body: body.into() }
    }

    #[test]
    fn bodies_are_quoted_on_one_short_line() {
        assert_eq!(answer(400, "invalid_payload\n").quoted(), "invalid_payload");
        assert_eq!(answer(400, "a\nb").quoted(), "a b");
        assert_eq!(answer(400, &"x".repeat(500)).quoted().len(), MAX_QUOTED);
        assert_eq!(answer(500, "").quoted(), "(no body)");
    }

    #[test]
    fn rate_limits_and_server_errors_are_transient() {
        assert!(matches!(answer(429, "").transient("Slack"), Some(SendError::Retry { .. })));
        assert!(matches!(answer(503, "").transient("Slack"), Some(SendError::Retry { .. })));
        assert!(answer(404, "no_service").transient("Slack").is_none());
        assert!(answer(200, "ok").transient("Slack").is_none());
    }

    #[tokio::test]
    async fn a_refused_connection_was_not_sent_and_names_no_url() {
        // A port nothing listens on: bind one, then drop it.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let http = client(reqwest::Client::builder()).unwrap();
        let url = format!("http://127.0.0.1:{port}/services/T000/B000/secret-part");
        let failure = exchange(http.post(url), Duration::from_secs(5), Instant::now() + Duration::from_secs(5))
            .await
            .unwrap_err();
        let Failure::NotSent(why) = failure else { panic!("a refused connection sent nothing: {failure:?}") };
        assert!(!why.contains("secret-part"), "{why}");
    }
}
