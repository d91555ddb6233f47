//! What kind of refusal a webhook answer is: the `Kind` dimension of the `rejected` metric,
//! which the alarms in `template.yaml` watch. A reason (the error code) says exactly what was
//! wrong; its kind says who has to act, so a new reason never slips past every alarm.

/// Each webhook refusal falls in one kind. Every reason ingest can answer with has one (its
/// error type's `kind()`), and each paging kind names the alarm that watches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RejectionKind {
    /// Signed wrongly, or signed at a time we cannot accept: a sender with the wrong key or
    /// clock (Customer.io stalls its whole stream on one).
    Signature,
    /// A signed event we refuse as a possible replay: older than the dedupe horizon, a
    /// first-event-signed batch seen before, or one that gives no date to check.
    Replay,
    /// Unreadable or out of bounds: bad JSON, wrong shape, too large, wrong content type.
    Malformed,
    /// Not from a sender we take: unsigned, from an address off the allow-list, an unknown
    /// or unused source. Some are noise from the open internet.
    NotAllowed,
    /// The normal `503 in_flight`: an earlier delivery of the event holds its claim; the
    /// sender retries. Never pages.
    Busy,
    /// The relay's own configuration is incomplete (a source without its signing secret):
    /// every request of that source is refused until someone sets it.
    Misconfigured,
    /// Ingest could not reach the table or the queue: a server error of ours.
    Unavailable,
}

impl RejectionKind {
    pub const ALL: [RejectionKind; 7] = [
        RejectionKind::Signature,
        RejectionKind::Replay,
        RejectionKind::Malformed,
        RejectionKind::NotAllowed,
        RejectionKind::Busy,
        RejectionKind::Misconfigured,
        RejectionKind::Unavailable,
    ];

    /// The `Kind` dimension's value.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectionKind::Signature => "signature",
            RejectionKind::Replay => "replay",
            RejectionKind::Malformed => "malformed",
            RejectionKind::NotAllowed => "not_allowed",
            RejectionKind::Busy => "busy",
            RejectionKind::Misconfigured => "misconfigured",
            RejectionKind::Unavailable => "unavailable",
        }
    }

    /// The alarm in `template.yaml` that watches this kind, or `None` for the one kind that is
    /// part of normal operation.
    pub fn alarm(self) -> Option<&'static str> {
        match self {
            RejectionKind::Signature | RejectionKind::Replay => Some("WebhookSignaturesAlarm"),
            RejectionKind::Malformed | RejectionKind::NotAllowed => Some("WebhooksRejectedAlarm"),
            RejectionKind::Misconfigured => Some("WebhookSourceDisabledAlarm"),
            RejectionKind::Unavailable => Some("IngestServerErrorsAlarm"),
            RejectionKind::Busy => None,
        }
    }
}

impl std::fmt::Display for RejectionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
