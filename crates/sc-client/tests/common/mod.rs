//! Shared helpers of the integration tests: servers to talk to (the Node reference fixture, the
//! Rust server in-process, a scripted fake WebSocket server) and bounded waits.
//!
//! Every wait is bounded by [`WAIT`]: a test that expects something fails with a message
//! instead of hanging.

#![allow(dead_code, unreachable_pub)] // Each test binary uses a different subset.

pub mod fake;
pub mod node;
pub mod proxy;
pub mod rust;
pub mod scenarios;

use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt;
use sc_client::{
    AutoReconnectOptions, Client, ClientEvent, ClientOptions, Events, ProtocolVersion,
};

/// The longest any single expected thing may take. Generous: it only matters when a test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// Awaits `future`, failing the test after [`WAIT`].
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {WAIT:?} waiting for {what}"),
    }
}

/// The next event that matches `predicate` (others are skipped), within [`WAIT`].
pub async fn next_event(
    events: &mut Events,
    what: &str,
    mut predicate: impl FnMut(&ClientEvent) -> bool,
) -> ClientEvent {
    within(what, async {
        loop {
            match events.next().await {
                Some(event) if predicate(&event) => return event,
                Some(_) => {}
                None => panic!("the events stream ended while waiting for {what}"),
            }
        }
    })
    .await
}

/// Asserts that no event matching `predicate` happens within `period`.
pub async fn no_event(
    events: &mut Events,
    period: Duration,
    what: &str,
    mut predicate: impl FnMut(&ClientEvent) -> bool,
) {
    let _ = tokio::time::timeout(period, async {
        while let Some(event) = events.next().await {
            assert!(!predicate(&event), "unexpected {what}: {event:?}");
        }
    })
    .await;
}

/// Fast reconnects, so tests do not wait the default 10–20 s.
pub fn fast_reconnect() -> AutoReconnectOptions {
    AutoReconnectOptions {
        initial_delay: Duration::from_millis(100),
        randomness: Duration::from_millis(50),
        multiplier: 1.5,
        max_delay: Duration::from_secs(2),
    }
}

/// Test options: short ack timeout, fast reconnects, the given heartbeat dialect.
pub fn options(version: ProtocolVersion) -> ClientOptions {
    ClientOptions {
        ack_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(5),
        auto_reconnect_options: fast_reconnect(),
        protocol_version: version,
        ..ClientOptions::default()
    }
}

/// A client that has not started connecting yet, and its events stream (so that no event is
/// missed); the connection starts when this returns.
pub async fn spawn_client(url: &str, options: ClientOptions) -> (Client, Events) {
    let client = Client::spawn(
        url,
        ClientOptions {
            auto_connect: false,
            ..options
        },
    )
    .expect("valid URL and options");
    let events = client.events();
    client.reconnect().await.expect("client running");
    (client, events)
}

/// A connected client and its events stream (from before the connection).
pub async fn connected_client(url: &str, options: ClientOptions) -> (Client, Events) {
    let (client, mut events) = spawn_client(url, options).await;
    next_event(&mut events, "the first connect", |e| {
        matches!(e, ClientEvent::Connect { .. })
    })
    .await;
    (client, events)
}

/// Parses JSON text for comparisons.
pub fn value(json: &sc_client::Json) -> serde_json::Value {
    json.parse().expect("valid JSON")
}
