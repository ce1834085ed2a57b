//! The worker ↔ broker link of the process cluster (docs/protocol.md §14.3–§14.6).
//!
//! A cluster runs `M` broker processes; each listens on its own Unix socket. Every worker connects
//! to every broker and routes each channel (and each key/value key) to broker
//! [`hash_key(key, M)`](sc_protocol::hash::hash_key), exactly as `sc-broker-cluster` does, so all
//! workers agree on where a channel lives without talking to each other.
//!
//! ```text
//!  worker 0: ClusterBroker ──┐        ┌── BrokerServer 0 (b0): channel → worker connections, KvStore
//!                            ├─ UDS ──┤
//!  worker 1: ClusterBroker ──┘        └── BrokerServer 1 (b1)   ─ optional upstream engine (Redis, NATS)
//! ```
//!
//! # Layout
//!
//! - [`protocol`]: the wire format, one length-prefixed message per frame; the worker's
//!   publications cross as their encoded `#publish` frame, never re-encoded.
//! - [`server`]: [`BrokerServer`], what a broker process runs: per-channel subscriber sets,
//!   fan-out through bounded per-connection queues, the key/value store, the broker
//!   controller's message handler, and an optional upstream engine.
//! - [`client`]: [`ClusterBroker`] (a [`Broker`](crate::Broker) for a worker: routing, acks,
//!   reconnect with backoff and automatic re-subscription) and [`ClusterKv`] (a
//!   [`KvStore`](crate::KvStore) routed the same way) and [`BrokerControllers`] (custom
//!   messages to the broker controllers).
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use sc_broker::process::{BrokerServer, ClusterBroker, BrokerLinkConfig};
//! use sc_broker::{Broker, DeliverySink, KvCommand, KvStore, MemoryKv};
//! use sc_protocol::{Json, Publication};
//!
//! struct Print;
//! impl DeliverySink for Print {
//!     fn deliver(&self, publication: Publication) {
//!         println!("{} <- {:?}", publication.channel(), publication.data());
//!     }
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let dir = std::env::temp_dir().join(format!("sc-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! // In the broker process:
//! let server = BrokerServer::builder(0, Arc::new(MemoryKv::new()))
//!     .bind(dir.join("b0"))
//!     .await
//!     .unwrap();
//! // In each worker process:
//! let broker = ClusterBroker::connect(vec![dir.join("b0")], BrokerLinkConfig::default())
//!     .await
//!     .unwrap();
//! let kv = broker.kv();
//! broker.attach(Arc::new(Print));
//! broker.subscribe("news").await.unwrap();
//! assert_eq!(server.channels(), vec!["news".to_owned()]);
//! broker.publish(Publication::new("news", Some(&Json::encode(&1).unwrap()))).await.unwrap();
//! kv.execute(KvCommand::Set { key: vec!["k".into()], value: Json::NULL }).await.unwrap();
//! server.shutdown().await;
//! # std::fs::remove_dir_all(&dir).ok();
//! # });
//! ```

pub mod client;
pub mod protocol;
pub mod server;
pub mod stream_wire;

pub use client::{
    BrokerControllers, BrokerLinkConfig, ClusterBroker, ClusterKv, LINK_BACKOFF, MapIndex,
};
pub use protocol::{BrokerMessage, DecodeError, WorkerMessage};
/// The link's reconnect policy type (the workspace's one [`Backoff`], from sc-protocol).
pub use sc_protocol::Backoff;
pub use server::{BrokerServer, BrokerServerBuilder, MessageHandler};
