//! What a misbehaving client can do to the server: oversized and malformed frames, junk after
//! the handshake, and not reading at all (docs/protocol.md §1.4, §2.1, §3.5; bounded queues).

mod common;

use std::time::Duration;

use common::{Received, WAIT, start_server, v2};
use sc_protocol::Json;
use sc_server::ServerOptions;

#[tokio::test]
async fn frame_above_max_payload_closes_1009_and_spares_the_others() {
    let ts = start_server(
        ServerOptions {
            max_payload: 1024,
            ..v2()
        },
        |_| {},
    )
    .await;
    let mut other = ts.client().await;
    let mut client = ts.client().await;
    // Exactly at the limit is fine.
    let at_limit = format!(
        r#"{{"event":"echo","data":"{}","cid":2}}"#,
        "a".repeat(1024 - 34)
    );
    assert_eq!(at_limit.len(), 1024);
    client.send_text(&at_limit).await;
    assert!(
        client
            .recv_text()
            .await
            .starts_with(r#"{"rid":2,"data":"aaa"#)
    );

    client
        .send_text(&format!(
            r#"{{"event":"echo","data":"{}","cid":3}}"#,
            "a".repeat(4000)
        ))
        .await;
    match client.recv().await {
        Received::Close(code, _) => assert_eq!(code, 1009),
        other => panic!("expected close 1009, got {other:?}"),
    }
    ts.eventually("the oversized client is gone", |s| s.clients_count() == 1)
        .await;
    other.expect_nothing_before_echo(2).await;
}

#[tokio::test]
async fn invalid_utf8_text_frame_closes_1007_and_spares_the_others() {
    let ts = start_server(v2(), |_| {}).await;
    let mut other = ts.client().await;
    let mut client = ts.client().await;
    client
        .send_invalid_text(b"{\"event\":\"echo\",\"data\":\"\xff\xfe\",\"cid\":2}")
        .await;
    match client.recv().await {
        Received::Close(code, _) => assert_eq!(code, 1007),
        other => panic!("expected close 1007, got {other:?}"),
    }
    ts.eventually("the client is gone", |s| s.clients_count() == 1)
        .await;
    other.expect_nothing_before_echo(2).await;
}

#[tokio::test]
async fn junk_after_the_handshake_is_raw_and_never_answered() {
    let ts = start_server(v2(), |_| {}).await;
    let mut client = ts.client().await;
    for junk in [
        "just some raw text",
        "{\"bad json",
        "\"hello\"",
        "123",
        "null",
        "{}",
        r#"{"x":1,"cid":5}"#,
        r#"{"event":5,"cid":6}"#,
        r#"{"rid":"1"}"#,
        "[5, \"x\"]",
        "#1",
        "#2",
    ] {
        client.send_text(junk).await;
    }
    client.send_binary(&[0xff, 0x00, 0x13, 0x37]).await;
    // A batch mixing junk and a request: the request is still answered.
    client
        .send_text(r#"[7, {"event":"echo","data":"in batch","cid":9}]"#)
        .await;
    assert_eq!(client.recv_text().await, r#"{"rid":9,"data":"in batch"}"#);
    client.expect_nothing_before_echo(10).await;
    assert_eq!(ts.server.clients_count(), 1);
}

#[tokio::test]
async fn response_to_nothing_is_ignored() {
    let ts = start_server(v2(), |_| {}).await;
    let mut client = ts.client().await;
    client
        .send_text(r#"{"rid":99,"data":"nobody asked"}"#)
        .await;
    client
        .send_text(r#"{"rid":98,"error":{"message":"nobody asked"}}"#)
        .await;
    client.expect_nothing_before_echo(2).await;
}

#[tokio::test]
async fn slow_consumer_is_dropped_while_others_get_every_message() {
    const LIMIT: usize = 8;
    const MAX_MESSAGES: usize = 1000;
    let ts = start_server(
        ServerOptions {
            outbound_queue_limit: LIMIT,
            ..v2()
        },
        |_| {},
    )
    .await;
    let mut reader = ts.client().await;
    let mut slow = ts.client().await;
    reader.subscribe("big", 2).await;
    slow.subscribe("big", 2).await;
    let slow_socket = ts.socket(&slow);
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
    slow_socket.on_disconnect(move |code, _| {
        let _ = closed_tx.send(code.0);
    });

    // From here on `slow` never reads. Publish 256 KiB messages in lockstep with `reader`, so its
    // queue never holds more than one, until the slow socket's buffers and queue are full.
    let exchange = ts.server.exchange();
    let padding = "x".repeat(256 * 1024);
    let mut sent = 0;
    let mut overflowed = false;
    while sent < MAX_MESSAGES {
        let data = Json::from_text(&format!(r#"{{"n":{sent},"pad":"{padding}"}}"#)).unwrap();
        exchange.publish_json("big", Some(&data)).await.unwrap();
        let frame = reader.recv_text().await;
        let expected = format!(
            r##"{{"event":"#publish","data":{{"channel":"big","data":{}}}}}"##,
            data.get()
        );
        assert!(
            frame == expected,
            "message {sent} arrived intact and in order"
        );
        sent += 1;
        // Once the queue overflowed, the socket refuses further frames.
        if slow_socket.emit("probe", &sent).is_err() {
            overflowed = true;
            break;
        }
    }
    assert!(
        overflowed,
        "the slow consumer's queue never overflowed after {sent} messages of 256 KiB"
    );

    let code = tokio::time::timeout(WAIT, closed_rx)
        .await
        .expect("the slow consumer is closed in time");
    assert_eq!(code, Ok(4100));
    ts.eventually("the slow consumer left the channel", |s| {
        s.exchange().subscriber_count("big") == 1
    })
    .await;
    assert_eq!(ts.server.clients_count(), 1);

    // The reader is unaffected (a burst below the queue limit).
    for n in 0..LIMIT - 1 {
        exchange.publish("big", &n).await.unwrap();
    }
    for n in 0..LIMIT - 1 {
        assert_eq!(
            reader.recv_text().await,
            format!(r##"{{"event":"#publish","data":{{"channel":"big","data":{n}}}}}"##)
        );
    }

    // The slow client, reading at last, finds fewer messages than were published, then the end.
    let mut delivered = 0;
    loop {
        match slow.recv_within(Duration::from_secs(5)).await {
            Some(Received::Text(text)) if text.starts_with(r##"{"event":"#publish""##) => {
                delivered += 1
            }
            Some(Received::Text(_)) => {}
            Some(Received::Close(..) | Received::Ended | Received::Error(_)) => break,
            Some(Received::Binary(_)) | None => {
                panic!("the slow consumer's connection should have ended")
            }
        }
    }
    assert!(
        delivered < sent,
        "{delivered} of {sent} messages reached the slow consumer"
    );
}
