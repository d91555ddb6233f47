//! A signed webhook to the customer's own endpoint (`RESULT_WEBHOOK_URL`), as Standard
//! Webhooks specifies (standardwebhooks.com):
//!
//! - `webhook-id`: derived from the job key, the same on every retry, so the receiver can
//!   drop a repeat; a send that timed out is simply sent again.
//! - `webhook-timestamp`: this attempt's Unix seconds.
//! - `webhook-signature`: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, keyed with the
//!   bytes of a `whsec_` secret (`RESULT_WEBHOOK_SECRET`); during a rotation one signature per
//!   secret (`RESULT_WEBHOOK_SECRET_PREVIOUS` too), space-separated.
//! - The body: `{"type", "timestamp", "data"}`, kept under the spec's recommended 20 KB.
//!
//! The URL is user-supplied, so calling it must not reach inside the network the relay runs
//! in: only `https`, never a private, loopback, link-local (the instance metadata service) or
//! otherwise internal address, checked for a literal address in the URL and again for every
//! address a name resolves to when connecting (so a name that later resolves inside is still
//! refused), with proxies off. `RESULT_WEBHOOK_ALLOW_LOCAL=true` lifts this for local
//! development only. A redirect is never followed. A `410 Gone` disables the endpoint until
//! the process restarts, as the spec asks.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde_json::json;
use sha2::Sha256;
use tokio::time::Instant;

use super::context::Context;
use super::options::WebhookOptions;
use super::send::{Port, SendError};
use super::transport::{self, exchange};
use super::{InvalidSetting, fit_text, lock};
use crate::store::epoch_secs;
use crate::vars;

/// Standard Webhooks recommends payloads under about 20 KB.
pub const MAX_BODY_BYTES: usize = 20_000;
/// The spec suggests 15 to 30 s before a send counts as failed.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);
const SECRET_PREFIX: &str = "whsec_";

/// One message, as signed and sent.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookMessage {
    /// `webhook-id`: the same for every attempt at this job's message.
    pub id: String,
    pub body: String,
}

/// Builds the message for one job.
pub fn message(ctx: &Context<'_>, options: &WebhookOptions) -> WebhookMessage {
    let mut data = json!({
        "rule": ctx.rule.as_str(),
        "record": ctx.key.as_str(),
        "event": {
            "source": ctx.event.source.as_str(),
            "id": ctx.event.id.as_str(),
            "name": ctx.event.name,
            "user_id": ctx.event.user_id,
        },
    });
    ctx.put_result_facts(data.as_object_mut().expect("an object"));
    let mut payload = json!({"type": options.event_type, "timestamp": ctx.at_rfc3339(), "data": data});
    if let Some(text) = ctx.result.text() {
        payload["data"]["content_truncated"] = json!(ctx.result.truncated());
        if fit_text(&mut payload, "/data", "content", text, MAX_BODY_BYTES) {
            payload["data"]["content_truncated"] = json!(true);
        }
    }
    WebhookMessage { id: ctx.stable_id("webhook"), body: payload.to_string() }
}

/// A signing secret: the bytes behind `whsec_<base64>`. `Debug` shows nothing of it.
#[derive(Clone)]
pub struct WebhookSecret(Arc<[u8]>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret([REDACTED])")
    }
}

impl WebhookSecret {
    /// Reads `whsec_` followed by the base64 of 24 to 64 bytes. Errors never quote it.
    pub fn parse(name: &'static str, value: &str) -> Result<Self, InvalidSetting> {
        let problem = "a Standard Webhooks secret is `whsec_` followed by the base64 of 24 to 64 random bytes (e.g. `echo whsec_$(openssl rand -base64 32)`)";
        let encoded = value.trim().strip_prefix(SECRET_PREFIX).ok_or_else(|| InvalidSetting::new(name, problem))?;
        let bytes = STANDARD.decode(encoded).map_err(|_| InvalidSetting::new(name, problem))?;
        if !(24..=64).contains(&bytes.len()) {
            return Err(InvalidSetting::new(name, problem));
        }
        Ok(WebhookSecret(bytes.into()))
    }
}

/// The base64 HMAC-SHA256 of `{id}.{timestamp}.{body}` under `secret`.
pub fn sign(secret: &WebhookSecret, id: &str, timestamp: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(&secret.0).expect("HMAC takes a key of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    STANDARD.encode(mac.finalize().into_bytes())
}

/// The `webhook-signature` header: `v1,<signature>` for each secret, space-separated.
pub fn signature_header(secrets: &[WebhookSecret], id: &str, timestamp: u64, body: &[u8]) -> String {
    secrets.iter().map(|s| format!("v1,{}", sign(s, id, timestamp, body))).collect::<Vec<_>>().join(" ")
}

/// `RESULT_WEBHOOK_URL`, its secrets and whether local addresses are allowed.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    url: reqwest::Url,
    secrets: Vec<WebhookSecret>,
    allow_local: bool,
}

impl WebhookConfig {
    /// Checks the URL (https, no internal address unless `allow_local`) and the secrets
    /// (the current one first, then the one being rotated out or in).
    pub fn new(url: &str, secret: &str, previous: Option<&str>, allow_local: bool) -> Result<Self, InvalidSetting> {
        let name = vars::RESULT_WEBHOOK_URL;
        let url = reqwest::Url::parse(url.trim())
            .map_err(|e| InvalidSetting::new(name, &format!("not a URL ({e}); use https://your-host/path")))?;
        match url.scheme() {
            "https" => {}
            "http" if allow_local => {}
            _ => {
                return Err(InvalidSetting::new(
                    name,
                    "use https: results and their signatures never cross the network in clear (plain http only with RESULT_WEBHOOK_ALLOW_LOCAL=true, for local development)",
                ));
            }
        }
        if !allow_local {
            let host = url.host_str().ok_or_else(|| InvalidSetting::new(name, "the URL names no host"))?;
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            let internal = match bare.parse::<IpAddr>() {
                Ok(ip) => !is_public(ip),
                Err(_) => {
                    let d = bare.trim_end_matches('.').to_ascii_lowercase();
                    d == "localhost" || d.ends_with(".localhost") || d.ends_with(".internal") || d.ends_with(".local")
                }
            };
            if internal {
                return Err(InvalidSetting::new(
                    name,
                    "it points inside a private network (a private, loopback, link-local or internal address), which the relay never calls (RESULT_WEBHOOK_ALLOW_LOCAL=true allows it for local development)",
                ));
            }
        }
        let mut secrets = vec![WebhookSecret::parse(vars::RESULT_WEBHOOK_SECRET, secret)?];
        if let Some(previous) = previous.filter(|p| !p.trim().is_empty()) {
            secrets.push(WebhookSecret::parse(vars::RESULT_WEBHOOK_SECRET_PREVIOUS, previous)?);
        }
        Ok(WebhookConfig { url, secrets, allow_local })
    }

    /// The host the results go to (the URL's path may carry a token, so it is not shown).
    pub fn host(&self) -> String {
        self.url.host_str().unwrap_or("?").to_owned()
    }
}

/// Whether `ip` is on the public internet: not private, loopback, link-local, shared,
/// documentation, multicast, broadcast or otherwise reserved (an IPv4 address inside IPv6
/// is judged as IPv4).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let s = v6.segments();
            let nat64 = s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0];
            if nat64 {
                let [a, b] = s[6].to_be_bytes();
                let [c, d] = s[7].to_be_bytes();
                return is_public_v4(Ipv4Addr::new(a, b, c, d));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || s[0..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible, deprecated
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // shared address space (carrier NAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

/// Resolves names as usual, then keeps only public addresses: a name that resolves inside
/// the network is refused at the moment of connecting, whatever it resolved to before.
struct PublicAddressesOnly;

impl Resolve for PublicAddressesOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = found.into_iter().filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                let refused: Box<dyn std::error::Error + Send + Sync> = format!(
                    "{host} resolves only to private, loopback, link-local or internal addresses, which the relay never calls"
                )
                .into();
                return Err(refused);
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

/// The signed-webhook adapter.
pub struct SignedWebhook {
    http: reqwest::Client,
    url: reqwest::Url,
    secrets: Vec<WebhookSecret>,
    /// Set once the endpoint answers 410 Gone: the spec says to stop sending to it.
    gone: Mutex<Option<String>>,
}

impl SignedWebhook {
    pub fn new(config: WebhookConfig) -> Result<Self, reqwest::Error> {
        // Proxies off: a proxy would resolve the name itself, past the address check.
        let mut builder = reqwest::Client::builder().no_proxy();
        if !config.allow_local {
            builder = builder.dns_resolver(Arc::new(PublicAddressesOnly));
        }
        Ok(SignedWebhook {
            http: transport::client(builder)?,
            url: config.url,
            secrets: config.secrets,
            gone: Mutex::new(None),
        })
    }
}

#[async_trait]
impl Port<WebhookMessage> for SignedWebhook {
    async fn send(&self, message: &WebhookMessage, deadline: Instant) -> Result<(), SendError> {
        if let Some(since) = lock(&self.gone).clone() {
            return Err(SendError::Permanent {
                reason: format!(
                    "the endpoint answered 410 Gone {since}, asking to be disabled; nothing more is sent to it until the worker restarts with a working RESULT_WEBHOOK_URL"
                ),
            });
        }
        let timestamp = epoch_secs(SystemTime::now());
        let signature = signature_header(&self.secrets, &message.id, timestamp, message.body.as_bytes());
        let request = self
            .http
            .post(self.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &message.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(message.body.clone());
        let answer = exchange(request, TIMEOUT, deadline).await.map_err(|f| f.retryable("the webhook endpoint"))?;
        if answer.status.is_success() {
            return Ok(());
        }
        if let Some(transient) = answer.transient("the webhook endpoint") {
            return Err(transient);
        }
        let status = answer.status.as_u16();
        let hint = match status {
            410 => {
                *lock(&self.gone) = Some(format!("at {}", crate::store::rfc3339(SystemTime::now())));
                "Gone: the endpoint asks to be disabled, so nothing more is sent to it until the worker restarts"
            }
            300..=399 => "a redirect, which is never followed: set RESULT_WEBHOOK_URL to the final URL",
            401 | 403 => "the endpoint refused the request: check that it verifies with the same RESULT_WEBHOOK_SECRET",
            _ => "the endpoint refused the message; not retried",
        };
        Err(SendError::Permanent {
            reason: format!("the webhook endpoint answered {status} {}: {hint}", answer.quoted()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_specs_known_answer() {
        let secret = WebhookSecret::parse("S", "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        let body = br#"{"email":"test@example.com","username":"test_user"}"#;
        assert_eq!(
            signature_header(&[secret], "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk", 1649367553, body),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    #[test]
    fn a_rotation_signs_with_both_secrets() {
        let a = WebhookSecret::parse("S", &format!("whsec_{}", STANDARD.encode([1u8; 32]))).unwrap();
        let b = WebhookSecret::parse("S", &format!("whsec_{}", STANDARD.encode([2u8; 32]))).unwrap();
        let header = signature_header(&[a.clone(), b.clone()], "id", 1, b"{}");
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts, [format!("v1,{}", sign(&a, "id", 1, b"{}")), format!("v1,{}", sign(&b, "id", 1, b"{}"))]);
    }

    #[test]
    fn secrets_must_be_whsec_and_are_never_quoted() {
        for bad in [
            "C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
            "whsec_not*base64",
            "whsec_AAAA",
            &format!("whsec_{}", STANDARD.encode([0u8; 65])),
        ] {
            let err = WebhookSecret::parse("RESULT_WEBHOOK_SECRET", bad).unwrap_err();
            assert!(err.to_string().starts_with("RESULT_WEBHOOK_SECRET is not valid"), "{err}");
            assert!(!err.to_string().contains(bad.trim_start_matches("whsec_")), "{err}");
        }
        let s = WebhookSecret::parse("S", "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        assert_eq!(format!("{s:?}"), "WebhookSecret([REDACTED])");
    }

    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

    #[test]
    fn only_https_to_public_hosts_unless_local_development_allows_it() {
        assert!(WebhookConfig::new("https://hooks.example.com/mavera", SECRET, None, false).is_ok());
        for bad in [
            "http://hooks.example.com/mavera",
            "https://127.0.0.1/x",
            "https://localhost:8443/x",
            "https://10.1.2.3/x",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/x",
            "https://[fd00::1]/x",
            "https://[::ffff:192.168.1.1]/x",
            "https://100.64.0.1/x",
            "https://metadata.google.internal/x",
            "ftp://hooks.example.com/x",
        ] {
            assert!(WebhookConfig::new(bad, SECRET, None, false).is_err(), "{bad} must be refused");
        }
        assert!(WebhookConfig::new("http://127.0.0.1:9000/hook", SECRET, None, true).is_ok(), "local development");
    }

    #[test]
    fn public_addresses_are_told_from_internal_ones() {
        for public in ["93.184.215.14", "8.8.8.8", "2606:4700::1111", "64:ff9b::808:808"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
        for internal in [
            "10.0.0.1",
            "172.16.5.4",
            "192.168.0.1",
            "127.0.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.100.100.100",
            "255.255.255.255",
            "224.0.0.1",
            "198.18.0.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "2001:db8::1",
        ] {
            assert!(!is_public(internal.parse().unwrap()), "{internal}");
        }
    }

    #[tokio::test]
    async fn a_name_that_resolves_inside_is_refused_when_connecting() {
        let resolved = PublicAddressesOnly.resolve("localhost".parse().unwrap()).await;
        let err = resolved.err().expect("localhost resolves to loopback only");
        assert!(err.to_string().contains("never calls"), "{err}");
    }
}
