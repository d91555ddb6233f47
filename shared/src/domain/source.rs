use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A webhook sender. The path segment in `POST /webhooks/{source}` and the `source` of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Source {
    #[serde(rename = "segment")]
    Segment,
    #[serde(rename = "customerio")]
    CustomerIo,
}

#[derive(Debug, thiserror::Error)]
#[error("unknown source `{0}`: expected `segment` or `customerio`")]
pub struct UnknownSource(pub String);

impl Source {
    pub const ALL: [Source; 2] = [Source::Segment, Source::CustomerIo];

    pub fn parse(s: &str) -> Result<Self, UnknownSource> {
        match s {
            "segment" => Ok(Source::Segment),
            "customerio" => Ok(Source::CustomerIo),
            other => Err(UnknownSource(super::truncate_chars(other, 64).to_owned())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Segment => "segment",
            Source::CustomerIo => "customerio",
        }
    }
}

impl FromStr for Source {
    type Err = UnknownSource;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Source::parse(s)
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_two_path_names_and_nothing_else() {
        assert_eq!(Source::parse("segment").unwrap(), Source::Segment);
        assert_eq!(Source::parse("customerio").unwrap(), Source::CustomerIo);
        for bad in ["", "Segment", "customer.io", "stripe"] {
            assert!(Source::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn display_round_trips() {
        for s in Source::ALL {
            assert_eq!(Source::parse(&s.to_string()).unwrap(), s);
        }
    }
}
