//! A host stall meter: a thread that sleeps 1 ms at a time and records how late it wakes up.
//!
//! On a shared machine a delivery can be late because nothing of the server or the generator ran
//! at all (another tenant, the hypervisor, the kernel). The meter tells those stalls apart from
//! the server's own: a probe that is late while the meter saw no stall was held up by the system
//! under test.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::stats::{Latency, micros_at};

/// How long the meter sleeps between readings.
const TICK: Duration = Duration::from_millis(1);

/// Stalls at least this long are kept with their time, for a timeline.
pub const NOTABLE_STALL: Duration = Duration::from_millis(5);

/// A running meter; [`StallMeter::finish`] stops it.
#[derive(Debug)]
pub struct StallMeter {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Stalls>,
}

/// What the meter saw.
#[derive(Debug, Default)]
pub struct Stalls {
    /// How late each wake-up was, in microseconds.
    pub lateness: Latency,
    /// Every stall of [`NOTABLE_STALL`] or more: when it began ([`crate::stats::now_micros`]
    /// scale) and how long it was, in microseconds.
    pub notable: Vec<(u64, u64)>,
}

impl StallMeter {
    /// Starts the meter's thread.
    pub fn start() -> std::io::Result<StallMeter> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("stall-meter".into())
            .spawn(move || measure(&stopped))?;
        Ok(StallMeter { stop, thread })
    }

    /// Stops the meter and returns what it saw (nothing, if its thread panicked).
    pub fn finish(self) -> Stalls {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

fn measure(stop: &AtomicBool) -> Stalls {
    let mut stalls = Stalls::default();
    while !stop.load(Ordering::Relaxed) {
        let before = Instant::now();
        std::thread::sleep(TICK);
        let late = before.elapsed().saturating_sub(TICK);
        stalls
            .lateness
            .record(u64::try_from(late.as_micros()).unwrap_or(u64::MAX));
        if late >= NOTABLE_STALL {
            let began = micros_at(before + TICK);
            stalls
                .notable
                .push((began, u64::try_from(late.as_micros()).unwrap_or(u64::MAX)));
        }
    }
    stalls
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_meter_records_a_reading_per_tick_until_stopped() {
        let began = Instant::now();
        let meter = StallMeter::start().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let stalls = meter.finish();
        let elapsed = began.elapsed();
        // One reading per tick of at least 1 ms: a loaded machine gives fewer, never none.
        assert!(stalls.lateness.count() >= 1);
        assert!(stalls.lateness.count() <= elapsed.as_millis() as u64 + 1);
        let notable = NOTABLE_STALL.as_micros() as u64;
        assert!(stalls.notable.iter().all(|&(_, length)| length >= notable));
    }
}
