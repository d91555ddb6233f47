use std::fmt;

use secrecy::{ExposeSecret, SecretString};

/// Shorter signing secrets can be guessed: a deployed function refuses to start with one,
/// a local run warns.
pub const MIN_SECRET_CHARS: usize = 16;

/// One source's signing secrets: the current one and, during a rotation, the previous (or
/// next) one from its own variable (`{NAME}_PREVIOUS`). A value is used whole: a secret may
/// contain any character, commas included. A request signed with either is accepted.
#[derive(Clone)]
pub struct SigningSecrets {
    secrets: Vec<(&'static str, SecretString)>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SecretsError {
    #[error(
        "{0} is not set: set it to the signing secret, in the environment or as a key of the function's SECRETS_ARN secret"
    )]
    Missing(&'static str),
    #[error("{previous} is set but {current} is not: {current} holds the secret senders use now")]
    PreviousWithoutCurrent { current: &'static str, previous: &'static str },
    #[error(
        "{name} is {chars} characters long; a signing secret needs at least {MIN_SECRET_CHARS} to resist guessing: set a longer one in the sender and here"
    )]
    TooShort { name: &'static str, chars: usize },
}

impl SigningSecrets {
    /// The secret in variable `name` (required: verification is never skipped) and the one
    /// in `previous_name`, if set. Surrounding whitespace is dropped.
    pub fn new(
        name: &'static str,
        current: Option<&str>,
        previous_name: &'static str,
        previous: Option<&str>,
    ) -> Result<Self, SecretsError> {
        let usable = |v: Option<&str>| v.map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
        let (current, previous) = (usable(current), usable(previous));
        let Some(current) = current else {
            return Err(match previous {
                Some(_) => SecretsError::PreviousWithoutCurrent { current: name, previous: previous_name },
                None => SecretsError::Missing(name),
            });
        };
        let mut secrets = vec![(name, SecretString::from(current))];
        secrets.extend(previous.map(|p| (previous_name, SecretString::from(p))));
        Ok(SigningSecrets { secrets })
    }

    /// One secret, no rotation: for tests, samples and `relay send`.
    pub fn single(name: &'static str, value: &str) -> Result<Self, SecretsError> {
        Self::new(name, Some(value), "", None)
    }

    /// The first secret shorter than [`MIN_SECRET_CHARS`], as an error naming its variable.
    pub fn check_strength(&self) -> Result<(), SecretsError> {
        for (name, secret) in &self.secrets {
            let chars = secret.expose_secret().chars().count();
            if chars < MIN_SECRET_CHARS {
                return Err(SecretsError::TooShort { name, chars });
            }
        }
        Ok(())
    }

    /// The variables whose value contains a comma: before `*_PREVIOUS` existed, a comma
    /// separated a rotation's two secrets, and now it is part of the secret.
    pub fn with_commas(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.secrets.iter().filter(|(_, s)| s.expose_secret().contains(',')).map(|(name, _)| *name)
    }

    pub(crate) fn iter_bytes(&self) -> impl Iterator<Item = &[u8]> {
        self.secrets.iter().map(|(_, s)| s.expose_secret().as_bytes())
    }

    /// The current secret, for signing test and sample requests.
    pub fn current(&self) -> &str {
        self.secrets[0].1.expose_secret()
    }

    pub fn len(&self) -> usize {
        self.secrets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }
}

impl fmt::Debug for SigningSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningSecrets([REDACTED; {}])", self.secrets.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_previous_secret_has_its_own_variable() {
        let s = SigningSecrets::new("X", Some(" new "), "X_PREVIOUS", Some("old")).unwrap();
        assert_eq!(s.iter_bytes().collect::<Vec<_>>(), [b"new".as_slice(), b"old".as_slice()]);
        assert_eq!(s.current(), "new");
    }

    #[test]
    fn a_comma_is_part_of_the_secret_not_a_separator() {
        // Observed: `Kq83hZ2p0LwV9xYt,7` made the one-character secret `7` valid.
        let s = SigningSecrets::new("X", Some("Kq83hZ2p0LwV9xYt,7"), "X_PREVIOUS", None).unwrap();
        assert_eq!(s.iter_bytes().collect::<Vec<_>>(), [b"Kq83hZ2p0LwV9xYt,7".as_slice()]);
        assert_eq!(s.with_commas().collect::<Vec<_>>(), ["X"]);
    }

    #[test]
    fn refuses_missing_or_empty_and_a_previous_alone() {
        assert_eq!(SigningSecrets::new("X", None, "X_PREVIOUS", None).unwrap_err(), SecretsError::Missing("X"));
        assert_eq!(SigningSecrets::new("X", Some("  "), "X_PREVIOUS", None).unwrap_err(), SecretsError::Missing("X"));
        assert_eq!(
            SigningSecrets::new("X", None, "X_PREVIOUS", Some("old-secret")).unwrap_err(),
            SecretsError::PreviousWithoutCurrent { current: "X", previous: "X_PREVIOUS" }
        );
    }

    #[test]
    fn short_secrets_are_named() {
        let long = "a".repeat(MIN_SECRET_CHARS);
        assert_eq!(SigningSecrets::single("X", &long).unwrap().check_strength(), Ok(()));
        let s = SigningSecrets::new("X", Some(&long), "X_PREVIOUS", Some("7")).unwrap();
        assert_eq!(s.check_strength(), Err(SecretsError::TooShort { name: "X_PREVIOUS", chars: 1 }));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let s = SigningSecrets::single("X", "hunter2").unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
