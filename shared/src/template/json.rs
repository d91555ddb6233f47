//! A JSON value whose strings are templates: the `persona.extra` and `generate.input`
//! tables, rendered into JSON.

use serde_json::{Map, Value};

use super::{FieldSource, Template, TemplateError};
use crate::domain::FieldPath;

#[derive(Debug, Clone, PartialEq)]
pub enum JsonTemplate {
    Text(Template),
    Array(Vec<JsonTemplate>),
    Object(Vec<(String, JsonTemplate)>),
    Literal(Value),
}

impl JsonTemplate {
    /// Compiles every string inside `value`; the error names the dotted key it is at.
    pub fn parse(value: Value) -> Result<Self, (String, TemplateError)> {
        Self::parse_at(value, String::new())
    }

    fn parse_at(value: Value, at: String) -> Result<Self, (String, TemplateError)> {
        let join = |k: &str| if at.is_empty() { k.to_owned() } else { format!("{at}.{k}") };
        Ok(match value {
            Value::String(s) => JsonTemplate::Text(Template::parse(&s).map_err(|e| (at, e))?),
            Value::Array(items) => JsonTemplate::Array(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| Self::parse_at(v, join(&i.to_string())))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => JsonTemplate::Object(
                map.into_iter()
                    .map(|(k, v)| {
                        let at = join(&k);
                        Self::parse_at(v, at).map(|t| (k, t))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            other => JsonTemplate::Literal(other),
        })
    }

    pub fn render<F: FieldSource + ?Sized>(&self, source: &F) -> Value {
        match self {
            JsonTemplate::Text(t) => Value::String(t.render(source)),
            JsonTemplate::Array(items) => Value::Array(items.iter().map(|t| t.render(source)).collect()),
            JsonTemplate::Object(entries) => Value::Object(render_entries(entries, source)),
            JsonTemplate::Literal(v) => v.clone(),
        }
    }

    pub fn fields(&self) -> Vec<&FieldPath> {
        match self {
            JsonTemplate::Text(t) => t.fields().collect(),
            JsonTemplate::Array(items) => items.iter().flat_map(JsonTemplate::fields).collect(),
            JsonTemplate::Object(entries) => entries.iter().flat_map(|(_, t)| t.fields()).collect(),
            JsonTemplate::Literal(_) => Vec::new(),
        }
    }
}

pub fn render_entries<F: FieldSource + ?Sized>(entries: &[(String, JsonTemplate)], source: &F) -> Map<String, Value> {
    entries.iter().map(|(k, t)| (k.clone(), t.render(source))).collect()
}
