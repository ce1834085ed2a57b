//! Small pieces shared by the networked engines (Redis, NATS): task ownership, reconnect
//! backoff, and the wall clock used for expiry deadlines.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sc_protocol::Backoff;

/// Aborts a background task when its owner is dropped.
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Milliseconds since the Unix epoch. Expiry deadlines are shared between machines, so they use
/// the wall clock (keep the machines' clocks in sync, as for any distributed expiry).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The reconnect policy of the networked engines, up to `max`: attempt 0 immediately, then 50 ms
/// doubling, less up to 20 % of jitter so that many instances do not reconnect in lockstep.
pub(crate) fn reconnect_backoff(max: Duration) -> Backoff {
    Backoff {
        jitter: 0.2,
        immediate_first: true,
        ..Backoff::new(Duration::from_millis(50), 2.0, max)
    }
}

/// The earliest expiry deadline this process knows of (`u64::MAX`: none), so a store can run its
/// expiry sweep before a command instead of waiting for the periodic sweep.
pub(crate) struct DueHint(AtomicU64);

impl DueHint {
    pub(crate) fn new() -> DueHint {
        DueHint(AtomicU64::new(0)) // unknown at start: the first command sweeps
    }

    /// Whether a known deadline has passed.
    pub(crate) fn is_due(&self, now_ms: u64) -> bool {
        self.0.load(Ordering::Relaxed) <= now_ms
    }

    /// Records a new deadline.
    pub(crate) fn note(&self, deadline_ms: u64) {
        self.0.fetch_min(deadline_ms, Ordering::Relaxed);
    }

    /// Replaces the hint with the earliest deadline the engine holds (after a sweep).
    pub(crate) fn reset(&self, next_deadline_ms: Option<u64>) {
        self.0
            .store(next_deadline_ms.unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_starts_at_once() {
        let max = Duration::from_secs(1);
        let backoff = reconnect_backoff(max);
        assert_eq!(backoff.delay(0), Duration::ZERO);
        assert!(backoff.delay(1) <= Duration::from_millis(50));
        assert!(backoff.delay(1) >= Duration::from_millis(40));
        for attempt in 5..100 {
            assert!(backoff.delay(attempt) <= max);
        }
        assert!(backoff.delay(99) >= Duration::from_millis(800));
    }

    #[test]
    fn due_hint() {
        let hint = DueHint::new();
        assert!(hint.is_due(1));
        hint.reset(None);
        assert!(!hint.is_due(u64::MAX - 1));
        hint.note(100);
        hint.note(200);
        assert!(!hint.is_due(99));
        assert!(hint.is_due(100));
    }
}
