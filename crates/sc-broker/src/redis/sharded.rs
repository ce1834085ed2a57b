//! The Redis engine on a Redis Cluster: `redis-cluster://[user:pass@]h1:p1,h2:p2,…`
//! (`rediss-cluster://` for TLS, with `?tls_ca=…` for a private CA: see [`tls`](super::tls)).
//! The nodes listed are seeds: the whole cluster is discovered from them.
//!
//! # Sharded pub/sub and slot-tagged keys
//!
//! Publications travel with `SPUBLISH` and are received with `SSUBSCRIBE` (Redis ≥ 7): a message
//! goes only to the shard that owns the channel's slot, not to every node as a classic `PUBLISH`
//! in a cluster does. Every key of a channel carries the channel's hash tag (see [`slot_key`]),
//! so its pub/sub channel, history, offsets, presence and its presence companion channel live in
//! one slot, and the engine's Lua scripts touch one slot only. Key/value entries are one key each
//! (any slot); `getAll` / `removeAll` scan every master.
//!
//! # Failures
//!
//! The cluster connection (RESP3, one connection per node) follows `MOVED` / `ASK` and refreshes
//! its slot map when a node fails. A supervisor task owns the subscriptions: when a node's
//! connection drops, a command fails at the connection level, or the server moves a sharded
//! subscription away (slot migration), every channel still held is subscribed again, retried
//! every [`RESUBSCRIBE_RETRY`] until the slot's (possibly new) master accepts it; callers never
//! resubscribe. While a master is down, publishes to its slots fail (at most once, as on one
//! server); other slots are unaffected. The link counts as connected while the cluster answers
//! (`CLUSTER NODES`, every ping interval); after two unanswered probes the supervisor opens a new
//! cluster connection and subscribes every held channel on it (the cluster connection can stay
//! stuck after a node comes back).

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use ::redis::cluster::ClusterClientBuilder;
use ::redis::cluster_async::ClusterConnection;
use ::redis::{ProtocolVersion, PushInfo, PushKind, RedisError, RedisResult, Value};
use bytes::Bytes;
use futures_util::future::join_all;
use parking_lot::RwLock;
use sc_protocol::Publication;
use tokio::sync::mpsc;

use super::connection::RedisConnection;
use super::failure::{OpenFailure, is_connection_error};
use super::link::{CommandCounts, Ctl, RedisLink, Shared};
use super::options::RedisOptions;
use crate::BrokerError;
use crate::error::EngineError;
use crate::health::{EngineHealth, NodeHealth};
use crate::url::redact;

/// How often channels whose subscription was lost are subscribed again until it succeeds.
pub const RESUBSCRIBE_RETRY: Duration = Duration::from_millis(100);

/// For this long after a disruption (a node connection closed, a command failed at the
/// connection level, a subscription moved, a new cluster connection), every held channel is
/// subscribed again at each probe (once per [`RedisOptions::ping_interval`]), even though its
/// last subscription succeeded: while a restarted node rejoins, the cluster connection can
/// replace a node connection, and the sharded subscriptions on the old one, without telling
/// (seen with Redis 7.0 and redis 1.2: a channel stayed unsubscribed for good). `SSUBSCRIBE` of
/// a channel the connection already has is a no-op, so this costs one command per channel per
/// second, for this window only.
pub const VERIFY_WINDOW: Duration = Duration::from_secs(10);

const ENGINE: &str = "redis";

pub use super::keys::slot_key;

/// The channel of a pub/sub key made by [`slot_key`] with kind `ch` (`None`: not one of ours).
fn channel_of<'a>(prefix: &str, key: &'a str) -> Option<&'a str> {
    let rest = key.strip_prefix(prefix)?.strip_prefix("ch:{")?;
    let close = rest.find('}')?;
    Some(&rest[close + 1..])
}

/// The seed node URLs of a cluster URL (`redis://user:pass@host:port` each).
fn seed_nodes(url: &str, target: &str) -> Result<Vec<String>, EngineError> {
    let invalid = |reason: &str| EngineError::InvalidUrl {
        url: target.to_owned(),
        reason: reason.to_owned(),
    };
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| invalid("expected <scheme>://…"))?;
    let plain = if scheme.eq_ignore_ascii_case("rediss-cluster") {
        "rediss"
    } else {
        "redis"
    };
    let rest = rest.trim_end_matches('/');
    if rest.contains(['/', '?', '#']) {
        return Err(invalid(
            "a cluster URL has no database or options other than tls_ca, tls_cert, tls_key: redis-cluster://[user:pass@]h1:p1,h2:p2",
        ));
    }
    let (user_info, hosts) = match rest.rfind('@') {
        Some(at) => (&rest[..=at], &rest[at + 1..]),
        None => ("", rest),
    };
    hosts
        .split(',')
        .map(|host| {
            if host.is_empty() {
                Err(invalid("an empty node address"))
            } else {
                Ok(format!("{plain}://{user_info}{host}"))
            }
        })
        .collect()
}

/// Connects to a Redis Cluster and starts the supervisor (see the [module](self) documentation).
pub(super) async fn connect(
    url: &str,
    options: RedisOptions,
) -> Result<Arc<RedisLink>, EngineError> {
    let target = redact(url);
    let (url, certs) = super::tls::split_tls_options(url, &target)?;
    let nodes = seed_nodes(&url, &target)?;
    if options.prefix.contains(['{', '}']) {
        return Err(EngineError::Setup {
            engine: ENGINE,
            target,
            reason: "on a Redis Cluster the key prefix must not contain '{' or '}'".to_owned(),
        });
    }
    let shared = Arc::new(Shared {
        options,
        target: target.clone(),
        connected: std::sync::atomic::AtomicBool::new(false),
        command: RwLock::new(None),
        sink: RwLock::new(None),
        cluster: true,
        health: RwLock::new(EngineHealth::default()),
        commands: CommandCounts::default(),
    });
    let held: Arc<RwLock<HashSet<String>>> = Arc::default();
    let (events, events_rx) = mpsc::unbounded_channel();
    let maker = ClientMaker {
        nodes,
        certs,
        pushes: Pushes {
            shared: Arc::downgrade(&shared),
            held: held.clone(),
            prefix: shared.options.prefix.clone(),
            events,
            generation: 1,
            current: Arc::new(std::sync::atomic::AtomicU64::new(1)),
        },
    };
    let client = maker
        .client(1, &shared.options)
        .map_err(|e| EngineError::InvalidUrl {
            url: target.clone(),
            reason: e.to_string(),
        })?;
    let opening = async {
        let mut conn = client.get_async_connection().await?;
        ::redis::cmd("PING").query_async::<Value>(&mut conn).await?;
        Ok::<_, RedisError>(conn)
    };
    let timeout = shared.options.connect_timeout + shared.options.op_timeout;
    let conn = match tokio::time::timeout(timeout, opening).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(error)) => {
            return Err(OpenFailure::Redis(error).into_engine_error(&target));
        }
        Err(_) => {
            return Err(OpenFailure::TimedOut("cluster connection").into_engine_error(&target));
        }
    };
    *shared.command.write() = Some((1, RedisConnection::Cluster(conn.clone())));
    shared.connected.store(true, Ordering::Release);
    *shared.health.write() = cluster_health(&mut conn.clone(), &shared.options).await;
    let (ctl, ctl_rx) = mpsc::unbounded_channel();
    tokio::spawn(supervise(
        shared.clone(),
        maker,
        conn,
        held,
        ctl_rx,
        events_rx,
    ));
    Ok(Arc::new(RedisLink { shared, ctl }))
}

/// What the push handler tells the supervisor.
enum Event {
    /// A node connection closed: subscriptions on it are gone.
    Disconnected,
    /// The server dropped our subscription of this channel (its slot moved).
    Dropped(String),
}

/// Makes the cluster client of each connection generation. Each client has its own push
/// handler, tagged with its generation: when the supervisor replaces a stuck connection, the old
/// one lives on until the commands still waiting on it finish, and its pushes (messages of
/// channels subscribed on both, disconnections) are ignored, so nothing is delivered twice.
struct ClientMaker {
    nodes: Vec<String>,
    certs: Option<::redis::TlsCertificates>,
    /// The handler of generation 1; others are copies with their own generation.
    pushes: Pushes,
}

impl ClientMaker {
    /// A client whose pushes count while `generation` is the current one.
    fn client(
        &self,
        generation: u64,
        options: &RedisOptions,
    ) -> RedisResult<::redis::cluster::ClusterClient> {
        let pushes = Pushes {
            generation,
            ..self.pushes.clone()
        };
        let mut builder = ClusterClientBuilder::new(self.nodes.clone());
        if let Some(certs) = &self.certs {
            builder = builder.certs(certs.clone());
        }
        builder
            .use_protocol(ProtocolVersion::RESP3)
            .push_sender(move |push: PushInfo| {
                pushes.handle(push);
                Ok::<(), ::redis::aio::SendError>(())
            })
            .connection_timeout(options.connect_timeout)
            .response_timeout(options.op_timeout)
            .retries(3)
            .min_retry_wait(20)
            .max_retry_wait(200)
            .build()
    }

    /// Makes `generation` the one whose pushes count.
    fn make_current(&self, generation: u64) {
        self.pushes.current.store(generation, Ordering::Release);
    }
}

/// Handles the cluster's push messages, on the node connections' tasks: delivers sharded
/// messages of held channels (the sink never blocks) and reports lost subscriptions.
#[derive(Clone)]
struct Pushes {
    shared: Weak<Shared>,
    held: Arc<RwLock<HashSet<String>>>,
    prefix: String,
    events: mpsc::UnboundedSender<Event>,
    /// The connection generation of this handler's client.
    generation: u64,
    /// The current generation (see [`ClientMaker`]).
    current: Arc<std::sync::atomic::AtomicU64>,
}

impl Pushes {
    fn handle(&self, push: PushInfo) {
        if self.current.load(Ordering::Acquire) != self.generation {
            return; // a replaced connection
        }
        let key = |index: usize| match push.data.get(index) {
            Some(Value::BulkString(bytes)) => std::str::from_utf8(bytes).ok(),
            _ => None,
        };
        match push.kind {
            PushKind::SMessage => {
                let (Some(channel), Some(Value::BulkString(payload))) = (
                    key(0).and_then(|k| channel_of(&self.prefix, k)),
                    push.data.get(1),
                ) else {
                    return;
                };
                if !self.held.read().contains(channel) {
                    return; // unsubscribed: nothing after unsubscribe returned
                }
                let Some(shared) = self.shared.upgrade() else {
                    return;
                };
                let sink = shared.sink.read().clone();
                match (
                    Publication::from_frame(Bytes::copy_from_slice(payload)),
                    sink,
                ) {
                    (Ok(publication), Some(sink)) => sink.deliver(publication),
                    (Err(_), _) => tracing::debug!(
                        engine = ENGINE,
                        channel,
                        "ignored a message that is not a #publish frame"
                    ),
                    (Ok(_), None) => {}
                }
            }
            PushKind::SUnsubscribe => {
                if let Some(channel) = key(0).and_then(|k| channel_of(&self.prefix, k))
                    && self.held.read().contains(channel)
                {
                    let _ = self.events.send(Event::Dropped(channel.to_owned()));
                }
            }
            PushKind::Disconnection => {
                let _ = self.events.send(Event::Disconnected);
            }
            _ => {}
        }
    }
}

/// The supervisor: serves subscribe / unsubscribe, subscribes lost channels again, and keeps the
/// health report. Ends when every handle of the link is dropped.
async fn supervise(
    shared: Arc<Shared>,
    maker: ClientMaker,
    mut conn: ClusterConnection,
    held: Arc<RwLock<HashSet<String>>>,
    mut ctl: mpsc::UnboundedReceiver<Ctl>,
    mut events: mpsc::UnboundedReceiver<Event>,
) {
    let prefix = shared.options.prefix.clone();
    let op_timeout = shared.options.op_timeout;
    let mut lost: HashSet<String> = HashSet::new();
    let mut lost_since: Option<Instant> = None;
    // Until when every held channel is subscribed again at each probe (see VERIFY_WINDOW).
    let mut verify_until: Option<Instant> = None;
    let mut retry = tokio::time::interval(RESUBSCRIBE_RETRY);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failed_probes = 0u32;
    // Commands (answered, failed) at the last probe.
    let mut counted = (0u64, 0u64);
    let mut generation = 1u64;
    let mut probe = tokio::time::interval(shared.options.ping_interval);
    probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            request = ctl.recv() => match request {
                None => return,
                Some(Ctl::Subscribe(channel, reply)) => {
                    if !held.write().insert(channel.clone()) {
                        let _ = reply.send(Ok(()));
                        continue;
                    }
                    let key = slot_key(&prefix, "ch", &channel);
                    let outcome = tokio::time::timeout(op_timeout, conn.clone().ssubscribe(key)).await;
                    let result = match outcome {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(error)) if is_connection_error(&error) => {
                            Err(BrokerError::Unavailable(format!("redis cluster: {error}")))
                        }
                        Ok(Err(error)) => Err(BrokerError::Engine(format!("redis subscribe: {error}"))),
                        Err(_) => Err(BrokerError::Timeout { action: "subscribe" }),
                    };
                    if result.is_err() {
                        held.write().remove(&channel);
                    }
                    let _ = reply.send(result);
                }
                Some(Ctl::Unsubscribe(channel, reply)) => {
                    let was_held = held.write().remove(&channel);
                    lost.remove(&channel);
                    let _ = reply.send(Ok(()));
                    if was_held {
                        let key = slot_key(&prefix, "ch", &channel);
                        if let Ok(Err(error)) = tokio::time::timeout(op_timeout, conn.clone().sunsubscribe(key)).await {
                            tracing::debug!(engine = ENGINE, %channel, %error, "unsubscribe failed");
                        }
                    }
                }
                Some(Ctl::Broken(_)) => {
                    mark_lost(&shared, &held, &mut lost, &mut lost_since, "a command failed at the connection level");
                    verify_until = Some(Instant::now() + VERIFY_WINDOW);
                }
            },
            event = events.recv() => match event {
                None => return,
                Some(Event::Disconnected) => {
                    mark_lost(&shared, &held, &mut lost, &mut lost_since, "a node connection closed");
                    verify_until = Some(Instant::now() + VERIFY_WINDOW);
                }
                Some(Event::Dropped(channel)) => {
                    lost.insert(channel);
                    lost_since.get_or_insert_with(Instant::now);
                    verify_until = Some(Instant::now() + VERIFY_WINDOW);
                }
            },
            _ = retry.tick(), if !lost.is_empty() => {
                resubscribe(&conn, &prefix, &held, &mut lost).await;
                if lost.is_empty()
                    && let Some(since) = lost_since.take()
                {
                    tracing::info!(
                        engine = ENGINE,
                        target = %shared.target,
                        downtime_ms = since.elapsed().as_millis() as u64,
                        channels = held.read().len(),
                        "engine connection restored; channel subscriptions restored"
                    );
                }
            }
            _ = probe.tick() => {
                match verify_until {
                    Some(until) if Instant::now() < until => {
                        // Subscribed again by the retry tick (quietly: no outage is logged).
                        lost.extend(held.read().iter().cloned());
                    }
                    Some(_) => verify_until = None,
                    None => {}
                }
                let health = cluster_health(&mut conn.clone(), &shared.options).await;
                let any_up = health.nodes.iter().any(|n| n.up);
                // Commands failed at the connection level or timed out since the last probe: the connection may be stuck for some slots even though the nodes answer
                // the probe (seen after a master restart).
                let now = (
                    shared.commands.answered.load(Ordering::Relaxed),
                    shared.commands.failed.load(Ordering::Relaxed),
                );
                let answering = now.0 > counted.0;
                let stalled = now.1 > counted.1;
                counted = now;
                failed_probes = if any_up && !stalled { 0 } else { failed_probes + 1 };
                if failed_probes >= 2 {
                    // The cluster connection can stay stuck after a node comes back (its slot
                    // refresh keeps failing): open a new one, with a client of its own; the old
                    // one is dropped (its pushes ignored from now on), and every held channel is
                    // subscribed on the new one.
                    let opening = async {
                        maker
                            .client(generation + 1, &shared.options)?
                            .get_async_connection()
                            .await
                    };
                    let fresh = tokio::time::timeout(shared.options.connect_timeout, opening).await;
                    if let Ok(Ok(fresh)) = fresh {
                        generation += 1;
                        maker.make_current(generation);
                        conn = fresh;
                        *shared.command.write() =
                            Some((generation, RedisConnection::Cluster(conn.clone())));
                        failed_probes = 0;
                        mark_lost(&shared, &held, &mut lost, &mut lost_since, "the cluster stopped answering");
                        verify_until = Some(Instant::now() + VERIFY_WINDOW);
                        tracing::info!(engine = ENGINE, target = %shared.target, "opened a new cluster connection");
                    }
                }
                // Commands being answered prove the link works even when the probe (routed to
                // one node) failed.
                shared.connected.store(any_up || answering, Ordering::Release);
                *shared.health.write() = health;
            }
        }
    }
}

/// Marks every held channel as needing a new subscription (logs one warning per outage).
fn mark_lost(
    shared: &Shared,
    held: &RwLock<HashSet<String>>,
    lost: &mut HashSet<String>,
    lost_since: &mut Option<Instant>,
    reason: &str,
) {
    let held = held.read();
    if lost_since.is_none() && !held.is_empty() {
        tracing::warn!(
            engine = ENGINE,
            target = %shared.target,
            error = reason,
            channels = held.len(),
            "engine connection lost; subscribing the channels again as soon as their shards answer"
        );
        *lost_since = Some(Instant::now());
    }
    lost.extend(held.iter().cloned());
}

/// One round of subscribing the lost channels again, all at once, each bounded by a second.
async fn resubscribe(
    conn: &ClusterConnection,
    prefix: &str,
    held: &RwLock<HashSet<String>>,
    lost: &mut HashSet<String>,
) {
    let attempts = lost.iter().map(|channel| {
        let mut conn = conn.clone();
        let key = slot_key(prefix, "ch", channel);
        let channel = channel.clone();
        async move {
            let done = matches!(
                tokio::time::timeout(Duration::from_secs(1), conn.ssubscribe(key)).await,
                Ok(Ok(()))
            );
            (channel, done)
        }
    });
    for (channel, done) in join_all(attempts).await {
        if done || !held.read().contains(&channel) {
            lost.remove(&channel);
        }
    }
}

/// Every node of the cluster as `CLUSTER NODES` reports it (role `master` / `replica`; up unless
/// flagged failing or disconnected), or the seeds marked down if no node answers.
async fn cluster_health(conn: &mut ClusterConnection, options: &RedisOptions) -> EngineHealth {
    // A probe never waits longer than the probe interval: a hung node must not hold up the
    // supervisor (and the decision to open a new connection) for a whole operation timeout.
    let answer = tokio::time::timeout(
        options.op_timeout.min(options.ping_interval),
        ::redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async::<String>(conn),
    )
    .await;
    let Ok(Ok(text)) = answer else {
        return EngineHealth {
            nodes: vec![NodeHealth::new("cluster", "unreachable", false)],
        };
    };
    EngineHealth {
        nodes: parse_cluster_nodes(&text),
    }
}

/// Parses `CLUSTER NODES` output into node health entries.
fn parse_cluster_nodes(text: &str) -> Vec<NodeHealth> {
    let mut nodes: Vec<NodeHealth> = text
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (addr, flags, link) = (fields.get(1)?, fields.get(2)?, fields.get(7)?);
            let addr = addr.split('@').next()?.to_owned();
            let role = if flags.contains("master") {
                "master"
            } else {
                "replica"
            };
            let up = !flags.contains("fail") && *link == "connected";
            Some(NodeHealth::new(addr, role, up))
        })
        .collect();
    nodes.sort_by(|a, b| a.addr.cmp(&b.addr));
    nodes
}

/// The masters of the cluster (`host`, `port`), for commands every master must run (`SCAN`).
pub(super) async fn masters(link: &RedisLink) -> Result<Vec<Option<(String, u16)>>, BrokerError> {
    if !link.shared.cluster {
        return Ok(vec![None]);
    }
    let text: String = link
        .with_connection("scan", |mut conn| async move {
            ::redis::cmd("CLUSTER")
                .arg("NODES")
                .query_async(&mut conn)
                .await
        })
        .await?;
    Ok(parse_cluster_nodes(&text)
        .into_iter()
        .filter(|n| n.role == "master" && n.up)
        .filter_map(|n| {
            let (host, port) = n.addr.rsplit_once(':')?;
            Some(Some((host.to_owned(), port.parse().ok()?)))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::PRESENCE_PREFIX;

    #[test]
    fn keys_share_the_channel_slot_and_map_back() {
        for channel in ["chat", "a}b", "}", "", "{x}", "with space"] {
            let key = slot_key("sc:", "ch", channel);
            assert_eq!(channel_of("sc:", &key), Some(channel), "{key}");
            let tag = |k: &str| {
                let open = k.find('{').unwrap();
                let close = open + k[open..].find('}').unwrap();
                k[open + 1..close].to_owned()
            };
            let companion = format!("{PRESENCE_PREFIX}{channel}");
            assert_eq!(tag(&key), tag(&slot_key("sc:", "hl", &companion)));
            assert!(!tag(&key).is_empty());
        }
        assert_eq!(channel_of("sc:", "other:ch:{a}a"), None);
    }

    #[test]
    fn seeds_and_bad_cluster_urls() {
        assert_eq!(
            seed_nodes("redis-cluster://u:p@a:1,b:2", "x").unwrap(),
            ["redis://u:p@a:1", "redis://u:p@b:2"]
        );
        assert_eq!(
            seed_nodes("rediss-cluster://a:1/", "x").unwrap(),
            ["rediss://a:1"]
        );
        for bad in ["redis-cluster://a:1,,b:2", "redis-cluster://a:1/0"] {
            assert!(
                matches!(seed_nodes(bad, "x"), Err(EngineError::InvalidUrl { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn parses_cluster_nodes() {
        let text = "id1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460\n\
id2 127.0.0.1:7002@17002 master,fail - 0 0 2 disconnected 5461-10922\n\
id3 127.0.0.1:7003@17003 slave id1 0 0 1 connected\n";
        assert_eq!(
            parse_cluster_nodes(text),
            [
                NodeHealth::new("127.0.0.1:7001", "master", true),
                NodeHealth::new("127.0.0.1:7002", "master", false),
                NodeHealth::new("127.0.0.1:7003", "replica", true),
            ]
        );
    }
}
