//! Webhook signature verification, one module per sender. Each works on the raw request
//! bytes, before any parsing, and compares decoded MACs in constant time.

mod allow_list;
mod by_source;
pub mod customerio;
mod secrets;
pub mod segment;

pub use allow_list::{IpAllowList, canonical_ip};
pub use by_source::{Refused, Verifiers};
pub use customerio::CustomerIoVerifier;
pub use secrets::{MIN_SECRET_CHARS, SecretsError, SigningSecrets};
pub use segment::{SegmentVerifier, SignatureCoverage};

use crate::telemetry::RejectionKind;

/// Why a request's signature was not accepted. Every variant answers 401.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum VerifyError {
    #[error("missing `{0}` header: the request is not signed")]
    MissingHeader(&'static str),
    #[error("the `{header}` header is not a {expected_len}-character hex string")]
    MalformedSignature { header: &'static str, expected_len: usize },
    #[error("the signature does not match the body for any configured secret")]
    BadSignature,
    #[error(
        "the signature covers only the first event of this {events}-event batch (Segment Actions signs element 0 only); \
         set SEGMENT_ALLOW_FIRST_EVENT_SIGNATURE=true to accept such batches, knowing events 2..n are then unauthenticated, \
         or turn batching off in the Segment mapping"
    )]
    FirstEventOnly { events: usize },
    #[error("the `X-CIO-Timestamp` header is not a unix timestamp in seconds")]
    MalformedTimestamp,
    #[error(
        "the request was signed {age_secs} s ago (`X-CIO-Timestamp`), longer ago than the {max_age_secs} s accepted (CIO_TIMESTAMP_TOLERANCE_SECS)"
    )]
    StaleTimestamp { age_secs: i64, max_age_secs: u64 },
    #[error("the `X-CIO-Timestamp` is {ahead_secs} s ahead of our clock; at most {skew_secs} s is accepted")]
    FutureTimestamp { ahead_secs: u64, skew_secs: u64 },
    #[error(
        "the event is dated {age_secs} s ago (`receivedAt`, else `sentAt`, else `timestamp`), older than the {max_age_secs} s within which a replay is still recognised; Segment retries for 4 hours, so this is a replay or a very late delivery"
    )]
    StaleEvent { age_secs: u64, max_age_secs: u64 },
    #[error(
        "a batch signed on its first event only must date that event (`receivedAt`, `sentAt` or `timestamp`), as the signature itself carries no time"
    )]
    UndatedFirstEvent,
    #[error(
        "this batch's signed first event ({first_event}) was accepted before: a batch signed on its first event only is accepted once, since its other events are unauthenticated"
    )]
    BatchReplayed { first_event: String },
}

impl VerifyError {
    /// A stable machine-readable code for response bodies and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::MissingHeader(_) => "missing_signature",
            VerifyError::MalformedSignature { .. } => "malformed_signature",
            VerifyError::BadSignature => "bad_signature",
            VerifyError::FirstEventOnly { .. } => "batch_signed_first_event_only",
            VerifyError::MalformedTimestamp => "malformed_timestamp",
            VerifyError::StaleTimestamp { .. } => "stale_timestamp",
            VerifyError::FutureTimestamp { .. } => "future_timestamp",
            VerifyError::StaleEvent { .. } => "stale_event",
            VerifyError::UndatedFirstEvent => "undated_first_event",
            VerifyError::BatchReplayed { .. } => "batch_replayed",
        }
    }

    /// Who has to act on it (the `Kind` the alarms watch).
    pub fn kind(&self) -> RejectionKind {
        match self {
            VerifyError::MissingHeader(_) => RejectionKind::NotAllowed,
            VerifyError::MalformedSignature { .. }
            | VerifyError::BadSignature
            | VerifyError::FirstEventOnly { .. }
            | VerifyError::MalformedTimestamp
            | VerifyError::StaleTimestamp { .. }
            | VerifyError::FutureTimestamp { .. } => RejectionKind::Signature,
            VerifyError::StaleEvent { .. } | VerifyError::UndatedFirstEvent | VerifyError::BatchReplayed { .. } => {
                RejectionKind::Replay
            }
        }
    }
}

/// Refuses a request to `source` without the headers its signature needs, before its
/// body is read or parsed: unsigned traffic costs as little as possible.
pub fn require_signature_headers(source: crate::domain::Source, headers: &http::HeaderMap) -> Result<(), VerifyError> {
    use crate::domain::Source;
    match source {
        Source::Segment => header(headers, segment::SIGNATURE_HEADER).map(|_| ()),
        Source::CustomerIo => {
            header(headers, customerio::SIGNATURE_HEADER)?;
            header(headers, customerio::TIMESTAMP_HEADER).map(|_| ())
        }
    }
}

/// Reads one header as text, treating a missing or non-UTF-8 value the same way.
fn header<'a>(headers: &'a http::HeaderMap, name: &'static str) -> Result<&'a str, VerifyError> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or(VerifyError::MissingHeader(name))
}

/// Decodes a hex signature of exactly `N` bytes (either case).
fn decode_hex<const N: usize>(value: &str, header: &'static str) -> Result<[u8; N], VerifyError> {
    let mut out = [0u8; N];
    if value.len() != N * 2 {
        return Err(VerifyError::MalformedSignature { header, expected_len: N * 2 });
    }
    hex::decode_to_slice(value, &mut out)
        .map_err(|_| VerifyError::MalformedSignature { header, expected_len: N * 2 })?;
    Ok(out)
}
