//! The server the interop tests drive: SocketCluster's demo handlers and demo middleware
//! (docs/protocol.md §17) on top of the boilerplate's `ping` → `pong`. Prints `LISTENING <port>` once
//! it accepts connections. `tests/interop/fixtures/node-server.js` does the same on
//! socketcluster-server 20; `tests/interop/README.md` has the contract.
//!
//! Run: `cargo run -p sc-server --example interop_fixture -- --port 8000 --protocol-version auto`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use clap::Parser;
use sc_protocol::{CodecOption, Json, ProtocolVersion, ScError};
use sc_server::middleware::{
    Block, EventAction, HandshakeScAction, HandshakeWsAction, InboundAction, OutboundVerdict,
};
use sc_server::{Reply, Request, SendError, Server, ServerOptions, SignOptions};
use serde::Deserialize;

#[derive(Parser)]
struct Flags {
    #[arg(long, default_value_t = 0)]
    port: u16,
    #[arg(long, default_value = "auto")]
    protocol_version: ProtocolVersion,
    #[arg(long)]
    ping_interval: Option<u64>,
    #[arg(long)]
    ping_timeout: Option<u64>,
    #[arg(long)]
    handshake_timeout: Option<u64>,
    #[arg(long)]
    ack_timeout: Option<u64>,
    #[arg(long)]
    socket_channel_limit: Option<usize>,
    #[arg(long)]
    allow_client_publish: Option<bool>,
    #[arg(long)]
    origins: Option<String>,
    #[arg(long)]
    max_payload: Option<usize>,
    #[arg(long)]
    auth_key: Option<String>,
    #[arg(long)]
    per_message_deflate: Option<bool>,
    /// `json`, `min-bin` or `auto` (text handshake = JSON, binary = min-bin).
    #[arg(long, default_value = "auto")]
    codec: CodecOption,
    #[arg(long)]
    batch_on_handshake: Option<bool>,
    #[arg(long)]
    batch_on_handshake_duration: Option<u64>,
    #[arg(long)]
    batch_interval: Option<u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let flags = Flags::parse();
    let defaults = ServerOptions::default();
    let options = ServerOptions {
        protocol_version: flags.protocol_version,
        ping_interval: flags.ping_interval.unwrap_or(defaults.ping_interval),
        ping_timeout: flags.ping_timeout.unwrap_or(defaults.ping_timeout),
        handshake_timeout: flags
            .handshake_timeout
            .unwrap_or(defaults.handshake_timeout),
        ack_timeout: flags.ack_timeout.unwrap_or(defaults.ack_timeout),
        socket_channel_limit: flags.socket_channel_limit.or(defaults.socket_channel_limit),
        allow_client_publish: flags
            .allow_client_publish
            .unwrap_or(defaults.allow_client_publish),
        origins: flags.origins.unwrap_or(defaults.origins),
        max_payload: flags.max_payload.unwrap_or(defaults.max_payload),
        auth_key: flags.auth_key.or(defaults.auth_key),
        per_message_deflate: flags
            .per_message_deflate
            .unwrap_or(defaults.per_message_deflate),
        codec: flags.codec,
        batch_on_handshake: flags
            .batch_on_handshake
            .unwrap_or(defaults.batch_on_handshake),
        batch_on_handshake_duration: flags
            .batch_on_handshake_duration
            .unwrap_or(defaults.batch_on_handshake_duration),
        batch_interval: flags.batch_interval.unwrap_or(defaults.batch_interval),
        ..defaults
    };
    let server = Server::new(options)?;
    register_demo_handlers(&server).expect("the demo's event names are not reserved");
    register_demo_middleware(&server);

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", flags.port)).await?;
    println!("LISTENING {}", listener.local_addr()?.port());
    server.serve(listener, server.app(None)).await?;
    Ok(())
}

fn register_demo_handlers(server: &Server) -> Result<(), SendError> {
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
fn register_demo_middleware(server: &Server) {
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
