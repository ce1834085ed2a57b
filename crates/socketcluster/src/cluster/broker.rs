//! A broker process: holds channels and key/value data for the workers (each channel and key
//! lives on one broker, chosen by sc-hasher), and bridges to the engine when one is configured.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use sc_broker::{Broker, MemoryBroker};
use sc_protocol::Json;
use tokio::signal::unix::{SignalKind, signal};

use super::ipc::{Envelope, IpcError, IpcPeer, MessageHandler, connect_child};
use super::{BrokerController, ClusterError, ProcessRole};
use crate::config::ClusterConfig;

type DataHandler = Arc<dyn Fn(Json) -> super::BoxFuture<Result<Json, String>> + Send + Sync>;

/// What a broker controller gets: this broker's id, the master, and the hook for custom messages
/// sent by workers with the exchange's `send`.
#[derive(Clone)]
pub struct BrokerProcess {
    id: usize,
    master: IpcPeer,
    on_master_message: Arc<Mutex<Option<DataHandler>>>,
    on_message: Arc<Mutex<Option<DataHandler>>>,
}

impl BrokerProcess {
    /// This broker's id (0-based).
    pub fn id(&self) -> usize {
        self.id
    }

    /// Sends `data` to the master's `on_broker_message` handler and waits for the reply.
    pub async fn send_to_master(&self, data: Json) -> Result<Json, IpcError> {
        self.master.request(data).await
    }

    /// Answers the master's `send_to_broker` calls.
    pub fn on_master_message<F, Fut>(&self, handler: F)
    where
        F: Fn(Json) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Json, String>> + Send + 'static,
    {
        *self.on_master_message.lock() = Some(Arc::new(move |data| Box::pin(handler(data))));
    }

    /// Answers custom messages that workers send to this broker (SocketCluster's broker
    /// `message` event, reached with the exchange's `send`).
    pub fn on_message<F, Fut>(&self, handler: F)
    where
        F: Fn(Json) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Json, String>> + Send + 'static,
    {
        *self.on_message.lock() = Some(Arc::new(move |data| Box::pin(handler(data))));
    }
}

/// The socket path of broker `id`.
pub(crate) fn broker_socket(dir: &Path, id: usize) -> PathBuf {
    dir.join(format!("b{id}.sock"))
}

/// The broker a worker uses: the broker processes when there are any, else the engine, else the
/// in-process exchange.
pub(crate) async fn worker_broker(
    config: &ClusterConfig,
    dir: &Path,
) -> Result<Arc<dyn Broker>, ClusterError> {
    if config.brokers > 0 {
        let paths: Vec<PathBuf> = (0..config.brokers)
            .map(|id| broker_socket(dir, id))
            .collect();
        return cluster_broker(paths).await;
    }
    match &config.engine {
        Some(url) => engine(url).await,
        None => Ok(Arc::new(MemoryBroker::new())),
    }
}

async fn cluster_broker(_paths: Vec<PathBuf>) -> Result<Arc<dyn Broker>, ClusterError> {
    Err(ClusterError::Broker(
        "broker processes are not wired yet".into(),
    ))
}

async fn engine(url: &str) -> Result<Arc<dyn Broker>, ClusterError> {
    Err(ClusterError::Broker(format!(
        "engine {url} is not wired yet"
    )))
}

fn handler_from(slot: &Arc<Mutex<Option<DataHandler>>>) -> MessageHandler {
    let slot = slot.clone();
    Arc::new(move |data| {
        let handler = slot.lock().clone();
        Box::pin(async move {
            match handler {
                Some(handler) => handler(data).await,
                None => Ok(Json::NULL),
            }
        })
    })
}

pub(crate) async fn run(
    id: usize,
    _config: ClusterConfig,
    dir: PathBuf,
    controller: Option<BrokerController>,
) -> Result<(), ClusterError> {
    let on_master_message: Arc<Mutex<Option<DataHandler>>> = Arc::default();
    let on_message: Arc<Mutex<Option<DataHandler>>> = Arc::default();
    let (master, master_link) = connect_child(
        &dir.join("master.sock"),
        ProcessRole::Broker,
        id,
        handler_from(&on_master_message),
    )
    .await?;
    let broker = BrokerProcess {
        id,
        master: master.clone(),
        on_master_message,
        on_message,
    };
    if let Some(controller) = controller
        && let Err(error) = controller(broker.clone()).await
    {
        return Err(ClusterError::Controller(error.to_string()));
    }
    let _socket = broker_socket(&dir, id);
    let _ = master.send(Envelope::Ready);
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = terminate.recv() => tracing::info!(broker = id, "SIGTERM: stopping"),
        _ = master_link => tracing::warn!(broker = id, "lost the master; stopping"),
    }
    Ok(())
}
