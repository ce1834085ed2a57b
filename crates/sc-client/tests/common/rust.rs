//! The Rust server (`sc-server`) in-process on an ephemeral port, with the interop fixture's
//! demo handlers (same behaviour as `tests/interop/fixtures/node-server.js`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sc_protocol::{Json, ProtocolVersion, ScError};
use sc_server::{Reply, Request, SendError, Server, ServerOptions};
use serde::Deserialize;
use tokio::task::JoinHandle;

/// A running server; stops serving when dropped.
pub struct RustServer {
    pub server: Server,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for RustServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RustServer {
    /// Starts a server speaking `version`, with pings every `ping_interval` ms and a
    /// `ping_timeout` ms timeout (defaults when `None`).
    pub async fn start(
        version: ProtocolVersion,
        ping_interval: Option<u64>,
        ping_timeout: Option<u64>,
    ) -> RustServer {
        let defaults = ServerOptions::default();
        let options = ServerOptions {
            protocol_version: version,
            ping_interval: ping_interval.unwrap_or(defaults.ping_interval),
            ping_timeout: ping_timeout.unwrap_or(defaults.ping_timeout),
            ..defaults
        };
        RustServer::start_with(options).await
    }

    /// Starts a server with `options` and the demo handlers.
    pub async fn start_with(options: ServerOptions) -> RustServer {
        let server = Server::new(options).expect("valid server options");
        register_demo_handlers(&server).expect("the demo's event names are not reserved");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind an ephemeral port");
        let addr = listener.local_addr().expect("local address");
        let serving = server.clone();
        let task = tokio::spawn(async move {
            let _ = serving.serve(listener, serving.app(None)).await;
        });
        RustServer { server, addr, task }
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's SocketCluster URL.
    pub fn url(&self) -> String {
        format!("ws://{}/socketcluster/", self.addr)
    }
}

/// The demo handlers of `sc-server/examples/interop_fixture.rs`.
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
    server.on("login", |req: Request| async move {
        #[derive(Deserialize)]
        struct Login {
            username: String,
        }
        let login: Login = req.parse()?;
        req.socket().set_auth_token(
            &serde_json::json!({ "username": login.username }),
            &sc_server::SignOptions::default(),
        )?;
        Ok::<_, ScError>(())
    })?;
    server.on("dropme", |req: Request| async move {
        req.socket().disconnect(4321, "dropped by server");
        Ok::<_, ScError>(())
    })?;
    Ok(())
}
