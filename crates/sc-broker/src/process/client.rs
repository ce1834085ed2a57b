//! The worker side of the cluster link: [`ClusterBroker`] and [`ClusterKv`].
//!
//! A worker connects to every broker socket, one connection per broker, each served by a writer
//! task (drains a bounded queue, batching into one flush) and a reader task (hands publications to
//! the attached [`DeliverySink`], resolves replies). Channels go to broker
//! [`hash_key(channel, M)`](sc_protocol::hash::hash_key); key/value commands to the broker of
//! their [`routing_key`](KvCommand::routing_key).
//!
//! Every request carries an id and waits for the broker's reply, so `subscribe` returning `Ok`
//! means the broker has the subscription in place: a publish made afterwards, by any worker,
//! reaches this worker. Requests fail fast with [`BrokerError::Unavailable`] while their broker is
//! unreachable and with [`BrokerError::Timeout`] when it does not answer within
//! [`BrokerLinkConfig::request_timeout`]; nothing waits forever.
//!
//! When a connection is lost the link logs it once, fails the requests in flight, and reconnects
//! with backoff ([`LINK_BACKOFF`]: 200 ms + 0–100 ms, ×1.3 per attempt, at most 1 s, as sc-broker's
//! client). Once the broker says it is ready, the link re-subscribes every channel this worker
//! holds on it before anything else is sent, without the caller's involvement. Publications made
//! while a broker was down are lost (at-most-once, docs/protocol.md §14.6).

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use futures_util::{SinkExt, StreamExt};
use parking_lot::{Mutex, RwLock};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use sc_protocol::hash::hash_key;
use sc_protocol::{Backoff, Json, Publication};

use super::protocol::{
    BrokerMessage, MAX_FRAME_LEN, NO_REPLY, WorkerMessage, codec, is_solo_reply,
};
use super::stream_wire::{StreamOp, StreamRequest, parse_page, parse_position, parse_presence};
use crate::stream::{
    HistoryPage, HistoryPolicy, HistoryRead, Position, PresenceInfo, PresenceMember,
};
use crate::{
    BoxFuture, Broker, BrokerError, DeliverySink, KvCommand, KvStore, PublishDone, PublishStart,
};

/// The link's reconnect delays by default: attempt `k` (from 0) waits
/// `min((200 ms + random(0..100 ms)) × 1.3^k, 1 s)`, as sc-broker's client.
pub const LINK_BACKOFF: Backoff = Backoff {
    randomness: Duration::from_millis(100),
    ..Backoff::new(Duration::from_millis(200), 1.3, Duration::from_secs(1))
};

/// Settings of a worker's cluster link.
#[derive(Debug, Clone)]
pub struct BrokerLinkConfig {
    /// How long a request may wait for its broker's reply (default 10 s, as sc-broker's
    /// `TimeoutError`).
    pub request_timeout: Duration,
    /// How long [`ClusterBroker::connect`] waits for every broker to be ready (default 10 s).
    pub connect_timeout: Duration,
    /// Reconnect delays (default [`LINK_BACKOFF`]).
    pub backoff: Backoff,
    /// Per-broker outbound queue length, in messages (default 4096). A full queue makes callers
    /// wait (within `request_timeout`), not fail.
    pub outbound_capacity: usize,
    /// Whether `publish` waits for the broker's acknowledgement (default `true`). Without it,
    /// `publish` returns once the message is queued for a connected broker; order is kept either
    /// way.
    pub publish_ack: bool,
    /// Whether a publication of a channel this worker is the solo subscriber of (see
    /// [`protocol`](super::protocol)) is delivered here without crossing the broker (default
    /// `true`; needs `publish_ack`). Such a publication is handed to the attached
    /// [`DeliverySink`] inside `publish`, so nothing but the caller paces a publisher that is
    /// faster than its subscribers: sc-server's channel table does (its publishes wait while a
    /// subscriber's outbound queue is half full, docs/security.md).
    pub solo_delivery: bool,
}

impl Default for BrokerLinkConfig {
    fn default() -> Self {
        BrokerLinkConfig {
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            backoff: LINK_BACKOFF,
            outbound_capacity: 4096,
            publish_ack: true,
            solo_delivery: true,
        }
    }
}

/// Which brokers [`BrokerControllers::send`] addresses (sc-broker-cluster's `mapIndex`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapIndex {
    /// Every broker (`'*'`, or `mapIndex` omitted in `exchange.send`).
    All,
    /// The broker owning this key: `hash_key(key, M)`.
    Key(String),
    /// The brokers owning these keys (each addressed once, in first-seen order).
    Keys(Vec<String>),
    /// A numeric map index: broker `|n| mod M`.
    Number(i64),
}

/// The worker's [`Broker`] over the cluster's broker processes.
///
/// Cheap to share behind an `Arc`; the connections close when it and every [`ClusterKv`] taken
/// from it are dropped.
#[derive(Debug)]
pub struct ClusterBroker {
    inner: Arc<Inner>,
}

/// The worker's [`KvStore`] over the cluster's broker processes (shares [`ClusterBroker`]'s
/// connections; see [`ClusterBroker::kv`]).
///
/// Routing: each command goes to the broker of its [`KvCommand::routing_key`] (first key segment,
/// so a whole sub-tree lives on one broker). `Expire`/`Unexpire` are split per owning broker.
/// `RemoveAll` goes to every broker. `GetAll` asks every broker and merges their top-level maps
/// (they are disjoint, since top-level keys are what routing hashes) — a deliberate improvement
/// over sc-broker-cluster, which asks broker 0 only and so returns a partial store.
#[derive(Debug, Clone)]
pub struct ClusterKv {
    inner: Arc<Inner>,
}

type Sink = Arc<RwLock<Option<Arc<dyn DeliverySink>>>>;

struct Inner {
    links: Vec<Arc<Link>>,
    config: BrokerLinkConfig,
    sink: Sink,
    stop: CancellationToken,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("brokers", &self.links.len())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// One broker connection's state, shared by callers and its supervisor task.
struct Link {
    index: usize,
    path: PathBuf,
    /// Request ids, unique per link (0 means "no reply").
    next_id: AtomicU64,
    /// Whether the link is connected and the broker said it is ready.
    up: watch::Sender<bool>,
    /// A parking_lot mutex: held only for map edits and clones, never across an await.
    state: Mutex<LinkState>,
}

#[derive(Default)]
struct LinkState {
    /// The writer's queue while connected; `None` while down (requests fail fast).
    tx: Option<mpsc::Sender<Bytes>>,
    /// Requests waiting for their reply. Their ids are ours (a counter), never a client's, so a
    /// fast hasher without HashDoS resistance is safe here.
    pending: HashMap<u64, Waiter, foldhash::fast::RandomState>,
    /// Channels this worker holds on this broker: re-subscribed after every reconnect.
    channels: HashSet<Arc<str>>,
    /// Presence members this worker registered on this broker: registered again after every
    /// reconnect (a restarted broker has lost them).
    presence: HashMap<(Arc<str>, String), PresenceMember>,
    /// Subscribe requests waiting for their reply, by request id: a solo reply ([`is_solo_reply`]) makes the
    /// channel solo (the reader applies it in order with the broker's other messages).
    subscribing: HashMap<u64, Arc<str>>,
    /// Channels this worker is the solo subscriber of on this broker (see
    /// [`protocol`](super::protocol)): its own publications of them are delivered here, not sent.
    solo: HashSet<Arc<str>>,
    /// Publishes sent to the broker and not answered yet, per channel. A solo channel is
    /// published locally only when none is in flight, so that a publication never overtakes an
    /// earlier one still coming back from the broker.
    in_flight: HashMap<Arc<str>, u32>,
    /// The deadlines of the publishes answered through a callback ([`Answer::Publish`]), in the
    /// order they were sent (so in deadline order): one sweep per link fails the expired ones,
    /// instead of a timer per publish. Answered entries leave from the front as replies come.
    publish_deadlines: VecDeque<(Instant, u64)>,
}

/// A request waiting for its reply.
struct Waiter {
    reply: Answer,
    /// A publish's channel: counted in [`LinkState::in_flight`] until the reply comes (or the
    /// caller stops waiting).
    publishing: Option<Arc<str>>,
}

/// Where a request's reply goes.
enum Answer {
    /// To a caller awaiting it (which times out on its own).
    Request(oneshot::Sender<Result<Json, String>>),
    /// To a publish started by [`Broker::start_publish_then`].
    Publish(PublishWaiter),
}

impl Answer {
    /// Hands the broker's reply over.
    fn send(self, result: Result<Json, String>) {
        match self {
            Answer::Request(reply) => {
                let _ = reply.send(result);
            }
            Answer::Publish(waiter) => waiter.finish(result.map(drop).map_err(BrokerError::Engine)),
        }
    }
}

/// A publish's callback. Dropped unanswered (the link went down), it reports the link lost; so
/// it must not be dropped under the link's state lock.
struct PublishWaiter {
    done: Option<PublishDone>,
    /// For the link's [`Link::lost`] error, in case it is dropped unanswered (weak: the link
    /// holds its waiters).
    link: Weak<Link>,
}

impl PublishWaiter {
    fn finish(mut self, result: Result<(), BrokerError>) {
        if let Some(done) = self.done.take() {
            done(result);
        }
    }
}

impl Drop for PublishWaiter {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            let error = match self.link.upgrade() {
                Some(link) => link.lost(),
                None => BrokerError::Unavailable("the broker link was closed".to_owned()),
            };
            done(Err(error));
        }
    }
}

impl LinkState {
    /// Whether a publication of `channel` may be delivered here without the broker.
    fn delivers_locally(&self, channel: &str) -> bool {
        self.solo.contains(channel) && !self.in_flight.contains_key(channel)
    }

    /// Registers publish `id` of `channel` as waiting for its reply and in flight.
    fn register_publish(&mut self, id: u64, channel: &Arc<str>, reply: Answer) {
        *self.in_flight.entry(channel.clone()).or_default() += 1;
        self.pending.insert(
            id,
            Waiter {
                reply,
                publishing: Some(channel.clone()),
            },
        );
    }

    /// Drops the answered publishes from the front of [`publish_deadlines`](Self::publish_deadlines).
    fn trim_deadlines(&mut self) {
        while let Some(&(_, id)) = self.publish_deadlines.front() {
            if self.pending.contains_key(&id) {
                break;
            }
            self.publish_deadlines.pop_front();
        }
    }

    /// Takes the callback publishes whose deadline passed by `now` (they answer with a timeout).
    fn take_expired(&mut self, now: Instant) -> Vec<Waiter> {
        let mut expired = Vec::new();
        while let Some(&(deadline, id)) = self.publish_deadlines.front() {
            if deadline > now {
                break;
            }
            self.publish_deadlines.pop_front();
            expired.extend(self.take_waiter(id));
        }
        expired
    }

    /// Takes request `id`'s waiter; a publish stops counting as in flight.
    fn take_waiter(&mut self, id: u64) -> Option<Waiter> {
        let waiter = self.pending.remove(&id)?;
        if let Some(channel) = &waiter.publishing
            && let Some(count) = self.in_flight.get_mut(channel)
        {
            *count -= 1;
            if *count == 0 {
                self.in_flight.remove(channel);
            }
        }
        Some(waiter)
    }
}

impl ClusterBroker {
    /// Starts connecting to the brokers at `paths` (broker `i` at `paths[i]`) in background tasks
    /// and returns at once; requests fail with [`BrokerError::Unavailable`] until their broker is
    /// ready (see [`ready`](Self::ready)).
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime, or if `paths` is empty.
    pub fn new(paths: Vec<PathBuf>, config: BrokerLinkConfig) -> ClusterBroker {
        assert!(!paths.is_empty(), "a cluster needs at least one broker");
        let sink: Sink = Arc::default();
        let stop = CancellationToken::new();
        let links: Vec<Arc<Link>> = paths
            .into_iter()
            .enumerate()
            .map(|(index, path)| {
                Arc::new(Link {
                    index,
                    path,
                    next_id: AtomicU64::new(1),
                    up: watch::Sender::new(false),
                    state: Mutex::default(),
                })
            })
            .collect();
        for link in &links {
            tokio::spawn(supervise(
                link.clone(),
                sink.clone(),
                config.clone(),
                stop.clone(),
            ));
        }
        ClusterBroker {
            inner: Arc::new(Inner {
                links,
                config,
                sink,
                stop,
            }),
        }
    }

    /// Connects to the brokers at `paths` and waits until every one of them is ready, for at most
    /// [`BrokerLinkConfig::connect_timeout`].
    pub async fn connect(
        paths: Vec<PathBuf>,
        config: BrokerLinkConfig,
    ) -> Result<ClusterBroker, BrokerError> {
        let timeout = config.connect_timeout;
        let broker = ClusterBroker::new(paths, config);
        broker.ready(timeout).await?;
        Ok(broker)
    }

    /// Waits until every broker is connected and ready, for at most `timeout`; on expiry says
    /// which brokers are still unreachable ([`BrokerError::Unavailable`]).
    pub async fn ready(&self, timeout: Duration) -> Result<(), BrokerError> {
        let all = join_all(self.inner.links.iter().map(|link| async move {
            let mut up = link.up.subscribe();
            let _ = up.wait_for(|up| *up).await;
        }));
        if tokio::time::timeout(timeout, all).await.is_ok() {
            return Ok(());
        }
        let down: Vec<String> = self
            .inner
            .links
            .iter()
            .filter(|l| !*l.up.borrow())
            .map(|l| format!("{} ({})", l.index, l.path.display()))
            .collect();
        Err(BrokerError::Unavailable(format!(
            "brokers not ready after {timeout:?}: {}",
            down.join(", ")
        )))
    }

    /// Whether each broker (by index) is connected and ready right now.
    pub fn connected(&self) -> Vec<bool> {
        self.inner.links.iter().map(|l| *l.up.borrow()).collect()
    }

    /// The number of brokers.
    pub fn broker_count(&self) -> usize {
        self.inner.links.len()
    }

    /// The broker index that owns `channel`. A presence channel's companion channel of
    /// join/leave events lives with the channel, whose broker sends them.
    pub fn broker_for(&self, channel: &str) -> usize {
        let owner = channel
            .strip_prefix(crate::stream::PRESENCE_PREFIX)
            .unwrap_or(channel);
        hash_key(owner, self.inner.links.len())
    }

    /// The key/value store over the same connections.
    pub fn kv(&self) -> ClusterKv {
        ClusterKv {
            inner: self.inner.clone(),
        }
    }

    /// The broker controllers over the same connections (custom messages).
    pub fn controllers(&self) -> BrokerControllers {
        BrokerControllers {
            inner: self.inner.clone(),
        }
    }

    fn link(&self, channel: &str) -> &Link {
        &self.inner.links[self.broker_for(channel)]
    }

    /// Sends a history or presence request to the broker owning `channel`.
    async fn stream(
        &self,
        channel: &str,
        request: StreamRequest,
        action: &'static str,
        prepare: impl FnOnce(&mut LinkState),
    ) -> Result<Json, BrokerError> {
        let request = request.to_json();
        let size = request.as_bytes().len() + 9;
        if size > MAX_FRAME_LEN {
            return Err(BrokerError::TooLarge {
                size,
                limit: MAX_FRAME_LEN,
            });
        }
        self.link(channel)
            .request(
                move |id| WorkerMessage::Stream { id, request },
                action,
                self.inner.config.request_timeout,
                |state, _| prepare(state),
            )
            .await
    }
}

/// Where [`ClusterBroker::place`] put a publication.
enum Placed {
    /// In the link's queue as request `id`, its answer registered.
    Queued { link: Arc<Link>, id: u64 },
    /// Delivered here (solo), sent without acknowledgement, or failed: nothing more to wait for.
    Done(Result<(), BrokerError>),
    /// The link's queue is full: given back.
    Refused(Publication),
}

impl ClusterBroker {
    /// The one place where a publish enters its link without waiting: the size check, the
    /// unacknowledged mode, solo delivery, and the queueing under the state lock (so that the
    /// reply cannot be read before its waiter is registered). `answer` makes the waiter once
    /// the message is queued; a callback waiter also gets a deadline for the link's sweeper.
    fn place(&self, publication: Publication, answer: impl FnOnce(&Arc<Link>) -> Answer) -> Placed {
        if let Err(e) = check_size(&publication) {
            return Placed::Done(Err(e));
        }
        let link = &self.inner.links[self.broker_for(publication.channel())];
        let config = &self.inner.config;
        if !config.publish_ack {
            let Some(tx) = link.state.lock().tx.clone() else {
                return Placed::Done(Err(link.unavailable()));
            };
            let message = WorkerMessage::publish_body(NO_REPLY, &publication);
            return match tx.try_send(message) {
                Ok(()) => Placed::Done(Ok(())),
                Err(mpsc::error::TrySendError::Closed(_)) => Placed::Done(Err(link.lost())),
                Err(mpsc::error::TrySendError::Full(_)) => Placed::Refused(publication),
            };
        }
        let id = link.next_id.fetch_add(1, Ordering::Relaxed);
        let mut state = link.state.lock();
        if config.solo_delivery && state.delivers_locally(publication.channel()) {
            drop(state);
            // Solo: nobody else subscribes, the broker would send it back to us alone.
            self.deliver_here(publication);
            return Placed::Done(Ok(()));
        }
        let Some(tx) = &state.tx else {
            return Placed::Done(Err(link.unavailable()));
        };
        match tx.try_send(WorkerMessage::publish_body(id, &publication)) {
            Ok(()) => {
                let answer = answer(link);
                if matches!(answer, Answer::Publish(_)) {
                    let deadline = Instant::now() + config.request_timeout;
                    state.publish_deadlines.push_back((deadline, id));
                }
                state.register_publish(id, publication.channel_arc(), answer);
                Placed::Queued {
                    link: link.clone(),
                    id,
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Placed::Done(Err(link.lost())),
            Err(mpsc::error::TrySendError::Full(_)) => Placed::Refused(publication),
        }
    }

    /// Hands a solo channel's publication to the attached sink (see [`LinkState::solo`]).
    fn deliver_here(&self, publication: Publication) {
        let sink = self.inner.sink.read().clone();
        if let Some(sink) = sink {
            sink.deliver(publication);
        }
    }

    /// [`Broker::publish`] when the link's queue was full: waits for room (within the request
    /// timeout), then for the reply as usual.
    async fn publish_waiting(&self, publication: Publication) -> Result<(), BrokerError> {
        let link = &self.inner.links[self.broker_for(publication.channel())];
        let config = &self.inner.config;
        if !config.publish_ack {
            let message = WorkerMessage::publish(NO_REPLY, &publication);
            return tokio::time::timeout(config.request_timeout, link.post(message))
                .await
                .unwrap_or(Err(BrokerError::Timeout { action: "publish" }));
        }
        let id = link.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply_tx, reply_rx) = oneshot::channel();
        let tx = {
            let mut state = link.state.lock();
            if config.solo_delivery && state.delivers_locally(publication.channel()) {
                drop(state);
                self.deliver_here(publication);
                return Ok(());
            }
            let Some(tx) = state.tx.clone() else {
                return Err(link.unavailable());
            };
            state.register_publish(id, publication.channel_arc(), Answer::Request(reply_tx));
            tx
        };
        let _guard = PendingGuard { link: &**link, id };
        let body = WorkerMessage::publish_body(id, &publication);
        let exchange = async {
            tx.send(body).await.map_err(|_| link.lost())?;
            match reply_rx.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(message)) => Err(BrokerError::Engine(message)),
                Err(_) => Err(link.lost()),
            }
        };
        tokio::time::timeout(config.request_timeout, exchange)
            .await
            .unwrap_or(Err(BrokerError::Timeout { action: "publish" }))
    }
}

/// Refuses a publication whose message would exceed [`MAX_FRAME_LEN`].
fn check_size(publication: &Publication) -> Result<(), BrokerError> {
    let size = publication.frame().len() + publication.channel().len() + 13;
    if size > MAX_FRAME_LEN {
        return Err(BrokerError::TooLarge {
            size,
            limit: MAX_FRAME_LEN,
        });
    }
    Ok(())
}

impl Broker for ClusterBroker {
    fn attach(&self, sink: Arc<dyn DeliverySink>) {
        *self.inner.sink.write() = Some(sink);
    }

    fn subscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            let link = self.link(channel);
            let channel: Arc<str> = Arc::from(channel);
            let held = channel.clone();
            let result = link
                .request(
                    |id| WorkerMessage::Subscribe {
                        id,
                        channel: channel.to_string(),
                    },
                    "subscribe",
                    self.inner.config.request_timeout,
                    // Recorded together with the request, so a reconnect re-subscribes it.
                    move |state, id| {
                        state.subscribing.insert(id, held.clone());
                        state.channels.insert(held);
                    },
                )
                .await;
            if result.is_err() {
                // The caller treats the channel as not subscribed: forget it, and withdraw it at
                // the broker in case the request got through after all.
                link.state.lock().channels.remove(&channel);
                link.post_now(WorkerMessage::Unsubscribe {
                    id: NO_REPLY,
                    channel: channel.to_string(),
                });
            }
            result.map(drop)
        })
    }

    fn unsubscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            let link = self.link(channel);
            {
                let mut state = link.state.lock();
                state.channels.remove(channel);
                state.solo.remove(channel);
                if state.tx.is_none() {
                    // The broker dropped this connection's subscriptions with the connection,
                    // and the next one will not re-subscribe: nothing left to do.
                    return Ok(());
                }
            }
            link.request(
                |id| WorkerMessage::Unsubscribe {
                    id,
                    channel: channel.to_owned(),
                },
                "unsubscribe",
                self.inner.config.request_timeout,
                |_, _| {},
            )
            .await
            .map(drop)
        })
    }

    fn publish(&self, publication: Publication) -> BoxFuture<'_, Result<(), BrokerError>> {
        match self.start_publish(publication) {
            Ok(outcome) => outcome,
            Err(publication) => Box::pin(self.publish_waiting(publication)),
        }
    }

    /// Places the publication in its link's queue at once (or delivers it here, on a solo
    /// channel): the order of publications is the order of the calls. Gives it back when the
    /// queue is full ([`publish`](Broker::publish) then waits for room).
    fn start_publish(
        &self,
        publication: Publication,
    ) -> Result<BoxFuture<'static, Result<(), BrokerError>>, Publication> {
        fn done(result: Result<(), BrokerError>) -> BoxFuture<'static, Result<(), BrokerError>> {
            Box::pin(std::future::ready(result))
        }
        let (reply_tx, reply_rx) = oneshot::channel();
        let (link, id) = match self.place(publication, |_| Answer::Request(reply_tx)) {
            Placed::Queued { link, id } => (link, id),
            Placed::Done(result) => return Ok(done(result)),
            Placed::Refused(publication) => return Err(publication),
        };
        let guard = PendingGuard { link, id };
        let timeout = self.inner.config.request_timeout;
        Ok(Box::pin(async move {
            let answer = tokio::time::timeout(timeout, reply_rx).await;
            let link = &guard.link;
            match answer {
                Ok(Ok(Ok(_))) => Ok(()),
                Ok(Ok(Err(message))) => Err(BrokerError::Engine(message)),
                Ok(Err(_)) => Err(link.lost()),
                Err(_) => Err(BrokerError::Timeout { action: "publish" }),
            }
        }))
    }

    /// As [`start_publish`](Broker::start_publish), but the link's reader calls the callback
    /// when the broker's acknowledgement comes: no task, timer or channel per publish (the
    /// link's sweeper times publishes out, [`BrokerLinkConfig::request_timeout`] after they were
    /// placed).
    fn start_publish_then(
        &self,
        publication: Publication,
        make_done: &mut dyn FnMut() -> PublishDone,
    ) -> PublishStart {
        let waiter = |link: &Arc<Link>| {
            Answer::Publish(PublishWaiter {
                done: Some(make_done()),
                link: Arc::downgrade(link),
            })
        };
        match self.place(publication, waiter) {
            Placed::Queued { .. } => PublishStart::Pending,
            Placed::Done(result) => PublishStart::Done(result),
            Placed::Refused(publication) => PublishStart::Refused(publication),
        }
    }

    fn describe(&self) -> String {
        format!("cluster ({} brokers)", self.inner.links.len())
    }

    fn publish_stored(
        &self,
        publication: Publication,
        policy: HistoryPolicy,
    ) -> BoxFuture<'_, Result<Position, BrokerError>> {
        Box::pin(async move {
            let request = StreamRequest::publish(&publication, policy)?;
            let reply = self
                .stream(publication.channel(), request, "publish", |_| {})
                .await?;
            parse_position(&reply)
        })
    }

    fn read_history<'a>(
        &'a self,
        channel: &'a str,
        policy: HistoryPolicy,
        read: HistoryRead,
    ) -> BoxFuture<'a, Result<HistoryPage, BrokerError>> {
        Box::pin(async move {
            let request = StreamRequest::history(channel, policy, &read);
            parse_page(&self.stream(channel, request, "history", |_| {}).await?)
        })
    }

    fn presence_join<'a>(
        &'a self,
        channel: &'a str,
        member: PresenceMember,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            let key: (Arc<str>, String) = (Arc::from(channel), member.id.clone());
            let kept = (key.clone(), member.clone());
            let request = StreamRequest::presence(StreamOp::Join, channel, Some(member));
            let result = self
                .stream(channel, request, "presence join", move |state| {
                    state.presence.insert(kept.0, kept.1);
                })
                .await;
            if result.is_err() {
                self.link(channel).state.lock().presence.remove(&key);
            }
            result.map(drop)
        })
    }

    fn presence_leave<'a>(
        &'a self,
        channel: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            let link = self.link(channel);
            let member = link
                .state
                .lock()
                .presence
                .remove(&(Arc::from(channel), id.to_owned()));
            let member = member.unwrap_or(PresenceMember {
                id: id.to_owned(),
                user: None,
            });
            let request = StreamRequest::presence(StreamOp::Leave, channel, Some(member));
            self.stream(channel, request, "presence leave", |_| {})
                .await
                .map(drop)
        })
    }

    fn presence<'a>(
        &'a self,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<PresenceInfo, BrokerError>> {
        Box::pin(async move {
            let request = StreamRequest::presence(StreamOp::Presence, channel, None);
            parse_presence(&self.stream(channel, request, "presence", |_| {}).await?)
        })
    }

    /// Whether every broker is connected and ready (see [`ClusterBroker::connected`] for each).
    fn is_connected(&self) -> bool {
        self.inner.links.iter().all(|l| *l.up.borrow())
    }
}

/// A worker's way to the broker processes' controllers (custom messages, `exchange.send`), over
/// the same connections as its [`ClusterBroker`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct BrokerControllers {
    inner: Arc<Inner>,
}

impl BrokerControllers {
    /// Sends `data` to the broker controllers addressed by `map_index` and returns their answers
    /// in broker order (`exchange.send`). Fails if any addressed broker fails.
    pub async fn send(&self, data: Json, map_index: MapIndex) -> Result<Vec<Json>, BrokerError> {
        let n = self.inner.links.len();
        let targets: Vec<usize> = match map_index {
            MapIndex::All => (0..n).collect(),
            MapIndex::Key(key) => vec![hash_key(&key, n)],
            MapIndex::Number(number) => vec![(number.unsigned_abs() % n as u64) as usize],
            MapIndex::Keys(keys) => {
                let mut targets = Vec::new();
                for key in keys {
                    let index = hash_key(&key, n);
                    if !targets.contains(&index) {
                        targets.push(index);
                    }
                }
                targets
            }
        };
        let timeout = self.inner.config.request_timeout;
        let answers = join_all(targets.into_iter().map(|index| {
            let data = data.clone();
            self.inner.links[index].request(
                move |id| WorkerMessage::Send { id, data },
                "send",
                timeout,
                |_, _| {},
            )
        }))
        .await;
        answers.into_iter().collect()
    }
}

impl ClusterKv {
    async fn run(&self, command: KvCommand) -> Result<Json, BrokerError> {
        let n = self.inner.links.len();
        match command {
            KvCommand::GetAll => {
                let maps = self.on_all(KvCommand::GetAll).await?;
                let mut merged = serde_json::Map::new();
                for map in maps {
                    if let Ok(serde_json::Value::Object(map)) = map.parse() {
                        merged.extend(map);
                    }
                }
                Ok(Json::from(serde_json::Value::Object(merged)))
            }
            KvCommand::RemoveAll => {
                self.on_all(KvCommand::RemoveAll).await?;
                Ok(Json::NULL)
            }
            KvCommand::Expire { keys, seconds } => {
                let groups = group_keys(keys, n);
                let results = join_all(
                    groups
                        .into_iter()
                        .map(|(index, keys)| self.on(index, KvCommand::Expire { keys, seconds })),
                )
                .await;
                results.into_iter().try_for_each(|r| r.map(drop))?;
                Ok(Json::NULL)
            }
            KvCommand::Unexpire { keys } => {
                let groups = group_keys(keys, n);
                let results = join_all(
                    groups
                        .into_iter()
                        .map(|(index, keys)| self.on(index, KvCommand::Unexpire { keys })),
                )
                .await;
                results.into_iter().try_for_each(|r| r.map(drop))?;
                Ok(Json::NULL)
            }
            command => {
                let index = hash_key(command.routing_key().unwrap_or(""), n);
                self.on(index, command).await
            }
        }
    }

    async fn on(&self, index: usize, command: KvCommand) -> Result<Json, BrokerError> {
        self.inner.links[index]
            .request(
                move |id| WorkerMessage::Kv { id, command },
                "key/value",
                self.inner.config.request_timeout,
                |_, _| {},
            )
            .await
    }

    async fn on_all(&self, command: KvCommand) -> Result<Vec<Json>, BrokerError> {
        let results =
            join_all((0..self.inner.links.len()).map(|i| self.on(i, command.clone()))).await;
        results.into_iter().collect()
    }
}

/// Groups expiry keys by owning broker (by first segment), keeping first-seen order.
fn group_keys(keys: Vec<Vec<String>>, n: usize) -> Vec<(usize, Vec<Vec<String>>)> {
    let mut groups: Vec<(usize, Vec<Vec<String>>)> = Vec::new();
    for key in keys {
        let index = hash_key(key.first().map_or("", String::as_str), n);
        match groups.iter_mut().find(|(i, _)| *i == index) {
            Some((_, group)) => group.push(key),
            None => groups.push((index, vec![key])),
        }
    }
    groups
}

impl KvStore for ClusterKv {
    fn execute(&self, command: KvCommand) -> BoxFuture<'_, Result<Json, BrokerError>> {
        Box::pin(self.run(command))
    }
}

/// Removes a pending request when its caller stops waiting (reply, error, timeout or drop); a
/// publish stops counting as in flight. Holds its link by reference or by `Arc`.
struct PendingGuard<L: std::ops::Deref<Target = Link>> {
    link: L,
    id: u64,
}

impl<L: std::ops::Deref<Target = Link>> Drop for PendingGuard<L> {
    fn drop(&mut self) {
        let mut state = self.link.state.lock();
        state.take_waiter(self.id);
        state.subscribing.remove(&self.id);
    }
}

impl Link {
    /// Sends a request and waits for its reply. `prepare` runs under the state lock in the same
    /// step that registers the request, with its id (used by subscribe to record the channel
    /// atomically).
    async fn request(
        &self,
        message: impl FnOnce(u64) -> WorkerMessage,
        action: &'static str,
        timeout: Duration,
        prepare: impl FnOnce(&mut LinkState, u64),
    ) -> Result<Json, BrokerError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply_tx, reply_rx) = oneshot::channel();
        let tx = {
            let mut state = self.state.lock();
            let Some(tx) = state.tx.clone() else {
                return Err(self.unavailable());
            };
            prepare(&mut state, id);
            state.pending.insert(
                id,
                Waiter {
                    reply: Answer::Request(reply_tx),
                    publishing: None,
                },
            );
            tx
        };
        let _guard = PendingGuard { link: self, id };
        let body = message(id).encode();
        let exchange = async {
            tx.send(body).await.map_err(|_| self.lost())?;
            match reply_rx.await {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(message)) => Err(BrokerError::Engine(message)),
                Err(_) => Err(self.lost()),
            }
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or(Err(BrokerError::Timeout { action }))
    }

    /// Queues a message that expects no reply.
    async fn post(&self, message: WorkerMessage) -> Result<(), BrokerError> {
        let tx = self
            .state
            .lock()
            .tx
            .clone()
            .ok_or_else(|| self.unavailable())?;
        tx.send(message.encode()).await.map_err(|_| self.lost())
    }

    /// Queues a message that expects no reply if the link is up and its queue has room; drops
    /// it otherwise (best effort).
    fn post_now(&self, message: WorkerMessage) {
        let tx = self.state.lock().tx.clone();
        if let Some(tx) = tx {
            let _ = tx.try_send(message.encode());
        }
    }

    fn unavailable(&self) -> BrokerError {
        BrokerError::Unavailable(format!(
            "broker {} at {} is not connected",
            self.index,
            self.path.display()
        ))
    }

    fn lost(&self) -> BrokerError {
        BrokerError::Unavailable(format!(
            "connection to broker {} at {} was lost",
            self.index,
            self.path.display()
        ))
    }
}

/// Keeps one broker connection alive: connect, serve, and on loss reconnect with backoff.
async fn supervise(link: Arc<Link>, sink: Sink, config: BrokerLinkConfig, stop: CancellationToken) {
    let mut attempt: u32 = 0;
    let mut ever_connected = false;
    loop {
        let outcome = tokio::select! {
            _ = stop.cancelled() => break,
            outcome = session(&link, &sink, &config, &mut ever_connected, &mut attempt) => outcome,
        };
        link.go_down();
        if stop.is_cancelled() {
            break;
        }
        match outcome {
            Session::Lost(reason) => tracing::warn!(
                broker = link.index,
                path = %link.path.display(),
                reason = %reason,
                "lost connection to broker; reconnecting"
            ),
            Session::Failed(e) => {
                // Logged at the first failure and every 20th after it (sc-broker's
                // connectRetryErrorThreshold), quietly otherwise.
                if attempt == 0 || (attempt + 1) % 20 == 0 {
                    tracing::warn!(
                        broker = link.index,
                        path = %link.path.display(),
                        attempts = attempt + 1,
                        error = %e,
                        "cannot connect to broker; retrying"
                    );
                } else {
                    tracing::debug!(broker = link.index, error = %e, "broker connect attempt failed");
                }
            }
        }
        let delay = config.backoff.delay(attempt);
        attempt = attempt.saturating_add(1);
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(delay) => {}
        }
    }
    link.go_down();
}

enum Session {
    /// Never got to ready.
    Failed(io::Error),
    /// Was ready, then lost.
    Lost(String),
}

async fn session(
    link: &Link,
    sink: &Sink,
    config: &BrokerLinkConfig,
    ever_connected: &mut bool,
    attempt: &mut u32,
) -> Session {
    let (mut reader, write) = match handshake(link, config).await {
        Ok(halves) => halves,
        Err(e) => return Session::Failed(e),
    };

    let (tx, rx) = mpsc::channel(config.outbound_capacity.max(1));
    let resubscribe: Vec<Arc<str>> = {
        let mut state = link.state.lock();
        state.tx = Some(tx);
        state.channels.iter().cloned().collect()
    };
    if *ever_connected {
        tracing::info!(
            broker = link.index,
            channels = resubscribe.len(),
            "reconnected to broker; re-subscribing"
        );
    }
    *ever_connected = true;
    *attempt = 0;
    link.up.send_replace(true);
    let rejoin: Vec<((Arc<str>, String), PresenceMember)> = link
        .state
        .lock()
        .presence
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for ((channel, _), member) in rejoin {
        let request = StreamRequest::presence(StreamOp::Join, &channel, Some(member));
        link.post_now(WorkerMessage::Stream {
            id: NO_REPLY,
            request: request.to_json(),
        });
    }

    let mut writer = AbortOnDropHandle::new(tokio::spawn(write_loop(write, rx, resubscribe)));
    let reader = async {
        // The waiters of one batch of acknowledgements, taken under the lock and answered after
        // it; kept between batches, so a batch allocates nothing.
        let mut answered: Vec<Waiter> = Vec::new();
        loop {
            let body = match reader.next().await {
                None => return "broker closed the connection".to_owned(),
                Some(Err(e)) => return format!("read failed: {e}"),
                Some(Ok(body)) => body.freeze(),
            };
            match BrokerMessage::decode(body) {
                Ok(BrokerMessage::Delivery { channel, frame }) => {
                    deliver(
                        link,
                        sink,
                        Publication::from_channel_and_frame(&channel, frame),
                    );
                }
                Ok(BrokerMessage::Publication { frame }) => {
                    deliver(link, sink, Publication::from_frame(frame));
                }
                Ok(BrokerMessage::Acks { ids }) => {
                    {
                        let mut state = link.state.lock();
                        answered.extend(ids.iter().filter_map(|id| state.take_waiter(*id)));
                        state.trim_deadlines();
                    }
                    for waiter in answered.drain(..) {
                        waiter.reply.send(Ok(Json::NULL));
                    }
                }
                Ok(BrokerMessage::Reply { id, result }) => {
                    let waiter = {
                        let mut state = link.state.lock();
                        let waiter = state.take_waiter(id).map(|w| w.reply);
                        if let Some(channel) = state.subscribing.remove(&id)
                            && waiter.is_some()
                            && result.as_ref().is_ok_and(is_solo_reply)
                            && state.channels.contains(&channel)
                        {
                            state.solo.insert(channel);
                        }
                        state.trim_deadlines();
                        waiter
                    };
                    if let Some(waiter) = waiter {
                        waiter.send(result);
                    }
                }
                Ok(BrokerMessage::Shared { token, channel }) => {
                    let tx = {
                        let mut state = link.state.lock();
                        state.solo.remove(channel.as_str());
                        state.tx.clone()
                    };
                    // From here on this channel's publishes go through the broker.
                    if let Some(tx) = tx {
                        let _ = tx.send(WorkerMessage::SharedAck { token }.encode()).await;
                    }
                }
                Ok(BrokerMessage::Ready { .. }) => {}
                Err(e) => return format!("malformed message from broker: {e}"),
            }
        }
    };
    // Fails the callback publishes that waited longer than `request_timeout` for their reply.
    let sweeper = async {
        let period =
            (config.request_timeout / 4).clamp(Duration::from_millis(5), Duration::from_secs(1));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let expired = link.state.lock().take_expired(Instant::now());
            for waiter in expired {
                if let Answer::Publish(waiter) = waiter.reply {
                    waiter.finish(Err(BrokerError::Timeout { action: "publish" }));
                }
            }
        }
    };
    let reason = tokio::select! {
        reason = reader => reason,
        () = sweeper => "sweeper stopped".to_owned(),
        written = &mut writer => match written {
            Ok(Ok(())) => "writer stopped".to_owned(),
            Ok(Err(e)) => format!("write failed: {e}"),
            Err(e) => format!("writer task failed: {e}"),
        },
    };
    Session::Lost(reason)
}

/// Hands a publication from the broker to the attached sink.
fn deliver(
    link: &Link,
    sink: &Sink,
    publication: Result<Publication, sc_protocol::publication::NotAPublication>,
) {
    match publication {
        Ok(publication) => {
            let sink = sink.read().clone();
            if let Some(sink) = sink {
                sink.deliver(publication);
            }
        }
        Err(e) => {
            tracing::warn!(broker = link.index, error = %e, "dropping malformed publication from broker");
        }
    }
}

/// Connects and waits for the broker's `Ready`.
async fn handshake(
    link: &Link,
    config: &BrokerLinkConfig,
) -> io::Result<(
    FramedRead<OwnedReadHalf, tokio_util::codec::LengthDelimitedCodec>,
    OwnedWriteHalf,
)> {
    let connect = async {
        let stream = UnixStream::connect(&link.path).await?;
        let (read, write) = stream.into_split();
        let mut reader = FramedRead::new(read, codec());
        let first = reader
            .next()
            .await
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "closed before ready"))??;
        match BrokerMessage::decode(first.freeze()) {
            Ok(BrokerMessage::Ready { broker_id }) => {
                if broker_id as usize != link.index {
                    tracing::warn!(
                        broker = link.index,
                        reported = broker_id,
                        "broker reports a different index than its position in the broker list"
                    );
                }
                Ok((reader, write))
            }
            Ok(other) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("expected ready, got {other:?}"),
            )),
            Err(e) => Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        }
    };
    tokio::time::timeout(config.request_timeout, connect)
        .await
        .unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no ready from broker",
            ))
        })
}

/// Writes the re-subscriptions first, then drains the queue, batching into one flush.
async fn write_loop(
    write: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Bytes>,
    resubscribe: Vec<Arc<str>>,
) -> io::Result<()> {
    let mut sink = FramedWrite::new(write, codec());
    for channel in resubscribe {
        let message = WorkerMessage::Subscribe {
            id: NO_REPLY,
            channel: channel.to_string(),
        };
        sink.feed(message.encode()).await?;
    }
    SinkExt::<Bytes>::flush(&mut sink).await?;
    while let Some(first) = rx.recv().await {
        sink.feed(first).await?;
        while let Ok(more) = rx.try_recv() {
            sink.feed(more).await?;
        }
        SinkExt::<Bytes>::flush(&mut sink).await?;
    }
    Ok(())
}

impl Link {
    /// Marks the link down: new requests fail fast, requests in flight fail now.
    fn go_down(&self) {
        let pending = {
            let mut state = self.state.lock();
            state.tx = None;
            // A new connection grants nothing until the channel is subscribed afresh.
            state.solo.clear();
            state.subscribing.clear();
            // Every publish in flight fails below.
            state.in_flight.clear();
            state.publish_deadlines.clear();
            std::mem::take(&mut state.pending)
        };
        // Dropping the senders wakes each waiter with "connection lost" (a callback publish is
        // called with it).
        drop(pending);
        self.up.send_replace(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let backoff = LINK_BACKOFF;
        let first = backoff.delay(0);
        assert!(first >= Duration::from_millis(200) && first <= Duration::from_millis(300));
        let second = backoff.delay(1);
        assert!(second >= Duration::from_millis(260) && second <= Duration::from_millis(390));
        assert_eq!(backoff.delay(20), Duration::from_secs(1));
        assert_eq!(backoff.delay(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn expiry_keys_group_by_owner() {
        let keys = vec![
            vec!["news".to_owned()],
            vec!["chan-a".to_owned(), "x".to_owned()],
            vec!["private".to_owned()],
        ];
        // news → 1, chan-a → 0, private → 1 with two brokers.
        assert_eq!(
            group_keys(keys, 2),
            vec![
                (1, vec![vec!["news".to_owned()], vec!["private".to_owned()]]),
                (0, vec![vec!["chan-a".to_owned(), "x".to_owned()]]),
            ]
        );
    }
}
