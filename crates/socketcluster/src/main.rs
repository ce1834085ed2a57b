//! `socketcluster`: runs the boilerplate app.

use anyhow::Context;
use clap::Parser;
use sc_server::Server;
use socketcluster::{boilerplate, config::Flags};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let flags = Flags::parse();
    let server = Server::new(flags.server_options()).context("invalid options")?;
    boilerplate::register(&server);

    let address = (flags.host.as_str(), flags.port());
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {}:{}", flags.host, flags.port()))?;
    let port = listener.local_addr()?.port();
    let public_dir = flags.public_dir();
    tracing::info!(port, public = %public_dir.display(), protocol = %flags.protocol_version, "SocketCluster listening");
    println!("LISTENING {port}");
    let app = server.app(Some(public_dir));
    tokio::select! {
        result = server.serve(listener, app) => result?,
        _ = tokio::signal::ctrl_c() => {
            let closed = server.disconnect_all(1001, "Server is shutting down");
            tracing::info!(closed, "shutting down");
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
    Ok(())
}
