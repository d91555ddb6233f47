//! The checks that leave a trace, run only with `--send-test-messages`: a test message to the
//! Slack webhook and a signed test event (Standard Webhooks) to the result webhook.
//!
//! They read the destinations' own variables and sign as the webhook destination does
//! (`shared::deliver::webhook`), so a test event that verifies proves the real ones will.

use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::Url;
use serde_json::json;
use shared::config;
use shared::deliver::WebhookSecret;
use shared::deliver::webhook::signature_header;
use shared::vars::{
    RESULT_WEBHOOK_ALLOW_LOCAL, RESULT_WEBHOOK_SECRET, RESULT_WEBHOOK_SECRET_PREVIOUS, RESULT_WEBHOOK_URL,
    SLACK_WEBHOOK_URL,
};

use super::{Line, Sources, Verdict};

const FLAG: &str = "pass --send-test-messages to send one";

fn http(sources: &Sources<'_>) -> Result<reqwest::Client, Verdict> {
    reqwest::Client::builder()
        .timeout(sources.timeout)
        // A redirect is a failure for both (Slack's URLs do not redirect; Standard Webhooks
        // senders must not follow one).
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| Verdict::fail(format!("cannot build an HTTPS client: {e}"), "report it"))
}

/// A URL that is a credential is shown by its host only.
fn host_of(url: &Url) -> String {
    url.host_str().unwrap_or("?").to_owned()
}

pub async fn slack(sources: &Sources<'_>) -> Line {
    const CHECK: &str = "slack";
    let verdict = match config::optional(sources.vars, SLACK_WEBHOOK_URL) {
        None => Verdict::Skip("SLACK_WEBHOOK_URL is not set (no Slack destination)".into()),
        Some(_) if !sources.send_test_messages => Verdict::Skip(format!("SLACK_WEBHOOK_URL is set; {FLAG}")),
        Some(url) => post_to_slack(sources, &url).await,
    };
    Line { check: CHECK, verdict }
}

async fn post_to_slack(sources: &Sources<'_>, url: &str) -> Verdict {
    let Ok(parsed) = Url::parse(url)
        .map_err(|_| ())
        .and_then(|u| if u.scheme() == "https" || is_loopback(&u) { Ok(u) } else { Err(()) })
    else {
        return Verdict::fail(
            "SLACK_WEBHOOK_URL is not an https URL",
            sources.origin.store(SLACK_WEBHOOK_URL)
                + " to the incoming webhook's URL (https://hooks.slack.com/services/…)",
        );
    };
    let http = match http(sources) {
        Ok(http) => http,
        Err(verdict) => return verdict,
    };
    let text = format!(
        "mavera-relay `relay doctor` for {}: a test message at {} (nothing to do)",
        sources.origin.label(),
        now_rfc3339()
    );
    let host = host_of(&parsed);
    let answer = match http.post(parsed).json(&json!({ "text": text })).send().await {
        Ok(answer) => answer,
        Err(e) => {
            return Verdict::fail(
                format!("no answer from {host}: {}", e.without_url()),
                "check network access and try again",
            );
        }
    };
    let status = answer.status();
    let body = answer.text().await.unwrap_or_default();
    let said = body.trim();
    match status.as_u16() {
        200..=299 => Verdict::Ok(format!(
            "Slack ({host}) took a test message ({})",
            if said.is_empty() { "no body" } else { said }
        )),
        // Slack's errors are plain words: no_service for a revoked URL, channel_is_archived…
        404 | 410 | 403 => Verdict::fail(
            format!("Slack refused the test message ({status} {said})"),
            sources.origin.store(SLACK_WEBHOOK_URL)
                + " to a live incoming webhook: the URL was revoked or its channel archived or removed",
        ),
        _ => Verdict::fail(format!("Slack answered {status} {said}"), "try again; see Slack's message"),
    }
}

pub async fn result_webhook(sources: &Sources<'_>) -> Line {
    const CHECK: &str = "result-webhook";
    let url = config::optional(sources.vars, RESULT_WEBHOOK_URL);
    let secret = config::optional(sources.vars, RESULT_WEBHOOK_SECRET);
    let verdict = match (url, secret) {
        (None, None) => Verdict::Skip("RESULT_WEBHOOK_URL is not set (no signed webhook destination)".into()),
        (Some(_), None) => Verdict::fail(
            "RESULT_WEBHOOK_URL is set without RESULT_WEBHOOK_SECRET",
            sources.origin.store(RESULT_WEBHOOK_SECRET) + " (whsec_… : the receiver verifies with it)",
        ),
        (None, Some(_)) => Verdict::fail(
            "RESULT_WEBHOOK_SECRET is set without RESULT_WEBHOOK_URL",
            sources.origin.store(RESULT_WEBHOOK_URL),
        ),
        (Some(_), Some(_)) if !sources.send_test_messages => {
            Verdict::Skip(format!("RESULT_WEBHOOK_URL and RESULT_WEBHOOK_SECRET are set; {FLAG}"))
        }
        (Some(url), Some(secret)) => send_signed(sources, &url, &secret).await,
    };
    Line { check: CHECK, verdict }
}

async fn send_signed(sources: &Sources<'_>, url: &str, secret: &str) -> Verdict {
    let allow_local = config::flag(sources.vars, RESULT_WEBHOOK_ALLOW_LOCAL, false).unwrap_or(false);
    let parsed = match Url::parse(url) {
        Ok(u) if u.scheme() == "https" || (allow_local && u.scheme() == "http") => u,
        _ => {
            return Verdict::fail(
                "RESULT_WEBHOOK_URL is not an https URL",
                sources.origin.store(RESULT_WEBHOOK_URL) + " to your receiver's https URL",
            );
        }
    };
    let mut secrets = Vec::new();
    for (var, value) in [
        (RESULT_WEBHOOK_SECRET, Some(secret.to_owned())),
        (RESULT_WEBHOOK_SECRET_PREVIOUS, config::optional(sources.vars, RESULT_WEBHOOK_SECRET_PREVIOUS)),
    ] {
        let Some(value) = value else { continue };
        match WebhookSecret::parse(var, &value) {
            Ok(secret) => secrets.push(secret),
            Err(_) => {
                return Verdict::fail(
                    format!("{var} is not a Standard Webhooks secret"),
                    sources.origin.store(var) + " to `whsec_` followed by the base64 of 24 to 64 random bytes",
                );
            }
        }
    }
    let id = format!("msg_doctor_{}", uuid::Uuid::new_v4().simple());
    let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let body = json!({
        "type": "relay.doctor.test",
        "timestamp": now_rfc3339(),
        "data": {"message": "A test event from `relay doctor`; nothing to do.", "from": sources.origin.label()},
    })
    .to_string();
    let signature = signature_header(&secrets, &id, timestamp, body.as_bytes());
    let http = match http(sources) {
        Ok(http) => http,
        Err(verdict) => return verdict,
    };
    let host = host_of(&parsed);
    let answer = http
        .post(parsed)
        .header("content-type", "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await;
    let status = match answer {
        Ok(answer) => answer.status(),
        Err(e) => {
            return Verdict::fail(
                format!("no answer from {host}: {}", e.without_url()),
                "check that the receiver is up and reachable",
            );
        }
    };
    match status.as_u16() {
        200..=299 => Verdict::Ok(format!("the receiver at {host} accepted a signed test event ({status})")),
        401 | 403 => Verdict::fail(
            format!("the receiver at {host} refused the signed test event ({status})"),
            "check that RESULT_WEBHOOK_SECRET is the secret the receiver verifies with",
        ),
        410 => Verdict::fail(
            format!("the receiver at {host} answered 410: it asks to be disabled"),
            sources.origin.store(RESULT_WEBHOOK_URL) + " to a live endpoint, or remove the destination",
        ),
        300..=399 => Verdict::fail(
            format!("the receiver at {host} redirected ({status})"),
            "use the final URL: redirects are not followed",
        ),
        _ => Verdict::fail(format!("the receiver at {host} answered {status}"), "see the receiver's logs"),
    }
}

fn is_loopback(url: &Url) -> bool {
    url.scheme() == "http" && matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"))
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "now".to_owned())
}
