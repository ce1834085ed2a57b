//! The server the interop tests drive: SocketCluster's demo handlers and demo middleware
//! (docs/protocol.md §17) on top of the boilerplate's `ping` → `pong`. Prints `LISTENING <port>` once
//! it accepts connections. `tests/interop/fixtures/node-server.js` does the same on
//! socketcluster-server 20; `tests/interop/README.md` has the contract.
//!
//! The handlers and middleware are `sc_test_support::interop`'s, the one copy that the Rust tests
//! running the same scenarios in-process use too; this file only turns flags into options.
//!
//! Run: `cargo run -p sc-server --example interop_fixture -- --port 8000 --protocol-version auto`

use clap::Parser;
use sc_protocol::{CodecOption, ProtocolVersion};
use sc_server::{Server, ServerOptions};
use sc_test_support::interop;

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
    interop::register(&server);

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", flags.port)).await?;
    println!("LISTENING {}", listener.local_addr()?.port());
    server.serve(listener, server.app(None)).await?;
    Ok(())
}
