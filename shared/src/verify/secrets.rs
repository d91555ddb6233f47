use std::fmt;

use secrecy::{ExposeSecret, SecretString};

/// One source's signing secrets: the current one and, during a rotation, the next.
/// Configured as a comma-separated list; a request signed with any of them is accepted.
#[derive(Clone)]
pub struct SigningSecrets(Vec<SecretString>);

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SecretsError {
    #[error(
        "{0} is not set: set it to the signing secret (comma-separated during a rotation), in the environment or as a key of the SECRETS_ARN secret"
    )]
    Missing(&'static str),
    #[error("{0} has an empty entry: remove the stray comma")]
    EmptyEntry(&'static str),
    #[error("{0} lists more than 4 secrets: keep the current and the next one")]
    TooMany(&'static str),
}

impl SigningSecrets {
    /// Parses the comma-separated value of the variable `name`. An empty value is an error:
    /// verification is never skipped.
    pub fn parse(name: &'static str, value: Option<&str>) -> Result<Self, SecretsError> {
        let value = value.map(str::trim).filter(|v| !v.is_empty()).ok_or(SecretsError::Missing(name))?;
        let mut secrets = Vec::new();
        for part in value.split(',') {
            let part = part.trim();
            if part.is_empty() {
                return Err(SecretsError::EmptyEntry(name));
            }
            secrets.push(SecretString::from(part.to_owned()));
        }
        if secrets.len() > 4 {
            return Err(SecretsError::TooMany(name));
        }
        Ok(SigningSecrets(secrets))
    }

    pub(crate) fn iter_bytes(&self) -> impl Iterator<Item = &[u8]> {
        self.0.iter().map(|s| s.expose_secret().as_bytes())
    }

    /// The first (current) secret, for signing test and sample requests.
    pub fn current(&self) -> &str {
        self.0[0].expose_secret()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SigningSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningSecrets([REDACTED; {}])", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_rotation_pair() {
        let s = SigningSecrets::parse("X", Some(" new , old ")).unwrap();
        assert_eq!(s.iter_bytes().collect::<Vec<_>>(), [b"new".as_slice(), b"old".as_slice()]);
    }

    #[test]
    fn refuses_missing_or_empty() {
        assert_eq!(SigningSecrets::parse("X", None).unwrap_err(), SecretsError::Missing("X"));
        assert_eq!(SigningSecrets::parse("X", Some("  ")).unwrap_err(), SecretsError::Missing("X"));
        assert_eq!(SigningSecrets::parse("X", Some("a,,b")).unwrap_err(), SecretsError::EmptyEntry("X"));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let s = SigningSecrets::parse("X", Some("hunter2")).unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
