//! A rule's destinations as `triggers.toml` writes them: the `deliver = [...]` list and, for
//! each destination, an optional table of settings (`[rule.slack]`, `[rule.customerio]`,
//! `[rule.segment]`, `[rule.webhook]`) whose texts are templates over the event and the
//! result. Read like every table (`toml_table`): unknown keys are refused, each field is
//! checked, and a problem names the field (`deliver[1]`, `customerio.attributes.plan`).

use serde::Deserialize;

use super::DestinationName;
use super::result::{ResultKind, check_result_field};
use crate::domain::FieldPath;
use crate::template::{JsonTemplate, Template};
use crate::toml_table;

/// Customer.io limits (Track API): attribute names, attributes per call, event names.
pub const CIO_MAX_ATTRIBUTE_NAME_BYTES: usize = 150;
pub const CIO_MAX_ATTRIBUTES: usize = 300;
pub const CIO_MAX_EVENT_NAME_BYTES: usize = 100;

/// The attributes the relay itself writes onto a Customer.io person.
pub const CIO_OWN_ATTRIBUTES: [&str; 7] = [
    "mavera_persona_id",
    "mavera_persona_name",
    "mavera_last_research",
    "mavera_last_generation",
    "mavera_thread_id",
    "mavera_generation_id",
    "mavera_updated_at",
];

/// One destination of a rule, with the rule's settings for it.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Slack(SlackOptions),
    CustomerIo(CioOptions),
    Segment(SegmentOptions),
    Webhook(WebhookOptions),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct SlackOptions {
    /// The message's first line (and its notification text); a default names the rule,
    /// the event and the user.
    pub text: Option<Template>,
}

/// How the Track API path names the person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackIdType {
    /// The id your workspace assigned (or an email, in workspaces identified by email).
    Id,
    Email,
    /// Customer.io's own id: written `cio_<id>` in the path.
    CioId,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CioOptions {
    /// Whose profile: `{user_id}` unless set.
    pub identifier: Template,
    pub id_type: TrackIdType,
    /// The event carrying the whole result; `None` sends attributes only.
    pub event: Option<String>,
    /// More attributes, each a template (values are cut to 1000 bytes).
    pub attributes: Vec<(String, Template)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SegmentOptions {
    /// Segment's `userId`: `{user_id}` unless set.
    pub user_id: Template,
    /// The `track` event's name.
    pub event: String,
    /// Also send an `identify` with the result as traits.
    pub identify: bool,
    /// More `track` properties.
    pub properties: Vec<(String, JsonTemplate)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WebhookOptions {
    /// The payload's `type`, e.g. `mavera.research.completed`.
    pub event_type: String,
}

impl Target {
    pub fn name(&self) -> DestinationName {
        match self {
            Target::Slack(_) => DestinationName::Slack,
            Target::CustomerIo(_) => DestinationName::CustomerIo,
            Target::Segment(_) => DestinationName::Segment,
            Target::Webhook(_) => DestinationName::Webhook,
        }
    }

    /// The fields its templates read.
    pub fn fields(&self) -> Vec<&FieldPath> {
        match self {
            Target::Slack(o) => o.text.iter().flat_map(Template::fields).collect(),
            Target::CustomerIo(o) => {
                o.identifier.fields().chain(o.attributes.iter().flat_map(|(_, t)| t.fields())).collect()
            }
            Target::Segment(o) => o.user_id.fields().chain(o.properties.iter().flat_map(|(_, t)| t.fields())).collect(),
            Target::Webhook(_) => Vec::new(),
        }
    }
}

/// A problem in a rule's destinations: the field (below the rule) and what is wrong.
pub type OptionsError = (String, String);

/// Reads a rule's `deliver` list and the tables for its destinations, for a rule whose
/// action makes `kind` results. A table for a destination not in the list is an error (it
/// would do nothing), as is a destination named twice.
pub fn parse(
    list: Vec<String>,
    mut tables: Vec<(DestinationName, toml::Table)>,
    kind: ResultKind,
) -> Result<Vec<Target>, OptionsError> {
    let mut targets: Vec<Target> = Vec::with_capacity(list.len());
    for (i, name) in list.iter().enumerate() {
        let at = format!("deliver[{i}]");
        let destination = DestinationName::parse(name).map_err(|e| (at.clone(), e))?;
        if targets.iter().any(|t| t.name() == destination) {
            return Err((at, format!("`{name}` is listed twice; each destination gets a job's result once")));
        }
        let table = tables.iter().position(|(d, _)| *d == destination).map(|i| tables.remove(i).1);
        targets.push(target(destination, table.unwrap_or_default(), kind)?);
    }
    if let Some((unused, _)) = tables.first() {
        return Err((
            unused.as_str().to_owned(),
            format!(
                "`{unused}` is not in this rule's `deliver` list, so its table does nothing: add \"{unused}\" to `deliver` or remove the table"
            ),
        ));
    }
    Ok(targets)
}

fn target(destination: DestinationName, table: toml::Table, kind: ResultKind) -> Result<Target, OptionsError> {
    let field = |key: &str| format!("{destination}.{key}");
    let serde = |e: toml_table::TableError| (format!("{destination}.{}", e.field()), e.message.clone());
    let template = |key: &str, text: &str| -> Result<Template, OptionsError> {
        let t = Template::parse(text).map_err(|e| (field(key), e.to_string()))?;
        check_fields(t.fields(), kind).map_err(|problem| (field(key), problem))?;
        Ok(t)
    };
    let default_user = || Template::parse("{user_id}").expect("a valid template");
    Ok(match destination {
        DestinationName::Slack => {
            let raw: RawSlack = toml_table::read(table).map_err(serde)?;
            Target::Slack(SlackOptions { text: raw.text.map(|t| template("text", &t)).transpose()? })
        }
        DestinationName::CustomerIo => {
            let raw: RawCio = toml_table::read(table).map_err(serde)?;
            let id_type = match raw.id_type.as_deref() {
                None | Some("id") => TrackIdType::Id,
                Some("email") => TrackIdType::Email,
                Some("cio_id") => TrackIdType::CioId,
                Some(other) => {
                    return Err((
                        field("id_type"),
                        format!("`{other}` is not an id type the Track API takes in its path: use id, email or cio_id"),
                    ));
                }
            };
            let event = match raw.event {
                None => Some(default_cio_event(kind).to_owned()),
                Some(e) if e.trim().is_empty() => None,
                Some(e) if e.len() > CIO_MAX_EVENT_NAME_BYTES => {
                    return Err((
                        field("event"),
                        format!("is {} bytes; Customer.io takes at most {CIO_MAX_EVENT_NAME_BYTES}", e.len()),
                    ));
                }
                Some(e) => Some(e.trim().to_owned()),
            };
            let mut attributes = Vec::with_capacity(raw.attributes.len());
            for (name, value) in raw.attributes {
                let key = format!("attributes.{name}");
                let problem = if name.starts_with('_') {
                    Some("names starting with `_` are Customer.io's reserved keys".to_owned())
                } else if ["id", "email", "cio_id"].contains(&name.as_str()) {
                    Some("it identifies the person; the relay never changes who a person is".to_owned())
                } else if CIO_OWN_ATTRIBUTES.contains(&name.as_str()) {
                    Some("the relay writes this attribute itself".to_owned())
                } else if name.len() > CIO_MAX_ATTRIBUTE_NAME_BYTES {
                    Some(format!(
                        "the name is {} bytes; Customer.io takes at most {CIO_MAX_ATTRIBUTE_NAME_BYTES}",
                        name.len()
                    ))
                } else {
                    None
                };
                if let Some(problem) = problem {
                    return Err((field(&key), problem));
                }
                let toml::Value::String(text) = value else {
                    return Err((
                        field(&key),
                        "write the value as text (a template); Customer.io stores it as text".into(),
                    ));
                };
                attributes.push((name, template(&key, &text)?));
            }
            if attributes.len() + CIO_OWN_ATTRIBUTES.len() > CIO_MAX_ATTRIBUTES {
                return Err((
                    field("attributes"),
                    format!("Customer.io takes at most {CIO_MAX_ATTRIBUTES} attributes per call"),
                ));
            }
            Target::CustomerIo(CioOptions {
                identifier: raw
                    .identifier
                    .map(|t| template("identifier", &t))
                    .transpose()?
                    .unwrap_or_else(default_user),
                id_type,
                event,
                attributes,
            })
        }
        DestinationName::Segment => {
            let raw: RawSegment = toml_table::read(table).map_err(serde)?;
            let event = match raw.event {
                None => default_segment_event(kind).to_owned(),
                Some(e) if e.trim().is_empty() => return Err((field("event"), "is empty".into())),
                Some(e) => e.trim().to_owned(),
            };
            let value = serde_json::to_value(raw.properties).map_err(|e| (field("properties"), e.to_string()))?;
            let properties = match JsonTemplate::parse(value) {
                Ok(JsonTemplate::Object(entries)) => entries,
                Ok(_) => unreachable!("a TOML table is an object"),
                Err((at, e)) => return Err((field(&format!("properties.{at}")), e.to_string())),
            };
            for (name, t) in &properties {
                check_fields(t.fields().into_iter(), kind).map_err(|p| (field(&format!("properties.{name}")), p))?;
            }
            Target::Segment(SegmentOptions {
                user_id: raw.user_id.map(|t| template("user_id", &t)).transpose()?.unwrap_or_else(default_user),
                event,
                identify: raw.identify,
                properties,
            })
        }
        DestinationName::Webhook => {
            let raw: RawWebhook = toml_table::read(table).map_err(serde)?;
            let event_type = match raw.event_type {
                None => default_webhook_type(kind).to_owned(),
                Some(t) if t.trim().is_empty() => return Err((field("type"), "is empty".into())),
                Some(t) => t.trim().to_owned(),
            };
            Target::Webhook(WebhookOptions { event_type })
        }
    })
}

/// Every `result.*` a template reads must exist for the rule's action.
fn check_fields<'a>(mut fields: impl Iterator<Item = &'a FieldPath>, kind: ResultKind) -> Result<(), String> {
    fields.try_for_each(|f| match f.as_str().strip_prefix("result.") {
        Some(name) => check_result_field(name, kind),
        None if f.as_str() == "result" => {
            Err("`{result}` names no field: write `{result.content}`, `{result.persona.name}` …".into())
        }
        None => Ok(()),
    })
}

pub fn default_cio_event(kind: ResultKind) -> &'static str {
    match kind {
        ResultKind::Persona => "mavera_persona_created",
        ResultKind::Research => "mavera_research_completed",
        ResultKind::Generation => "mavera_generation_completed",
    }
}

pub fn default_segment_event(kind: ResultKind) -> &'static str {
    match kind {
        ResultKind::Persona => "Mavera Persona Created",
        ResultKind::Research => "Mavera Research Completed",
        ResultKind::Generation => "Mavera Generation Completed",
    }
}

pub fn default_webhook_type(kind: ResultKind) -> &'static str {
    match kind {
        ResultKind::Persona => "mavera.persona.created",
        ResultKind::Research => "mavera.research.completed",
        ResultKind::Generation => "mavera.generation.completed",
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlack {
    text: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCio {
    identifier: Option<String>,
    id_type: Option<String>,
    event: Option<String>,
    #[serde(default)]
    attributes: toml::Table,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSegment {
    user_id: Option<String>,
    event: Option<String>,
    #[serde(default)]
    identify: bool,
    #[serde(default)]
    properties: toml::Table,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    #[serde(rename = "type")]
    event_type: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        toml::from_str(text).unwrap()
    }

    fn list(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn defaults_fill_what_the_rule_leaves_out() {
        let targets =
            parse(list(&["slack", "customerio", "segment", "webhook"]), vec![], ResultKind::Research).unwrap();
        assert_eq!(targets.iter().map(Target::name).collect::<Vec<_>>(), DestinationName::ALL);
        let Target::CustomerIo(cio) = &targets[1] else { panic!() };
        assert_eq!(cio.event.as_deref(), Some("mavera_research_completed"));
        assert_eq!(cio.identifier.as_str(), "{user_id}");
        let Target::Segment(segment) = &targets[2] else { panic!() };
        assert_eq!((segment.event.as_str(), segment.identify), ("Mavera Research Completed", false));
        let Target::Webhook(webhook) = &targets[3] else { panic!() };
        assert_eq!(webhook.event_type, "mavera.research.completed");
    }

    #[test]
    fn unknown_destinations_and_repeats_are_named_by_position() {
        let (field, problem) = parse(list(&["slack", "email"]), vec![], ResultKind::Research).unwrap_err();
        assert_eq!(field, "deliver[1]");
        assert!(problem.contains("slack, customerio, segment, webhook"), "{problem}");
        let (field, _) = parse(list(&["slack", "slack"]), vec![], ResultKind::Research).unwrap_err();
        assert_eq!(field, "deliver[1]");
    }

    #[test]
    fn a_table_for_a_destination_not_listed_is_refused() {
        let (field, problem) =
            parse(list(&["slack"]), vec![(DestinationName::Segment, table(""))], ResultKind::Research).unwrap_err();
        assert_eq!(field, "segment");
        assert!(problem.contains("add \"segment\" to `deliver`"), "{problem}");
    }

    #[test]
    fn unknown_keys_and_result_fields_name_the_field() {
        let slack = |t: &str| parse(list(&["slack"]), vec![(DestinationName::Slack, table(t))], ResultKind::Research);
        assert_eq!(slack("txt = \"x\"").unwrap_err().0, "slack.txt");
        let (field, problem) = slack("text = \"{result.persona.name}\"").unwrap_err();
        assert_eq!(field, "slack.text");
        assert!(problem.contains("only in create_persona results"), "{problem}");
        let (field, problem) = slack("text = \"{result.conten}\"").unwrap_err();
        assert_eq!(field, "slack.text");
        assert!(problem.contains("not a result field"), "{problem}");
        assert!(slack("text = \"{user_id}: {result.content:.200}\"").is_ok());

        let segment =
            |t: &str| parse(list(&["segment"]), vec![(DestinationName::Segment, table(t))], ResultKind::Persona);
        let (field, _) = segment("properties = { answer = \"{result.content}\" }").unwrap_err();
        assert_eq!(field, "segment.properties.answer");
        assert!(segment("properties = { persona = \"{result.persona.name}\" }\nidentify = true").is_ok());
    }

    #[test]
    fn customerio_attributes_keep_within_the_track_api() {
        let cio =
            |t: &str| parse(list(&["customerio"]), vec![(DestinationName::CustomerIo, table(t))], ResultKind::Research);
        for (text, field) in [
            ("attributes = { _update = \"x\" }", "customerio.attributes._update"),
            ("attributes = { email = \"{email}\" }", "customerio.attributes.email"),
            ("attributes = { mavera_thread_id = \"x\" }", "customerio.attributes.mavera_thread_id"),
            ("attributes = { n = 3 }", "customerio.attributes.n"),
            ("id_type = \"phone\"", "customerio.id_type"),
        ] {
            assert_eq!(cio(text).unwrap_err().0, field, "{text}");
        }
        let long = format!("attributes = {{ {} = \"x\" }}", "a".repeat(151));
        assert!(cio(&long).unwrap_err().1.contains("at most 150"));
        let long_event = format!("event = \"{}\"", "e".repeat(101));
        assert_eq!(cio(&long_event).unwrap_err().0, "customerio.event");
        let Target::CustomerIo(o) =
            &cio("event = \"\"\nid_type = \"cio_id\"\nattributes = { churn_playbook = \"{result.content:.500}\" }")
                .unwrap()[0]
        else {
            panic!()
        };
        assert_eq!((o.event.as_ref(), o.id_type, o.attributes.len()), (None, TrackIdType::CioId, 1));
    }
}
