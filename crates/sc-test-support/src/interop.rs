//! The interop fixture's demo handlers and middleware: the one copy, used by the
//! `interop_fixture` example (`crates/sc-server/examples/interop_fixture.rs`, the server the Node
//! interop suite in `tests/interop` drives) and by the Rust tests that run the same scenarios
//! in-process ([`start`]). `tests/interop/fixtures/node-server.js` implements the same contract on
//! socketcluster-server 20; `tests/interop/README.md` documents it.
//!
//! Events: `ping` (publishes a counter on `pong`, as the boilerplate does), `echo`, `fire`,
//! `noreply` (never answers), `failme` / `failstring` (errors), `askme` (the server emits
//! `serverPush` and invokes `serverQuestion` on the client, publishing the answer on `answers`),
//! `kickme {channel}`, `serverpublish {channel, data}`, `binary`, `startbatch` / `stopbatch` /
//! `cancelbatch`, `dropme` (close 4321), `login {username}` / `logout` / `whoami`.
//! Middleware: see [`register_middleware`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sc_protocol::{Json, ScError};
use sc_server::middleware::{
    Block, EventAction, HandshakeScAction, HandshakeWsAction, InboundAction, OutboundVerdict,
};
use sc_server::{Reply, Request, SendError, Server, ServerOptions, SignOptions};
use serde::Deserialize;

use crate::server::TestServer;

/// Registers the demo's handlers and middleware on `server`.
pub fn register(server: &Server) {
    register_handlers(server).expect("the demo's event names are not reserved");
    register_middleware(server);
}

/// A server with `options` and the fixture's handlers and middleware, in-process on an
/// ephemeral port: what the `interop_fixture` example serves, for tests in this process.
pub async fn start(options: ServerOptions) -> TestServer {
    TestServer::start(options, register).await
}

/// Registers the demo's event handlers (see the [module docs](self) for the list). Fails only if
/// an event name is reserved, which none of them is.
pub fn register_handlers(server: &Server) -> Result<(), SendError> {
    let exchange = server.exchange();
    let count = Arc::new(AtomicU64::new(0));
    server.on("ping", move |_req: Request| {
        let (exchange, count) = (exchange.clone(), count.clone());
        async move {
            let n = count.fetch_add(1, Ordering::Relaxed) + 1;
            exchange.publish("pong", &n).await.map_err(ScError::from)
        }
    })?;
    server.on("echo", |req: Request| async move {
        Ok::<_, ScError>(Reply::from(req.data().cloned()))
    })?;
    server.on("fire", |_req: Request| async move { Ok::<_, ScError>(()) })?;
    server.on("noreply", |_req: Request| {
        std::future::pending::<Result<(), ScError>>()
    })?;
    server.on("failme", |_req: Request| async move {
        Err::<(), _>(ScError::new("CustomError", "Custom failure").with("extra", 42))
    })?;
    server.on("failstring", |_req: Request| async move {
        Err::<(), _>(ScError::plain(Json::string("plain string error")))
    })?;
    let exchange = server.exchange();
    server.on("askme", move |req: Request| {
        let exchange = exchange.clone();
        async move {
            let socket = req.socket().clone();
            tokio::spawn(async move {
                let _ = socket.emit("serverPush", &serde_json::json!({ "hello": "world" }));
                let outcome = match socket
                    .invoke("serverQuestion", &serde_json::json!({ "q": "how?" }))
                    .await
                {
                    Ok(answer) => serde_json::json!({ "answer": answer }),
                    Err(error) => serde_json::json!({ "error": ScError::from(error).message() }),
                };
                let _ = exchange.publish("answers", &outcome).await;
            });
            Ok::<_, ScError>(())
        }
    })?;
    server.on("kickme", |req: Request| async move {
        #[derive(Deserialize)]
        struct Kick {
            channel: String,
        }
        let kick: Kick = req.parse()?;
        req.socket()
            .kick_out(Some(&kick.channel), "you are kicked")
            .await;
        Ok::<_, ScError>(())
    })?;
    let exchange = server.exchange();
    server.on("serverpublish", move |req: Request| {
        let exchange = exchange.clone();
        async move {
            #[derive(Deserialize)]
            struct Publish {
                channel: String,
                data: Option<Json>,
            }
            let publish: Publish = req.parse()?;
            exchange
                .publish_json(&publish.channel, publish.data.as_ref())
                .await?;
            Ok::<_, ScError>(())
        }
    })?;
    server.on("binary", |req: Request| async move {
        let received = req.data().cloned().unwrap_or(Json::NULL);
        let text =
            format!(r#"{{"buf":{{"base64":true,"data":"aGVsbG8="}},"received":{received}}}"#);
        Ok::<_, ScError>(Reply::data(Json::from_text(&text)?))
    })?;
    // Server-side batching (docs/protocol.md §5.5). `startbatch`'s own ack is in the first batch.
    server.on("startbatch", |req: Request| async move {
        req.socket().start_batching();
        Ok::<_, ScError>(())
    })?;
    server.on("stopbatch", |req: Request| async move {
        req.socket().stop_batching();
        Ok::<_, ScError>(())
    })?;
    server.on("cancelbatch", |req: Request| async move {
        req.socket().cancel_batching();
        Ok::<_, ScError>(())
    })?;
    server.on("dropme", |req: Request| async move {
        req.socket().disconnect(4321, "dropped by server");
        Ok::<_, ScError>(())
    })?;
    // login {username} → setAuthToken({username}), then ack; logout → deauthenticate();
    // whoami → the token's username (error when not signed in).
    server.on("login", |req: Request| async move {
        #[derive(Deserialize)]
        struct Login {
            username: Option<String>,
        }
        let username = req.parse::<Login>().ok().and_then(|l| l.username);
        req.socket().set_auth_token(
            &serde_json::json!({ "username": username }),
            &SignOptions::default(),
        )?;
        Ok::<_, ScError>(())
    })?;
    server.on("logout", |req: Request| async move {
        req.socket().deauthenticate();
        Ok::<_, ScError>(())
    })?;
    server.on("whoami", |req: Request| async move {
        match req.socket().auth_token() {
            Some(token) => Reply::json(&token.claims.get("username")),
            None => Err(ScError::new(
                "NotSignedInError",
                "This socket is not signed in",
            )),
        }
    })?;
    Ok(())
}

/// The value of query parameter `name` in an upgrade request URI, if present.
fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find_map(|(key, value)| (key == name).then_some(value))
}

/// The spec's demo middleware (docs/protocol.md §17): handshake `?wsreject=1` and `?screject=1|2|3`;
/// subscribe `forbidden` (error) and `silent` (silent block); publish-in `readonly` (error) and
/// `transformIn` (wraps the data); events `blockedEvent` (error) and `silentBlocked` (silent
/// block); authenticate `banned` (bad token); publish-out `outblocked` (dropped).
pub fn register_middleware(server: &Server) {
    let middleware = server.middleware();
    middleware.handshake_ws(|action: HandshakeWsAction| async move {
        if query_param(action.request.uri.query(), "wsreject") == Some("1") {
            return Err(Block::Error(ScError::message_only(
                "WS handshake rejected by middleware",
            )));
        }
        Ok(action)
    });
    middleware.handshake_sc(|action: HandshakeScAction| async move {
        match query_param(action.socket.request().uri.query(), "screject") {
            Some("1") => Err(Block::Error(ScError::new(
                "HandshakeRejectError",
                "SC handshake rejected",
            ))),
            Some("2") => Err(Block::Error(
                ScError::message_only("SC handshake rejected with custom code")
                    .with("statusCode", 4501),
            )),
            Some("3") => Err(Block::Silent),
            _ => Ok(action),
        }
    });
    middleware.inbound(|action: InboundAction| async move {
        match action {
            InboundAction::Subscribe(subscribe) => match subscribe.channel.as_str() {
                "forbidden" => Err(Block::Error(ScError::new(
                    "ForbiddenChannelError",
                    "You cannot subscribe to forbidden",
                ))),
                "silent" => Err(Block::Silent),
                _ => Ok(InboundAction::Subscribe(subscribe)),
            },
            InboundAction::PublishIn(mut publish) => match publish.channel.as_str() {
                "readonly" => Err(Block::Error(ScError::message_only("readonly channel"))),
                "transformIn" => {
                    let data = publish.data.take().unwrap_or(Json::NULL);
                    publish.data = Some(Json::from_text(&format!(r#"{{"wrapped":{data}}}"#))?);
                    Ok(InboundAction::PublishIn(publish))
                }
                _ => Ok(InboundAction::PublishIn(publish)),
            },
            InboundAction::Transmit(event) => event_verdict(event).map(InboundAction::Transmit),
            InboundAction::Invoke(event) => event_verdict(event).map(InboundAction::Invoke),
            InboundAction::Authenticate(authenticate) => {
                if authenticate.token.claim_str("username") == Some("banned") {
                    return Err(Block::Error(
                        ScError::new("BannedError", "banned user").with("isBadToken", true),
                    ));
                }
                Ok(InboundAction::Authenticate(authenticate))
            }
        }
    });
    middleware.publish_out(|_socket, publication| {
        if publication.channel() == "outblocked" {
            OutboundVerdict::Block
        } else {
            OutboundVerdict::Allow
        }
    });
}

fn event_verdict(event: EventAction) -> Result<EventAction, Block> {
    match event.event.as_str() {
        "blockedEvent" => Err(Block::Error(ScError::new(
            "EmitBlockedError",
            "Emit blocked",
        ))),
        "silentBlocked" => Err(Block::Silent),
        _ => Ok(event),
    }
}
