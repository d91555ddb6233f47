//! Customer.io's retry policy: when to try a failed call again, and how long to wait first.
//!
//! From Customer.io's own CLI (`internal/client/retry.go`), as the App API documents no
//! `Retry-After`: retry 429, 5xx and network failures only (a GET is safe to repeat); wait
//! what `Retry-After` says when present (seconds or an HTTP date), otherwise a full-jitter
//! draw under doubling ceilings, 500 ms base, 30 s cap, at most three retries; never wait
//! past the deadline. The shared pieces are in [`crate::retry`].

use std::time::Duration;

use backon::ExponentialBuilder;
use tokio::time::Instant;

use super::error::CioError;
use crate::retry;

pub(crate) const MAX_RETRIES: usize = 3;
const BASE_DELAY: Duration = Duration::from_millis(500);
const MAX_DELAY: Duration = Duration::from_secs(30);

/// The exponential ceilings (500 ms, 1 s, 2 s, … capped at 30 s) the waits are drawn below.
pub(crate) fn backoff() -> ExponentialBuilder {
    retry::doubling(BASE_DELAY, MAX_DELAY, MAX_RETRIES)
}

/// 429, 5xx and network failures. Timeouts at the deadline are not retried, as no time is left.
pub(crate) fn should_retry(error: &CioError) -> bool {
    matches!(error, CioError::RateLimited { .. } | CioError::Server { .. } | CioError::Transport { .. })
}

/// The wait before the next attempt, or `None` to stop and return `error`. `ceiling` is
/// backon's next exponential delay, `None` once the retries are used up.
pub(crate) fn next_wait(
    error: &CioError,
    ceiling: Option<Duration>,
    now: Instant,
    deadline: Instant,
) -> Option<Duration> {
    retry::next_wait(error.retry_after(), ceiling, Duration::ZERO, now, deadline)
}

#[cfg(test)]
mod tests {
    use backon::BackoffBuilder;

    use super::*;

    #[test]
    fn three_retries_under_doubling_ceilings() {
        let error = CioError::Server { endpoint: "GET /v1/campaigns", status: 503, retry_after: None };
        let (now, far) = (Instant::now(), Instant::now() + Duration::from_secs(600));
        for _ in 0..200 {
            let waits: Vec<Duration> =
                backoff().build().map_while(|ceiling| next_wait(&error, Some(ceiling), now, far)).collect();
            assert_eq!(waits.len(), MAX_RETRIES);
            for (wait, ceiling) in waits.iter().zip([500, 1000, 2000]) {
                assert!(*wait < Duration::from_millis(ceiling), "{wait:?} ≥ {ceiling} ms");
            }
        }
    }

    #[test]
    fn retry_after_wins_but_never_past_the_deadline() {
        let error = CioError::RateLimited { endpoint: "GET /v1/campaigns", retry_after: Some(Duration::from_secs(5)) };
        let now = Instant::now();
        let ceiling = Some(Duration::from_millis(500));
        assert_eq!(next_wait(&error, ceiling, now, now + Duration::from_secs(6)), Some(Duration::from_secs(5)));
        assert_eq!(next_wait(&error, ceiling, now, now + Duration::from_secs(2)), None);
        assert_eq!(next_wait(&error, None, now, now + Duration::from_secs(60)), None);
    }
}
