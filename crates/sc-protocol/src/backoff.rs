//! [`Backoff`]: the one retry-delay policy of the workspace.
//!
//! Every reconnect and restart schedule in the project is this type with different settings:
//!
//! | user | settings |
//! |------|----------|
//! | sc-client auto-reconnect (docs/protocol.md §15.1) | `autoReconnectOptions`: 10 s + 0–10 s, ×1.5, at most 60 s |
//! | worker → broker process link | 200 ms + 0–100 ms, ×1.3, at most 1 s |
//! | Redis and NATS engine reconnects | immediately, then 50 ms doubling, less up to 20 % jitter |
//! | master restarting a process that died right after starting | 100 ms doubling, at most 5 s |
//! | server accept loop pausing after failed accepts (out of descriptors) | 10 ms doubling, at most 1 s |
//!
//! The delay of attempt `k` (0-based) is computed as the reference client's `_tryReconnect` does,
//! in whole milliseconds:
//!
//! ```text
//! base    = round(initial + randomness × r)
//! grown   = round(base × multiplier^k)            (max if it overflows or reaches max)
//! delay   = min(grown, max) × (1 − jitter × r)
//! ```
//!
//! where `r` is one random draw in `[0, 1)`. With [`Backoff::immediate_first`] attempt 0 waits
//! nothing and attempt `k` waits what attempt `k − 1` would otherwise.

use std::time::Duration;

/// A retry-delay policy: a base delay with optional random extra, grown geometrically per
/// attempt, capped, with optional proportional jitter (see the [module docs](self)).
///
/// ```
/// use std::time::Duration;
/// use sc_protocol::Backoff;
///
/// let policy = Backoff::new(Duration::from_millis(100), 2.0, Duration::from_secs(1));
/// assert_eq!(policy.delay(0), Duration::from_millis(100));
/// assert_eq!(policy.delay(2), Duration::from_millis(400));
/// assert_eq!(policy.delay(10), Duration::from_secs(1));
///
/// let jittered = Backoff { jitter: 0.2, ..policy };
/// assert_eq!(jittered.delay_with(1, 0.5), Duration::from_millis(180));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Base delay of the first attempt.
    pub initial: Duration,
    /// Up to this much is added at random to the base delay (before it grows).
    pub randomness: Duration,
    /// Fraction in `[0, 1]` of the (capped) delay taken off at random, so that many instances
    /// retrying after the same failure do not retry in lockstep.
    pub jitter: f64,
    /// Each further attempt multiplies the delay by this factor.
    pub multiplier: f64,
    /// No delay is ever longer (before jitter).
    pub max: Duration,
    /// Whether attempt 0 waits nothing (the schedule then starts at attempt 1).
    pub immediate_first: bool,
}

impl Backoff {
    /// A policy without randomness: `initial × multiplier^attempt`, at most `max`.
    pub const fn new(initial: Duration, multiplier: f64, max: Duration) -> Backoff {
        Backoff {
            initial,
            randomness: Duration::ZERO,
            jitter: 0.0,
            multiplier,
            max,
            immediate_first: false,
        }
    }

    /// The delay before attempt `attempt` (0-based), drawing the random part from `fastrand`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let random = if self.randomness.is_zero() && self.jitter <= 0.0 {
            0.0
        } else {
            fastrand::f64()
        };
        self.delay_with(attempt, random)
    }

    /// [`Backoff::delay`] with a given random draw in `[0, 1)` (values outside are clamped), so
    /// that the schedule is deterministic in tests.
    pub fn delay_with(&self, attempt: u32, random: f64) -> Duration {
        let random = if random.is_nan() {
            0.0
        } else {
            random.clamp(0.0, 1.0)
        };
        let exponent = if self.immediate_first {
            match attempt.checked_sub(1) {
                Some(exponent) => exponent,
                None => return Duration::ZERO,
            }
        } else {
            attempt
        };
        let base = (millis(self.initial) + millis(self.randomness) * random).round();
        let grown = (base * self.multiplier.powi(exponent.min(i32::MAX as u32) as i32)).round();
        let capped = if !grown.is_finite() || grown >= millis(self.max) {
            self.max
        } else {
            Duration::from_millis(grown.max(0.0) as u64)
        };
        let jitter = if self.jitter.is_nan() {
            0.0
        } else {
            self.jitter.clamp(0.0, 1.0)
        };
        if jitter == 0.0 {
            capped
        } else {
            capped.mul_f64(1.0 - jitter * random)
        }
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn grows_geometrically_then_caps() {
        let policy = Backoff::new(ms(100), 2.0, ms(5_000));
        let delays: Vec<_> = (0..8).map(|k| policy.delay(k)).collect();
        assert_eq!(
            delays,
            [
                ms(100),
                ms(200),
                ms(400),
                ms(800),
                ms(1_600),
                ms(3_200),
                ms(5_000),
                ms(5_000)
            ]
        );
        assert_eq!(policy.delay(u32::MAX), ms(5_000));
    }

    #[test]
    fn randomness_adds_to_the_base_before_growth() {
        let policy = Backoff {
            randomness: ms(100),
            ..Backoff::new(ms(200), 1.5, ms(10_000))
        };
        assert_eq!(policy.delay_with(0, 0.0), ms(200));
        assert_eq!(policy.delay_with(0, 0.5), ms(250));
        assert_eq!(policy.delay_with(1, 0.5), ms(375));
        for attempt in 0..4 {
            let low = policy.delay_with(attempt, 0.0);
            let high = policy.delay_with(attempt, 0.999_999);
            for _ in 0..50 {
                let d = policy.delay(attempt);
                assert!(low <= d && d <= high, "attempt {attempt}: {d:?}");
            }
        }
    }

    #[test]
    fn jitter_takes_off_at_most_its_fraction_of_the_capped_delay() {
        let policy = Backoff {
            jitter: 0.2,
            ..Backoff::new(ms(50), 2.0, ms(1_000))
        };
        assert_eq!(policy.delay_with(0, 0.0), ms(50));
        assert_eq!(policy.delay_with(0, 1.0), ms(40));
        assert_eq!(policy.delay_with(10, 0.5), ms(900));
        for attempt in 0..20 {
            let full = policy.delay_with(attempt, 0.0);
            for _ in 0..50 {
                let d = policy.delay(attempt);
                assert!(
                    d <= full && d >= full.mul_f64(0.8),
                    "attempt {attempt}: {d:?}"
                );
                assert!(d <= ms(1_000));
            }
        }
    }

    #[test]
    fn immediate_first_shifts_the_schedule() {
        let policy = Backoff {
            immediate_first: true,
            ..Backoff::new(ms(50), 2.0, ms(1_000))
        };
        assert_eq!(policy.delay(0), Duration::ZERO);
        assert_eq!(policy.delay(1), ms(50));
        assert_eq!(policy.delay(2), ms(100));
        assert_eq!(policy.delay(99), ms(1_000));
    }

    #[test]
    fn rounds_like_the_javascript_client() {
        // base = round(500 + 100 × 0.66) = 566, then round(566 × 1.5) = 849.
        let policy = Backoff {
            randomness: ms(100),
            ..Backoff::new(ms(500), 1.5, ms(60_000))
        };
        assert_eq!(policy.delay_with(0, 0.66), ms(566));
        assert_eq!(policy.delay_with(1, 0.66), ms(849));
    }

    #[test]
    fn extreme_settings_do_not_panic() {
        let huge = Backoff {
            randomness: Duration::MAX,
            jitter: f64::NAN,
            ..Backoff::new(Duration::MAX, 1e300, ms(5))
        };
        assert_eq!(huge.delay_with(u32::MAX, 1.0), ms(5));
        assert_eq!(huge.delay_with(0, f64::NAN), ms(5));
        let shrinking = Backoff::new(ms(100), 0.0, ms(1_000));
        assert_eq!(shrinking.delay(0), ms(100));
        assert_eq!(shrinking.delay(3), Duration::ZERO);
        let odd = Backoff {
            jitter: 7.0,
            ..Backoff::new(ms(100), f64::NAN, ms(1_000))
        };
        assert_eq!(odd.delay_with(1, 0.5), ms(500));
        assert_eq!(odd.delay_with(1, -3.0), ms(1_000));
    }
}
