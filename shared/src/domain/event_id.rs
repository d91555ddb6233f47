use std::fmt;

use serde::{Deserialize, Serialize};

/// The sender's id for one event: Segment `messageId`, Customer.io `event_id`. The dedupe key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EventId(String);

/// Longer than any sender documents (Segment caps `messageId` at 100 characters), short
/// enough to keep table keys small.
pub const MAX_EVENT_ID_LEN: usize = 256;

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum EventIdError {
    #[error("the event id is empty")]
    Empty,
    #[error("the event id is {0} bytes long; at most {MAX_EVENT_ID_LEN} are accepted")]
    TooLong(usize),
    #[error("the event id contains a control character")]
    ControlCharacter,
}

impl EventId {
    pub fn parse(s: impl Into<String>) -> Result<Self, EventIdError> {
        let s = s.into();
        if s.trim().is_empty() {
            return Err(EventIdError::Empty);
        }
        if s.len() > MAX_EVENT_ID_LEN {
            return Err(EventIdError::TooLong(s.len()));
        }
        if s.chars().any(char::is_control) {
            return Err(EventIdError::ControlCharacter);
        }
        Ok(EventId(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for EventId {
    type Error = EventIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        EventId::parse(s)
    }
}

impl From<EventId> for String {
    fn from(id: EventId) -> String {
        id.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_sender_ids() {
        for ok in ["ajs-f8ca1e4de5024d9430b3928bd8ac6b96", "01E4C4CT6YDC7Y5M7FE1GWWPQJ", "a#b"] {
            assert_eq!(EventId::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_empty_long_and_control_characters() {
        assert_eq!(EventId::parse(""), Err(EventIdError::Empty));
        assert_eq!(EventId::parse("   "), Err(EventIdError::Empty));
        assert_eq!(EventId::parse("x".repeat(257)), Err(EventIdError::TooLong(257)));
        assert_eq!(EventId::parse("a\nb"), Err(EventIdError::ControlCharacter));
    }

    #[test]
    fn deserializing_validates() {
        assert!(serde_json::from_str::<EventId>("\"\"").is_err());
        assert!(serde_json::from_str::<EventId>("\"ok\"").is_ok());
    }
}
