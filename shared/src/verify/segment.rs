//! Segment `X-Signature`: lowercase hex HMAC-SHA1 of the raw body, keyed with the shared
//! secret. Segment Actions signs only element 0 of a batch; that is accepted only when
//! configured (`SEGMENT_ALLOW_FIRST_EVENT_SIGNATURE=true`), because events 2..n are then
//! unauthenticated.

use std::time::{Duration, SystemTime};

use hmac::{Hmac, KeyInit, Mac};
use serde_json::value::RawValue;
use sha1::Sha1;

use super::{SigningSecrets, VerifyError, decode_hex, header};

pub const SIGNATURE_HEADER: &str = "x-signature";
type HmacSha1 = Hmac<Sha1>;

/// What an accepted signature vouches for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureCoverage {
    WholeBody,
    /// Only element 0 of a JSON array was signed (Segment Actions batching).
    FirstEventOnly,
}

/// Built once at start-up from the configured secrets.
#[derive(Clone)]
pub struct SegmentVerifier {
    /// One keyed MAC per secret, cloned per request so the key schedule runs once.
    keyed: Vec<HmacSha1>,
    allow_first_event: bool,
}

impl std::fmt::Debug for SegmentVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentVerifier")
            .field("secrets", &format_args!("[REDACTED; {}]", self.keyed.len()))
            .field("allow_first_event", &self.allow_first_event)
            .finish()
    }
}

impl SegmentVerifier {
    pub fn new(secrets: &SigningSecrets, allow_first_event: bool) -> Self {
        let keyed = secrets
            .iter_bytes()
            .map(|k| HmacSha1::new_from_slice(k).expect("HMAC accepts keys of any length"))
            .collect();
        SegmentVerifier { keyed, allow_first_event }
    }

    pub fn verify(&self, headers: &http::HeaderMap, body: &[u8]) -> Result<SignatureCoverage, VerifyError> {
        let signature = decode_hex::<20>(header(headers, SIGNATURE_HEADER)?, SIGNATURE_HEADER)?;
        if self.matches(body, &signature) {
            return Ok(SignatureCoverage::WholeBody);
        }
        // Not the whole body: perhaps an Actions batch signed on its first element.
        if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[')
            && let Ok(elements) = serde_json::from_slice::<Vec<&RawValue>>(body)
            && let Some(first) = elements.first()
            && self.matches(first.get().as_bytes(), &signature)
        {
            return if self.allow_first_event {
                Ok(SignatureCoverage::FirstEventOnly)
            } else {
                Err(VerifyError::FirstEventOnly { events: elements.len() })
            };
        }
        Err(VerifyError::BadSignature)
    }

    fn matches(&self, message: &[u8], signature: &[u8; 20]) -> bool {
        // Check every secret, so timing does not reveal which one matched.
        self.keyed.iter().fold(false, |found, keyed| {
            let mut mac = keyed.clone();
            mac.update(message);
            mac.verify_slice(signature).is_ok() | found
        })
    }
}

/// How old a signed Segment event may be. Segment signs no timestamp, so a captured request
/// verifies forever; what stops its replay is the event's dedupe record, which lives 8 days
/// (`store::RECORD_TTL`) from its first delivery. An event dated further back than this may
/// have outlived its record, so it is refused. Segment itself retries for 4 hours.
pub const MAX_EVENT_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Refuses an event dated longer ago than [`MAX_EVENT_AGE`]. An undated event passes: there
/// is nothing to judge it by (the batch path asks for a date where it matters).
pub fn check_event_age(sent_at: Option<SystemTime>, now: SystemTime) -> Result<(), VerifyError> {
    let Some(age) = sent_at.and_then(|t| now.duration_since(t).ok()) else { return Ok(()) };
    if age > MAX_EVENT_AGE {
        return Err(VerifyError::StaleEvent { age_secs: age.as_secs(), max_age_secs: MAX_EVENT_AGE.as_secs() });
    }
    Ok(())
}

/// The `X-Signature` Segment would send for `body`: for tests, samples and `relay send`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = HmacSha1::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue};

    use super::*;

    fn verifier(secrets: &str, allow_first: bool) -> SegmentVerifier {
        SegmentVerifier::new(&SigningSecrets::single("SEGMENT_SHARED_SECRET", secrets).unwrap(), allow_first)
    }

    fn headers(sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("X-Signature", HeaderValue::from_str(sig).unwrap());
        h
    }

    #[test]
    fn known_answer_vector_from_the_reference() {
        // printf '%s' '{"cool":true}' | openssl dgst -sha1 -hmac abc123
        assert_eq!(sign("abc123", br#"{"cool":true}"#), "5099cab379b3be52908387457007040cc934ef86");
        let v = verifier("abc123", false);
        let h = headers("5099cab379b3be52908387457007040cc934ef86");
        assert_eq!(v.verify(&h, br#"{"cool":true}"#), Ok(SignatureCoverage::WholeBody));
    }

    #[test]
    fn uppercase_hex_is_accepted() {
        let v = verifier("abc123", false);
        let h = headers("5099CAB379B3BE52908387457007040CC934EF86");
        assert_eq!(v.verify(&h, br#"{"cool":true}"#), Ok(SignatureCoverage::WholeBody));
    }

    #[test]
    fn tampered_body_or_signature_is_rejected() {
        let v = verifier("abc123", false);
        let good = sign("abc123", br#"{"cool":true}"#);
        assert_eq!(v.verify(&headers(&good), br#"{"cool":false}"#), Err(VerifyError::BadSignature));
        let mut flipped = good.into_bytes();
        flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert_eq!(v.verify(&headers(&flipped), br#"{"cool":true}"#), Err(VerifyError::BadSignature));
    }

    #[test]
    fn wrong_secret_is_rejected() {
        let v = verifier("abc123", false);
        let sig = sign("other", br#"{"cool":true}"#);
        assert_eq!(v.verify(&headers(&sig), br#"{"cool":true}"#), Err(VerifyError::BadSignature));
    }

    #[test]
    fn missing_or_malformed_header() {
        let v = verifier("abc123", false);
        assert_eq!(v.verify(&HeaderMap::new(), b"{}"), Err(VerifyError::MissingHeader("x-signature")));
        for bad in ["zz99cab379b3be52908387457007040cc934ef86", "5099", "sha1=5099cab379b3be52908387457007040cc934ef86"]
        {
            assert!(matches!(v.verify(&headers(bad), b"{}"), Err(VerifyError::MalformedSignature { .. })), "{bad}");
        }
    }

    #[test]
    fn either_secret_of_a_rotation_is_accepted() {
        let v = SegmentVerifier::new(
            &SigningSecrets::new("S", Some("new-secret"), "S_PREVIOUS", Some("old-secret")).unwrap(),
            false,
        );
        for secret in ["new-secret", "old-secret"] {
            let sig = sign(secret, b"{}");
            assert_eq!(v.verify(&headers(&sig), b"{}"), Ok(SignatureCoverage::WholeBody), "{secret}");
        }
    }

    #[test]
    fn batch_signed_on_element_zero_is_refused_by_default_with_a_hint() {
        let first = br#"{"type":"track","messageId":"a"}"#;
        let body = br#"[{"type":"track","messageId":"a"},{"type":"track","messageId":"b"}]"#;
        let sig = sign("abc123", first);
        let err = verifier("abc123", false).verify(&headers(&sig), body).unwrap_err();
        assert_eq!(err, VerifyError::FirstEventOnly { events: 2 });
        assert!(err.to_string().contains("SEGMENT_ALLOW_FIRST_EVENT_SIGNATURE=true"));
    }

    #[test]
    fn batch_signed_on_element_zero_is_accepted_when_allowed() {
        let body = br#"[{"type":"track","messageId":"a"},{"type":"track","messageId":"b"}]"#;
        let sig = sign("abc123", br#"{"type":"track","messageId":"a"}"#);
        assert_eq!(verifier("abc123", true).verify(&headers(&sig), body), Ok(SignatureCoverage::FirstEventOnly));
    }

    #[test]
    fn batch_signed_over_the_whole_body_is_accepted() {
        let body = br#"[{"type":"track","messageId":"a"},{"type":"track","messageId":"b"}]"#;
        let sig = sign("abc123", body);
        assert_eq!(verifier("abc123", false).verify(&headers(&sig), body), Ok(SignatureCoverage::WholeBody));
    }

    #[test]
    fn events_older_than_the_dedupe_horizon_are_refused() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(check_event_age(None, now), Ok(()));
        assert_eq!(check_event_age(Some(now - MAX_EVENT_AGE), now), Ok(()));
        assert_eq!(check_event_age(Some(now + Duration::from_secs(60)), now), Ok(()));
        assert_eq!(
            check_event_age(Some(now - MAX_EVENT_AGE - Duration::from_secs(1)), now),
            Err(VerifyError::StaleEvent { age_secs: 7 * 86_400 + 1, max_age_secs: 7 * 86_400 })
        );
        assert!(
            MAX_EVENT_AGE < crate::store::RECORD_TTL,
            "a replay must find its record while its event is still accepted"
        );
    }

    #[test]
    fn batch_with_a_signature_over_another_element_is_rejected() {
        let body = br#"[{"messageId":"a"},{"messageId":"b"}]"#;
        let sig = sign("abc123", br#"{"messageId":"b"}"#);
        assert_eq!(verifier("abc123", true).verify(&headers(&sig), body), Err(VerifyError::BadSignature));
    }
}
