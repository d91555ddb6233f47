//! Where a job's result goes once Mavera has answered: a Slack channel ([`slack`]), the
//! person's Customer.io profile ([`cio_track`]), the customer's Segment ([`segment`]), and a
//! signed webhook ([`webhook`]).
//!
//! - A rule lists its destinations (`deliver = ["slack", …]`) with optional settings per
//!   destination; [`options`] reads them into [`Target`]s when `triggers.toml` loads, checking
//!   every template's `result.*` field against the rule's action (its `result` module).
//! - A destination's request is rendered from a [`Context`]: the job key, rule, event and
//!   result. Its texts are cut to the vendor's limits there, never refused for length.
//! - Each destination sits behind one small port, [`Port<R>`] over its request type, with an
//!   HTTPS adapter (reqwest and rustls, redirects never followed), the in-memory twin
//!   (`twin::Recording`, for tests) and [`DryRun`], which prints the request.
//! - [`send_with_retries`] is the one retry loop every send goes through: 429 and 5xx and
//!   connection failures retried within the deadline, permanent refusals and uncertain sends
//!   never.
//! - [`Destinations`] holds a process's four ports, or why one is off (its credentials are
//!   missing or invalid), so a destination without credentials disables only its deliveries.
//!
//! What is sent is decided here; what was sent is the worker's business (it keeps each
//! destination's state on the job's record, `store::DeliveryState`).

pub mod cio_track;
mod context;
mod dry_run;
pub mod options;
mod result;
pub mod segment;
mod send;
pub mod slack;
mod transport;
#[cfg(any(test, feature = "test-support"))]
pub mod twin;
pub mod webhook;

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::time::Instant;

pub use cio_track::{CioTrack, CioTrackConfig, CioUpdate};
pub use context::Context;
pub use dry_run::{Describe, DryRun};
pub use options::{CioOptions, SegmentOptions, SlackOptions, Target, WebhookOptions};
pub use result::{JobResult, RESULT_FIELDS, ResultKind};
pub use segment::{SegmentApi, SegmentCalls, SegmentConfig, SegmentRegion};
pub use send::{MAX_RETRIES, Port, SendError, Sent, send_with_retries};
pub use slack::{SlackConfig, SlackMessage, SlackWebhook};
pub use webhook::{SignedWebhook, WebhookConfig, WebhookMessage, WebhookSecret};

/// The destinations a rule's `deliver` list may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DestinationName {
    Slack,
    CustomerIo,
    Segment,
    Webhook,
}

impl DestinationName {
    pub const ALL: [DestinationName; 4] =
        [DestinationName::Slack, DestinationName::CustomerIo, DestinationName::Segment, DestinationName::Webhook];

    /// As `triggers.toml`, the record and the metrics' `Destination` dimension spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            DestinationName::Slack => "slack",
            DestinationName::CustomerIo => "customerio",
            DestinationName::Segment => "segment",
            DestinationName::Webhook => "webhook",
        }
    }

    pub fn parse(name: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|d| d.as_str() == name).ok_or_else(|| {
            format!(
                "`{name}` is not a destination: use {}",
                Self::ALL.iter().map(|d| d.as_str()).collect::<Vec<_>>().join(", ")
            )
        })
    }

    /// The variables its credentials come from.
    pub fn variables(self) -> &'static [&'static str] {
        use crate::vars;
        match self {
            DestinationName::Slack => &[vars::SLACK_WEBHOOK_URL],
            DestinationName::CustomerIo => &[vars::CIO_SITE_ID, vars::CIO_TRACK_API_KEY],
            DestinationName::Segment => &[vars::SEGMENT_WRITE_KEY],
            DestinationName::Webhook => &[vars::RESULT_WEBHOOK_URL, vars::RESULT_WEBHOOK_SECRET],
        }
    }
}

impl fmt::Display for DestinationName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A destination setting that is present but unusable. Says what is wrong, never the value
/// (most of these are credentials).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name} is not valid: {problem}")]
pub struct InvalidSetting {
    pub name: &'static str,
    pub problem: String,
}

impl InvalidSetting {
    pub fn new(name: &'static str, problem: &str) -> Self {
        InvalidSetting { name, problem: problem.to_owned() }
    }
}

/// An endpoint URL from a setting: `https`, or `http` to a loopback address (a local
/// stand-in). Problems never quote it.
pub(crate) fn checked_url(name: &'static str, raw: &str) -> Result<reqwest::Url, InvalidSetting> {
    let url = reqwest::Url::parse(raw.trim()).map_err(|_| InvalidSetting::new(name, "not a URL"))?;
    let host = url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
    let loopback =
        host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        _ => Err(InvalidSetting::new(
            name,
            "use an https URL (plain http only to a loopback address, for local stand-ins)",
        )),
    }
}

/// Puts the longest start of `text` (cut on a character boundary) in `field` of the object
/// at `object` in `payload` such that the whole payload, as JSON, takes at most `max` bytes. Returns
/// whether it had to cut. JSON escapes can make a text longer than its bytes, so the cut is
/// searched for rather than computed.
pub(crate) fn fit_text(payload: &mut serde_json::Value, object: &str, field: &str, text: &str, max: usize) -> bool {
    let slot = |payload: &mut serde_json::Value, value: &str| {
        if let Some(map) = payload.pointer_mut(object).and_then(serde_json::Value::as_object_mut) {
            map.insert(field.to_owned(), serde_json::Value::String(value.to_owned()));
        }
    };
    slot(payload, text);
    if payload.to_string().len() <= max {
        return false;
    }
    slot(payload, "");
    let room = max.saturating_sub(payload.to_string().len());
    // The longest prefix whose quoted JSON form grows the payload by at most `room`.
    let grows = |prefix: &str| serde_json::to_string(prefix).map_or(usize::MAX, |q| q.len() - 2);
    let (mut lo, mut hi) = (0usize, text.len());
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if grows(crate::domain::truncate_bytes(text, mid)) <= room {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    slot(payload, crate::domain::truncate_bytes(text, lo));
    true
}

/// Locks, carrying on after a panic elsewhere: every holder replaces whole values.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One destination's settings as read at start-up.
#[derive(Debug, Clone)]
pub enum Setting<T> {
    Set(T),
    /// Not configured: what to set.
    Missing(String),
    Invalid(InvalidSetting),
}

impl<T> Setting<T> {
    /// Why it cannot be used, if it cannot.
    pub fn problem(&self) -> Option<String> {
        match self {
            Setting::Set(_) => None,
            Setting::Missing(what) => Some(what.clone()),
            Setting::Invalid(e) => Some(e.to_string()),
        }
    }
}

/// The four destinations' settings (see `config::destinations`).
#[derive(Debug, Clone)]
pub struct DestinationSettings {
    pub slack: Setting<SlackConfig>,
    pub customerio: Setting<CioTrackConfig>,
    pub segment: Setting<SegmentConfig>,
    pub webhook: Setting<WebhookConfig>,
}

impl DestinationSettings {
    /// Why `name` cannot be used, if it cannot.
    pub fn problem(&self, name: DestinationName) -> Option<String> {
        match name {
            DestinationName::Slack => self.slack.problem(),
            DestinationName::CustomerIo => self.customerio.problem(),
            DestinationName::Segment => self.segment.problem(),
            DestinationName::Webhook => self.webhook.problem(),
        }
    }
}

/// A destination's port, or why this process has none.
pub enum Endpoint<R: ?Sized> {
    Ready(Arc<dyn Port<R>>),
    Off(String),
}

impl<R: ?Sized> Clone for Endpoint<R> {
    fn clone(&self) -> Self {
        match self {
            Endpoint::Ready(port) => Endpoint::Ready(port.clone()),
            Endpoint::Off(why) => Endpoint::Off(why.clone()),
        }
    }
}

/// The destinations of one process.
#[derive(Clone)]
pub struct Destinations {
    pub slack: Endpoint<SlackMessage>,
    pub customerio: Endpoint<CioUpdate>,
    pub segment: Endpoint<SegmentCalls>,
    pub webhook: Endpoint<WebhookMessage>,
    dry_run: bool,
}

impl fmt::Debug for Destinations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = |name| self.off(name).map_or("ready".to_owned(), |why| format!("off ({why})"));
        f.debug_struct("Destinations")
            .field("slack", &state(DestinationName::Slack))
            .field("customerio", &state(DestinationName::CustomerIo))
            .field("segment", &state(DestinationName::Segment))
            .field("webhook", &state(DestinationName::Webhook))
            .field("dry_run", &self.dry_run)
            .finish()
    }
}

/// Building the HTTPS clients failed (the TLS setup).
#[derive(Debug, thiserror::Error)]
#[error("could not build the HTTPS client for {destination} (TLS or resolver setup failed)")]
pub struct ClientError {
    pub destination: DestinationName,
    #[source]
    pub source: reqwest::Error,
}

impl Destinations {
    /// None configured: every delivery is recorded failed with this reason.
    pub fn none() -> Self {
        let off = || "this process has no destinations configured".to_owned();
        Destinations {
            slack: Endpoint::Off(off()),
            customerio: Endpoint::Off(off()),
            segment: Endpoint::Off(off()),
            webhook: Endpoint::Off(off()),
            dry_run: false,
        }
    }

    /// Every request printed, none sent, whatever the credentials.
    pub fn dry_run() -> Self {
        Destinations {
            slack: Endpoint::Ready(Arc::new(DryRun)),
            customerio: Endpoint::Ready(Arc::new(DryRun)),
            segment: Endpoint::Ready(Arc::new(DryRun)),
            webhook: Endpoint::Ready(Arc::new(DryRun)),
            dry_run: true,
        }
    }

    /// The HTTPS adapters for the destinations whose settings are usable; the others off,
    /// each with its reason.
    pub fn live(settings: DestinationSettings) -> Result<Self, ClientError> {
        fn build<C, P, R>(
            setting: Setting<C>,
            name: DestinationName,
            make: impl FnOnce(C) -> Result<P, reqwest::Error>,
        ) -> Result<Endpoint<R>, ClientError>
        where
            P: Port<R> + 'static,
            R: Sync + ?Sized,
        {
            match setting {
                Setting::Set(config) => {
                    let port = make(config).map_err(|source| ClientError { destination: name, source })?;
                    Ok(Endpoint::Ready(Arc::new(port)))
                }
                other => Ok(Endpoint::Off(other.problem().unwrap_or_default())),
            }
        }
        Ok(Destinations {
            slack: build(settings.slack, DestinationName::Slack, SlackWebhook::new)?,
            customerio: build(settings.customerio, DestinationName::CustomerIo, CioTrack::new)?,
            segment: build(settings.segment, DestinationName::Segment, SegmentApi::new)?,
            webhook: build(settings.webhook, DestinationName::Webhook, SignedWebhook::new)?,
            dry_run: false,
        })
    }

    pub fn is_dry_run(&self) -> bool {
        self.dry_run
    }

    /// Why `name` is off in this process, if it is.
    pub fn off(&self, name: DestinationName) -> Option<&str> {
        let why = match name {
            DestinationName::Slack => off(&self.slack),
            DestinationName::CustomerIo => off(&self.customerio),
            DestinationName::Segment => off(&self.segment),
            DestinationName::Webhook => off(&self.webhook),
        };
        return why;

        fn off<R: ?Sized>(endpoint: &Endpoint<R>) -> Option<&str> {
            match endpoint {
                Endpoint::Ready(_) => None,
                Endpoint::Off(why) => Some(why),
            }
        }
    }

    /// Renders `target`'s request for `ctx` and sends it, with retries, by `deadline`. A
    /// destination that is off fails for good, with its reason.
    pub async fn send(&self, target: &Target, ctx: &Context<'_>, deadline: Instant) -> Sent {
        let not_sent = |error: SendError| Sent { outcome: Err(error), attempts: 0 };
        if let Some(why) = self.off(target.name()) {
            return not_sent(SendError::Permanent { reason: format!("{} is off: {why}", target.name()) });
        }
        match (target, &self.slack, &self.customerio, &self.segment, &self.webhook) {
            (Target::Slack(o), Endpoint::Ready(port), ..) => {
                send_with_retries(port.as_ref(), &slack::message(ctx, o), deadline).await
            }
            (Target::CustomerIo(o), _, Endpoint::Ready(port), ..) => match cio_track::update(ctx, o) {
                Ok(update) => send_with_retries(port.as_ref(), &update, deadline).await,
                Err(e) => not_sent(e),
            },
            (Target::Segment(o), _, _, Endpoint::Ready(port), _) => match segment::calls(ctx, o) {
                Ok(calls) => send_with_retries(port.as_ref(), &calls, deadline).await,
                Err(e) => not_sent(e),
            },
            (Target::Webhook(o), .., Endpoint::Ready(port)) => {
                send_with_retries(port.as_ref(), &webhook::message(ctx, o), deadline).await
            }
            _ => unreachable!("an endpoint that is off was answered above"),
        }
    }
}

impl Target {
    /// Whether a send that may have arrived must not be repeated: Slack and Customer.io
    /// events have no way to drop a repeat. The worker marks such a destination `sending`
    /// before it sends, so a send cut off by a crash is never repeated either.
    pub fn at_most_once(&self) -> bool {
        match self {
            Target::Slack(_) => true,
            Target::CustomerIo(o) => o.event.is_some(),
            Target::Segment(_) | Target::Webhook(_) => false,
        }
    }
}
