//! Configuration from environment variables (and, in AWS, one Secrets Manager secret
//! layered over them). Read once at start-up; every problem is a [`ConfigError`] that
//! names the variable and says what to set, never a panic or a silent default for a
//! secret.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use crate::deliver::{
    CioTrackConfig, DestinationSettings, InvalidSetting, SegmentConfig, SegmentRegion, Setting, SlackConfig,
    WebhookConfig,
};
use crate::rules::Rules;
use crate::verify::{CustomerIoVerifier, SecretsError, SegmentVerifier, SigningSecrets, Verifiers, customerio};

/// The variables' names.
pub use crate::vars;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} is not set: {why}")]
    Missing { name: &'static str, why: &'static str },
    #[error("{name}={value:?} is not valid: {problem}")]
    Invalid { name: &'static str, value: String, problem: String },
    #[error(transparent)]
    Secret(#[from] SecretsError),
    #[error("reading the secret {arn}: {problem}")]
    SecretsManager { arn: String, problem: String },
}

/// Where settings come from: the process environment, a map in tests, or secrets layered
/// over the environment.
pub trait Vars: Send + Sync {
    fn get(&self, name: &str) -> Option<String>;
}

pub struct ProcessEnv;

impl Vars for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Vars for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).cloned()
    }
}

impl<const N: usize> Vars for [(&str, &str); N] {
    fn get(&self, name: &str) -> Option<String> {
        self.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
    }
}

/// Secrets (from Secrets Manager) first, then the environment.
pub struct Layered<'a> {
    pub secrets: HashMap<String, String>,
    pub base: &'a dyn Vars,
}

/// Names the secrets it holds, never their values.
impl std::fmt::Debug for Layered<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut keys: Vec<&str> = self.secrets.keys().map(String::as_str).collect();
        keys.sort_unstable();
        f.debug_struct("Layered").field("secret_keys", &keys).finish_non_exhaustive()
    }
}

impl Vars for Layered<'_> {
    fn get(&self, name: &str) -> Option<String> {
        self.secrets.get(name).cloned().or_else(|| self.base.get(name))
    }
}

/// The values of every secret that is set, for the log's redaction.
pub fn secret_values(vars: &dyn Vars) -> Vec<String> {
    vars::SIGNING_SECRET_KEYS
        .iter()
        .chain(&vars::API_KEYS_SECRET_KEYS)
        .filter_map(|name| optional(vars, name))
        .collect()
}

/// A non-empty value, or `None`.
pub fn optional(vars: &dyn Vars, name: &str) -> Option<String> {
    vars.get(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

pub fn required(vars: &dyn Vars, name: &'static str, why: &'static str) -> Result<String, ConfigError> {
    optional(vars, name).ok_or(ConfigError::Missing { name, why })
}

pub fn flag(vars: &dyn Vars, name: &'static str, default: bool) -> Result<bool, ConfigError> {
    match optional(vars, name).as_deref().map(str::to_ascii_lowercase).as_deref() {
        None => Ok(default),
        Some("true" | "1" | "yes") => Ok(true),
        Some("false" | "0" | "no") => Ok(false),
        Some(other) => Err(ConfigError::Invalid { name, value: other.to_owned(), problem: "use true or false".into() }),
    }
}

pub fn number<T: FromStr>(vars: &dyn Vars, name: &'static str, default: T) -> Result<T, ConfigError> {
    match optional(vars, name) {
        None => Ok(default),
        Some(v) => {
            v.parse().map_err(|_| ConfigError::Invalid { name, value: v, problem: "expected a whole number".into() })
        }
    }
}

/// The webhook verifiers ([`Verifiers`] picks one by source) from the signing secrets. A
/// source without its secret is off (verification is never skipped): ingest answers its
/// webhooks 503 `source_disabled` when rules listen to it, 404 when none do.
impl Verifiers {
    pub fn from_vars(vars: &dyn Vars, rules: &Rules) -> Result<Self, ConfigError> {
        use crate::domain::Source;
        let needed = rules.sources();
        // A deployed function reads its secret from Secrets Manager (SECRETS_ARN): there a
        // guessable secret is refused; a local run only warns.
        let deployed = optional(vars, vars::SECRETS_ARN).is_some();
        let secrets = |source: Source, name: &'static str, previous: &'static str| {
            let (value, previous_value) = (optional(vars, name), optional(vars, previous));
            if value.is_none() && previous_value.is_none() {
                // Verification is never skipped: without its secret a source is off. One that
                // has rules is said so loudly; the other sources run.
                if needed.contains(&source) {
                    tracing::warn!(
                        "{name} is not set: /webhooks/{source} is off (answered 503 source_disabled, so senders retry) until it is; the other sources run"
                    );
                }
                return Ok(None);
            }
            let secrets = SigningSecrets::new(name, value.as_deref(), previous, previous_value.as_deref())?;
            match secrets.check_strength() {
                Err(weak) if deployed => return Err(ConfigError::Secret(weak)),
                Err(weak) => tracing::warn!("{weak} (accepted for a local run; a deployed function refuses it)"),
                Ok(()) => {}
            }
            for name in secrets.with_commas() {
                tracing::warn!(
                    "{name} contains a comma, and is used whole as one secret; for a rotation, put the other secret in its own *_PREVIOUS variable"
                );
            }
            Ok::<_, ConfigError>(Some(secrets))
        };
        let segment =
            secrets(Source::Segment, vars::SEGMENT_SHARED_SECRET, vars::SEGMENT_SHARED_SECRET_PREVIOUS)?.map(|s| {
                flag(vars, vars::SEGMENT_ALLOW_FIRST_EVENT_SIGNATURE, false)
                    .map(|allow| SegmentVerifier::new(&s, allow))
            });
        let customerio =
            secrets(Source::CustomerIo, vars::CIO_WEBHOOK_SECRET, vars::CIO_WEBHOOK_SECRET_PREVIOUS)?.map(|s| {
                let longest = customerio::DEFAULT_MAX_AGE.as_secs();
                match number(vars, vars::CIO_TIMESTAMP_TOLERANCE_SECS, longest)? {
                    0 => Err(ConfigError::Invalid {
                        name: vars::CIO_TIMESTAMP_TOLERANCE_SECS,
                        value: "0".into(),
                        problem: format!("how old a signed Customer.io request may be: 1 to {longest} s"),
                    }),
                    secs => {
                        if secs > longest {
                            // Longer would let a replay outlive its dedupe record (8 days).
                            tracing::warn!(
                                "CIO_TIMESTAMP_TOLERANCE_SECS={secs} is over 7 days; {longest} s (Customer.io's retry window) is used"
                            );
                        }
                        Ok(CustomerIoVerifier::new(&s, Duration::from_secs(secs.min(longest))))
                    }
                }
            });
        Ok(Verifiers { segment: segment.transpose()?, customerio: customerio.transpose()? })
    }
}

/// `CIO_ALLOWED_SOURCE_IPS`: the addresses Customer.io webhooks may come from (comma-separated
/// IPs and CIDR blocks); unset or empty, any.
pub fn cio_allowed_source_ips(vars: &dyn Vars) -> Result<Option<crate::verify::IpAllowList>, ConfigError> {
    let Some(text) = optional(vars, vars::CIO_ALLOWED_SOURCE_IPS) else { return Ok(None) };
    crate::verify::IpAllowList::parse(&text).map_err(|problem| ConfigError::Invalid {
        name: vars::CIO_ALLOWED_SOURCE_IPS,
        value: text.clone(),
        problem: format!("{problem}; list IPs and CIDR blocks separated by commas"),
    })
}

/// Mavera settings for the worker: `None` in dry run (`DRY_RUN=true`), when requests are
/// recorded and never sent. Otherwise `MAVERA_API_KEY` is required.
pub fn mavera(vars: &dyn Vars) -> Result<Option<crate::mavera::MaveraConfig>, ConfigError> {
    if flag(vars, vars::DRY_RUN, false)? {
        return Ok(None);
    }
    let key = required(
        vars,
        vars::MAVERA_API_KEY,
        "set the Mavera API key (mvra_live_...), or DRY_RUN=true to record requests without sending them",
    )?;
    mavera_with_key(vars, key).map(Some)
}

/// Mavera settings around a given key.
pub fn mavera_with_key(vars: &dyn Vars, key: String) -> Result<crate::mavera::MaveraConfig, ConfigError> {
    let mut config = crate::mavera::MaveraConfig::new(secrecy::SecretString::from(key));
    if let Some(url) = optional(vars, vars::MAVERA_BASE_URL) {
        config.base_url = url;
    }
    config.mave_concurrency = number(vars, vars::MAVE_CONCURRENCY, crate::mavera::DEFAULT_MAVE_CONCURRENCY)?;
    Ok(config)
}

/// Customer.io App API settings: required when `needed` (a rule enriches, or a scheduled
/// job runs), else used only if `CIO_APP_KEY` is set.
pub fn customerio(vars: &dyn Vars, needed: bool) -> Result<Option<crate::customerio::CioConfig>, ConfigError> {
    let key = match optional(vars, vars::CIO_APP_KEY) {
        Some(key) => key,
        None if needed => {
            return Err(ConfigError::Missing {
                name: vars::CIO_APP_KEY,
                why: "set the Customer.io App API key (Account settings > API credentials > App API keys); enriching rules and the cio-sync jobs read attributes and metrics with it",
            });
        }
        None => return Ok(None),
    };
    let region = match optional(vars, vars::CIO_REGION) {
        None => crate::customerio::CioRegion::default(),
        Some(r) => r.parse().map_err(|e: crate::customerio::RegionError| ConfigError::Invalid {
            name: vars::CIO_REGION,
            value: r.clone(),
            problem: e.to_string(),
        })?,
    };
    let mut config = crate::customerio::CioConfig::new(secrecy::SecretString::from(key), region);
    if let Some(url) = optional(vars, vars::CIO_APP_API_URL) {
        config = config.with_base_url(url);
    }
    Ok(Some(config.with_requests_per_second(cio_requests_per_second(vars)?)))
}

/// `CIO_REQUESTS_PER_SECOND`: this process's share of Customer.io's per-account 10 per second
/// (all of it when unset, as for one local process).
pub fn cio_requests_per_second(vars: &dyn Vars) -> Result<u32, ConfigError> {
    let max = crate::customerio::DEFAULT_REQUESTS_PER_SECOND;
    let rate = number(vars, vars::CIO_REQUESTS_PER_SECOND, max)?;
    if !(1..=max).contains(&rate) {
        return Err(ConfigError::Invalid {
            name: vars::CIO_REQUESTS_PER_SECOND,
            value: rate.to_string(),
            problem: format!(
                "Customer.io allows {max} App API requests a second per account, shared by every process: give each \
                 process 1 to {max}"
            ),
        });
    }
    Ok(rate)
}

/// The destinations' settings (`deliver = [...]` in `triggers.toml`), each usable, missing
/// (with what to set) or invalid (with what is wrong, never the value). A destination that
/// cannot be used turns off only its own deliveries.
pub fn destinations(vars: &dyn Vars) -> DestinationSettings {
    DestinationSettings {
        slack: slack(vars),
        customerio: cio_track(vars),
        segment: segment(vars),
        webhook: webhook(vars),
    }
}

fn setting<T>(result: Result<T, InvalidSetting>) -> Setting<T> {
    result.map_or_else(Setting::Invalid, Setting::Set)
}

/// Slack: `SLACK_WEBHOOK_URL`.
pub fn slack(vars: &dyn Vars) -> Setting<SlackConfig> {
    match optional(vars, vars::SLACK_WEBHOOK_URL) {
        None => Setting::Missing(format!(
            "{} is not set (a Slack app's incoming webhook URL, https://hooks.slack.com/services/…)",
            vars::SLACK_WEBHOOK_URL
        )),
        Some(url) => setting(SlackConfig::new(&url)),
    }
}

/// Customer.io's Track API: `CIO_SITE_ID`, `CIO_TRACK_API_KEY`, `CIO_REGION` (and
/// `CIO_TRACK_API_URL` for a stand-in).
pub fn cio_track(vars: &dyn Vars) -> Setting<CioTrackConfig> {
    let (site, key) = (optional(vars, vars::CIO_SITE_ID), optional(vars, vars::CIO_TRACK_API_KEY));
    let (Some(site), Some(key)) = (&site, &key) else {
        let unset: Vec<&str> = [(vars::CIO_SITE_ID, &site), (vars::CIO_TRACK_API_KEY, &key)]
            .into_iter()
            .filter(|(_, v)| v.is_none())
            .map(|(n, _)| n)
            .collect();
        return Setting::Missing(format!(
            "{} not set (Customer.io: Settings > Workspace settings > API and webhook credentials > Track API keys)",
            if unset.len() == 1 { format!("{} is", unset[0]) } else { format!("{} are", unset.join(" and ")) }
        ));
    };
    let region = match optional(vars, vars::CIO_REGION).map(|r| r.parse::<crate::customerio::CioRegion>()) {
        None => crate::customerio::CioRegion::default(),
        Some(Ok(region)) => region,
        Some(Err(e)) => return Setting::Invalid(InvalidSetting::new(vars::CIO_REGION, &e.to_string())),
    };
    let config = CioTrackConfig::new(site, key, region);
    setting(match optional(vars, vars::CIO_TRACK_API_URL) {
        Some(url) => config.and_then(|c| c.with_base_url(&url)),
        None => config,
    })
}

/// Segment: `SEGMENT_WRITE_KEY`, `SEGMENT_REGION` (and `SEGMENT_API_URL` for a stand-in).
pub fn segment(vars: &dyn Vars) -> Setting<SegmentConfig> {
    let Some(key) = optional(vars, vars::SEGMENT_WRITE_KEY) else {
        return Setting::Missing(format!(
            "{} is not set (the write key of an HTTP API source: Segment > Connections > Sources)",
            vars::SEGMENT_WRITE_KEY
        ));
    };
    let config = SegmentRegion::parse(&optional(vars, vars::SEGMENT_REGION).unwrap_or_default())
        .and_then(|region| SegmentConfig::new(&key, region));
    setting(match optional(vars, vars::SEGMENT_API_URL) {
        Some(url) => config.and_then(|c| c.with_base_url(&url)),
        None => config,
    })
}

/// The signed webhook: `RESULT_WEBHOOK_URL`, `RESULT_WEBHOOK_SECRET`,
/// `RESULT_WEBHOOK_SECRET_PREVIOUS`, and `RESULT_WEBHOOK_ALLOW_LOCAL` for local development.
pub fn webhook(vars: &dyn Vars) -> Setting<WebhookConfig> {
    let (url, secret) = (optional(vars, vars::RESULT_WEBHOOK_URL), optional(vars, vars::RESULT_WEBHOOK_SECRET));
    let (Some(url), Some(secret)) = (url.as_deref(), secret.as_deref()) else {
        return Setting::Missing(match url {
            None => format!("{} is not set (your endpoint's https URL)", vars::RESULT_WEBHOOK_URL),
            Some(_) => format!(
                "{} is not set (a Standard Webhooks secret: whsec_ and the base64 of 24 to 64 random bytes); results are never sent unsigned",
                vars::RESULT_WEBHOOK_SECRET
            ),
        });
    };
    let allow_local = match flag(vars, vars::RESULT_WEBHOOK_ALLOW_LOCAL, false) {
        Ok(allow) => allow,
        Err(_) => return Setting::Invalid(InvalidSetting::new(vars::RESULT_WEBHOOK_ALLOW_LOCAL, "use true or false")),
    };
    let previous = optional(vars, vars::RESULT_WEBHOOK_SECRET_PREVIOUS);
    setting(WebhookConfig::new(url, secret, previous.as_deref(), allow_local))
}

/// The AWS resources the functions use.
#[derive(Debug, Clone)]
pub struct AwsResources {
    pub table: String,
    pub queue_url: String,
}

impl AwsResources {
    pub fn from_vars(vars: &dyn Vars) -> Result<Self, ConfigError> {
        Ok(AwsResources {
            table: required(vars, vars::EVENTS_TABLE, "set it to the events table's name (template.yaml does)")?,
            queue_url: required(vars, vars::JOBS_QUEUE_URL, "set it to the jobs queue's URL (template.yaml does)")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::triggers::Triggers;

    /// The shipped rules.
    fn shipped() -> Rules {
        Triggers::embedded().unwrap().rules
    }

    #[test]
    fn a_source_without_its_secret_is_off_and_the_others_run() {
        let rules = crate::triggers::Triggers::embedded().unwrap().rules;
        let v = Verifiers::from_vars(&[("CIO_WEBHOOK_SECRET", "x")], &rules).unwrap();
        assert!(v.segment.is_none() && v.customerio.is_some());
        let v = Verifiers::from_vars(&[("SEGMENT_SHARED_SECRET", "x")], &rules).unwrap();
        assert!(v.segment.is_some() && v.customerio.is_none());
        let v = Verifiers::from_vars(&[("SEGMENT_SHARED_SECRET", "x"), ("CIO_WEBHOOK_SECRET", "y")], &rules).unwrap();
        assert!(v.segment.is_some() && v.customerio.is_some());
        let err = Verifiers::from_vars(&[("CIO_WEBHOOK_SECRET_PREVIOUS", "y")], &rules).unwrap_err();
        assert!(err.to_string().contains("CIO_WEBHOOK_SECRET_PREVIOUS is set but CIO_WEBHOOK_SECRET is not"), "{err}");
    }

    #[test]
    fn a_source_without_rules_is_off_unless_it_has_a_secret() {
        let rules = Triggers::parse(
            "[[rule]]\nname = \"r\"\nsource = \"segment\"\nevent = \"e\"\naction = \"research\"\nresearch = { prompt = \"p\" }",
            "t",
        )
        .unwrap()
        .rules;
        let v = Verifiers::from_vars(&[("SEGMENT_SHARED_SECRET", "x")], &rules).unwrap();
        assert!(v.customerio.is_none());
    }

    #[test]
    fn a_deployed_function_refuses_a_guessable_secret_and_a_local_run_takes_it() {
        let rules = crate::triggers::Triggers::embedded().unwrap().rules;
        let strong = "Kq83hZ2p0LwV9xYt";
        let local = [("SEGMENT_SHARED_SECRET", "dev"), ("CIO_WEBHOOK_SECRET", "dev")];
        assert!(Verifiers::from_vars(&local, &rules).is_ok());
        let deployed = [
            ("SECRETS_ARN", "arn:aws:secretsmanager:us-east-1:123456789012:secret:relay"),
            ("SEGMENT_SHARED_SECRET", strong),
            ("CIO_WEBHOOK_SECRET", strong),
            ("CIO_WEBHOOK_SECRET_PREVIOUS", "7"),
        ];
        let err = Verifiers::from_vars(&deployed, &rules).unwrap_err();
        assert!(err.to_string().starts_with("CIO_WEBHOOK_SECRET_PREVIOUS is 1 characters long"), "{err}");
    }

    #[test]
    fn a_rotation_accepts_both_secrets_and_a_comma_splits_nothing() {
        let rules = crate::triggers::Triggers::embedded().unwrap().rules;
        let vars = [
            ("SEGMENT_SHARED_SECRET", "Kq83hZ2p0LwV9xYt,7"),
            ("SEGMENT_SHARED_SECRET_PREVIOUS", "the-previous-secret"),
            ("CIO_WEBHOOK_SECRET", "y"),
        ];
        let v = Verifiers::from_vars(&vars, &rules).unwrap().segment.unwrap();
        let body = br#"{"a":1}"#;
        let signed = |secret: &str| {
            let mut h = http::HeaderMap::new();
            h.insert("x-signature", crate::verify::segment::sign(secret, body).parse().unwrap());
            h
        };
        assert!(v.verify(&signed("Kq83hZ2p0LwV9xYt,7"), body).is_ok());
        assert!(v.verify(&signed("the-previous-secret"), body).is_ok());
        assert!(v.verify(&signed("7"), body).is_err(), "the part after a comma is no secret of its own");
        assert!(v.verify(&signed("Kq83hZ2p0LwV9xYt"), body).is_err());
    }

    #[test]
    fn bad_values_are_named() {
        let rules = shipped();
        let vars = [
            ("SEGMENT_SHARED_SECRET", "x"),
            ("CIO_WEBHOOK_SECRET", "y"),
            ("SEGMENT_ALLOW_FIRST_EVENT_SIGNATURE", "maybe"),
        ];
        let err = Verifiers::from_vars(&vars, &rules).unwrap_err();
        assert!(err.to_string().starts_with("SEGMENT_ALLOW_FIRST_EVENT_SIGNATURE=\"maybe\" is not valid"), "{err}");
        let vars =
            [("SEGMENT_SHARED_SECRET", "x"), ("CIO_WEBHOOK_SECRET", "y"), ("CIO_TIMESTAMP_TOLERANCE_SECS", "5m")];
        assert!(Verifiers::from_vars(&vars, &rules).is_err());
        let vars = [("SEGMENT_SHARED_SECRET", "x"), ("CIO_WEBHOOK_SECRET", "y"), ("CIO_TIMESTAMP_TOLERANCE_SECS", "0")];
        let err = Verifiers::from_vars(&vars, &rules).unwrap_err();
        assert!(err.to_string().contains("1 to 604800 s"), "{err}");
        let vars =
            [("SEGMENT_SHARED_SECRET", "x"), ("CIO_WEBHOOK_SECRET", "y"), ("CIO_TIMESTAMP_TOLERANCE_SECS", "864000")];
        assert!(Verifiers::from_vars(&vars, &rules).is_ok(), "over 7 days is cut to 7 days, with a warning");
    }

    #[test]
    fn secrets_win_over_the_environment() {
        let base: HashMap<String, String> =
            [("A".to_owned(), "env".to_owned()), ("B".to_owned(), "env".to_owned())].into();
        let layered = Layered { secrets: [("A".to_owned(), "secret".to_owned())].into(), base: &base };
        assert_eq!(layered.get("A").as_deref(), Some("secret"));
        assert_eq!(layered.get("B").as_deref(), Some("env"));
        assert!(!format!("{layered:?}").contains("secret\""), "Debug names keys, not values: {layered:?}");
    }

    #[test]
    fn the_worker_needs_a_mavera_key_unless_dry_run() {
        let err = mavera(&[("MAVE_CONCURRENCY", "5")]).unwrap_err();
        assert!(err.to_string().contains("DRY_RUN=true"), "{err}");
        assert!(mavera(&[("DRY_RUN", "true")]).unwrap().is_none());
        let config =
            mavera(&[("MAVERA_API_KEY", "mvra_live_test_placeholder"), ("MAVE_CONCURRENCY", "5")]).unwrap().unwrap();
        assert_eq!(config.mave_concurrency, 5);
        assert_eq!(config.base_url, crate::mavera::DEFAULT_BASE_URL);
    }

    #[test]
    fn customerio_is_required_only_when_needed() {
        assert!(customerio(&[("CIO_REGION", "eu")], false).unwrap().is_none());
        let err = customerio(&[("CIO_REGION", "eu")], true).unwrap_err();
        assert!(err.to_string().starts_with("CIO_APP_KEY is not set"), "{err}");
        let err = customerio(&[("CIO_APP_KEY", "k"), ("CIO_REGION", "asia")], true).unwrap_err();
        assert!(err.to_string().starts_with("CIO_REGION=\"asia\""), "{err}");
        let config = customerio(&[("CIO_APP_KEY", "k"), ("CIO_REGION", "EU")], true).unwrap().unwrap();
        assert_eq!(config.region, crate::customerio::CioRegion::Eu);
    }

    #[test]
    fn the_customerio_rate_is_this_processs_share_of_ten() {
        let rate = |value: &str| customerio(&[("CIO_APP_KEY", "k"), ("CIO_REQUESTS_PER_SECOND", value)], true);
        assert_eq!(rate("").unwrap().unwrap().requests_per_second, 10, "unset: one process has all of it");
        assert_eq!(rate("3").unwrap().unwrap().requests_per_second, 3);
        for bad in ["0", "11", "2.5"] {
            let err = rate(bad).unwrap_err().to_string();
            assert!(err.starts_with("CIO_REQUESTS_PER_SECOND="), "{err}");
        }
        assert!(rate("11").unwrap_err().to_string().contains("per account"));
    }

    #[test]
    fn each_destination_is_usable_missing_or_invalid_on_its_own() {
        let none = destinations(&[("CIO_REGION", "eu")]);
        for name in crate::deliver::DestinationName::ALL {
            let problem = none.problem(name).unwrap();
            assert!(name.variables().iter().any(|v| problem.contains(v)), "{name}: {problem}");
        }
        let secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
        let vars = [
            ("SLACK_WEBHOOK_URL", "https://hooks.slack.com/services/T0/B0/slacksecret"),
            ("CIO_SITE_ID", "site1"),
            ("CIO_TRACK_API_KEY", "trackkey"),
            ("CIO_REGION", "eu"),
            ("SEGMENT_WRITE_KEY", "writekey"),
            ("SEGMENT_REGION", "eu"),
            ("RESULT_WEBHOOK_URL", "https://hooks.example.com/mavera"),
            ("RESULT_WEBHOOK_SECRET", secret),
        ];
        let all = destinations(&vars);
        assert!(crate::deliver::DestinationName::ALL.iter().all(|d| all.problem(*d).is_none()), "{all:?}");
        let Setting::Set(cio) = &all.customerio else { panic!() };
        assert_eq!(cio.base_url(), "https://track-eu.customer.io");
        let Setting::Set(segment) = &all.segment else { panic!() };
        assert_eq!(segment.base_url(), "https://events.eu1.segmentapis.com");
        assert!(!format!("{all:?}").contains("slacksecret") && !format!("{all:?}").contains("trackkey"));

        let only_site = destinations(&[("CIO_SITE_ID", "site1")]);
        assert!(
            only_site
                .problem(crate::deliver::DestinationName::CustomerIo)
                .unwrap()
                .starts_with("CIO_TRACK_API_KEY is not set")
        );
        let no_secret = destinations(&[("RESULT_WEBHOOK_URL", "https://hooks.example.com/x")]);
        assert!(no_secret.problem(crate::deliver::DestinationName::Webhook).unwrap().contains("never sent unsigned"));
        let bad = destinations(&[
            ("SLACK_WEBHOOK_URL", "http://hooks.slack.com/services/T0/B0/slacksecret"),
            ("SEGMENT_WRITE_KEY", "k"),
            ("SEGMENT_REGION", "asia"),
        ]);
        assert!(matches!(bad.slack, Setting::Invalid(_)) && matches!(bad.segment, Setting::Invalid(_)));
        assert!(!bad.problem(crate::deliver::DestinationName::Slack).unwrap().contains("slacksecret"));
        let local = [("RESULT_WEBHOOK_URL", "http://127.0.0.1:9/hook"), ("RESULT_WEBHOOK_SECRET", secret)];
        assert!(matches!(webhook(&local), Setting::Invalid(_)), "loopback needs RESULT_WEBHOOK_ALLOW_LOCAL");
        let allowed = [local[0], local[1], ("RESULT_WEBHOOK_ALLOW_LOCAL", "true")];
        assert!(matches!(webhook(&allowed), Setting::Set(_)));
    }

    #[test]
    fn aws_resources_are_required() {
        let err = AwsResources::from_vars(&[("EVENTS_TABLE", "t")]).unwrap_err();
        assert!(err.to_string().starts_with("JOBS_QUEUE_URL is not set"), "{err}");
    }
}
