//! How long a Lambda invocation may run, for every function whose handler needs it (the
//! worker, cio-sync): the runtime's deadline, or the function's configured timeout when the
//! runtime gives none that is usable.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

/// Turns the invocation's deadline (wall clock) into a monotonic instant. A deadline already
/// past when the invocation arrives is no deadline at all: `cargo lambda watch` sends the
/// constant 600000 ms (ten minutes after 1970) with every invocation. Then the function's
/// configured timeout (`FUNCTION_TIMEOUT_SECS`, which the template sets) stands in, with one
/// warning per process, instead of every job failing for want of time.
pub fn deadline_from(wall: SystemTime, function_timeout: Duration) -> Instant {
    match wall.duration_since(SystemTime::now()) {
        Ok(left) if !left.is_zero() => Instant::now() + left,
        _ => {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                tracing::warn!(
                    runtime_deadline_ms = wall.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
                    "the runtime gave a deadline already past (cargo lambda watch does); using the function's timeout, FUNCTION_TIMEOUT_SECS = {} s, instead",
                    function_timeout.as_secs()
                );
            });
            Instant::now() + function_timeout
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_already_past_means_the_configured_timeout() {
        let timeout = Duration::from_secs(60);
        // What cargo lambda watch sends: 600000 ms after the epoch.
        let watch = SystemTime::UNIX_EPOCH + Duration::from_millis(600_000);
        let left = deadline_from(watch, timeout).saturating_duration_since(Instant::now());
        assert!(left > Duration::from_secs(59) && left <= timeout, "{left:?}");
        // A real deadline is kept.
        let real = SystemTime::now() + Duration::from_secs(10);
        let left = deadline_from(real, timeout).saturating_duration_since(Instant::now());
        assert!(left > Duration::from_secs(9) && left <= Duration::from_secs(10), "{left:?}");
    }
}
