//! When to try a failed call again, and how long to wait first.
//!
//! Policy (from Customer.io's own CLI, `internal/client/retry.go`, as the App API documents no
//! `Retry-After`): retry 429 and 5xx only; wait what `Retry-After` says when present (seconds or
//! an HTTP date), otherwise exponential backoff with full jitter, 500 ms base, 30 s cap, at most
//! three retries.

use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder, ExponentialBuilder};

pub(crate) const MAX_RETRIES: usize = 3;
const BASE_DELAY: Duration = Duration::from_millis(500);
const MAX_DELAY: Duration = Duration::from_secs(30);

/// The waits before retries 1, 2 and 3, then `None`.
///
/// backon yields the exponential ceilings (500 ms, 1 s, 2 s, … capped at 30 s) and counts the
/// retries. Its own jitter adds up to one more ceiling on top, so each ceiling is instead drawn
/// from uniformly ("full jitter"), which spreads clients that failed together the furthest.
pub(crate) fn backoff() -> impl Iterator<Item = Duration> + Send {
    ExponentialBuilder::new()
        .with_min_delay(BASE_DELAY)
        .with_max_delay(MAX_DELAY)
        .with_factor(2.0)
        .with_max_times(MAX_RETRIES)
        .build()
        .map(full_jitter)
}

/// A uniformly random wait in `[0, ceiling)`.
fn full_jitter(ceiling: Duration) -> Duration {
    ceiling.mul_f64(rand::random::<f64>())
}

/// Reads a `Retry-After` value: whole seconds, or an HTTP date (a date already past means
/// "now"). Anything else is ignored so the backoff applies.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse::<u64>().ok().map(Duration::from_secs);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

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
    fn three_retries_under_doubling_ceilings() {
        for _ in 0..200 {
            let waits: Vec<Duration> = backoff().collect();
            assert_eq!(waits.len(), MAX_RETRIES);
            for (wait, ceiling) in waits.iter().zip([500, 1000, 2000]) {
                assert!(*wait < Duration::from_millis(ceiling), "{wait:?} ≥ {ceiling} ms");
            }
        }
    }

    #[test]
    fn full_jitter_spreads_over_the_whole_range() {
        let ceiling = Duration::from_secs(1);
        let draws: Vec<Duration> = (0..500).map(|_| full_jitter(ceiling)).collect();
        assert!(draws.iter().all(|d| *d < ceiling));
        assert!(draws.iter().any(|d| *d < Duration::from_millis(250)), "never in the low quarter");
        assert!(draws.iter().any(|d| *d > Duration::from_millis(750)), "never in the high quarter");
    }
}
