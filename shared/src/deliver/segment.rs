//! Segment, through the HTTP Tracking API: a `track` (`Mavera Research Completed`, …) with the
//! result as properties, and on request an `identify` with it as traits, for the user who
//! triggered the job. The source's write key is the Basic auth user name (`SEGMENT_WRITE_KEY`),
//! the region picks the host (`SEGMENT_REGION`: an EU workspace's events sent to the US host
//! silently disappear).
//!
//! Each call's `messageId` is derived from the job key, so Segment drops a repeat (it dedupes
//! by `messageId` for about a day): a call that timed out is simply sent again. A call stays
//! within Segment's 32 KB; a long text is cut to fit and `content_truncated` says so.

use async_trait::async_trait;
use http::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::cio_track::basic_auth;
use super::context::Context;
use super::options::SegmentOptions;
use super::send::{Port, SendError};
use super::transport::{self, exchange};
use super::{InvalidSetting, checked_url, fit_text};
use crate::domain::truncate_chars;
use crate::template::{MISSING, render_entries};
use crate::vars;

/// Segment refuses a call over 32 KB; a margin stays for what Segment adds.
pub const MAX_CALL_BYTES: usize = 32 * 1024 - 512;
/// Traits hold a short excerpt; the `track` carries the text.
const MAX_TRAIT_CHARS: usize = 1000;
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentCallKind {
    Track,
    Identify,
}

impl SegmentCallKind {
    pub fn path(self) -> &'static str {
        match self {
            SegmentCallKind::Track => "/v1/track",
            SegmentCallKind::Identify => "/v1/identify",
        }
    }
}

/// One Tracking API call.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentCall {
    pub kind: SegmentCallKind,
    pub body: Value,
}

/// The calls one job makes, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentCalls {
    pub calls: Vec<SegmentCall>,
}

/// Builds the calls for one job; a job without a user to send them for fails for good.
pub fn calls(ctx: &Context<'_>, options: &SegmentOptions) -> Result<SegmentCalls, SendError> {
    let user = options.user_id.render(ctx);
    let user = user.trim();
    if user.is_empty() || user == MISSING {
        return Err(SendError::Permanent {
            reason: format!(
                "no user to send for: `{}` reads `{}` for this event; set `[rule.segment] user_id` to a field the event has",
                options.user_id.as_str(),
                if user.is_empty() { "(empty)" } else { user }
            ),
        });
    }
    let context = json!({"library": {"name": "mavera-relay", "version": env!("CARGO_PKG_VERSION")}});
    let timestamp = ctx.at_rfc3339();

    let mut properties = Map::new();
    properties.insert("rule".into(), json!(ctx.rule.as_str()));
    properties.insert("record".into(), json!(ctx.key.as_str()));
    properties.insert("source".into(), json!(ctx.event.source.as_str()));
    properties.insert("event_name".into(), json!(ctx.event.name));
    properties.insert("event_id".into(), json!(ctx.event.id.as_str()));
    ctx.put_result_facts(&mut properties);
    properties.extend(render_entries(&options.properties, ctx));
    let mut track = json!({
        "userId": user,
        "event": options.event,
        "messageId": ctx.stable_id("track"),
        "timestamp": timestamp,
        "properties": properties,
        "context": context,
    });
    if let Some(text) = ctx.result.text() {
        track["properties"]["content_truncated"] = json!(ctx.result.truncated());
        if fit_text(&mut track, "/properties", "content", text, MAX_CALL_BYTES) {
            track["properties"]["content_truncated"] = json!(true);
        }
    }
    let mut calls = vec![SegmentCall { kind: SegmentCallKind::Track, body: track }];

    if options.identify {
        let mut traits = Map::new();
        for (name, value) in ctx.profile_fields() {
            traits.insert(name.into(), json!(truncate_chars(value, MAX_TRAIT_CHARS)));
        }
        traits.insert("mavera_updated_at".into(), json!(timestamp));
        let identify = json!({
            "userId": user,
            "messageId": ctx.stable_id("identify"),
            "timestamp": timestamp,
            "traits": traits,
            "context": context,
        });
        calls.push(SegmentCall { kind: SegmentCallKind::Identify, body: identify });
    }
    Ok(SegmentCalls { calls })
}

/// Where a Segment workspace lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SegmentRegion {
    #[default]
    Us,
    Eu,
}

impl SegmentRegion {
    pub fn parse(value: &str) -> Result<Self, InvalidSetting> {
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "us" => Ok(SegmentRegion::Us),
            "eu" => Ok(SegmentRegion::Eu),
            _ => Err(InvalidSetting::new(
                vars::SEGMENT_REGION,
                "use `us` or `eu` (the region of your Segment workspace; EU events sent to the US host are lost)",
            )),
        }
    }

    pub fn host(self) -> &'static str {
        match self {
            SegmentRegion::Us => "https://api.segment.io",
            SegmentRegion::Eu => "https://events.eu1.segmentapis.com",
        }
    }
}

/// `SEGMENT_WRITE_KEY` and `SEGMENT_REGION`. `Debug` redacts the key.
#[derive(Clone)]
pub struct SegmentConfig {
    write_key: SecretString,
    pub region: SegmentRegion,
    /// Replaces the region's host (a local stand-in).
    pub base_url: Option<String>,
}

impl std::fmt::Debug for SegmentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentConfig")
            .field("write_key", &"[REDACTED]")
            .field("region", &self.region)
            .field("base_url", &self.base_url)
            .finish()
    }
}

impl SegmentConfig {
    pub fn new(write_key: &str, region: SegmentRegion) -> Result<Self, InvalidSetting> {
        let key = write_key.trim();
        if key.is_empty() || key.contains(':') || key.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(InvalidSetting::new(
                vars::SEGMENT_WRITE_KEY,
                "copy the write key of your HTTP API source again (Segment: Connections > Sources > the source > Settings > API Keys)",
            ));
        }
        Ok(SegmentConfig { write_key: SecretString::from(key), region, base_url: None })
    }

    /// Sends to `url` instead of the region's host (a stand-in; `http` only to loopback).
    pub fn with_base_url(mut self, url: &str) -> Result<Self, InvalidSetting> {
        let url = checked_url("SEGMENT_API_URL", url)?;
        self.base_url = Some(url.as_str().trim_end_matches('/').to_owned());
        Ok(self)
    }

    pub fn base_url(&self) -> &str {
        self.base_url.as_deref().unwrap_or_else(|| self.region.host())
    }
}

/// The Tracking API adapter.
pub struct SegmentApi {
    http: reqwest::Client,
    base_url: String,
    auth: HeaderValue,
}

impl SegmentApi {
    pub fn new(config: SegmentConfig) -> Result<Self, reqwest::Error> {
        let auth = basic_auth(config.write_key.expose_secret(), "");
        Ok(SegmentApi {
            http: transport::client(reqwest::Client::builder())?,
            base_url: config.base_url().to_owned(),
            auth,
        })
    }
}

#[async_trait]
impl Port<SegmentCalls> for SegmentApi {
    async fn send(&self, calls: &SegmentCalls, deadline: Instant) -> Result<(), SendError> {
        for call in &calls.calls {
            let request = self
                .http
                .post(format!("{}{}", self.base_url, call.kind.path()))
                .header(http::header::AUTHORIZATION, self.auth.clone())
                .json(&call.body);
            let answer = exchange(request, TIMEOUT, deadline).await.map_err(|f| f.retryable("Segment"))?;
            if answer.status.is_success() {
                continue;
            }
            if let Some(transient) = answer.transient("Segment") {
                return Err(transient);
            }
            let status = answer.status.as_u16();
            let hint = match status {
                401 | 403 => "check SEGMENT_WRITE_KEY (the write key of an HTTP API source) and SEGMENT_REGION",
                400 => {
                    "Segment refused the call (over its 32 KB, or not valid); a rule's `[rule.segment]` properties may be too large"
                }
                300..=399 => "it answered a redirect, which is never followed: check SEGMENT_REGION",
                _ => "not retried",
            };
            return Err(SendError::Permanent {
                reason: format!("Segment answered {status} to {}: {} ({hint})", call.kind.path(), answer.quoted()),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::result::ResultKind;
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::deliver::result::JobResult;
    use crate::domain::{Event, EventId, JobKey, RuleName, Source};
    use crate::template::{JsonTemplate, Template};

    fn build(result: Value, kind: ResultKind, options: &SegmentOptions, key: &str) -> Result<SegmentCalls, SendError> {
        let event = Event {
            source: Source::Segment,
            id: EventId::parse("e1").unwrap(),
            name: "plan_upgraded".into(),
            user_id: Some("u1".into()),
            fields: json!({"user_id": "u1", "plan": "pro"}).as_object().unwrap().clone(),
        };
        let result = JobResult::new(result);
        let (key, rule) = (JobKey::from_stored(key), RuleName::parse("upgrade").unwrap());
        let at = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        calls(&Context { key: &key, rule: &rule, event: &event, result: &result, kind, at }, options)
    }

    fn options(identify: bool) -> SegmentOptions {
        let properties = match JsonTemplate::parse(json!({"plan": "{plan}"})).unwrap() {
            JsonTemplate::Object(entries) => entries,
            _ => unreachable!(),
        };
        SegmentOptions {
            user_id: Template::parse("{user_id}").unwrap(),
            event: "Mavera Research Completed".into(),
            identify,
            properties,
        }
    }

    #[test]
    fn a_track_and_an_identify_with_stable_message_ids() {
        let result = json!({"action": "research", "thread_id": "th_1", "content": "Upgrade playbook", "credits": 25.0});
        let first = build(result.clone(), ResultKind::Research, &options(true), "segment#e1#upgrade").unwrap();
        let again = build(result.clone(), ResultKind::Research, &options(true), "segment#e1#upgrade").unwrap();
        let other = build(result, ResultKind::Research, &options(true), "segment#e2#upgrade").unwrap();
        let track = &first.calls[0].body;
        assert_eq!(first.calls[0].kind, SegmentCallKind::Track);
        assert_eq!(
            (track["userId"].as_str(), track["event"].as_str()),
            (Some("u1"), Some("Mavera Research Completed"))
        );
        assert_eq!(track["properties"]["content"], "Upgrade playbook");
        assert_eq!(track["properties"]["plan"], "pro");
        assert_eq!(track["properties"]["thread_id"], "th_1");
        assert_eq!(track["timestamp"], "2026-11-18T11:06:40Z");
        let identify = &first.calls[1].body;
        assert_eq!(identify["traits"]["mavera_last_research"], "Upgrade playbook");
        assert_eq!(track["messageId"], again.calls[0].body["messageId"], "the same job, the same messageId");
        assert_ne!(track["messageId"], identify["messageId"]);
        assert_ne!(track["messageId"], other.calls[0].body["messageId"]);
    }

    #[test]
    fn a_call_stays_within_32_kb() {
        let long = "ü".repeat(40_000);
        let calls =
            build(json!({"action": "research", "content": long}), ResultKind::Research, &options(false), "k").unwrap();
        let size = calls.calls[0].body.to_string().len();
        assert!(size <= MAX_CALL_BYTES && size > MAX_CALL_BYTES - 200, "{size}");
        assert_eq!(calls.calls[0].body["properties"]["content_truncated"], true);
    }

    #[test]
    fn keys_and_regions_are_checked() {
        assert_eq!(SegmentRegion::parse("EU").unwrap().host(), "https://events.eu1.segmentapis.com");
        assert!(SegmentRegion::parse("asia").is_err());
        let config = SegmentConfig::new("wk_secret", SegmentRegion::Us).unwrap();
        assert_eq!(config.base_url(), "https://api.segment.io");
        assert!(!format!("{config:?}").contains("wk_secret"));
        assert!(SegmentConfig::new(" ", SegmentRegion::Us).is_err());
    }
}
