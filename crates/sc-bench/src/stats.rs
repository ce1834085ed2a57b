//! Measurements: a process-wide microsecond clock, latency histograms, and the per-subscriber
//! sequence tracker that counts lost, duplicated and out-of-order messages.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Microseconds since this process first asked for the time. Every task shares the epoch, so a
/// timestamp written into a message by the publisher can be compared with the receiver's clock.
pub fn now_micros() -> u64 {
    micros_at(Instant::now())
}

/// `instant` on the [`now_micros`] scale (0 for instants before the epoch). Lets a hot path read
/// the clock once for both an [`Instant`] and a timestamp.
pub fn micros_at(instant: Instant) -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(instant.saturating_duration_since(epoch).as_micros()).unwrap_or(u64::MAX)
}

/// Highest latency the histograms resolve: one hour, in microseconds (larger values are clamped).
const MAX_LATENCY_MICROS: u64 = 3_600_000_000;

/// A latency distribution in microseconds, 3 significant digits.
#[derive(Debug, Clone)]
pub struct Latency(Histogram<u64>);

impl Default for Latency {
    fn default() -> Self {
        Latency::new()
    }
}

impl Latency {
    /// An empty distribution.
    pub fn new() -> Latency {
        // Bounds are constants that hdrhistogram accepts (low >= 1, high >= 2 * low, sigfig <= 5).
        Latency(
            Histogram::new_with_bounds(1, MAX_LATENCY_MICROS, 3).expect("valid histogram bounds"),
        )
    }

    /// Records one sample.
    pub fn record(&mut self, micros: u64) {
        self.0
            .saturating_record(micros.clamp(1, MAX_LATENCY_MICROS));
    }

    /// Records the time from `sent_micros` (a [`now_micros`] reading) until now.
    pub fn record_since(&mut self, sent_micros: u64) {
        self.record(now_micros().saturating_sub(sent_micros));
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &Latency) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.0.add(&other.0);
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// The value at `percentile` (0–100), in microseconds; 0 when empty.
    pub fn percentile(&self, percentile: f64) -> u64 {
        if self.0.is_empty() {
            0
        } else {
            self.0.value_at_percentile(percentile)
        }
    }

    /// The largest sample, in microseconds; 0 when empty.
    pub fn max(&self) -> u64 {
        if self.0.is_empty() { 0 } else { self.0.max() }
    }

    /// The mean, in microseconds; 0 when empty.
    pub fn mean(&self) -> f64 {
        if self.0.is_empty() {
            0.0
        } else {
            self.0.mean()
        }
    }
}

/// A latency histogram shared by many [`LatencyRecorder`]s.
///
/// A histogram with microsecond resolution up to an hour is large (~100 KiB), too large to give
/// one to each of thousands of receivers; they record through small buffers into this one instead.
#[derive(Debug, Clone, Default)]
pub struct SharedLatency(Arc<Mutex<Latency>>);

impl SharedLatency {
    /// An empty shared histogram.
    pub fn new() -> SharedLatency {
        SharedLatency::default()
    }

    /// A recorder feeding this histogram.
    pub fn recorder(&self) -> LatencyRecorder {
        LatencyRecorder {
            buffer: Vec::with_capacity(RECORDER_BUFFER),
            shared: self.clone(),
        }
    }

    /// Records one sample, in microseconds, straight into the histogram (one lock per sample:
    /// for rare samples spread over many receivers, where a buffer per receiver would cost more).
    pub fn record(&self, micros: u64) {
        self.lock().record(micros);
    }

    /// A copy of what has been recorded (and flushed) so far.
    pub fn snapshot(&self) -> Latency {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Latency> {
        // A panic while holding the lock cannot leave a histogram half-updated in a way that
        // matters for a report, so a poisoned lock is still used.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Samples a [`LatencyRecorder`] keeps before taking the shared lock.
const RECORDER_BUFFER: usize = 256;

/// Records samples into a [`SharedLatency`] in batches (one lock per 256 samples). Flushes when
/// dropped.
#[derive(Debug)]
pub struct LatencyRecorder {
    buffer: Vec<u64>,
    shared: SharedLatency,
}

impl LatencyRecorder {
    /// Records one sample, in microseconds.
    pub fn record(&mut self, micros: u64) {
        self.buffer.push(micros);
        if self.buffer.len() >= RECORDER_BUFFER {
            self.flush();
        }
    }

    /// Records the time from `sent_micros` (a [`now_micros`] reading) until now.
    pub fn record_since(&mut self, sent_micros: u64) {
        self.record(now_micros().saturating_sub(sent_micros));
    }

    /// Moves the buffered samples into the shared histogram.
    pub fn flush(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        let mut shared = self.shared.lock();
        for &micros in &self.buffer {
            shared.record(micros);
        }
        drop(shared);
        self.buffer.clear();
    }
}

impl Drop for LatencyRecorder {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Correctness counters of message delivery, summed over receivers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Correctness {
    /// Messages that should have arrived.
    pub expected: u64,
    /// Messages that did arrive (duplicates included).
    pub received: u64,
    /// Expected messages that never arrived.
    pub lost: u64,
    /// Arrivals of a message that had already arrived.
    pub duplicated: u64,
    /// First arrivals of a message after a later one had already arrived.
    pub out_of_order: u64,
    /// Arrivals that do not belong to the run (unknown sequence number, wrong channel, undecodable).
    pub foreign: u64,
}

impl Correctness {
    /// Adds `other`'s counters to these.
    pub fn add(&mut self, other: &Correctness) {
        self.expected += other.expected;
        self.received += other.received;
        self.lost += other.lost;
        self.duplicated += other.duplicated;
        self.out_of_order += other.out_of_order;
        self.foreign += other.foreign;
    }

    /// Whether every expected message arrived exactly once, in order, and nothing else arrived.
    pub fn is_valid(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.out_of_order == 0 && self.foreign == 0
    }
}

/// Tracks the sequence numbers `0..expected` one receiver gets from one sender.
#[derive(Debug, Clone)]
pub struct SeqTracker {
    seen: Vec<u64>,
    expected: u64,
    unique: u64,
    received: u64,
    duplicated: u64,
    out_of_order: u64,
    foreign: u64,
    highest: Option<u64>,
}

impl SeqTracker {
    /// A tracker expecting sequence numbers `0..expected`.
    pub fn new(expected: u64) -> SeqTracker {
        let words = usize::try_from(expected.div_ceil(64)).unwrap_or(usize::MAX);
        SeqTracker {
            seen: vec![0; words],
            expected,
            unique: 0,
            received: 0,
            duplicated: 0,
            out_of_order: 0,
            foreign: 0,
            highest: None,
        }
    }

    /// Records the arrival of `seq`.
    pub fn record(&mut self, seq: u64) {
        self.received += 1;
        if seq >= self.expected {
            self.foreign += 1;
            return;
        }
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        if self.seen[word] & bit != 0 {
            self.duplicated += 1;
            return;
        }
        self.seen[word] |= bit;
        self.unique += 1;
        match self.highest {
            Some(highest) if seq < highest => self.out_of_order += 1,
            _ => self.highest = Some(seq),
        }
    }

    /// Records an arrival that could not be attributed to the run.
    pub fn record_foreign(&mut self) {
        self.received += 1;
        self.foreign += 1;
    }

    /// Whether every expected sequence number has arrived.
    pub fn is_complete(&self) -> bool {
        self.unique == self.expected
    }

    /// The counters so far; whatever has not arrived yet counts as lost.
    pub fn correctness(&self) -> Correctness {
        Correctness {
            expected: self.expected,
            received: self.received,
            lost: self.expected - self.unique,
            duplicated: self.duplicated,
            out_of_order: self.out_of_order,
            foreign: self.foreign,
        }
    }
}

/// `count` events over `elapsed`, per second (0 for an empty interval).
pub fn rate(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut l = Latency::new();
        for v in 1..=1000 {
            l.record(v);
        }
        assert_eq!(l.count(), 1000);
        assert_eq!(l.percentile(50.0), 500);
        assert_eq!(l.percentile(99.0), 990);
        assert_eq!(l.max(), 1000);
        assert!((l.mean() - 500.5).abs() < 0.5);
    }

    #[test]
    fn percentiles_keep_three_significant_digits() {
        let mut l = Latency::new();
        l.record(1_234_567);
        let p = l.percentile(50.0);
        assert!(p.abs_diff(1_234_567) <= 1_234_567 / 1000, "{p}");
    }

    #[test]
    fn empty_and_merged_histograms() {
        let empty = Latency::new();
        assert_eq!(
            (empty.percentile(99.0), empty.max(), empty.mean()),
            (0, 0, 0.0)
        );
        let mut a = Latency::new();
        let mut b = Latency::new();
        a.record(10);
        b.record(20);
        b.record(0); // clamped to 1
        b.record(u64::MAX); // clamped to the ceiling
        a.merge(&b);
        assert_eq!(a.count(), 4);
        assert!(a.max() >= MAX_LATENCY_MICROS - MAX_LATENCY_MICROS / 1000);
    }

    #[test]
    fn recorders_feed_the_shared_histogram() {
        let shared = SharedLatency::new();
        let mut a = shared.recorder();
        let mut b = shared.recorder();
        for v in 0..300 {
            a.record(1000 + v);
        }
        assert_eq!(shared.snapshot().count(), 256, "one full buffer flushed");
        b.record(5);
        a.flush();
        drop(b);
        let all = shared.snapshot();
        assert_eq!(all.count(), 301);
        assert_eq!(all.percentile(0.0), 5);
    }

    #[test]
    fn in_order_delivery_is_valid() {
        let mut t = SeqTracker::new(130);
        for seq in 0..130 {
            t.record(seq);
        }
        assert!(t.is_complete());
        let c = t.correctness();
        assert!(c.is_valid());
        assert_eq!((c.expected, c.received), (130, 130));
    }

    #[test]
    fn counts_lost_duplicated_out_of_order_and_foreign() {
        let mut t = SeqTracker::new(10);
        for seq in [0, 1, 3, 2, 3, 5, 5, 4, 42] {
            t.record(seq);
        }
        t.record_foreign();
        assert!(!t.is_complete());
        let c = t.correctness();
        assert_eq!(
            c,
            Correctness {
                expected: 10,
                received: 10,
                lost: 4,
                duplicated: 2,
                out_of_order: 2,
                foreign: 2
            }
        );
        assert!(!c.is_valid());
    }

    #[test]
    fn correctness_adds_up() {
        let mut total = Correctness::default();
        let mut a = SeqTracker::new(3);
        a.record(0);
        let mut b = SeqTracker::new(3);
        b.record(1);
        b.record(0);
        total.add(&a.correctness());
        total.add(&b.correctness());
        assert_eq!(
            (
                total.expected,
                total.received,
                total.lost,
                total.out_of_order
            ),
            (6, 3, 3, 1)
        );
    }

    #[test]
    fn rate_and_clock() {
        assert_eq!(rate(500, Duration::from_millis(250)), 2000.0);
        assert_eq!(rate(5, Duration::ZERO), 0.0);
        let a = now_micros();
        assert!(now_micros() >= a);
    }
}
