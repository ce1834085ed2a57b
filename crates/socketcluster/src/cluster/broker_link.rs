//! A worker's link to the brokers: the broker processes when the cluster has any, else the
//! configured engine (Redis, NATS), else the in-process exchange.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sc_broker::process::{BrokerControllers, BrokerLinkConfig, ClusterBroker, MapIndex};
use sc_broker::{Broker, KvStore, MemoryBroker, MemoryKv};
use sc_protocol::Json;

use super::ClusterError;
use crate::config::ClusterConfig;

/// The socket path of broker `id`.
pub(crate) fn broker_socket(dir: &Path, id: usize) -> PathBuf {
    dir.join(format!("b{id}.sock"))
}

/// What a worker talks to for channels and key/value data.
pub(crate) struct WorkerLink {
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) kv: Arc<dyn KvStore>,
    /// The broker processes, for custom messages (`None` without broker processes).
    pub(crate) brokers: Option<BrokerControllers>,
}

/// The worker's link: the broker processes when there are any, else the engine, else the
/// in-process exchange.
pub(crate) async fn worker_link(
    config: &ClusterConfig,
    dir: &Path,
) -> Result<WorkerLink, ClusterError> {
    if config.brokers > 0 {
        let paths: Vec<PathBuf> = (0..config.brokers)
            .map(|id| broker_socket(dir, id))
            .collect();
        // Solo delivery (docs/cluster.md, "Solo channels") is on unless turned off with
        // SOCKETCLUSTER_SOLO_DELIVERY=0 in the master's environment (inherited by workers).
        let link_config = BrokerLinkConfig {
            solo_delivery: solo_delivery(std::env::var("SOCKETCLUSTER_SOLO_DELIVERY").ok()),
            ..BrokerLinkConfig::default()
        };
        let broker = ClusterBroker::connect(paths, link_config)
            .await
            .map_err(|e| ClusterError::Broker(e.to_string()))?;
        let kv = broker.kv();
        let controllers = broker.controllers();
        return Ok(WorkerLink {
            broker: Arc::new(broker),
            kv: Arc::new(kv),
            brokers: Some(controllers),
        });
    }
    let (broker, kv) = match &config.engine {
        Some(url) => engine(url).await?,
        None => (
            Arc::new(MemoryBroker::new()) as Arc<dyn Broker>,
            Arc::new(MemoryKv::new()) as Arc<dyn KvStore>,
        ),
    };
    Ok(WorkerLink {
        broker,
        kv,
        brokers: None,
    })
}

/// Whether solo delivery is on, given `SOCKETCLUSTER_SOLO_DELIVERY`: on unless it is `0`,
/// `false`, `off` or `no`.
fn solo_delivery(value: Option<String>) -> bool {
    !value.is_some_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "0" | "false" | "off" | "no"
        )
    })
}

/// Sends a custom message to broker `id` (or every broker) and collects the answers.
pub(crate) async fn send_to_brokers(
    brokers: &BrokerControllers,
    data: Json,
    target: MapIndex,
) -> Result<Vec<Json>, String> {
    brokers.send(data, target).await.map_err(|e| e.to_string())
}

/// Connects to the configured engine (Redis or NATS).
pub(crate) async fn engine(url: &str) -> Result<(Arc<dyn Broker>, Arc<dyn KvStore>), ClusterError> {
    sc_broker::connect_engine(url)
        .await
        // The error names the URL with its password redacted; `url` itself may hold one.
        .map_err(|e| ClusterError::Broker(format!("engine: {e}")))
}

#[cfg(test)]
mod tests {
    use super::solo_delivery;

    #[test]
    fn solo_delivery_is_on_unless_turned_off() {
        assert!(solo_delivery(None));
        assert!(solo_delivery(Some("1".into())));
        assert!(solo_delivery(Some(String::new())));
        for off in ["0", "false", "OFF", " no "] {
            assert!(!solo_delivery(Some(off.into())), "{off}");
        }
    }
}
