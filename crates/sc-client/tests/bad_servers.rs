//! Bad input: bad URLs, servers that are not SocketCluster, handshakes that go wrong, frames
//! that are malformed or too big, silent servers. Every case is a typed error and the reconnect
//! rules, never a panic. Also the wire details only a scripted server can see: call ids across
//! reconnects, the outbound queue, auth plumbing.

mod common;

use std::time::Duration;

use common::fake::{FakeServer, Received};
use common::{connected_client, next_event, no_event, options, spawn_client, value, within};
use futures_util::StreamExt;
use sc_client::{
    AuthState, BadConnectionKind, ChannelState, Client, ClientError, ClientEvent, ClientOptions,
    ConnectionError, InvokeError, Json, MemoryTokenStore, ProtocolVersion, ScError,
    SubscribeOptions,
};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn v2() -> ClientOptions {
    options(ProtocolVersion::V2)
}

#[tokio::test]
async fn bad_urls_are_typed_errors() {
    for url in [
        "",
        "localhost:8000",
        "ws://",
        "ws://host:99999/",
        "ws://ho st/",
    ] {
        let result = Client::connect(url, ClientOptions::default()).await;
        assert!(
            matches!(result, Err(ClientError::InvalidUrl { .. })),
            "{url:?}: {result:?}"
        );
    }
    let result = Client::spawn("wss://example.com/socketcluster/", ClientOptions::default());
    assert!(matches!(result, Err(ClientError::UnsupportedScheme { scheme }) if scheme == "wss"));
    let result = Client::spawn(
        "ws://h/",
        ClientOptions {
            channel_buffer: 0,
            ..ClientOptions::default()
        },
    );
    assert!(matches!(result, Err(ClientError::InvalidOptions(_))));
}

#[test]
fn outside_a_runtime_is_an_error_not_a_panic() {
    let result = Client::spawn("ws://127.0.0.1:1/socketcluster/", ClientOptions::default());
    assert!(matches!(result, Err(ClientError::NoRuntime)));
}

#[tokio::test]
async fn connection_refused() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    };
    let result = Client::connect(&format!("ws://127.0.0.1:{port}/socketcluster/"), v2()).await;
    match result {
        Err(ClientError::Connect(ConnectionError::Io { kind, .. })) => {
            assert_eq!(kind, std::io::ErrorKind::ConnectionRefused);
        }
        other => panic!("expected a refused connection, got {other:?}"),
    }
}

/// A plain HTTP server (no WebSocket at all) answering 404, as a static file server would.
#[tokio::test]
async fn plain_http_server_is_not_socketcluster() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/socketcluster/", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let mut requests = 0;
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = vec![0u8; 4096];
            let _ = stream.read(&mut buf).await;
            requests += 1;
            let body = "Not Found";
            let response = format!(
                "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            if requests == 2 {
                return requests;
            }
        }
        requests
    });

    let result = Client::connect(&url, v2()).await;
    assert_eq!(
        result.err(),
        Some(ClientError::Connect(ConnectionError::HttpStatus {
            status: 404
        }))
    );

    // In the background the client keeps trying, with backoff.
    let (client, mut events) = spawn_client(&url, v2()).await;
    let error = next_event(&mut events, "an Error", |e| {
        matches!(e, ClientEvent::Error(_))
    })
    .await;
    assert_eq!(
        error,
        ClientEvent::Error(ConnectionError::HttpStatus { status: 404 })
    );
    let abort = next_event(&mut events, "ConnectAbort", |e| {
        matches!(e, ClientEvent::ConnectAbort { .. })
    })
    .await;
    assert_eq!(
        abort,
        ClientEvent::ConnectAbort {
            code: 1006,
            reason: "Socket hung up".into()
        }
    );
    let scheduled = next_event(&mut events, "a reconnect", |e| {
        matches!(e, ClientEvent::ReconnectScheduled { .. })
    })
    .await;
    assert!(matches!(
        scheduled,
        ClientEvent::ReconnectScheduled { attempt: 1, .. }
    ));
    assert_eq!(within("the second request", server).await.unwrap(), 2);
    drop(client);
}

/// A WebSocket server that is not SocketCluster (it echoes): the client's own `#handshake`
/// comes back as a server invoke nobody answers, so the handshake times out (4003).
#[tokio::test]
async fn echo_websocket_server_times_out_the_handshake() {
    let mut fake = FakeServer::start().await;
    let options = ClientOptions {
        ack_timeout: Duration::from_millis(300),
        ..v2()
    };
    let (_client, mut events) = spawn_client(&fake.url(), options).await;
    let mut conn = fake.next_conn().await;
    let Received::Text(handshake) = conn.recv().await else {
        panic!("expected the handshake")
    };
    conn.send(&handshake).await;
    let error = next_event(&mut events, "an Error", |e| {
        matches!(e, ClientEvent::Error(_))
    })
    .await;
    assert_eq!(
        error,
        ClientEvent::Error(ConnectionError::HandshakeTimeout(Duration::from_millis(
            300
        )))
    );
    let abort = next_event(&mut events, "ConnectAbort", |e| {
        matches!(e, ClientEvent::ConnectAbort { .. })
    })
    .await;
    assert_eq!(
        abort,
        ClientEvent::ConnectAbort {
            code: 4003,
            reason: "Failed to complete handshake".into()
        }
    );
    assert_eq!(conn.expect_close().await.0, 4003);
    next_event(&mut events, "a reconnect", |e| {
        matches!(e, ClientEvent::ReconnectScheduled { .. })
    })
    .await;
}

#[tokio::test]
async fn garbage_handshake_responses() {
    let mut fake = FakeServer::start().await;
    let options = ClientOptions {
        ack_timeout: Duration::from_secs(2),
        ..v2()
    };
    let (_client, mut events) = spawn_client(&fake.url(), options).await;

    for garbage in [
        r#"{"rid":CID,"data":"garbage"}"#,
        r#"{"rid":CID}"#,
        r#"{"rid":CID,"data":{"id":42}}"#,
    ] {
        let mut conn = fake.next_conn().await;
        let (cid, _) = conn.read_handshake().await;
        conn.send("not json at all").await; // a raw message first: harmless
        conn.send(&garbage.replace("CID", &cid.to_string())).await;
        let raw = next_event(&mut events, "Raw", |e| matches!(e, ClientEvent::Raw(_))).await;
        assert_eq!(raw, ClientEvent::Raw("not json at all".into()));
        let error = next_event(&mut events, "an Error", |e| {
            matches!(e, ClientEvent::Error(_))
        })
        .await;
        assert!(
            matches!(
                error,
                ClientEvent::Error(ConnectionError::InvalidHandshakeResponse(_))
            ),
            "{error:?}"
        );
        let abort = next_event(&mut events, "ConnectAbort", |e| {
            matches!(e, ClientEvent::ConnectAbort { .. })
        })
        .await;
        assert!(matches!(
            abort,
            ClientEvent::ConnectAbort { code: 4003, .. }
        ));
        assert_eq!(conn.expect_close().await.0, 4003);
    }
}

#[tokio::test]
async fn server_closing_mid_handshake() {
    let mut fake = FakeServer::start().await;
    let url = fake.url();
    let connecting = tokio::spawn(async move { Client::connect(&url, v2()).await });
    let mut conn = fake.next_conn().await;
    conn.read_handshake().await;
    conn.close(4321, "bye").await;
    let result = within("connect to fail", connecting).await.unwrap();
    assert_eq!(
        result.err(),
        Some(ClientError::Connect(
            ConnectionError::ClosedDuringHandshake {
                code: 4321,
                reason: "bye".into()
            }
        ))
    );

    // Dropping TCP without a close frame: 1006.
    let (_client, mut events) = spawn_client(&fake.url(), v2()).await;
    let mut conn = fake.next_conn().await;
    conn.read_handshake().await;
    conn.drop_tcp();
    let abort = next_event(&mut events, "ConnectAbort", |e| {
        matches!(e, ClientEvent::ConnectAbort { .. })
    })
    .await;
    assert!(
        matches!(abort, ClientEvent::ConnectAbort { code: 1006, .. }),
        "{abort:?}"
    );
}

#[tokio::test]
async fn handshake_rejections_follow_the_reconnect_rule() {
    let mut fake = FakeServer::start().await;
    let (_client, mut events) = spawn_client(&fake.url(), v2()).await;

    // v14 style: the code in `data.code`; 4008 reconnects with backoff.
    let mut conn = fake.next_conn().await;
    let (cid, _) = conn.read_handshake().await;
    conn.send(&format!(
        r#"{{"rid":{cid},"error":{{"message":"SC handshake rejected","name":"HandshakeRejectError"}},"data":{{"code":4008}}}}"#
    ))
    .await;
    let error = next_event(&mut events, "an Error", |e| {
        matches!(e, ClientEvent::Error(_))
    })
    .await;
    let ClientEvent::Error(ConnectionError::HandshakeRejected { error, code }) = error else {
        panic!("{error:?}")
    };
    assert_eq!((error.name(), code), (Some("HandshakeRejectError"), 4008));
    assert_eq!(conn.expect_close().await.0, 4008);
    next_event(&mut events, "a reconnect", |e| {
        matches!(e, ClientEvent::ReconnectScheduled { .. })
    })
    .await;

    // v15+ style with a permanent code: no reconnect.
    let mut conn = fake.next_conn().await;
    let (cid, _) = conn.read_handshake().await;
    conn.send(&format!(r#"{{"rid":{cid},"error":{{"message":"SC handshake rejected with custom code","statusCode":4501}}}}"#))
        .await;
    let abort = next_event(&mut events, "ConnectAbort", |e| {
        matches!(e, ClientEvent::ConnectAbort { .. })
    })
    .await;
    assert!(matches!(
        abort,
        ClientEvent::ConnectAbort { code: 4501, .. }
    ));
    assert_eq!(conn.expect_close().await.0, 4501);
    no_event(
        &mut events,
        Duration::from_millis(500),
        "a reconnect after 4501",
        |e| matches!(e, ClientEvent::ReconnectScheduled { .. }),
    )
    .await;
}

#[tokio::test]
async fn oversized_frame_closes_1009_and_reconnects() {
    let mut fake = FakeServer::start().await;
    let options = ClientOptions {
        max_payload: 1024,
        ..v2()
    };
    let (client, mut events) = spawn_client(&fake.url(), options).await;
    let mut conn = fake.next_conn().await;
    conn.handshake("a", 30_000, false).await;
    next_event(&mut events, "Connect", |e| {
        matches!(e, ClientEvent::Connect { .. })
    })
    .await;

    conn.send(&format!(
        r#"{{"event":"big","data":"{}"}}"#,
        "x".repeat(5000)
    ))
    .await;
    let error = next_event(&mut events, "an Error", |e| {
        matches!(e, ClientEvent::Error(_))
    })
    .await;
    assert!(
        matches!(
            error,
            ClientEvent::Error(ConnectionError::WebSocket { code: 1009, .. })
        ),
        "{error:?}"
    );
    let event = next_event(&mut events, "Disconnect", |e| {
        matches!(e, ClientEvent::Disconnect { .. })
    })
    .await;
    assert_eq!(
        event,
        ClientEvent::Disconnect {
            code: 1009,
            reason: "Message was too big to process".into()
        }
    );
    assert_eq!(conn.expect_close().await.0, 1009);

    let mut conn = fake.next_conn().await;
    conn.handshake("b", 30_000, false).await;
    within("reconnected", client.connected()).await.unwrap();
    assert_eq!(client.id().as_deref(), Some("b"));
}

#[tokio::test]
async fn invalid_utf8_closes_1007() {
    let mut fake = FakeServer::start().await;
    let (_client, mut events) = spawn_client(&fake.url(), v2()).await;
    let mut conn = fake.next_conn().await;
    conn.handshake("a", 30_000, false).await;
    next_event(&mut events, "Connect", |e| {
        matches!(e, ClientEvent::Connect { .. })
    })
    .await;
    conn.send_text_bytes(vec![b'{', 0xff, 0xfe, b'}']).await;
    let event = next_event(&mut events, "Disconnect", |e| {
        matches!(e, ClientEvent::Disconnect { .. })
    })
    .await;
    assert!(
        matches!(event, ClientEvent::Disconnect { code: 1007, .. }),
        "{event:?}"
    );
}

/// Malformed frames of every kind are raw messages or ignored; the connection carries on.
#[tokio::test]
async fn malformed_frames_do_not_hurt() {
    let mut fake = FakeServer::start().await;
    let (client, mut events) = spawn_client(&fake.url(), options(ProtocolVersion::V1)).await;
    let mut conn = fake.next_conn().await;
    conn.handshake("a", 30_000, false).await;
    next_event(&mut events, "Connect", |e| {
        matches!(e, ClientEvent::Connect { .. })
    })
    .await;
    let mut channel = client.subscribe("c").await.unwrap();
    let subscribe = conn.recv_json().await;
    conn.send(&format!(r#"{{"rid":{}}}"#, subscribe["cid"]))
        .await;
    within("subscribed", channel.subscribed()).await.unwrap();

    for frame in [
        r#"{"bad json"#,
        "[1,2,3]",
        r#"{"rid":"1"}"#,
        r#"{"event":5,"cid":1}"#,
        r#"{"rid":99999,"data":1}"#,
        r#"{"rid":1e400}"#,
        r##"{"event":"#publish","data":{"channel":5,"data":1}}"##,
        r##"{"event":"#publish","data":"c"}"##,
        r##"{"event":"#publish"}"##,
        r##"{"event":"#kickOut","data":null}"##,
        r##"{"event":"#kickOut","data":{"channel":"unknown","message":1}}"##,
        r##"{"event":"#setAuthToken","data":{"token":7}}"##,
        r##"{"event":"#disconnect","data":{"code":"x"}}"##,
        "",
        "#2",
        "[]",
        "null",
        r##"[{"event":"#publish","data":{"channel":"c","data":"in a batch"}},{"nope":1}]"##,
    ] {
        conn.send(frame).await;
    }
    conn.send_binary(vec![0, 159, 146, 150]).await;
    // A #setAuthToken request without a token is answered with an error.
    conn.send(r##"{"event":"#setAuthToken","data":{"token":7},"cid":3}"##)
        .await;
    let answer = conn.recv_json().await;
    assert_eq!(
        answer,
        json!({"rid":3,"error":{"message":"No token data provided by #setAuthToken event","name":"InvalidMessageError"}})
    );

    let got = within("the batched publication", channel.next())
        .await
        .unwrap();
    assert_eq!(got.get(), r#""in a batch""#);
    assert_eq!(client.state(), sc_client::ConnectionState::Open);
    // #disconnect with an impossible code is 1000 for a v1 client.
    conn.send(r##"{"event":"#disconnect","data":{"code":1e9}}"##)
        .await;
    let event = next_event(&mut events, "Disconnect", |e| {
        matches!(e, ClientEvent::Disconnect { .. })
    })
    .await;
    assert!(
        matches!(event, ClientEvent::Disconnect { code: 1000, .. }),
        "{event:?}"
    );
    assert_eq!(client.auth_state(), AuthState::Unauthenticated);
}

/// v1 servers announce their close with a `#disconnect` event carrying code and reason.
#[tokio::test]
async fn v1_disconnect_event() {
    let mut fake = FakeServer::start().await;
    let (_client, mut events) = spawn_client(&fake.url(), options(ProtocolVersion::V1)).await;
    let mut conn = fake.next_conn().await;
    conn.handshake("a", 30_000, false).await;
    next_event(&mut events, "Connect", |e| {
        matches!(e, ClientEvent::Connect { .. })
    })
    .await;
    conn.send(r##"{"event":"#disconnect","data":{"code":4321,"data":"dropped by server"}}"##)
        .await;
    let event = next_event(&mut events, "Disconnect", |e| {
        matches!(e, ClientEvent::Disconnect { .. })
    })
    .await;
    assert_eq!(
        event,
        ClientEvent::Disconnect {
            code: 4321,
            reason: "dropped by server".into()
        }
    );
    assert_eq!(conn.expect_close().await.0, 4321);
    // Backoff reconnect (4321 < 4500).
    fake.next_conn().await.read_handshake().await;
}

/// No ping within the server's pingTimeout: the client closes with 4000 and reconnects at once.
#[tokio::test]
async fn ping_timeout_closes_4000() {
    let mut fake = FakeServer::start().await;
    let (_client, mut events) = spawn_client(&fake.url(), v2()).await;
    let mut conn = fake.next_conn().await;
    conn.handshake("a", 300, false).await;
    let connect = next_event(&mut events, "Connect", |e| {
        matches!(e, ClientEvent::Connect { .. })
    })
    .await;
    assert!(
        matches!(connect, ClientEvent::Connect { ping_timeout, .. } if ping_timeout == Duration::from_millis(300))
    );
    // A ping keeps it alive, and is answered.
    tokio::time::sleep(Duration::from_millis(150)).await;
    conn.send("").await;
    assert_eq!(conn.recv().await, Received::Text(String::new()));

    let error = next_event(&mut events, "an Error", |e| {
        matches!(e, ClientEvent::Error(_))
    })
    .await;
    assert_eq!(
        error,
        ClientEvent::Error(ConnectionError::PingTimeout(Duration::from_millis(300)))
    );
    let event = next_event(&mut events, "Disconnect", |e| {
        matches!(e, ClientEvent::Disconnect { .. })
    })
    .await;
    assert_eq!(
        event,
        ClientEvent::Disconnect {
            code: 4000,
            reason: "Server ping timed out".into()
        }
    );
    assert_eq!(conn.expect_close().await.0, 4000);
    let event = next_event(&mut events, "ReconnectScheduled", |e| {
        matches!(e, ClientEvent::ReconnectScheduled { .. })
    })
    .await;
    assert_eq!(
        event,
        ClientEvent::ReconnectScheduled {
            delay: Duration::ZERO,
            attempt: 1
        }
    );
    fake.next_conn().await.read_handshake().await;
}

/// Call ids count on across reconnects; pending calls fail with BadConnectionError.
#[tokio::test]
async fn cids_survive_reconnects_and_pending_calls_fail() {
    let mut fake = FakeServer::start().await;
    let (client, mut events) = spawn_client(&fake.url(), v2()).await;
    let mut conn = fake.next_conn().await;
    let (cid, token) = conn.handshake("a", 30_000, false).await;
    assert_eq!((cid, token), (1, serde_json::Value::Null));
    within("open", client.connected()).await.unwrap();

    let pending = {
        let client = client.clone();
        tokio::spawn(async move { client.invoke("slow", json!({"n": 1})).await })
    };
    let frame = conn.recv_json().await;
    assert_eq!(frame, json!({"event":"slow","data":{"n":1},"cid":2}));
    client.emit("fire", ()).await.unwrap();
    assert_eq!(conn.recv_json().await, json!({"event":"fire","data":null}));

    conn.close(4321, "dropped by server").await;
    let result = within("the pending invoke", pending).await.unwrap();
    assert_eq!(
        result,
        Err(InvokeError::BadConnection {
            event: "slow".into(),
            kind: BadConnectionKind::Disconnect,
            code: 4321,
            reason: "dropped by server".into()
        })
    );
    next_event(&mut events, "Disconnect", |e| {
        matches!(e, ClientEvent::Disconnect { code: 4321, .. })
    })
    .await;

    let mut conn = fake.next_conn().await;
    let (cid, _) = conn.read_handshake().await;
    assert_eq!(cid, 3, "the cid counter survives the reconnect");
}

/// Events emitted while connecting wait in the queue: sent after the handshake, or failed with
/// a timeout if the handshake takes longer than their ack timeout.
#[tokio::test]
async fn outbound_queue_flushes_after_handshake_or_times_out() {
    let mut fake = FakeServer::start().await;
    let (client, _events) = spawn_client(&fake.url(), v2()).await;
    let mut conn = fake.next_conn().await;
    let (cid, _) = conn.read_handshake().await;

    let early = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .invoke_with_timeout("early", 1, Duration::from_millis(100))
                .await
        })
    };
    let queued = {
        let client = client.clone();
        tokio::spawn(async move { client.invoke("queued", 2).await })
    };
    assert_eq!(
        within("the early call", early).await.unwrap(),
        Err(InvokeError::Timeout {
            event: "early".into()
        })
    );

    conn.send(&format!(
        r#"{{"rid":{cid},"data":{{"id":"a","pingTimeout":30000,"isAuthenticated":false}}}}"#
    ))
    .await;
    let frame = conn.recv_json().await;
    assert_eq!(
        frame["event"], "queued",
        "only the call still waiting is sent: {frame}"
    );
    conn.send(&format!(r#"{{"rid":{},"data":"done"}}"#, frame["cid"]))
        .await;
    let answer = within("the queued call", queued).await.unwrap().unwrap();
    assert_eq!(
        answer.map(|d| d.get().to_owned()).as_deref(),
        Some(r#""done""#)
    );
}

/// A connection attempt that fails aborts the queued events (BadConnectionError connectAbort).
#[tokio::test]
async fn queued_events_fail_when_the_attempt_fails() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    };
    let client = Client::spawn(
        &format!("ws://127.0.0.1:{port}/socketcluster/"),
        ClientOptions {
            auto_connect: false,
            ..v2()
        },
    )
    .unwrap();
    let result = within("the invoke", client.invoke("echo", 1)).await;
    assert!(
        matches!(
            &result,
            Err(InvokeError::BadConnection {
                kind: BadConnectionKind::ConnectAbort,
                code: 1006,
                ..
            })
        ),
        "{result:?}"
    );
    assert_eq!(
        result.unwrap_err().to_sc_error().name(),
        Some("BadConnectionError")
    );
}

/// Server invokes: a procedure's answer or error goes back as `{"rid":…}`; without a procedure
/// nothing is answered; receivers get transmits.
#[tokio::test]
async fn server_invokes_and_transmits() {
    let mut fake = FakeServer::start().await;
    let (client, _events) = spawn_client(&fake.url(), v2()).await;
    client.procedure("add", |data: Option<Json>| async move {
        let [a, b]: [i64; 2] = data
            .ok_or_else(|| ScError::message_only("no data"))?
            .parse()
            .map_err(|_| ScError::new("ClientError", "I refuse"))?;
        Ok(Some(Json::encode(&(a + b)).unwrap()))
    });
    let mut news = client.receiver("news");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen_by_handler = seen.clone();
    client.on("news", move |data| {
        seen_by_handler.lock().unwrap().push(data.get().to_owned())
    });

    let mut conn = fake.next_conn().await;
    conn.handshake("a", 30_000, false).await;
    within("open", client.connected()).await.unwrap();

    conn.send(r#"{"event":"add","cid":1,"data":[2,3]}"#).await;
    assert_eq!(conn.recv_json().await, json!({"rid":1,"data":5}));
    conn.send(r#"{"event":"add","cid":2,"data":"x"}"#).await;
    assert_eq!(
        conn.recv_json().await,
        json!({"rid":2,"error":{"message":"I refuse","name":"ClientError"}})
    );
    conn.send(r#"{"event":"unknownProcedure","cid":3}"#).await;
    conn.send(r#"{"event":"add","cid":4,"data":[1,1]}"#).await;
    assert_eq!(
        conn.recv_json().await,
        json!({"rid":4,"data":2}),
        "cid 3 is never answered"
    );

    conn.send(r#"{"event":"news","data":{"hello":"world"}}"#)
        .await;
    conn.send(r#"{"event":"news"}"#).await;
    assert_eq!(
        value(&within("a transmit", news.next()).await.unwrap()),
        json!({"hello":"world"})
    );
    assert_eq!(
        within("a transmit without data", news.next())
            .await
            .unwrap(),
        Json::NULL
    );
    within("the handler", async {
        while seen.lock().unwrap().len() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(*seen.lock().unwrap(), [r#"{"hello":"world"}"#, "null"]);
}

/// The token store: replayed at the handshake, saved on `#setAuthToken` (answered when asked),
/// removed on `#removeAuthToken`; `authenticate` / `deauthenticate`; `waitForAuth` channels wait
/// for authentication.
#[tokio::test]
async fn auth_plumbing() {
    let token = "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VybmFtZSI6ImFsaWNlIn0.sig";
    let store = MemoryTokenStore::with_token(token);
    let mut fake = FakeServer::start().await;
    let (client, mut events) = spawn_client(
        &fake.url(),
        ClientOptions {
            token_store: std::sync::Arc::new(store.clone()),
            ..v2()
        },
    )
    .await;

    // The stored token travels in the handshake and the server accepts it.
    let mut conn = fake.next_conn().await;
    let (_, sent) = conn.handshake("a", 30_000, true).await;
    assert_eq!(sent, json!(token));
    let event = next_event(&mut events, "Authenticate", |e| {
        matches!(e, ClientEvent::Authenticate { .. })
    })
    .await;
    assert_eq!(
        event,
        ClientEvent::Authenticate {
            signed_token: Some(token.into())
        }
    );
    assert_eq!(client.auth_state(), AuthState::Authenticated);
    assert_eq!(client.auth_token().unwrap()["username"], "alice");

    // #removeAuthToken from the server.
    conn.send(r##"{"event":"#removeAuthToken"}"##).await;
    let event = next_event(&mut events, "Deauthenticate", |e| {
        matches!(e, ClientEvent::Deauthenticate { .. })
    })
    .await;
    assert_eq!(
        event,
        ClientEvent::Deauthenticate {
            old_signed_token: Some(token.into())
        }
    );
    assert_eq!(store.token(), None);

    // A waitForAuth channel is held back while unauthenticated.
    let options = SubscribeOptions {
        wait_for_auth: true,
        ..SubscribeOptions::default()
    };
    let private = client.subscribe_with("private", options).await.unwrap();
    assert_eq!(private.state(), ChannelState::Pending);

    // #setAuthToken with a cid: stored, answered, and the channel is subscribed.
    let new_token = "x.eyJ1IjoxfQ.y";
    conn.send(&format!(
        r##"{{"event":"#setAuthToken","cid":1,"data":{{"token":"{new_token}"}}}}"##
    ))
    .await;
    let subscribe = conn.recv_json().await;
    assert_eq!(
        subscribe["data"],
        json!({"channel":"private","waitForAuth":true})
    );
    assert_eq!(conn.recv_json().await, json!({"rid":1}));
    assert_eq!(store.token().as_deref(), Some(new_token));
    assert_eq!(client.auth_token(), Some(json!({"u":1})));
    conn.send(&format!(r#"{{"rid":{}}}"#, subscribe["cid"]))
        .await;
    within("private subscribed", private.subscribed())
        .await
        .unwrap();

    // deauthenticate(): #removeAuthToken to the server, token gone.
    client.deauthenticate().await.unwrap();
    assert_eq!(conn.recv_json().await, json!({"event":"#removeAuthToken"}));
    assert_eq!(store.token(), None);
    assert_eq!(client.auth_state(), AuthState::Unauthenticated);

    // authenticate(token): #authenticate, then stored.
    let authenticating = {
        let client = client.clone();
        tokio::spawn(async move { client.authenticate("t.e.s").await })
    };
    let frame = conn.recv_json().await;
    assert_eq!(
        (&frame["event"], &frame["data"]),
        (&json!("#authenticate"), &json!("t.e.s"))
    );
    conn.send(&format!(
        r#"{{"rid":{},"data":{{"isAuthenticated":true,"authError":null}}}}"#,
        frame["cid"]
    ))
    .await;
    let status = within("authenticate", authenticating)
        .await
        .unwrap()
        .unwrap();
    assert!(status.is_authenticated && status.auth_error.is_none());
    assert_eq!(store.token().as_deref(), Some("t.e.s"));
    assert_eq!(client.auth_state(), AuthState::Authenticated);

    // A refused #authenticate makes the client unauthenticated.
    let authenticating = {
        let client = client.clone();
        tokio::spawn(async move { client.authenticate("garbage").await })
    };
    let frame = conn.recv_json().await;
    conn.send(&format!(
        r#"{{"rid":{},"error":{{"message":"jwt malformed","name":"AuthTokenInvalidError","isBadToken":true}}}}"#,
        frame["cid"]
    ))
    .await;
    let error = within("authenticate", authenticating)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(
        error.remote().and_then(ScError::name),
        Some("AuthTokenInvalidError")
    );
    assert_eq!(client.auth_state(), AuthState::Unauthenticated);

    // The next handshake replays what is stored.
    conn.close(4321, "").await;
    let mut conn = fake.next_conn().await;
    let (_, sent) = conn.read_handshake().await;
    assert_eq!(sent, json!("t.e.s"));
}

/// `Client::connect` succeeds against a well-behaved server and reports its id.
#[tokio::test]
async fn connect_waits_for_the_handshake() {
    let mut fake = FakeServer::start().await;
    let url = fake.url();
    let connecting = tokio::spawn(async move {
        Client::builder(url)
            .query("foo", "bar")
            .query("arr", "x")
            .query("arr", "y")
            .ack_timeout(Duration::from_secs(2))
            .connect()
            .await
    });
    let mut conn = fake.next_conn().await;
    assert_eq!(conn.target, "/socketcluster/?foo=bar&arr=x&arr=y");
    conn.handshake("the-id", 30_000, false).await;
    let client = within("connect", connecting)
        .await
        .unwrap()
        .expect("connected");
    assert_eq!(client.id().as_deref(), Some("the-id"));

    // Dropping the last handle closes the connection normally.
    drop(client);
    assert_eq!(conn.expect_close().await.0, 1000);
}

#[tokio::test]
async fn connected_client_helper_works_with_the_fake() {
    let mut fake = FakeServer::start().await;
    let url = fake.url();
    let handshake = tokio::spawn(async move {
        let mut conn = fake.next_conn().await;
        conn.handshake("x", 30_000, false).await;
        (fake, conn)
    });
    let (client, _events) = connected_client(&url, v2()).await;
    let _keep = within("the fake", handshake).await.unwrap();
    assert_eq!(client.id().as_deref(), Some("x"));
    assert_eq!(
        client.disconnect(1005, "").await,
        Err(ClientError::InvalidCloseCode(1005))
    );
}

/// A server that accepts TCP but never answers the upgrade: connectTimeout, close code 4007.
#[tokio::test]
async fn silent_tcp_server_hits_the_connect_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/socketcluster/", listener.local_addr().unwrap());
    let _silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream); // keep it open, say nothing
        }
    });
    let options = ClientOptions {
        connect_timeout: Duration::from_millis(300),
        ..v2()
    };
    let (_client, mut events) = spawn_client(&url, options).await;
    let error = next_event(&mut events, "an Error", |e| {
        matches!(e, ClientEvent::Error(_))
    })
    .await;
    assert_eq!(
        error,
        ClientEvent::Error(ConnectionError::ConnectTimeout(Duration::from_millis(300)))
    );
    let abort = next_event(&mut events, "ConnectAbort", |e| {
        matches!(e, ClientEvent::ConnectAbort { .. })
    })
    .await;
    assert_eq!(
        abort,
        ClientEvent::ConnectAbort {
            code: 4007,
            reason: "Client connection establishment timed out".into()
        }
    );
    let scheduled = next_event(&mut events, "a reconnect", |e| {
        matches!(e, ClientEvent::ReconnectScheduled { .. })
    })
    .await;
    assert!(matches!(
        scheduled,
        ClientEvent::ReconnectScheduled { attempt: 1, .. }
    ));
}
