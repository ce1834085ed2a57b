//! Brokers: where a worker's channel traffic goes and comes from.
//!
//! A worker keeps one subscription per channel towards its [`Broker`], however many sockets
//! subscribe locally; the broker hands every publication for a subscribed channel back to the
//! worker's [`DeliverySink`], which fans it out to local subscribers.
//!
//! # Layout
//!
//! - [`Broker`]: the engine trait (subscribe / unsubscribe / publish) and its guarantees.
//! - [`error`]: [`BrokerError`] (an operation failed) and [`EngineError`] (an engine could not
//!   be set up); `url` (private): redacting and decoding engine URLs. Both depend on nothing.
//! - [`kv`]: [`KvStore`] and [`KvCommand`], the exchange's key/value store.
//! - [`kv_ops`]: the store's document rules (SocketCluster's `fleximap`), pure, shared by every
//!   store below; `kv_cas` (private): the compare-and-set loop of the stores kept in Redis and
//!   NATS.
//! - [`stream`]: positions, history and presence types (EXTENSIONS.md).
//! - One folder per backend, each with its broker, key/value store and streams side by side:
//!   - [`memory`]: [`MemoryBroker`], [`MemoryKv`] and the in-process history and presence
//!     (`memory::stream`, shared by the in-process engine and the broker processes). The
//!     embedded default: one process, no external service.
//!   - `redis` (feature `redis`): `RedisLink` (the connections), `RedisBroker`, `RedisKv`, and
//!     history and presence kept in Redis; one server, Sentinel (`redis::sentinel`, private) or
//!     Redis Cluster with sharded pub/sub (`redis::sharded`).
//!   - `nats` (feature `nats`): `NatsLink` (the connection), `NatsBroker`, `NatsKv` (a
//!     JetStream key/value bucket), and history and presence kept in JetStream.
//!   - [`process`]: the process cluster's worker ↔ broker link: `BrokerServer` (a broker
//!     process), `ClusterBroker` / `ClusterKv` (a worker's broker and store over every broker
//!     process).
//! - [`health`]: [`EngineHealth`], each engine node's state.
//! - [`engine`]: [`connect_engine`], which picks a broker and a store from a URL
//!   (`memory://`, `redis://`, `rediss://`, `redis-sentinel://`, `redis-cluster://`, `nats://`).
//!   On top: no other module imports it.
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

pub mod engine;
pub mod error;
pub mod health;
pub mod kv;
#[cfg(any(feature = "redis", feature = "nats"))]
mod kv_cas;
pub mod kv_ops;
pub mod memory;
#[cfg(feature = "nats")]
pub mod nats;
pub mod process;
#[cfg(feature = "redis")]
pub mod redis;
pub mod stream;
#[cfg(any(feature = "redis", feature = "nats"))]
mod support;
mod url;

pub use engine::connect_engine;
pub use error::{BrokerError, EngineError};
pub use health::{EngineHealth, NodeHealth};
pub use kv::{KeyPath, KvCommand, KvStore};
pub use memory::{MemoryBroker, MemoryKv};
#[cfg(feature = "nats")]
pub use nats::{NatsBroker, NatsKv};
#[cfg(feature = "redis")]
pub use redis::{RedisBroker, RedisKv};
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

/// What a publish started by [`Broker::start_publish_then`] calls with its outcome.
pub type PublishDone = Box<dyn FnOnce(Result<(), BrokerError>) + Send>;

/// What [`Broker::start_publish_then`] did with a publication.
#[derive(Debug)]
pub enum PublishStart {
    /// Published already (or failed); the callback was not built.
    Done(Result<(), BrokerError>),
    /// Placed in the publisher's order; the callback gets the outcome later, exactly once.
    Pending,
    /// Not placed (the engine cannot take its place at once, or its queue is full): the caller
    /// awaits [`Broker::publish`] before it starts anything else.
    Refused(Publication),
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

    /// Starts a [`publish`](Broker::publish) whose place in the publisher's order is taken before
    /// this returns, so that the caller may go on (and start its next publishes) while the
    /// returned future waits for the outcome, in a task of its own if it likes: publications
    /// started one after the other are delivered in that order, whenever their futures are
    /// awaited. The future reports what `publish` would have reported.
    ///
    /// Gives the publication back when the engine cannot take its place at once (the default;
    /// or a full queue): the caller then awaits [`publish`](Broker::publish) before it starts
    /// anything else.
    fn start_publish(
        &self,
        publication: Publication,
    ) -> Result<BoxFuture<'static, Result<(), BrokerError>>, Publication> {
        Err(publication)
    }

    /// [`start_publish`](Broker::start_publish) without a future per publish: the engine calls
    /// the callback that `make_done` builds with the outcome, exactly once, from whichever task
    /// learns it (the cluster link's reader: no task, timer or channel per publish). `make_done`
    /// is called only when the outcome is not known at once ([`PublishStart::Pending`]).
    ///
    /// The default runs [`start_publish`](Broker::start_publish)'s future in a task of its own.
    fn start_publish_then(
        &self,
        publication: Publication,
        make_done: &mut dyn FnMut() -> PublishDone,
    ) -> PublishStart {
        let mut outcome = match self.start_publish(publication) {
            Ok(outcome) => outcome,
            Err(publication) => return PublishStart::Refused(publication),
        };
        let waker = futures_util::task::noop_waker();
        let mut context = std::task::Context::from_waker(&waker);
        if let std::task::Poll::Ready(result) = outcome.as_mut().poll(&mut context) {
            return PublishStart::Done(result);
        }
        let done = make_done();
        tokio::spawn(async move { done(outcome.await) });
        PublishStart::Pending
    }

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
