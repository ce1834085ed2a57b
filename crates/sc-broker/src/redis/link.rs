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

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ::redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use ::redis::{AsyncConnectionConfig, Client, ErrorKind, RedisError};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::try_join_all;
use parking_lot::RwLock;
use sc_protocol::Publication;
use tokio::sync::{mpsc, oneshot};

use super::sentinel::ClientSource;
pub use super::sharded::RedisConnection;
use crate::error::EngineError;
use crate::support::reconnect_backoff;
use crate::url::redact;
use crate::{BrokerError, DeliverySink};

const ENGINE: &str = "redis";

/// Settings of the Redis engine (broker and key/value store).
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// Prefix of every Redis name we use, so several apps can share one Redis: channels are
    /// `<prefix>ch:<channel>`, key/value entries `<prefix>kv:<top-level key>`, nested expiries the
    /// sorted set `<prefix>kvx`. Default `sc:`.
    pub prefix: String,
    /// Longest wait for any one operation (publish, subscribe, a key/value command). Default 5 s.
    pub op_timeout: Duration,
    /// Longest wait for a connection attempt. Default 2 s.
    pub connect_timeout: Duration,
    /// Largest publish frame (and stored key/value entry), in bytes. Default 8 MiB — far below
    /// Redis' own 512 MB bulk limit, so one oversized message cannot stall the connection that
    /// every channel shares.
    pub max_message_size: usize,
    /// Cap of the reconnect backoff. Default 1 s: delivery resumes within about a second of
    /// Redis coming back.
    pub max_reconnect_delay: Duration,
    /// How often the pub/sub connection is pinged to detect a silent network failure. Default 1 s.
    pub ping_interval: Duration,
    /// How often the store looks for due nested-key expiries (see [`RedisKv`](super::RedisKv)). Default 500 ms.
    pub expiry_sweep_interval: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            prefix: "sc:".to_owned(),
            op_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            max_message_size: 8 * 1024 * 1024,
            max_reconnect_delay: Duration::from_secs(1),
            ping_interval: Duration::from_secs(1),
            expiry_sweep_interval: Duration::from_millis(500),
        }
    }
}

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

/// Both connections of one connected period.
struct Session {
    generation: u64,
    sink: PubSubSink,
    stream: PubSubStream,
    command: MultiplexedConnection,
}

impl RedisLink {
    /// Parses `url`, opens both connections (bounded by the connect timeout) and starts the
    /// supervisor.
    /// `redis-cluster://` and `redis-sentinel://` URLs (and their `rediss-` forms) pick those
    /// topologies (see the [module](self) documentation).
    pub async fn connect(url: &str, options: RedisOptions) -> Result<Arc<RedisLink>, EngineError> {
        let target = redact(url);
        let lower = url.to_ascii_lowercase();
        if lower.starts_with("rediss") {
            // rustls needs one process-wide crypto provider; ignore "already installed".
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        if lower.starts_with("redis-cluster:") || lower.starts_with("rediss-cluster:") {
            return super::sharded::connect(url, options).await;
        }
        let source = ClientSource::from_url(url, &target)?;
        let session = open_checked(&source, &options, 1, &[])
            .await
            .map_err(|failure| failure.into_engine_error(&target))?;
        let shared = Arc::new(Shared {
            options,
            target,
            connected: AtomicBool::new(true),
            command: RwLock::new(Some((
                session.generation,
                RedisConnection::Single(session.command.clone()),
            ))),
            sink: RwLock::new(None),
            cluster: false,
            health: RwLock::new(source.health(true)),
            commands: CommandCounts::default(),
        });
        let (ctl, ctl_rx) = mpsc::unbounded_channel();
        tokio::spawn(supervise(shared.clone(), source, ctl_rx, session));
        Ok(Arc::new(RedisLink { shared, ctl }))
    }

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
    /// [`sharded::slot_key`](super::sharded::slot_key)).
    pub(super) fn key(&self, kind: &str, channel: &str) -> String {
        let prefix = &self.shared.options.prefix;
        if self.shared.cluster {
            super::sharded::slot_key(prefix, kind, channel)
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

/// Whether an error means the connection is gone (as opposed to a refused command).
pub(super) fn is_connection_error(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_unrecoverable_error()
        || error.is_timeout()
}

/// Why a session could not be opened.
pub(super) enum OpenFailure {
    Redis(RedisError),
    TimedOut(&'static str),
    /// Sentinel: no sentinel knows the master, or the server found is not a master.
    NoMaster(String),
}

impl OpenFailure {
    fn reason(&self) -> String {
        match self {
            OpenFailure::Redis(error) => error.to_string(),
            OpenFailure::TimedOut(what) => format!("{what} timed out"),
            OpenFailure::NoMaster(why) => why.clone(),
        }
    }

    pub(super) fn into_engine_error(self, target: &str) -> EngineError {
        let (engine, target) = (ENGINE, target.to_owned());
        let reason = self.reason();
        match self {
            OpenFailure::Redis(error) if is_auth_error(&error) => EngineError::Auth {
                engine,
                target,
                reason,
            },
            OpenFailure::Redis(error) if error.kind() == ErrorKind::InvalidClientConfig => {
                EngineError::InvalidUrl {
                    url: target,
                    reason,
                }
            }
            OpenFailure::Redis(error) if !is_connection_error(&error) => EngineError::Setup {
                engine,
                target,
                reason,
            },
            _ => EngineError::Unreachable {
                engine,
                target,
                reason,
            },
        }
    }
}

fn is_auth_error(error: &RedisError) -> bool {
    error.kind() == ErrorKind::AuthenticationFailed
        || matches!(error.code(), Some("NOAUTH" | "WRONGPASS" | "NOPERM"))
}

/// Asks `source` for the server, opens a session on it and, behind sentinels, checks that the
/// server is a master.
async fn open_checked(
    source: &ClientSource,
    options: &RedisOptions,
    generation: u64,
    channels: &[String],
) -> Result<Session, OpenFailure> {
    let client = source.client(options).await?;
    let session = open_session(&client, options, generation, channels).await?;
    if source.is_sentinel() {
        super::sentinel::check_master(&session.command, options).await?;
    }
    Ok(session)
}

/// Opens both connections and subscribes `channels` on the pub/sub one.
async fn open_session(
    client: &Client,
    options: &RedisOptions,
    generation: u64,
    channels: &[String],
) -> Result<Session, OpenFailure> {
    let pubsub =
        match tokio::time::timeout(options.connect_timeout, client.get_async_pubsub()).await {
            Ok(result) => result.map_err(OpenFailure::Redis)?,
            Err(_) => return Err(OpenFailure::TimedOut("pub/sub connection")),
        };
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(options.connect_timeout))
        .set_response_timeout(Some(options.op_timeout));
    let command = match tokio::time::timeout(
        options.connect_timeout,
        client.get_multiplexed_async_connection_with_config(&config),
    )
    .await
    {
        Ok(result) => result.map_err(OpenFailure::Redis)?,
        Err(_) => return Err(OpenFailure::TimedOut("command connection")),
    };
    // A PING proves the server accepts our commands (a server with a password answers NOAUTH
    // only now, not when the connection opens).
    let mut probe = command.clone();
    match tokio::time::timeout(
        options.op_timeout,
        ::redis::cmd("PING").query_async::<String>(&mut probe),
    )
    .await
    {
        Ok(result) => result.map_err(OpenFailure::Redis)?,
        Err(_) => return Err(OpenFailure::TimedOut("ping")),
    };
    let (sink, stream) = pubsub.split();
    // One SUBSCRIBE per channel, all in flight at once (the pub/sub connection pipelines them and
    // answers in order).
    let subscribes = channels.iter().map(|channel| {
        let mut sink = sink.clone();
        let key = format!("{}ch:{channel}", options.prefix);
        async move { sink.subscribe(key).await }
    });
    match tokio::time::timeout(options.op_timeout, try_join_all(subscribes)).await {
        Ok(result) => result.map_err(OpenFailure::Redis)?,
        Err(_) => return Err(OpenFailure::TimedOut("re-subscribing")),
    };
    Ok(Session {
        generation,
        sink,
        stream,
        command,
    })
}

/// The supervisor: runs sessions, and between them reconnects with backoff. Ends when every
/// handle of the link is dropped.
async fn supervise(
    shared: Arc<Shared>,
    source: ClientSource,
    mut ctl: mpsc::UnboundedReceiver<Ctl>,
    first: Session,
) {
    let mut held: HashSet<String> = HashSet::new();
    let mut session = Some(first);
    let mut generation = session.as_ref().map_or(0, |s| s.generation);
    let mut outage: Option<(Instant, u32)> = None; // since when, failed attempts
    loop {
        let current = match session.take() {
            Some(current) => current,
            None => {
                let (since, attempts) = outage.get_or_insert((Instant::now(), 0));
                let delay = reconnect_backoff(shared.options.max_reconnect_delay).delay(*attempts);
                *attempts += 1;
                if serve_while_down(&mut ctl, &mut held, tokio::time::sleep(delay))
                    .await
                    .is_none()
                {
                    return;
                }
                generation += 1;
                let snapshot: Vec<String> = held.iter().cloned().collect();
                let opening = open_checked(&source, &shared.options, generation, &snapshot);
                let Some(result) = serve_while_down(&mut ctl, &mut held, opening).await else {
                    return;
                };
                match result {
                    Ok(mut opened) => {
                        // Channels unsubscribed while we were connecting: drop them again.
                        for channel in snapshot.iter().filter(|c| !held.contains(*c)) {
                            let key = format!("{}ch:{channel}", shared.options.prefix);
                            let _ = tokio::time::timeout(
                                shared.options.op_timeout,
                                opened.sink.unsubscribe(key),
                            )
                            .await;
                        }
                        tracing::info!(
                            engine = ENGINE,
                            target = %shared.target,
                            downtime_ms = since.elapsed().as_millis() as u64,
                            channels = held.len(),
                            "engine connection restored; channel subscriptions restored"
                        );
                        opened
                    }
                    Err(failure) => {
                        tracing::debug!(engine = ENGINE, target = %shared.target, attempt = *attempts, error = %failure.reason(), "reconnect attempt failed");
                        continue;
                    }
                }
            }
        };
        *shared.command.write() = Some((
            current.generation,
            RedisConnection::Single(current.command.clone()),
        ));
        shared.connected.store(true, Ordering::Release);
        *shared.health.write() = source.health(true);

        let lost = run_session(&shared, &source, &mut ctl, &mut held, current).await;
        shared.connected.store(false, Ordering::Release);
        *shared.command.write() = None;
        *shared.health.write() = source.health(false);
        let Some(reason) = lost else {
            return; // every handle is gone
        };
        tracing::warn!(
            engine = ENGINE,
            target = %shared.target,
            error = %reason,
            channels = held.len(),
            "engine connection lost; publish and subscribe fail with Unavailable until it is back, reconnecting"
        );
        outage = Some((Instant::now(), 0));
    }
}

/// Serves requests while the link is down, until `until` completes; returns its output, or
/// `None` if every handle of the link was dropped meanwhile.
async fn serve_while_down<F: Future>(
    ctl: &mut mpsc::UnboundedReceiver<Ctl>,
    held: &mut HashSet<String>,
    until: F,
) -> Option<F::Output> {
    tokio::pin!(until);
    loop {
        tokio::select! {
            output = &mut until => return Some(output),
            request = ctl.recv() => match request {
                None => return None,
                Some(Ctl::Subscribe(_, reply)) => {
                    let _ = reply.send(Err(BrokerError::Unavailable("redis is not connected".to_owned())));
                }
                Some(Ctl::Unsubscribe(channel, reply)) => {
                    held.remove(&channel);
                    let _ = reply.send(Ok(()));
                }
                Some(Ctl::Broken(_)) => {}
            },
        }
    }
}

/// Runs one connected period: delivers messages, serves requests, pings. Returns why the
/// session ended (`None`: every handle was dropped).
async fn run_session(
    shared: &Shared,
    source: &ClientSource,
    ctl: &mut mpsc::UnboundedReceiver<Ctl>,
    held: &mut HashSet<String>,
    session: Session,
) -> Option<String> {
    let Session {
        generation,
        mut sink,
        mut stream,
        command,
    } = session;
    let prefix = format!("{}ch:", shared.options.prefix);
    let op_timeout = shared.options.op_timeout;
    let mut ping = tokio::time::interval(shared.options.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await; // the first tick is immediate
    loop {
        tokio::select! {
            message = stream.next() => {
                let Some(message) = message else {
                    return Some("pub/sub connection closed".to_owned());
                };
                let Some(channel) = message.get_channel_name().strip_prefix(prefix.as_str()) else {
                    continue;
                };
                if !held.contains(channel) {
                    continue; // unsubscribed meanwhile: deliver nothing after unsubscribe returned
                }
                match Publication::from_frame(Bytes::copy_from_slice(message.get_payload_bytes())) {
                    Ok(publication) => {
                        let sink = shared.sink.read().clone();
                        if let Some(sink) = sink {
                            sink.deliver(publication);
                        }
                    }
                    Err(_) => tracing::debug!(engine = ENGINE, channel, "ignored a message that is not a #publish frame"),
                }
            }
            request = ctl.recv() => match request {
                None => return None,
                Some(Ctl::Subscribe(channel, reply)) => {
                    if held.contains(&channel) {
                        let _ = reply.send(Ok(()));
                        continue;
                    }
                    held.insert(channel.clone());
                    let outcome = tokio::time::timeout(op_timeout, sink.subscribe(format!("{prefix}{channel}"))).await;
                    match outcome {
                        Ok(Ok(())) => {
                            let _ = reply.send(Ok(()));
                        }
                        Ok(Err(error)) => {
                            held.remove(&channel);
                            let broken = is_connection_error(&error);
                            let _ = reply.send(Err(if broken {
                                BrokerError::Unavailable(format!("redis: {error}"))
                            } else {
                                BrokerError::Engine(format!("redis subscribe: {error}"))
                            }));
                            if broken {
                                return Some(error.to_string());
                            }
                        }
                        Err(_) => {
                            held.remove(&channel);
                            let _ = reply.send(Err(BrokerError::Timeout { action: "subscribe" }));
                            return Some("subscribe timed out".to_owned());
                        }
                    }
                }
                Some(Ctl::Unsubscribe(channel, reply)) => {
                    // Delivery stops now (the held set filters); Redis is told next.
                    let was_held = held.remove(&channel);
                    let _ = reply.send(Ok(()));
                    if was_held {
                        match tokio::time::timeout(op_timeout, sink.unsubscribe(format!("{prefix}{channel}"))).await {
                            Ok(Ok(())) => {}
                            Ok(Err(error)) if is_connection_error(&error) => return Some(error.to_string()),
                            Ok(Err(error)) => tracing::debug!(engine = ENGINE, %channel, %error, "unsubscribe refused"),
                            Err(_) => return Some("unsubscribe timed out".to_owned()),
                        }
                    }
                }
                Some(Ctl::Broken(failed)) => {
                    if failed == generation {
                        return Some("command connection failed".to_owned());
                    }
                }
            },
            _ = ping.tick() => {
                match tokio::time::timeout(op_timeout, sink.ping::<::redis::Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => return Some(format!("ping failed: {error}")),
                    Err(_) => return Some("ping timed out".to_owned()),
                }
                if source.is_sentinel()
                    && let Err(failure) = super::sentinel::check_master(&command, &shared.options).await
                {
                    return Some(failure.reason());
                }
            }
        }
    }
}
