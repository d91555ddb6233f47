//! Why a job failed for good, in the few categories an operator acts on differently. It is
//! the `Class` dimension of the worker's `failed` metric, which the stack's alarms watch:
//! a revoked key or exhausted credits fail every job until someone acts, and nothing else
//! would tell them (permanent failures never reach the dead-letter queue).

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureClass {
    /// Mavera refused the API key (401: missing, invalid, revoked or expired).
    Unauthorized,
    /// The key may not use what the request names (403).
    Forbidden,
    /// No credits left (402 `credits_exhausted`, or a 402 without a known code).
    CreditsExhausted,
    /// A workspace or project budget is reached (402 `budget_exceeded`).
    BudgetExceeded,
    /// Mavera rejected the request itself (400, 422 other than a duplicate persona, other
    /// 4xx): the rule renders something Mavera does not accept.
    Rejected,
    /// A resource the request names does not exist (404).
    NotFound,
    /// Mavera answered in a way the relay cannot use (a redirect, 501/505, a body that is
    /// not the documented shape).
    UnexpectedResponse,
    /// The relay could not build the request: a bug in mavera-relay.
    Internal,
}

impl FailureClass {
    pub const ALL: [FailureClass; 8] = [
        FailureClass::Unauthorized,
        FailureClass::Forbidden,
        FailureClass::CreditsExhausted,
        FailureClass::BudgetExceeded,
        FailureClass::Rejected,
        FailureClass::NotFound,
        FailureClass::UnexpectedResponse,
        FailureClass::Internal,
    ];

    /// The metric dimension's value (stable: alarms and the dashboard name these).
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Unauthorized => "unauthorized",
            FailureClass::Forbidden => "forbidden",
            FailureClass::CreditsExhausted => "credits_exhausted",
            FailureClass::BudgetExceeded => "budget_exceeded",
            FailureClass::Rejected => "rejected",
            FailureClass::NotFound => "not_found",
            FailureClass::UnexpectedResponse => "unexpected_response",
            FailureClass::Internal => "internal",
        }
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
