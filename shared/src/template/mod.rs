//! `{field}` templates, compiled once when `triggers.toml` loads. `{path}` inserts a field
//! (dotted paths reach nested values); `{path:.N}` keeps its first N characters, as Python's
//! format does; `{{` and `}}` are literal braces. A missing field renders as `unknown`, as
//! Mavera's sample does.
//!
//! A template reads its fields from a [`FieldSource`]: a webhook [`Event`] for rules, the
//! facts of a queued job for the scheduled jobs. [`JsonTemplate`] is a JSON value whose
//! strings are templates.

mod json;

use std::fmt;

use serde_json::{Map, Value};

pub use json::{JsonTemplate, render_entries};

use crate::domain::{Event, FieldPath, LookedUp, lookup_in, truncate_chars};

/// Where a template's fields come from.
pub trait FieldSource {
    /// The value at `path`; `None` when it is absent or null.
    fn field(&self, path: &FieldPath) -> Option<LookedUp<'_>>;
}

impl FieldSource for Event {
    fn field(&self, path: &FieldPath) -> Option<LookedUp<'_>> {
        self.lookup(path)
    }
}

/// A plain map of fields, as the worker builds from a scheduled job's message.
impl FieldSource for Map<String, Value> {
    fn field(&self, path: &FieldPath) -> Option<LookedUp<'_>> {
        lookup_in(self, path)
    }
}

pub const MISSING: &str = "unknown";

#[derive(Clone, PartialEq)]
pub struct Template {
    raw: String,
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq)]
enum Part {
    Literal(String),
    Field { path: FieldPath, max_chars: Option<usize> },
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TemplateError {
    #[error("`{{` at byte {0} is never closed with `}}` (write `{{{{` for a literal brace)")]
    Unclosed(usize),
    #[error("`}}` at byte {0} has no opening `{{` (write `}}}}` for a literal brace)")]
    StrayClose(usize),
    #[error("`{{}}` at byte {0} names no field")]
    EmptyField(usize),
    #[error("`{{{placeholder}}}`: {reason}")]
    BadField { placeholder: String, reason: String },
}

impl Template {
    pub fn parse(raw: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = raw.char_indices().peekable();
        while let Some((i, c)) = rest.next() {
            match c {
                '{' if rest.peek().map(|&(_, c)| c) == Some('{') => {
                    rest.next();
                    literal.push('{');
                }
                '}' if rest.peek().map(|&(_, c)| c) == Some('}') => {
                    rest.next();
                    literal.push('}');
                }
                '}' => return Err(TemplateError::StrayClose(i)),
                '{' => {
                    let close = raw[i..].find('}').map(|j| i + j).ok_or(TemplateError::Unclosed(i))?;
                    let inner = &raw[i + 1..close];
                    if inner.trim().is_empty() {
                        return Err(TemplateError::EmptyField(i));
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(parse_placeholder(inner)?);
                    while rest.peek().is_some_and(|&(j, _)| j <= close) {
                        rest.next();
                    }
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Template { raw: raw.to_owned(), parts })
    }

    /// Renders with the fields of `source`; missing fields become `unknown`.
    pub fn render<F: FieldSource + ?Sized>(&self, source: &F) -> String {
        let mut out = String::with_capacity(self.raw.len() + 32);
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Field { path, max_chars } => {
                    let start = out.len();
                    match source.field(path) {
                        Some(value) => value.write_to(&mut out),
                        None => out.push_str(MISSING),
                    }
                    if let Some(max) = *max_chars {
                        let kept = truncate_chars(&out[start..], max).len();
                        out.truncate(start + kept);
                    }
                }
            }
        }
        out
    }

    /// The field paths this template reads.
    pub fn fields(&self) -> impl Iterator<Item = &FieldPath> {
        self.parts.iter().filter_map(|p| match p {
            Part::Field { path, .. } => Some(path),
            Part::Literal(_) => None,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }
}

fn parse_placeholder(inner: &str) -> Result<Part, TemplateError> {
    let bad = |reason: String| TemplateError::BadField { placeholder: inner.to_owned(), reason };
    let (path, spec) = match inner.split_once(':') {
        Some((path, spec)) => (path, Some(spec)),
        None => (inner, None),
    };
    let path = FieldPath::parse(path).map_err(|e| bad(e.to_string()))?;
    let max_chars = match spec {
        None => None,
        Some(spec) => {
            let n =
                spec.strip_prefix('.').and_then(|n| n.parse::<usize>().ok()).filter(|&n| n > 0).ok_or_else(|| {
                    bad(format!("`:{spec}` is not a length: write `:.N` to keep the first N characters"))
                })?;
            Some(n)
        }
    };
    Ok(Part::Field { path, max_chars })
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Template({:?})", self.raw)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::{EventId, Source};

    fn event() -> Event {
        Event {
            source: Source::Segment,
            id: EventId::parse("m1").unwrap(),
            name: "trial_started".into(),
            user_id: Some("usr_k8m2n_abcdefgh".into()),
            fields: json!({"user_id": "usr_k8m2n_abcdefgh", "plan": "pro", "ltv": 1200, "address": {"city": "Zürich"}})
                .as_object()
                .unwrap()
                .clone(),
        }
    }

    fn render(t: &str) -> String {
        Template::parse(t).unwrap().render(&event())
    }

    #[test]
    fn fills_fields_and_marks_missing_ones_unknown() {
        assert_eq!(
            render("User {user_id} on {plan}, source {source}."),
            "User usr_k8m2n_abcdefgh on pro, source unknown."
        );
        assert_eq!(render("LTV ${ltv} in {address.city}"), "LTV $1200 in Zürich");
        assert_eq!(render("{event_name}/{event_id}"), "trial_started/m1");
    }

    #[test]
    fn truncates_by_characters() {
        assert_eq!(render("Trial User — {user_id:.12}"), "Trial User — usr_k8m2n_ab");
        assert_eq!(render("{address.city:.2}"), "Zü");
        assert_eq!(render("{plan:.10}"), "pro");
    }

    #[test]
    fn braces_can_be_escaped() {
        assert_eq!(render("{{literal}} {plan}"), "{literal} pro");
    }

    #[test]
    fn errors_point_at_the_problem() {
        assert_eq!(Template::parse("a {plan").unwrap_err(), TemplateError::Unclosed(2));
        assert_eq!(Template::parse("a } b").unwrap_err(), TemplateError::StrayClose(2));
        assert_eq!(Template::parse("{ }").unwrap_err(), TemplateError::EmptyField(0));
        assert!(matches!(Template::parse("{a..b}").unwrap_err(), TemplateError::BadField { .. }));
        assert!(matches!(Template::parse("{a:12}").unwrap_err(), TemplateError::BadField { .. }));
        assert!(matches!(Template::parse("{a:.0}").unwrap_err(), TemplateError::BadField { .. }));
    }

    #[test]
    fn lists_its_fields() {
        let t = Template::parse("{a} and {b.c:.3}").unwrap();
        let fields: Vec<_> = t.fields().map(|f| f.as_str().to_owned()).collect();
        assert_eq!(fields, ["a", "b.c"]);
    }
}
