//! Mavera's retry policy: when to try a failed call again, and how long to wait first.
//!
//! backon drives the loop and supplies the exponential ceilings (0.5 s, 1 s, 2 s, 4 s; at
//! most 5 attempts). Each wait is then either the one Mavera asked for (`Retry-After`, or
//! `X-RateLimit-Reset` on a 429) or a full-jitter draw below the ceiling. A retry happens
//! only while the wait plus the endpoint's minimal attempt still fits before the deadline;
//! otherwise the last error goes back to the caller at once, which hands the job back to
//! the queue. The shared pieces are in [`crate::retry`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use backon::ExponentialBuilder;
use http::{HeaderMap, StatusCode};
use tokio::time::Instant;

use super::error::MaveraError;
use crate::retry;

/// Retries after the first attempt.
pub const MAX_RETRIES: usize = 4;
const FIRST_CEILING: Duration = Duration::from_millis(500);
const MAX_CEILING: Duration = Duration::from_secs(8);
/// `X-RateLimit-Reset` further ahead than this is taken as malformed: the window is 60 s.
const MAX_PLAUSIBLE_RESET: Duration = Duration::from_secs(10 * 60);

/// The exponential ceilings the jittered waits are drawn below.
pub fn backoff() -> ExponentialBuilder {
    retry::doubling(FIRST_CEILING, MAX_CEILING, MAX_RETRIES)
}

/// The wait before the next attempt, or `None` to stop and return `err`. `ceiling` is
/// backon's next exponential delay, `None` once the attempts are used up.
pub fn next_wait(err: &MaveraError, ceiling: Option<Duration>, now: Instant, deadline: Instant) -> Option<Duration> {
    retry::next_wait(err.retry_after(), ceiling, err.endpoint().min_attempt(), now, deadline)
}

/// The wait Mavera asks for in an error answer: `Retry-After` on any status (Mavera
/// documents seconds, `Retry-After: 30`; an HTTP date is read too); on a 429 without it,
/// the time until `X-RateLimit-Reset` (a Unix timestamp, sent on every answer, so it says
/// nothing about when a 5xx clears).
pub fn server_wait(status: StatusCode, headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if let Some(wait) = retry::retry_after(headers, now) {
        return Some(wait);
    }
    if status == StatusCode::TOO_MANY_REQUESTS {
        let reset = headers.get("x-ratelimit-reset")?.to_str().ok()?;
        return parse_reset(reset, now);
    }
    None
}

/// The time from `now` until the Unix timestamp `value`; `None` if it is past, unparsable,
/// or implausibly far ahead.
pub fn parse_reset(value: &str, now: SystemTime) -> Option<Duration> {
    let reset = UNIX_EPOCH.checked_add(Duration::from_secs(value.trim().parse::<u64>().ok()?))?;
    let wait = reset.duration_since(now).ok().filter(|w| !w.is_zero())?;
    (wait <= MAX_PLAUSIBLE_RESET).then_some(wait)
}

#[cfg(test)]
mod tests {
    use backon::BackoffBuilder;
    use http::HeaderValue;

    use super::*;
    use crate::mavera::endpoint::Endpoint;
    use crate::mavera::types::ApiErrorBody;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn at(unix: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(unix)
    }

    fn error(status: u16, retry_after: Option<Duration>) -> MaveraError {
        MaveraError::Api { endpoint: Endpoint::Generate, status, error: ApiErrorBody::default(), retry_after }
    }

    #[test]
    fn reset_is_the_time_until_the_timestamp() {
        assert_eq!(parse_reset("1706345678", at(1706345648)), Some(Duration::from_secs(30)));
        let mid_second = at(1706345648) + Duration::from_millis(400);
        assert_eq!(parse_reset("1706345650", mid_second), Some(Duration::from_millis(1600)));
    }

    #[test]
    fn reset_in_the_past_garbled_or_far_off_is_ignored() {
        assert_eq!(parse_reset("1706345600", at(1706345648)), None);
        assert_eq!(parse_reset("1706345648", at(1706345648)), None);
        assert_eq!(parse_reset("soon", at(1706345648)), None);
        // A millisecond timestamp read as seconds lands centuries ahead.
        assert_eq!(parse_reset("1706345678000", at(1706345648)), None);
        assert_eq!(parse_reset("18446744073709551615", at(1706345648)), None);
    }

    #[test]
    fn rate_limit_prefers_retry_after_then_reset() {
        let now = at(1706345648);
        let both = headers(&[("retry-after", "5"), ("x-ratelimit-reset", "1706345678")]);
        assert_eq!(server_wait(StatusCode::TOO_MANY_REQUESTS, &both, now), Some(Duration::from_secs(5)));
        let reset_only = headers(&[("x-ratelimit-reset", "1706345678")]);
        assert_eq!(server_wait(StatusCode::TOO_MANY_REQUESTS, &reset_only, now), Some(Duration::from_secs(30)));
        assert_eq!(server_wait(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), now), None);
    }

    #[test]
    fn server_errors_use_retry_after_but_not_the_rate_limit_reset() {
        let now = at(1706345648);
        let unavailable = headers(&[("retry-after", "2"), ("x-ratelimit-reset", "1706345678")]);
        assert_eq!(server_wait(StatusCode::SERVICE_UNAVAILABLE, &unavailable, now), Some(Duration::from_secs(2)));
        let reset_only = headers(&[("x-ratelimit-reset", "1706345678")]);
        assert_eq!(server_wait(StatusCode::INTERNAL_SERVER_ERROR, &reset_only, now), None);
    }

    #[test]
    fn retry_after_as_an_http_date_is_read_too() {
        let now = at(1706345648);
        let date = httpdate::fmt_http_date(now + Duration::from_secs(7));
        let dated = headers(&[("retry-after", &date), ("x-ratelimit-reset", "1706345678")]);
        assert_eq!(server_wait(StatusCode::TOO_MANY_REQUESTS, &dated, now), Some(Duration::from_secs(7)));
    }

    #[test]
    fn backoff_ceilings_double_and_stop_after_max_retries() {
        let ceilings: Vec<_> = backoff().build().collect();
        let expected: Vec<_> = [500, 1000, 2000, 4000].into_iter().map(Duration::from_millis).collect();
        assert_eq!(ceilings, expected);
    }

    #[test]
    fn the_server_wait_is_used_when_it_fits_before_the_deadline() {
        let now = Instant::now();
        let err = error(429, Some(Duration::from_secs(3)));
        let deadline = now + Duration::from_secs(5); // 3 s wait + 2 s minimal attempt
        assert_eq!(next_wait(&err, Some(FIRST_CEILING), now, deadline), Some(Duration::from_secs(3)));
    }

    #[test]
    fn no_retry_when_the_wait_and_a_minimal_attempt_overrun_the_deadline() {
        let now = Instant::now();
        let err = error(429, Some(Duration::from_secs(3)));
        let deadline = now + Duration::from_millis(4_999);
        assert_eq!(next_wait(&err, Some(FIRST_CEILING), now, deadline), None);
    }

    #[test]
    fn no_retry_once_the_attempts_are_used_up() {
        let now = Instant::now();
        let err = error(503, None);
        assert_eq!(next_wait(&err, None, now, now + Duration::from_secs(600)), None);
    }

    #[test]
    fn without_a_server_wait_the_jittered_backoff_is_used() {
        let now = Instant::now();
        let err = error(503, None);
        let ceiling = Duration::from_secs(4);
        let wait = next_wait(&err, Some(ceiling), now, now + Duration::from_secs(600)).unwrap();
        assert!(wait <= ceiling);
        // Even the shortest wait needs room for a minimal attempt.
        assert_eq!(next_wait(&err, Some(ceiling), now, now + Duration::from_secs(1)), None);
    }
}
