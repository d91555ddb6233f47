//! Customer.io, through the Track API (Site ID and Track API key as Basic auth, the region's
//! host): the result goes onto the person who triggered the job, as attributes
//! (`PUT /api/v1/customers/{identifier}` with `_update: true`, so a person is never created)
//! and as an event carrying the whole result (`POST …/events`), which campaigns can trigger
//! on and read in Liquid.
//!
//! Attributes: `mavera_persona_id` and `mavera_persona_name`, or `mavera_last_research` /
//! `mavera_last_generation` (cut to Customer.io's 1000 bytes on a character boundary) with
//! `mavera_thread_id` / `mavera_generation_id`, and `mavera_updated_at`, plus the rule's own.
//! `_timestamp` is the time the result was saved, so Customer.io orders a late repeat behind a
//! newer update.
//!
//! A repeated `PUT` of the same attributes is harmless, so it is retried after a timeout. An
//! event is not: Customer.io documents no way to drop a repeated one, so an event that timed
//! out may have arrived and is recorded `failed`, never sent twice (a second event could start
//! a campaign twice for one person).

use async_trait::async_trait;
use base64::Engine;
use http::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::context::Context;
use super::options::{CioOptions, TrackIdType};
use super::send::{Port, SendError};
use super::transport::{self, Answer, exchange};
use super::{InvalidSetting, checked_url, fit_text};
use crate::customerio::{CioRegion, encode_segment};
use crate::domain::truncate_bytes;
use crate::template::MISSING;
use crate::vars;

/// A Customer.io attribute value is at most 1000 bytes.
pub const MAX_ATTRIBUTE_BYTES: usize = 1000;
/// An event's `data` is at most 100,000 bytes.
pub const MAX_EVENT_DATA_BYTES: usize = 100_000;
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What goes to one person.
#[derive(Debug, Clone, PartialEq)]
pub struct CioUpdate {
    /// The person as the path names them (`cio_…` for a Customer.io id), before encoding.
    pub identifier: String,
    /// The `PUT` body, `_update` and `_timestamp` included.
    pub attributes: Map<String, Value>,
    pub event: Option<CioEvent>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CioEvent {
    pub name: String,
    pub data: Value,
}

impl CioUpdate {
    /// The attribute `PUT`'s path.
    pub fn person_path(&self) -> String {
        format!("/api/v1/customers/{}", encode_segment(&self.identifier))
    }

    /// The event `POST`'s path.
    pub fn event_path(&self) -> String {
        format!("{}/events", self.person_path())
    }

    pub fn event_body(event: &CioEvent) -> Value {
        json!({"name": event.name, "data": event.data})
    }
}

/// Builds the update for one job; a job whose person cannot be named fails for good.
pub fn update(ctx: &Context<'_>, options: &CioOptions) -> Result<CioUpdate, SendError> {
    let rendered = options.identifier.render(ctx);
    let rendered = rendered.trim();
    if rendered.is_empty() || rendered == MISSING {
        return Err(SendError::Permanent {
            reason: format!(
                "no person to update: the identifier `{}` reads `{}` for this event; set `[rule.customerio] identifier` to a field the event has",
                options.identifier.as_str(),
                if rendered.is_empty() { "(empty)" } else { rendered }
            ),
        });
    }
    let identifier = match options.id_type {
        TrackIdType::CioId if !rendered.starts_with("cio_") => format!("cio_{rendered}"),
        _ => rendered.to_owned(),
    };

    let at = ctx.at_unix_secs();
    let mut attributes = Map::new();
    attributes.insert("_update".into(), json!(true));
    attributes.insert("_timestamp".into(), json!(at));
    let mut set = |name: &str, value: Option<&str>| {
        if let Some(v) = value {
            attributes.insert(name.into(), json!(truncate_bytes(v, MAX_ATTRIBUTE_BYTES)));
        }
    };
    for (name, value) in ctx.profile_fields() {
        set(name, Some(value));
    }
    for (name, template) in &options.attributes {
        set(name, Some(&template.render(ctx)));
    }
    attributes.insert("mavera_updated_at".into(), json!(at));

    let event = options.event.as_ref().map(|name| CioEvent { name: name.clone(), data: event_data(ctx) });
    Ok(CioUpdate { identifier, attributes, event })
}

/// The whole result, with the job's facts, within Customer.io's 100,000 bytes: a text that
/// would not fit is cut (on a character boundary) and `content_truncated` says so.
fn event_data(ctx: &Context<'_>) -> Value {
    let mut data = json!({
        "rule": ctx.rule.as_str(),
        "record": ctx.key.as_str(),
        "source": ctx.event.source.as_str(),
        "event_name": ctx.event.name,
        "event_id": ctx.event.id.as_str(),
    });
    ctx.put_result_facts(data.as_object_mut().expect("an object"));
    let Some(text) = ctx.result.text() else { return data };
    data["content_truncated"] = json!(ctx.result.truncated());
    if fit_text(&mut data, "", "content", text, MAX_EVENT_DATA_BYTES) {
        data["content_truncated"] = json!(true);
    }
    data
}

/// The Track API's settings: `CIO_SITE_ID`, `CIO_TRACK_API_KEY`, `CIO_REGION`. `Debug`
/// redacts the key.
#[derive(Clone)]
pub struct CioTrackConfig {
    pub site_id: String,
    api_key: SecretString,
    pub region: CioRegion,
    /// Replaces the region's host (a local stand-in).
    pub base_url: Option<String>,
}

impl std::fmt::Debug for CioTrackConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CioTrackConfig")
            .field("site_id", &self.site_id)
            .field("api_key", &"[REDACTED]")
            .field("region", &self.region)
            .field("base_url", &self.base_url)
            .finish()
    }
}

/// The Track API's host for a region.
pub fn track_host(region: CioRegion) -> &'static str {
    match region {
        CioRegion::Us => "https://track.customer.io",
        CioRegion::Eu => "https://track-eu.customer.io",
    }
}

impl CioTrackConfig {
    pub fn new(site_id: &str, api_key: &str, region: CioRegion) -> Result<Self, InvalidSetting> {
        let site_id = site_id.trim();
        if site_id.is_empty() || !site_id.chars().all(|c| c.is_ascii_alphanumeric()) || site_id.contains(':') {
            return Err(InvalidSetting::new(
                vars::CIO_SITE_ID,
                "a Site ID is letters and digits (Customer.io: Settings > API credentials > Track API keys)",
            ));
        }
        let key = api_key.trim();
        if key.is_empty() || key.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(InvalidSetting::new(vars::CIO_TRACK_API_KEY, "copy the Track API key again; it has no spaces"));
        }
        Ok(CioTrackConfig { site_id: site_id.to_owned(), api_key: SecretString::from(key), region, base_url: None })
    }

    /// Sends to `url` instead of the region's host (a stand-in; `http` only to loopback).
    pub fn with_base_url(mut self, url: &str) -> Result<Self, InvalidSetting> {
        let url = checked_url("CIO_TRACK_API_URL", url)?;
        self.base_url = Some(url.as_str().trim_end_matches('/').to_owned());
        Ok(self)
    }

    pub fn base_url(&self) -> &str {
        self.base_url.as_deref().unwrap_or_else(|| track_host(self.region))
    }
}

/// The Track API adapter.
pub struct CioTrack {
    http: reqwest::Client,
    base_url: String,
    auth: HeaderValue,
}

impl CioTrack {
    pub fn new(config: CioTrackConfig) -> Result<Self, reqwest::Error> {
        let auth = basic_auth(&config.site_id, config.api_key.expose_secret());
        Ok(CioTrack {
            http: transport::client(reqwest::Client::builder())?,
            base_url: config.base_url().to_owned(),
            auth,
        })
    }

    /// One request: its answer, or why there was none.
    async fn call(
        &self,
        method: http::Method,
        path: &str,
        body: &Value,
        deadline: Instant,
    ) -> Result<Answer, transport::Failure> {
        let request = self
            .http
            .request(method, format!("{}{path}", self.base_url))
            .header(http::header::AUTHORIZATION, self.auth.clone())
            .json(body);
        exchange(request, TIMEOUT, deadline).await
    }
}

/// `Authorization: Basic …`, marked sensitive so no log or `Debug` shows it.
pub(crate) fn basic_auth(user: &str, password: &str) -> HeaderValue {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut value = HeaderValue::from_str(&format!("Basic {token}")).expect("base64 is a valid header value");
    value.set_sensitive(true);
    value
}

fn refused(answer: &Answer, what: &str) -> SendError {
    if let Some(transient) = answer.transient("Customer.io") {
        return transient;
    }
    let status = answer.status.as_u16();
    let hint = match status {
        401 | 403 => {
            "check CIO_SITE_ID and CIO_TRACK_API_KEY (a Track API key, not the App API key) and CIO_REGION (a US account's requests to the EU host fail)"
        }
        400 | 422 => "Customer.io refused the data; a rule's `[rule.customerio]` attribute or event may not suit it",
        404 => "Customer.io found no such person or path",
        300..=399 => "it answered a redirect, which is never followed: check CIO_REGION",
        _ => "not retried",
    };
    SendError::Permanent {
        reason: format!("Customer.io answered {status} to the {what}: {} ({hint})", answer.quoted()),
    }
}

#[async_trait]
impl Port<CioUpdate> for CioTrack {
    async fn send(&self, update: &CioUpdate, deadline: Instant) -> Result<(), SendError> {
        let put = Value::Object(update.attributes.clone());
        let answer = self
            .call(http::Method::PUT, &update.person_path(), &put, deadline)
            .await
            .map_err(|f| f.retryable("Customer.io"))?;
        if !answer.status.is_success() {
            return Err(refused(&answer, "attribute update"));
        }
        let Some(event) = &update.event else { return Ok(()) };
        let answer = self
            .call(http::Method::POST, &update.event_path(), &CioUpdate::event_body(event), deadline)
            .await
            .map_err(|f| f.at_most_once("Customer.io"))?;
        if !answer.status.is_success() {
            return Err(refused(&answer, "event"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::result::ResultKind;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use super::*;
    use crate::deliver::result::JobResult;
    use crate::domain::{Event, EventId, JobKey, RuleName, Source};
    use crate::template::Template;

    fn options() -> CioOptions {
        CioOptions {
            identifier: Template::parse("{user_id}").unwrap(),
            id_type: TrackIdType::Id,
            event: Some("mavera_research_completed".into()),
            attributes: vec![("churn_playbook".into(), Template::parse("{result.content:.20}").unwrap())],
        }
    }

    fn build(
        user: Option<&str>,
        result: Value,
        kind: ResultKind,
        options: &CioOptions,
    ) -> Result<CioUpdate, SendError> {
        let mut fields = Map::new();
        if let Some(u) = user {
            fields.insert("user_id".into(), json!(u));
        }
        let event = Event {
            source: Source::Segment,
            id: EventId::parse("e1").unwrap(),
            name: "churn_signal".into(),
            user_id: user.map(str::to_owned),
            fields,
        };
        let result = JobResult::new(result);
        let (key, rule) = (JobKey::from_stored("segment#e1#churn"), RuleName::parse("churn").unwrap());
        let at = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        let ctx = Context { key: &key, rule: &rule, event: &event, result: &result, kind, at };
        update(&ctx, options)
    }

    #[test]
    fn research_goes_onto_the_person_as_bounded_attributes_and_a_whole_event() {
        let long = "é".repeat(3000);
        let u = build(
            Some("jane+x@example.com"),
            json!({"action": "research", "thread_id": "th_1", "message_id": "m_1", "content": long, "credits": 25.0}),
            ResultKind::Research,
            &options(),
        )
        .unwrap();
        assert_eq!(u.person_path(), "/api/v1/customers/jane%2Bx%40example.com");
        assert_eq!(u.event_path(), "/api/v1/customers/jane%2Bx%40example.com/events");
        assert_eq!(u.attributes["_update"], true);
        assert_eq!(u.attributes["_timestamp"], 1_795_000_000);
        assert_eq!(u.attributes["mavera_updated_at"], 1_795_000_000);
        assert_eq!(u.attributes["mavera_thread_id"], "th_1");
        let research = u.attributes["mavera_last_research"].as_str().unwrap();
        assert_eq!(research.len(), 1000, "500 two-byte characters: cut on a boundary at the limit");
        assert_eq!(u.attributes["churn_playbook"].as_str().unwrap().chars().count(), 20);
        let event = u.event.unwrap();
        assert_eq!(event.name, "mavera_research_completed");
        assert_eq!(event.data["content"].as_str().unwrap(), long, "the event carries the whole text");
        assert_eq!(
            (event.data["rule"].as_str(), event.data["record"].as_str()),
            (Some("churn"), Some("segment#e1#churn"))
        );
    }

    #[test]
    fn an_event_over_100_kb_is_cut_to_fit() {
        let long = "\"q\" ".repeat(40_000);
        let u = build(
            Some("u1"),
            json!({"action": "research", "thread_id": "t", "content": long}),
            ResultKind::Research,
            &options(),
        )
        .unwrap();
        let data = u.event.unwrap().data;
        assert!(data.to_string().len() <= MAX_EVENT_DATA_BYTES, "{}", data.to_string().len());
        assert!(data.to_string().len() > MAX_EVENT_DATA_BYTES - 1000, "not cut more than needed");
        assert_eq!(data["content_truncated"], true);
    }

    #[test]
    fn a_persona_sets_its_id_and_name_and_a_cio_id_gets_its_prefix() {
        let options = CioOptions { id_type: TrackIdType::CioId, event: None, attributes: vec![], ..options() };
        let u = build(
            Some("a1b2"),
            json!({"action": "create_persona", "persona_id": "p1", "name": "Trial User", "credits": 300}),
            ResultKind::Persona,
            &options,
        )
        .unwrap();
        assert_eq!(u.identifier, "cio_a1b2");
        assert_eq!(
            (u.attributes["mavera_persona_id"].as_str(), u.attributes["mavera_persona_name"].as_str()),
            (Some("p1"), Some("Trial User"))
        );
        assert!(u.event.is_none());
    }

    #[test]
    fn without_a_person_to_name_it_fails_for_good() {
        let err =
            build(None, json!({"action": "research", "content": "x"}), ResultKind::Research, &options()).unwrap_err();
        assert!(matches!(&err, SendError::Permanent { reason } if reason.contains("no person to update")), "{err:?}");
    }

    #[test]
    fn credentials_are_checked_and_never_shown() {
        let config = CioTrackConfig::new("abc123", "trackkey-secret", CioRegion::Eu).unwrap();
        assert_eq!(config.base_url(), "https://track-eu.customer.io");
        assert!(!format!("{config:?}").contains("trackkey-secret"));
        assert!(CioTrackConfig::new("", "k", CioRegion::Us).is_err());
        assert!(CioTrackConfig::new("site:1", "k", CioRegion::Us).is_err());
        let err = CioTrackConfig::new("abc", "has space", CioRegion::Us).unwrap_err();
        assert!(!err.to_string().contains("has space"), "{err}");
        assert!(basic_auth("s", "k").is_sensitive());
        let _ = SystemTime::now();
    }
}
