//! What only the client's integration tests share: servers to talk to (the Node reference
//! fixture, a scripted fake WebSocket server, a TCP proxy), the scenarios run against every
//! server, and waits on a client's events. The in-process Rust server with the interop fixture's
//! handlers, bounded waits and test client options are `sc_test_support`'s, re-exported here.
//!
//! Every wait is bounded by [`WAIT`]: a test that expects something fails with a message
//! instead of hanging.

#![allow(dead_code, unreachable_pub, unused_imports)] // Each test binary uses a different subset.

pub mod fake;
pub mod node;
pub mod proxy;
pub mod scenarios;

use std::time::Duration;

use futures_util::StreamExt;
use sc_client::{Client, ClientEvent, ClientOptions, Events};

pub use sc_test_support::client::{fast_reconnect, options};
pub use sc_test_support::wait::{WAIT, within};

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
