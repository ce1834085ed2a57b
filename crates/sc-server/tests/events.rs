//! Events, requests and responses in both directions (docs/protocol.md §3, §5, §9.2, §10).

mod common;

use std::time::Duration;

use common::{Received, start_server, v1, v2};
use sc_protocol::{Json, ScError};
use sc_server::{InvokeError, Reply, Request, SendError, Server, ServerOptions};

fn demo_handlers(server: &Server) {
    server
        .on("fire", |_req: Request| async move { Ok::<_, ScError>(()) })
        .unwrap();
    server
        .on("failme", |_req: Request| async move {
            Err::<(), _>(ScError::new("CustomError", "Custom failure").with("extra", 42))
        })
        .unwrap();
    server
        .on("failstring", |_req: Request| async move {
            Err::<(), _>(ScError::plain(Json::string("plain string error")))
        })
        .unwrap();
    server
        .on("boom", |req: Request| async move {
            if req.expects_response() {
                panic!("handler bug");
            }
            Ok::<_, ScError>(())
        })
        .unwrap();
    server
        .on("slowboom", |_req: Request| async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            panic!("handler bug after an await");
            #[allow(unreachable_code)]
            Ok::<_, ScError>(())
        })
        .unwrap();
    server
        .on("slow", |req: Request| async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok::<_, ScError>(Reply::from(req.data().cloned()))
        })
        .unwrap();
    server
        .on("typed", |req: Request| async move {
            #[derive(serde::Deserialize)]
            struct Sum {
                a: i64,
                b: i64,
            }
            let sum: Sum = req.parse()?;
            Reply::json(&serde_json::json!({ "sum": sum.a + sum.b }))
        })
        .unwrap();
}

#[tokio::test]
async fn echo_forwards_data_verbatim() {
    let ts = start_server(v2(), demo_handlers).await;
    let mut client = ts.client().await;
    client
        .send_text(r#"{"event":"echo","data":{"a" : 1.50},"cid":2}"#)
        .await;
    assert_eq!(client.recv_text().await, r#"{"rid":2,"data":{"a" : 1.50}}"#);
    client
        .send_text(r#"{"event":"echo","data":"\u00e9\n","cid":3}"#)
        .await;
    assert_eq!(client.recv_text().await, r#"{"rid":3,"data":"\u00e9\n"}"#);
    client
        .send_text(r#"{"event":"echo","data":null,"cid":4}"#)
        .await;
    assert_eq!(client.recv_text().await, r#"{"rid":4,"data":null}"#);
}

#[tokio::test]
async fn request_without_data_gets_plain_ack() {
    let ts = start_server(v2(), demo_handlers).await;
    let mut client = ts.client().await;
    // The v20 client leaves `data` out when there is none (docs/protocol.md §2.1).
    client.send_text(r#"{"event":"echo","cid":8}"#).await;
    assert_eq!(client.recv_text().await, r#"{"rid":8}"#);
    client
        .send_text(r#"{"event":"fire","data":1,"cid":9}"#)
        .await;
    assert_eq!(client.recv_text().await, r#"{"rid":9}"#);
}

#[tokio::test]
async fn transmit_gets_no_reply() {
    let ts = start_server(v2(), demo_handlers).await;
    let mut client = ts.client().await;
    client
        .send_text(r#"{"event":"echo","data":"no cid"}"#)
        .await;
    client.send_text(r#"{"event":"fire","data":1}"#).await;
    client.expect_nothing_before_echo(2).await;
}

#[tokio::test]
async fn string_cid_is_fire_and_forget() {
    let ts = start_server(v2(), demo_handlers).await;
    let mut client = ts.client().await;
    client
        .send_text(r#"{"event":"echo","data":"x","cid":"abc"}"#)
        .await;
    client.expect_nothing_before_echo(2).await;
}

#[tokio::test]
async fn unknown_event_is_never_answered_and_the_socket_keeps_working() {
    let ts = start_server(v2(), demo_handlers).await;
    let mut client = ts.client().await;
    client
        .send_text(r#"{"event":"unknownProcedure","data":1,"cid":17}"#)
        .await;
    client.expect_nothing_before_echo(18).await;
    client
        .send_text(r#"{"event":"echo","data":"still here","cid":19}"#)
        .await;
    assert_eq!(
        client.recv_text().await,
        r#"{"rid":19,"data":"still here"}"#
    );
}

#[tokio::test]
async fn batch_in_gets_separate_responses_in_order() {
    let ts = start_server(v2(), demo_handlers).await;
    let mut client = ts.client().await;
    client
        .send_text(r#"[{"event":"echo","data":"a","cid":2},{"event":"echo","data":"b","cid":3},{"event":"fire","data":"c"}]"#)
        .await;
    assert_eq!(
        client.recv_texts(2).await,
        [r#"{"rid":2,"data":"a"}"#, r#"{"rid":3,"data":"b"}"#]
    );
    client.expect_nothing_before_echo(4).await;
}

#[tokio::test]
async fn many_requests_are_answered_in_order() {
    let ts = start_server(v2(), demo_handlers).await;
    let mut client = ts.client().await;
    for cid in 2..202 {
        client
            .send_text(&format!(r#"{{"event":"echo","data":{cid},"cid":{cid}}}"#))
            .await;
    }
    for cid in 2..202 {
        assert_eq!(
            client.recv_text().await,
            format!(r#"{{"rid":{cid},"data":{cid}}}"#)
        );
    }
}

#[tokio::test]
async fn handler_error_is_dehydrated_with_its_fields() {
    let ts = start_server(v2(), demo_handlers).await;
    let mut client = ts.client().await;
    client
        .send_text(r#"{"event":"failme","data":1,"cid":5}"#)
        .await;
    assert_eq!(
        client.recv_text().await,
        r#"{"rid":5,"error":{"message":"Custom failure","name":"CustomError","extra":42}}"#
    );
}

#[tokio::test]
async fn plain_string_error() {
    let ts = start_server(v2(), demo_handlers).await;
    let mut client = ts.client().await;
    client.send_text(r#"{"event":"failstring","cid":4}"#).await;
    assert_eq!(
        client.recv_text().await,
        r#"{"rid":4,"error":"plain string error"}"#
    );
}

#[tokio::test]
async fn bad_data_for_a_typed_handler_is_an_invalid_arguments_error() {
    let ts = start_server(v2(), demo_handlers).await;
    let mut client = ts.client().await;
    client
        .send_text(r#"{"event":"typed","data":{"a":2,"b":3},"cid":2}"#)
        .await;
    assert_eq!(client.recv_text().await, r#"{"rid":2,"data":{"sum":5}}"#);
    client
        .send_text(r#"{"event":"typed","data":"nope","cid":3}"#)
        .await;
    let response: serde_json::Value = serde_json::from_str(&client.recv_text().await).unwrap();
    assert_eq!(response["rid"], 3);
    assert_eq!(response["error"]["name"], "InvalidArgumentsError");
    assert!(response.get("data").is_none());
}

#[tokio::test]
async fn panicking_handler_answers_an_error_and_the_server_keeps_serving() {
    let ts = start_server(v2(), demo_handlers).await;
    let mut client = ts.client().await;
    let mut other = ts.client().await;

    client.send_text(r#"{"event":"boom","cid":2}"#).await;
    let response: serde_json::Value = serde_json::from_str(&client.recv_text().await).unwrap();
    assert_eq!(response["rid"], 2);
    assert!(
        response["error"]["message"].is_string(),
        "an error response: {response}"
    );
    // A panic after an await (the handler runs in its own task) is answered too.
    client.send_text(r#"{"event":"slowboom","cid":3}"#).await;
    let response: serde_json::Value = serde_json::from_str(&client.recv_text().await).unwrap();
    assert_eq!(response["rid"], 3);
    assert!(
        response["error"]["message"].is_string(),
        "an error response: {response}"
    );
    // A panicking transmit has nobody to answer.
    client.send_text(r#"{"event":"boom"}"#).await;

    client.expect_nothing_before_echo(4).await;
    other.expect_nothing_before_echo(2).await;
    let mut late = ts.client().await;
    late.expect_nothing_before_echo(2).await;
}

#[tokio::test]
async fn slow_handler_is_answered_later_while_other_events_proceed() {
    let ts = start_server(v2(), demo_handlers).await;
    let mut client = ts.client().await;
    client
        .send_text(r#"{"event":"slow","data":"late","cid":2}"#)
        .await;
    client
        .send_text(r#"{"event":"echo","data":"early","cid":3}"#)
        .await;
    assert_eq!(client.recv_text().await, r#"{"rid":3,"data":"early"}"#);
    assert_eq!(client.recv_text().await, r#"{"rid":2,"data":"late"}"#);
}

#[tokio::test]
async fn socket_handler_takes_precedence_over_server_handler() {
    let ts = start_server(v2(), |server| {
        server.on_connection(|socket: sc_server::Socket| async move {
            let id = socket.id().to_owned();
            socket
                .on("echo", move |_req: Request| {
                    let id = id.clone();
                    async move { Reply::json(&format!("own {id}")) }
                })
                .unwrap();
        });
    })
    .await;
    let mut client = ts.client().await;
    client
        .send_text(r#"{"event":"echo","data":1,"cid":2}"#)
        .await;
    assert_eq!(
        client.recv_text().await,
        format!(r#"{{"rid":2,"data":"own {}"}}"#, client.id())
    );
}

#[tokio::test]
async fn server_invoke_is_answered_by_the_client() {
    let ts = start_server(v2(), |_| {}).await;
    let mut client = ts.client().await;
    let socket = ts.socket(&client);
    let call = tokio::spawn(async move {
        socket
            .invoke("serverQuestion", &serde_json::json!({ "q": "how?" }))
            .await
    });
    assert_eq!(
        client.recv_text().await,
        r#"{"event":"serverQuestion","data":{"q":"how?"},"cid":1}"#
    );
    client
        .send_text(r#"{"rid":1,"data":{"a":"like this"}}"#)
        .await;
    let answer = tokio::time::timeout(common::WAIT, call)
        .await
        .unwrap()
        .unwrap()
        .expect("the client's answer");
    assert_eq!(answer.as_ref().map(Json::get), Some(r#"{"a":"like this"}"#));

    // The next invoke uses the next cid; a plain ack is an answer without data.
    let socket = ts.socket(&client);
    let call = tokio::spawn(async move { socket.invoke_json("second", None).await });
    assert_eq!(client.recv_text().await, r#"{"event":"second","cid":2}"#);
    client.send_text(r#"{"rid":2}"#).await;
    assert_eq!(
        tokio::time::timeout(common::WAIT, call)
            .await
            .unwrap()
            .unwrap(),
        Ok(None)
    );
}

#[tokio::test]
async fn server_invoke_gets_the_clients_error() {
    let ts = start_server(v2(), |_| {}).await;
    let mut client = ts.client().await;
    let socket = ts.socket(&client);
    let call = tokio::spawn(async move { socket.invoke("serverQuestion", &1).await });
    assert_eq!(
        client.recv_text().await,
        r#"{"event":"serverQuestion","data":1,"cid":1}"#
    );
    client
        .send_text(r#"{"rid":1,"error":{"name":"ClientError","message":"I refuse"}}"#)
        .await;
    let outcome = tokio::time::timeout(common::WAIT, call)
        .await
        .unwrap()
        .unwrap();
    let Err(InvokeError::Remote(error)) = outcome else {
        panic!("expected the client's error, got {outcome:?}")
    };
    assert_eq!(
        (error.name(), error.message().as_str()),
        (Some("ClientError"), "I refuse")
    );
}

#[tokio::test]
async fn server_invoke_times_out_and_ignores_a_late_answer() {
    let ts = start_server(
        ServerOptions {
            ack_timeout: 150,
            ..v2()
        },
        |_| {},
    )
    .await;
    let mut client = ts.client().await;
    let socket = ts.socket(&client);
    let call = tokio::spawn(async move { socket.invoke("noanswer", &1).await });
    assert_eq!(
        client.recv_text().await,
        r#"{"event":"noanswer","data":1,"cid":1}"#
    );
    let outcome = tokio::time::timeout(common::WAIT, call)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        outcome,
        Err(InvokeError::Timeout {
            event: "noanswer".into()
        })
    );
    assert_eq!(
        ScError::from(outcome.unwrap_err()).to_json().get(),
        r#"{"message":"TimeoutError: Event response for noanswer event timed out","name":"TimeoutError"}"#
    );
    // A late answer is ignored; the socket keeps working.
    client.send_text(r#"{"rid":1,"data":"too late"}"#).await;
    client.expect_nothing_before_echo(2).await;
}

#[tokio::test]
async fn server_invoke_fails_when_the_client_disconnects() {
    let ts = start_server(v2(), |_| {}).await;
    let mut client = ts.client().await;
    let socket = ts.socket(&client);
    let call = tokio::spawn(async move { socket.invoke("serverQuestion", &1).await });
    assert_eq!(
        client.recv_text().await,
        r#"{"event":"serverQuestion","data":1,"cid":1}"#
    );
    client.close().await;
    let outcome = tokio::time::timeout(common::WAIT, call)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(outcome, Err(InvokeError::Disconnected));
}

#[tokio::test]
async fn socket_emit_reaches_the_client() {
    let ts = start_server(v2(), |_| {}).await;
    let mut client = ts.client().await;
    let socket = ts.socket(&client);
    socket
        .emit("serverPush", &serde_json::json!({ "hello": "world" }))
        .unwrap();
    socket.emit_json("bare", None).unwrap();
    socket.send_raw("just text").unwrap();
    assert_eq!(
        client.recv_texts(3).await,
        [
            r#"{"event":"serverPush","data":{"hello":"world"}}"#,
            r#"{"event":"bare"}"#,
            "just text"
        ]
    );
    assert!(
        socket.emit("#publish", &1).is_err(),
        "reserved names cannot be emitted"
    );
}

#[tokio::test]
async fn emitting_to_a_closed_socket_fails() {
    let ts = start_server(v2(), |_| {}).await;
    let client = ts.client().await;
    let socket = ts.socket(&client);
    client.close().await;
    ts.eventually("the socket is gone", |s| s.clients_count() == 0)
        .await;
    assert_eq!(socket.emit("late", &1), Err(sc_server::SendError::Closed));
}

#[tokio::test]
async fn server_disconnect_sends_code_and_reason_to_a_v2_client() {
    let ts = start_server(v2(), |server| {
        server
            .on("dropme", |req: Request| async move {
                req.socket().disconnect(4321, "dropped by server");
                Ok::<_, ScError>(())
            })
            .unwrap();
    })
    .await;
    let mut client = ts.client().await;
    let id = client.id().to_owned();
    client.send_text(r#"{"event":"dropme"}"#).await;
    // v2: no #disconnect event; the reason travels in the close frame (TV-20).
    assert_eq!(
        client.expect_close().await,
        (4321, "dropped by server".to_owned())
    );
    ts.eventually("the socket is unregistered", |s| s.socket(&id).is_none())
        .await;
}

#[tokio::test]
async fn server_disconnect_on_v1_announces_with_disconnect_event() {
    let ts = start_server(v1(), |_| {}).await;
    let mut client = ts.client().await;
    ts.socket(&client).disconnect(4321, "dropped by server");
    assert_eq!(
        client.recv_text().await,
        r##"{"event":"#disconnect","data":{"code":4321,"data":"dropped by server"}}"##
    );
    assert_eq!(client.expect_close().await, (4321, String::new()));
}

#[tokio::test]
async fn disconnect_listener_sees_the_code() {
    let ts = start_server(v2(), |_| {}).await;
    let client = ts.client().await;
    let (tx, rx) = tokio::sync::oneshot::channel();
    ts.socket(&client).on_disconnect(move |code, _reason| {
        let _ = tx.send(code.0);
    });
    client.close().await;
    assert_eq!(
        tokio::time::timeout(common::WAIT, rx).await.unwrap(),
        Ok(1000)
    );
}

#[tokio::test]
async fn client_close_frame_is_answered() {
    let ts = start_server(v2(), |_| {}).await;
    let mut client = ts.client().await;
    client.send_close(4500, "client done").await;
    // The server echoes the close (RFC 6455) and forgets the socket.
    match client.recv().await {
        Received::Close(code, _) => assert_eq!(code, 4500),
        other => panic!("expected the close echo, got {other:?}"),
    }
    ts.eventually("the socket is gone", |s| s.clients_count() == 0)
        .await;
}

#[tokio::test]
async fn v14_local_event_names_are_dropped_on_v1_only() {
    // socketcluster-server 14 never hands a client's `message`, `raw`, `subscribe`, … events to
    // the application (docs/protocol.md §11); v15+ has no such rule.
    let setup = |server: &Server| {
        server
            .on(
                "message",
                |_req: Request| async move { Reply::json("handled") },
            )
            .unwrap();
    };
    let ts = start_server(v1(), setup).await;
    let mut client = ts.client().await;
    client
        .send_text(r#"{"event":"message","data":1,"cid":2}"#)
        .await;
    client.expect_nothing_before_echo(3).await;

    let ts = start_server(v2(), setup).await;
    let mut client = ts.client().await;
    client
        .send_text(r#"{"event":"message","data":1,"cid":2}"#)
        .await;
    assert_eq!(client.recv_text().await, r#"{"rid":2,"data":"handled"}"#);
}

#[tokio::test]
async fn unknown_protocol_events_are_ignored() {
    let ts = start_server(v2(), demo_handlers).await;
    let mut client = ts.client().await;
    client
        .send_text(r##"{"event":"#nonsense","data":1,"cid":2}"##)
        .await;
    client.expect_nothing_before_echo(3).await;
}

#[tokio::test]
async fn disconnect_all_closes_every_socket() {
    let ts = start_server(v2(), |_| {}).await;
    let mut a = ts.client().await;
    let mut b = ts.client().await;
    assert_eq!(ts.server.disconnect_all(1001, "shutting down"), 2);
    for client in [&mut a, &mut b] {
        assert_eq!(
            client.expect_close().await,
            (1001, "shutting down".to_owned())
        );
    }
    ts.eventually("no socket is left", |s| s.clients_count() == 0)
        .await;
}

#[tokio::test]
async fn long_close_reason_is_cut_to_fit_a_close_frame() {
    let ts = start_server(v2(), |_| {}).await;
    let mut client = ts.client().await;
    let reason = "é".repeat(100); // 200 bytes; a close frame carries at most 123
    ts.socket(&client).disconnect(4400, &reason);
    let (code, sent) = client.expect_close().await;
    assert_eq!(code, 4400);
    assert_eq!(sent, "é".repeat(61));
}

#[tokio::test]
async fn protocol_close_codes_are_not_available_to_applications() {
    let ts = start_server(v2(), |_| {}).await;
    let mut client = ts.client().await;
    // 4001 means "pong timed out" to clients (they reconnect at once): not the application's.
    ts.socket(&client).disconnect(4001, "nope");
    assert_eq!(client.expect_close().await, (1000, "nope".to_owned()));
}

/// `Server::on` refuses the protocol's `#` names with the same error as `Socket::on`, and accepts
/// (and replaces) application names.
#[tokio::test]
async fn server_on_refuses_reserved_names_like_socket_on() {
    let server = Server::new(ServerOptions::default()).expect("valid options");
    let handler = |_req: Request| async move { Ok::<_, ScError>(()) };
    assert_eq!(
        server.on("#publish", handler),
        Err(SendError::ReservedEvent("#publish".into()))
    );
    assert_eq!(server.on("chat", handler), Ok(()));
    assert_eq!(server.on("chat", handler), Ok(()));
}
