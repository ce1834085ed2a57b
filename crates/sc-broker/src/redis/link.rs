//! [`RedisLink`]: the connections to one Redis server and the supervisor that keeps them up,
//! shared by the Redis broker, key/value store and streams; and [`RedisOptions`].
//!
//! # Failures
//!
//! - When either connection breaks (or a ping goes unanswered), the supervisor logs **one**
//!   warning, marks the link down, and reconnects: at once, then with a backoff doubling from
//!   50 ms to [`RedisOptions::max_reconnect_delay`] (1 s). Once both connections are back it
//!   re-subscribes every channel still held and logs one line with the downtime; callers never
//!   resubscribe.
//! - While down, `publish` and `subscribe` fail at once with [`BrokerError::Unavailable`];
//!   `unsubscribe` succeeds (the channel is simply not restored). Publications made while down
//!   are lost (Redis pub/sub stores nothing), and so are those Redis sent while the pub/sub
//!   connection was gone.
//! - Every operation is bounded by [`RedisOptions::op_timeout`] ([`BrokerError::Timeout`]).
//! - A frame larger than [`RedisOptions::max_message_size`] is refused with
//!   [`BrokerError::TooLarge`] before anything is sent.
//!
//! # Topologies
//!
//! - One server: `redis://[user:pass@]host[:port][/db]` (`rediss://` for TLS; a private CA and a
//!   client certificate with `?tls_ca=…&tls_cert=…&tls_key=…` on every `rediss` form, see
//!   [`tls`](super::tls)).
//! - Sentinel: `redis-sentinel://[user:pass@]s1:26379,s2:26379/<master name>[/db]`
//!   (`rediss-sentinel://` for TLS): every (re)connect asks the sentinels for the master, checks
//!   that the server really is a master (`ROLE`), and the ping also checks `ROLE`, so a demoted
//!   master is left within a ping interval. The credentials are the master's.
//! - Redis Cluster: `redis-cluster://[user:pass@]h1:p1,h2:p2,…` (`rediss-cluster://`), sharded
//!   pub/sub and slot-tagged keys: see [`sharded`](super::sharded).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ::redis::RedisError;
use parking_lot::RwLock;
use tokio::sync::{mpsc, oneshot};

pub use super::connection::RedisConnection;
use super::failure::is_connection_error;
pub use super::options::RedisOptions;
use crate::{BrokerError, DeliverySink};

/// The connections to one Redis server, shared by a [`RedisBroker`](super::RedisBroker) and a
/// [`RedisKv`](super::RedisKv), and the supervisor task that keeps them up. Dropping the last
/// handle stops the task and closes them.
pub struct RedisLink {
    pub(super) shared: Arc<Shared>,
    pub(super) ctl: mpsc::UnboundedSender<Ctl>,
}

/// The state the supervisor and the handles share.
pub(super) struct Shared {
    pub(super) options: RedisOptions,
    /// The URL with its password redacted, for logs.
    pub(super) target: String,
    pub(super) connected: AtomicBool,
    /// The command connection and the session generation it belongs to (`None` while down).
    pub(super) command: RwLock<Option<(u64, RedisConnection)>>,
    pub(super) sink: RwLock<Option<Arc<dyn DeliverySink>>>,
    /// Redis Cluster: sharded pub/sub and slot-tagged keys.
    pub(super) cluster: bool,
    /// Each node's state, kept by the supervisor.
    pub(super) health: RwLock<crate::EngineHealth>,
    /// Commands started and commands answered: a Redis Cluster supervisor that sees commands
    /// started but none answered over two probes replaces a connection that is stuck even
    /// though every node answers its probe.
    pub(super) commands: CommandCounts,
}

/// Commands answered on a link, and commands that failed at the connection level or timed out
/// (see [`Shared::commands`]). A command its caller cancelled counts as neither: cancelling is
/// normal and says nothing about the connection.
#[derive(Debug, Default)]
pub(super) struct CommandCounts {
    pub(super) answered: std::sync::atomic::AtomicU64,
    pub(super) failed: std::sync::atomic::AtomicU64,
}

/// Requests to the supervisor task, which alone owns the pub/sub connection and the set of held
/// channels (so subscribe, unsubscribe, delivery and re-subscription never race).
pub(super) enum Ctl {
    Subscribe(String, oneshot::Sender<Result<(), BrokerError>>),
    Unsubscribe(String, oneshot::Sender<Result<(), BrokerError>>),
    /// A command on session `generation`'s connection failed at the connection level.
    Broken(u64),
}

impl std::fmt::Debug for RedisLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLink")
            .field("target", &self.shared.target)
            .finish_non_exhaustive()
    }
}

impl RedisLink {
    /// Each node's state (see [`Broker::health`](crate::Broker::health)).
    pub fn health(&self) -> crate::EngineHealth {
        self.shared.health.read().clone()
    }

    /// `PUBLISH`, or `SPUBLISH` (sharded) on a Redis Cluster.
    pub(super) fn publish_command(&self) -> &'static str {
        if self.shared.cluster {
            "SPUBLISH"
        } else {
            "PUBLISH"
        }
    }

    /// The Redis key of kind `kind` (`ch`, `h`, `hl`, `p`) for `channel`: `<prefix><kind>:<channel>`
    /// on one server; on a Redis Cluster with the channel's hash tag, so that every key of a
    /// channel and of its presence companion lives in one slot (see
    /// [`keys::slot_key`](super::keys::slot_key)).
    pub(super) fn key(&self, kind: &str, channel: &str) -> String {
        let prefix = &self.shared.options.prefix;
        if self.shared.cluster {
            super::keys::slot_key(prefix, kind, channel)
        } else {
            format!("{prefix}{kind}:{channel}")
        }
    }

    /// Whether both connections are up.
    pub fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::Acquire)
    }

    /// The options the link was made with.
    pub fn options(&self) -> &RedisOptions {
        &self.shared.options
    }

    /// The URL, password redacted.
    pub fn target(&self) -> &str {
        &self.shared.target
    }

    pub(crate) fn channel_key(&self, channel: &str) -> String {
        self.key("ch", channel)
    }

    /// Sends a subscribe/unsubscribe to the supervisor and waits (bounded) for its answer.
    pub(super) async fn control(
        &self,
        channel: &str,
        action: &'static str,
        make: fn(String, oneshot::Sender<Result<(), BrokerError>>) -> Ctl,
    ) -> Result<(), BrokerError> {
        if action == "subscribe" && !self.is_connected() {
            return Err(self.unavailable());
        }
        let (reply, answer) = oneshot::channel();
        self.ctl
            .send(make(channel.to_owned(), reply))
            .map_err(|_| self.unavailable())?;
        // The supervisor bounds its own Redis round trip by op_timeout; this is a backstop.
        match tokio::time::timeout(self.options().op_timeout * 2, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(self.unavailable()),
            Err(_) => Err(BrokerError::Timeout { action }),
        }
    }

    pub(crate) fn unavailable(&self) -> BrokerError {
        BrokerError::Unavailable(format!("redis at {} is not connected", self.shared.target))
    }

    /// Runs `operation` on the command connection, bounded by the operation timeout, failing at
    /// once while the link is down and reporting connection failures to the supervisor.
    pub(crate) async fn with_connection<T, F, Fut>(
        &self,
        action: &'static str,
        operation: F,
    ) -> Result<T, BrokerError>
    where
        F: FnOnce(RedisConnection) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let (generation, conn) = match (self.is_connected(), self.shared.command.read().clone()) {
            (true, Some(current)) => current,
            _ => return Err(self.unavailable()),
        };
        let commands = &self.shared.commands;
        match tokio::time::timeout(self.options().op_timeout, operation(conn)).await {
            Ok(Ok(value)) => {
                commands.answered.fetch_add(1, Ordering::Relaxed);
                Ok(value)
            }
            Ok(Err(error)) if !is_connection_error(&error) => {
                Err(BrokerError::Engine(format!("redis {action}: {error}")))
            }
            Ok(Err(error)) => {
                commands.failed.fetch_add(1, Ordering::Relaxed);
                let _ = self.ctl.send(Ctl::Broken(generation));
                Err(BrokerError::Unavailable(format!(
                    "redis at {}: {error}",
                    self.shared.target
                )))
            }
            Err(_) => {
                commands.failed.fetch_add(1, Ordering::Relaxed);
                Err(BrokerError::Timeout { action })
            }
        }
    }
}
