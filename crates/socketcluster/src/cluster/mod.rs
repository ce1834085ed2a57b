//! The process cluster: a master that starts and supervises worker and broker processes.
//!
//! One binary plays every part. [`Builder::run`] looks at the process's environment: the first
//! invocation is the **master**; it re-executes the same binary (same arguments) once per
//! broker and per worker, telling each its role and id through internal environment variables.
//! So code before `run()` executes in every process: keep it to argument parsing and
//! configuration.
//!
//! - [`master`]: spawns brokers, then workers; reboots crashed ones; drains on SIGTERM.
//! - [`worker`]: the HTTP + realtime server on the shared port, running your worker controller.
//! - [`broker`]: a broker process: channels and key/value data for the workers, by hash.
//! - [`ipc`]: master ↔ worker/broker messages with replies.
//! - [`listener`]: `SO_REUSEPORT` port sharing.
//!
//! ```no_run
//! use socketcluster::cluster::{ClusterError, SocketCluster, Worker};
//!
//! fn main() -> Result<(), ClusterError> {
//!     SocketCluster::builder()
//!         .workers(2)
//!         .brokers(1)
//!         .port(8000)
//!         .worker_controller(|worker: Worker| async move {
//!             socketcluster::boilerplate::register(worker.server());
//!             Ok(())
//!         })
//!         .run()
//! }
//! ```

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::ClusterConfig;

pub mod broker;
mod broker_link;
pub mod ipc;
pub mod listener;
pub mod master;
mod scheduling;
pub mod worker;

pub use broker::BrokerProcess;
pub use master::Master;
pub use worker::Worker;

/// A boxed, sendable, `'static` future: sc-server's (one definition in the workspace).
pub use sc_server::handler::BoxFuture;

/// What a controller returns: any error fails the process (a worker with `crashWorkerOnError`
/// exits and is rebooted).
pub type ControllerResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

type WorkerController = Arc<dyn Fn(Worker) -> BoxFuture<ControllerResult> + Send + Sync>;
type BrokerController = Arc<dyn Fn(BrokerProcess) -> BoxFuture<ControllerResult> + Send + Sync>;
type MasterController = Arc<dyn Fn(Master) -> BoxFuture<ControllerResult> + Send + Sync>;

/// Which part a process plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ProcessRole {
    /// Serves clients.
    Worker,
    /// Holds channels and data for the workers.
    Broker,
}

impl std::fmt::Display for ProcessRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProcessRole::Worker => "worker",
            ProcessRole::Broker => "broker",
        })
    }
}

/// Environment variables the master sets for its children (internal).
pub(crate) mod env {
    /// `worker:<id>` or `broker:<id>`.
    pub(crate) const ROLE: &str = "SC_CLUSTER_ROLE";
    /// The resolved configuration, as JSON.
    pub(crate) const CONFIG: &str = "SC_CLUSTER_CONFIG";
    /// The directory of the master and broker sockets.
    pub(crate) const DIR: &str = "SC_CLUSTER_DIR";
}

/// The environment variable that tells a child process its role (`worker:1`), for log names.
pub(crate) fn role_env() -> &'static str {
    env::ROLE
}

/// Entry point: `SocketCluster::builder()…run()`.
pub struct SocketCluster;

impl SocketCluster {
    /// A cluster builder with SocketCluster's defaults (1 worker, 1 broker, port 8000).
    pub fn builder() -> Builder {
        Builder {
            config: ClusterConfig::default(),
            worker: None,
            broker: None,
            master: None,
        }
    }
}

/// Configures and runs a cluster.
pub struct Builder {
    config: ClusterConfig,
    worker: Option<WorkerController>,
    broker: Option<BrokerController>,
    master: Option<MasterController>,
}

impl Builder {
    /// Replaces the whole configuration (e.g. one loaded with [`ClusterConfig::load`]).
    pub fn config(mut self, config: ClusterConfig) -> Self {
        self.config = config;
        self
    }

    /// Number of worker processes.
    pub fn workers(mut self, workers: usize) -> Self {
        self.config.workers = workers;
        self
    }

    /// Number of broker processes.
    pub fn brokers(mut self, brokers: usize) -> Self {
        self.config.brokers = brokers;
        self
    }

    /// The shared port.
    pub fn port(mut self, port: u16) -> Self {
        self.config.port = port;
        self
    }

    /// The application name.
    pub fn app_name(mut self, name: impl Into<String>) -> Self {
        self.config.server.app_name = Some(name.into());
        self
    }

    /// Most channels one socket may subscribe to.
    pub fn socket_channel_limit(mut self, limit: usize) -> Self {
        self.config.server.socket_channel_limit = Some(limit);
        self
    }

    /// Whether the master reboots a crashed worker.
    pub fn reboot_worker_on_crash(mut self, reboot: bool) -> Self {
        self.config.reboot_worker_on_crash = reboot;
        self
    }

    /// Whether a worker whose controller fails exits (and is rebooted).
    pub fn crash_worker_on_error(mut self, crash: bool) -> Self {
        self.config.crash_worker_on_error = crash;
        self
    }

    /// Whether SIGUSR2 stops the master too (otherwise it reboots the workers).
    pub fn kill_master_on_signal(mut self, kill: bool) -> Self {
        self.config.kill_master_on_signal = kill;
        self
    }

    /// How long processes get to exit gracefully, in ms.
    pub fn process_term_timeout(mut self, ms: u64) -> Self {
        self.config.process_term_timeout = ms;
        self
    }

    /// Your worker logic: runs in each worker process before it starts listening.
    pub fn worker_controller<F, Fut>(mut self, controller: F) -> Self
    where
        F: Fn(Worker) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ControllerResult> + Send + 'static,
    {
        self.worker = Some(Arc::new(move |w| Box::pin(controller(w))));
        self
    }

    /// Optional broker logic: runs in each broker process (e.g. a handler for `exchange.send`).
    pub fn broker_controller<F, Fut>(mut self, controller: F) -> Self
    where
        F: Fn(BrokerProcess) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ControllerResult> + Send + 'static,
    {
        self.broker = Some(Arc::new(move |b| Box::pin(controller(b))));
        self
    }

    /// Optional master logic: runs in the master once every process is ready (message handlers,
    /// `send_to_worker`, `send_to_broker`).
    pub fn master_controller<F, Fut>(mut self, controller: F) -> Self
    where
        F: Fn(Master) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ControllerResult> + Send + 'static,
    {
        self.master = Some(Arc::new(move |m| Box::pin(controller(m))));
        self
    }

    /// Runs this process's part until the cluster stops. Errors before anything started (bad
    /// options, port in use, missing worker controller) are returned at once.
    pub fn run(self) -> Result<(), ClusterError> {
        let this = ThisProcess::from_env()?;
        if let ThisProcess::Child {
            role: ProcessRole::Broker,
            config,
            ..
        } = &this
        {
            // Before the runtime starts its threads: they inherit the policy.
            scheduling::apply(config.broker_scheduling);
        }
        let threads = this.runtime_threads();
        let runtime = if threads == 1 {
            // One thread: no wake-ups handed between threads, no work stealing to look for.
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
        } else {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .enable_all()
                .build()
        }
        .map_err(ClusterError::Io)?;
        runtime.block_on(self.run_async(this))
    }

    async fn run_async(self, this: ThisProcess) -> Result<(), ClusterError> {
        let Some(worker) = self.worker else {
            return Err(ClusterError::Config(
                "a worker controller is required (worker_controller)".into(),
            ));
        };
        match this {
            ThisProcess::Master => {
                self.config
                    .validate()
                    .map_err(|e| ClusterError::Config(e.to_string()))?;
                master::run(self.config, self.master).await
            }
            ThisProcess::Child { role, id, config } => {
                let dir = PathBuf::from(std::env::var(env::DIR).unwrap_or_default());
                match role {
                    ProcessRole::Worker => worker::run(id, *config, dir, worker).await,
                    ProcessRole::Broker => broker::run(id, *config, dir, self.broker).await,
                }
            }
        }
    }
}

/// What this process is, read once from the environment the master sets for its children.
enum ThisProcess {
    /// The first invocation: no role in the environment.
    Master,
    /// A worker or broker the master started, with its id and the cluster configuration.
    Child {
        role: ProcessRole,
        id: usize,
        config: Box<ClusterConfig>,
    },
}

impl ThisProcess {
    /// Reads the role (`worker:1`) and the configuration; a child whose environment cannot be
    /// read fails here, before anything starts.
    fn from_env() -> Result<ThisProcess, ClusterError> {
        let Ok(role) = std::env::var(env::ROLE) else {
            return Ok(ThisProcess::Master);
        };
        let (kind, id) = match role.split_once(':') {
            Some(("worker", id)) => (ProcessRole::Worker, id),
            Some(("broker", id)) => (ProcessRole::Broker, id),
            _ => {
                return Err(ClusterError::Config(format!(
                    "unknown process role {role:?}"
                )));
            }
        };
        let id = id
            .parse()
            .map_err(|_| ClusterError::Config(format!("bad process id in role {role:?}")))?;
        let config: Box<ClusterConfig> = std::env::var(env::CONFIG)
            .ok()
            .and_then(|c| serde_json::from_str(&c).ok())
            .ok_or_else(|| ClusterError::Config("missing cluster configuration".into()))?;
        Ok(ThisProcess::Child {
            role: kind,
            id,
            config,
        })
    }

    /// The runtime threads (`workerThreads`): 1 in the master, shared out by role in a child.
    fn runtime_threads(&self) -> usize {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        match self {
            ThisProcess::Master => 1,
            ThisProcess::Child { role, config, .. } => {
                let processes = match role {
                    ProcessRole::Worker => config.workers,
                    ProcessRole::Broker => config.brokers,
                };
                config.runtime_threads(processes, cpus)
            }
        }
    }
}

/// The cluster could not start or failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Bad configuration; nothing was started.
    #[error("{0}")]
    Config(String),
    /// The port is taken.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address.
        address: String,
        /// Why.
        source: std::io::Error,
    },
    /// The broker engine could not be reached.
    #[error("broker: {0}")]
    Broker(String),
    /// A controller failed.
    #[error("controller failed: {0}")]
    Controller(String),
    /// Other I/O.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for SocketCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketCluster").finish_non_exhaustive()
    }
}
