//! [`BrokerServer`]: what a broker process runs.
//!
//! It listens on a Unix socket and serves any number of worker connections. Per channel it keeps
//! the set of subscribed connections (a worker holds one subscription per channel); a publish is
//! encoded once as a [`BrokerMessage::publication`] body and a clone of those bytes is pushed to
//! every subscribed connection's bounded outbound queue, drained by that connection's writer
//! task.
//!
//! Flow control: when a worker's queue is full, the broker waits for room before it handles the
//! publishing connection's next command, so a fast publisher is slowed down to the pace of the
//! workers it publishes to (and, through its own bounded link queue, its callers wait) instead of
//! a worker link being dropped and every client of that worker losing messages. Only a worker
//! that makes no room for [`STALL_TIMEOUT`] (a stuck process; see
//! [`BrokerServerBuilder::with_stall_timeout`]) is disconnected, with a log line; it
//! reconnects and re-subscribes on its own. What an upstream engine delivers cannot be slowed
//! down: a delivery that finds a worker's queue full is dropped for that worker (counted and
//! logged), the link stays up.
//!
//! Solo channels (see [`protocol`](super::protocol)): the first connection to subscribe to a
//! channel is told it is the channel's solo subscriber, and delivers its own publications of it
//! itself; a second subscriber is answered only once the solo holder has confirmed it publishes
//! through the broker again. With an upstream engine there are no solo channels (other machines
//! subscribe through the engine).
//!
//! Commands of one connection are handled in arrival order (so one worker's publishes keep their
//! order, and its key/value commands apply in the order sent); only messages for the broker
//! controller's [`MessageHandler`] run concurrently, since user code may take its time.
//!
//! With an upstream engine ([`BrokerServerBuilder::with_upstream`]) the broker becomes a relay
//! for a multi-machine cluster: it holds one engine subscription per channel (taken when its first
//! worker subscribes, released when the last leaves), forwards worker publishes to the engine
//! instead of fanning them out itself, and fans out what the engine delivers.

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{FutureExt, SinkExt, StreamExt};
use parking_lot::Mutex;
use smallvec::SmallVec;
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::sync::oneshot;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use sc_protocol::{Json, Publication};

use super::protocol::{BrokerMessage, MAX_ACKS, NO_REPLY, WorkerMessage, codec, solo_reply};
use super::stream_wire::{StreamOp, StreamRequest, page_json, position_json, presence_json};
use crate::memory::stream::{MemoryHistory, MemoryPresence};
use crate::stream::{PresenceChange, PresenceMember, presence_event};
use crate::{BoxFuture, Broker, BrokerError, DeliverySink, KvStore};

/// The broker controller's handler for custom messages (`exchange.send(data)` in a worker): gets
/// the data, answers with a value or an error message. The default answers `null`.
pub type MessageHandler =
    Arc<dyn Fn(Json) -> BoxFuture<'static, Result<Json, String>> + Send + Sync + 'static>;

/// How many encoded messages may wait in one worker connection's outbound queue before the broker
/// gives up on that worker.
pub const DEFAULT_OUTBOUND_CAPACITY: usize = 16 * 1024;

/// How long a full worker queue may stay full while the broker waits to queue a message before
/// it gives up on that worker (default of [`BrokerServerBuilder::with_stall_timeout`]).
pub const STALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`BrokerServer::shutdown`] lets connections flush before cutting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Settings of a broker server, consumed by [`BrokerServerBuilder::bind`].
pub struct BrokerServerBuilder {
    id: usize,
    kv: Arc<dyn KvStore>,
    upstream: Option<Arc<dyn Broker>>,
    handler: MessageHandler,
    outbound_capacity: usize,
    stall_timeout: Duration,
}

impl std::fmt::Debug for BrokerServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerServerBuilder")
            .field("id", &self.id)
            .field("upstream", &self.upstream.is_some())
            .field("outbound_capacity", &self.outbound_capacity)
            .field("stall_timeout", &self.stall_timeout)
            .finish_non_exhaustive()
    }
}

impl BrokerServerBuilder {
    /// Relays through an upstream engine (Redis, NATS, …): one engine subscription per channel
    /// for the whole broker, worker publishes go to the engine, and the engine's deliveries are
    /// fanned out to subscribed workers. The server attaches its own sink to `upstream`, so the
    /// engine must not be shared with anything else.
    pub fn with_upstream(mut self, upstream: Arc<dyn Broker>) -> Self {
        self.upstream = Some(upstream);
        self
    }

    /// Sets the broker controller's handler for custom messages.
    pub fn with_message_handler(mut self, handler: MessageHandler) -> Self {
        self.handler = handler;
        self
    }

    /// Sets the per-connection outbound queue length (in messages; default
    /// [`DEFAULT_OUTBOUND_CAPACITY`]).
    pub fn with_outbound_capacity(mut self, capacity: usize) -> Self {
        self.outbound_capacity = capacity.max(1);
        self
    }

    /// Sets how long a worker's full outbound queue may make no room before the broker drops
    /// that worker (default [`STALL_TIMEOUT`]); until then the broker waits, slowing publishers.
    pub fn with_stall_timeout(mut self, timeout: Duration) -> Self {
        self.stall_timeout = timeout;
        self
    }

    /// Listens on `path` and starts serving in background tasks (call within a Tokio runtime).
    ///
    /// A stale socket file left at `path` by a crashed broker is replaced; if another server
    /// still answers there, this fails with [`io::ErrorKind::AddrInUse`].
    pub async fn bind(self, path: impl AsRef<Path>) -> io::Result<BrokerServer> {
        let path = path.as_ref().to_path_buf();
        let listener = bind_replacing_stale(&path).await?;
        let inode = std::fs::metadata(&path)?.ino();

        let shared = Arc::new(Shared {
            id: self.id,
            kv: self.kv,
            upstream: self.upstream,
            handler: self.handler,
            outbound_capacity: self.outbound_capacity,
            stall_timeout: self.stall_timeout,
            table: Mutex::new(HashMap::new()),
            revocations: Mutex::new(HashMap::new()),
            next_token: AtomicU64::new(1),
            gates: Mutex::new(HashMap::new()),
            connections: AtomicUsize::new(0),
            next_connection: AtomicU64::new(1),
            history: Arc::new(MemoryHistory::new()),
            presence: MemoryPresence::new(),
            upstream_dropped: AtomicU64::new(0),
        });
        if let Some(upstream) = &shared.upstream {
            upstream.attach(Arc::new(UpstreamSink(Arc::downgrade(&shared))));
        } else {
            let weak = Arc::downgrade(&shared);
            shared.history.spawn_sweeper(Arc::new(move |channel: &str| {
                weak.upgrade()
                    .is_some_and(|shared| shared.table.lock().contains_key(channel))
            }));
        }

        let server = BrokerServer {
            shared,
            path,
            inode,
            stop: CancellationToken::new(),
            abort: CancellationToken::new(),
            tracker: TaskTracker::new(),
        };
        server.tracker.spawn(accept_loop(
            listener,
            server.shared.clone(),
            server.stop.clone(),
            server.abort.clone(),
            server.tracker.clone(),
        ));
        tracing::info!(broker = server.shared.id, path = %server.path.display(), "broker listening");
        Ok(server)
    }
}

/// A running broker: serves worker connections on a Unix socket until [`shutdown`]
/// (graceful) or drop (abrupt, like a crash: connections are cut at once).
///
/// [`shutdown`]: BrokerServer::shutdown
pub struct BrokerServer {
    shared: Arc<Shared>,
    path: PathBuf,
    /// Identifies our socket file, so dropping a stale handle never unlinks a successor's socket.
    inode: u64,
    /// Graceful: stop accepting and reading; writers drain their queues.
    stop: CancellationToken,
    /// Abrupt: every task ends at once (parent of every connection's kill token).
    abort: CancellationToken,
    tracker: TaskTracker,
}

impl std::fmt::Debug for BrokerServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerServer")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl BrokerServer {
    /// Starts configuring broker number `id` (its index in the cluster) with its key/value store.
    pub fn builder(id: usize, kv: Arc<dyn KvStore>) -> BrokerServerBuilder {
        BrokerServerBuilder {
            id,
            kv,
            upstream: None,
            handler: Arc::new(|_| Box::pin(async { Ok(Json::NULL) })),
            outbound_capacity: DEFAULT_OUTBOUND_CAPACITY,
            stall_timeout: STALL_TIMEOUT,
        }
    }

    /// The broker's index in the cluster.
    pub fn id(&self) -> usize {
        self.shared.id
    }

    /// The socket path it listens on.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The channels with at least one subscribed worker connection, sorted.
    pub fn channels(&self) -> Vec<String> {
        let mut channels: Vec<String> = self
            .shared
            .table
            .lock()
            .keys()
            .map(|c| c.to_string())
            .collect();
        channels.sort();
        channels
    }

    /// How many worker connections subscribe to `channel`.
    pub fn subscriber_count(&self, channel: &str) -> usize {
        self.shared
            .table
            .lock()
            .get(channel)
            .map_or(0, |s| s.peers.len())
    }

    /// How many worker connections are open.
    pub fn connection_count(&self) -> usize {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// Stops gracefully: no new connections, no more commands read; queued messages are flushed
    /// (for at most 5 s), the upstream engine's subscriptions are released, and the socket file is
    /// removed.
    pub async fn shutdown(self) {
        self.stop.cancel();
        self.tracker.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                broker = self.shared.id,
                "broker shutdown grace expired; cutting connections"
            );
            self.abort.cancel();
            self.tracker.wait().await;
        }
        tracing::info!(broker = self.shared.id, "broker stopped");
        // Drop removes the socket file.
    }
}

impl Drop for BrokerServer {
    fn drop(&mut self) {
        self.stop.cancel();
        self.abort.cancel();
        // Unlink synchronously so a successor can bind the same path at once; the orphaned
        // listener closes when its task notices the abort.
        if std::fs::metadata(&self.path).is_ok_and(|m| m.ino() == self.inode) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Binds `path`, replacing a socket file that nobody answers on.
async fn bind_replacing_stale(path: &Path) -> io::Result<UnixListener> {
    match UnixListener::bind(path) {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            let is_socket =
                std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
            if !is_socket || UnixStream::connect(path).await.is_ok() {
                return Err(e);
            }
            tracing::info!(path = %path.display(), "replacing stale broker socket");
            std::fs::remove_file(path)?;
            UnixListener::bind(path)
        }
        other => other,
    }
}

/// State shared by the accept loop, every connection and the upstream sink.
struct Shared {
    id: usize,
    kv: Arc<dyn KvStore>,
    upstream: Option<Arc<dyn Broker>>,
    handler: MessageHandler,
    outbound_capacity: usize,
    stall_timeout: Duration,
    /// channel → subscribed connections. A std-style (parking_lot) mutex: held only for
    /// non-blocking work (map edits and `try_send`), never across an await.
    table: Mutex<HashMap<Arc<str>, Subscribers>>,
    /// Solo holders told to share a channel, by token: completed by their acknowledgement.
    revocations: Mutex<HashMap<u64, oneshot::Sender<()>>>,
    next_token: AtomicU64,
    /// Per-channel async locks that serialise upstream subscribe/unsubscribe of one channel
    /// (the engine call is awaited while the table lock is not held). Entries are removed when
    /// unused.
    gates: Mutex<HashMap<Arc<str>, Arc<tokio::sync::Mutex<()>>>>,
    connections: AtomicUsize,
    next_connection: AtomicU64,
    /// History of this broker's channels (when there is no upstream engine, which otherwise
    /// keeps it).
    history: Arc<MemoryHistory>,
    /// Presence of this broker's channels, by connection (when there is no upstream engine).
    presence: MemoryPresence,
    /// Upstream deliveries dropped because a worker's queue was full.
    upstream_dropped: AtomicU64,
}

/// The subscribers of one channel: worker connections, at most one per worker (a handful), so
/// a list; most channels have a single one, held inline (no allocation per channel).
#[derive(Default)]
struct Subscribers {
    peers: SmallVec<[Peer; 1]>,
    /// The connection told it is the channel's solo subscriber (it delivers its own publications
    /// itself): the first subscriber, while it is alone. Revoked when a second one comes, and not
    /// granted again until everyone has left.
    solo: Option<u64>,
}

/// What a new subscription means for the channel's solo holder.
enum Joined {
    /// The subscriber is the channel's solo subscriber.
    Solo,
    /// The subscriber joins others; this connection was the solo holder and must be told.
    Revoke(Peer),
    /// The subscriber joins others.
    Shared,
}

/// The sending side of one worker connection. Cheap to clone: the table holds one clone per
/// channel the connection subscribes to.
#[derive(Clone)]
struct Peer(Arc<PeerLink>);

/// What a [`Peer`] shares.
struct PeerLink {
    id: u64,
    broker: usize,
    tx: mpsc::Sender<Bytes>,
    /// How long a full queue may make no room (see [`BrokerServerBuilder::with_stall_timeout`]).
    stall_timeout: Duration,
    /// Cancelled when the connection must end at once (overflow, write error, abort).
    kill: CancellationToken,
}

impl std::ops::Deref for Peer {
    type Target = PeerLink;

    fn deref(&self) -> &PeerLink {
        &self.0
    }
}

impl Peer {
    /// Queues one encoded message, waiting while the queue is full (flow control). A worker that
    /// makes no room within its stall timeout is disconnected.
    async fn send(&self, message: Bytes) {
        match self.tx.try_send(message) {
            Ok(()) | Err(TrySendError::Closed(_)) => {}
            Err(TrySendError::Full(message)) => self.send_waiting(message).await,
        }
    }

    /// The slow path of [`Peer::send`]: the queue was full.
    async fn send_waiting(&self, message: Bytes) {
        let sent = tokio::select! {
            biased;
            _ = self.kill.cancelled() => return,
            sent = tokio::time::timeout(self.stall_timeout, self.tx.send(message)) => sent,
        };
        if sent.is_err() && !self.kill.is_cancelled() {
            tracing::warn!(
                broker = self.broker,
                connection = self.id,
                capacity = self.tx.max_capacity(),
                stalled_for = ?self.stall_timeout,
                "worker connection made no room in its outbound queue; dropping it"
            );
            self.kill.cancel();
        }
    }

    /// Sends the acknowledgements owed, if any, in one message.
    async fn flush_acks(&self, acks: &mut Vec<u64>) {
        if !acks.is_empty() {
            self.send(BrokerMessage::acks(acks)).await;
            acks.clear();
        }
    }

    async fn reply(&self, id: u64, result: Result<Json, String>) {
        if id != NO_REPLY {
            self.send(BrokerMessage::Reply { id, result }.encode())
                .await;
        }
    }
}

impl Shared {
    /// Queues one publication frame for every connection subscribed to `channel`; where a queue
    /// is full, waits for room (outside the table lock), which slows the publisher down.
    async fn fan_out(&self, channel: &str, frame: &[u8]) {
        // Peers whose queue was full, with their message: rare, so usually no allocation.
        let mut waiting: Vec<(Peer, Bytes)> = Vec::new();
        {
            let table = self.table.lock();
            if let Some(subscribers) = table.get(channel) {
                let message = BrokerMessage::delivery(channel, frame);
                for peer in &subscribers.peers {
                    match peer.tx.try_send(message.clone()) {
                        Ok(()) | Err(TrySendError::Closed(_)) => {}
                        Err(TrySendError::Full(message)) => waiting.push((peer.clone(), message)),
                    }
                }
            }
        }
        for (peer, message) in waiting {
            peer.send_waiting(message).await;
        }
    }

    /// Queues what the upstream engine delivered for every subscribed connection, without
    /// waiting (the engine cannot be slowed down): a full queue drops the message for that
    /// worker, with a log line for the first drop and every 1000th after it.
    fn fan_out_now(&self, channel: &str, frame: &[u8]) {
        let table = self.table.lock();
        if let Some(subscribers) = table.get(channel) {
            let message = BrokerMessage::delivery(channel, frame);
            for peer in &subscribers.peers {
                if let Err(TrySendError::Full(_)) = peer.tx.try_send(message.clone()) {
                    let dropped = self.upstream_dropped.fetch_add(1, Ordering::Relaxed);
                    if dropped % 1000 == 0 {
                        tracing::warn!(
                            broker = self.id,
                            connection = peer.id,
                            channel,
                            dropped = dropped + 1,
                            "worker connection's outbound queue is full; dropping an engine delivery"
                        );
                    }
                }
            }
        }
    }

    fn gate(&self, channel: &Arc<str>) -> Arc<tokio::sync::Mutex<()>> {
        self.gates
            .lock()
            .entry(channel.clone())
            .or_default()
            .clone()
    }

    fn release_gate(&self, channel: &Arc<str>, gate: Arc<tokio::sync::Mutex<()>>) {
        let mut gates = self.gates.lock();
        // Clones are only made under this lock: 2 = the map's and ours, so nobody else waits.
        if Arc::strong_count(&gate) == 2 {
            gates.remove(channel);
        }
    }

    async fn subscribe(&self, channel: &Arc<str>, peer: &Peer) -> Result<Joined, String> {
        let Some(upstream) = &self.upstream else {
            return Ok(self.insert(channel, peer));
        };
        let gate = self.gate(channel);
        let result = {
            let _serialised = gate.lock().await;
            let first = !self.table.lock().contains_key(channel);
            let engine = if first {
                upstream.subscribe(channel).await.map_err(|e| e.to_string())
            } else {
                Ok(())
            };
            engine.map(|()| self.insert(channel, peer))
        };
        self.release_gate(channel, gate);
        result
    }

    /// Adds the connection to `channel`'s subscribers: solo if it is the first (and there is
    /// no upstream engine), otherwise the solo holder, if any, loses that.
    fn insert(&self, channel: &Arc<str>, peer: &Peer) -> Joined {
        let mut table = self.table.lock();
        let subscribers = table.entry(channel.clone()).or_default();
        let first = subscribers.peers.is_empty();
        if subscribers.peers.iter().any(|p| p.id == peer.id) {
            return Joined::Shared;
        }
        subscribers.peers.push(peer.clone());
        if first && self.upstream.is_none() {
            subscribers.solo = Some(peer.id);
            return Joined::Solo;
        }
        match subscribers.solo.take() {
            Some(holder) => subscribers
                .peers
                .iter()
                .find(|p| p.id == holder)
                .cloned()
                .map_or(Joined::Shared, Joined::Revoke),
            None => Joined::Shared,
        }
    }

    /// Tells `holder` that `channel` is shared now and waits until it confirms that it publishes
    /// through the broker again (or is gone, or makes no answer within the stall timeout).
    async fn revoke_solo(&self, holder: &Peer, channel: &str) {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let (done, confirmed) = oneshot::channel();
        self.revocations.lock().insert(token, done);
        let message = BrokerMessage::Shared {
            token,
            channel: channel.to_owned(),
        };
        holder.send(message.encode()).await;
        let answered = tokio::select! {
            biased;
            _ = holder.kill.cancelled() => true,
            answer = tokio::time::timeout(self.stall_timeout, confirmed) => answer.is_ok(),
        };
        self.revocations.lock().remove(&token);
        if !answered {
            tracing::warn!(
                broker = self.id,
                connection = holder.id,
                channel,
                "solo subscriber did not confirm sharing its channel in time; going on"
            );
        }
    }

    /// Removes the connection from `channel`'s subscribers; returns whether none are left.
    fn remove(&self, channel: &str, connection: u64) -> bool {
        let mut table = self.table.lock();
        let Some(subscribers) = table.get_mut(channel) else {
            return false;
        };
        if let Some(i) = subscribers.peers.iter().position(|p| p.id == connection) {
            subscribers.peers.swap_remove(i);
        }
        if subscribers.peers.is_empty() {
            table.remove(channel);
            true
        } else {
            false
        }
    }

    async fn unsubscribe(&self, channel: &Arc<str>, connection: u64) {
        let Some(upstream) = &self.upstream else {
            self.remove(channel, connection);
            return;
        };
        let gate = self.gate(channel);
        {
            let _serialised = gate.lock().await;
            if self.remove(channel, connection) {
                if let Err(e) = upstream.unsubscribe(channel).await {
                    tracing::warn!(broker = self.id, channel = %channel, error = %e, "upstream unsubscribe failed");
                }
            }
        }
        self.release_gate(channel, gate);
    }

    async fn publish(&self, channel: &str, frame: Bytes) -> Result<(), String> {
        match &self.upstream {
            None => {
                self.fan_out(channel, &frame).await;
                Ok(())
            }
            Some(upstream) => {
                let publication = Publication::from_frame(frame).map_err(|e| e.to_string())?;
                upstream
                    .publish(publication)
                    .await
                    .map_err(|e| e.to_string())
            }
        }
    }
}

impl Shared {
    async fn announce_presence(
        &self,
        change: PresenceChange,
        channel: &str,
        member: &PresenceMember,
    ) {
        let event = presence_event(change, channel, member);
        self.fan_out(event.channel(), event.frame()).await;
    }

    /// One history or presence operation, here or on the upstream engine.
    async fn stream(
        &self,
        connection: u64,
        joined: &mut HashSet<(String, String)>,
        request: StreamRequest,
    ) -> Result<Json, String> {
        let channel = request.channel.as_str();
        let policy = || {
            request
                .policy
                .ok_or_else(|| "missing history policy".to_owned())
        };
        let text = |e: BrokerError| e.to_string();
        match (request.op, &self.upstream) {
            (StreamOp::Publish, None) => {
                let publication = request.publication()?;
                let policy = policy()?;
                // One publish at a time per channel, from the offset to the queues: deliveries
                // leave in offset order even when a worker's queue makes us wait for room.
                let channel = publication.channel_arc().clone();
                let gate = self.gate(&channel);
                let position = {
                    let _serialised = gate.lock().await;
                    let mut placed = None;
                    let position = self
                        .history
                        .append(&publication, policy, |p| placed = Some(p.clone()));
                    if let Some(placed) = placed {
                        self.fan_out(placed.channel(), placed.frame()).await;
                    }
                    position
                };
                self.release_gate(&channel, gate);
                Ok(position_json(&position))
            }
            (StreamOp::Publish, Some(upstream)) => {
                let position = upstream
                    .publish_stored(request.publication()?, policy()?)
                    .await
                    .map_err(text)?;
                Ok(position_json(&position))
            }
            (StreamOp::History, None) => Ok(page_json(&self.history.read(
                channel,
                policy()?,
                &request.read(),
            ))),
            (StreamOp::History, Some(upstream)) => {
                let page = upstream
                    .read_history(channel, policy()?, request.read())
                    .await
                    .map_err(text)?;
                Ok(page_json(&page))
            }
            (StreamOp::Join, upstream) => {
                let member = request.member.clone().ok_or("join without a member")?;
                match upstream {
                    None => {
                        if self.presence.join(channel, member.clone(), connection) {
                            self.announce_presence(PresenceChange::Join, channel, &member)
                                .await;
                        }
                    }
                    Some(upstream) => {
                        joined.insert((channel.to_owned(), member.id.clone()));
                        upstream
                            .presence_join(channel, member)
                            .await
                            .map_err(text)?;
                    }
                }
                Ok(Json::NULL)
            }
            (StreamOp::Leave, upstream) => {
                let member = request.member.as_ref().ok_or("leave without a member")?;
                match upstream {
                    None => {
                        if let Some(member) = self.presence.leave(channel, &member.id) {
                            self.announce_presence(PresenceChange::Leave, channel, &member)
                                .await;
                        }
                    }
                    Some(upstream) => {
                        joined.remove(&(channel.to_owned(), member.id.clone()));
                        upstream
                            .presence_leave(channel, &member.id)
                            .await
                            .map_err(text)?;
                    }
                }
                Ok(Json::NULL)
            }
            (StreamOp::Presence, None) => Ok(presence_json(&self.presence.query(channel))),
            (StreamOp::Presence, Some(upstream)) => Ok(presence_json(
                &upstream.presence(channel).await.map_err(text)?,
            )),
        }
    }
}

/// Hands what the upstream engine delivers to the subscribed workers.
struct UpstreamSink(Weak<Shared>);

impl DeliverySink for UpstreamSink {
    fn deliver(&self, publication: Publication) {
        if let Some(shared) = self.0.upgrade() {
            shared.fan_out_now(publication.channel(), publication.frame());
        }
    }
}

async fn accept_loop(
    listener: UnixListener,
    shared: Arc<Shared>,
    stop: CancellationToken,
    abort: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                let kill = abort.child_token();
                tracker.spawn(serve(
                    stream,
                    shared.clone(),
                    stop.clone(),
                    kill,
                    tracker.clone(),
                ));
            }
            Err(e) => {
                tracing::warn!(broker = shared.id, error = %e, "accept failed; backing off");
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        }
    }
}

/// One worker connection: reads and handles its commands in order, then cleans up.
async fn serve(
    stream: UnixStream,
    shared: Arc<Shared>,
    stop: CancellationToken,
    kill: CancellationToken,
    tracker: TaskTracker,
) {
    let id = shared.next_connection.fetch_add(1, Ordering::Relaxed);
    shared.connections.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(broker = shared.id, connection = id, "worker connected");

    let (read, write) = stream.into_split();
    let (tx, rx) = mpsc::channel(shared.outbound_capacity);
    let peer = Peer(Arc::new(PeerLink {
        id,
        broker: shared.id,
        tx,
        stall_timeout: shared.stall_timeout,
        kill: kill.clone(),
    }));
    peer.send(
        BrokerMessage::Ready {
            // Broker counts are tiny; saturate rather than wrap if one ever is not.
            broker_id: u32::try_from(shared.id).unwrap_or(u32::MAX),
        }
        .encode(),
    )
    .await;
    tracker.spawn(write_loop(write, rx, kill.clone()));

    let mut reader = FramedRead::new(read, codec());
    let mut subscribed: HashSet<Arc<str>> = HashSet::new();
    // Presence members this connection registered upstream (channel, socket id).
    let mut joined: HashSet<(String, String)> = HashSet::new();
    // Publishes handled and not acknowledged yet (protocol: "Batched acknowledgements").
    let mut acks: Vec<u64> = Vec::new();
    loop {
        // With acknowledgements owed, take a command that is ready without waiting; wait only
        // once they are sent.
        let ready = if acks.is_empty() {
            None
        } else {
            reader.next().now_or_never()
        };
        let next = match ready {
            Some(next) => next,
            None => {
                peer.flush_acks(&mut acks).await;
                tokio::select! {
                    biased;
                    _ = kill.cancelled() => break,
                    _ = stop.cancelled() => break,
                    next = reader.next() => next,
                }
            }
        };
        let body = match next {
            None => break,
            Some(Err(e)) => {
                tracing::debug!(broker = shared.id, connection = id, error = %e, "worker connection read failed");
                break;
            }
            Some(Ok(body)) => body.freeze(),
        };
        let message = match WorkerMessage::decode(body) {
            Ok(message) => message,
            Err(e) => {
                tracing::warn!(broker = shared.id, connection = id, error = %e, "malformed message from worker; closing its connection");
                break;
            }
        };
        // An abort must not wait for a slow engine or store.
        tokio::select! {
            biased;
            _ = kill.cancelled() => break,
            () = handle(&shared, &peer, &mut subscribed, &mut joined, &mut acks, message, &tracker) => {}
        }
        if acks.len() >= MAX_ACKS {
            peer.flush_acks(&mut acks).await;
        }
    }
    // Whatever was handled is acknowledged (a graceful stop, or the worker closed its side).
    peer.flush_acks(&mut acks).await;

    // The worker is gone (closed, crashed or killed): so are its sockets' presence entries.
    for (channel, member) in shared.presence.remove_owner(id) {
        shared
            .announce_presence(PresenceChange::Leave, &channel, &member)
            .await;
    }
    if let Some(upstream) = &shared.upstream {
        for (channel, member) in joined {
            if let Err(e) = upstream.presence_leave(&channel, &member).await {
                tracing::warn!(broker = shared.id, %channel, error = %e, "upstream presence leave failed");
            }
        }
    }
    for channel in subscribed {
        if kill.is_cancelled() && shared.upstream.is_some() {
            // Aborting: release local state without waiting for the engine.
            shared.remove(&channel, id);
        } else {
            shared.unsubscribe(&channel, id).await;
        }
    }
    shared.connections.fetch_sub(1, Ordering::Relaxed);
    tracing::debug!(broker = shared.id, connection = id, "worker disconnected");
    // Dropping `peer` (and the table's clones, removed above) lets the writer drain and finish.
}

/// Handles one command. A successful publish's acknowledgement is left in `acks`; before
/// anything else is answered, those are sent.
async fn handle(
    shared: &Arc<Shared>,
    peer: &Peer,
    subscribed: &mut HashSet<Arc<str>>,
    joined: &mut HashSet<(String, String)>,
    acks: &mut Vec<u64>,
    message: WorkerMessage,
    tracker: &TaskTracker,
) {
    if let WorkerMessage::Publish { id, channel, frame } = message {
        match shared.publish(&channel, frame).await {
            Ok(()) if id != NO_REPLY => acks.push(id),
            Ok(()) => {}
            Err(e) => {
                peer.flush_acks(acks).await;
                peer.reply(id, Err(e)).await;
            }
        }
        return;
    }
    peer.flush_acks(acks).await;
    match message {
        WorkerMessage::Stream { id, request } => {
            let result = match request.parse::<StreamRequest>() {
                Ok(request) => shared.stream(peer.id, joined, request).await,
                Err(e) => Err(format!("bad stream request: {e}")),
            };
            peer.reply(id, result).await;
        }
        WorkerMessage::Subscribe { id, channel } => {
            let channel: Arc<str> = Arc::from(channel);
            let result = if subscribed.contains(&channel) {
                Ok(Joined::Shared)
            } else {
                shared.subscribe(&channel, peer).await
            };
            match result {
                Ok(Joined::Solo) => {
                    subscribed.insert(channel);
                    peer.reply(id, Ok(solo_reply())).await;
                }
                Ok(Joined::Shared) => {
                    subscribed.insert(channel);
                    peer.reply(id, Ok(Json::NULL)).await;
                }
                Ok(Joined::Revoke(holder)) => {
                    subscribed.insert(channel.clone());
                    // Answered once the holder shares; meanwhile this connection's other
                    // commands (and the holder's acknowledgement) go on.
                    let shared = shared.clone();
                    let peer = peer.clone();
                    tracker.spawn(async move {
                        shared.revoke_solo(&holder, &channel).await;
                        peer.reply(id, Ok(Json::NULL)).await;
                    });
                }
                Err(e) => {
                    if id == NO_REPLY {
                        tracing::warn!(broker = shared.id, channel = %channel, error = %e, "re-subscribe failed");
                    }
                    peer.reply(id, Err(e)).await;
                }
            }
        }
        WorkerMessage::SharedAck { token } => {
            if let Some(done) = shared.revocations.lock().remove(&token) {
                let _ = done.send(());
            }
        }
        WorkerMessage::Unsubscribe { id, channel } => {
            if let Some(channel) = subscribed.take(channel.as_str()) {
                shared.unsubscribe(&channel, peer.id).await;
            }
            peer.reply(id, Ok(Json::NULL)).await;
        }
        WorkerMessage::Publish { .. } => {} // handled above
        WorkerMessage::Kv { id, command } => {
            let result = shared.kv.execute(command).await.map_err(|e| e.to_string());
            peer.reply(id, result).await;
        }
        WorkerMessage::Send { id, data } => {
            let handler = shared.handler.clone();
            let peer = peer.clone();
            tracker.spawn(async move {
                let kill = peer.kill.clone();
                tokio::select! {
                    _ = kill.cancelled() => {}
                    result = handler(data) => peer.reply(id, result).await,
                }
            });
        }
    }
}

/// Drains one connection's outbound queue into its socket, batching whatever is queued into one
/// flush. Ends when the queue closes (graceful) or the kill token fires; a write error fires it.
async fn write_loop(write: OwnedWriteHalf, mut rx: mpsc::Receiver<Bytes>, kill: CancellationToken) {
    let mut sink = FramedWrite::new(write, codec());
    loop {
        let first = tokio::select! {
            biased;
            _ = kill.cancelled() => break,
            first = rx.recv() => match first {
                Some(first) => first,
                None => break,
            },
        };
        let written = async {
            sink.feed(first).await?;
            while let Ok(more) = rx.try_recv() {
                sink.feed(more).await?;
            }
            SinkExt::<Bytes>::flush(&mut sink).await
        };
        let failed = tokio::select! {
            biased;
            _ = kill.cancelled() => break,
            written = written => written.is_err(),
        };
        if failed {
            break;
        }
    }
    kill.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_of_one_worker_is_small_and_holds_no_allocation_of_its_own() {
        assert!(
            std::mem::size_of::<Subscribers>() <= 40,
            "{}",
            std::mem::size_of::<Subscribers>()
        );
        let (tx, _rx) = mpsc::channel(1);
        let peer = Peer(Arc::new(PeerLink {
            id: 7,
            broker: 0,
            tx,
            stall_timeout: Duration::from_secs(1),
            kill: CancellationToken::new(),
        }));
        let mut subscribers = Subscribers::default();
        subscribers.peers.push(peer);
        assert!(!subscribers.peers.spilled());
    }
}
