//! Customer.io reporting webhooks: `X-CIO-Signature` is hex HMAC-SHA256 over
//! `v0:{X-CIO-Timestamp}:{raw body}`, keyed with the webhook signing key. The timestamp is
//! used exactly as received.
//!
//! How old a signed request may be follows Customer.io's retries, not a replay window:
//! Customer.io does not say whether a retry is signed anew, and it retries a failing event
//! (holding back every later one) for up to 7 days. So a request signed up to 7 days ago is
//! accepted by default; a replay within that time finds its dedupe record (kept 8 days) and
//! is a duplicate. The maximum age can be set lower (stricter); never above 7 days, as a
//! replay must not outlive its record. A timestamp in the future is refused beyond a small
//! clock skew.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::{SigningSecrets, VerifyError, decode_hex, header};

pub const SIGNATURE_HEADER: &str = "x-cio-signature";
pub const TIMESTAMP_HEADER: &str = "x-cio-timestamp";
/// The default and the longest allowed maximum age: Customer.io's 7 days of retries.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// How far ahead of our clock a timestamp may be (or the maximum age, if that is smaller).
pub const MAX_FUTURE_SKEW: Duration = Duration::from_secs(300);
type HmacSha256 = Hmac<Sha256>;

#[derive(Clone)]
pub struct CustomerIoVerifier {
    keyed: Vec<HmacSha256>,
    max_age: Duration,
}

impl std::fmt::Debug for CustomerIoVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustomerIoVerifier")
            .field("secrets", &format_args!("[REDACTED; {}]", self.keyed.len()))
            .field("max_age", &self.max_age)
            .finish()
    }
}

impl CustomerIoVerifier {
    /// `max_age`: how old a signed request may be; at most [`DEFAULT_MAX_AGE`] (longer is
    /// cut to it, as a replay must not outlive its dedupe record).
    pub fn new(secrets: &SigningSecrets, max_age: Duration) -> Self {
        let keyed = secrets
            .iter_bytes()
            .map(|k| HmacSha256::new_from_slice(k).expect("HMAC accepts keys of any length"))
            .collect();
        CustomerIoVerifier { keyed, max_age: max_age.min(DEFAULT_MAX_AGE) }
    }

    /// Checks the signature, then the timestamp; `Ok` carries the request's age in seconds
    /// (negative: its timestamp is ahead of our clock), for the log and the age metric.
    pub fn verify(&self, headers: &http::HeaderMap, body: &[u8], now: SystemTime) -> Result<i64, VerifyError> {
        let timestamp = header(headers, TIMESTAMP_HEADER)?;
        let signature = decode_hex::<32>(header(headers, SIGNATURE_HEADER)?, SIGNATURE_HEADER)?;
        let sent_at: i64 = timestamp.parse().map_err(|_| VerifyError::MalformedTimestamp)?;

        let matched = self.keyed.iter().fold(false, |found, keyed| {
            let mut mac = keyed.clone();
            mac.update(b"v0:");
            mac.update(timestamp.as_bytes());
            mac.update(b":");
            mac.update(body);
            mac.verify_slice(&signature).is_ok() | found
        });
        if !matched {
            return Err(VerifyError::BadSignature);
        }
        // Checked after the MAC, so an unsigned request learns nothing about our clock.
        let now_secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
        let age = now_secs.saturating_sub(sent_at);
        let skew = MAX_FUTURE_SKEW.min(self.max_age).as_secs();
        if age > 0 && age.unsigned_abs() > self.max_age.as_secs() {
            return Err(VerifyError::StaleTimestamp { age_secs: age, max_age_secs: self.max_age.as_secs() });
        }
        if age < 0 && age.unsigned_abs() > skew {
            return Err(VerifyError::FutureTimestamp { ahead_secs: age.unsigned_abs(), skew_secs: skew });
        }
        Ok(age)
    }
}

/// The `X-CIO-Signature` Customer.io would send: for tests, samples and `relay send`.
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue};

    use super::*;

    const BODY: &[u8] = br#"{"metric":"unsubscribed","event_id":"01E4C4CT6YDC7Y5M7FE1GWWPQJ","object_type":"email","timestamp":1613063089,"data":{}}"#;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn verifier(secrets: &str) -> CustomerIoVerifier {
        CustomerIoVerifier::new(&SigningSecrets::single("CIO_WEBHOOK_SECRET", secrets).unwrap(), DEFAULT_MAX_AGE)
    }

    fn headers(ts: &str, sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("X-CIO-Timestamp", HeaderValue::from_str(ts).unwrap());
        h.insert("X-CIO-Signature", HeaderValue::from_str(sig).unwrap());
        h
    }

    #[test]
    fn known_answer() {
        // printf '%s' 'v0:1700000000:{"a":1}' | openssl dgst -sha256 -hmac whsec
        let expected = "14ec4091757826527e2076a6a6a53e817f526ff3b6df8a1163f8e38f51906e58";
        assert_eq!(sign("whsec", "1700000000", br#"{"a":1}"#), expected);
        let v = verifier("whsec");
        assert_eq!(v.verify(&headers("1700000000", expected), br#"{"a":1}"#, at(1_700_000_000)), Ok(0));
    }

    #[test]
    fn accepts_a_fresh_signed_request_and_reports_its_age() {
        let sig = sign("key", "1700000000", BODY);
        assert_eq!(verifier("key").verify(&headers("1700000000", &sig), BODY, at(1_700_000_100)), Ok(100));
    }

    #[test]
    fn the_body_alone_is_not_what_is_signed() {
        // Mavera's sample signs the body only; Customer.io does not.
        let body_only = {
            let mut mac = HmacSha256::new_from_slice(b"key").unwrap();
            mac.update(BODY);
            hex::encode(mac.finalize().into_bytes())
        };
        assert_eq!(
            verifier("key").verify(&headers("1700000000", &body_only), BODY, at(1_700_000_000)),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn tampering_with_body_or_timestamp_is_rejected() {
        let sig = sign("key", "1700000000", BODY);
        let v = verifier("key");
        assert_eq!(v.verify(&headers("1700000001", &sig), BODY, at(1_700_000_000)), Err(VerifyError::BadSignature));
        assert_eq!(v.verify(&headers("1700000000", &sig), b"{}", at(1_700_000_000)), Err(VerifyError::BadSignature));
    }

    #[test]
    fn a_retry_signed_days_ago_is_accepted_up_to_seven_days() {
        // Customer.io retries a failing event for up to 7 days and may not sign it anew.
        let v = verifier("key");
        let sig = sign("key", "1700000000", BODY);
        let six_days = 6 * 86_400;
        assert_eq!(v.verify(&headers("1700000000", &sig), BODY, at(1_700_000_000 + six_days)), Ok(six_days as i64));
        let week = 7 * 86_400;
        assert_eq!(v.verify(&headers("1700000000", &sig), BODY, at(1_700_000_000 + week)), Ok(week as i64));
        assert_eq!(
            v.verify(&headers("1700000000", &sig), BODY, at(1_700_000_001 + week)),
            Err(VerifyError::StaleTimestamp { age_secs: week as i64 + 1, max_age_secs: week })
        );
    }

    #[test]
    fn a_timestamp_in_the_future_is_refused_beyond_a_small_skew() {
        let v = verifier("key");
        let sig = sign("key", "1700000000", BODY);
        assert_eq!(v.verify(&headers("1700000000", &sig), BODY, at(1_699_999_700)), Ok(-300));
        assert_eq!(
            v.verify(&headers("1700000000", &sig), BODY, at(1_699_999_699)),
            Err(VerifyError::FutureTimestamp { ahead_secs: 301, skew_secs: 300 })
        );
    }

    #[test]
    fn a_stricter_maximum_age_can_be_set_and_a_longer_one_is_cut_to_seven_days() {
        let strict = CustomerIoVerifier::new(&SigningSecrets::single("C", "key").unwrap(), Duration::from_secs(60));
        let sig = sign("key", "1700000000", BODY);
        assert_eq!(strict.verify(&headers("1700000000", &sig), BODY, at(1_700_000_060)), Ok(60));
        assert_eq!(
            strict.verify(&headers("1700000000", &sig), BODY, at(1_700_000_061)),
            Err(VerifyError::StaleTimestamp { age_secs: 61, max_age_secs: 60 })
        );
        assert!(matches!(
            strict.verify(&headers("1700000000", &sig), BODY, at(1_699_999_939)),
            Err(VerifyError::FutureTimestamp { skew_secs: 60, .. })
        ));
        let lax =
            CustomerIoVerifier::new(&SigningSecrets::single("C", "key").unwrap(), Duration::from_secs(30 * 86_400));
        assert!(lax.verify(&headers("1700000000", &sig), BODY, at(1_700_000_000 + 8 * 86_400)).is_err());
    }

    #[test]
    fn missing_headers_and_malformed_values() {
        let v = verifier("key");
        let sig = sign("key", "1700000000", BODY);
        let mut only_sig = HeaderMap::new();
        only_sig.insert("X-CIO-Signature", HeaderValue::from_str(&sig).unwrap());
        assert_eq!(v.verify(&only_sig, BODY, at(0)), Err(VerifyError::MissingHeader("x-cio-timestamp")));
        let mut only_ts = HeaderMap::new();
        only_ts.insert("X-CIO-Timestamp", HeaderValue::from_static("1700000000"));
        assert_eq!(v.verify(&only_ts, BODY, at(0)), Err(VerifyError::MissingHeader("x-cio-signature")));
        assert!(matches!(
            v.verify(&headers("1700000000", "abc"), BODY, at(0)),
            Err(VerifyError::MalformedSignature { expected_len: 64, .. })
        ));
        let sig = sign("key", "yesterday", BODY);
        assert_eq!(v.verify(&headers("yesterday", &sig), BODY, at(0)), Err(VerifyError::MalformedTimestamp));
    }

    #[test]
    fn either_secret_of_a_rotation_is_accepted() {
        let v = CustomerIoVerifier::new(
            &SigningSecrets::new("C", Some("new"), "C_PREVIOUS", Some("old")).unwrap(),
            DEFAULT_MAX_AGE,
        );
        for secret in ["new", "old"] {
            let sig = sign(secret, "1700000000", BODY);
            assert_eq!(v.verify(&headers("1700000000", &sig), BODY, at(1_700_000_000)), Ok(0), "{secret}");
        }
    }
}
