//! The SocketCluster handshake and the strict-handshake rules (docs/protocol.md §4, TV-16, TV-24).

mod common;

use std::time::Duration;

use common::{Received, handshake_id, piped_server, start_server, v1, v2};
use sc_server::ServerOptions;
use tokio::time::Instant;

#[tokio::test]
async fn handshake_response_is_byte_exact() {
    let ts = start_server(
        ServerOptions {
            ping_timeout: 12_345,
            ..v2()
        },
        |_| {},
    )
    .await;
    let mut client = ts.connect().await;
    client
        .send_text(r##"{"event":"#handshake","data":{"authToken":null},"cid":1}"##)
        .await;
    let response = client.recv_text().await;
    let id = handshake_id(&response);
    assert_eq!(
        response,
        format!(
            r#"{{"rid":1,"data":{{"id":"{id}","pingTimeout":12345,"isAuthenticated":false}}}}"#
        )
    );
    let socket = ts
        .server
        .socket(&id)
        .expect("the id in the response is the server's socket id");
    assert_eq!(socket.id(), id);
    assert_eq!(ts.server.clients_count(), 1);
}

#[tokio::test]
async fn handshake_answers_the_clients_cid_and_accepts_missing_data() {
    let ts = start_server(v2(), |_| {}).await;
    // A reconnecting client's counter keeps going (TV-11 used cid 6); data may be absent.
    let mut client = ts.connect().await;
    client
        .send_text(r##"{"event":"#handshake","cid":6}"##)
        .await;
    let response = client.recv_text().await;
    let id = handshake_id(&response);
    assert_eq!(
        response,
        format!(
            r#"{{"rid":6,"data":{{"id":"{id}","pingTimeout":20000,"isAuthenticated":false}}}}"#
        )
    );
}

#[tokio::test]
async fn every_socket_gets_its_own_id() {
    let ts = start_server(v2(), |_| {}).await;
    let a = ts.client().await;
    let b = ts.client().await;
    assert_ne!(a.id(), b.id());
    assert_eq!(ts.server.clients_count(), 2);
}

#[tokio::test]
async fn batch_starting_with_handshake_is_accepted() {
    let ts = start_server(v2(), |_| {}).await;
    let mut client = ts.connect().await;
    client
        .send_text(r##"[{"event":"#handshake","data":{"authToken":null},"cid":1},{"event":"echo","data":"x","cid":2}]"##)
        .await;
    let response = client.recv_text().await;
    handshake_id(&response);
    assert_eq!(client.recv_text().await, r#"{"rid":2,"data":"x"}"#);
}

#[tokio::test]
async fn repeated_handshake_is_ignored() {
    let ts = start_server(v2(), |_| {}).await;
    let mut client = ts.client().await;
    let id = client.id().to_owned();
    client
        .send_text(r##"{"event":"#handshake","data":{"authToken":null},"cid":2}"##)
        .await;
    // No answer to cid 2: the echo's answer is the next frame.
    client.expect_nothing_before_echo(3).await;
    assert_eq!(ts.server.clients_count(), 1);
    assert!(ts.server.socket(&id).is_some(), "the socket keeps its id");
}

#[tokio::test]
async fn handshake_without_cid_closes_4008() {
    let ts = start_server(v2(), |_| {}).await;
    let mut client = ts.connect().await;
    client
        .send_text(r##"{"event":"#handshake","data":{}}"##)
        .await;
    assert_eq!(client.expect_close().await, (4008, String::new()));
    assert_eq!(ts.server.clients_count(), 0);
}

#[tokio::test]
async fn event_before_handshake_closes_4009() {
    let ts = start_server(v2(), |_| {}).await;
    let mut client = ts.connect().await;
    client
        .send_text(r#"{"event":"echo","data":"too early","cid":1}"#)
        .await;
    assert_eq!(client.expect_close().await, (4009, String::new()));
}

#[tokio::test]
async fn raw_text_before_handshake_closes_4009() {
    let ts = start_server(v2(), |_| {}).await;
    for raw in ["this is raw", "{not json", "\"hello\"", "[1,2]"] {
        let mut client = ts.connect().await;
        client.send_text(raw).await;
        assert_eq!(
            client.expect_close().await,
            (4009, String::new()),
            "after {raw:?}"
        );
    }
}

#[tokio::test]
async fn binary_garbage_before_handshake_closes_4009() {
    let ts = start_server(v2(), |_| {}).await;
    let mut client = ts.connect().await;
    client.send_binary(&[0xff, 0x00, 0x13, 0x37]).await;
    assert_eq!(client.expect_close().await, (4009, String::new()));
}

#[tokio::test]
async fn binary_framed_json_handshake_is_accepted() {
    // Servers decode binary frames as UTF-8 JSON (docs/protocol.md §1.4).
    let ts = start_server(v2(), |_| {}).await;
    let mut client = ts.connect().await;
    client
        .send_binary(br##"{"event":"#handshake","data":{"authToken":null},"cid":1}"##)
        .await;
    handshake_id(&client.recv_text().await);
    client
        .send_binary(br#"{"event":"echo","data":[1],"cid":2}"#)
        .await;
    assert_eq!(client.recv_text().await, r#"{"rid":2,"data":[1]}"#);
}

#[tokio::test]
async fn pong_before_handshake_closes_4009() {
    for (options, pong) in [
        (v2(), ""),
        (ServerOptions::default(), ""),
        (v1(), "#2"),
        (ServerOptions::default(), "#2"),
    ] {
        let ts = start_server(options, |_| {}).await;
        let mut client = ts.connect().await;
        client.send_text(pong).await;
        assert_eq!(
            client.expect_close().await,
            (4009, String::new()),
            "after {pong:?}"
        );
    }
}

#[tokio::test]
async fn authenticate_without_cid_closes_4008() {
    let ts = start_server(v2(), |_| {}).await;
    let mut client = ts.client().await;
    client
        .send_text(r##"{"event":"#authenticate","data":"x"}"##)
        .await;
    assert_eq!(client.expect_close().await, (4008, String::new()));
}

/// The handshake deadline, on the paused clock: the close comes exactly this long after the
/// connection opened.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(200);

fn handshake_timeout(options: ServerOptions) -> ServerOptions {
    ServerOptions {
        handshake_timeout: HANDSHAKE_TIMEOUT.as_millis() as u64,
        ..options
    }
}

/// Asserts that the close came one handshake timeout after `opened` (to the millisecond timers
/// round to).
fn assert_closed_on_time(opened: Instant) {
    let elapsed = opened.elapsed();
    assert!(
        elapsed >= HANDSHAKE_TIMEOUT && elapsed <= HANDSHAKE_TIMEOUT + Duration::from_millis(2),
        "closed after {elapsed:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn no_handshake_closes_4005() {
    let ps = piped_server(handshake_timeout(v2()), |_| {});
    let opened = Instant::now();
    let mut client = ps.connect().await;
    // v2: no #disconnect event, empty reason (TV-24).
    assert_eq!(client.expect_close().await, (4005, String::new()));
    assert_closed_on_time(opened);
}

#[tokio::test(start_paused = true)]
async fn no_handshake_on_v1_announces_4005_with_disconnect_event() {
    let ps = piped_server(handshake_timeout(v1()), |_| {});
    let opened = Instant::now();
    let mut client = ps.connect().await;
    // v1: the #disconnect event first, then the close with an empty reason (TV-16).
    assert_eq!(
        client.recv_text().await,
        r##"{"event":"#disconnect","data":{"code":4005}}"##
    );
    assert_eq!(client.expect_close().await, (4005, String::new()));
    assert_closed_on_time(opened);
}

#[tokio::test(start_paused = true)]
async fn handshake_in_time_is_not_closed_by_the_handshake_timer() {
    let ps = piped_server(handshake_timeout(v2()), |_| {});
    let mut client = ps.client().await;
    // Ten handshake timeouts of silence (the ping timeout is far longer).
    assert_eq!(
        client.recv_within(HANDSHAKE_TIMEOUT * 10).await,
        None::<Received>
    );
    client.expect_nothing_before_echo(2).await;
}

#[tokio::test]
async fn connection_handler_runs_after_the_handshake_response() {
    let ts = start_server(v2(), |server| {
        server.on_connection(|socket: sc_server::Socket| async move {
            socket
                .emit("welcome", &serde_json::json!({ "id": socket.id() }))
                .unwrap();
        });
    })
    .await;
    let mut client = ts.connect().await;
    client
        .send_text(r##"{"event":"#handshake","data":{"authToken":null},"cid":1}"##)
        .await;
    let id = handshake_id(&client.recv_text().await);
    assert_eq!(
        client.recv_text().await,
        format!(r#"{{"event":"welcome","data":{{"id":"{id}"}}}}"#)
    );
}

#[tokio::test]
async fn events_wait_for_a_slow_connection_handler() {
    let ts = start_server(v2(), |server| {
        server.on_connection(|socket: sc_server::Socket| async move {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            socket
                .on("late", |_req: sc_server::Request| async move {
                    sc_server::Reply::json("registered in time")
                })
                .unwrap();
        });
    })
    .await;
    let mut client = ts.connect().await;
    // The request travels with the handshake; it is processed once the handler is done.
    client
        .send_text(r##"[{"event":"#handshake","data":{"authToken":null},"cid":1},{"event":"late","cid":2}]"##)
        .await;
    handshake_id(&client.recv_text().await);
    assert_eq!(
        client.recv_text().await,
        r#"{"rid":2,"data":"registered in time"}"#
    );
}
