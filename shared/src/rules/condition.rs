//! Conditions a rule puts on an event's fields. One condition names a field and one or
//! more tests, all of which must hold:
//! `{ field = "plan", one_of = ["pro", "enterprise"] }`, `{ field = "ltv", gte = 500 }`,
//! `{ field = "email", exists = true }`.

use serde::Deserialize;
use serde_json::Value;

use crate::domain::{Event, FieldPath, LookedUp};

#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub field: FieldPath,
    pub tests: Vec<Test>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    Equals(Value),
    OneOf(Vec<Value>),
    Gt(f64),
    Gte(f64),
    Lt(f64),
    Lte(f64),
    Exists(bool),
}

/// The TOML form, before validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCondition {
    field: String,
    equals: Option<Value>,
    one_of: Option<Vec<Value>>,
    gt: Option<f64>,
    gte: Option<f64>,
    lt: Option<f64>,
    lte: Option<f64>,
    exists: Option<bool>,
}

impl RawCondition {
    /// Validates; the error names the offending key within the condition.
    pub(super) fn validate(self) -> Result<Condition, (String, String)> {
        let field = FieldPath::parse(&self.field).map_err(|e| ("field".to_owned(), e.to_string()))?;
        let mut tests = Vec::new();
        if let Some(v) = self.equals {
            check_scalar(&v).map_err(|p| ("equals".to_owned(), p))?;
            tests.push(Test::Equals(v));
        }
        if let Some(vs) = self.one_of {
            if vs.is_empty() {
                return Err(("one_of".into(), "the list is empty, so nothing could match".into()));
            }
            for v in &vs {
                check_scalar(v).map_err(|p| ("one_of".to_owned(), p))?;
            }
            tests.push(Test::OneOf(vs));
        }
        tests.extend(self.gt.map(Test::Gt));
        tests.extend(self.gte.map(Test::Gte));
        tests.extend(self.lt.map(Test::Lt));
        tests.extend(self.lte.map(Test::Lte));
        tests.extend(self.exists.map(Test::Exists));
        if tests.is_empty() {
            return Err((
                "field".into(),
                format!("the condition on `{field}` has no test: add one of equals, one_of, gt, gte, lt, lte, exists"),
            ));
        }
        Ok(Condition { field, tests })
    }
}

fn check_scalar(v: &Value) -> Result<(), String> {
    match v {
        Value::String(_) | Value::Number(_) | Value::Bool(_) => Ok(()),
        other => Err(format!("compare with a string, number or boolean, not {other}")),
    }
}

impl Condition {
    pub fn holds(&self, event: &Event) -> bool {
        let found = event.lookup(&self.field);
        self.tests.iter().all(|test| match test {
            Test::Exists(wanted) => found.is_some() == *wanted,
            Test::Equals(expected) => found.is_some_and(|f| equals(f, expected)),
            Test::OneOf(options) => found.is_some_and(|f| options.iter().any(|o| equals(f, o))),
            Test::Gt(n) => number(found).is_some_and(|v| v > *n),
            Test::Gte(n) => number(found).is_some_and(|v| v >= *n),
            Test::Lt(n) => number(found).is_some_and(|v| v < *n),
            Test::Lte(n) => number(found).is_some_and(|v| v <= *n),
        })
    }

    /// One line for `relay check`: `plan one_of [pro, enterprise]`.
    pub fn describe(&self) -> String {
        let tests: Vec<String> = self
            .tests
            .iter()
            .map(|t| match t {
                Test::Equals(v) => format!("= {}", show(v)),
                Test::OneOf(vs) => format!("in [{}]", vs.iter().map(show).collect::<Vec<_>>().join(", ")),
                Test::Gt(n) => format!("> {n}"),
                Test::Gte(n) => format!(">= {n}"),
                Test::Lt(n) => format!("< {n}"),
                Test::Lte(n) => format!("<= {n}"),
                Test::Exists(true) => "exists".into(),
                Test::Exists(false) => "is missing".into(),
            })
            .collect();
        format!("{} {}", self.field, tests.join(" and "))
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn number(found: Option<LookedUp<'_>>) -> Option<f64> {
    found.and_then(|f| f.as_f64())
}

/// Strings compare exactly; numbers numerically (a numeric string counts, as senders
/// often stringify); booleans as booleans or `"true"`/`"false"`.
fn equals(found: LookedUp<'_>, expected: &Value) -> bool {
    match expected {
        Value::Number(n) => found.as_f64().zip(n.as_f64()).is_some_and(|(a, b)| a == b),
        Value::Bool(b) => match found {
            LookedUp::Json(Value::Bool(f)) => f == b,
            LookedUp::Json(Value::String(s)) => s == if *b { "true" } else { "false" },
            LookedUp::Str(s) => s == if *b { "true" } else { "false" },
            _ => false,
        },
        Value::String(s) => match found {
            LookedUp::Str(f) => f == s,
            LookedUp::Json(Value::String(f)) => f == s,
            _ => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::{EventId, Source};

    fn event(fields: Value) -> Event {
        Event {
            source: Source::Segment,
            id: EventId::parse("m").unwrap(),
            name: "x".into(),
            user_id: None,
            fields: fields.as_object().unwrap().clone(),
        }
    }

    fn cond(toml_src: &str) -> Condition {
        let raw: RawCondition = toml::from_str(toml_src).unwrap();
        raw.validate().unwrap()
    }

    #[test]
    fn equals_and_one_of() {
        let e = event(json!({"plan": "pro", "seats": "10", "vip": true}));
        assert!(
            cond(
                r#"field = "plan"
equals = "pro""#
            )
            .holds(&e)
        );
        assert!(
            !cond(
                r#"field = "plan"
equals = "Pro""#
            )
            .holds(&e)
        );
        assert!(
            cond(
                r#"field = "plan"
one_of = ["enterprise", "pro"]"#
            )
            .holds(&e)
        );
        assert!(
            cond(
                r#"field = "seats"
equals = 10"#
            )
            .holds(&e)
        );
        assert!(
            cond(
                r#"field = "vip"
equals = true"#
            )
            .holds(&e)
        );
        assert!(
            !cond(
                r#"field = "missing"
equals = "pro""#
            )
            .holds(&e)
        );
    }

    #[test]
    fn numeric_comparisons_and_ranges() {
        let e = event(json!({"ltv": 750, "text": "abc"}));
        assert!(cond("field = \"ltv\"\ngte = 500").holds(&e));
        assert!(cond("field = \"ltv\"\ngt = 500\nlt = 1000").holds(&e));
        assert!(!cond("field = \"ltv\"\nlt = 750").holds(&e));
        assert!(cond("field = \"ltv\"\nlte = 750").holds(&e));
        assert!(!cond("field = \"text\"\ngt = 0").holds(&e), "non-numbers never compare");
        assert!(!cond("field = \"nope\"\nlt = 1").holds(&e));
    }

    #[test]
    fn exists() {
        let e = event(json!({"email": "a@b", "gone": null}));
        assert!(cond("field = \"email\"\nexists = true").holds(&e));
        assert!(cond("field = \"gone\"\nexists = false").holds(&e));
        assert!(cond("field = \"other\"\nexists = false").holds(&e));
    }

    #[test]
    fn validation_names_the_key() {
        let raw: RawCondition = toml::from_str("field = \"plan\"").unwrap();
        assert_eq!(raw.validate().unwrap_err().0, "field");
        let raw: RawCondition = toml::from_str("field = \"plan\"\none_of = []").unwrap();
        assert_eq!(raw.validate().unwrap_err().0, "one_of");
        let raw: RawCondition = toml::from_str("field = \"a..b\"\nexists = true").unwrap();
        assert_eq!(raw.validate().unwrap_err().0, "field");
        assert!(toml::from_str::<RawCondition>("field = \"a\"\nequal = 1").is_err());
    }

    #[test]
    fn describes_itself() {
        assert_eq!(cond("field = \"plan\"\none_of = [\"pro\", \"business\"]").describe(), "plan in [pro, business]");
        assert_eq!(cond("field = \"ltv\"\ngte = 500").describe(), "ltv >= 500");
    }
}
