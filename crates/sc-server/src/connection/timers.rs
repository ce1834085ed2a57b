//! The connection's deadlines: heartbeat ticks, the dialect probe, the pong timeout, the
//! handshake timeout and the close grace, all served by one timer.

use std::time::Duration;

use sc_protocol::HeartbeatDialect;
use tokio::time::Instant;

use super::heartbeat::{Detector, TickAction, probe_window};
use crate::options::ServerOptions;
use crate::socket::{Socket, SocketState};

/// How long to wait for the client's close frame after ours.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Ping ticks fall on a grid of this fraction of the ping interval (at most [`MAX_PING_GRID`]),
/// shared by every socket of the process. A worker then pings its sockets in small batches, a few
/// dozen times per second, instead of waking up for a socket or two every millisecond, and the
/// pongs come back in batches too: at 100k connections these wake-ups are much of an idle
/// server's CPU (docs/BENCHMARKS.md). A ping goes out at most one grid step later than the
/// interval says.
const PING_GRID_PARTS: u32 = 16;

/// The coarsest ping grid. Each step's batch delays whatever else the worker has to do (a
/// publication that arrives meanwhile waits behind the batch's pings), so the step is kept short:
/// at 100k connections over 6 workers, a 250 ms step made batches of ~3,000 pings that held
/// deliveries up by up to 50 ms (docs/BENCHMARKS.md, "the ping bursts").
const MAX_PING_GRID: Duration = Duration::from_millis(25);

/// `t` rounded up to the ping grid of `interval`, counted from the process's first connection.
fn on_ping_grid(t: Instant, interval: Duration) -> Instant {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let epoch = Instant::from_std(*EPOCH.get_or_init(std::time::Instant::now));
    let grid = (interval / PING_GRID_PARTS).min(MAX_PING_GRID).as_nanos();
    if grid == 0 {
        return t;
    }
    let since = t.saturating_duration_since(epoch).as_nanos();
    let rounded = u64::try_from(since.div_ceil(grid) * grid).unwrap_or(u64::MAX);
    epoch + Duration::from_nanos(rounded)
}

/// The connection's deadlines (heartbeat, dialect probe, pong timeout, handshake timeout, close
/// grace), all served by one timer that is set to the earliest.
pub(super) struct Timers {
    /// The next heartbeat tick; `None` when pings are disabled.
    next_ping: Option<Instant>,
    /// The end of the dialect probe window, while probing.
    probe: Option<Instant>,
    /// The pong timeout is watched (pings enabled and it did not fire yet). Its deadline moves
    /// with every message, so the timer is only moved when it fires early.
    pong_armed: bool,
    /// The handshake deadline, until it passed.
    handshake: Option<Instant>,
    /// After the writer ended: how long the client gets to send its close frame.
    close_grace: Option<Instant>,
    ping_interval: Duration,
    ping_timeout: Duration,
    far_future: Instant,
}

/// A deadline that ends (or starts ending) the connection.
pub(super) enum Expired {
    Pong,
    Handshake,
    CloseGrace,
}

impl Timers {
    pub(super) fn new(options: &ServerOptions, start: Instant) -> Timers {
        let pings = !options.ping_timeout_disabled;
        let durations = options.durations();
        Timers {
            next_ping: pings
                .then(|| on_ping_grid(start + durations.ping_interval, durations.ping_interval)),
            probe: None,
            pong_armed: pings,
            handshake: Some(start + durations.handshake_timeout),
            close_grace: None,
            ping_interval: durations.ping_interval,
            ping_timeout: durations.ping_timeout,
            far_future: start + Duration::from_secs(86_400 * 365),
        }
    }

    /// The earliest deadline that matters now, for a connection last active at
    /// `last_activity` (`connecting`: its handshake is not done).
    pub(super) fn next(
        &self,
        last_activity: Instant,
        connecting: bool,
        writer_done: bool,
    ) -> Instant {
        let pong = (self.pong_armed && !writer_done).then(|| last_activity + self.ping_timeout);
        let handshake = self.handshake.filter(|_| !writer_done && connecting);
        [
            self.next_ping,
            self.probe,
            pong,
            handshake,
            self.close_grace,
        ]
        .into_iter()
        .flatten()
        .fold(self.far_future, Instant::min)
    }

    /// The writer ended: the client gets [`CLOSE_GRACE`] to answer with its own close frame.
    pub(super) fn start_close_grace(&mut self) {
        self.close_grace = Some(Instant::now() + CLOSE_GRACE);
    }

    /// The timer fired: does what is due (pings are sent here) and reports a deadline that ends
    /// the connection, if one passed.
    pub(super) fn fire(
        &mut self,
        detector: &mut Detector,
        socket: &Socket,
        last_activity: Instant,
        writer_done: bool,
    ) -> Option<Expired> {
        let now = Instant::now();
        if self.close_grace.is_some_and(|t| t <= now) {
            return Some(Expired::CloseGrace);
        }
        if let Some(tick) = self.next_ping.filter(|t| *t <= now) {
            match detector.on_tick() {
                TickAction::Ping(dialect) => socket.send_ping(dialect),
                TickAction::Probe => {
                    socket.send_ping(HeartbeatDialect::V1);
                    self.probe = Some(now + probe_window(self.ping_interval));
                }
                TickAction::Wait => {}
            }
            // A late tick delays the next one (as `MissedTickBehavior::Delay`).
            let next = tick + self.ping_interval;
            let next = if next <= now {
                now + self.ping_interval
            } else {
                next
            };
            self.next_ping = Some(on_ping_grid(next, self.ping_interval));
        }
        if self.probe.is_some_and(|t| t <= now) {
            self.probe = None;
            if let Some(dialect) = detector.on_probe_expired() {
                socket.set_dialect(dialect);
                socket.send_ping(dialect);
            }
        }
        if self.pong_armed && !writer_done && last_activity + self.ping_timeout <= now {
            self.pong_armed = false;
            return Some(Expired::Pong);
        }
        if self.handshake.is_some_and(|t| t <= now) {
            self.handshake = None;
            if !writer_done && socket.state() == SocketState::Connecting {
                return Some(Expired::Handshake);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_ticks_fall_on_a_shared_grid() {
        let interval = Duration::from_millis(8000);
        let now = Instant::now();
        let a = on_ping_grid(now + interval, interval);
        assert!(a >= now + interval && a < now + interval + MAX_PING_GRID);
        // Ticks within one step share it; a tick on the grid stays there.
        assert_eq!(on_ping_grid(a - MAX_PING_GRID / 2, interval), a);
        assert_eq!(on_ping_grid(a, interval), a);
        assert_eq!(on_ping_grid(a + interval, interval), a + interval);
        // Short intervals get a finer grid: at most a sixteenth of the interval later.
        let short = Duration::from_millis(100);
        let d = on_ping_grid(now + short, short);
        assert!(d >= now + short && d <= now + short + short / PING_GRID_PARTS);
    }
}
