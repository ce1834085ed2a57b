//! Brokers: where a worker's channel traffic goes and comes from.
//!
//! A worker keeps one subscription per channel towards its [`Broker`], however many sockets
//! subscribe locally; the broker hands every publication for a subscribed channel back to the
//! worker's [`DeliverySink`], which fans it out to local subscribers.
//!
//! # Layout
//!
//! - [`Broker`]: the engine trait (subscribe / unsubscribe / publish) and its guarantees.
//! - [`memory`]: [`MemoryBroker`], the in-process engine (the embedded default: one process,
//!   no external service).
//! - `redis` (feature `redis`): `RedisBroker`, pub/sub across machines through Redis (one server,
//!   Sentinel, or Redis Cluster with sharded pub/sub: `redis_cluster`).
//! - [`health`]: [`EngineHealth`], each engine node's state.
//! - `nats` (feature `nats`): `NatsBroker`, pub/sub across machines through NATS.
//! - [`kv`]: [`KvStore`] and [`KvCommand`], the exchange's key/value store.
//! - [`kv_ops`]: the store's document rules (SocketCluster's `fleximap`), pure, shared by every
//!   store below.
//! - [`kv_memory`]: [`MemoryKv`], the in-process store.
//! - `kv_redis` (feature `redis`): `RedisKv`, the store kept in Redis.
//! - `kv_nats` (feature `nats`): `NatsKv`, the store kept in a NATS JetStream key/value bucket.
//! - [`engine`]: [`connect_engine`], which picks a broker and a store from a URL
//!   (`memory://`, `redis://`, `rediss://`, `nats://`), and [`EngineError`].
//! - [`cluster`]: the process cluster's worker ↔ broker link: `BrokerServer` (a broker process),
//!   `ClusterBroker` / `ClusterKv` (a worker's broker and store over every broker process).
//! - [`stream`]: positions, history and presence types (EXTENSIONS.md);
//!   [`stream_memory`]: their in-process store, shared by the in-process engine and the broker
//!   processes; `stream_redis` and `stream_nats` (features `redis`, `nats`): the same kept in
//!   Redis and in NATS JetStream.
//! - [`BrokerError`]: what can go wrong with an operation, typed.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use sc_broker::{Broker, DeliverySink, MemoryBroker};
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
//! let broker = MemoryBroker::new();
//! broker.attach(Arc::new(Print));
//! broker.subscribe("pong").await.unwrap();
//! broker.publish(Publication::new("pong", Some(&Json::encode(&1).unwrap()))).await.unwrap();
//! # });
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use sc_protocol::Publication;

pub mod cluster;
pub mod engine;
pub mod health;
pub mod kv;
pub mod kv_memory;
#[cfg(feature = "nats")]
pub mod kv_nats;
pub mod kv_ops;
#[cfg(feature = "redis")]
pub mod kv_redis;
pub mod memory;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "redis")]
pub mod redis_cluster;
#[cfg(feature = "redis")]
mod redis_sentinel;
pub mod stream;
pub mod stream_memory;
#[cfg(feature = "nats")]
pub mod stream_nats;
#[cfg(feature = "redis")]
pub mod stream_redis;
#[cfg(any(feature = "redis", feature = "nats"))]
mod support;

pub use engine::{EngineError, connect_engine};
pub use health::{EngineHealth, NodeHealth};
pub use kv::{KeyPath, KvCommand, KvStore};
pub use kv_memory::MemoryKv;
#[cfg(feature = "nats")]
pub use kv_nats::NatsKv;
#[cfg(feature = "redis")]
pub use kv_redis::RedisKv;
pub use memory::MemoryBroker;
#[cfg(feature = "nats")]
pub use nats::NatsBroker;
#[cfg(feature = "redis")]
pub use redis::RedisBroker;
pub use stream::{HistoryPage, HistoryPolicy, HistoryRead, Position, PresenceInfo, PresenceMember};

/// A boxed future, as returned by [`Broker`] methods (the trait is object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Receives the publications of every channel the worker is subscribed to.
///
/// Called from the broker's own context; implementations must not block (queue, don't wait).
pub trait DeliverySink: Send + Sync + 'static {
    /// One publication for a subscribed channel.
    fn deliver(&self, publication: Publication);
}

/// The engine that carries publications between workers (and machines).
///
/// Guarantees every implementation gives:
/// - after `subscribe(ch)` returns `Ok`, every publication to `ch` made afterwards (by anyone
///   using the same broker) reaches the attached sink, until `unsubscribe(ch)`;
/// - publications from one publisher to one channel arrive in publish order;
/// - delivery is at most once: a publication made while the engine is unreachable is lost, and
///   `publish` says so with an error;
/// - after a reconnect the engine restores its own subscriptions; callers need not resubscribe.
///
/// Callers hold at most one subscription per channel (the worker's channel table dedupes), so
/// implementations need not reference-count.
pub trait Broker: Send + Sync + 'static {
    /// Sets where publications of subscribed channels go. Called once, before any subscribe.
    fn attach(&self, sink: Arc<dyn DeliverySink>);

    /// Starts delivering publications of `channel` to the sink.
    fn subscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), BrokerError>>;

    /// Stops delivering publications of `channel`.
    fn unsubscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), BrokerError>>;

    /// Publishes to every subscriber of the publication's channel, everywhere.
    fn publish(&self, publication: Publication) -> BoxFuture<'_, Result<(), BrokerError>>;

    /// A short human description for logs and the health endpoint (e.g. `memory`).
    fn describe(&self) -> String;

    /// Whether the engine is reachable right now (for a health endpoint). While it is not,
    /// `publish` and `subscribe` fail at once with [`BrokerError::Unavailable`]. In-process
    /// engines are always connected.
    fn is_connected(&self) -> bool {
        true
    }

    /// Each engine node's state, for `/health` and `/metrics` (addresses never carry
    /// credentials). In-process engines have no nodes.
    fn health(&self) -> EngineHealth {
        EngineHealth::default()
    }

    /// Publishes to a channel with history (EXTENSIONS.md E2): the engine that keeps the history
    /// gives the publication its position, retains it, then delivers it (with the position in its
    /// frame) in offset order. `Ok` means it is in the history; an engine that cannot store it
    /// fails and delivers nothing.
    fn publish_stored(
        &self,
        publication: Publication,
        policy: HistoryPolicy,
    ) -> BoxFuture<'_, Result<Position, BrokerError>> {
        let _ = (publication, policy);
        Box::pin(std::future::ready(Err(self.no_streams())))
    }

    /// Reads a channel's history and current position (creating its epoch if it has none).
    fn read_history<'a>(
        &'a self,
        channel: &'a str,
        policy: HistoryPolicy,
        read: HistoryRead,
    ) -> BoxFuture<'a, Result<HistoryPage, BrokerError>> {
        let _ = (channel, policy, read);
        Box::pin(std::future::ready(Err(self.no_streams())))
    }

    /// Adds (or updates the user of) a member of a presence channel; a new member is announced
    /// to every subscriber with `#presenceJoin`.
    fn presence_join<'a>(
        &'a self,
        channel: &'a str,
        member: PresenceMember,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        let _ = (channel, member);
        Box::pin(std::future::ready(Err(self.no_streams())))
    }

    /// Removes a member of a presence channel, announcing it with `#presenceLeave`.
    fn presence_leave<'a>(
        &'a self,
        channel: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        let _ = (channel, id);
        Box::pin(std::future::ready(Err(self.no_streams())))
    }

    /// Who is in a presence channel, over every worker and instance.
    fn presence<'a>(
        &'a self,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<PresenceInfo, BrokerError>> {
        let _ = channel;
        Box::pin(std::future::ready(Err(self.no_streams())))
    }

    /// The error of an engine without history and presence.
    fn no_streams(&self) -> BrokerError {
        BrokerError::Engine(format!(
            "the {} engine keeps no history or presence",
            self.describe()
        ))
    }
}

/// A broker operation failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum BrokerError {
    /// The engine cannot be reached right now; the operation was not performed.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// The engine did not answer in time.
    #[error("broker operation {action} timed out")]
    Timeout {
        /// The action that timed out (`subscribe`, `publish`, …).
        action: &'static str,
    },
    /// The message is larger than the engine accepts.
    #[error("message of {size} bytes exceeds the broker limit of {limit} bytes")]
    TooLarge {
        /// Size of the refused message.
        size: usize,
        /// The engine's limit.
        limit: usize,
    },
    /// The engine refused or failed the operation.
    #[error("{0}")]
    Engine(String),
}
