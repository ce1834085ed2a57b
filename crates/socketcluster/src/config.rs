//! The cluster's configuration: SocketCluster's option names and defaults, loaded from a TOML
//! file, then environment variables, then command-line flags (flags win).
//!
//! A TOML file reads like SocketCluster's options object:
//!
//! ```toml
//! workers = 2
//! brokers = 1
//! port = 8000
//! socketChannelLimit = 1000
//! rebootWorkerOnCrash = true
//! pingInterval = 8000
//! ```
//!
//! Environment variables are the option names in upper snake case with a `SOCKETCLUSTER_` prefix
//! (`SOCKETCLUSTER_WORKERS=2`, `SOCKETCLUSTER_SOCKET_CHANNEL_LIMIT=500`); `PORT` is honoured too,
//! as hosting platforms set it.
//!
//! History and presence (EXTENSIONS.md E1, `docs/continuity.md`):
//!
//! ```toml
//! history = [{ pattern = "room/*", size = 1000, ttl = 600 }]   # or ["room/*:1000:600"]
//! presence = ["room/*"]
//! ```
//!
//! `SOCKETCLUSTER_HISTORY="room/*:1000:600,chat/*:50:60"`, `SOCKETCLUSTER_PRESENCE="room/*"`;
//! flags `--history 'room/*:1000:600'` and `--presence 'room/*'` (repeatable). An empty
//! variable (`SOCKETCLUSTER_HISTORY=`) turns the list off.

use std::path::PathBuf;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use sc_server::ServerOptions;
use serde::{Deserialize, Serialize};

/// Everything a cluster needs: process counts and supervision (§13.2) plus every worker's
/// [`ServerOptions`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ClusterConfig {
    /// Worker processes (each runs the HTTP and realtime server; they share the port).
    pub workers: usize,
    /// Broker processes (channels and key/value data, mapped by hash). 0: no broker processes;
    /// each worker then uses its in-process exchange (or the engine).
    pub brokers: usize,
    /// Shared listening port (0: pick a free one).
    pub port: u16,
    /// Address to bind.
    pub host: String,
    /// Reboot a worker that exits unexpectedly, with the same id.
    pub reboot_worker_on_crash: bool,
    /// A worker whose controller fails exits (and is rebooted), instead of running on.
    pub crash_worker_on_error: bool,
    /// On SIGUSR2 the master also exits (otherwise SIGUSR2 reboots the workers).
    pub kill_master_on_signal: bool,
    /// How long workers and brokers get to exit gracefully (ms) before they are killed.
    pub process_term_timeout: u64,
    /// Runtime threads of each worker and broker process. 0 (the default): the CPUs divided by
    /// the processes of that kind, at least 1 — so `workers = 1` on 2 CPUs gets 2 threads, and
    /// 6 workers on 2 CPUs get 1 thread each instead of 6 × 2 threads taking turns on 2 cores
    /// (docs/BENCHMARKS.md, 100k connections). The master always runs on 1 thread.
    pub worker_threads: usize,
    /// How the kernel schedules the broker processes: [`BrokerScheduling::Batch`] (the default)
    /// lets a broker woken by a worker's message wait for the running process's time slice
    /// instead of preempting it (docs/cluster.md, "Broker scheduling").
    pub broker_scheduling: BrokerScheduling,
    /// Folder of static files the workers serve.
    pub public_dir: Option<PathBuf>,
    /// Directory for the broker and master Unix sockets (default: a per-app folder in the
    /// system temp directory).
    pub socket_root: Option<PathBuf>,
    /// Distributed engine linking several instances: `redis://…`, `nats://…` (none: this
    /// instance only).
    pub engine: Option<String>,
    /// Every worker's realtime server options.
    #[serde(flatten)]
    pub server: ServerOptions,
    /// Operations: TLS, metrics, admin page, log format, drain.
    #[serde(flatten)]
    pub ops: crate::ops::OpsConfig,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            workers: 1,
            brokers: 1,
            port: 8000,
            host: "0.0.0.0".to_owned(),
            reboot_worker_on_crash: true,
            crash_worker_on_error: true,
            kill_master_on_signal: false,
            process_term_timeout: 10_000,
            worker_threads: 0,
            broker_scheduling: BrokerScheduling::default(),
            public_dir: None,
            socket_root: None,
            engine: None,
            server: ServerOptions::default(),
            ops: crate::ops::OpsConfig::default(),
        }
    }
}

/// The Linux scheduling policy of the broker processes (`brokerScheduling`).
///
/// A broker is a relay: a worker's message wakes it, it forwards and acknowledges, and sleeps
/// again. Under the normal policy each such wakeup may preempt the worker (or client) running on
/// that CPU, so on a busy machine the processes keep interrupting each other; under the batch
/// policy the broker waits for the running process's slice (it still runs at once on an idle
/// CPU), and reads bigger batches when it runs.
///
/// ```
/// use socketcluster::config::{BrokerScheduling, ClusterConfig};
///
/// assert_eq!(ClusterConfig::default().broker_scheduling, BrokerScheduling::Batch);
/// let normal: BrokerScheduling = serde_json::from_str("\"normal\"").unwrap();
/// assert_eq!(normal, BrokerScheduling::Normal);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BrokerScheduling {
    /// `SCHED_BATCH`: no wakeup preemption (Linux; elsewhere the same as `Normal`).
    #[default]
    Batch,
    /// The default policy of the machine (`SCHED_OTHER`).
    Normal,
}

/// A configuration value is invalid; nothing was started.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file, environment or flags could not be read into the configuration.
    #[error("invalid configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    /// A value is out of range.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl ClusterConfig {
    /// Loads defaults, then `file` (if given), then `SOCKETCLUSTER_*` variables and `PORT`,
    /// then `overrides` (the command-line flags that were set).
    pub fn load(
        file: Option<&std::path::Path>,
        overrides: &serde_json::Value,
    ) -> Result<ClusterConfig, ConfigError> {
        ClusterConfig::load_over(ClusterConfig::default(), file, overrides)
    }

    /// As [`load`](Self::load), starting from `defaults` instead of SocketCluster's (the
    /// boilerplate app starts from [`boilerplate::defaults`](crate::boilerplate::defaults)).
    pub fn load_over(
        defaults: ClusterConfig,
        file: Option<&std::path::Path>,
        overrides: &serde_json::Value,
    ) -> Result<ClusterConfig, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(defaults));
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError::Invalid(format!(
                    "config file {} does not exist",
                    file.display()
                )));
            }
            figment = figment.merge(Toml::file(file));
        }
        if let Ok(port) = std::env::var("PORT") {
            figment = figment.merge(Serialized::default("port", port));
        }
        figment = figment
            // Not lowercased by figment (its default) after our mapping, which would turn
            // `inboundHandlerLimit` into `inboundhandlerlimit`: multi-word names need their case.
            // (`lowercase` must come after `map`, which resets it.)
            .merge(
                Env::prefixed("SOCKETCLUSTER_")
                    .map(|key| snake_to_camel(key.as_str()).into())
                    .lowercase(false),
            )
            .merge(Serialized::defaults(overrides));
        let config: ClusterConfig = figment.extract().map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.workers == 0 {
            return Err(ConfigError::Invalid("workers must be at least 1".into()));
        }
        if self.workers > 256 || self.brokers > 256 {
            return Err(ConfigError::Invalid(
                "workers and brokers must be at most 256".into(),
            ));
        }
        if self.worker_threads > 1024 {
            return Err(ConfigError::Invalid(
                "workerThreads must be at most 1024 (0: automatic)".into(),
            ));
        }
        if self.process_term_timeout == 0 || self.process_term_timeout > i32::MAX as u64 {
            return Err(ConfigError::Invalid(
                "processTermTimeout must be between 1 and 2147483647 ms".into(),
            ));
        }
        if let Some(engine) = &self.engine
            && ![
                "redis://",
                "rediss://",
                "redis-sentinel://",
                "rediss-sentinel://",
                "redis-cluster://",
                "rediss-cluster://",
                "nats://",
                "tls://",
                "memory://",
            ]
            .iter()
            .any(|s| engine.starts_with(s))
        {
            return Err(ConfigError::Invalid(format!(
                "engine must be a redis://, rediss://, redis-sentinel://, redis-cluster://, nats://, tls:// (NATS over TLS) or memory:// URL, not one starting {:?}",
                // Only the scheme: the rest may hold a password.
                engine.split_once("://").map_or("", |(scheme, _)| scheme)
            )));
        }
        self.ops.validate().map_err(ConfigError::Invalid)?;
        self.server
            .validate()
            .map_err(|e| ConfigError::Invalid(e.0))
    }

    /// Runtime threads for one of `processes` processes of one kind (workers or brokers), on a
    /// machine with `cpus` CPUs: `workerThreads` if set, else `cpus / processes`, at least 1.
    /// (The master runs on one thread.)
    pub fn runtime_threads(&self, processes: usize, cpus: usize) -> usize {
        if self.worker_threads > 0 {
            return self.worker_threads;
        }
        (cpus / processes.max(1)).max(1)
    }

    /// The static files folder: the configured one, `./public`, or the repository's.
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

/// `SOCKET_CHANNEL_LIMIT` → `socketChannelLimit`.
fn snake_to_camel(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for c in key.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_threads_share_the_cpus() {
        let mut config = ClusterConfig::default();
        assert_eq!(
            config.runtime_threads(config.workers, 2),
            2,
            "the default keeps 2 threads"
        );
        config.workers = 6;
        assert_eq!(config.runtime_threads(config.workers, 2), 1);
        assert_eq!(config.runtime_threads(config.workers, 16), 2);
        assert_eq!(config.runtime_threads(config.brokers, 4), 4);
        config.worker_threads = 3;
        assert_eq!(
            config.runtime_threads(config.workers, 2),
            3,
            "set explicitly"
        );
        assert!(config.validate().is_ok());
        config.worker_threads = 5000;
        assert!(config.validate().is_err());
        let cli = <crate::cli::Cli as clap::Parser>::parse_from([
            "socketcluster",
            "--worker-threads",
            "1",
        ]);
        assert_eq!(cli.run.overrides(), serde_json::json!({"workerThreads": 1}));
    }

    #[test]
    fn camel_case_env_names() {
        assert_eq!(snake_to_camel("SOCKET_CHANNEL_LIMIT"), "socketChannelLimit");
        assert_eq!(snake_to_camel("workers"), "workers");
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API returns its own large error type
    fn file_then_flags() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "sc.toml",
                "workers = 3\nbrokers = 2\nsocketChannelLimit = 5\npingInterval = 1000\noutboundQueueLimit = 100\ninboundHandlerLimit = 8\n",
            )?;
            jail.set_env("SOCKETCLUSTER_BROKERS", "4");
            jail.set_env("SOCKETCLUSTER_INBOUND_HANDLER_LIMIT", "16");
            let config = ClusterConfig::load(
                Some("sc.toml".as_ref()),
                &serde_json::json!({ "workers": 2 }),
            )
            .expect("valid");
            assert_eq!((config.workers, config.brokers), (2, 4));
            assert_eq!(config.server.socket_channel_limit, Some(5));
            assert_eq!(config.server.ping_interval, 1000);
            assert_eq!(config.server.outbound_queue_limit, 100);
            assert_eq!(config.server.inbound_handler_limit, 16);
            assert_eq!(config.port, 8000);
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API returns its own large error type
    fn history_and_presence_from_toml_env_and_flags() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "sc.toml",
                "history = [{ pattern = \"room/*\", size = 1000, ttl = 600 }, \"chat/*:5:60\"]\npresence = [\"room/*\"]\n",
            )?;
            let config = ClusterConfig::load(Some("sc.toml".as_ref()), &serde_json::json!({}))
                .expect("valid");
            assert_eq!(config.server.history.len(), 2);
            assert_eq!(config.server.history[1].size, 5);
            assert_eq!(config.server.presence, ["room/*"]);
            jail.set_env("SOCKETCLUSTER_HISTORY", "feed/*:10:20");
            jail.set_env("SOCKETCLUSTER_PRESENCE", "");
            let config = ClusterConfig::load_over(
                crate::boilerplate::defaults(),
                None,
                &serde_json::json!({}),
            )
            .expect("valid");
            assert_eq!(config.server.history[0].pattern, "feed/*");
            assert!(config.server.presence.is_empty());
            let config = ClusterConfig::load(
                None,
                &serde_json::json!({"history": ["x/*:1:1"], "presence": ["x/*"]}),
            )
            .expect("valid");
            assert_eq!(config.server.history[0].pattern, "x/*");
            assert_eq!(config.server.presence, ["x/*"]);
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API returns its own large error type
    fn per_message_deflate_from_file_env_and_flag() {
        figment::Jail::expect_with(|jail| {
            assert!(
                !ClusterConfig::default().server.per_message_deflate,
                "off by default"
            );
            jail.create_file(
                "sc.toml",
                "perMessageDeflate = true
httpHeaderTimeout = 5000
",
            )?;
            let config = ClusterConfig::load(Some("sc.toml".as_ref()), &serde_json::json!({}))
                .expect("valid");
            assert!(config.server.per_message_deflate);
            assert_eq!(config.server.http_header_timeout, 5000);
            jail.set_env("SOCKETCLUSTER_PER_MESSAGE_DEFLATE_THRESHOLD", "64");
            jail.set_env("SOCKETCLUSTER_PING_INTERVAL", "1234");
            jail.set_env("SOCKETCLUSTER_PROCESS_TERM_TIMEOUT", "777");
            let flags = <crate::cli::Cli as clap::Parser>::parse_from([
                "socketcluster",
                "--per-message-deflate",
                "false",
            ]);
            let config = ClusterConfig::load(Some("sc.toml".as_ref()), &flags.run.overrides())
                .expect("valid");
            assert!(!config.server.per_message_deflate, "the flag wins");
            assert_eq!(config.process_term_timeout, 777, "env top");
            assert_eq!(config.server.ping_interval, 1234, "env ping");
            assert_eq!(config.server.per_message_deflate_threshold, 64);
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn codec_and_batching_from_file_env_and_flags() {
        use sc_protocol::CodecOption;
        assert_eq!(ClusterConfig::default().server.codec, CodecOption::Auto);
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "sc.toml",
                "codec = \"json\"\nbatchInterval = 20\nbatchOnHandshake = true\n",
            )?;
            jail.set_env("SOCKETCLUSTER_CODEC", "min-bin");
            let config = ClusterConfig::load(Some("sc.toml".as_ref()), &serde_json::json!({}))
                .expect("valid");
            assert_eq!(config.server.codec, CodecOption::MinBin);
            assert!(config.server.batch_on_handshake);
            assert_eq!(config.server.batch_interval, 20);
            let flags =
                ClusterConfig::load(None, &serde_json::json!({ "codec": "json" })).expect("valid");
            assert_eq!(flags.server.codec, CodecOption::Json);
            jail.set_env("SOCKETCLUSTER_CODEC", "xml");
            assert!(ClusterConfig::load(None, &serde_json::json!({})).is_err());
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn broker_scheduling_from_file_env_and_flag() {
        figment::Jail::expect_with(|jail| {
            assert_eq!(
                ClusterConfig::load(None, &serde_json::json!({}))
                    .expect("valid")
                    .broker_scheduling,
                BrokerScheduling::Batch
            );
            jail.create_file("sc.toml", "brokerScheduling = \"normal\"\n")?;
            let file = ClusterConfig::load(Some("sc.toml".as_ref()), &serde_json::json!({}))
                .expect("valid");
            assert_eq!(file.broker_scheduling, BrokerScheduling::Normal);
            jail.set_env("SOCKETCLUSTER_BROKER_SCHEDULING", "normal");
            let env = ClusterConfig::load(None, &serde_json::json!({})).expect("valid");
            assert_eq!(env.broker_scheduling, BrokerScheduling::Normal);
            let cli = <crate::cli::Cli as clap::Parser>::parse_from([
                "socketcluster",
                "--broker-scheduling",
                "batch",
            ]);
            let flag = ClusterConfig::load(None, &cli.run.overrides()).expect("valid");
            assert_eq!(
                flag.broker_scheduling,
                BrokerScheduling::Batch,
                "the flag wins"
            );
            jail.set_env("SOCKETCLUSTER_BROKER_SCHEDULING", "fifo");
            assert!(ClusterConfig::load(None, &serde_json::json!({})).is_err());
            Ok(())
        });
        assert!(
            <crate::cli::Cli as clap::Parser>::try_parse_from([
                "socketcluster",
                "--broker-scheduling",
                "idle",
            ])
            .is_err()
        );
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn ops_options_from_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("SOCKETCLUSTER_ADMIN_TOKEN", "t0ken");
            jail.set_env("SOCKETCLUSTER_DRAIN_DURATION", "1234");
            jail.set_env("SOCKETCLUSTER_LOG_FORMAT", "json");
            jail.set_env("SOCKETCLUSTER_SOCKET_CHANNEL_LIMIT", "7");
            jail.set_env("SOCKETCLUSTER_ALLOW_CLIENT_PUBLISH", "false");
            let config = ClusterConfig::load(None, &serde_json::json!({})).expect("valid");
            assert!(
                !config.server.allow_client_publish,
                "booleans from the environment"
            );
            assert_eq!(config.ops.admin_token.as_deref(), Some("t0ken"));
            assert_eq!(config.ops.drain_duration, 1234);
            assert_eq!(config.ops.log_format, crate::ops::LogFormat::Json);
            assert_eq!(config.server.socket_channel_limit, Some(7));
            Ok(())
        });
    }

    #[test]
    fn bad_values_are_refused() {
        let zero = ClusterConfig {
            workers: 0,
            ..Default::default()
        };
        assert!(zero.validate().is_err());
        let engine = ClusterConfig {
            engine: Some("ftp://x".into()),
            ..Default::default()
        };
        assert!(engine.validate().is_err());
        let ping = ClusterConfig {
            server: ServerOptions {
                ping_interval: 0,
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(ping.validate().is_err());
    }
}
#[cfg(test)]
mod roundtrip {
    /// The master hands the resolved configuration to its children as JSON.
    #[test]
    fn json_round_trip() {
        let c = super::ClusterConfig::default();
        let s = serde_json::to_string(&c).unwrap();
        let back: Result<super::ClusterConfig, _> = serde_json::from_str(&s);
        assert!(back.is_ok(), "{s} {:?}", back.err());
    }
}

#[cfg(test)]
mod engine_urls {
    use super::ClusterConfig;

    fn with_engine(url: &str) -> Result<(), super::ConfigError> {
        ClusterConfig {
            engine: Some(url.to_owned()),
            ..ClusterConfig::default()
        }
        .validate()
    }

    /// Every engine scheme the engines accept passes validation (NATS over TLS included).
    #[test]
    fn every_engine_scheme_is_accepted() {
        for url in [
            "redis://127.0.0.1:6379",
            "rediss://h:6380",
            "redis-sentinel://s1:26379,s2:26379/mymaster",
            "redis-cluster://h1:7000,h2:7001",
            "nats://n1:4222,n2:4222",
            "tls://n1:4222",
            "memory://",
        ] {
            assert!(with_engine(url).is_ok(), "{url}");
        }
    }

    /// A rejected URL is named by its scheme only: its password never reaches the error.
    #[test]
    fn a_rejected_url_never_shows_its_password() {
        let error = with_engine("postgres://user:s3cret@h/db")
            .unwrap_err()
            .to_string();
        assert!(error.contains("\"postgres\""), "{error}");
        assert!(!error.contains("s3cret"), "{error}");
    }
}
