//! Command-line flags (and their environment variables) of the `socketcluster` command.

use std::path::PathBuf;

use clap::Parser;
use sc_protocol::ProtocolVersion;
use sc_server::ServerOptions;

/// Run a SocketCluster server with the boilerplate app.
#[derive(Debug, Parser)]
#[command(name = "socketcluster", version, about)]
pub struct Flags {
    /// Port for HTTP and WebSocket (0 picks a free port). Also `SOCKETCLUSTER_PORT` or `PORT`.
    #[arg(long, env = "SOCKETCLUSTER_PORT")]
    pub port: Option<u16>,
    /// Address to bind.
    #[arg(long, default_value = "0.0.0.0", env = "SOCKETCLUSTER_HOST")]
    pub host: String,
    /// Folder of static files served over HTTP (default: `public` next to the working directory,
    /// else the one in this repository).
    #[arg(long, env = "SOCKETCLUSTER_PUBLIC_DIR")]
    pub public_dir: Option<PathBuf>,
    /// Heartbeat dialect: 1 (client 14.x), 2 (client 15+) or auto (both, detected per connection).
    #[arg(long, default_value = "auto", env = "SOCKETCLUSTER_PROTOCOL_VERSION")]
    pub protocol_version: ProtocolVersion,
    /// Most channels one socket may subscribe to.
    #[arg(
        long,
        default_value_t = 1000,
        env = "SOCKETCLUSTER_SOCKET_CHANNEL_LIMIT"
    )]
    pub socket_channel_limit: usize,
    /// Interval between server pings, in ms.
    #[arg(long, default_value_t = 8000, env = "SOCKETCLUSTER_PING_INTERVAL")]
    pub ping_interval: u64,
    /// Close silent clients after this many ms (4001).
    #[arg(long, default_value_t = 20000, env = "SOCKETCLUSTER_PING_TIMEOUT")]
    pub ping_timeout: u64,
    /// Time allowed for the SocketCluster handshake, in ms (4005).
    #[arg(long, default_value_t = 10000, env = "SOCKETCLUSTER_HANDSHAKE_TIMEOUT")]
    pub handshake_timeout: u64,
    /// Timeout of server-to-client invokes, in ms.
    #[arg(long, default_value_t = 10000, env = "SOCKETCLUSTER_ACK_TIMEOUT")]
    pub ack_timeout: u64,
    /// Whether clients may publish.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, env = "SOCKETCLUSTER_ALLOW_CLIENT_PUBLISH")]
    pub allow_client_publish: bool,
    /// Allowed origins (`*:*`, or `host:port` entries).
    #[arg(long, default_value = "*:*", env = "SOCKETCLUSTER_ORIGINS")]
    pub origins: String,
    /// Largest inbound message in bytes.
    #[arg(long, default_value_t = 100 * 1024 * 1024, env = "SOCKETCLUSTER_MAX_PAYLOAD")]
    pub max_payload: usize,
    /// Secret that signs auth tokens (HMAC). Unset: random per start, so tokens die with the
    /// process. Every worker of a cluster shares it.
    #[arg(long, env = "SOCKETCLUSTER_AUTH_KEY", hide_env_values = true)]
    pub auth_key: Option<String>,
    /// Token lifetime in seconds.
    #[arg(
        long,
        default_value_t = 86400,
        env = "SOCKETCLUSTER_AUTH_DEFAULT_EXPIRY"
    )]
    pub auth_default_expiry: u64,
    /// Most frames queued for one socket before it is closed as a slow consumer (4100).
    #[arg(
        long,
        default_value_t = 4096,
        env = "SOCKETCLUSTER_OUTBOUND_QUEUE_LIMIT"
    )]
    pub outbound_queue_limit: usize,
}

impl Flags {
    /// The port to listen on: `--port`, `SOCKETCLUSTER_PORT`, `PORT` (as hosting platforms set
    /// it), else 8000.
    pub fn port(&self) -> u16 {
        self.port
            .or_else(|| std::env::var("PORT").ok()?.parse().ok())
            .unwrap_or(8000)
    }

    /// The server options these flags describe.
    pub fn server_options(&self) -> ServerOptions {
        ServerOptions {
            protocol_version: self.protocol_version,
            socket_channel_limit: Some(self.socket_channel_limit),
            ping_interval: self.ping_interval,
            ping_timeout: self.ping_timeout,
            handshake_timeout: self.handshake_timeout,
            ack_timeout: self.ack_timeout,
            allow_client_publish: self.allow_client_publish,
            origins: self.origins.clone(),
            max_payload: self.max_payload,
            outbound_queue_limit: self.outbound_queue_limit,
            auth_key: self.auth_key.clone(),
            auth_default_expiry: self.auth_default_expiry,
            ..ServerOptions::default()
        }
    }

    /// The static files folder.
    pub fn public_dir(&self) -> PathBuf {
        if let Some(dir) = &self.public_dir {
            return dir.clone();
        }
        let local = PathBuf::from("public");
        if local.join("index.html").exists() {
            return local;
        }
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../public"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_socketcluster() {
        let flags = Flags::parse_from(["socketcluster"]);
        let options = flags.server_options();
        assert_eq!(options.socket_channel_limit, Some(1000));
        assert_eq!(options.protocol_version, ProtocolVersion::Auto);
        assert_eq!(options.path, "/socketcluster/");
        assert!(options.allow_client_publish);
    }

    #[test]
    fn flags_override() {
        let flags = Flags::parse_from([
            "socketcluster",
            "--port",
            "9000",
            "--protocol-version",
            "1",
            "--allow-client-publish",
            "false",
        ]);
        assert_eq!(flags.port(), 9000);
        assert_eq!(flags.server_options().protocol_version, ProtocolVersion::V1);
        assert!(!flags.server_options().allow_client_publish);
    }
}
