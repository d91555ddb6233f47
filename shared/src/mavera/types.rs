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

/// The persona body. The docs conflict on its fields, so beyond `name` and `description`
/// everything is the rule's choice (`extra`), with the event's scalar fields under
/// `psychographic` by default, as Mavera's Segment page sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatePersonaRequest {
    pub name: String,
    pub description: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
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
