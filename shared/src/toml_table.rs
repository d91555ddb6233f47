//! How every table of `triggers.toml` is read: serde into a raw struct that refuses unknown
//! keys (`deny_unknown_fields`), then the raw struct's own `validate`. A serde problem comes
//! back with the path of the key it is about, so the error can name the field; the owner of
//! each table decides how (`triggers` describes the conventions).

use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde_path_to_error::Segment;

/// What serde could not read, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct TableError {
    at: Vec<Step>,
    /// Serde's message: `unknown field `x`, expected one of …`, `invalid type: …, expected …`.
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

/// Reads `table` into `T`.
pub fn read<T: DeserializeOwned>(table: toml::Table) -> Result<T, TableError> {
    serde_path_to_error::deserialize(table).map_err(|e| TableError {
        at: e
            .path()
            .iter()
            .filter_map(|segment| match segment {
                Segment::Map { key } | Segment::Enum { variant: key } => Some(Step::Key(key.clone())),
                Segment::Seq { index } => Some(Step::Index(*index)),
                Segment::Unknown => None,
            })
            .collect(),
        message: e.inner().message().to_owned(),
    })
}

impl TableError {
    /// The path below the table: `cluster_by[0].buckets`; empty for the table itself.
    pub fn path(&self) -> String {
        let mut out = String::new();
        for step in &self.at {
            match step {
                Step::Key(key) if out.is_empty() => out.push_str(key),
                Step::Key(key) => {
                    out.push('.');
                    out.push_str(key);
                }
                Step::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        out
    }

    /// The path, or `*` when the problem is the table itself.
    pub fn field(&self) -> String {
        let path = self.path();
        if path.is_empty() { "*".to_owned() } else { path }
    }

    /// The last key on the path: for an unknown key, that key.
    pub fn key(&self) -> Option<&str> {
        self.at.iter().rev().find_map(|step| match step {
            Step::Key(key) => Some(key.as_str()),
            Step::Index(_) => None,
        })
    }

    /// Splits off the first key: the sub-table the problem is in, and the problem within it.
    pub fn split_first(mut self) -> (Option<String>, TableError) {
        match self.at.first().cloned() {
            Some(Step::Key(first)) => {
                self.at.remove(0);
                (Some(first), self)
            }
            _ => (None, self),
        }
    }
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A whole number; serde's error for anything else says "expected a whole number".
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Whole(pub i64);

impl<'de> Deserialize<'de> for Whole {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct WholeVisitor;
        impl Visitor<'_> for WholeVisitor {
            type Value = Whole;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a whole number")
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Whole, E> {
                Ok(Whole(n))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Whole, E> {
                i64::try_from(n).map(Whole).map_err(|_| E::invalid_value(de::Unexpected::Unsigned(n), &self))
            }
        }
        deserializer.deserialize_i64(WholeVisitor)
    }
}

/// A finite number, whole or not; serde's error for anything else says "expected a number".
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Number(pub f64);

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NumberVisitor;
        impl Visitor<'_> for NumberVisitor {
            type Value = Number;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Number, E> {
                Ok(Number(n as f64))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Number, E> {
                Ok(Number(n as f64))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Number, E> {
                if n.is_finite() { Ok(Number(n)) } else { Err(E::invalid_value(de::Unexpected::Float(n), &self)) }
            }
        }
        deserializer.deserialize_f64(NumberVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        #[allow(dead_code)]
        n: Option<Whole>,
        #[allow(dead_code)]
        items: Option<Vec<Inner>>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        #[allow(dead_code)]
        x: Option<Number>,
    }

    fn error(text: &str) -> TableError {
        read::<Outer>(toml::from_str(text).unwrap()).unwrap_err()
    }

    #[test]
    fn problems_name_the_key_they_are_about() {
        let unknown = error("items = [{ x = 1 }, { y = 2 }]");
        assert_eq!((unknown.path().as_str(), unknown.key()), ("items[1].y", Some("y")));
        assert!(unknown.message.starts_with("unknown field `y`"), "{}", unknown.message);

        let wrong = error("n = \"3\"");
        assert_eq!(wrong.path(), "n");
        assert!(wrong.message.contains("expected a whole number"), "{}", wrong.message);
        assert!(error("items = [{ x = \"a\" }]").message.contains("expected a number"));
        assert!(error("items = [{ x = nan }]").message.contains("expected a number"));
    }

    #[test]
    fn the_first_key_splits_off() {
        let (first, rest) = error("items = [{ y = 2 }]").split_first();
        assert_eq!((first.as_deref(), rest.path().as_str()), (Some("items"), "[0].y"));
    }
}
