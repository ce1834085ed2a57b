//! A worker process: the HTTP and realtime server on the shared port, with your controller.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sc_broker::process::{BrokerControllers, MapIndex};
use sc_protocol::Json;
use sc_server::{Exchange, Server};
use tokio::signal::unix::{SignalKind, signal};

use super::ipc::{Envelope, HandlerSlot, IpcError, IpcPeer, connect_child};
use super::listener::{resolve, shared_listener};
use super::{ClusterError, ProcessRole, WorkerController};
use crate::config::ClusterConfig;

/// What a worker controller gets: this worker's id, its server and exchange, and the master.
#[derive(Clone)]
pub struct Worker {
    id: usize,
    server: Server,
    master: IpcPeer,
    brokers: Option<BrokerControllers>,
    on_master_message: HandlerSlot,
    config: Arc<ClusterConfig>,
}

impl Worker {
    /// This worker's id (0-based; a rebooted worker keeps its id).
    pub fn id(&self) -> usize {
        self.id
    }

    /// Worker 0 is the leader (SocketCluster's `isLeader`).
    pub fn is_leader(&self) -> bool {
        self.id == 0
    }

    /// The realtime server: register handlers and middleware here.
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// Publish and subscribe across the whole cluster.
    pub fn exchange(&self) -> Exchange {
        self.server.exchange()
    }

    /// The cluster configuration.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// Sends `data` to the master's `on_worker_message` handler and waits for the reply.
    pub async fn send_to_master(&self, data: Json) -> Result<Json, IpcError> {
        self.master.request(data).await
    }

    /// Sends a custom message to broker `id`'s controller (its `on_message` handler) and returns
    /// the answer (SocketCluster's `exchange.send`). Fails without broker processes.
    pub async fn send_to_broker(&self, id: usize, data: Json) -> Result<Json, String> {
        let brokers = self
            .brokers
            .as_ref()
            .ok_or("this cluster runs without broker processes")?;
        let target = MapIndex::Number(i64::try_from(id).unwrap_or(i64::MAX));
        let mut answers = super::broker_link::send_to_brokers(brokers, data, target).await?;
        Ok(answers.pop().unwrap_or(Json::NULL))
    }

    /// Sends a custom message to every broker; returns their answers in broker order.
    pub async fn send_to_all_brokers(&self, data: Json) -> Result<Vec<Json>, String> {
        let brokers = self
            .brokers
            .as_ref()
            .ok_or("this cluster runs without broker processes")?;
        super::broker_link::send_to_brokers(brokers, data, MapIndex::All).await
    }

    /// Answers the master's `send_to_worker` calls.
    pub fn on_master_message<F, Fut>(&self, handler: F)
    where
        F: Fn(Json) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Json, String>> + Send + 'static,
    {
        self.on_master_message.set(handler);
    }
}

pub(crate) async fn run(
    id: usize,
    config: ClusterConfig,
    dir: PathBuf,
    controller: WorkerController,
) -> Result<(), ClusterError> {
    let link = super::broker_link::worker_link(&config, &dir).await?;
    let server = Server::with_engine(config.server.clone(), link.broker, link.kv)
        .map_err(|e| ClusterError::Config(e.0))?;
    let on_master_message = HandlerSlot::default();
    let handler = crate::ops::with_scrape(on_master_message.handler(), {
        let server = server.clone();
        move || crate::ops::worker_report(id, &server)
    });
    let (master, master_link) =
        connect_child(&dir.join("master.sock"), ProcessRole::Worker, id, handler).await?;
    let worker = Worker {
        id,
        brokers: link.brokers,
        server: server.clone(),
        master: master.clone(),
        on_master_message,
        config: Arc::new(config),
    };
    let config = worker.config.clone();

    let brokers = worker.brokers.clone();
    if let Err(error) = controller(worker).await {
        tracing::error!(worker = id, %error, "worker controller failed");
        if config.crash_worker_on_error {
            return Err(ClusterError::Controller(error.to_string()));
        }
    }
    if let Some(brokers) = brokers {
        server.set_health_check(move || broker_health(brokers.clone()));
    }
    let address = resolve(&config.host, config.port)?;
    let listener = shared_listener(address).map_err(|source| ClusterError::Listen {
        address: address.to_string(),
        source,
    })?;
    if !config.ops.metrics {
        server.disable_metrics();
    }
    let gather = crate::ops::gatherer(master.clone());
    let app = crate::ops::worker_app(&server, config.public_dir(), &config.ops, gather);
    let tls = config.ops.tls().map_err(ClusterError::Config)?;
    let mut terminate = signal(SignalKind::terminate())?;
    if let Some(tls) = &tls {
        crate::ops::watch_tls(tls.clone())?;
    }
    let stop = Arc::new(tokio::sync::Notify::new());
    let serving = {
        let (server, stop) = (server.clone(), stop.clone());
        tokio::spawn(async move {
            let shutdown = async move { stop.notified().await };
            server.serve_until(listener, app, tls, shutdown).await
        })
    };
    let _ = master.send(Envelope::Ready);
    tracing::info!(worker = id, pid = std::process::id(), %address, "worker listening");

    tokio::pin!(serving);
    tokio::select! {
        result = &mut serving => {
            result.map_err(|e| ClusterError::Io(std::io::Error::other(e)))??;
        }
        _ = terminate.recv() => tracing::info!(worker = id, "SIGTERM: draining"),
        _ = master_link => tracing::warn!(worker = id, "lost the master; stopping"),
    }
    // Keep serving HTTP during the drain: `/health/ready` answers 503 from now on.
    crate::ops::drain::drain(
        &server,
        Duration::from_millis(config.ops.drain_duration),
        Duration::from_millis(config.process_term_timeout),
    )
    .await;
    // Stop accepting; let HTTP requests in flight (health probes, scrapes) finish.
    stop.notify_one();
    if tokio::time::timeout(Duration::from_secs(3), &mut serving)
        .await
        .is_err()
    {
        serving.abort();
    }
    Ok(())
}

/// Asks every broker for its state (and its engine's): `{"brokers":[…],"healthy":bool}`.
async fn broker_health(brokers: BrokerControllers) -> serde_json::Value {
    let probe = Json::from_text(super::broker::HEALTH_PROBE).unwrap_or(Json::NULL);
    let answers =
        tokio::time::timeout(Duration::from_secs(2), brokers.send(probe, MapIndex::All)).await;
    match answers {
        Ok(Ok(answers)) => {
            let reports: Vec<serde_json::Value> =
                answers.iter().filter_map(|a| a.parse().ok()).collect();
            let healthy = reports
                .iter()
                .all(|r| r.get("engineConnected") != Some(&serde_json::Value::Bool(false)));
            serde_json::json!({ "brokers": reports, "healthy": healthy })
        }
        Ok(Err(error)) => serde_json::json!({ "brokers": error.to_string(), "healthy": false }),
        Err(_) => serde_json::json!({ "brokers": "no answer within 2 s", "healthy": false }),
    }
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").finish_non_exhaustive()
    }
}
