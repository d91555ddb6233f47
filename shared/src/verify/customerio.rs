//! Customer.io reporting webhooks: `X-CIO-Signature` is hex HMAC-SHA256 over
//! `v0:{X-CIO-Timestamp}:{raw body}`, keyed with the webhook signing key. The timestamp is
//! used exactly as received, and must lie within a tolerance of now (either direction).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::{SigningSecrets, VerifyError, decode_hex, header};

pub const SIGNATURE_HEADER: &str = "x-cio-signature";
pub const TIMESTAMP_HEADER: &str = "x-cio-timestamp";
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);
type HmacSha256 = Hmac<Sha256>;

#[derive(Clone)]
pub struct CustomerIoVerifier {
    keyed: Vec<HmacSha256>,
    tolerance: Duration,
}

impl std::fmt::Debug for CustomerIoVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustomerIoVerifier")
            .field("secrets", &format_args!("[REDACTED; {}]", self.keyed.len()))
            .field("tolerance", &self.tolerance)
            .finish()
    }
}

impl CustomerIoVerifier {
    pub fn new(secrets: &SigningSecrets, tolerance: Duration) -> Self {
        let keyed = secrets
            .iter_bytes()
            .map(|k| HmacSha256::new_from_slice(k).expect("HMAC accepts keys of any length"))
            .collect();
        CustomerIoVerifier { keyed, tolerance }
    }

    pub fn verify(&self, headers: &http::HeaderMap, body: &[u8], now: SystemTime) -> Result<(), VerifyError> {
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
        let age = now_secs - sent_at;
        if age.unsigned_abs() > self.tolerance.as_secs() {
            return Err(VerifyError::StaleTimestamp { age_secs: age, tolerance_secs: self.tolerance.as_secs() });
        }
        Ok(())
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
        CustomerIoVerifier::new(&SigningSecrets::single("CIO_WEBHOOK_SECRET", secrets).unwrap(), DEFAULT_TOLERANCE)
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
        assert_eq!(v.verify(&headers("1700000000", expected), br#"{"a":1}"#, at(1_700_000_000)), Ok(()));
    }

    #[test]
    fn accepts_a_fresh_signed_request() {
        let sig = sign("key", "1700000000", BODY);
        assert_eq!(verifier("key").verify(&headers("1700000000", &sig), BODY, at(1_700_000_100)), Ok(()));
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
    fn stale_and_future_timestamps_are_rejected() {
        let v = verifier("key");
        let sig = sign("key", "1700000000", BODY);
        assert_eq!(
            v.verify(&headers("1700000000", &sig), BODY, at(1_700_000_301)),
            Err(VerifyError::StaleTimestamp { age_secs: 301, tolerance_secs: 300 })
        );
        assert_eq!(
            v.verify(&headers("1700000000", &sig), BODY, at(1_699_999_699)),
            Err(VerifyError::StaleTimestamp { age_secs: -301, tolerance_secs: 300 })
        );
        assert_eq!(v.verify(&headers("1700000000", &sig), BODY, at(1_700_000_300)), Ok(()));
    }

    #[test]
    fn tolerance_is_configurable() {
        let v = CustomerIoVerifier::new(
            &SigningSecrets::single("CIO_WEBHOOK_SECRET", "key").unwrap(),
            Duration::from_secs(3600),
        );
        let sig = sign("key", "1700000000", BODY);
        assert_eq!(v.verify(&headers("1700000000", &sig), BODY, at(1_700_003_000)), Ok(()));
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
            DEFAULT_TOLERANCE,
        );
        for secret in ["new", "old"] {
            let sig = sign(secret, "1700000000", BODY);
            assert_eq!(v.verify(&headers("1700000000", &sig), BODY, at(1_700_000_000)), Ok(()), "{secret}");
        }
    }
}
