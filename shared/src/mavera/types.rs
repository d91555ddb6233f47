//! Typed Mavera requests and responses (see `reference/mavera-api.md`). Responses keep only
//! the fields mavera-relay reads and ignore the rest, as the API adds fields over time.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One Mavera call, fully rendered from a rule and an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum MaveraRequest {
    /// `POST /personas` (300 credits).
    CreatePersona(CreatePersonaRequest),
    /// `POST /mave/chat` (10–75 credits, 5–90 s).
    Research(MaveChatRequest),
    /// `POST /generations` (10–30 credits).
    Generate(GenerationRequest),
}

impl MaveraRequest {
    pub fn path(&self) -> &'static str {
        match self {
            MaveraRequest::CreatePersona(_) => "/personas",
            MaveraRequest::Research(_) => "/mave/chat",
            MaveraRequest::Generate(_) => "/generations",
        }
    }

    /// The JSON body sent to Mavera.
    pub fn body(&self) -> Value {
        let body = match self {
            MaveraRequest::CreatePersona(r) => serde_json::to_value(r),
            MaveraRequest::Research(r) => serde_json::to_value(r),
            MaveraRequest::Generate(r) => serde_json::to_value(r),
        };
        body.expect("request types serialize to JSON")
    }
}

/// The persona body. Mavera's API reference sends `pipeline_type`, `name`, `type` and
/// structured lists (`goals`, `pains`, `triggers`, `channels`, …); its integration pages send
/// `name` and `description` (plus `psychographic` or `attributes`). Which fields are required,
/// and whether unknown ones are refused, is not documented: the two enums are typed here, the
/// structured fields are the rule's choice (`extra`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatePersonaRequest {
    pub name: String,
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline_type: Option<PipelineType>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub persona_type: Option<PersonaType>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `pipeline_type`: how much Mavera generates itself. The reference documents the three
/// values; what each asks for is not documented beyond its example (`intermediate`, with
/// structured fields). An unofficial page says `north_star` needs only a name and description.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PipelineType {
    NorthStar,
    Intermediate,
    Advanced,
}

/// `type`: a business buyer or a consumer (`B2B` | `B2C`, as the reference spells them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PersonaType {
    B2B,
    B2C,
}

impl PipelineType {
    pub const ALL: [PipelineType; 3] = [PipelineType::NorthStar, PipelineType::Intermediate, PipelineType::Advanced];

    pub fn as_str(self) -> &'static str {
        match self {
            PipelineType::NorthStar => "north_star",
            PipelineType::Intermediate => "intermediate",
            PipelineType::Advanced => "advanced",
        }
    }

    /// The documented spelling, exactly.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == value)
    }

    /// A `triggers.toml` value: unset, or one of the documented values; the error says which.
    pub fn setting(value: Option<String>) -> Result<Option<Self>, String> {
        setting(value, Self::parse, &Self::ALL.map(Self::as_str))
    }
}

impl PersonaType {
    pub const ALL: [PersonaType; 2] = [PersonaType::B2B, PersonaType::B2C];

    pub fn as_str(self) -> &'static str {
        match self {
            PersonaType::B2B => "B2B",
            PersonaType::B2C => "B2C",
        }
    }

    /// The documented spelling, exactly (`B2B`, not `b2b`).
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == value)
    }

    /// A `triggers.toml` value: unset, or one of the documented values; the error says which.
    pub fn setting(value: Option<String>) -> Result<Option<Self>, String> {
        setting(value, Self::parse, &Self::ALL.map(Self::as_str))
    }
}

fn setting<T>(value: Option<String>, parse: fn(&str) -> Option<T>, allowed: &[&str]) -> Result<Option<T>, String> {
    let Some(value) = value else { return Ok(None) };
    parse(value.trim()).map(Some).ok_or_else(|| {
        let allowed: Vec<String> = allowed.iter().map(|a| format!("`{a}`")).collect();
        format!("`{value}` is not one of Mavera's documented values: {}", allowed.join(", "))
    })
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaveChatRequest {
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationRequest {
    pub app_id: String,
    pub input_data: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand_voice_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persona_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub credits_used: Option<f64>,
}

/// `POST /personas` answer. IDs are opaque strings (CUIDs in the reference, other shapes
/// on integration pages).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Persona {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub credits_charged: Option<f64>,
}

/// One persona as `GET /personas` lists it (base and custom alike; `prompt` is never sent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersonaSummary {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    /// `false` for Mavera's base personas, which share the list with the workspace's own.
    #[serde(default)]
    pub is_custom: Option<bool>,
}

/// `GET /personas` answer: `{"object": "list", "data": [...]}`. Its pagination fields are not
/// documented, so only the first page is read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersonaList {
    pub data: Vec<PersonaSummary>,
}

/// `POST /mave/chat` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaveMessage {
    #[serde(default)]
    pub id: Option<String>,
    pub thread_id: String,
    pub content: String,
    #[serde(default)]
    pub usage: Option<Usage>,
}

/// `POST /generations` answer. The reference has `output` and `content` (the same text);
/// the features page shows `output` and `markdown`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    pub id: String,
    #[serde(default)]
    pub output: Option<String>,
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub markdown: Option<String>,
    #[serde(default)]
    pub usage: Option<Usage>,
}

impl Generation {
    pub fn text(&self) -> Option<&str> {
        self.output.as_deref().or(self.content.as_deref()).or(self.markdown.as_deref())
    }
}

/// The documented error body: `{"error":{"message","type","code","param"}}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ApiErrorBody {
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub param: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ApiErrorEnvelope {
    pub error: ApiErrorBody,
}
