//! How every retry loop in the crate waits: backon drives the loop (`Retryable`, with
//! `.when()` for what is worth another try and `.adjust()` for the wait), and this module
//! supplies the pieces the loops share.
//!
//! - Exponential ceilings come from backon with its own jitter off: backon's jitter adds up
//!   to one more delay on top (so never waits less than the ceiling) and, without backon's
//!   `std` feature, seeds every process alike. [`full_jitter`] draws below the ceiling
//!   instead, which spreads callers that failed together the furthest.
//! - A server's `Retry-After` ([`parse_retry_after`]: delay-seconds or an HTTP date) wins
//!   over the drawn wait.
//! - A retry happens only if its wait, plus the time a minimal attempt needs, still fits
//!   before the caller's deadline ([`next_wait`]); otherwise the last error goes back at once.
//!
//! Policies stay with their callers: `mavera::retry` (and Mavera's `X-RateLimit-Reset`),
//! the Customer.io client, and the worker's writes to its own event store ([`store_write`]).

use std::time::{Duration, SystemTime};

use backon::{Backoff, ExponentialBuilder};
use http::HeaderMap;
use http::header::RETRY_AFTER;
use tokio::time::Instant;

/// Doubling ceilings: `first`, `2 × first`, … capped at `max`, for at most `retries` retries.
pub fn doubling(first: Duration, max: Duration, retries: usize) -> ExponentialBuilder {
    ExponentialBuilder::new().with_min_delay(first).with_factor(2.0).with_max_delay(max).with_max_times(retries)
}

/// First wait before retrying a write to our own event store; it doubles on each retry.
const STORE_WRITE_FIRST_WAIT: Duration = Duration::from_millis(200);

/// Waits before retrying a write to our own event store: 200 ms, doubling, no jitter (one
/// writer per job, nothing to spread) and no deadline (the writes are short). Exact
/// doublings, where backon's `f32` factor would drift (400.000006 ms).
pub fn store_write(retries: u32) -> impl Backoff {
    (0..retries).map(|n| STORE_WRITE_FIRST_WAIT * 2u32.pow(n))
}

/// A uniformly random wait in `[0, ceiling)` (zero for a zero ceiling).
pub fn full_jitter(ceiling: Duration) -> Duration {
    ceiling.mul_f64(rand::random::<f64>())
}

/// The wait before the next attempt, or `None` to stop and return the last error.
///
/// `ceiling` is backon's next exponential delay (`None` once the retries are used up);
/// `server_wait` is what the server asked for, if it did; `min_attempt` is the least time
/// an attempt needs to be worth starting.
pub fn next_wait(
    server_wait: Option<Duration>,
    ceiling: Option<Duration>,
    min_attempt: Duration,
    now: Instant,
    deadline: Instant,
) -> Option<Duration> {
    let ceiling = ceiling?;
    let wait = server_wait.unwrap_or_else(|| full_jitter(ceiling));
    fits_before(now, wait + min_attempt, deadline).then_some(wait)
}

/// Whether `needed` from `now` ends no later than `deadline`.
pub fn fits_before(now: Instant, needed: Duration, deadline: Instant) -> bool {
    now.checked_add(needed).is_some_and(|ready| ready <= deadline)
}

/// The `Retry-After` header of an answer, read by [`parse_retry_after`].
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, now)
}

/// Reads a `Retry-After` value: delay-seconds, or an HTTP date (a date already past means
/// "now"). Anything else is ignored, so the caller's backoff applies.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if value.bytes().all(|b| b.is_ascii_digit()) {
        return delay_seconds(value);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The delay-seconds form alone (`Retry-After: 30`): whole non-negative seconds.
fn delay_seconds(value: &str) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    #[test]
    fn retry_after_takes_delay_seconds() {
        assert_eq!(delay_seconds("30"), Some(Duration::from_secs(30)));
        assert_eq!(delay_seconds(" 1 "), Some(Duration::from_secs(1)));
        assert_eq!(delay_seconds("0"), Some(Duration::ZERO));
        assert_eq!(delay_seconds("-5"), None);
        assert_eq!(delay_seconds("1.5"), None);
        assert_eq!(delay_seconds("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(delay_seconds(""), None);
    }

    #[test]
    fn retry_after_in_seconds() {
        let now = SystemTime::now();
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
    }

    #[test]
    fn retry_after_as_an_http_date() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:40 GMT", now), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:30 GMT", now), Some(Duration::ZERO), "past means now");
        let round_trip = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(parse_retry_after(&round_trip, now), Some(Duration::from_secs(90)));
    }

    #[test]
    fn unreadable_retry_after_falls_back_to_backoff() {
        let now = SystemTime::now();
        for bad in ["", "-1", "1.5", "soon", "99999999999999999999999", "Sun, 06 Nov 1994"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn full_jitter_stays_within_the_ceiling_and_varies() {
        let ceiling = Duration::from_millis(800);
        let draws: Vec<_> = (0..200).map(|_| full_jitter(ceiling)).collect();
        assert!(draws.iter().all(|d| *d <= ceiling));
        assert!(draws.iter().any(|d| *d < ceiling / 2) && draws.iter().any(|d| *d > ceiling / 2));
        assert_eq!(full_jitter(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn full_jitter_spreads_over_the_whole_range() {
        let ceiling = Duration::from_secs(1);
        let draws: Vec<Duration> = (0..500).map(|_| full_jitter(ceiling)).collect();
        assert!(draws.iter().all(|d| *d < ceiling));
        assert!(draws.iter().any(|d| *d < Duration::from_millis(250)), "never in the low quarter");
        assert!(draws.iter().any(|d| *d > Duration::from_millis(750)), "never in the high quarter");
    }

    #[test]
    fn store_writes_wait_200_ms_doubling() {
        let waits: Vec<_> = store_write(3).collect();
        let expected: Vec<_> = [200, 400, 800].into_iter().map(Duration::from_millis).collect();
        assert_eq!(waits, expected);
    }
}
