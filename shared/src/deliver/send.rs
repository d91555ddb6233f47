//! The port every destination sits behind, how a send can fail, and the one retry loop all
//! of them go through (the crate's retry idiom, `shared::retry`).
//!
//! A port sends one rendered request once ([`Port::send`]); [`send_with_retries`] decides
//! whether and when to try again: a transient failure ([`SendError::Retry`]: 429, 5xx, a
//! connection that failed or timed out) is retried after the server's `Retry-After`, or after
//! a jittered doubling wait (0.5 s, 1 s, 2 s … 8 s, at most six retries), as long as the wait
//! and a minimal attempt still fit before the deadline. What is still failing then goes back
//! to the caller, which leaves the destination `pending` for the queue's next delivery.
//! Permanent failures and uncertain ones are never retried.

use std::time::Duration;

use async_trait::async_trait;
use backon::Retryable;
use tokio::time::Instant;

use crate::retry;

/// How one send failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Not taken, and worth another try: a 429, a 5xx, a connection that failed, or a
    /// timeout where a repeat is harmless (the receiver drops it by id, or it is a PUT of
    /// the same values). `wait` is what the server asked for.
    Retry { reason: String, wait: Option<Duration> },
    /// Refused for good (a 4xx, a dead URL, a request that can never be valid): recorded
    /// `failed`, never retried.
    Permanent { reason: String },
    /// It may have arrived (it timed out or broke after the request went out) and the
    /// destination has no way to drop a repeat: recorded `failed`, never sent again, so the
    /// channel or the campaign never sees it twice.
    Uncertain { reason: String },
}

impl SendError {
    pub fn reason(&self) -> &str {
        match self {
            SendError::Retry { reason, .. } | SendError::Permanent { reason } | SendError::Uncertain { reason } => {
                reason
            }
        }
    }
}

/// A destination's port: sends one request of type `R` once, by `deadline`.
#[async_trait]
pub trait Port<R: ?Sized + Sync>: Send + Sync {
    async fn send(&self, request: &R, deadline: Instant) -> Result<(), SendError>;
}

/// Retries after the first attempt.
pub const MAX_RETRIES: usize = 6;
const FIRST_CEILING: Duration = Duration::from_millis(500);
const MAX_CEILING: Duration = Duration::from_secs(8);
/// Less time than this left before the deadline is not worth an attempt.
pub const MIN_ATTEMPT: Duration = Duration::from_secs(1);

/// What [`send_with_retries`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// `Ok`, or the last failure.
    pub outcome: Result<(), SendError>,
    /// Requests made (0 when there was no time for one).
    pub attempts: u32,
}

impl Sent {
    /// Transient failures along the way, each followed by another try here or by the queue.
    pub fn retried(&self) -> u32 {
        let last_failed_transiently = matches!(self.outcome, Err(SendError::Retry { .. }));
        self.attempts.saturating_sub(1) + u32::from(last_failed_transiently)
    }
}

/// Sends `request` through `port`, retrying transient failures while time allows.
pub async fn send_with_retries<R: ?Sized + Sync>(port: &dyn Port<R>, request: &R, deadline: Instant) -> Sent {
    if !retry::fits_before(Instant::now(), MIN_ATTEMPT, deadline) {
        let reason = "no time was left in this invocation to send".to_owned();
        return Sent { outcome: Err(SendError::Retry { reason, wait: None }), attempts: 0 };
    }
    let mut attempts = 0;
    let outcome = (|| {
        attempts += 1;
        port.send(request, deadline)
    })
    .retry(retry::doubling(FIRST_CEILING, MAX_CEILING, MAX_RETRIES))
    .when(|error: &SendError| matches!(error, SendError::Retry { .. }))
    .adjust(|error, ceiling| {
        let asked = match error {
            SendError::Retry { wait, .. } => *wait,
            _ => None,
        };
        retry::next_wait(asked, ceiling, MIN_ATTEMPT, Instant::now(), deadline)
    })
    .notify(|error, wait| {
        tracing::debug!(wait_ms = wait.as_millis() as u64, reason = error.reason(), "retrying a delivery");
    })
    .await;
    Sent { outcome, attempts }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use super::*;

    struct Scripted(Mutex<VecDeque<Result<(), SendError>>>);

    #[async_trait]
    impl Port<str> for Scripted {
        async fn send(&self, _: &str, _: Instant) -> Result<(), SendError> {
            self.0.lock().unwrap().pop_front().unwrap_or(Ok(()))
        }
    }

    fn retry(wait_ms: Option<u64>) -> Result<(), SendError> {
        Err(SendError::Retry { reason: "429".into(), wait: wait_ms.map(Duration::from_millis) })
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_after_the_servers_wait() {
        let port = Scripted(Mutex::new([retry(Some(3000)), retry(None), Ok(())].into()));
        let started = Instant::now();
        let sent = send_with_retries(&port, "x", started + Duration::from_secs(60)).await;
        assert_eq!(sent, Sent { outcome: Ok(()), attempts: 3 });
        assert_eq!(sent.retried(), 2);
        assert!(started.elapsed() >= Duration::from_secs(3), "the Retry-After was honoured");
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_and_uncertain_failures_are_not_retried() {
        for error in [SendError::Permanent { reason: "404".into() }, SendError::Uncertain { reason: "timeout".into() }]
        {
            let port = Scripted(Mutex::new([Err(error.clone()), Ok(())].into()));
            let sent = send_with_retries(&port, "x", Instant::now() + Duration::from_secs(60)).await;
            assert_eq!(sent, Sent { outcome: Err(error), attempts: 1 });
            assert_eq!(sent.retried(), 0);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_past_the_deadline_hands_the_failure_back() {
        let port = Scripted(Mutex::new([retry(Some(30_000)), Ok(())].into()));
        let sent = send_with_retries(&port, "x", Instant::now() + Duration::from_secs(10)).await;
        assert_eq!(sent.attempts, 1);
        assert!(matches!(sent.outcome, Err(SendError::Retry { .. })));
        assert_eq!(sent.retried(), 1, "the queue tries it again");
    }

    #[tokio::test(start_paused = true)]
    async fn retries_stop_after_the_last_one() {
        let port = Scripted(Mutex::new((0..20).map(|_| retry(None)).collect()));
        let sent = send_with_retries(&port, "x", Instant::now() + Duration::from_secs(600)).await;
        assert_eq!(sent.attempts, 1 + MAX_RETRIES as u32);
    }

    #[tokio::test(start_paused = true)]
    async fn no_attempt_without_time_for_one() {
        let port = Scripted(Mutex::new(VecDeque::new()));
        let sent = send_with_retries(&port, "x", Instant::now() + Duration::from_millis(500)).await;
        assert_eq!(sent.attempts, 0);
        assert!(matches!(sent.outcome, Err(SendError::Retry { .. })));
    }
}
