//! Embedding the SocketCluster endpoint in an existing axum app: your routes stay yours, the
//! server adds `/socketcluster/`.
//!
//! Run: `cargo run -p sc-server --example embed_axum`, then connect any SocketCluster client to
//! `ws://127.0.0.1:3000/socketcluster/`.

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use sc_protocol::ScError;
use sc_server::{Reply, Request, Server, ServerOptions};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let realtime = Server::new(ServerOptions::default())?;
    realtime.on("echo", |req: Request| async move {
        Ok::<_, ScError>(Reply::from(req.data().cloned()))
    })?;

    // An existing app with its own routes, plus the SocketCluster route.
    let app = Router::new()
        .route("/api/status", get(|| async { "ok" }))
        .merge(realtime.router());

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("LISTENING {}", listener.local_addr()?.port());
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
