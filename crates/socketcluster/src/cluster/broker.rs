//! A broker process: holds channels and key/value data for the workers (each channel and key
//! lives on one broker, chosen by sc-hasher), and bridges to the engine when one is configured.

use std::path::PathBuf;
use std::sync::Arc;

use sc_broker::process::BrokerServer;
use sc_broker::{Broker, MemoryKv};
use sc_protocol::Json;
use tokio::signal::unix::{SignalKind, signal};

use super::broker_link::{broker_socket, engine};
use super::ipc::{Envelope, HandlerSlot, IpcError, IpcPeer, MessageHandler, connect_child};
use super::{BrokerController, ClusterError, ProcessRole};
use crate::config::ClusterConfig;

/// What a broker controller gets: this broker's id, the master, and the hook for custom messages
/// sent by workers with the exchange's `send`.
#[derive(Clone)]
pub struct BrokerProcess {
    id: usize,
    master: IpcPeer,
    on_master_message: HandlerSlot,
    on_message: HandlerSlot,
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
        self.on_master_message.set(handler);
    }

    /// Answers custom messages that workers send to this broker (SocketCluster's broker
    /// `message` event, reached with the exchange's `send`).
    pub fn on_message<F, Fut>(&self, handler: F)
    where
        F: Fn(Json) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Json, String>> + Send + 'static,
    {
        self.on_message.set(handler);
    }
}

/// The message workers send to learn a broker's health (answered before user handlers).
pub(crate) const HEALTH_PROBE: &str = r#"{"$scHealth":true}"#;

/// Answers [`HEALTH_PROBE`] with the engine's state; passes everything else to `handler`.
fn with_health_probe(handler: MessageHandler, upstream: Option<Arc<dyn Broker>>) -> MessageHandler {
    Arc::new(move |data: Json| {
        if data.get() != HEALTH_PROBE {
            return handler(data);
        }
        let report = match &upstream {
            Some(engine) => {
                serde_json::json!({
                    "engine": engine.describe(),
                    "engineConnected": engine.is_connected(),
                    "engineNodes": engine.health().nodes,
                })
            }
            None => serde_json::json!({ "engine": null }),
        };
        Box::pin(async move { Ok(Json::from(report)) })
    })
}

pub(crate) async fn run(
    id: usize,
    config: ClusterConfig,
    dir: PathBuf,
    controller: Option<BrokerController>,
) -> Result<(), ClusterError> {
    let on_master_message = HandlerSlot::default();
    let on_message = HandlerSlot::default();
    // The engine (if any) is known later; scrapes read it from here.
    let engine_slot: Arc<parking_lot::Mutex<Option<Arc<dyn Broker>>>> = Arc::default();
    let handler = crate::ops::with_scrape(on_master_message.handler(), {
        let engine_slot = engine_slot.clone();
        move || {
            let engine = engine_slot.lock().clone();
            let engine_up = engine.as_ref().map(|e| e.is_connected());
            let nodes = engine.map(|e| e.health()).unwrap_or_default();
            crate::ops::metrics::ChildReport {
                text: crate::ops::metrics::render_broker(
                    id,
                    engine_up,
                    &nodes,
                    crate::ops::process::read(),
                ),
                snapshot: None,
                engine_up,
            }
        }
    });
    let (master, master_link) =
        connect_child(&dir.join("master.sock"), ProcessRole::Broker, id, handler).await?;
    let broker = BrokerProcess {
        id,
        master: master.clone(),
        on_master_message,
        on_message: on_message.clone(),
    };
    if let Some(controller) = controller
        && let Err(error) = controller(broker.clone()).await
    {
        return Err(ClusterError::Controller(error.to_string()));
    }
    // With an engine, channels and data span every instance; otherwise this broker holds them.
    let (mut builder, upstream) = match &config.engine {
        Some(url) => {
            let (upstream, kv) = engine(url).await?;
            (
                BrokerServer::builder(id, kv).with_upstream(upstream.clone()),
                Some(upstream),
            )
        }
        None => (BrokerServer::builder(id, Arc::new(MemoryKv::new())), None),
    };
    engine_slot.lock().clone_from(&upstream);
    builder = builder.with_message_handler(with_health_probe(on_message.handler(), upstream));
    let server = builder.bind(broker_socket(&dir, id)).await?;
    let _ = master.send(Envelope::Ready);
    tracing::info!(broker = id, pid = std::process::id(), "broker ready");
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = terminate.recv() => tracing::info!(broker = id, "SIGTERM: stopping"),
        _ = master_link => tracing::warn!(broker = id, "lost the master; stopping"),
    }
    server.shutdown().await;
    Ok(())
}

impl std::fmt::Debug for BrokerProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerProcess").finish_non_exhaustive()
    }
}
