//! `relay send`: signs a JSON payload the way its sender would and POSTs it, to `relay
//! serve` by default or to a deployed API (`--url`). Segment signs the raw body with
//! HMAC-SHA1 (`X-Signature`); Customer.io signs `v0:{timestamp}:{body}` with HMAC-SHA256
//! (`X-CIO-Signature`, `X-CIO-Timestamp` = now). The signing functions are the ones the
//! verifiers are tested with.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use shared::config::{ProcessEnv, optional, vars};
use shared::domain::Source;
use shared::verify::{SigningSecrets, customerio, segment};

use crate::error::RelayError;

/// Where `relay serve` listens by default.
pub const DEFAULT_BASE: &str = "http://127.0.0.1:3000";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Who sends it: segment or customerio
    #[arg(value_parser = parse_source)]
    source: Source,
    /// The JSON payload, sent byte for byte as it is in the file (a Segment payload's
    /// `receivedAt`, `sentAt` and `timestamp` are set to now first, unless --keep-dates)
    file: PathBuf,
    /// Where to send it: a full webhook URL, or a base URL (e.g. a deployed API) to which
    /// /webhooks/<source> is added [default: http://127.0.0.1:3000]
    #[arg(long)]
    url: Option<String>,
    /// The signing secret [default: SEGMENT_SHARED_SECRET or CIO_WEBHOOK_SECRET, as the server reads it]
    #[arg(long)]
    secret: Option<String>,
    /// Give the event a fresh id (Segment `messageId`, Customer.io `event_id`), so that
    /// sending the same file again is a new event rather than a duplicate
    #[arg(long)]
    new_id: bool,
    /// Send a Segment payload's dates as they are in the file. Relay refuses Segment events
    /// dated over 7 days ago (a replay may have outlived its dedupe record), so by default a
    /// sample is dated now, like a fresh delivery
    #[arg(long)]
    keep_dates: bool,
}

fn parse_source(s: &str) -> Result<Source, String> {
    Source::parse(s).map_err(|e| e.to_string())
}

pub async fn run(args: Args) -> Result<ExitCode, RelayError> {
    let path = args.file.display().to_string();
    let mut body = std::fs::read(&args.file).map_err(|source| RelayError::ReadFile { path: path.clone(), source })?;
    let mut json: Value =
        serde_json::from_slice(&body).map_err(|source| RelayError::NotJson { path: path.clone(), source })?;
    if args.source == Source::Segment && !args.keep_dates && redate(&mut json) {
        body = serde_json::to_vec(&json).unwrap_or_default();
    }
    if args.new_id {
        body = with_fresh_id(args.source, &mut json);
    }

    let var = match args.source {
        Source::Segment => vars::SEGMENT_SHARED_SECRET,
        Source::CustomerIo => vars::CIO_WEBHOOK_SECRET,
    };
    let configured = args.secret.or_else(|| optional(&ProcessEnv, var));
    let secrets = SigningSecrets::new(var, configured.as_deref(), "", None)
        .map_err(|_| RelayError::NoSecret { sender: args.source.as_str(), var })?;

    let url = webhook_url(args.url.as_deref().unwrap_or(DEFAULT_BASE), args.source)?;
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(RelayError::HttpClient)?;
    let mut request = client.post(&url).header("content-type", "application/json");
    request = match args.source {
        Source::Segment => request.header(segment::SIGNATURE_HEADER, segment::sign(secrets.current(), &body)),
        Source::CustomerIo => {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0).to_string();
            let signature = customerio::sign(secrets.current(), &now, &body);
            request.header(customerio::TIMESTAMP_HEADER, now).header(customerio::SIGNATURE_HEADER, signature)
        }
    };
    let hint = if args.url.is_none() { " (is `relay serve` running?)" } else { "" };
    let unreachable = |source| RelayError::Unreachable { url: url.clone(), source, hint };
    let response = request.body(body).send().await.map_err(unreachable)?;
    let status = response.status();
    let text = response.text().await.map_err(unreachable)?;

    println!("POST {url}");
    println!("HTTP {status}");
    match serde_json::from_str::<Value>(&text).ok().and_then(|v| serde_json::to_string_pretty(&v).ok()) {
        Some(pretty) => println!("{pretty}"),
        None if !text.is_empty() => println!("{text}"),
        None => {}
    }
    Ok(if status.is_success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The webhook URL for `source`: `base` as given when it already names a webhook path.
fn webhook_url(base: &str, source: Source) -> Result<String, RelayError> {
    let parsed =
        reqwest::Url::parse(base).map_err(|e| RelayError::BadUrl(format!("--url {base:?} is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(RelayError::BadUrl(format!("--url {base:?} must start with http:// or https://")));
    }
    if parsed.path().contains("/webhooks/") {
        return Ok(base.to_owned());
    }
    Ok(format!("{}/webhooks/{}", base.trim_end_matches('/'), source.as_str()))
}

/// Sets a new event id (in each event of a batch) and returns the re-encoded body.
/// Dates a Segment payload now (each event's `receivedAt`, `sentAt`, `timestamp` and
/// `originalTimestamp` that it has). Whether anything changed.
fn redate(json: &mut Value) -> bool {
    let now = time::OffsetDateTime::now_utc();
    let Ok(now) = now.format(&time::format_description::well_known::Rfc3339) else { return false };
    let mut changed = false;
    let mut set = |event: &mut Value| {
        if let Some(object) = event.as_object_mut() {
            for field in ["receivedAt", "sentAt", "timestamp", "originalTimestamp"] {
                if let Some(value) = object.get_mut(field) {
                    *value = Value::String(now.clone());
                    changed = true;
                }
            }
        }
    };
    match json {
        Value::Array(events) => events.iter_mut().for_each(&mut set),
        event => set(event),
    }
    changed
}

fn with_fresh_id(source: Source, json: &mut Value) -> Vec<u8> {
    let field = match source {
        Source::Segment => "messageId",
        Source::CustomerIo => "event_id",
    };
    let mut set = |event: &mut Value| {
        if let Some(object) = event.as_object_mut() {
            object.insert(field.into(), Value::String(format!("relay-send-{}", uuid::Uuid::new_v4().simple())));
        }
    };
    match &mut *json {
        // A Segment Actions batch is a plain array of events.
        Value::Array(events) => events.iter_mut().for_each(&mut set),
        event => set(event),
    }
    serde_json::to_vec(json).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_get_the_webhook_path_unless_they_have_one() {
        assert_eq!(webhook_url(DEFAULT_BASE, Source::Segment).unwrap(), "http://127.0.0.1:3000/webhooks/segment");
        assert_eq!(
            webhook_url("https://abc.execute-api.us-east-1.amazonaws.com/", Source::CustomerIo).unwrap(),
            "https://abc.execute-api.us-east-1.amazonaws.com/webhooks/customerio"
        );
        assert_eq!(webhook_url("http://h:1/webhooks/segment", Source::Segment).unwrap(), "http://h:1/webhooks/segment");
        assert!(webhook_url("ftp://h", Source::Segment).is_err());
        assert!(webhook_url("not a url", Source::Segment).is_err());
    }

    #[test]
    fn fresh_ids_reach_every_event_of_a_batch() {
        let mut single = serde_json::json!({"messageId": "m1", "event": "e"});
        let body: Value = serde_json::from_slice(&with_fresh_id(Source::Segment, &mut single)).unwrap();
        assert_ne!(body["messageId"], "m1");
        let mut batch = serde_json::json!([{"messageId": "a"}, {"messageId": "b"}]);
        let body: Value = serde_json::from_slice(&with_fresh_id(Source::Segment, &mut batch)).unwrap();
        assert!(body.as_array().unwrap().iter().all(|e| e["messageId"].as_str().unwrap().starts_with("relay-send-")));
        let mut cio = serde_json::json!({"event_id": "x", "metric": "bounced"});
        let body: Value = serde_json::from_slice(&with_fresh_id(Source::CustomerIo, &mut cio)).unwrap();
        assert_ne!(body["event_id"], "x");
    }
}
