//! The auto-reconnect rule and backoff schedule of the reference client (docs/protocol.md §15.1).
//!
//! Pure functions plus a tiny attempt counter, so the schedule is testable without sockets. The
//! delays themselves are the workspace's one retry policy, [`Backoff`], set from
//! [`AutoReconnectOptions`].

use std::time::Duration;

/// The retry-delay policy the schedule is computed with (see [`AutoReconnectOptions::backoff`]).
pub use sc_protocol::Backoff;
use sc_protocol::CloseCode;

use crate::options::AutoReconnectOptions;

/// What the client does after observing a close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconnectDecision {
    /// 4000, 4001, 1005: retry at once (no delay on the first attempt).
    Immediate,
    /// Any other code below 4500 except 1000: retry after the backoff delay.
    Backoff,
    /// 1000 and codes from 4500 up: stay closed.
    Never,
}

/// Applies the reconnect rule to a close code.
///
/// ```
/// use sc_client::reconnect::{decide, ReconnectDecision};
///
/// assert_eq!(decide(4000), ReconnectDecision::Immediate);
/// assert_eq!(decide(4321), ReconnectDecision::Backoff);
/// assert_eq!(decide(1000), ReconnectDecision::Never);
/// assert_eq!(decide(4500), ReconnectDecision::Never);
/// ```
pub fn decide(code: u16) -> ReconnectDecision {
    let code = CloseCode(code);
    if code.client_reconnects_immediately() {
        ReconnectDecision::Immediate
    } else if code.client_reconnects() {
        ReconnectDecision::Backoff
    } else {
        ReconnectDecision::Never
    }
}

/// The delay before reconnect attempt number `exponent` (0-based), exactly as `_tryReconnect`
/// computes it: `round(round(initialDelay + randomness * random) * multiplier ^ exponent)`,
/// capped at `maxDelay`. `initial` is the delay forced for the first attempt (0 after
/// 4000/4001/1005); it only applies while `exponent` is 0. `random` is in `[0, 1)`.
///
/// ```
/// use std::time::Duration;
/// use sc_client::{reconnect::reconnect_delay, AutoReconnectOptions};
///
/// let opts = AutoReconnectOptions::default();
/// assert_eq!(reconnect_delay(&opts, 0, None, 0.5), Duration::from_millis(15_000));
/// assert_eq!(reconnect_delay(&opts, 1, None, 0.0), Duration::from_millis(15_000));
/// assert_eq!(reconnect_delay(&opts, 0, Some(Duration::ZERO), 0.9), Duration::ZERO);
/// assert_eq!(reconnect_delay(&opts, 9, None, 0.0), Duration::from_millis(60_000));
/// ```
pub fn reconnect_delay(
    opts: &AutoReconnectOptions,
    exponent: u32,
    initial: Option<Duration>,
    random: f64,
) -> Duration {
    match initial {
        Some(initial) if exponent == 0 => initial.min(opts.max_delay),
        _ => opts.backoff().delay_with(exponent, random),
    }
}

/// Counts reconnect attempts (`connectAttempts`); reset after every successful handshake.
#[derive(Debug, Default, Clone)]
pub struct ReconnectAttempts {
    attempts: u32,
}

impl ReconnectAttempts {
    /// A counter at zero attempts.
    pub fn new() -> ReconnectAttempts {
        ReconnectAttempts::default()
    }

    /// The delay for the next attempt (counting it), drawing the random part from `fastrand`.
    pub fn next_delay(
        &mut self,
        opts: &AutoReconnectOptions,
        initial: Option<Duration>,
    ) -> Duration {
        self.next_delay_with(opts, initial, fastrand::f64())
    }

    /// [`ReconnectAttempts::next_delay`] with a given random value in `[0, 1)` (for tests).
    pub fn next_delay_with(
        &mut self,
        opts: &AutoReconnectOptions,
        initial: Option<Duration>,
        random: f64,
    ) -> Duration {
        let exponent = self.attempts;
        self.attempts = self.attempts.saturating_add(1);
        reconnect_delay(opts, exponent, initial, random)
    }

    /// Attempts counted since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Back to zero (after a successful handshake).
    pub fn reset(&mut self) {
        self.attempts = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn rule_per_close_code() {
        for code in [4000, 4001, 1005] {
            assert_eq!(decide(code), ReconnectDecision::Immediate, "{code}");
        }
        for code in [1001, 1006, 1009, 3000, 4003, 4007, 4008, 4321, 4499] {
            assert_eq!(decide(code), ReconnectDecision::Backoff, "{code}");
        }
        for code in [1000, 4500, 4999] {
            assert_eq!(decide(code), ReconnectDecision::Never, "{code}");
        }
    }

    #[test]
    fn schedule_grows_and_caps() {
        let opts = AutoReconnectOptions::default();
        let mut b = ReconnectAttempts::new();
        let delays: Vec<_> = (0..6)
            .map(|_| b.next_delay_with(&opts, None, 0.0))
            .collect();
        assert_eq!(
            delays,
            [
                ms(10_000),
                ms(15_000),
                ms(22_500),
                ms(33_750),
                ms(50_625),
                ms(60_000)
            ]
        );
        assert_eq!(b.attempts(), 6);
        b.reset();
        assert_eq!(b.next_delay_with(&opts, None, 0.999), ms(19_990));
    }

    #[test]
    fn immediate_only_for_the_first_attempt() {
        let opts = AutoReconnectOptions {
            initial_delay: ms(100),
            randomness: ms(0),
            ..Default::default()
        };
        let mut b = ReconnectAttempts::new();
        assert_eq!(
            b.next_delay_with(&opts, Some(Duration::ZERO), 0.5),
            Duration::ZERO
        );
        // The next failure uses the backoff, multiplied once.
        assert_eq!(b.next_delay_with(&opts, Some(Duration::ZERO), 0.5), ms(150));
    }

    #[test]
    fn rounding_matches_javascript() {
        // base = round(500 + 100 * 0.66) = 566 (the captured ~566 ms reconnect of TV-11).
        let opts = AutoReconnectOptions {
            initial_delay: ms(500),
            randomness: ms(100),
            ..Default::default()
        };
        assert_eq!(reconnect_delay(&opts, 0, None, 0.66), ms(566));
        assert_eq!(reconnect_delay(&opts, 1, None, 0.66), ms(849));
    }

    #[test]
    fn extreme_values_do_not_panic() {
        let opts = AutoReconnectOptions {
            initial_delay: Duration::MAX,
            randomness: Duration::MAX,
            multiplier: 1e300,
            max_delay: ms(5),
        };
        assert_eq!(reconnect_delay(&opts, u32::MAX, None, 1.0), ms(5));
        let zero = AutoReconnectOptions {
            multiplier: 0.0,
            ..Default::default()
        };
        assert_eq!(reconnect_delay(&zero, 3, None, 0.5), Duration::ZERO);
    }

    /// The schedule drives real timers: with the clock paused, each scheduled reconnect fires
    /// exactly after its delay.
    #[tokio::test(start_paused = true)]
    async fn schedule_on_a_paused_clock() {
        let opts = AutoReconnectOptions {
            initial_delay: ms(1_000),
            randomness: ms(0),
            multiplier: 2.0,
            max_delay: ms(5_000),
        };
        let mut b = ReconnectAttempts::new();
        let start = tokio::time::Instant::now();
        let mut expected = Duration::ZERO;
        for want in [0, 2_000, 4_000, 5_000] {
            // The first attempt follows a 4000 close (immediate), later ones a 1006.
            let initial = (b.attempts() == 0).then_some(Duration::ZERO);
            let delay = b.next_delay(&opts, initial);
            assert_eq!(delay, ms(want));
            tokio::time::sleep(delay).await;
            expected += delay;
            assert_eq!(start.elapsed(), expected);
        }
    }
}
