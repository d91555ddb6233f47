//! A job's result as destinations read it: the `DONE` record's `result` (what
//! `worker::summarize` kept of Mavera's answer), with names for templates (`{result.content}`,
//! `{result.persona.name}`, …) that do not depend on the stored shape.

use serde_json::Value;

use crate::domain::LookedUp;

/// Which Mavera action produced a result: decides which `result.*` fields exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResultKind {
    Persona,
    Research,
    Generation,
}

impl ResultKind {
    /// The rule's `action`, as `triggers.toml` spells it.
    pub fn action(self) -> &'static str {
        match self {
            ResultKind::Persona => "create_persona",
            ResultKind::Research => "research",
            ResultKind::Generation => "generate",
        }
    }

    fn from_action(action: &str) -> Option<Self> {
        Some(match action {
            "create_persona" => ResultKind::Persona,
            "research" => ResultKind::Research,
            "generate" => ResultKind::Generation,
            _ => return None,
        })
    }

    /// What the result is, for people: "persona", "research", "generation".
    pub fn noun(self) -> &'static str {
        match self {
            ResultKind::Persona => "persona",
            ResultKind::Research => "research",
            ResultKind::Generation => "generation",
        }
    }
}

/// Every `result.*` field a template may read, and the actions whose results have it.
pub const RESULT_FIELDS: [(&str, &[ResultKind]); 10] = [
    ("action", &ALL),
    ("id", &ALL),
    ("credits", &ALL),
    ("persona.id", &[ResultKind::Persona]),
    ("persona.name", &[ResultKind::Persona]),
    ("content", &[ResultKind::Research, ResultKind::Generation]),
    ("truncated", &[ResultKind::Research, ResultKind::Generation]),
    ("thread_id", &[ResultKind::Research]),
    ("message_id", &[ResultKind::Research]),
    ("generation_id", &[ResultKind::Generation]),
];

const ALL: [ResultKind; 3] = [ResultKind::Persona, ResultKind::Research, ResultKind::Generation];

/// Why a template's `result.*` field cannot be read for a rule's results.
pub fn check_result_field(name: &str, kind: ResultKind) -> Result<(), String> {
    match RESULT_FIELDS.iter().find(|(field, _)| *field == name) {
        None => Err(format!(
            "`result.{name}` is not a result field; they are {}",
            RESULT_FIELDS.iter().map(|(f, _)| format!("result.{f}")).collect::<Vec<_>>().join(", ")
        )),
        Some((_, kinds)) if !kinds.contains(&kind) => Err(format!(
            "`result.{name}` exists only in {} results, and this rule's action is `{}`",
            kinds.iter().map(|k| k.action()).collect::<Vec<_>>().join(" and "),
            kind.action()
        )),
        Some(_) => Ok(()),
    }
}

/// The stored result of a `DONE` job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobResult {
    value: Value,
}

impl JobResult {
    pub fn new(value: Value) -> Self {
        JobResult { value }
    }

    pub fn raw(&self) -> &Value {
        &self.value
    }

    /// A dry run's record of the request: Mavera was not called.
    pub fn is_dry_run(&self) -> bool {
        self.value.get("dry_run").and_then(Value::as_bool) == Some(true)
    }

    /// From the stored `action`, or for a dry run from the path it would have posted to.
    pub fn kind(&self) -> Option<ResultKind> {
        if let Some(action) = self.str("/action") {
            return ResultKind::from_action(action);
        }
        match self.str("/request/path")? {
            "/personas" => Some(ResultKind::Persona),
            "/mave/chat" => Some(ResultKind::Research),
            "/generations" => Some(ResultKind::Generation),
            _ => None,
        }
    }

    /// The research answer or the generated text (bounded when the record was written).
    pub fn text(&self) -> Option<&str> {
        self.str("/content").or_else(|| self.str("/output"))
    }

    /// Whether the record already cut the text (the full one stays in Mavera).
    pub fn truncated(&self) -> bool {
        self.value.get("truncated").and_then(Value::as_bool) == Some(true)
    }

    pub fn persona_id(&self) -> Option<&str> {
        self.str("/persona_id")
    }

    pub fn persona_name(&self) -> Option<&str> {
        self.str("/name")
    }

    pub fn thread_id(&self) -> Option<&str> {
        self.str("/thread_id")
    }

    pub fn generation_id(&self) -> Option<&str> {
        self.str("/generation_id")
    }

    /// The id that finds the result again in Mavera: persona, thread or generation.
    pub fn id(&self) -> Option<&str> {
        self.persona_id().or_else(|| self.thread_id()).or_else(|| self.generation_id())
    }

    pub fn credits(&self) -> Option<f64> {
        self.value.get("credits").and_then(Value::as_f64)
    }

    /// A persona Mavera already had (a repeated call answered 422): no id is known.
    pub fn already_existed(&self) -> bool {
        self.value.get("already_existed").and_then(Value::as_bool) == Some(true)
    }

    /// The value of `result.<name>`, as a template reads it.
    pub fn field(&self, name: &str) -> Option<LookedUp<'_>> {
        let pointer = match name {
            "action" => return self.kind().map(|k| LookedUp::Str(k.action())),
            "id" => return self.id().map(LookedUp::Str),
            "content" => return self.text().map(LookedUp::Str),
            "truncated" => "/truncated",
            "credits" => "/credits",
            "persona.id" => "/persona_id",
            "persona.name" => "/name",
            "thread_id" => "/thread_id",
            "message_id" => "/message_id",
            "generation_id" => "/generation_id",
            _ => return None,
        };
        self.value.pointer(pointer).filter(|v| !v.is_null()).map(LookedUp::Json)
    }

    fn str(&self, pointer: &str) -> Option<&str> {
        self.value.pointer(pointer).and_then(Value::as_str)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn fields_read_the_stored_shapes() {
        let research = JobResult::new(
            json!({"action": "research", "thread_id": "t1", "message_id": "m1", "content": "findings", "truncated": false, "credits": 25.0}),
        );
        assert_eq!(research.kind(), Some(ResultKind::Research));
        assert_eq!(research.field("content").unwrap().to_text(), "findings");
        assert_eq!(research.field("id").unwrap().to_text(), "t1");
        assert_eq!(research.field("credits").unwrap().to_text(), "25.0");
        assert_eq!(research.field("action").unwrap().to_text(), "research");
        assert!(research.field("persona.name").is_none());

        let persona = JobResult::new(
            json!({"action": "create_persona", "persona_id": "p1", "name": "Trial User", "credits": 300}),
        );
        assert_eq!(persona.field("persona.name").unwrap().to_text(), "Trial User");
        assert_eq!(persona.field("persona.id").unwrap().to_text(), "p1");

        let generation = JobResult::new(
            json!({"action": "generate", "generation_id": "g1", "output": "copy", "truncated": true, "credits": null}),
        );
        assert_eq!(generation.text(), Some("copy"));
        assert!(generation.truncated());
        assert!(generation.field("credits").is_none(), "null counts as absent");
    }

    #[test]
    fn a_dry_run_knows_its_kind_from_the_request() {
        let dry =
            JobResult::new(json!({"dry_run": true, "request": {"method": "POST", "path": "/mave/chat", "body": {}}}));
        assert!(dry.is_dry_run());
        assert_eq!(dry.kind(), Some(ResultKind::Research));
        assert_eq!(dry.text(), None);
    }

    #[test]
    fn result_fields_are_checked_against_the_action() {
        assert!(check_result_field("content", ResultKind::Research).is_ok());
        assert!(check_result_field("persona.name", ResultKind::Persona).is_ok());
        let err = check_result_field("thread_id", ResultKind::Persona).unwrap_err();
        assert!(err.contains("only in research results") && err.contains("create_persona"), "{err}");
        let err = check_result_field("contnet", ResultKind::Research).unwrap_err();
        assert!(err.contains("not a result field") && err.contains("result.content"), "{err}");
    }
}
