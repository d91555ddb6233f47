use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{EventId, Source};

/// One webhook event, normalized across senders. This is what rules match, templates read
/// and the queue carries.
///
/// `fields` merges what rules may look at. Segment: `context.traits`, then `traits`, then
/// `properties` (later wins, so the event's own properties beat stored traits). Customer.io:
/// the top-level `object_type`, `metric` and `timestamp`, then everything in `data`.
/// Both add `user_id`. The worker adds `customer` after an attribute lookup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub source: Source,
    pub id: EventId,
    /// Segment `event` (for track) or `type`; Customer.io `metric`.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default)]
    pub fields: Map<String, Value>,
}

impl Event {
    /// Looks a dotted path up. `event_id` and `event_name` are the event's own id and name;
    /// every other path reads `fields` (`plan`, `identifiers.email`, `customer.plan`).
    pub fn lookup(&self, path: &FieldPath) -> Option<LookedUp<'_>> {
        let mut segments = path.segments();
        let first = segments.next()?;
        if path.len() == 1 {
            match first {
                "event_id" => return Some(LookedUp::Str(self.id.as_str())),
                "event_name" => return Some(LookedUp::Str(&self.name)),
                _ => {}
            }
        }
        walk(self.fields.get(first)?, segments)
    }

    /// The top-level scalar fields (strings, numbers, booleans), as Mavera's sample puts
    /// into a persona's context.
    pub fn scalar_fields(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.fields
            .iter()
            .filter(|(_, v)| matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_)))
            .map(|(k, v)| (k.as_str(), v))
    }
}

/// Looks a dotted path up in a map of fields: objects by key, arrays by index. Null counts as
/// absent.
pub fn lookup_in<'a>(fields: &'a Map<String, Value>, path: &FieldPath) -> Option<LookedUp<'a>> {
    let mut segments = path.segments();
    walk(fields.get(segments.next()?)?, segments)
}

/// From a top-level value down the rest of a path.
fn walk<'a, 's>(mut value: &'a Value, rest: impl Iterator<Item = &'s str>) -> Option<LookedUp<'a>> {
    for seg in rest {
        value = match value {
            Value::Object(map) => map.get(seg)?,
            Value::Array(items) => items.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    if value.is_null() { None } else { Some(LookedUp::Json(value)) }
}

/// A value found by [`Event::lookup`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LookedUp<'a> {
    Str(&'a str),
    Json(&'a Value),
}

impl LookedUp<'_> {
    /// The text a template shows: strings as they are, other JSON compact.
    pub fn write_to(&self, out: &mut String) {
        match self {
            LookedUp::Str(s) => out.push_str(s),
            LookedUp::Json(Value::String(s)) => out.push_str(s),
            LookedUp::Json(Value::Number(n)) => {
                use std::fmt::Write;
                let _ = write!(out, "{n}");
            }
            LookedUp::Json(Value::Bool(b)) => out.push_str(if *b { "true" } else { "false" }),
            LookedUp::Json(other) => out.push_str(&other.to_string()),
        }
    }

    pub fn to_text(&self) -> String {
        let mut s = String::new();
        self.write_to(&mut s);
        s
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            LookedUp::Json(Value::Number(n)) => n.as_f64(),
            LookedUp::Str(s) => s.trim().parse().ok(),
            LookedUp::Json(Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

/// A dotted path into an event's fields, split once when rules load.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct FieldPath {
    raw: String,
    /// Byte ranges of the segments in `raw`.
    bounds: Vec<(u16, u16)>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FieldPathError {
    #[error("the field path is empty")]
    Empty,
    #[error("the field path `{0}` has an empty segment (two dots, or a dot at an end)")]
    EmptySegment(String),
    #[error("the field path `{0}` contains characters other than letters, digits, `_`, `-`, `$` and `.`")]
    BadCharacter(String),
    #[error("the field path is longer than 256 bytes")]
    TooLong,
}

impl FieldPath {
    pub fn parse(raw: &str) -> Result<Self, FieldPathError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(FieldPathError::Empty);
        }
        if raw.len() > 256 {
            return Err(FieldPathError::TooLong);
        }
        if !raw.chars().all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '$' | '.')) {
            return Err(FieldPathError::BadCharacter(raw.to_owned()));
        }
        let mut bounds = Vec::new();
        let mut start = 0usize;
        for (i, c) in raw.char_indices().chain(std::iter::once((raw.len(), '.'))) {
            if c == '.' {
                if i == start {
                    return Err(FieldPathError::EmptySegment(raw.to_owned()));
                }
                bounds.push((start as u16, i as u16));
                start = i + 1;
            }
        }
        Ok(FieldPath { raw: raw.to_owned(), bounds })
    }

    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.bounds.iter().map(|&(a, b)| &self.raw[a as usize..b as usize])
    }

    pub fn first(&self) -> &str {
        let (a, b) = self.bounds[0];
        &self.raw[a as usize..b as usize]
    }

    pub fn len(&self) -> usize {
        self.bounds.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bounds.is_empty()
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }
}

impl fmt::Debug for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FieldPath({})", self.raw)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(fields: Value) -> Event {
        Event {
            source: Source::Segment,
            id: EventId::parse("m1").unwrap(),
            name: "trial_started".into(),
            user_id: Some("u1".into()),
            fields: fields.as_object().unwrap().clone(),
        }
    }

    fn text(e: &Event, path: &str) -> Option<String> {
        e.lookup(&FieldPath::parse(path).unwrap()).map(|v| v.to_text())
    }

    #[test]
    fn dotted_paths_reach_nested_values_and_array_items() {
        let e =
            event(json!({"plan": "pro", "address": {"city": "SF"}, "tags": ["a", "b"], "ltv": 1200.5, "vip": true}));
        assert_eq!(text(&e, "plan").as_deref(), Some("pro"));
        assert_eq!(text(&e, "address.city").as_deref(), Some("SF"));
        assert_eq!(text(&e, "tags.1").as_deref(), Some("b"));
        assert_eq!(text(&e, "ltv").as_deref(), Some("1200.5"));
        assert_eq!(text(&e, "vip").as_deref(), Some("true"));
        assert_eq!(text(&e, "address").as_deref(), Some(r#"{"city":"SF"}"#));
    }

    #[test]
    fn missing_and_null_are_absent() {
        let e = event(json!({"plan": null, "address": {"city": "SF"}}));
        assert_eq!(text(&e, "plan"), None);
        assert_eq!(text(&e, "nope"), None);
        assert_eq!(text(&e, "address.zip"), None);
        assert_eq!(text(&e, "address.city.more"), None);
    }

    #[test]
    fn event_id_and_name_are_built_in() {
        let e = event(json!({}));
        assert_eq!(text(&e, "event_id").as_deref(), Some("m1"));
        assert_eq!(text(&e, "event_name").as_deref(), Some("trial_started"));
    }

    #[test]
    fn numbers_in_strings_compare_as_numbers() {
        let e = event(json!({"ltv": "1200", "n": 3}));
        let v = e.lookup(&FieldPath::parse("ltv").unwrap()).unwrap();
        assert_eq!(v.as_f64(), Some(1200.0));
    }

    #[test]
    fn field_paths_validate() {
        assert_eq!(FieldPath::parse(""), Err(FieldPathError::Empty));
        assert!(matches!(FieldPath::parse("a..b"), Err(FieldPathError::EmptySegment(_))));
        assert!(matches!(FieldPath::parse(".a"), Err(FieldPathError::EmptySegment(_))));
        assert!(matches!(FieldPath::parse("a b"), Err(FieldPathError::BadCharacter(_))));
        let p = FieldPath::parse("context.traits.plan").unwrap();
        assert_eq!(p.segments().collect::<Vec<_>>(), ["context", "traits", "plan"]);
    }

    #[test]
    fn scalar_fields_skip_objects_and_arrays() {
        let e = event(json!({"a": "x", "b": 1, "c": true, "d": {"e": 1}, "f": [1], "g": null}));
        let keys: Vec<_> = e.scalar_fields().map(|(k, _)| k).collect();
        assert_eq!(keys, ["a", "b", "c"]);
    }
}
