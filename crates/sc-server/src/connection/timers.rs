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
        Timers {
            next_ping: pings.then(|| start + options.ping_interval()),
            probe: None,
            pong_armed: pings,
            handshake: Some(start + options.handshake_timeout()),
            close_grace: None,
            ping_interval: options.ping_interval(),
            ping_timeout: options.ping_timeout(),
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
            self.next_ping = Some(if next <= now {
                now + self.ping_interval
            } else {
                next
            });
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
