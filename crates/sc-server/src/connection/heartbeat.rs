//! Heartbeat dialect detection for `protocolVersion: auto` (docs/protocol.md §16).
//!
//! At the first ping tick the server sends the v1 ping `#1`. A v1 client answers `#2` at once; a
//! v2 client does not (it sees one raw message). If no `#2` arrives within a short probe window,
//! the connection is v2 and gets an empty-frame ping right away, well inside its ping timeout.
//! A pong of either kind seen at any time settles the question too.

use std::time::Duration;

use sc_protocol::HeartbeatDialect;

/// How long to wait for a `#2` answer to the `#1` probe before settling on v2.
pub(crate) fn probe_window(ping_interval: Duration) -> Duration {
    (ping_interval / 2).min(Duration::from_secs(1))
}

/// The per-connection detection state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Detector {
    /// Dialect known (fixed by configuration, or detected).
    Known(HeartbeatDialect),
    /// Auto mode, no ping sent yet.
    Undecided,
    /// Auto mode, `#1` sent, waiting for `#2`.
    Probing,
}

/// What to send at a ping tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TickAction {
    /// Send this dialect's ping.
    Ping(HeartbeatDialect),
    /// Send the `#1` probe and start the probe window.
    Probe,
    /// Still probing: wait for the window.
    Wait,
}

impl Detector {
    pub(crate) fn new(fixed: Option<HeartbeatDialect>) -> Detector {
        fixed.map_or(Detector::Undecided, Detector::Known)
    }

    pub(crate) fn known(self) -> Option<HeartbeatDialect> {
        match self {
            Detector::Known(d) => Some(d),
            _ => None,
        }
    }

    /// A ping tick: decides what to send.
    pub(crate) fn on_tick(&mut self) -> TickAction {
        match *self {
            Detector::Known(d) => TickAction::Ping(d),
            Detector::Undecided => {
                *self = Detector::Probing;
                TickAction::Probe
            }
            Detector::Probing => TickAction::Wait,
        }
    }

    /// The probe window closed without a `#2`: the client speaks v2. Returns the ping to send.
    pub(crate) fn on_probe_expired(&mut self) -> Option<HeartbeatDialect> {
        (*self == Detector::Probing).then(|| {
            *self = Detector::Known(HeartbeatDialect::V2);
            HeartbeatDialect::V2
        })
    }

    /// A pong of `dialect` arrived. Returns true if it counts as a pong (not a raw message).
    pub(crate) fn on_pong(&mut self, dialect: HeartbeatDialect) -> bool {
        match *self {
            Detector::Known(d) => d == dialect,
            _ => {
                *self = Detector::Known(dialect);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_client_answers_probe() {
        let mut d = Detector::new(None);
        assert_eq!(d.on_tick(), TickAction::Probe);
        assert!(d.on_pong(HeartbeatDialect::V1));
        assert_eq!(d.on_probe_expired(), None);
        assert_eq!(d.on_tick(), TickAction::Ping(HeartbeatDialect::V1));
        assert!(
            !d.on_pong(HeartbeatDialect::V2),
            "an empty frame is raw for a v1 connection"
        );
    }

    #[test]
    fn v2_client_is_settled_by_the_probe_window() {
        let mut d = Detector::new(None);
        assert_eq!(d.on_tick(), TickAction::Probe);
        assert_eq!(d.on_tick(), TickAction::Wait);
        assert_eq!(d.on_probe_expired(), Some(HeartbeatDialect::V2));
        assert_eq!(d.on_tick(), TickAction::Ping(HeartbeatDialect::V2));
        assert!(d.on_pong(HeartbeatDialect::V2));
    }

    #[test]
    fn fixed_dialect_never_probes() {
        let mut d = Detector::new(Some(HeartbeatDialect::V1));
        assert_eq!(d.on_tick(), TickAction::Ping(HeartbeatDialect::V1));
        assert!(!d.on_pong(HeartbeatDialect::V2));
    }

    #[test]
    fn probe_window_is_short() {
        assert_eq!(probe_window(Duration::from_secs(8)), Duration::from_secs(1));
        assert_eq!(
            probe_window(Duration::from_millis(300)),
            Duration::from_millis(150)
        );
    }
}
