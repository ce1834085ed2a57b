//! [`sc_client`] options for tests: short timeouts and fast reconnects, so a test never waits
//! the defaults' 10–20 s.

use std::time::Duration;

use sc_client::{AutoReconnectOptions, ClientOptions, ProtocolVersion};

/// Reconnects after 100 ms (+ up to 50 ms), growing 1.5× per attempt up to 2 s.
pub fn fast_reconnect() -> AutoReconnectOptions {
    AutoReconnectOptions {
        initial_delay: Duration::from_millis(100),
        randomness: Duration::from_millis(50),
        multiplier: 1.5,
        max_delay: Duration::from_secs(2),
    }
}

/// Test options: 5 s ack and connect timeouts, [`fast_reconnect`], the given heartbeat dialect.
pub fn options(version: ProtocolVersion) -> ClientOptions {
    ClientOptions {
        ack_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(5),
        auto_reconnect_options: fast_reconnect(),
        protocol_version: version,
        ..ClientOptions::default()
    }
}
