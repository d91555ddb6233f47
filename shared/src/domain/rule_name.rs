use std::fmt;

use serde::{Deserialize, Serialize};

/// A trigger rule's name: lowercase letters, digits, `-` and `_`, 1 to 64 characters, so it
/// is safe inside a table key, a log field and a metric dimension.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RuleName(String);

#[derive(Debug, thiserror::Error, PartialEq)]
#[error(
    "`{0}` is not a valid rule name: use 1 to 64 lowercase letters, digits, `-` or `_`, starting with a letter or digit"
)]
pub struct RuleNameError(pub String);

impl RuleName {
    pub fn parse(s: impl Into<String>) -> Result<Self, RuleNameError> {
        let s = s.into();
        let valid = (1..=64).contains(&s.len())
            && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if valid { Ok(RuleName(s)) } else { Err(RuleNameError(s)) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RuleName {
    type Error = RuleNameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        RuleName::parse(s)
    }
}

impl From<RuleName> for String {
    fn from(r: RuleName) -> String {
        r.0
    }
}

impl fmt::Display for RuleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names() {
        for ok in ["trial-started-persona", "a", "cio_alert_2"] {
            assert!(RuleName::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn invalid_names() {
        for bad in ["", "Trial", "has space", "a#b", "-lead", &"x".repeat(65)] {
            assert!(RuleName::parse(bad).is_err(), "{bad}");
        }
    }
}
