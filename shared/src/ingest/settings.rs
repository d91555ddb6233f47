//! What ingest runs with, read from its variables: the rules, and a verifier for each source
//! they use. A source that has rules must have its secret: verification is never skipped. A
//! source without rules is off unless its secret is set.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{ConfigError, Vars, flag, number, optional, vars};
use crate::domain::Source;
use crate::rules::Rules;
use crate::verify::{CustomerIoVerifier, SegmentVerifier, SigningSecrets, Verifiers, customerio};

#[derive(Debug, Clone)]
pub struct Settings {
    pub rules: Arc<Rules>,
    pub verifiers: Verifiers,
}

impl Settings {
    /// The verifiers for `rules`' sources, from `SEGMENT_SHARED_SECRET`,
    /// `SEGMENT_ALLOW_FIRST_EVENT_SIGNATURE`, `CIO_WEBHOOK_SECRET` and
    /// `CIO_TIMESTAMP_TOLERANCE_SECS`.
    pub fn from_vars(vars: &dyn Vars, rules: Arc<Rules>) -> Result<Self, ConfigError> {
        let verifiers = verifiers(vars, &rules)?;
        Ok(Settings { rules, verifiers })
    }
}

fn verifiers(vars: &dyn Vars, rules: &Rules) -> Result<Verifiers, ConfigError> {
    let needed = rules.sources();
    let secrets = |source: Source, name: &'static str| -> Result<Option<SigningSecrets>, ConfigError> {
        let value = optional(vars, name);
        if value.is_none() && !needed.contains(&source) {
            return Ok(None);
        }
        Ok(Some(SigningSecrets::parse(name, value.as_deref())?))
    };
    let segment = secrets(Source::Segment, vars::SEGMENT_SHARED_SECRET)?.map(|s| {
        flag(vars, vars::SEGMENT_ALLOW_FIRST_EVENT_SIGNATURE, false).map(|allow| SegmentVerifier::new(&s, allow))
    });
    let customerio = secrets(Source::CustomerIo, vars::CIO_WEBHOOK_SECRET)?.map(|s| {
        let default = customerio::DEFAULT_TOLERANCE.as_secs();
        number(vars, vars::CIO_TIMESTAMP_TOLERANCE_SECS, default)
            .map(|secs| CustomerIoVerifier::new(&s, Duration::from_secs(secs)))
    });
    Ok(Verifiers { segment: segment.transpose()?, customerio: customerio.transpose()? })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::triggers::Triggers;

    /// The shipped rules.
    fn embedded() -> Arc<Rules> {
        Arc::new(Triggers::embedded().unwrap().rules)
    }

    #[test]
    fn sources_with_rules_need_their_secret() {
        let err = Settings::from_vars(&[("CIO_WEBHOOK_SECRET", "x")], embedded()).unwrap_err();
        assert!(err.to_string().starts_with("SEGMENT_SHARED_SECRET is not set"), "{err}");
        let err = Settings::from_vars(&[("SEGMENT_SHARED_SECRET", "x")], embedded()).unwrap_err();
        assert!(err.to_string().starts_with("CIO_WEBHOOK_SECRET is not set"), "{err}");
        let v = Settings::from_vars(&[("SEGMENT_SHARED_SECRET", "x"), ("CIO_WEBHOOK_SECRET", "y")], embedded())
            .unwrap()
            .verifiers;
        assert!(v.segment.is_some() && v.customerio.is_some());
    }

    #[test]
    fn a_source_without_rules_is_off_unless_it_has_a_secret() {
        let rules = Triggers::parse(
            "[[rule]]\nname = \"r\"\nsource = \"segment\"\nevent = \"e\"\naction = \"research\"\nresearch = { prompt = \"p\" }",
            "t",
        )
        .unwrap()
        .rules;
        let v = Settings::from_vars(&[("SEGMENT_SHARED_SECRET", "x")], Arc::new(rules)).unwrap().verifiers;
        assert!(v.customerio.is_none());
    }

    #[test]
    fn bad_values_are_named() {
        let vars = [
            ("SEGMENT_SHARED_SECRET", "x"),
            ("CIO_WEBHOOK_SECRET", "y"),
            ("SEGMENT_ALLOW_FIRST_EVENT_SIGNATURE", "maybe"),
        ];
        let err = Settings::from_vars(&vars, embedded()).unwrap_err();
        assert!(err.to_string().starts_with("SEGMENT_ALLOW_FIRST_EVENT_SIGNATURE=\"maybe\" is not valid"), "{err}");
        let vars =
            [("SEGMENT_SHARED_SECRET", "x"), ("CIO_WEBHOOK_SECRET", "y"), ("CIO_TIMESTAMP_TOLERANCE_SECS", "5m")];
        assert!(Settings::from_vars(&vars, embedded()).is_err());
    }
}
