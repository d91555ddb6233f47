//! Parsing webhook bodies into [`Event`]s, in two steps. [`envelopes`] reads what every
//! event needs (id, name) and leaves the rest as raw JSON; [`Envelope::to_event`] builds
//! the merged fields only for events some rule could match. Unknown fields are ignored.

mod customerio;
mod segment;
mod strict;

use std::borrow::Cow;

use serde_json::value::RawValue;

use crate::domain::{Event, EventId, EventIdError, Source};
use crate::telemetry::RejectionKind;

/// A parsed event whose fields are still raw JSON.
#[derive(Debug)]
pub struct Envelope<'a> {
    pub source: Source,
    pub id: EventId,
    pub name: Cow<'a, str>,
    /// Position in a Segment batch, for error messages.
    pub index: Option<usize>,
    /// When the sender dated the event (Segment: `receivedAt`, else `sentAt`, else
    /// `timestamp`), if it did: how old a signed event is, for refusing replays.
    pub sent_at: Option<std::time::SystemTime>,
    raw: RawFields<'a>,
}

#[derive(Debug)]
enum RawFields<'a> {
    Segment(segment::Raw<'a>),
    CustomerIo(customerio::Raw<'a>),
}

impl Envelope<'_> {
    /// Builds the normalized event. Fails only if a field that must be an object is not.
    pub fn to_event(&self) -> Result<Event, ParseError> {
        match &self.raw {
            RawFields::Segment(raw) => segment::to_event(self, raw),
            RawFields::CustomerIo(raw) => customerio::to_event(self, raw),
        }
    }
}

/// Parses a body from `source`: Segment sends one event object or a JSON array of them,
/// Customer.io one event object. Any bad event fails the whole body.
pub fn envelopes(source: Source, body: &[u8]) -> Result<Vec<Envelope<'_>>, ParseError> {
    batch(source, body)?.into_iter().collect()
}

/// Like [`envelopes`], but a bad element of a Segment array fails only itself: the events of
/// a body, each parsed or not. `Err` is a body with no events in it at all (not JSON, not an
/// object or an array, an empty array).
pub fn batch(source: Source, body: &[u8]) -> Result<Vec<Result<Envelope<'_>, ParseError>>, ParseError> {
    match source {
        Source::Segment => segment::batch(body),
        Source::CustomerIo => customerio::envelope(body).map(|e| vec![Ok(e)]),
    }
}

/// Why a body could not be read as events. Every variant answers 400.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("the body is not valid JSON: {0}")]
    Json(#[source] serde_json::Error),
    #[error("{}the body must be a JSON object{}", at(*index), if index.is_none() { " (or, from Segment, an array of objects)" } else { "" })]
    NotAnObject { index: Option<usize> },
    #[error("the body is an empty array: there is no event in it")]
    EmptyBatch,
    #[error("{}the event has no `{field}`, the id used to deduplicate it{hint}", at(*index))]
    MissingId { field: &'static str, index: Option<usize>, hint: &'static str },
    #[error("{}the `{field}` is not usable as an id: {source}", at(*index))]
    InvalidId { field: &'static str, index: Option<usize>, source: EventIdError },
    #[error("{}the event has neither {fields}: nothing names it", at(*index))]
    MissingName { fields: &'static str, index: Option<usize> },
    #[error("{}the event's fields could not be read: {source}", at(*index))]
    Fields { index: Option<usize>, source: serde_json::Error },
    #[error("{}`{field}` must be {expected}", at(*index))]
    WrongType { field: &'static str, expected: &'static str, index: Option<usize> },
}

/// A copy, for an error kept while the body it came from is still borrowed; serde's errors
/// are copied as their text.
impl Clone for ParseError {
    fn clone(&self) -> Self {
        use serde::de::Error as _;
        let copy = |e: &serde_json::Error| serde_json::Error::custom(e.to_string());
        match self {
            ParseError::Json(e) => ParseError::Json(copy(e)),
            ParseError::NotAnObject { index } => ParseError::NotAnObject { index: *index },
            ParseError::EmptyBatch => ParseError::EmptyBatch,
            ParseError::MissingId { field, index, hint } => ParseError::MissingId { field, index: *index, hint },
            ParseError::InvalidId { field, index, source } => {
                ParseError::InvalidId { field, index: *index, source: source.clone() }
            }
            ParseError::MissingName { fields, index } => ParseError::MissingName { fields, index: *index },
            ParseError::Fields { index, source } => ParseError::Fields { index: *index, source: copy(source) },
            ParseError::WrongType { field, expected, index } => {
                ParseError::WrongType { field, expected, index: *index }
            }
        }
    }
}

fn at(index: Option<usize>) -> String {
    index.map(|i| format!("event {i} of the batch: ")).unwrap_or_default()
}

impl ParseError {
    pub fn code(&self) -> &'static str {
        match self {
            ParseError::Json(_) => "malformed_json",
            ParseError::NotAnObject { .. } | ParseError::EmptyBatch => "unexpected_shape",
            ParseError::MissingId { .. } | ParseError::InvalidId { .. } => "missing_id",
            ParseError::MissingName { .. } => "missing_event_name",
            ParseError::Fields { .. } | ParseError::WrongType { .. } => "invalid_fields",
        }
    }

    /// Every parse error is the sender's malformed body.
    pub fn kind(&self) -> RejectionKind {
        RejectionKind::Malformed
    }
}

/// Reads an optional raw JSON object into a map; `null` and absent mean empty.
/// A duplicate key anywhere in it is an error (see `strict`).
fn object_of(raw: Option<&RawValue>) -> Result<Option<serde_json::Map<String, serde_json::Value>>, serde_json::Error> {
    match raw {
        None => Ok(None),
        Some(raw) if raw.get() == "null" => Ok(None),
        Some(raw) => strict::object(raw.get()).map(Some),
    }
}

/// Refuses a field that must be an object (or null) but is not, without reading it: a cheap
/// check made for every event, including those no rule reads further.
fn check_object(raw: Option<&RawValue>, field: &'static str, index: Option<usize>) -> Result<(), ParseError> {
    match raw.map(|r| r.get().as_bytes()[0]) {
        None | Some(b'{') | Some(b'n') => Ok(()),
        Some(_) => Err(ParseError::WrongType { field, expected: "an object", index }),
    }
}

fn id_from(
    raw: Option<Cow<'_, str>>,
    field: &'static str,
    index: Option<usize>,
    hint: &'static str,
) -> Result<EventId, ParseError> {
    let raw = raw.ok_or(ParseError::MissingId { field, index, hint })?;
    EventId::parse(raw.into_owned()).map_err(|source| ParseError::InvalidId { field, index, source })
}

/// The text of a JSON string or number, where a sender documents a string id but custom
/// mappings may send a number. Empty strings, `null` and other JSON count as absent. The
/// text is canonical (see [`canonical_id`]), as `once_per_user` compares it.
fn scalar_text(raw: Option<&RawValue>) -> Option<String> {
    let raw = raw?.get();
    match raw.as_bytes().first()? {
        b'"' => serde_json::from_str::<String>(raw).ok().and_then(|s| canonical_id(&s)),
        b'-' | b'0'..=b'9' => Some(canonical_number_id(raw)),
        _ => None,
    }
}

/// Refuses an id field that is neither a string, a number nor null.
fn check_scalar(raw: Option<&RawValue>, field: &'static str, index: Option<usize>) -> Result<(), ParseError> {
    match raw.map(|r| r.get().as_bytes()[0]) {
        None | Some(b'"' | b'-' | b'0'..=b'9' | b'n') => Ok(()),
        Some(_) => Err(ParseError::WrongType { field, expected: "a string or a number", index }),
    }
}

/// One spelling per user id: a string id trimmed (blank is no id) and otherwise kept as it
/// is (ids are case-sensitive, and `"007"` is not `"7"`); a JSON number written the shortest
/// way, so `42`, `42.0` and `4.2e1` are all the string id `"42"` and `once_per_user` cannot
/// be walked around by re-spelling a number.
pub fn canonical_id(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// The canonical text of a JSON number used as an id (see [`canonical_id`]): integers as
/// integers (exactly, however long), other finite values in the shortest form that reads
/// back the same; unreadable text as it is.
pub fn canonical_number_id(text: &str) -> String {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    if !unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit()) {
        // Exact integers: drop leading zeros only.
        let digits = unsigned.trim_start_matches('0');
        let digits = if digits.is_empty() { "0" } else { digits };
        let negative = text.starts_with('-') && digits != "0";
        return format!("{}{digits}", if negative { "-" } else { "" });
    }
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() && value.fract() == 0.0 && value.abs() < 9.007_199_254_740_992e15 => {
            format!("{}", value as i64)
        }
        Ok(value) if value.is_finite() => format!("{value}"),
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod canonical_tests {
    use super::{canonical_id, canonical_number_id};

    #[test]
    fn one_spelling_per_numeric_user_id() {
        for spelling in ["42", "42.0", "4.2e1", "420e-1", "42.000", "4.20E+1"] {
            assert_eq!(canonical_number_id(spelling), "42", "{spelling}");
        }
        assert_eq!(canonical_number_id("-0"), "0");
        assert_eq!(canonical_number_id("4.25"), "4.25");
        assert_eq!(canonical_number_id("12345678901234567890123"), "12345678901234567890123");
        assert_eq!(canonical_number_id("1e400"), "1e400", "out of range stays as sent");
    }

    #[test]
    fn string_ids_are_only_trimmed() {
        assert_eq!(canonical_id(" 42 ").as_deref(), Some("42"));
        assert_eq!(canonical_id("0200000001").as_deref(), Some("0200000001"));
        assert_eq!(canonical_id("usr_K8m2n").as_deref(), Some("usr_K8m2n"));
        assert_eq!(canonical_id("   "), None);
    }
}
