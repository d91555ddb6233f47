//! The `[[rule]]` tables of `triggers.toml`, read as every table is (`toml_table`): serde
//! into [`RawRule`], which refuses unknown keys, then `validate`. Each rule is read on its
//! own, so an error can name the rule (by `name`, or by position when the name is the
//! problem) and the field: serde's problems by the key they are about (`promt` in
//! `research = { promt = … }`), a condition's by its position (`conditions[1].*`).

use serde::Deserialize;

use super::Rule;
use super::action::{Action, GenerateAction, PersonaAction, ResearchAction};
use super::condition::{Condition, RawCondition};
use crate::deliver::{DestinationName, ResultKind, options};
use crate::domain::{FieldPath, RuleName, Source};
use crate::mavera::{PersonaType, PipelineType};
use crate::template::{JsonTemplate, Template};
use crate::toml_table::{self, TableError};

/// Persona body keys with their own `[rule.persona]` key, never set through `extra`.
const PERSONA_KEYS: [&str; 4] = ["name", "description", "pipeline_type", "type"];

/// A daily cap is counted in one store item that lists the jobs it admitted; this bound
/// keeps that item far below DynamoDB's 400 KB.
pub const MAX_DAILY_CAP: u32 = 1000;

/// A problem in one rule: which rule, which field, what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RuleError {
    pub rule: String,
    pub field: String,
    pub problem: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Option<String>,
    source: Option<String>,
    event: Option<OneOrMany>,
    action: Option<String>,
    #[serde(default)]
    conditions: Vec<toml::Table>,
    daily_cap: Option<i64>,
    #[serde(default)]
    once_per_user: bool,
    #[serde(default)]
    enrich: bool,
    persona: Option<RawPersona>,
    research: Option<RawResearch>,
    generate: Option<RawGenerate>,
    /// Where the result goes, and each destination's settings (read by `deliver::options`).
    #[serde(default)]
    deliver: Vec<String>,
    slack: Option<toml::Table>,
    customerio: Option<toml::Table>,
    segment: Option<toml::Table>,
    webhook: Option<toml::Table>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPersona {
    name: Option<String>,
    description: Option<String>,
    pipeline_type: Option<String>,
    #[serde(rename = "type")]
    persona_type: Option<String>,
    context_field: Option<String>,
    #[serde(default)]
    extra: toml::Table,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResearch {
    prompt: Option<String>,
    workspace_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGenerate {
    app_id: Option<String>,
    #[serde(default)]
    input: toml::Table,
    title: Option<String>,
    brand_voice_id: Option<String>,
    persona_id: Option<String>,
    workspace_id: Option<String>,
}

/// Reads the `[[rule]]` tables in file order; rule names must be unique.
pub(crate) fn parse(tables: Vec<toml::Table>) -> Result<Vec<Rule>, RuleError> {
    let mut rules: Vec<Rule> = Vec::with_capacity(tables.len());
    for (i, table) in tables.into_iter().enumerate() {
        // Name the rule by its `name` when it has a readable one, else by position.
        let label =
            table.get("name").and_then(toml::Value::as_str).map(str::to_owned).unwrap_or_else(|| format!("#{}", i + 1));
        let err = |field: &str, problem: String| RuleError { rule: label.clone(), field: field.to_owned(), problem };
        let raw: RawRule = toml_table::read(table).map_err(|e| serde_err(e, &err))?;
        let rule = raw.validate(&err)?;
        if rules.iter().any(|r| r.name == rule.name) {
            return Err(err(
                "name",
                "another rule has the same name; names key the work, so each must be unique".into(),
            ));
        }
        rules.push(rule);
    }
    Ok(rules)
}

/// Serde's problem, named by the key it is about (`*` when it is about no key).
fn serde_err(e: TableError, err: &dyn Fn(&str, String) -> RuleError) -> RuleError {
    err(e.key().unwrap_or("*"), e.message.clone())
}

/// Why a required key is needed, for "is missing" errors.
fn missing(what: &str) -> String {
    format!("is missing: {what}")
}

impl RawRule {
    fn validate(self, err: &dyn Fn(&str, String) -> RuleError) -> Result<Rule, RuleError> {
        let required = "every rule names its `name`, `source`, `event` and `action`";
        let name = self.name.ok_or_else(|| err("name", missing(required)))?;
        let name = RuleName::parse(name).map_err(|e| err("name", e.to_string()))?;
        let source = self.source.ok_or_else(|| err("source", missing(required)))?;
        let source = Source::parse(&source).map_err(|e| err("source", e.to_string()))?;
        let events = match self.event.ok_or_else(|| err("event", missing(required)))? {
            OneOrMany::One(e) => vec![e],
            OneOrMany::Many(es) => es,
        };
        if events.is_empty() || events.iter().any(|e| e.trim().is_empty()) {
            return Err(err("event", "name at least one event, and no empty names".into()));
        }
        if source == Source::CustomerIo
            && let Some(bad) = events.iter().find(|e| e.as_str() == "complained")
        {
            return Err(err(
                "event",
                format!(
                    "`{bad}` is not a Customer.io metric (Mavera's sample says so by mistake): spam complaints arrive as `spammed`"
                ),
            ));
        }

        let enrich = self.enrich;
        let mut conditions = Vec::new();
        let mut after_enrichment = Vec::new();
        for (i, table) in self.conditions.into_iter().enumerate() {
            let at = |key: &str| format!("conditions[{i}].{key}");
            let raw: RawCondition = toml_table::read(table).map_err(|e| err(&at("*"), e.message))?;
            let condition: Condition = raw.validate().map_err(|(key, problem)| err(&at(&key), problem))?;
            if is_customer_field(&condition.field) {
                if !enrich {
                    return Err(err(
                        &at("field"),
                        format!(
                            "`{}` comes from the Customer.io lookup: set `enrich = true` on this rule",
                            condition.field
                        ),
                    ));
                }
                after_enrichment.push(condition);
            } else {
                conditions.push(condition);
            }
        }

        let kind = self.action.ok_or_else(|| err("action", missing(required)))?;
        let action = action(kind.as_str(), self.persona, self.research, self.generate, err)?;
        if !self.enrich
            && let Some(field) = action.fields().into_iter().find(|f| is_customer_field(f))
        {
            return Err(err(
                kind.as_str(),
                format!(
                    "the template reads `{field}`, which comes from the Customer.io lookup: set `enrich = true` on this rule"
                ),
            ));
        }

        let kind = match &action {
            Action::CreatePersona(_) => ResultKind::Persona,
            Action::Research(_) => ResultKind::Research,
            Action::Generate(_) => ResultKind::Generation,
        };
        let tables = [
            (DestinationName::Slack, self.slack),
            (DestinationName::CustomerIo, self.customerio),
            (DestinationName::Segment, self.segment),
            (DestinationName::Webhook, self.webhook),
        ]
        .into_iter()
        .filter_map(|(name, table)| table.map(|t| (name, t)))
        .collect();
        let deliver = options::parse(self.deliver, tables, kind).map_err(|(field, problem)| err(&field, problem))?;
        if !self.enrich
            && let Some((target, field)) =
                deliver.iter().find_map(|t| t.fields().into_iter().find(|f| is_customer_field(f)).map(|f| (t, f)))
        {
            return Err(err(
                target.name().as_str(),
                format!(
                    "the template reads `{field}`, which comes from the Customer.io lookup: set `enrich = true` on this rule"
                ),
            ));
        }

        let daily_cap = match self.daily_cap {
            None => None,
            Some(n) if (1..=MAX_DAILY_CAP as i64).contains(&n) => Some(n as u32),
            Some(n) => {
                return Err(err("daily_cap", format!("{n} is outside 1 to {MAX_DAILY_CAP}; leave it out for no cap")));
            }
        };
        Ok(Rule {
            name,
            source,
            events,
            conditions,
            after_enrichment,
            action,
            daily_cap,
            once_per_user: self.once_per_user,
            enrich: self.enrich,
            deliver,
        })
    }
}

fn is_customer_field(path: &FieldPath) -> bool {
    path.first() == "customer"
}

fn action(
    kind: &str,
    persona: Option<RawPersona>,
    research: Option<RawResearch>,
    generate: Option<RawGenerate>,
    err: &dyn Fn(&str, String) -> RuleError,
) -> Result<Action, RuleError> {
    let table = match kind {
        "create_persona" => "persona",
        "research" => "research",
        "generate" => "generate",
        other => {
            return Err(err(
                "action",
                format!("`{other}` is not an action: use `create_persona`, `research` or `generate`"),
            ));
        }
    };
    for (name, present) in
        [("persona", persona.is_some()), ("research", research.is_some()), ("generate", generate.is_some())]
    {
        if present && name != table {
            return Err(err(
                name,
                format!("this rule's action is `{kind}`, so a `[rule.{name}]` table does nothing: remove it"),
            ));
        }
    }
    let template = |field: &str, text: &str| Template::parse(text).map_err(|e| err(field, e.to_string()));
    let json = |field: &str, table: toml::Table| -> Result<Vec<(String, JsonTemplate)>, RuleError> {
        let value = serde_json::to_value(table).map_err(|e| err(field, e.to_string()))?;
        match JsonTemplate::parse(value) {
            Ok(JsonTemplate::Object(entries)) => Ok(entries),
            Ok(_) => unreachable!("a TOML table is an object"),
            Err((at, e)) => Err(err(&format!("{field}.{at}"), e.to_string())),
        }
    };
    match kind {
        "create_persona" => {
            let p = persona.ok_or_else(|| {
                err("persona", "`create_persona` needs a `[rule.persona]` table with `name` and `description`".into())
            })?;
            let extra = json("persona.extra", p.extra)?;
            if let Some((k, _)) = extra.iter().find(|(k, _)| PERSONA_KEYS.contains(&k.as_str())) {
                return Err(err(&format!("persona.extra.{k}"), format!("set it with `persona.{k}` instead")));
            }
            let pipeline_type = PipelineType::setting(p.pipeline_type).map_err(|e| err("persona.pipeline_type", e))?;
            let persona_type = PersonaType::setting(p.persona_type).map_err(|e| err("persona.type", e))?;
            let context_field = p.context_field.map(|f| f.trim().to_owned()).filter(|f| !f.is_empty());
            if let Some(field) = context_field.as_deref()
                && (PERSONA_KEYS.contains(&field) || extra.iter().any(|(k, _)| k == field))
            {
                return Err(err("persona.context_field", format!("`{field}` is set elsewhere in the body")));
            }
            let needs = "`create_persona` needs a `[rule.persona]` table with `name` and `description`";
            let name = p.name.ok_or_else(|| err("persona.name", missing(needs)))?;
            let description = p.description.ok_or_else(|| err("persona.description", missing(needs)))?;
            Ok(Action::CreatePersona(PersonaAction {
                name: template("persona.name", &name)?,
                description: template("persona.description", &description)?,
                pipeline_type,
                persona_type,
                context_field,
                extra,
            }))
        }
        "research" => {
            let r = research
                .ok_or_else(|| err("research", "`research` needs a `[rule.research]` table with `prompt`".into()))?;
            let prompt = r.prompt.ok_or_else(|| err("research.prompt", missing("`research` needs a prompt")))?;
            if prompt.trim().is_empty() {
                return Err(err("research.prompt", "is empty".into()));
            }
            Ok(Action::Research(ResearchAction {
                prompt: template("research.prompt", &prompt)?,
                workspace_id: r.workspace_id,
            }))
        }
        "generate" => {
            let g = generate.ok_or_else(|| {
                err("generate", "`generate` needs a `[rule.generate]` table with `app_id` and `input`".into())
            })?;
            let app_id = g.app_id.ok_or_else(|| err("generate.app_id", missing("`generate` needs an `app_id`")))?;
            if app_id.trim().is_empty() {
                return Err(err("generate.app_id", "is empty".into()));
            }
            Ok(Action::Generate(GenerateAction {
                app_id,
                input: json("generate.input", g.input)?,
                title: g.title.as_deref().map(|t| template("generate.title", t)).transpose()?,
                brand_voice_id: g.brand_voice_id,
                persona_id: g.persona_id,
                workspace_id: g.workspace_id,
            }))
        }
        _ => unreachable!("checked above"),
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::Rules;
    use crate::triggers::{Triggers, TriggersError};

    /// The rules of a `triggers.toml`.
    fn parse(text: &str) -> Result<Rules, TriggersError> {
        Triggers::parse(text, "t.toml").map(|t| t.rules)
    }

    fn error(text: &str) -> (String, String, String) {
        match parse(text).unwrap_err() {
            TriggersError::Rule { rule, field, problem, .. } => (rule, field, problem),
            other => panic!("expected a rule error, got {other}"),
        }
    }

    const OK: &str = r#"
[[rule]]
name = "r"
source = "segment"
event = "e"
action = "research"
research = { prompt = "p {x}" }
"#;

    #[test]
    fn a_minimal_rule_parses() {
        let rules = parse(OK).unwrap();
        assert_eq!(rules.len(), 1);
    }

    #[test]
    fn an_empty_file_has_no_rules() {
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn errors_name_the_rule_and_the_field() {
        let (rule, field, _) = error(&OK.replace("source = \"segment\"", "source = \"stripe\""));
        assert_eq!((rule.as_str(), field.as_str()), ("r", "source"));

        let (_, field, problem) = error(&OK.replace("action = \"research\"", "action = \"email\""));
        assert_eq!(field, "action");
        assert!(problem.contains("create_persona"), "{problem}");

        let (_, field, problem) = error(&OK.replace("p {x}", "p {x"));
        assert_eq!(field, "research.prompt");
        assert!(problem.contains("never closed"), "{problem}");

        let (_, field, _) = error(&OK.replace("event = \"e\"", "evnt = \"e\""));
        assert_eq!(field, "evnt");

        let (rule, field, _) = error(&OK.replace("name = \"r\"", "name = \"Bad Name\""));
        assert_eq!((rule.as_str(), field.as_str()), ("Bad Name", "name"));

        let (rule, field, _) = error(&OK.replace("name = \"r\"\n", ""));
        assert_eq!((rule.as_str(), field.as_str()), ("#1", "name"));
    }

    #[test]
    fn the_action_table_must_match_the_action() {
        let (_, field, _) = error(&OK.replace("action = \"research\"", "action = \"create_persona\""));
        assert_eq!(field, "research");
        let (_, field, _) = error(&OK.replace("research = { prompt = \"p {x}\" }", ""));
        assert_eq!(field, "research");
    }

    #[test]
    fn conditions_are_validated_with_their_position() {
        let text =
            OK.replace("action =", "conditions = [{ field = \"a\", exists = true }, { field = \"b\" }]\naction =");
        let (_, field, _) = error(&text);
        assert_eq!(field, "conditions[1].field");
        let text = OK.replace("action =", "conditions = [{ field = \"a\", bigger = 1 }]\naction =");
        let (_, field, problem) = error(&text);
        assert_eq!(field, "conditions[0].*");
        assert!(problem.contains("bigger"), "{problem}");
    }

    #[test]
    fn customer_fields_need_enrichment() {
        let text = OK.replace("action =", "conditions = [{ field = \"customer.plan\", equals = \"pro\" }]\naction =");
        let (_, field, problem) = error(&text);
        assert_eq!(field, "conditions[0].field");
        assert!(problem.contains("enrich = true"), "{problem}");
        let (_, field, _) = error(&OK.replace("p {x}", "p {customer.plan}"));
        assert_eq!(field, "research");
        let ok = OK.replace("p {x}", "p {customer.plan}").replace("action =", "enrich = true\naction =");
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn duplicate_names_and_bad_caps_are_refused() {
        let (_, field, _) = error(&format!("{OK}\n{OK}"));
        assert_eq!(field, "name");
        let (_, field, _) = error(&OK.replace("action =", "daily_cap = 0\naction ="));
        assert_eq!(field, "daily_cap");
        let (_, field, _) = error(&OK.replace("action =", "daily_cap = 5000\naction ="));
        assert_eq!(field, "daily_cap");
    }

    #[test]
    fn destinations_are_checked_with_the_rule() {
        let with = |extra: &str| OK.replace("action =", &format!("{extra}\naction ="));
        let rules = parse(&format!(
            "{}\n[rule.slack]\ntext = \"{{user_id}}: {{result.content:.100}}\"",
            with("deliver = [\"slack\", \"segment\"]")
        ))
        .unwrap();
        let names: Vec<_> = rules.iter().next().unwrap().deliver.iter().map(|t| t.name().as_str()).collect();
        assert_eq!(names, ["slack", "segment"]);

        let (rule, field, problem) = error(&with("deliver = [\"slack\", \"teams\"]"));
        assert_eq!((rule.as_str(), field.as_str()), ("r", "deliver[1]"));
        assert!(problem.contains("not a destination"), "{problem}");

        let (_, field, problem) =
            error(&format!("{}\n[rule.slack]\ntext = \"{{result.persona.name}}\"", with("deliver = [\"slack\"]")));
        assert_eq!(field, "slack.text");
        assert!(problem.contains("create_persona"), "{problem}");

        let (_, field, _) = error(&format!("{}\n[rule.webhook]\ntyp = \"x\"", with("deliver = [\"webhook\"]")));
        assert_eq!(field, "webhook.typ");

        let (_, field, problem) = error(&format!("{}\n[rule.segment]\nevent = \"X\"", with("deliver = [\"slack\"]")));
        assert_eq!(field, "segment");
        assert!(problem.contains("not in this rule's `deliver` list"), "{problem}");

        let (_, field, problem) =
            error(&format!("{}\n[rule.slack]\ntext = \"{{customer.plan}}\"", with("deliver = [\"slack\"]")));
        assert_eq!(field, "slack");
        assert!(problem.contains("enrich = true"), "{problem}");
    }

    #[test]
    fn complained_is_refused_for_customerio() {
        let text = OK
            .replace("source = \"segment\"", "source = \"customerio\"")
            .replace("event = \"e\"", "event = [\"bounced\", \"complained\"]");
        let (_, field, problem) = error(&text);
        assert_eq!(field, "event");
        assert!(problem.contains("spammed"), "{problem}");
    }

    #[test]
    fn persona_enums_take_the_documented_values_in_their_own_keys() {
        let persona = |lines: &str| {
            format!(
                "[[rule]]\nname = \"p\"\nsource = \"segment\"\nevent = \"e\"\naction = \"create_persona\"\n\
                 [rule.persona]\nname = \"N\"\ndescription = \"D\"\n{lines}\n"
            )
        };
        let rules = parse(&persona("pipeline_type = \"advanced\"\ntype = \"B2C\"")).unwrap();
        let event = crate::domain::Event {
            source: crate::domain::Source::Segment,
            id: crate::domain::EventId::parse("m").unwrap(),
            name: "e".into(),
            user_id: None,
            fields: serde_json::Map::new(),
        };
        let body = rules.matching(&event).next().unwrap().action.render(&event).body();
        assert_eq!(
            body,
            serde_json::json!({"name": "N", "description": "D", "pipeline_type": "advanced", "type": "B2C"})
        );

        for (lines, field, hint) in [
            ("pipeline_type = \"North Star\"", "persona.pipeline_type", "`north_star`"),
            ("type = \"consumer\"", "persona.type", "`B2B`, `B2C`"),
            ("extra = { pipeline_type = \"advanced\" }", "persona.extra.pipeline_type", "persona.pipeline_type"),
            ("extra = { type = \"B2B\" }", "persona.extra.type", "persona.type"),
            ("context_field = \"type\"", "persona.context_field", "set elsewhere"),
        ] {
            let (_, got, problem) = error(&persona(lines));
            assert_eq!(got, field, "{lines}: {problem}");
            assert!(problem.contains(hint), "{lines}: {problem}");
        }
    }

    #[test]
    fn the_events_fields_go_into_a_body_field_only_when_one_is_named() {
        let text = "[[rule]]\nname = \"p\"\nsource = \"segment\"\nevent = \"e\"\naction = \"create_persona\"\n\
                    [rule.persona]\nname = \"N\"\ndescription = \"D\"\n";
        let event = crate::domain::Event {
            source: crate::domain::Source::Segment,
            id: crate::domain::EventId::parse("m").unwrap(),
            name: "e".into(),
            user_id: Some("u1".into()),
            fields: serde_json::json!({"user_id": "u1", "plan": "pro"}).as_object().unwrap().clone(),
        };
        let body = |text: &str| parse(text).unwrap().matching(&event).next().unwrap().action.render(&event).body();
        assert_eq!(body(text), serde_json::json!({"name": "N", "description": "D"}));
        assert_eq!(
            body(&format!("{text}context_field = \"psychographic\"\n")),
            serde_json::json!({"name": "N", "description": "D", "psychographic": {"trigger_event": "e", "user_id": "u1", "plan": "pro"}})
        );
    }

    #[test]
    fn persona_extra_and_generate_input_are_templates() {
        let rules = parse(
            r#"
[[rule]]
name = "p"
source = "segment"
event = "e"
action = "create_persona"
[rule.persona]
name = "N {x}"
description = "D"
type = "B2C"
extra = { attributes = { plan = "{plan}", n = 3 } }

[[rule]]
name = "g"
source = "segment"
event = "e"
action = "generate"
[rule.generate]
app_id = "email-variations"
title = "For {plan}"
input = { topic = "Upgrade to {plan}", tone = "friendly" }
"#,
        )
        .unwrap();
        let event = crate::domain::Event {
            source: crate::domain::Source::Segment,
            id: crate::domain::EventId::parse("m").unwrap(),
            name: "e".into(),
            user_id: None,
            fields: serde_json::json!({"plan": "pro", "x": 1}).as_object().unwrap().clone(),
        };
        let bodies: Vec<_> = rules.matching(&event).map(|r| r.action.render(&event).body()).collect();
        assert_eq!(
            bodies[0],
            serde_json::json!({"name": "N 1", "description": "D", "type": "B2C", "attributes": {"plan": "pro", "n": 3}})
        );
        assert_eq!(
            bodies[1],
            serde_json::json!({"app_id": "email-variations", "title": "For pro", "input_data": {"topic": "Upgrade to pro", "tone": "friendly"}})
        );
    }
}
