//! The checks that read: Mavera, the Customer.io App and Track APIs, and whether every source
//! with rules has its signing secret. Each proves one credential with one free call, and says
//! what to change when it fails.

use reqwest::StatusCode;
use serde_json::Value;
use shared::config::{self, vars};
use shared::customerio::{CioClient, CioError, CioRegion, IdType};
use shared::domain::Source;
use shared::mavera::{ErrorClass, MaveraClient, MaveraError};
use shared::triggers::Triggers;
use tokio::time::Instant;

use super::messages;
use super::{Line, Origin, Sources, Verdict};

/// The Track API's region endpoint and hosts (Customer.io's Track API reference).
const TRACK_REGION_PATH: &str = "/api/v1/accounts/region";
/// A person nobody has: the App API answers 404 for them with a good key.
const PROBE_PERSON: &str = "mavera-relay-doctor-probe";

/// Every check, concurrently, in a fixed order.
pub async fn all(sources: &Sources<'_>) -> Vec<Line> {
    let triggers = Triggers::from_vars(sources.vars);
    let needs = Needs::of(triggers.as_ref().ok());
    let mut lines = Vec::new();
    if let Err(e) = &triggers {
        let what = format!("the trigger rules do not load: {}", shared::telemetry::chain(e));
        lines.push(Line {
            check: "triggers",
            verdict: Verdict::fail(what, "`relay check` shows the rule and the field"),
        });
    }
    let (mavera, app, track, slack, webhook) = tokio::join!(
        mavera(sources, needs),
        customerio_app(sources, needs),
        customerio_track(sources),
        messages::slack(sources),
        messages::result_webhook(sources),
    );
    lines.extend([mavera, app, track]);
    lines.extend(signing(sources, triggers.as_ref().ok()));
    lines.extend([slack, webhook]);
    lines
}

/// What the rules and settings require, so a missing credential is a failure or a skip.
#[derive(Debug, Clone, Copy, Default)]
struct Needs {
    /// Some rule enriches, or a cio-sync job is on.
    app_api: bool,
}

impl Needs {
    fn of(triggers: Option<&Triggers>) -> Self {
        let app_api = triggers.is_some_and(|t| t.rules.needs_enrichment() || t.cio_sync.any_enabled());
        Needs { app_api }
    }
}

fn line(check: &'static str, verdict: Verdict) -> Line {
    Line { check, verdict }
}

async fn mavera(sources: &Sources<'_>, _needs: Needs) -> Line {
    const CHECK: &str = "mavera";
    let dry_run = config::flag(sources.vars, vars::DRY_RUN, false).unwrap_or(false);
    let Some(key) = config::optional(sources.vars, vars::MAVERA_API_KEY) else {
        return line(
            CHECK,
            if dry_run {
                Verdict::Skip("MAVERA_API_KEY is not set, and DRY_RUN=true sends nothing to Mavera".into())
            } else {
                Verdict::fail(
                    "MAVERA_API_KEY is not set: the worker cannot call Mavera",
                    sources.origin.store(vars::MAVERA_API_KEY)
                        + " (a key from Mavera: Settings → Developer → API Keys)",
                )
            },
        );
    };
    let config = match config::mavera_with_key(sources.vars, key) {
        Ok(config) => config,
        Err(e) => return line(CHECK, Verdict::fail(e.to_string(), "correct the setting it names")),
    };
    let base = config.base_url.clone();
    let client = match MaveraClient::new(config) {
        Ok(client) => client,
        Err(e) => {
            return line(
                CHECK,
                Verdict::fail(format!("the Mavera client cannot be built: {e}"), mavera_url_fix(sources)),
            );
        }
    };
    match client.list_personas(&[("limit", "1")], Instant::now() + sources.timeout).await {
        Ok(_) => {
            line(CHECK, Verdict::Ok(format!("MAVERA_API_KEY works: GET {base}/personas?limit=1 answered (0 credits)")))
        }
        Err(e) => line(CHECK, mavera_failure(&e, &base, sources)),
    }
}

fn mavera_url_fix(sources: &Sources<'_>) -> String {
    sources.origin.setting(vars::MAVERA_BASE_URL, "MaveraBaseUrl") + " to https://app.mavera.io/api/v1"
}

fn mavera_failure(e: &MaveraError, base: &str, sources: &Sources<'_>) -> Verdict {
    let said = match (e.status(), e.code(), e.mavera_message()) {
        (Some(status), code, message) => {
            format!(
                "Mavera answered {status}{} at {base}: {}",
                code.map(|c| format!(" {c}")).unwrap_or_default(),
                message.unwrap_or("no message")
            )
        }
        (None, _, _) => match e {
            MaveraError::Connect { .. } => format!("could not connect to {base}"),
            MaveraError::Timeout { after, .. } | MaveraError::NoTimeLeft { remaining: after, .. } => {
                format!("no answer from {base} within {after:.0?}")
            }
            MaveraError::Transport { .. } => format!("the connection to {base} broke"),
            other => other.to_string(),
        },
    };
    let fix = match e.status() {
        Some(401) => sources.origin.store(vars::MAVERA_API_KEY) + " to a valid, unrevoked key (mvra_live_…)",
        Some(402) => "the Mavera subscription has lapsed or its credits are used up: existing keys answer 402 until \
                      it is renewed (Mavera's billing page)"
            .to_owned(),
        Some(403) => "the key's workspace may not list personas: use a key with access to the workspace".to_owned(),
        Some(300..=399 | 404) => mavera_url_fix(sources),
        _ if e.class() == ErrorClass::Transient => format!(
            "Mavera or the network is failing right now: try again; if it persists, check network access to {base}"
        ),
        _ => mavera_url_fix(sources),
    };
    Verdict::fail(said, fix)
}

async fn customerio_app(sources: &Sources<'_>, needs: Needs) -> Line {
    const CHECK: &str = "customerio-app";
    let config = match config::customerio(sources.vars, false) {
        Ok(Some(config)) => config,
        Ok(None) if needs.app_api => {
            return line(
                CHECK,
                Verdict::fail(
                    "CIO_APP_KEY is not set, and a rule enriches with Customer.io attributes (or a cio-sync job is on)",
                    sources.origin.store(vars::CIO_APP_KEY)
                        + " (Customer.io: Account settings → API credentials → App API keys)",
                ),
            );
        }
        Ok(None) => return line(CHECK, Verdict::Skip("CIO_APP_KEY is not set, and nothing needs it".into())),
        Err(e) => return line(CHECK, Verdict::fail(e.to_string(), "correct the setting it names")),
    };
    let region = config.region;
    let host = config.effective_base_url().to_owned();
    let client = match CioClient::new(config) {
        Ok(client) => client,
        Err(e) => return line(CHECK, Verdict::fail(e.to_string(), sources.origin.store(vars::CIO_APP_KEY))),
    };
    let deadline = Instant::now() + sources.timeout;
    match client.customer_attributes(PROBE_PERSON, IdType::Id, deadline).await {
        Ok(_) => line(
            CHECK,
            Verdict::Ok(format!(
                "CIO_APP_KEY works at {host} (region {region}): GET /v1/customers/{{id}}/attributes answered"
            )),
        ),
        Err(CioError::Unauthorized { .. }) => line(
            CHECK,
            Verdict::fail(
                format!("Customer.io refused CIO_APP_KEY (401) at {host} (region {region})"),
                format!(
                    "{} to an App API key (not a Track API key), and check the region: a key works only in its \
                     account's data center ({})",
                    sources.origin.store(vars::CIO_APP_KEY),
                    sources.origin.setting(vars::CIO_REGION, "CioRegion")
                ),
            ),
        ),
        Err(CioError::Forbidden { .. }) => line(
            CHECK,
            Verdict::fail(
                format!("Customer.io denied CIO_APP_KEY customer reads (403) at {host}"),
                "widen the key's scope in Account Settings → API Credentials to read people (and campaigns and \
                 segments for cio-sync)",
            ),
        ),
        Err(e) => line(
            CHECK,
            Verdict::fail(
                format!("the App API check failed at {host}: {e}"),
                if e.is_transient() {
                    "try again; if it persists, check network access to the host"
                } else {
                    "see the message"
                },
            ),
        ),
    }
}

async fn customerio_track(sources: &Sources<'_>) -> Line {
    const CHECK: &str = "customerio-track";
    let site = config::optional(sources.vars, vars::CIO_SITE_ID);
    let key = config::optional(sources.vars, vars::CIO_TRACK_API_KEY);
    let (site, key) = match (site, key) {
        (None, None) => {
            return line(
                CHECK,
                Verdict::Skip("CIO_SITE_ID and CIO_TRACK_API_KEY are not set (no Track destination)".into()),
            );
        }
        (Some(site), Some(key)) => (site, key),
        (site, _) => {
            let missing = if site.is_none() { vars::CIO_SITE_ID } else { vars::CIO_TRACK_API_KEY };
            return line(
                CHECK,
                Verdict::fail(
                    format!("{missing} is not set"),
                    sources.origin.store(missing) + ": the Track API needs both",
                ),
            );
        }
    };
    let configured = match config::optional(sources.vars, vars::CIO_REGION).map(|r| r.parse::<CioRegion>()) {
        None => CioRegion::default(),
        Some(Ok(region)) => region,
        Some(Err(e)) => {
            return line(CHECK, Verdict::fail(e.to_string(), sources.origin.setting(vars::CIO_REGION, "CioRegion")));
        }
    };
    let host = config::optional(sources.vars, vars::CIO_TRACK_API_URL)
        .unwrap_or_else(|| track_host(configured).to_owned())
        .trim_end_matches('/')
        .to_owned();
    let http =
        match reqwest::Client::builder().timeout(sources.timeout).redirect(reqwest::redirect::Policy::none()).build() {
            Ok(http) => http,
            Err(e) => return line(CHECK, Verdict::fail(format!("cannot build an HTTPS client: {e}"), "report it")),
        };
    let answer = http.get(format!("{host}{TRACK_REGION_PATH}")).basic_auth(&site, Some(&key)).send().await;
    let response = match answer {
        Ok(response) => response,
        Err(e) => {
            return line(
                CHECK,
                Verdict::fail(
                    format!("no answer from {host}: {}", e.without_url()),
                    "check network access to the host and try again",
                ),
            );
        }
    };
    let status = response.status();
    let body: Option<Value> = response.json().await.ok();
    match status {
        s if s.is_success() => {
            let reported = body.as_ref().and_then(|b| b["region"].as_str()).map(str::to_ascii_lowercase);
            match reported.as_deref().map(|r| r.parse::<CioRegion>()) {
                Some(Ok(region)) if region == configured => line(
                    CHECK,
                    Verdict::Ok(format!(
                        "CIO_SITE_ID and CIO_TRACK_API_KEY work at {host}; the account is in {region}, as CIO_REGION says"
                    )),
                ),
                Some(Ok(region)) => line(
                    CHECK,
                    Verdict::fail(
                        format!("the Track API says the account is in {region}, but CIO_REGION is {configured}"),
                        sources.origin.setting(vars::CIO_REGION, "CioRegion")
                            + &format!(" to {region} (the App API key only works there too)"),
                    ),
                ),
                _ => line(
                    CHECK,
                    Verdict::fail(
                        format!("{host}{TRACK_REGION_PATH} answered {status} without a region"),
                        "check CIO_TRACK_API_URL (leave it unset in production)",
                    ),
                ),
            }
        }
        StatusCode::UNAUTHORIZED => line(
            CHECK,
            Verdict::fail(
                format!("the Track API refused the Site ID and Track API key (401) at {host}"),
                format!(
                    "{} and {} (Customer.io: Account settings → API credentials → Track API keys); a US account's \
                     credentials also fail at the EU host: check CIO_REGION",
                    sources.origin.store(vars::CIO_SITE_ID),
                    vars::CIO_TRACK_API_KEY
                ),
            ),
        ),
        status if status.is_redirection() => line(
            CHECK,
            Verdict::fail(
                format!("{host} redirected ({status}): the account is in the other region"),
                sources.origin.setting(vars::CIO_REGION, "CioRegion") + " to your account's region",
            ),
        ),
        status => line(
            CHECK,
            Verdict::fail(
                format!("the Track API answered {status} at {host}"),
                "try again; if it persists, see Customer.io's status page",
            ),
        ),
    }
}

/// The Track API's host for a region.
fn track_host(region: CioRegion) -> &'static str {
    match region {
        CioRegion::Us => "https://track.customer.io",
        CioRegion::Eu => "https://track-eu.customer.io",
    }
}

/// Signing secrets cannot be checked by a call: each source with rules must have one.
fn signing(sources: &Sources<'_>, triggers: Option<&Triggers>) -> Vec<Line> {
    let Some(triggers) = triggers else { return Vec::new() };
    Source::ALL
        .into_iter()
        .map(|source| {
            let (check, var, sender) = match source {
                Source::Segment => {
                    ("signing-segment", vars::SEGMENT_SHARED_SECRET, "Segment's destination (its Shared Secret)")
                }
                Source::CustomerIo => (
                    "signing-customerio",
                    vars::CIO_WEBHOOK_SECRET,
                    "Customer.io's reporting webhook (its signing key)",
                ),
            };
            let rules = triggers.rules.iter().filter(|r| r.source == source).count();
            let set = config::optional(sources.vars, var).is_some();
            let verdict = match (set, rules) {
                (true, _) => Verdict::Ok(format!(
                    "{var} is set; only a signed delivery proves it matches {sender} (`relay send` signs one)"
                )),
                (false, 0) => Verdict::Skip(format!("{var} is not set, and no rule listens to {}", source.as_str())),
                (false, n) => Verdict::fail(
                    format!("{var} is not set, and {n} rule(s) listen to {}: ingest refuses to start", source.as_str()),
                    match &sources.origin {
                        Origin::Environment => format!("set {var} to the value {sender} uses"),
                        Origin::Stack { .. } => format!(
                            "put {var} in the signing secret (the stack's SigningSecretArn output; docs/deploy.md)"
                        ),
                    },
                ),
            };
            line(check, verdict)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn track_hosts_follow_the_region() {
        assert_eq!(track_host(CioRegion::Us), "https://track.customer.io");
        assert_eq!(track_host(CioRegion::Eu), "https://track-eu.customer.io");
    }
}
