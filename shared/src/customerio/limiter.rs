//! One gate every App API request passes before it starts, shared by all clones of a client.
//!
//! Customer.io allows 10 requests in a second and counts what *arrives*. A GCRA limiter with a
//! burst of 10 would let a burst through and then one more every 100 ms: up to 19 starts in one
//! sliding second. So the gate has a burst of one and spaces starts evenly instead, and 5% wider
//! than 1/N s, because the server sees arrivals, not departures: two requests that leave 100 ms
//! apart can arrive closer together, and eleven of them inside one second would be refused.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, MonotonicClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::time::Instant;

/// Extra spacing on top of 1/N s, as a fraction of it (1/20 = 5%).
const SPACING_MARGIN_DIVISOR: u32 = 20;

pub(crate) struct RateGate {
    limiter: RateLimiter<NotKeyed, InMemoryState, MonotonicClock, NoOpMiddleware<std::time::Instant>>,
    spacing: Duration,
}

/// A quota of one start at a time, `spacing` apart, and that spacing.
fn spaced_quota(requests_per_second: NonZeroU32) -> (Quota, Duration) {
    let even = Duration::from_secs(1) / requests_per_second.get();
    let spacing = even + even / SPACING_MARGIN_DIVISOR;
    // `with_period` only refuses a zero period, and `spacing` is at least 1/u32::MAX s.
    let quota = Quota::with_period(spacing).unwrap_or_else(|| Quota::per_second(requests_per_second));
    (quota, spacing)
}

/// The next start slot comes after the caller's deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SlotPastDeadline;

impl RateGate {
    pub(crate) fn per_second(requests_per_second: NonZeroU32) -> Self {
        let (quota, spacing) = spaced_quota(requests_per_second);
        RateGate { limiter: RateLimiter::direct_with_clock(quota, MonotonicClock), spacing }
    }

    /// Time between two request starts.
    pub(crate) fn spacing(&self) -> Duration {
        self.spacing
    }

    /// Waits for this request's start slot. Fails at once, without waiting, when the slot is
    /// known to come after `deadline`; a failed wait takes no slot from other callers.
    pub(crate) async fn acquire(&self, deadline: Instant) -> Result<(), SlotPastDeadline> {
        loop {
            match self.limiter.check() {
                Ok(()) => return Ok(()),
                Err(not_until) => {
                    let wait = not_until.wait_time_from(MonotonicClock.now());
                    let at = Instant::now() + wait;
                    if at > deadline {
                        return Err(SlotPastDeadline);
                    }
                    // Another waiter may take this slot; the loop then waits for the next one.
                    tokio::time::sleep_until(at).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(rps: u32) -> RateGate {
        RateGate::per_second(NonZeroU32::new(rps).unwrap())
    }

    #[test]
    fn ten_per_second_spaces_starts_105_ms_apart() {
        assert_eq!(gate(10).spacing(), Duration::from_millis(105));
        assert_eq!(gate(1).spacing(), Duration::from_millis(1050));
    }

    /// The slots the quota grants, read on a clock the test moves, so that a busy machine cannot
    /// blur them: each caller asks again exactly when it was told to.
    #[test]
    fn the_quota_grants_starts_105_ms_apart_and_never_eleven_in_a_second() {
        use governor::clock::{FakeRelativeClock, Reference};
        let clock = FakeRelativeClock::default();
        let (quota, _) = spaced_quota(NonZeroU32::new(10).unwrap());
        let limiter = RateLimiter::direct_with_clock(quota, clock.clone());
        let origin = clock.now();
        let mut starts = Vec::new();
        while starts.len() < 30 {
            match limiter.check() {
                Ok(()) => starts.push(Duration::from(clock.now().duration_since(origin))),
                Err(not_until) => clock.advance(not_until.wait_time_from(clock.now())),
            }
        }
        for pair in starts.windows(2) {
            assert!(pair[1] - pair[0] >= Duration::from_millis(105), "{pair:?}");
        }
        for eleven in starts.windows(11) {
            assert!(eleven[10] - eleven[0] >= Duration::from_secs(1), "{eleven:?}");
        }
    }

    /// The same gate on the real clock: waiting callers get their slots in turn, and eleven
    /// starts never fall inside one second.
    #[tokio::test]
    async fn waiting_callers_never_start_eleven_in_a_second() {
        let gate = gate(10);
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut starts = Vec::new();
        for _ in 0..12 {
            gate.acquire(deadline).await.unwrap();
            starts.push(Instant::now());
        }
        for eleven in starts.windows(11) {
            assert!(eleven[10] - eleven[0] >= Duration::from_secs(1), "{:?}", eleven[10] - eleven[0]);
        }
    }

    #[tokio::test]
    async fn a_slot_past_the_deadline_fails_at_once() {
        let gate = gate(1);
        let now = Instant::now();
        gate.acquire(now + Duration::from_secs(5)).await.unwrap();
        let before = Instant::now();
        assert_eq!(gate.acquire(before + Duration::from_millis(200)).await, Err(SlotPastDeadline));
        assert!(before.elapsed() < Duration::from_millis(50), "waited {:?}", before.elapsed());
        // The refused caller took no slot: the next one is still a second after the first.
        gate.acquire(Instant::now() + Duration::from_secs(5)).await.unwrap();
        assert!(now.elapsed() >= Duration::from_millis(1000));
    }
}
