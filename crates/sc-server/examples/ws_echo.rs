//! A plain WebSocket echo server over sc-server's WebSocket layer, for the Autobahn suite
//! (`scripts/autobahn` runs it). Prints `LISTENING <port>` once it accepts connections.
//!
//! Run: `cargo run -p sc-server --features ws-echo --example ws_echo -- --port 9001`

use clap::Parser;
use sc_server::ServerOptions;

#[derive(Parser)]
struct Flags {
    #[arg(long, default_value_t = 9001)]
    port: u16,
    /// Negotiate permessage-deflate.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    per_message_deflate: bool,
    /// Messages shorter than this go out uncompressed.
    #[arg(long, default_value_t = 0)]
    threshold: usize,
    /// Largest message accepted (Autobahn's 9.* cases send 16 MiB).
    #[arg(long, default_value_t = 64 << 20)]
    max_payload: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let flags = Flags::parse();
    let options = ServerOptions {
        per_message_deflate: flags.per_message_deflate,
        per_message_deflate_threshold: flags.threshold,
        max_payload: flags.max_payload,
        ..Default::default()
    };
    options.validate()?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", flags.port)).await?;
    println!("LISTENING {}", listener.local_addr()?.port());
    sc_server::echo::serve_echo(listener, options).await?;
    Ok(())
}
