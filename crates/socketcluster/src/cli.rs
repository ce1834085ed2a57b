//! The `socketcluster` command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use sc_protocol::{CodecOption, ProtocolVersion};
use serde_json::{Map, Value};

/// SocketCluster in Rust: run the boilerplate cluster, or start a new app.
#[derive(Debug, Parser)]
#[command(name = "socketcluster", version, about)]
pub struct Cli {
    /// What to do (default: run the boilerplate app).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of the run (they override the config file and the environment).
    #[command(flatten)]
    pub run: RunFlags,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Writes a ready Cargo project: main.rs (cluster options), worker.rs (the boilerplate
    /// logic), broker.rs, public/index.html with the browser client.
    New {
        /// Name (and folder) of the app.
        name: String,
        /// Where the socketcluster crates live (default: this build's workspace); the app
        /// depends on them by path.
        #[arg(long)]
        crates_path: Option<PathBuf>,
    },
}

/// Flags of a run. Each one that is given overrides the config file and the environment.
#[derive(Debug, Default, Args)]
pub struct RunFlags {
    /// TOML config file with SocketCluster's option names (`socketcluster.toml` is read when
    /// present).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Worker processes.
    #[arg(long)]
    pub workers: Option<usize>,
    /// Broker processes.
    #[arg(long)]
    pub brokers: Option<usize>,
    /// Port for HTTP and WebSocket (0: any free port). Also `SOCKETCLUSTER_PORT` or `PORT`.
    #[arg(long)]
    pub port: Option<u16>,
    /// Address to bind.
    #[arg(long)]
    pub host: Option<String>,
    /// Distributed engine for several instances: redis://host:6379 (rediss:// for TLS),
    /// redis-sentinel://s1:26379,s2:26379/mymaster, redis-cluster://h1:7000,h2:7001,h3:7002, or
    /// nats://host:4222 (user:password@ allowed in each; never logged).
    #[arg(long)]
    pub engine: Option<String>,
    /// Folder of static files.
    #[arg(long)]
    pub public_dir: Option<PathBuf>,
    /// Application name.
    #[arg(long)]
    pub app_name: Option<String>,
    /// Heartbeat dialect: 1 (client 14.x), 2 (client 15+) or auto (both).
    #[arg(long)]
    pub protocol_version: Option<ProtocolVersion>,
    /// Wire codec: json, min-bin (sc-codec-min-bin) or auto (each connection's handshake frame
    /// tells: text = JSON, binary = min-bin). Default auto.
    #[arg(long)]
    pub codec: Option<CodecOption>,
    /// Batch outbound packets for batchOnHandshakeDuration ms after each handshake.
    #[arg(long)]
    pub batch_on_handshake: Option<bool>,
    /// How long batchOnHandshake batches (ms; default 400).
    #[arg(long)]
    pub batch_on_handshake_duration: Option<u64>,
    /// While a socket batches, how often the batch is flushed (ms; default 50).
    #[arg(long)]
    pub batch_interval: Option<u64>,
    /// Most channels one socket may subscribe to.
    #[arg(long)]
    pub socket_channel_limit: Option<usize>,
    /// Interval between server pings (ms).
    #[arg(long)]
    pub ping_interval: Option<u64>,
    /// Close silent clients after this long (ms; code 4001).
    #[arg(long)]
    pub ping_timeout: Option<u64>,
    /// Time allowed for the SocketCluster handshake (ms; code 4005).
    #[arg(long)]
    pub handshake_timeout: Option<u64>,
    /// Timeout of server-to-client invokes (ms).
    #[arg(long)]
    pub ack_timeout: Option<u64>,
    /// Whether clients may publish.
    #[arg(long)]
    pub allow_client_publish: Option<bool>,
    /// Allowed origins (`*:*`, or `host:port` entries).
    #[arg(long)]
    pub origins: Option<String>,
    /// Largest inbound message in bytes.
    #[arg(long)]
    pub max_payload: Option<usize>,
    /// Frames queued for one socket before it is closed as a slow consumer (4100).
    #[arg(long)]
    pub outbound_queue_limit: Option<usize>,
    /// Event handlers of one socket running at once before the server stops reading it.
    #[arg(long)]
    pub inbound_handler_limit: Option<usize>,
    /// Negotiate permessage-deflate with clients that offer it (`true` or `false`).
    #[arg(long)]
    pub per_message_deflate: Option<bool>,
    /// Messages shorter than this many bytes go uncompressed.
    #[arg(long)]
    pub per_message_deflate_threshold: Option<usize>,
    /// Secret that signs auth tokens (HMAC), shared by every worker. Also
    /// `SOCKETCLUSTER_AUTH_KEY`. Unset: random per start.
    #[arg(long)]
    pub auth_key: Option<String>,
    /// Default token lifetime in seconds.
    #[arg(long)]
    pub auth_default_expiry: Option<u64>,
    /// Reboot crashed workers.
    #[arg(long)]
    pub reboot_worker_on_crash: Option<bool>,
    /// Graceful stop limit for workers and brokers (ms).
    #[arg(long)]
    pub process_term_timeout: Option<u64>,
    /// Runtime threads per worker and broker process (0: CPUs / processes of that kind).
    #[arg(long)]
    pub worker_threads: Option<usize>,
    /// How the kernel schedules the broker processes: `batch` (default: a woken broker does not
    /// preempt the running process) or `normal`.
    #[arg(long, value_enum)]
    pub broker_scheduling: Option<crate::config::BrokerScheduling>,
    /// Channels that keep history, as `pattern:size:ttl` (e.g. `room/*:1000:600`: the last 1000
    /// publications of every `room/…` channel, each for 600 s). Repeatable; the first matching
    /// entry wins. Given at least once, it replaces the configured list.
    #[arg(long, value_name = "PATTERN:SIZE:TTL", value_parser = parse_history)]
    pub history: Vec<String>,
    /// Channels that keep presence, as a glob (`room/*`). Repeatable; given at least once, it
    /// replaces the configured list.
    #[arg(long, value_name = "PATTERN")]
    pub presence: Vec<String>,
    /// Operations flags (TLS, metrics, admin page, logs, drain).
    #[command(flatten)]
    pub ops: OpsFlags,
}

fn parse_history(text: &str) -> Result<String, String> {
    sc_server::options::HistoryOption::parse(text)
        .map(|_| text.to_owned())
        .map_err(|e| e.0)
}

/// Operations flags; each overrides the file and the environment (`SOCKETCLUSTER_TLS_CERT`, …).
#[derive(Debug, Default, Args)]
pub struct OpsFlags {
    /// PEM certificate chain: HTTPS and WSS on the same port (with --tls-key).
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// Serve Prometheus metrics (GET /metrics; default true).
    #[arg(long)]
    pub metrics: Option<bool>,
    /// Serve metrics on this address instead of the main port (e.g. 127.0.0.1:9100).
    #[arg(long)]
    pub metrics_addr: Option<String>,
    /// Turn on the /admin page, opened by this token.
    #[arg(long)]
    pub admin_token: Option<String>,
    /// Log lines: pretty or json.
    #[arg(long, value_enum)]
    pub log_format: Option<crate::ops::LogFormat>,
    /// SIGTERM closes clients spread over this long (ms; default 5000).
    #[arg(long)]
    pub drain_duration: Option<u64>,
}

impl OpsFlags {
    fn put_into(&self, map: &mut Map<String, Value>) {
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| Value::from(p.display().to_string()));
        let entries = [
            ("tlsCert", path(&self.tls_cert)),
            ("tlsKey", path(&self.tls_key)),
            ("metrics", self.metrics.map(Value::from)),
            ("metricsAddr", self.metrics_addr.clone().map(Value::from)),
            ("adminToken", self.admin_token.clone().map(Value::from)),
            (
                "logFormat",
                self.log_format.and_then(|f| serde_json::to_value(f).ok()),
            ),
            ("drainDuration", self.drain_duration.map(Value::from)),
        ];
        for (key, value) in entries {
            if let Some(value) = value {
                map.insert(key.to_owned(), value);
            }
        }
    }
}

impl RunFlags {
    /// The flags that were given, as configuration overrides (camelCase keys).
    pub fn overrides(&self) -> Value {
        let mut map = Map::new();
        let mut put = |key: &str, value: Option<Value>| {
            if let Some(value) = value {
                map.insert(key.to_owned(), value);
            }
        };
        put("workers", self.workers.map(Value::from));
        put("brokers", self.brokers.map(Value::from));
        put("port", self.port.map(Value::from));
        put("host", self.host.clone().map(Value::from));
        put("engine", self.engine.clone().map(Value::from));
        put(
            "publicDir",
            self.public_dir
                .as_ref()
                .map(|p| Value::from(p.display().to_string())),
        );
        put("appName", self.app_name.clone().map(Value::from));
        put(
            "protocolVersion",
            self.protocol_version.map(|v| Value::from(v.to_string())),
        );
        put("codec", self.codec.map(|c| Value::from(c.to_string())));
        put("batchOnHandshake", self.batch_on_handshake.map(Value::from));
        put(
            "batchOnHandshakeDuration",
            self.batch_on_handshake_duration.map(Value::from),
        );
        put("batchInterval", self.batch_interval.map(Value::from));
        put(
            "socketChannelLimit",
            self.socket_channel_limit.map(Value::from),
        );
        put("pingInterval", self.ping_interval.map(Value::from));
        put("pingTimeout", self.ping_timeout.map(Value::from));
        put("handshakeTimeout", self.handshake_timeout.map(Value::from));
        put("ackTimeout", self.ack_timeout.map(Value::from));
        put(
            "allowClientPublish",
            self.allow_client_publish.map(Value::from),
        );
        put("origins", self.origins.clone().map(Value::from));
        put("maxPayload", self.max_payload.map(Value::from));
        put(
            "outboundQueueLimit",
            self.outbound_queue_limit.map(Value::from),
        );
        put(
            "inboundHandlerLimit",
            self.inbound_handler_limit.map(Value::from),
        );
        put(
            "perMessageDeflate",
            self.per_message_deflate.map(Value::from),
        );
        put(
            "perMessageDeflateThreshold",
            self.per_message_deflate_threshold.map(Value::from),
        );
        put("authKey", self.auth_key.clone().map(Value::from));
        put(
            "authDefaultExpiry",
            self.auth_default_expiry.map(Value::from),
        );
        put(
            "rebootWorkerOnCrash",
            self.reboot_worker_on_crash.map(Value::from),
        );
        put(
            "processTermTimeout",
            self.process_term_timeout.map(Value::from),
        );
        put("workerThreads", self.worker_threads.map(Value::from));
        put(
            "brokerScheduling",
            self.broker_scheduling
                .and_then(|s| serde_json::to_value(s).ok()),
        );
        put(
            "history",
            (!self.history.is_empty()).then(|| Value::from(self.history.clone())),
        );
        put(
            "presence",
            (!self.presence.is_empty()).then(|| Value::from(self.presence.clone())),
        );
        self.ops.put_into(&mut map);
        Value::Object(map)
    }

    /// The config file to read: `--config`, else `socketcluster.toml` when present.
    pub fn config_file(&self) -> Option<PathBuf> {
        self.config.clone().or_else(|| {
            let default = PathBuf::from("socketcluster.toml");
            default.exists().then_some(default)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_given_flags_override() {
        let cli = Cli::parse_from([
            "socketcluster",
            "--workers",
            "2",
            "--brokers",
            "2",
            "--protocol-version",
            "1",
        ]);
        assert_eq!(
            cli.run.overrides(),
            serde_json::json!({"workers": 2, "brokers": 2, "protocolVersion": "1"})
        );
        let cli = Cli::parse_from([
            "socketcluster",
            "--history",
            "room/*:1000:600",
            "--history",
            "chat/*:5:60",
            "--presence",
            "room/*",
        ]);
        assert_eq!(
            cli.run.overrides(),
            serde_json::json!({"history": ["room/*:1000:600", "chat/*:5:60"], "presence": ["room/*"]})
        );
        assert!(Cli::try_parse_from(["socketcluster", "--history", "room/*:1000"]).is_err());
        let cli = Cli::parse_from(["socketcluster", "new", "myapp"]);
        assert!(matches!(cli.command, Some(Command::New { ref name, .. }) if name == "myapp"));
    }
}
