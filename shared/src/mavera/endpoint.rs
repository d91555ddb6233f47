//! The Mavera endpoints the relay calls, and the time budget each one gets.

use std::fmt;
use std::time::Duration;

use super::types::MaveraRequest;

/// One of the `POST` endpoints behind [`MaveraRequest`], or the free `GET /personas`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `POST /personas`
    CreatePersona,
    /// `POST /mave/chat`
    MaveChat,
    /// `POST /generations`
    Generate,
    /// `GET /personas` (0 credits): finding a persona Mavera says exists, and `relay doctor`.
    ListPersonas,
}

impl Endpoint {
    pub fn of(request: &MaveraRequest) -> Self {
        match request {
            MaveraRequest::CreatePersona(_) => Endpoint::CreatePersona,
            MaveraRequest::Research(_) => Endpoint::MaveChat,
            MaveraRequest::Generate(_) => Endpoint::Generate,
        }
    }

    pub fn path(self) -> &'static str {
        match self {
            Endpoint::CreatePersona | Endpoint::ListPersonas => "/personas",
            Endpoint::MaveChat => "/mave/chat",
            Endpoint::Generate => "/generations",
        }
    }

    pub fn method(self) -> &'static str {
        match self {
            Endpoint::ListPersonas => "GET",
            Endpoint::CreatePersona | Endpoint::MaveChat | Endpoint::Generate => "POST",
        }
    }

    /// The longest one attempt may take, from sending to the last byte of the answer.
    ///
    /// A client-side timeout does not stop Mavera: the call may still finish and charge
    /// credits, and a retry then pays again. So each limit sits well above the expected
    /// latency and only cuts off connections that are truly stuck.
    pub fn timeout(self) -> Duration {
        match self {
            // Building a persona profile is model work of undocumented length; it costs 300
            // credits, so give it room rather than risk paying twice.
            Endpoint::CreatePersona => Duration::from_secs(60),
            // Mave documents 5–30 s, and 30–90 s for a first answer.
            Endpoint::MaveChat => Duration::from_secs(120),
            // Template generation is one model call of undocumented length, well under Mave's.
            Endpoint::Generate => Duration::from_secs(60),
            // A free read of one page.
            Endpoint::ListPersonas => Duration::from_secs(15),
        }
    }

    /// The least time worth starting an attempt with. With less left before the deadline,
    /// the call is not sent: it could hardly finish, yet might still be charged.
    pub fn min_attempt(self) -> Duration {
        match self {
            Endpoint::CreatePersona | Endpoint::Generate => Duration::from_secs(2),
            Endpoint::ListPersonas => Duration::from_secs(1),
            // Mave's fastest documented answer.
            Endpoint::MaveChat => Duration::from_secs(5),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method(), self.path())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Map;

    use super::*;
    use crate::mavera::{CreatePersonaRequest, GenerationRequest, MaveChatRequest};

    #[test]
    fn endpoint_paths_match_the_request_paths() {
        let requests = [
            MaveraRequest::CreatePersona(CreatePersonaRequest {
                name: "n".into(),
                description: "d".into(),
                pipeline_type: None,
                persona_type: None,
                extra: Map::new(),
            }),
            MaveraRequest::Research(MaveChatRequest { message: "m".into(), thread_id: None, workspace_id: None }),
            MaveraRequest::Generate(GenerationRequest {
                app_id: "a".into(),
                input_data: Map::new(),
                title: None,
                brand_voice_id: None,
                persona_id: None,
                workspace_id: None,
            }),
        ];
        for request in &requests {
            assert_eq!(Endpoint::of(request).path(), request.path());
        }
    }

    #[test]
    fn every_attempt_budget_is_below_its_timeout() {
        for e in [Endpoint::CreatePersona, Endpoint::MaveChat, Endpoint::Generate, Endpoint::ListPersonas] {
            assert!(e.min_attempt() < e.timeout(), "{e}");
        }
    }
}
