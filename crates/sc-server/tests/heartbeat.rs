//! Heartbeats in both dialects, dialect detection in `auto` mode, pong timeouts and the v1
//! `#disconnect` event (docs/protocol.md §6, §10, §16, TV-16, TV-24, TV-27).

mod common;

use std::time::Duration;

use common::{Client, TestServer, start_server};
use sc_protocol::{HeartbeatDialect, ProtocolVersion};
use sc_server::{ServerOptions, SocketState};

/// Short heartbeats: a ping every 100 ms, silence tolerated for 500 ms.
fn fast(protocol_version: ProtocolVersion) -> ServerOptions {
    ServerOptions {
        protocol_version,
        ping_interval: 100,
        ping_timeout: 500,
        ..Default::default()
    }
}

/// Answers `pings` pings, each with `pong`; every ping must be exactly `ping`. Callers ask for
/// enough pings to outlast the ping timeout, so the pongs are what keeps the connection alive.
async fn answer_pings(client: &mut Client, pings: usize, ping: &str, pong: &str) {
    for n in 0..pings {
        assert_eq!(client.recv_text().await, ping, "ping {n}");
        client.send_text(pong).await;
    }
}

fn assert_open(ts: &TestServer, client: &Client, dialect: HeartbeatDialect) {
    let socket = ts
        .server
        .socket(client.id())
        .expect("the socket is still connected");
    assert_eq!(socket.state(), SocketState::Open);
    assert_eq!(socket.dialect(), Some(dialect));
}

#[tokio::test]
async fn v2_pings_are_empty_frames_and_empty_pongs_keep_the_socket_alive() {
    let ts = start_server(fast(ProtocolVersion::V2), |_| {}).await;
    let mut client = ts.client().await;
    answer_pings(&mut client, 11, "", "").await;
    assert_open(&ts, &client, HeartbeatDialect::V2);
}

#[tokio::test]
async fn v1_pings_are_hash1_and_hash2_pongs_keep_the_socket_alive() {
    let ts = start_server(fast(ProtocolVersion::V1), |_| {}).await;
    let mut client = ts.client().await;
    answer_pings(&mut client, 11, "#1", "#2").await;
    assert_open(&ts, &client, HeartbeatDialect::V1);
}

#[tokio::test]
async fn auto_mode_keeps_a_client_answering_hash2_on_v1() {
    let ts = start_server(fast(ProtocolVersion::Auto), |_| {}).await;
    let mut client = ts.client().await;
    assert_eq!(
        ts.socket(&client).dialect(),
        None,
        "undecided before the first ping"
    );
    // The probe is the v1 ping; a 14.x client answers #2 and keeps getting #1.
    answer_pings(&mut client, 6, "#1", "#2").await;
    assert_open(&ts, &client, HeartbeatDialect::V1);
}

#[tokio::test]
async fn auto_mode_switches_a_client_answering_empty_to_v2() {
    let ts = start_server(fast(ProtocolVersion::Auto), |_| {}).await;
    let mut client = ts.client().await;
    assert_eq!(client.recv_text().await, "#1", "the probe");
    client.send_text("").await;
    answer_pings(&mut client, 6, "", "").await;
    assert_open(&ts, &client, HeartbeatDialect::V2);
}

#[tokio::test]
async fn auto_mode_settles_on_v2_when_the_probe_is_not_answered() {
    let ts = start_server(fast(ProtocolVersion::Auto), |_| {}).await;
    let mut client = ts.client().await;
    // A 15+ client sees the probe as a raw message and does not answer; the server follows up
    // with an empty ping inside the probe window, long before the client's ping timeout.
    assert_eq!(client.recv_text().await, "#1", "the probe");
    answer_pings(&mut client, 6, "", "").await;
    assert_open(&ts, &client, HeartbeatDialect::V2);
}

#[tokio::test]
async fn auto_mode_probe_is_not_sent_before_the_first_interval() {
    // With the default 8 s interval, nothing at all arrives right after the handshake.
    let ts = start_server(ServerOptions::default(), |_| {}).await;
    let mut client = ts.client().await;
    client.expect_nothing_before_echo(2).await;
}

#[tokio::test]
async fn no_pongs_close_4001_on_v2() {
    let ts = start_server(
        ServerOptions {
            ping_timeout: 300,
            ..fast(ProtocolVersion::V2)
        },
        |_| {},
    )
    .await;
    let mut client = ts.client().await;
    let id = client.id().to_owned();
    // Pings, then the close with an empty reason and no event before it.
    assert_eq!(client.expect_close().await, (4001, String::new()));
    ts.eventually("the socket is unregistered", |s| s.socket(&id).is_none())
        .await;
}

#[tokio::test]
async fn no_pongs_close_4001_on_v1_without_disconnect_event() {
    let ts = start_server(
        ServerOptions {
            ping_timeout: 300,
            ..fast(ProtocolVersion::V1)
        },
        |_| {},
    )
    .await;
    let mut client = ts.client().await;
    // Internal closes send no #disconnect (docs/protocol.md §10): only #1 pings before the close.
    assert_eq!(client.expect_close().await, (4001, String::new()));
}

#[tokio::test]
async fn no_pongs_close_4001_in_auto_mode() {
    let ts = start_server(
        ServerOptions {
            ping_timeout: 300,
            ..fast(ProtocolVersion::Auto)
        },
        |_| {},
    )
    .await;
    let mut client = ts.client().await;
    assert_eq!(client.expect_close().await, (4001, String::new()));
}

#[tokio::test]
async fn disabled_ping_timeout_sends_no_pings_and_never_times_out() {
    let options = ServerOptions {
        ping_timeout_disabled: true,
        ping_timeout: 200,
        ..fast(ProtocolVersion::V2)
    };
    let ts = start_server(options, |_| {}).await;
    let mut client = ts.client().await;
    assert_eq!(client.recv_within(Duration::from_millis(700)).await, None);
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
