//! The server the interop tests drive: SocketCluster's demo handlers (PROTOCOL.md §17) on top of
//! the boilerplate's `ping` → `pong`. Prints `LISTENING <port>` once it accepts connections.
//!
//! Run: `cargo run -p sc-server --example interop_fixture -- --port 8000 --protocol-version auto`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use clap::Parser;
use sc_protocol::{Json, ProtocolVersion, ScError};
use sc_server::{Reply, Request, Server, ServerOptions};
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
        ..defaults
    };
    let server = Server::new(options)?;
    register_demo_handlers(&server);

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", flags.port)).await?;
    println!("LISTENING {}", listener.local_addr()?.port());
    server.serve(listener, server.app(None)).await?;
    Ok(())
}

fn register_demo_handlers(server: &Server) {
    let exchange = server.exchange();
    let count = Arc::new(AtomicU64::new(0));
    server.on("ping", move |_req: Request| {
        let (exchange, count) = (exchange.clone(), count.clone());
        async move {
            let n = count.fetch_add(1, Ordering::Relaxed) + 1;
            exchange.publish("pong", &n).await.map_err(ScError::from)
        }
    });
    server.on("echo", |req: Request| async move {
        Ok::<_, ScError>(Reply::from(req.data().cloned()))
    });
    server.on("fire", |_req: Request| async move { Ok::<_, ScError>(()) });
    server.on("noreply", |_req: Request| {
        std::future::pending::<Result<(), ScError>>()
    });
    server.on("failme", |_req: Request| async move {
        Err::<(), _>(ScError::new("CustomError", "Custom failure").with("extra", 42))
    });
    server.on("failstring", |_req: Request| async move {
        Err::<(), _>(ScError::plain(Json::string("plain string error")))
    });
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
    });
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
    });
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
    });
    server.on("binary", |req: Request| async move {
        let received = req.data().cloned().unwrap_or(Json::NULL);
        let text =
            format!(r#"{{"buf":{{"base64":true,"data":"aGVsbG8="}},"received":{received}}}"#);
        Ok::<_, ScError>(Reply::data(Json::from_text(&text)?))
    });
    server.on("dropme", |req: Request| async move {
        req.socket().disconnect(4321, "dropped by server");
        Ok::<_, ScError>(())
    });
}
