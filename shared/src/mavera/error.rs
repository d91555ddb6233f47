//! What can go wrong calling Mavera, and whether trying again can help.

use std::time::Duration;

use super::endpoint::Endpoint;
use super::types::ApiErrorBody;
use crate::store::FailureClass;

/// How the caller should treat a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Worth trying again later (rate limit, server error, timeout, network): hand the job
    /// back to the queue.
    Transient,
    /// Trying again gives the same answer: mark the job failed.
    Permanent,
    /// The thing the call would create may already exist: a 422 on `POST /personas` that
    /// names a duplicate ([`MaveraError::duplicate`] says how sure that is).
    AlreadyDone,
}

/// Why a 422 on `POST /personas` reads as "a persona with this name exists". Mavera documents
/// the 422 (on its Shopify page) but not its body, so this is read from the documented error
/// fields, never the message text:
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Duplicate {
    /// The `code` names a duplicate (`duplicate…`, `…exists`, `…taken`): taken as said, and
    /// the persona is looked up for its id.
    Stated,
    /// Only the `param` is `name`: a duplicate, or a name Mavera refuses for another reason.
    /// A duplicate only if the lookup finds a persona with exactly this name.
    NameRefused,
}

/// A failed Mavera call. The API key never appears in any message.
#[derive(Debug, thiserror::Error)]
pub enum MaveraError {
    /// Mavera answered with a status other than 2xx.
    #[error("{}", describe_status(*.endpoint, *.status, .error, *.retry_after))]
    Api {
        endpoint: Endpoint,
        status: u16,
        /// Mavera's documented error body; all fields empty when the body was not that shape.
        error: ApiErrorBody,
        /// How long Mavera asked us to wait (`Retry-After`, or `X-RateLimit-Reset` on a 429).
        retry_after: Option<Duration>,
    },

    #[error(
        "Mavera did not finish answering {endpoint} within {after:.1?}; the call may still complete on \
         Mavera's side; transient: retried while the deadline allows, otherwise the job goes back to the queue"
    )]
    Timeout { endpoint: Endpoint, after: Duration },

    #[error(
        "could not connect to Mavera for {endpoint}; check network access and MAVERA_BASE_URL; transient: \
         retried while the deadline allows, otherwise the job goes back to the queue"
    )]
    Connect {
        endpoint: Endpoint,
        #[source]
        source: reqwest::Error,
    },

    #[error(
        "the connection to Mavera broke during {endpoint}; the call may have run on Mavera's side; transient: \
         retried while the deadline allows, otherwise the job goes back to the queue"
    )]
    Transport {
        endpoint: Endpoint,
        #[source]
        source: reqwest::Error,
    },

    #[error("could not build the HTTP request for {endpoint}; this is a bug in mavera-relay; not retried")]
    InvalidRequest {
        endpoint: Endpoint,
        #[source]
        source: reqwest::Error,
    },

    #[error(
        "Mavera answered {endpoint} with {status} but the body is not the documented {expected} object; the \
         call ran and may have been charged, so it is not repeated; check whether Mavera changed its response \
         format; the job is marked FAILED"
    )]
    Decode {
        endpoint: Endpoint,
        status: u16,
        expected: &'static str,
        #[source]
        source: serde_json::Error,
    },

    #[error(
        "only {remaining:.1?} left before the deadline, less than the {needed:?} a call to {endpoint} needs; \
         not sent; transient: the job goes back to the queue"
    )]
    NoTimeLeft { endpoint: Endpoint, remaining: Duration, needed: Duration },

    #[error(
        "all {limit} Mave slots stayed busy for {waited:.1?}, until too little time was left before the \
         deadline; not sent; transient: the job goes back to the queue"
    )]
    NoMaveSlot { limit: usize, waited: Duration },
}

impl MaveraError {
    /// Sorts the error by status and kind, never by message text.
    pub fn class(&self) -> ErrorClass {
        match self {
            MaveraError::Api { .. } if self.duplicate().is_some() => ErrorClass::AlreadyDone,
            MaveraError::Api { status, .. } => classify_status(*status),
            MaveraError::Timeout { .. }
            | MaveraError::Connect { .. }
            | MaveraError::Transport { .. }
            | MaveraError::NoTimeLeft { .. }
            | MaveraError::NoMaveSlot { .. } => ErrorClass::Transient,
            MaveraError::InvalidRequest { .. } | MaveraError::Decode { .. } => ErrorClass::Permanent,
        }
    }

    /// What a permanent failure means for the operator (the `failed` metric's `Class`): from
    /// the status and Mavera's error code, never the message text.
    pub fn failure_class(&self) -> FailureClass {
        match self {
            MaveraError::Api { status, .. } => match status {
                401 => FailureClass::Unauthorized,
                402 if self.code() == Some("budget_exceeded") => FailureClass::BudgetExceeded,
                402 => FailureClass::CreditsExhausted,
                403 => FailureClass::Forbidden,
                404 => FailureClass::NotFound,
                400..=499 => FailureClass::Rejected,
                _ => FailureClass::UnexpectedResponse,
            },
            MaveraError::Decode { .. } => FailureClass::UnexpectedResponse,
            MaveraError::InvalidRequest { .. } => FailureClass::Internal,
            // Transient: these end a job only if a caller gives up on them, which the worker
            // does not; Mavera's side is what was unavailable.
            MaveraError::Timeout { .. }
            | MaveraError::Connect { .. }
            | MaveraError::Transport { .. }
            | MaveraError::NoTimeLeft { .. }
            | MaveraError::NoMaveSlot { .. } => FailureClass::UnexpectedResponse,
        }
    }

    /// The HTTP status Mavera answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            MaveraError::Api { status, .. } | MaveraError::Decode { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The endpoint called.
    pub fn endpoint(&self) -> Endpoint {
        match self {
            MaveraError::Api { endpoint, .. }
            | MaveraError::Timeout { endpoint, .. }
            | MaveraError::Connect { endpoint, .. }
            | MaveraError::Transport { endpoint, .. }
            | MaveraError::InvalidRequest { endpoint, .. }
            | MaveraError::Decode { endpoint, .. }
            | MaveraError::NoTimeLeft { endpoint, .. } => *endpoint,
            MaveraError::NoMaveSlot { .. } => Endpoint::MaveChat,
        }
    }

    fn api_body(&self) -> Option<&ApiErrorBody> {
        match self {
            MaveraError::Api { error, .. } => Some(error),
            _ => None,
        }
    }

    /// Mavera's error code, e.g. `credits_exhausted`.
    pub fn code(&self) -> Option<&str> {
        self.api_body()?.code.as_deref()
    }

    /// Mavera's error type, e.g. `insufficient_credits`.
    pub fn kind(&self) -> Option<&str> {
        self.api_body()?.kind.as_deref()
    }

    /// Mavera's human-readable message.
    pub fn mavera_message(&self) -> Option<&str> {
        self.api_body()?.message.as_deref()
    }

    /// The request field Mavera objected to.
    pub fn param(&self) -> Option<&str> {
        self.api_body()?.param.as_deref()
    }

    /// Whether this is `POST /personas` refusing a duplicate name, and how sure that is; `None`
    /// for every other error, 422s with other codes and fields included.
    pub fn duplicate(&self) -> Option<Duplicate> {
        match self {
            MaveraError::Api { endpoint: Endpoint::CreatePersona, status: 422, error, .. } => duplicate_evidence(error),
            _ => None,
        }
    }

    /// Whether Mavera's error is about `workspace_id` (its `param`, or the field named in its
    /// message): only the advice in the message depends on it, never the class.
    pub fn names_workspace_id(&self) -> bool {
        self.api_body().is_some_and(names_workspace_id)
    }

    /// How long Mavera asked the caller to wait before trying again.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            MaveraError::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

fn duplicate_evidence(error: &ApiErrorBody) -> Option<Duplicate> {
    let code = error.code.as_deref().unwrap_or_default().to_ascii_lowercase();
    if code.contains("duplicate") || code.ends_with("exists") || code.ends_with("taken") {
        Some(Duplicate::Stated)
    } else if error.param.as_deref() == Some("name") {
        Some(Duplicate::NameRefused)
    } else {
        None
    }
}

fn names_workspace_id(error: &ApiErrorBody) -> bool {
    // The message is read only for advice: a 400 is permanent whatever it says.
    error.param.as_deref() == Some("workspace_id")
        || error.message.as_deref().is_some_and(|m| m.contains("workspace_id"))
}

/// Where a request's `workspace_id` is set, for the advice on an error that names it.
fn workspace_advice(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Generate => {
            "Mavera wants a workspace for this generation: set `workspace_id` in the rule's [rule.generate] table \
             (or in [cio_sync.campaign_strategy.generate] for the scheduled job) to your workspace's id"
        }
        Endpoint::MaveChat => {
            "Mavera wants a workspace for this research: set `workspace_id` in the rule's [rule.research] table \
             (or in [cio_sync.campaign_strategy] for the scheduled job) to your workspace's id"
        }
        Endpoint::CreatePersona | Endpoint::ListPersonas => {
            "Mavera wants a workspace for this call, which mavera-relay does not send; report it"
        }
    }
}

fn classify_status(status: u16) -> ErrorClass {
    match status {
        408 | 429 => ErrorClass::Transient,
        // Not implemented / unsupported HTTP version will not change on a retry.
        501 | 505 => ErrorClass::Permanent,
        500..=599 => ErrorClass::Transient,
        // 4xx, and 3xx since redirects are not followed.
        _ => ErrorClass::Permanent,
    }
}

/// "What happened: Mavera's words; what to do."
fn describe_status(endpoint: Endpoint, status: u16, error: &ApiErrorBody, retry_after: Option<Duration>) -> String {
    const FAILED: &str = "the job is marked FAILED and will not be retried";
    const REQUEUED: &str = "retried while the deadline allows, otherwise the job goes back to the queue";

    let what = match status {
        400 => "rejected the request as invalid",
        401 => "rejected the API key",
        402 => "refused the call: credits are exhausted or the budget is reached",
        403 => "refused access",
        404 => "did not find a resource the request names",
        408 => "timed out waiting for the request",
        422 => match (endpoint, duplicate_evidence(error)) {
            (Endpoint::CreatePersona, Some(Duplicate::Stated)) => {
                "reports that a persona with this name already exists"
            }
            (Endpoint::CreatePersona, Some(Duplicate::NameRefused)) => "refused the persona's name",
            _ => "could not process the request",
        },
        429 => "rate-limited the call",
        300..=399 => "redirected the call, which the client does not follow",
        501 | 505 => "does not support this request",
        500..=599 => "failed on its side",
        _ => "answered with an unexpected status",
    };
    let advice = match status {
        400 if names_workspace_id(error) => format!("{}; {FAILED}", workspace_advice(endpoint)),
        400 => format!("fix the trigger rule that renders this request; {FAILED}"),
        401 => format!("set a valid, unrevoked key (mvra_live_…) in MAVERA_API_KEY or the relay secret; {FAILED}"),
        402 => format!("top up credits, raise the workspace budget or wait for the billing cycle; {FAILED}"),
        403 => format!("check that the key's workspace may use this resource; {FAILED}"),
        404 => format!("check the ids the rule sends (persona_id, app_id, workspace_id); {FAILED}"),
        422 if endpoint == Endpoint::CreatePersona => match duplicate_evidence(error) {
            Some(Duplicate::Stated) => {
                "nothing to create; the job counts as done and its record names the existing persona (update it with \
                 PATCH if needed)"
                    .to_owned()
            }
            Some(Duplicate::NameRefused) => "the name is looked up: if a persona has exactly this name the job counts \
                 as done, otherwise it is marked FAILED"
                .to_owned(),
            None => format!("check the persona fields the rule sends against Mavera's message; {FAILED}"),
        },
        429 => match retry_after {
            Some(wait) => format!("Mavera asks to wait {}s; {REQUEUED}", wait.as_secs_f64().ceil()),
            None => REQUEUED.to_owned(),
        },
        300..=399 | 501 | 505 => {
            format!("check MAVERA_BASE_URL (it should end in /api/v1); {FAILED}")
        }
        _ if classify_status(status) == ErrorClass::Transient => REQUEUED.to_owned(),
        _ => FAILED.to_owned(),
    };

    let mut out = format!("Mavera {what} ({status}");
    if let Some(code) = &error.code {
        out.push(' ');
        out.push_str(code);
    }
    out.push_str(&format!(") on {endpoint}"));
    if let Some(param) = &error.param {
        out.push_str(&format!(", field `{param}`"));
    }
    match &error.message {
        Some(message) => out.push_str(&format!(": {message}")),
        None => out.push_str(": no error message in the body"),
    }
    out.push_str("; ");
    out.push_str(&advice);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(endpoint: Endpoint, status: u16) -> MaveraError {
        MaveraError::Api { endpoint, status, error: ApiErrorBody::default(), retry_after: None }
    }

    #[test]
    fn statuses_are_classified_per_the_reference() {
        use ErrorClass::*;
        let table = [
            (400, Permanent),
            (401, Permanent),
            (402, Permanent),
            (403, Permanent),
            (404, Permanent),
            (405, Permanent),
            (408, Transient),
            (409, Permanent),
            (410, Permanent),
            (429, Transient),
            (500, Transient),
            (501, Permanent),
            (502, Transient),
            (503, Transient),
            (504, Transient),
            (505, Permanent),
            (301, Permanent),
        ];
        for endpoint in [Endpoint::CreatePersona, Endpoint::MaveChat, Endpoint::Generate] {
            for (status, class) in table {
                assert_eq!(api(endpoint, status).class(), class, "{status} on {endpoint}");
            }
        }
    }

    fn error_422(endpoint: Endpoint, code: Option<&str>, param: Option<&str>) -> MaveraError {
        let error = ApiErrorBody {
            // Words that would mislead a reader of the text: only code and param count.
            message: Some("A persona with this name already exists.".into()),
            kind: Some("invalid_request_error".into()),
            code: code.map(str::to_owned),
            param: param.map(str::to_owned),
        };
        MaveraError::Api { endpoint, status: 422, error, retry_after: None }
    }

    #[test]
    fn only_a_422_naming_a_duplicate_is_already_done() {
        use Duplicate::*;
        let p = Endpoint::CreatePersona;
        for code in ["duplicate_name", "DUPLICATE", "persona_already_exists", "name_exists", "name_taken"] {
            let err = error_422(p, Some(code), None);
            assert_eq!((err.class(), err.duplicate()), (ErrorClass::AlreadyDone, Some(Stated)), "{code}");
        }
        let name_only = error_422(p, Some("invalid_field"), Some("name"));
        assert_eq!((name_only.class(), name_only.duplicate()), (ErrorClass::AlreadyDone, Some(NameRefused)));
        assert!(name_only.to_string().contains("looked up"), "{name_only}");
        for other in [error_422(p, Some("invalid_field"), Some("type")), error_422(p, None, None), api(p, 422)] {
            assert_eq!((other.class(), other.duplicate()), (ErrorClass::Permanent, None), "{other}");
            assert_eq!(other.failure_class(), FailureClass::Rejected);
            assert!(other.to_string().contains("will not be retried"), "{other}");
        }
        assert!(error_422(p, None, None).to_string().contains("already exists."), "Mavera's message is kept");
        for endpoint in [Endpoint::MaveChat, Endpoint::Generate, Endpoint::ListPersonas] {
            let err = error_422(endpoint, Some("duplicate_name"), Some("name"));
            assert_eq!((err.class(), err.duplicate()), (ErrorClass::Permanent, None), "{endpoint}");
        }
    }

    #[test]
    fn a_400_naming_workspace_id_says_where_to_set_it() {
        let missing = |endpoint, param: Option<&str>, message: &str| MaveraError::Api {
            endpoint,
            status: 400,
            error: ApiErrorBody {
                message: Some(message.into()),
                kind: Some("invalid_request_error".into()),
                code: Some("missing_field".into()),
                param: param.map(str::to_owned),
            },
            retry_after: None,
        };
        let by_param = missing(Endpoint::Generate, Some("workspace_id"), "Missing required field.");
        let by_message = missing(Endpoint::Generate, None, "Missing required field: 'workspace_id'.");
        for err in [&by_param, &by_message] {
            let text = err.to_string();
            assert!(err.names_workspace_id());
            assert!(text.contains("set `workspace_id` in the rule's [rule.generate]"), "{text}");
            assert!(text.contains("[cio_sync.campaign_strategy.generate]"), "{text}");
            assert_eq!((err.class(), err.failure_class()), (ErrorClass::Permanent, FailureClass::Rejected));
        }
        let mave = missing(Endpoint::MaveChat, Some("workspace_id"), "Missing required field.");
        assert!(mave.to_string().contains("[rule.research]"), "{mave}");
        let other = missing(Endpoint::Generate, Some("app_id"), "Missing required field: 'app_id'.");
        assert!(!other.names_workspace_id());
        assert!(other.to_string().contains("fix the trigger rule"), "{other}");
    }

    #[test]
    fn classification_ignores_the_message_text() {
        let error = ApiErrorBody {
            message: Some("Rate limit exceeded. Please retry after 30 seconds.".into()),
            kind: Some("rate_limit_error".into()),
            code: Some("rate_limit_exceeded".into()),
            param: None,
        };
        let err = MaveraError::Api { endpoint: Endpoint::Generate, status: 400, error, retry_after: None };
        assert_eq!(err.class(), ErrorClass::Permanent);
    }

    #[test]
    fn permanent_failures_are_classed_by_status_and_code_alone() {
        let with_code = |status, code: &str| MaveraError::Api {
            endpoint: Endpoint::CreatePersona,
            status,
            // A message that names another cause: the class must not read it.
            error: ApiErrorBody {
                message: Some("Invalid API key; credits exhausted; not found".into()),
                kind: None,
                code: Some(code.into()),
                param: None,
            },
            retry_after: None,
        };
        let table = [
            (with_code(401, "revoked_api_key"), FailureClass::Unauthorized),
            (with_code(401, "expired_api_key"), FailureClass::Unauthorized),
            (with_code(402, "credits_exhausted"), FailureClass::CreditsExhausted),
            (with_code(402, "budget_exceeded"), FailureClass::BudgetExceeded),
            (api(Endpoint::Generate, 402), FailureClass::CreditsExhausted),
            (with_code(403, "forbidden"), FailureClass::Forbidden),
            (with_code(404, "resource_not_found"), FailureClass::NotFound),
            (with_code(400, "invalid_persona"), FailureClass::Rejected),
            (api(Endpoint::MaveChat, 422), FailureClass::Rejected),
            (api(Endpoint::MaveChat, 409), FailureClass::Rejected),
            (api(Endpoint::Generate, 301), FailureClass::UnexpectedResponse),
            (api(Endpoint::Generate, 501), FailureClass::UnexpectedResponse),
        ];
        for (err, class) in table {
            assert_eq!(err.class(), ErrorClass::Permanent, "{err}");
            assert_eq!(err.failure_class(), class, "{err}");
        }
        let decode = MaveraError::Decode {
            endpoint: Endpoint::Generate,
            status: 200,
            expected: "generation",
            source: serde_json::from_str::<u8>("x").unwrap_err(),
        };
        assert_eq!(decode.failure_class(), FailureClass::UnexpectedResponse);
    }

    #[test]
    fn network_and_deadline_errors_are_transient() {
        let timeout = MaveraError::Timeout { endpoint: Endpoint::MaveChat, after: Duration::from_secs(120) };
        let no_time = MaveraError::NoTimeLeft {
            endpoint: Endpoint::MaveChat,
            remaining: Duration::from_secs(1),
            needed: Duration::from_secs(5),
        };
        let no_slot = MaveraError::NoMaveSlot { limit: 10, waited: Duration::from_secs(3) };
        for err in [timeout, no_time, no_slot] {
            assert_eq!(err.class(), ErrorClass::Transient, "{err}");
            assert_eq!(err.status(), None);
        }
    }

    #[test]
    fn credits_message_names_the_code_the_cause_and_the_remedy() {
        let error = ApiErrorBody {
            message: Some("Insufficient credits. Please upgrade your subscription.".into()),
            kind: Some("insufficient_credits".into()),
            code: Some("credits_exhausted".into()),
            param: None,
        };
        let err = MaveraError::Api { endpoint: Endpoint::MaveChat, status: 402, error, retry_after: None };
        let text = err.to_string();
        assert!(text.contains("(402 credits_exhausted)"), "{text}");
        assert!(text.contains("Insufficient credits"), "{text}");
        assert!(text.contains("top up"), "{text}");
        assert!(text.contains("will not be retried"), "{text}");
        assert_eq!(err.code(), Some("credits_exhausted"));
        assert_eq!(err.kind(), Some("insufficient_credits"));
        assert_eq!(err.status(), Some(402));
    }

    #[test]
    fn bad_request_message_names_the_field() {
        let error = ApiErrorBody {
            message: Some("Missing required field: message".into()),
            kind: Some("invalid_request_error".into()),
            code: Some("missing_field".into()),
            param: Some("message".into()),
        };
        let err = MaveraError::Api { endpoint: Endpoint::MaveChat, status: 400, error, retry_after: None };
        let text = err.to_string();
        assert!(text.contains("field `message`"), "{text}");
        assert_eq!(err.param(), Some("message"));
    }

    #[test]
    fn rate_limit_message_states_the_wait() {
        let err = MaveraError::Api {
            endpoint: Endpoint::Generate,
            status: 429,
            error: ApiErrorBody::default(),
            retry_after: Some(Duration::from_secs(30)),
        };
        assert!(err.to_string().contains("wait 30s"), "{err}");
        assert_eq!(err.retry_after(), Some(Duration::from_secs(30)));
    }
}
