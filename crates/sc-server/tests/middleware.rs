//! Middleware at every point (docs/protocol.md §12, TV-4, TV-6, TV-16, TV-24, TV-26): allow,
//! transform, block with an error, block silently; and middleware that panics or never answers.

mod common;

use std::time::Duration;

use common::{http_request, start_server, upgrade_request, v1, v2};
use sc_protocol::ScError;
use sc_server::middleware::{
    Block, EventAction, HandshakeScAction, HandshakeWsAction, InboundAction, PublishAction,
    RawAction, SubscribeAction,
};
use sc_server::{Json, OutboundVerdict, ServerOptions};

#[tokio::test]
async fn subscribe_blocks_with_the_middlewares_error_or_the_silent_one() {
    for (options, silent) in [
        (
            v2(),
            r#"{"rid":3,"error":{"message":"The subscribe AGAction was blocked by inbound middleware","name":"SilentMiddlewareBlockedError","type":"inbound"}}"#,
        ),
        (
            v1(),
            r#"{"rid":3,"error":{"message":"Action was silently blocked by subscribe middleware","name":"SilentMiddlewareBlockedError","type":"subscribe"}}"#,
        ),
    ] {
        let ts = start_server(options, |server| {
            server
                .middleware()
                .subscribe(|action: SubscribeAction| async move {
                    match action.channel.as_str() {
                        "forbidden" => Err(Block::Error(ScError::new(
                            "ForbiddenChannelError",
                            "You cannot subscribe to forbidden",
                        ))),
                        "silent" => Err(Block::Silent),
                        _ => Ok(action),
                    }
                });
        })
        .await;
        let mut client = ts.client().await;
        client
            .send_text(r##"{"event":"#subscribe","data":{"channel":"forbidden"},"cid":2}"##)
            .await;
        assert_eq!(
            client.recv_text().await,
            r#"{"rid":2,"error":{"message":"You cannot subscribe to forbidden","name":"ForbiddenChannelError"}}"#
        );
        client
            .send_text(r##"{"event":"#subscribe","data":{"channel":"silent"},"cid":3}"##)
            .await;
        assert_eq!(client.recv_text().await, silent);
        client
            .send_text(r##"{"event":"#subscribe","data":{"channel":"open"},"cid":4}"##)
            .await;
        assert_eq!(client.recv_text().await, r#"{"rid":4}"#);
        assert_eq!(ts.server.exchange().subscriber_count("forbidden"), 0);
    }
}

#[tokio::test]
async fn publish_in_can_transform_or_refuse() {
    let ts = start_server(v2(), |server| {
        server
            .middleware()
            .publish_in(|mut action: PublishAction| async move {
                match action.channel.as_str() {
                    "readonly" => Err(Block::Error(ScError::message_only("readonly channel"))),
                    "transformIn" => {
                        let data = action.data.take().unwrap_or(Json::NULL);
                        action.data = Some(Json::from_text(&format!(r#"{{"wrapped":{data}}}"#))?);
                        Ok(action)
                    }
                    _ => Ok(action),
                }
            });
    })
    .await;
    let mut client = ts.client().await;
    client.subscribe("transformIn", 2).await;
    client.subscribe("readonly", 3).await;
    client
        .send_text(r##"{"event":"#publish","data":{"channel":"readonly","data":1},"cid":4}"##)
        .await;
    assert_eq!(
        client.recv_text().await,
        r#"{"rid":4,"error":{"message":"readonly channel"}}"#
    );
    client
        .send_text(
            r##"{"event":"#publish","data":{"channel":"transformIn","data":"abc"},"cid":5}"##,
        )
        .await;
    let mut frames = client.recv_texts(2).await;
    frames.sort();
    assert_eq!(
        frames,
        [
            r##"{"event":"#publish","data":{"channel":"transformIn","data":{"wrapped":"abc"}}}"##
                .to_owned(),
            r#"{"rid":5}"#.to_owned()
        ]
    );
}

#[tokio::test]
async fn emit_blocks_invokes_with_errors_and_drops_transmits() {
    let ts = start_server(v2(), |server| {
        server.middleware().emit(|action: EventAction| async move {
            match action.event.as_str() {
                "blockedEvent" => Err(Block::Error(ScError::new(
                    "EmitBlockedError",
                    "Emit blocked",
                ))),
                "silentBlocked" => Err(Block::Silent),
                _ => Ok(action),
            }
        });
        server
            .on("blockedEvent", |_req: sc_server::Request| async move {
                panic!("a blocked event must not reach its handler");
                #[allow(unreachable_code)]
                Ok::<_, ScError>(())
            })
            .unwrap();
    })
    .await;
    let mut client = ts.client().await;
    client
        .send_text(r#"{"event":"blockedEvent","data":1,"cid":2}"#)
        .await;
    assert_eq!(
        client.recv_text().await,
        r#"{"rid":2,"error":{"message":"Emit blocked","name":"EmitBlockedError"}}"#
    );
    client
        .send_text(r#"{"event":"silentBlocked","data":1,"cid":3}"#)
        .await;
    assert_eq!(
        client.recv_text().await,
        r#"{"rid":3,"error":{"message":"The invoke AGAction was blocked by inbound middleware","name":"SilentMiddlewareBlockedError","type":"inbound"}}"#
    );
    client
        .send_text(r#"{"event":"blockedEvent","data":1}"#)
        .await;
    client.expect_nothing_before_echo(4).await;
}

#[tokio::test]
async fn one_inbound_middleware_sees_every_action_in_order_and_the_first_block_wins() {
    let ts = start_server(v2(), |server| {
        server
            .middleware()
            .inbound(|action: InboundAction| async move {
                match &action {
                    InboundAction::Invoke(e) if e.event == "first" => {
                        Err(Block::Error(ScError::message_only("first said no")))
                    }
                    _ => Ok(action),
                }
            });
        server
            .middleware()
            .inbound(|action: InboundAction| async move {
                match &action {
                    InboundAction::Invoke(e) if e.event == "first" || e.event == "second" => {
                        Err(Block::Error(ScError::message_only("second said no")))
                    }
                    _ => Ok(action),
                }
            });
    })
    .await;
    let mut client = ts.client().await;
    client.send_text(r#"{"event":"first","cid":2}"#).await;
    assert_eq!(
        client.recv_text().await,
        r#"{"rid":2,"error":{"message":"first said no"}}"#
    );
    client.send_text(r#"{"event":"second","cid":3}"#).await;
    assert_eq!(
        client.recv_text().await,
        r#"{"rid":3,"error":{"message":"second said no"}}"#
    );
    client
        .send_text(r#"{"event":"echo","data":"fine","cid":4}"#)
        .await;
    assert_eq!(client.recv_text().await, r#"{"rid":4,"data":"fine"}"#);
}

#[tokio::test]
async fn publish_out_filters_or_rewrites_per_subscriber() {
    let ts = start_server(v2(), |server| {
        server
            .middleware()
            .publish_out(|_socket, publication| match publication.channel() {
                "outblocked" => OutboundVerdict::Block,
                "censored" => OutboundVerdict::Replace(Json::string("***")),
                _ => OutboundVerdict::Allow,
            });
    })
    .await;
    let mut client = ts.client().await;
    client.subscribe("outblocked", 2).await;
    client.subscribe("censored", 3).await;
    client
        .send_text(r##"{"event":"#publish","data":{"channel":"outblocked","data":"x"},"cid":4}"##)
        .await;
    assert_eq!(client.recv_text().await, r#"{"rid":4}"#);
    client.expect_nothing_before_echo(5).await;
    client
        .send_text(r##"{"event":"#publish","data":{"channel":"censored","data":"secret"}}"##)
        .await;
    assert_eq!(
        client.recv_text().await,
        r##"{"event":"#publish","data":{"channel":"censored","data":"***"}}"##
    );
}

#[tokio::test]
async fn handshake_rejections_close_with_the_status_code() {
    let ts = start_server(v2(), |server| {
        server
            .middleware()
            .handshake_sc(|action: HandshakeScAction| async move {
                let query = action.socket.request().uri.query().unwrap_or("").to_owned();
                match query.as_str() {
                    "screject=1" => Err(Block::Error(ScError::new(
                        "HandshakeRejectError",
                        "SC handshake rejected",
                    ))),
                    "screject=2" => Err(Block::Error(
                        ScError::message_only("SC handshake rejected with custom code")
                            .with("statusCode", 4501),
                    )),
                    "screject=3" => Err(Block::Silent),
                    _ => Ok(action),
                }
            });
    })
    .await;
    let cases = [
        (
            "1",
            r#"{"rid":1,"error":{"message":"SC handshake rejected","name":"HandshakeRejectError","statusCode":4008}}"#,
            4008,
        ),
        (
            "2",
            r#"{"rid":1,"error":{"message":"SC handshake rejected with custom code","statusCode":4501}}"#,
            4501,
        ),
        (
            "3",
            r#"{"rid":1,"error":{"message":"The handshakeSC AGAction was blocked by handshake middleware","name":"SilentMiddlewareBlockedError","type":"handshake","statusCode":4008}}"#,
            4008,
        ),
    ];
    for (n, response, code) in cases {
        let mut client =
            common::Client::connect(ts.addr, &format!("/socketcluster/?screject={n}"), &[])
                .await
                .expect("upgrade");
        client
            .send_text(r##"{"event":"#handshake","data":{"authToken":null},"cid":1}"##)
            .await;
        assert_eq!(client.recv_text().await, response);
        assert_eq!(client.expect_close().await, (code, String::new()));
    }
    // Other sockets are unaffected.
    let _ok = ts.client().await;
}

#[tokio::test]
async fn v1_handshake_rejection_carries_the_code_and_a_disconnect_event() {
    let ts = start_server(v1(), |server| {
        server
            .middleware()
            .handshake_sc(|_action: HandshakeScAction| async move {
                Err::<HandshakeScAction, _>(Block::Error(
                    ScError::message_only("with code arg").with("statusCode", 4602),
                ))
            });
    })
    .await;
    let mut client = ts.connect().await;
    client
        .send_text(r##"{"event":"#handshake","data":{"authToken":null},"cid":1}"##)
        .await;
    assert_eq!(
        client.recv_text().await,
        r#"{"rid":1,"error":{"message":"with code arg","statusCode":4602},"data":{"code":4602}}"#
    );
    assert_eq!(
        client.recv_text().await,
        r##"{"event":"#disconnect","data":{"code":4602}}"##
    );
    assert_eq!(client.expect_close().await.0, 4602);
}

#[tokio::test]
async fn websocket_upgrade_middleware_answers_401() {
    let ts = start_server(v2(), |server| {
        server
            .middleware()
            .handshake_ws(|action: HandshakeWsAction| async move {
                if action.request.uri.query() == Some("wsreject=1") {
                    return Err(Block::Error(ScError::message_only(
                        "WS handshake rejected by middleware",
                    )));
                }
                Ok(action)
            });
    })
    .await;
    let response = http_request(ts.addr, &upgrade_request("/socketcluster/?wsreject=1", "")).await;
    assert_eq!(response.status, 401);
    assert_eq!(response.body, "WS handshake rejected by middleware");
    let _ok = ts.client().await;
}

#[tokio::test]
async fn authenticate_middleware_can_refuse_a_valid_token_as_bad() {
    let ts = start_server(
        ServerOptions {
            auth_key: Some("k".into()),
            ..v2()
        },
        |server| {
            server.middleware().authenticate(
                |action: sc_server::middleware::AuthenticateAction| async move {
                    if action.token.claim_str("username") == Some("banned") {
                        return Err(Block::Error(
                            ScError::new("BannedError", "banned user").with("isBadToken", true),
                        ));
                    }
                    Ok(action)
                },
            );
        },
    )
    .await;
    let token = ts
        .server
        .auth()
        .sign(
            &serde_json::json!({ "username": "banned" }),
            &Default::default(),
        )
        .expect("sign");
    let mut client = ts.connect().await;
    client
        .send_text(&format!(
            r##"{{"event":"#handshake","data":{{"authToken":"{}"}},"cid":1}}"##,
            token.signed
        ))
        .await;
    let response: serde_json::Value =
        serde_json::from_str(&client.recv_text().await).expect("json");
    assert_eq!(response["data"]["isAuthenticated"], false);
    assert_eq!(
        response["data"]["authError"],
        serde_json::json!({ "message": "banned user", "name": "BannedError", "isBadToken": true })
    );
    assert_eq!(
        client.recv_text().await,
        r##"{"event":"#removeAuthToken"}"##
    );
}

#[tokio::test]
async fn a_panicking_or_silent_middleware_blocks_its_action_and_nothing_else() {
    let ts = start_server(
        ServerOptions {
            middleware_timeout: 200,
            ..v2()
        },
        |server| {
            server.middleware().emit(|action: EventAction| async move {
                match action.event.as_str() {
                    "boom" => panic!("middleware bug"),
                    "hang" => std::future::pending().await,
                    _ => Ok(action),
                }
            });
        },
    )
    .await;
    let mut client = ts.client().await;
    let mut other = ts.client().await;
    client.send_text(r#"{"event":"boom","cid":2}"#).await;
    assert_eq!(
        client.recv_text().await,
        r#"{"rid":2,"error":{"message":"A middleware failed","name":"MiddlewareError"}}"#
    );
    client.send_text(r#"{"event":"hang","cid":3}"#).await;
    let answer = tokio::time::timeout(Duration::from_secs(3), client.recv_text())
        .await
        .expect("bounded by middlewareTimeout");
    assert_eq!(
        answer,
        r#"{"rid":3,"error":{"message":"Middleware timed out","name":"TimeoutError"}}"#
    );
    client
        .send_text(r#"{"event":"echo","data":1,"cid":4}"#)
        .await;
    assert_eq!(client.recv_text().await, r#"{"rid":4,"data":1}"#);
    other
        .send_text(r#"{"event":"echo","data":2,"cid":2}"#)
        .await;
    assert_eq!(other.recv_text().await, r#"{"rid":2,"data":2}"#);
}

#[tokio::test]
async fn inbound_raw_sees_every_frame_and_can_drop_or_rewrite_it() {
    let ts = start_server(v2(), |server| {
        server
            .middleware()
            .inbound_raw(|mut action: RawAction| async move {
                if action.message.as_ref() == b"drop me" {
                    return Err(Block::Silent);
                }
                if action.message.as_ref() == b"rewrite me" {
                    action.message = bytes::Bytes::from_static(
                        br#"{"event":"echo","data":"rewritten","cid":9}"#,
                    );
                }
                Ok(action)
            });
    })
    .await;
    let mut client = ts.client().await;
    client.send_text("drop me").await;
    client.send_text("rewrite me").await;
    assert_eq!(client.recv_text().await, r#"{"rid":9,"data":"rewritten"}"#);
}
