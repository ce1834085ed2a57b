//! Heartbeats in both dialects, dialect detection in `auto` mode, pong timeouts and the v1
//! `#disconnect` event (docs/protocol.md §6, §10, §16, TV-16, TV-24, TV-27).
//!
//! Timing tests run over in-memory pipes on a paused clock (`start_paused`): deadlines are
//! checked to the millisecond and nothing waits in real time. One test runs end to end over TCP.

mod common;

use std::time::Duration;

use common::{Client, Received, piped_server, start_server};
use sc_protocol::{HeartbeatDialect, ProtocolVersion};
use sc_server::{Server, ServerOptions, SocketState};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

/// Short heartbeats: a ping every 100 ms, silence tolerated for 500 ms.
fn fast(protocol_version: ProtocolVersion) -> ServerOptions {
    ServerOptions {
        protocol_version,
        ping_interval: 100,
        ping_timeout: 500,
        ..Default::default()
    }
}

const INTERVAL: Duration = Duration::from_millis(100);

/// How late a deadline may be observed on the paused clock: pings fall on a grid of 1/16 of the
/// interval (docs/protocol.md §6), and timers round up to the millisecond.
const SLACK: Duration = Duration::from_millis(8);

/// Asserts that `what` happened `expected` after `since` (on the paused clock), at most
/// [`SLACK`] later.
fn assert_at(what: &str, since: Instant, expected: Duration) {
    let elapsed = since.elapsed();
    assert!(
        elapsed + Duration::from_millis(1) >= expected && elapsed <= expected + SLACK,
        "{what} after {elapsed:?}, expected {expected:?}"
    );
}

/// Answers `pings` pings, each with `pong`; every ping must be exactly `ping` and come one
/// interval after the previous one. Callers ask for enough pings to outlast the ping timeout,
/// so the pongs are what keeps the connection alive.
async fn answer_pings<S>(client: &mut Client<S>, pings: usize, ping: &str, pong: &str)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut last = None;
    for n in 0..pings {
        assert_eq!(client.recv_text().await, ping, "ping {n}");
        if let Some(last) = last {
            assert_at(&format!("ping {n}"), last, INTERVAL);
        }
        last = Some(Instant::now());
        client.send_text(pong).await;
    }
}

fn assert_open(server: &Server, id: &str, dialect: HeartbeatDialect) {
    let socket = server.socket(id).expect("the socket is still connected");
    assert_eq!(socket.state(), SocketState::Open);
    assert_eq!(socket.dialect(), Some(dialect));
}

/// End to end over TCP and real time: the paused-clock tests below check the rest.
#[tokio::test]
async fn v2_pings_are_empty_frames_and_empty_pongs_keep_the_socket_alive() {
    let ts = start_server(fast(ProtocolVersion::V2), |_| {}).await;
    let mut client = ts.client().await;
    for n in 0..11 {
        assert_eq!(client.recv_text().await, "", "ping {n}");
        client.send_text("").await;
    }
    assert_open(&ts.server, client.id(), HeartbeatDialect::V2);
}

#[tokio::test(start_paused = true)]
async fn v2_pings_come_every_interval_and_pongs_outlast_the_ping_timeout() {
    let ps = piped_server(fast(ProtocolVersion::V2), |_| {});
    let start = Instant::now();
    let mut client = ps.client().await;
    assert_eq!(client.recv_text().await, "", "the first ping");
    assert_at("the first ping", start, INTERVAL);
    client.send_text("").await;
    answer_pings(&mut client, 10, "", "").await;
    assert!(
        start.elapsed() > Duration::from_millis(500),
        "past the ping timeout"
    );
    assert_open(&ps.server, client.id(), HeartbeatDialect::V2);
}

#[tokio::test(start_paused = true)]
async fn v1_pings_are_hash1_and_hash2_pongs_keep_the_socket_alive() {
    let ps = piped_server(fast(ProtocolVersion::V1), |_| {});
    let start = Instant::now();
    let mut client = ps.client().await;
    answer_pings(&mut client, 11, "#1", "#2").await;
    assert!(
        start.elapsed() > Duration::from_millis(500),
        "past the ping timeout"
    );
    assert_open(&ps.server, client.id(), HeartbeatDialect::V1);
}

#[tokio::test(start_paused = true)]
async fn auto_mode_keeps_a_client_answering_hash2_on_v1() {
    let ps = piped_server(fast(ProtocolVersion::Auto), |_| {});
    let mut client = ps.client().await;
    assert_eq!(
        ps.server.socket(client.id()).map(|s| s.dialect()),
        Some(None),
        "undecided before the first ping"
    );
    // The probe is the v1 ping; a 14.x client answers #2 and keeps getting #1.
    answer_pings(&mut client, 6, "#1", "#2").await;
    assert_open(&ps.server, client.id(), HeartbeatDialect::V1);
}

#[tokio::test(start_paused = true)]
async fn auto_mode_switches_a_client_answering_empty_to_v2() {
    let ps = piped_server(fast(ProtocolVersion::Auto), |_| {});
    let mut client = ps.client().await;
    assert_eq!(client.recv_text().await, "#1", "the probe");
    client.send_text("").await;
    answer_pings(&mut client, 6, "", "").await;
    assert_open(&ps.server, client.id(), HeartbeatDialect::V2);
}

#[tokio::test(start_paused = true)]
async fn auto_mode_settles_on_v2_when_the_probe_is_not_answered() {
    let ps = piped_server(fast(ProtocolVersion::Auto), |_| {});
    let mut client = ps.client().await;
    // A 15+ client sees the probe as a raw message and does not answer; the server follows up
    // with an empty ping when the probe window (half the interval) closes, long before the
    // client's ping timeout.
    assert_eq!(client.recv_text().await, "#1", "the probe");
    let probed = Instant::now();
    assert_eq!(client.recv_text().await, "", "the follow-up ping");
    assert_at("the follow-up ping", probed, INTERVAL / 2);
    client.send_text("").await;
    answer_pings(&mut client, 6, "", "").await;
    assert_open(&ps.server, client.id(), HeartbeatDialect::V2);
}

#[tokio::test(start_paused = true)]
async fn auto_mode_probe_is_sent_one_default_interval_after_connecting() {
    // With the default 8 s interval, nothing at all arrives before it; then the `#1` probe.
    let ps = piped_server(ServerOptions::default(), |_| {});
    let start = Instant::now();
    let mut client = ps.client().await;
    let interval = Duration::from_secs(8);
    // At 8 s the ping grid is 250 ms: the probe may come up to that much later.
    let grid = Duration::from_millis(250);
    let before_due = interval - Duration::from_millis(1) - start.elapsed();
    assert_eq!(client.recv_within(before_due).await, None);
    assert_eq!(
        client.recv_within(grid + SLACK).await,
        Some(Received::Text("#1".to_owned())),
        "the probe"
    );
    client.expect_nothing_before_echo(2).await;
}

/// With no pongs, the socket is closed with 4001 and an empty reason (no event before it, in
/// any dialect: internal closes send no v1 `#disconnect`, docs/protocol.md §10), exactly one
/// ping timeout after the client's last message, and unregistered.
async fn no_pongs_close_4001(protocol_version: ProtocolVersion) {
    let ps = piped_server(
        ServerOptions {
            ping_timeout: 300,
            ..fast(protocol_version)
        },
        |_| {},
    );
    let mut client = ps.client().await;
    let last_message = Instant::now();
    let id = client.id().to_owned();
    assert_eq!(client.expect_close().await, (4001, String::new()));
    assert_at("the close", last_message, Duration::from_millis(300));
    ps.eventually("the socket is unregistered", |s| s.socket(&id).is_none())
        .await;
}

#[tokio::test(start_paused = true)]
async fn no_pongs_close_4001_on_v2() {
    no_pongs_close_4001(ProtocolVersion::V2).await;
}

#[tokio::test(start_paused = true)]
async fn no_pongs_close_4001_on_v1_without_disconnect_event() {
    no_pongs_close_4001(ProtocolVersion::V1).await;
}

#[tokio::test(start_paused = true)]
async fn no_pongs_close_4001_in_auto_mode() {
    no_pongs_close_4001(ProtocolVersion::Auto).await;
}

#[tokio::test(start_paused = true)]
async fn disabled_ping_timeout_sends_no_pings_and_never_times_out() {
    let options = ServerOptions {
        ping_timeout_disabled: true,
        ping_timeout: 200,
        ..fast(ProtocolVersion::V2)
    };
    let ps = piped_server(options, |_| {});
    let mut client = ps.client().await;
    // A whole minute of silence.
    assert_eq!(client.recv_within(Duration::from_secs(60)).await, None);
    client.expect_nothing_before_echo(2).await;
}

#[tokio::test]
async fn v1_client_disconnect_event_closes_with_its_code() {
    for version in [ProtocolVersion::V1, ProtocolVersion::Auto] {
        let ts = start_server(
            ServerOptions {
                protocol_version: version,
                ..Default::default()
            },
            |_| {},
        )
        .await;
        let mut client = ts.client().await;
        client
            .send_text(r##"{"event":"#disconnect","data":{"code":4100,"data":"bye via event"}}"##)
            .await;
        assert_eq!(
            client.expect_close().await,
            (4100, String::new()),
            "{version:?}"
        );
        ts.eventually("the socket is gone", |s| s.clients_count() == 0)
            .await;
    }
}

#[tokio::test]
async fn v2_server_ignores_a_client_disconnect_event() {
    // socketcluster-server 15+ treats #disconnect as an ordinary event (TV-24).
    let ts = start_server(
        ServerOptions {
            protocol_version: ProtocolVersion::V2,
            ..Default::default()
        },
        |_| {},
    )
    .await;
    let mut client = ts.client().await;
    client
        .send_text(r##"{"event":"#disconnect","data":{"code":4100,"data":"bye via event"}}"##)
        .await;
    client.expect_nothing_before_echo(2).await;
    assert_eq!(ts.server.clients_count(), 1);
}

#[tokio::test]
async fn client_disconnect_event_with_a_reserved_code_closes_normally() {
    let ts = start_server(
        ServerOptions {
            protocol_version: ProtocolVersion::V1,
            ..Default::default()
        },
        |_| {},
    )
    .await;
    let mut client = ts.client().await;
    // 1006 cannot be sent in a close frame; the server falls back to 1000.
    client
        .send_text(r##"{"event":"#disconnect","data":{"code":1006}}"##)
        .await;
    assert_eq!(client.expect_close().await, (1000, String::new()));
}

#[tokio::test]
async fn websocket_control_pings_are_answered() {
    let ts = start_server(
        ServerOptions {
            protocol_version: ProtocolVersion::V2,
            ..Default::default()
        },
        |_| {},
    )
    .await;
    let mut client = ts.client().await;
    assert_eq!(
        client.control_ping(b"are you there").await,
        b"are you there"
    );
    client.expect_nothing_before_echo(2).await;
}
