//! What a rule does when it fires: the Mavera call, rendered from templates.

use serde_json::{Map, Value};

use crate::domain::{Event, FieldPath, PersonaName, truncate_chars};
use crate::mavera::{
    CreatePersonaRequest, GenerationRequest, MaveChatRequest, MaveraRequest, PersonaType, PipelineType,
};
use crate::template::{JsonTemplate, Template, render_entries};

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    CreatePersona(PersonaAction),
    Research(ResearchAction),
    Generate(GenerateAction),
}

#[derive(Debug, Clone, PartialEq)]
pub struct PersonaAction {
    pub name: Template,
    pub description: Template,
    /// The reference's `pipeline_type` and `type`, checked against their documented values.
    pub pipeline_type: Option<PipelineType>,
    pub persona_type: Option<PersonaType>,
    /// A body field that receives the event's scalar fields (as Mavera's Segment page sends
    /// `psychographic`); `None` (the default) leaves them out, as the reference has no such field.
    pub context_field: Option<String>,
    /// Further body fields: the reference's structured lists (`goals`, `triggers`, `channels`, …).
    pub extra: Vec<(String, JsonTemplate)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResearchAction {
    pub prompt: Template,
    pub workspace_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GenerateAction {
    pub app_id: String,
    pub input: Vec<(String, JsonTemplate)>,
    pub title: Option<Template>,
    pub brand_voice_id: Option<String>,
    pub persona_id: Option<String>,
    pub workspace_id: Option<String>,
}

impl Action {
    pub fn kind(&self) -> &'static str {
        match self {
            Action::CreatePersona(_) => "create_persona",
            Action::Research(_) => "research",
            Action::Generate(_) => "generate",
        }
    }

    /// Renders the Mavera request for `event`. Infallible: missing fields read `unknown`.
    pub fn render(&self, event: &Event) -> MaveraRequest {
        match self {
            Action::CreatePersona(p) => {
                let name = PersonaName::new(p.name.render(event));
                let mut extra = Map::new();
                if let Some(field) = &p.context_field {
                    let mut context = Map::new();
                    for (k, v) in event.scalar_fields() {
                        context.insert(k.to_owned(), v.clone());
                    }
                    // The relay's own field, written last: an event property of the same
                    // name cannot pass for it.
                    context.insert("trigger_event".into(), Value::String(event.name.clone()));
                    extra.insert(field.clone(), Value::Object(context));
                }
                extra.extend(render_entries(&p.extra, event));
                MaveraRequest::CreatePersona(CreatePersonaRequest {
                    name: name.into_string(),
                    description: p.description.render(event),
                    pipeline_type: p.pipeline_type,
                    persona_type: p.persona_type,
                    extra,
                })
            }
            Action::Research(r) => MaveraRequest::Research(MaveChatRequest {
                message: r.prompt.render(event),
                thread_id: None,
                workspace_id: r.workspace_id.clone(),
            }),
            Action::Generate(g) => MaveraRequest::Generate(GenerationRequest {
                app_id: g.app_id.clone(),
                input_data: render_entries(&g.input, event),
                title: g.title.as_ref().map(|t| t.render(event)),
                brand_voice_id: g.brand_voice_id.clone(),
                persona_id: g.persona_id.clone(),
                workspace_id: g.workspace_id.clone(),
            }),
        }
    }

    /// Every field path the action's templates read, for validation.
    pub fn fields(&self) -> Vec<&FieldPath> {
        match self {
            Action::CreatePersona(p) => p
                .name
                .fields()
                .chain(p.description.fields())
                .chain(p.extra.iter().flat_map(|(_, t)| t.fields()))
                .collect(),
            Action::Research(r) => r.prompt.fields().collect(),
            Action::Generate(g) => {
                g.input.iter().flat_map(|(_, t)| t.fields()).chain(g.title.iter().flat_map(|t| t.fields())).collect()
            }
        }
    }

    /// A short summary for `relay check`.
    pub fn describe(&self) -> String {
        match self {
            Action::CreatePersona(p) => format!("create_persona \"{}\"", p.name.as_str()),
            Action::Research(r) => {
                let prompt = truncate_chars(r.prompt.as_str(), 48);
                let more = if prompt.len() < r.prompt.as_str().len() { "…" } else { "" };
                format!("research \"{prompt}{more}\"")
            }
            Action::Generate(g) => format!("generate app {}", g.app_id),
        }
    }
}
