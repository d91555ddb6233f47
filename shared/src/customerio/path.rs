//! Putting people's identifiers into URL paths.
//!
//! Customer.io wants emails percent-encoded in the path and the `+` of an E.164 phone number
//! sent as `%2B` ("unencoded special characters can return empty results without an error").
//! Everything except RFC 3986's unreserved characters is encoded: `+`, `@` and `/` included.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// `value` as one path segment: `jane+x@example.com` → `jane%2Bx%40example.com`.
pub fn encode_segment(value: &str) -> String {
    utf8_percent_encode(value, PATH_SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_and_phones_are_encoded() {
        assert_eq!(encode_segment("jane+notifications@example.com"), "jane%2Bnotifications%40example.com");
        assert_eq!(encode_segment("+15551234567"), "%2B15551234567");
    }

    #[test]
    fn nothing_can_escape_its_segment() {
        assert_eq!(encode_segment("../v1/x?y=1#z"), "..%2Fv1%2Fx%3Fy%3D1%23z");
        assert_eq!(encode_segment("a b%"), "a%20b%25");
        assert_eq!(encode_segment("zoë"), "zo%C3%AB");
    }

    #[test]
    fn plain_ids_stay_readable() {
        assert_eq!(encode_segment("user_42-a.b~c"), "user_42-a.b~c");
    }
}
