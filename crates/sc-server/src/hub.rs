//! The worker's channel table: channel → local subscribers, one broker subscription per channel.
//!
//! Fan-out takes the table's read lock, clones the publication's shared frame into each
//! subscriber's queue and releases the lock: no await, no allocation per subscriber (beyond the
//! queue's amortised growth), never a wait on a slow socket.
//!
//! A socket subscribing to a history channel first *catches up* (EXTENSIONS.md E3, E4): it waits
//! in the channel's `pending` list, where live deliveries are held for it, while its history is
//! read and sent; then, under the table's write lock, the held deliveries it has not seen are
//! sent, the acknowledgement is queued, and the socket joins the live subscribers. Nothing is
//! lost or sent twice, and the acknowledgement's position is exactly the last one it was sent.
//! Channels without history never have pending sockets: their fan-out is unchanged.
//!
//! **Pacing.** Delivering never waits, but a publisher does, afterwards: when a delivery finds a
//! subscriber's outbound queue at half its limit (`outboundQueueLimit` / 2) or more, the channel is
//! marked congested, and [`Hub::pace`] (awaited by every publish made on this worker, after the
//! publication went out) waits until that socket's writer has taken its backlog. A publisher
//! therefore runs at most about half a queue ahead of the slowest subscriber that keeps reading,
//! as the round trip to a broker process used to pace it, and a reader that keeps up is not cut
//! off by a fast publisher. A subscriber that makes no progress for [`PACE_STALL`] is not waited
//! for again (until it makes progress): it fills its queue and is closed with 4100 as before.
//! Unloaded, pacing costs one lookup of the channel per publish.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use sc_broker::stream::presence_channel;
use sc_broker::{Broker, BrokerError, DeliverySink, HistoryPolicy, HistoryRead, Position};
use sc_protocol::{Json, Publication};
use smallvec::SmallVec;
use tokio::sync::mpsc;

use crate::middleware::{Middleware, OutboundVerdict};
use crate::socket::{SharedFrame, Socket};
use crate::streams::Streams;

/// Most live deliveries held for one catching-up socket; beyond it, the held ones are dropped
/// and the history is read again from the last position sent.
const HOLD_LIMIT: usize = 4096;

/// Broker operations for one channel run one at a time; channels share these locks by hash.
const OP_LOCKS: usize = 64;

/// How long a publisher waits for a congested subscriber's writer to take its backlog before it
/// gives up on that subscriber (see "Pacing" above).
pub(crate) const PACE_STALL: Duration = Duration::from_secs(1);

pub(crate) struct Hub {
    channels: RwLock<HashMap<Arc<str>, ChannelEntry>>,
    broker: Arc<dyn Broker>,
    streams: Streams,
    middleware: Arc<Middleware>,
    op_locks: Box<[tokio::sync::Mutex<()>]>,
    next_watcher: std::sync::atomic::AtomicU64,
    /// Publications delivered here (metrics).
    pub(crate) delivered: std::sync::atomic::AtomicU64,
    /// Woken when a congested queue was taken by its writer, or a socket closed (pacing).
    drained: Arc<tokio::sync::Notify>,
}

/// One channel's local subscribers.
///
/// Laid out for the common case, a channel with one subscribing socket and nothing else (a
/// private channel per user): that socket is held inline and the rarer parts (watchers,
/// catching-up sockets, presence) sit behind one pointer that is `None` then, so the table holds
/// such a channel in 48 bytes and no allocation of its own.
#[derive(Default)]
struct ChannelEntry {
    sockets: SmallVec<[Socket; 1]>,
    /// Watchers, catching-up sockets and presence, when the channel has any (else `None`).
    rare: Option<Box<RareParts>>,
    /// The broker subscription is in place.
    ready: bool,
    /// A delivery found a subscriber's queue congested: publishers check before returning
    /// ([`Hub::pace`]).
    congested: AtomicBool,
}

/// The parts of a [`ChannelEntry`] that most channels do not have.
#[derive(Default)]
struct RareParts {
    watchers: Vec<Watcher>,
    /// Sockets catching up on a history channel (their live deliveries are held).
    pending: Vec<Arc<Pending>>,
    /// This is the companion channel of a presence channel: its publications are
    /// `#presenceJoin`/`#presenceLeave` frames for the sockets of `presence_of`.
    presence_of: Option<Arc<str>>,
}

impl RareParts {
    fn is_empty(&self) -> bool {
        self.watchers.is_empty() && self.pending.is_empty() && self.presence_of.is_none()
    }
}

impl ChannelEntry {
    fn is_empty(&self) -> bool {
        self.sockets.is_empty() && self.rare.as_ref().is_none_or(|rare| rare.is_empty())
    }

    fn watchers(&self) -> &[Watcher] {
        self.rare.as_ref().map_or(&[], |rare| &rare.watchers)
    }

    fn pending(&self) -> &[Arc<Pending>] {
        self.rare.as_ref().map_or(&[], |rare| &rare.pending)
    }

    fn presence_of(&self) -> Option<&Arc<str>> {
        self.rare.as_ref()?.presence_of.as_ref()
    }

    /// The rare parts, made if the channel had none.
    fn rare_mut(&mut self) -> &mut RareParts {
        self.rare.get_or_insert_default()
    }

    /// Releases the rare parts once they hold nothing (after a removal).
    fn trim(&mut self) {
        if self.rare.as_ref().is_some_and(|rare| rare.is_empty()) {
            self.rare = None;
        }
    }
}

/// A socket catching up, and the live deliveries held for it meanwhile.
struct Pending {
    socket: Socket,
    held: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    publications: Vec<Publication>,
    /// More than [`HOLD_LIMIT`] arrived: the held ones were dropped, read the history again.
    overflowed: bool,
}

struct Watcher {
    id: u64,
    tx: mpsc::Sender<Publication>,
}

/// What the broker calls back into; holds the hub weakly (the hub owns the broker).
struct HubSink(Weak<Hub>);

impl DeliverySink for HubSink {
    fn deliver(&self, publication: Publication) {
        if let Some(hub) = self.0.upgrade() {
            hub.deliver(&publication);
        }
    }
}

impl Hub {
    pub(crate) fn new(
        broker: Arc<dyn Broker>,
        middleware: Arc<Middleware>,
        streams: Streams,
    ) -> Arc<Hub> {
        let hub = Arc::new(Hub {
            channels: RwLock::new(HashMap::new()),
            broker,
            streams,
            middleware,
            op_locks: (0..OP_LOCKS).map(|_| tokio::sync::Mutex::new(())).collect(),
            next_watcher: std::sync::atomic::AtomicU64::new(1),
            delivered: std::sync::atomic::AtomicU64::new(0),
            drained: Arc::new(tokio::sync::Notify::new()),
        });
        hub.broker.attach(Arc::new(HubSink(Arc::downgrade(&hub))));
        hub
    }

    pub(crate) fn broker(&self) -> &Arc<dyn Broker> {
        &self.broker
    }

    /// Which channels keep history and presence.
    pub(crate) fn streams(&self) -> &Streams {
        &self.streams
    }

    /// Delivers one publication to every local subscriber of its channel.
    pub(crate) fn deliver(&self, publication: &Publication) {
        self.delivered
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let channels = self.channels.read();
        let Some(entry) = channels.get(publication.channel()) else {
            return;
        };
        if let Some(channel) = entry.presence_of() {
            deliver_presence(&channels, channel, publication);
            return;
        }
        for pending in entry.pending() {
            let mut held = pending.held.lock();
            if held.publications.len() >= HOLD_LIMIT {
                held.publications.clear();
                held.overflowed = true;
            }
            if !held.overflowed {
                held.publications.push(publication.clone());
            }
        }
        // Encoded once per codec: JSON as published, min-bin on the first min-bin subscriber.
        let shared = SharedFrame::new(publication.frame());
        let mut congested = false;
        if self.middleware.has_outbound() {
            for socket in &entry.sockets {
                let sent = match self.middleware.run_outbound(socket, publication) {
                    OutboundVerdict::Allow => socket.send_shared(&shared),
                    OutboundVerdict::Replace(data) => socket
                        .send_frame(replaced_frame(publication, &data))
                        .map(|()| socket.is_congested()),
                    OutboundVerdict::Block => continue,
                };
                congested |= matches!(sent, Ok(true));
            }
        } else {
            for socket in &entry.sockets {
                // A full queue closes that socket (slow consumer); others are unaffected.
                congested |= matches!(socket.send_shared(&shared), Ok(true));
            }
        }
        if congested {
            entry.congested.store(true, Ordering::Relaxed);
        }
        for watcher in entry.watchers() {
            if watcher.tx.try_send(publication.clone()).is_err() && !watcher.tx.is_closed() {
                tracing::warn!(
                    channel = publication.channel(),
                    "server-side channel stream is full; dropping a message"
                );
            }
        }
    }

    /// Waits, after a publish to `channel`, while one of the channel's subscribers on this worker
    /// has a congested outbound queue, until its writer took the backlog (or the socket closed,
    /// or it made no progress for [`PACE_STALL`]). Returns at once when nothing is congested:
    /// one lookup of the channel. No lock is held across the wait.
    pub(crate) async fn pace(&self, channel: &str) {
        loop {
            if !self.channel_congested(channel) {
                return;
            }
            // Registered before the socket is looked at: a writer taking the backlog right after
            // the look still wakes us.
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            let Some(socket) = self.congested_socket(channel) else {
                return;
            };
            if tokio::time::timeout(PACE_STALL, drained).await.is_err() && socket.is_congested() {
                tracing::debug!(socket = %socket.id(), channel, "a congested subscriber made no progress; not pacing for it");
                socket.mark_stalled();
            }
        }
    }

    /// Whether a delivery on `channel` found a congested subscriber (cheap: one lookup).
    pub(crate) fn channel_congested(&self, channel: &str) -> bool {
        self.channels
            .read()
            .get(channel)
            .is_some_and(|entry| entry.congested.load(Ordering::Relaxed))
    }

    /// A subscriber of `channel` whose queue is congested; clears the channel's mark if none is.
    fn congested_socket(&self, channel: &str) -> Option<Socket> {
        let channels = self.channels.read();
        let entry = channels.get(channel)?;
        let socket = entry.sockets.iter().find(|s| s.is_congested()).cloned();
        if socket.is_none() {
            entry.congested.store(false, Ordering::Relaxed);
        }
        socket
    }

    /// What a connection's writer notifies when it took a congested queue's backlog (see
    /// [`Hub::pace`]).
    pub(crate) fn drained_signal(&self) -> Arc<tokio::sync::Notify> {
        self.drained.clone()
    }

    /// A congested queue was taken by its writer, or a socket closed: publishers waiting in
    /// [`Hub::pace`] look again.
    pub(crate) fn notify_drained(&self) {
        self.drained.notify_waiters();
    }

    /// The frame `socket` gets for `publication` after publish-out middleware (`None`: blocked).
    /// A replaced payload keeps the publication's position.
    pub(crate) fn outbound_frame(
        &self,
        socket: &Socket,
        publication: &Publication,
    ) -> Option<Bytes> {
        if !self.middleware.has_outbound() {
            return Some(publication.frame().clone());
        }
        match self.middleware.run_outbound(socket, publication) {
            OutboundVerdict::Allow => Some(publication.frame().clone()),
            OutboundVerdict::Replace(data) => Some(replaced_frame(publication, &data)),
            OutboundVerdict::Block => None,
        }
    }

    /// Sends a replayed or held publication to a catching-up socket, through publish-out
    /// middleware.
    fn send_to(&self, socket: &Socket, publication: &Publication) {
        if let Some(frame) = self.outbound_frame(socket, publication) {
            let _ = socket.send_frame(frame);
        }
    }

    /// Adds `socket` to `channel`, making sure the broker subscription is in place first. With
    /// `catching_up`, the socket waits in the pending list (live deliveries held for it) until
    /// [`catch_up`](Self::catch_up). With `presence`, the channel's companion channel of
    /// presence events is subscribed too.
    pub(crate) async fn subscribe_socket(
        &self,
        socket: &Socket,
        channel: &Arc<str>,
        catching_up: bool,
        presence: bool,
    ) -> Result<(), BrokerError> {
        let ready = {
            let mut channels = self.channels.write();
            let entry = channels.entry(channel.clone()).or_default();
            if catching_up {
                entry.rare_mut().pending.push(Arc::new(Pending {
                    socket: socket.clone(),
                    held: Mutex::default(),
                }));
            } else {
                entry.sockets.push(socket.clone());
            }
            entry.ready
        };
        let mut result = Ok(());
        if !ready {
            result = self.ensure_broker_subscription(channel).await;
        }
        if result.is_ok() && presence {
            result = self.ensure_presence_events(channel).await;
        }
        if let Err(error) = result {
            self.unsubscribe_socket(socket, channel).await;
            return Err(error);
        }
        Ok(())
    }

    /// Sends a pending socket what it missed (`read` of the channel's history), then the held live
    /// deliveries it has not seen, then `ack(position, recovered)`, and makes it a live
    /// subscriber: the last three in one step under the write lock, so nothing interleaves.
    /// On a broker error the socket stays pending; the caller unsubscribes it.
    pub(crate) async fn catch_up(
        &self,
        socket: &Socket,
        channel: &str,
        policy: HistoryPolicy,
        mut read: HistoryRead,
        ack: impl FnOnce(&Position, bool) -> Option<Bytes>,
    ) -> Result<(), BrokerError> {
        let mut recovered = true;
        let mut last: Option<Position> = None;
        loop {
            let page = self.broker.read_history(channel, policy, read).await?;
            recovered &= page.recovered;
            for publication in &page.publications {
                if let Some(position) = publication.position()
                    && is_new(last.as_ref(), position)
                {
                    self.send_to(socket, publication);
                    last = Some(position.clone());
                }
            }
            if last
                .as_ref()
                .is_none_or(|l| l.epoch != page.position.epoch || l.offset < page.position.offset)
            {
                last = Some(page.position.clone());
            }
            let mut channels = self.channels.write();
            let Some(entry) = channels.get_mut(channel) else {
                return Ok(());
            };
            let Some(index) = entry.pending().iter().position(|p| p.socket.ptr_eq(socket)) else {
                // Unsubscribed meanwhile.
                return Ok(());
            };
            let held = std::mem::take(&mut *entry.pending()[index].held.lock());
            if held.overflowed {
                drop(channels);
                let since = last.clone().unwrap_or_else(|| page.position.clone());
                read = HistoryRead::Since(since);
                continue;
            }
            for publication in &held.publications {
                match publication.position() {
                    Some(position) if is_new(last.as_ref(), position) => {
                        self.send_to(socket, publication);
                        last = Some(position.clone());
                    }
                    Some(_) => {}
                    None => self.send_to(socket, publication),
                }
            }
            let position = last.unwrap_or(page.position);
            if let Some(frame) = ack(&position, recovered) {
                let _ = socket.send_frame(frame);
            }
            let pending = entry.rare_mut().pending.swap_remove(index);
            entry.trim();
            entry.sockets.push(pending.socket.clone());
            return Ok(());
        }
    }

    /// Removes `socket` from `channel` (and from its presence); the last local subscriber
    /// releases the broker subscription.
    pub(crate) async fn unsubscribe_socket(&self, socket: &Socket, channel: &str) {
        let (now_empty, removed) = {
            let mut channels = self.channels.write();
            let Some(entry) = channels.get_mut(channel) else {
                return;
            };
            let mut removed = true;
            if let Some(i) = entry.sockets.iter().position(|s| s.ptr_eq(socket)) {
                entry.sockets.swap_remove(i);
                if entry.sockets.len() == 1 {
                    // Back to the common case: inline again.
                    entry.sockets.shrink_to_fit();
                }
            } else if let Some(i) = entry.pending().iter().position(|p| p.socket.ptr_eq(socket)) {
                entry.rare_mut().pending.swap_remove(i);
                entry.trim();
            } else {
                removed = false;
            }
            (entry.is_empty(), removed)
        };
        if removed
            && self.streams.presence(channel)
            && let Err(error) = self.broker.presence_leave(channel, socket.id()).await
        {
            tracing::warn!(socket = %socket.id(), %channel, %error, "presence leave failed at the broker");
        }
        if now_empty {
            self.release_if_unused(channel).await;
        }
    }

    /// Subscribes the companion channel that carries `channel`'s presence events (once per
    /// worker, while `channel` has local subscribers).
    async fn ensure_presence_events(&self, channel: &Arc<str>) -> Result<(), BrokerError> {
        let companion: Arc<str> = Arc::from(presence_channel(channel));
        let ready = {
            let mut channels = self.channels.write();
            let entry = channels.entry(companion.clone()).or_default();
            entry.rare_mut().presence_of = Some(channel.clone());
            entry.ready
        };
        if ready {
            return Ok(());
        }
        self.ensure_broker_subscription(&companion).await
    }

    /// Adds a server-side watcher of `channel` with a bounded buffer.
    pub(crate) async fn watch(
        &self,
        channel: &Arc<str>,
        buffer: usize,
    ) -> Result<(u64, mpsc::Receiver<Publication>), BrokerError> {
        let id = self
            .next_watcher
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(buffer.max(1));
        let ready = {
            let mut channels = self.channels.write();
            let entry = channels.entry(channel.clone()).or_default();
            entry.rare_mut().watchers.push(Watcher { id, tx });
            entry.ready
        };
        if !ready && let Err(error) = self.ensure_broker_subscription(channel).await {
            self.unwatch(channel, id).await;
            return Err(error);
        }
        Ok((id, rx))
    }

    /// Removes a server-side watcher.
    pub(crate) async fn unwatch(&self, channel: &str, id: u64) {
        let now_empty = {
            let mut channels = self.channels.write();
            let Some(entry) = channels.get_mut(channel) else {
                return;
            };
            if let Some(rare) = &mut entry.rare {
                rare.watchers.retain(|w| w.id != id);
            }
            entry.trim();
            entry.is_empty()
        };
        if now_empty {
            self.release_if_unused(channel).await;
        }
    }

    /// Number of local subscribers (sockets and server-side watchers) of `channel`.
    pub(crate) fn subscriber_count(&self, channel: &str) -> usize {
        self.channels
            .read()
            .get(channel)
            .map_or(0, |e| e.sockets.len() + e.watchers().len())
    }

    /// Channels with at least one local subscriber.
    /// (subscriptions, channels, the `top` channels with most subscribers) for metrics.
    pub(crate) fn census(&self, top: usize) -> (u64, u64, Vec<(String, u64)>) {
        let channels = self.channels.read();
        let mut all: Vec<(&Arc<str>, u64)> = channels
            .iter()
            .map(|(name, e)| (name, e.sockets.len() as u64))
            .filter(|(_, n)| *n > 0)
            .collect();
        let subscriptions = all.iter().map(|(_, n)| n).sum();
        let count = all.len() as u64;
        all.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        let top = all
            .into_iter()
            .take(top)
            .map(|(name, n)| (name.to_string(), n))
            .collect();
        (subscriptions, count, top)
    }

    pub(crate) fn channel_names(&self) -> Vec<String> {
        self.channels.read().keys().map(|c| c.to_string()).collect()
    }

    fn op_lock(&self, channel: &str) -> &tokio::sync::Mutex<()> {
        let index = sc_protocol::hash::hash_key(channel, self.op_locks.len());
        &self.op_locks[index]
    }

    async fn ensure_broker_subscription(&self, channel: &Arc<str>) -> Result<(), BrokerError> {
        let _guard = self.op_lock(channel).lock().await;
        match self.channels.read().get(&**channel) {
            Some(entry) if !entry.ready => {}
            // Ready already (another subscriber did it), or everyone left meanwhile.
            _ => return Ok(()),
        }
        self.broker.subscribe(channel).await?;
        let abandoned = {
            let mut channels = self.channels.write();
            match channels.get_mut(&**channel) {
                Some(entry) => {
                    entry.ready = true;
                    false
                }
                None => true,
            }
        };
        if abandoned && let Err(error) = self.broker.unsubscribe(channel).await {
            tracing::warn!(%channel, %error, "failed to release an abandoned broker subscription");
        }
        Ok(())
    }

    async fn release_if_unused(&self, channel: &str) {
        let companion = {
            let _guard = self.op_lock(channel).lock().await;
            let (was_ready, companion) = {
                let mut channels = self.channels.write();
                match channels.get(channel) {
                    Some(entry) if entry.is_empty() => {
                        let was_ready = channels.remove(channel).is_some_and(|e| e.ready);
                        let companion = presence_channel(channel);
                        // The channel's presence events are no longer wanted here.
                        let released = match channels.get_mut(companion.as_str()) {
                            Some(entry) => {
                                if let Some(rare) = &mut entry.rare {
                                    rare.presence_of = None;
                                }
                                entry.trim();
                                entry.is_empty()
                            }
                            None => false,
                        };
                        (was_ready, released.then_some(companion))
                    }
                    _ => (false, None),
                }
            };
            if was_ready && let Err(error) = self.broker.unsubscribe(channel).await {
                tracing::warn!(%channel, %error, "broker unsubscribe failed");
            }
            companion
        };
        if let Some(companion) = companion {
            Box::pin(self.release_if_unused(&companion)).await;
        }
    }
}

/// Whether a publication at `position` comes after `last` (a new epoch always does).
fn is_new(last: Option<&Position>, position: &Position) -> bool {
    last.is_none_or(|last| last.epoch != position.epoch || position.offset > last.offset)
}

/// The frame of `publication` with its payload replaced by publish-out middleware; it keeps the
/// publication's position.
fn replaced_frame(publication: &Publication, data: &Json) -> Bytes {
    let replaced = Publication::new(publication.channel(), Some(data));
    let replaced = match publication.position() {
        Some(position) => replaced.with_position(position.clone()),
        None => replaced,
    };
    replaced.frame().clone()
}

/// Sends a presence event (the companion publication's data is the whole frame) to every socket
/// of `channel` but the one it is about.
fn deliver_presence(
    channels: &HashMap<Arc<str>, ChannelEntry>,
    channel: &str,
    publication: &Publication,
) {
    let (Some(entry), Some(frame)) = (channels.get(channel), publication.data()) else {
        return;
    };
    #[derive(serde::Deserialize)]
    struct Event<'a> {
        #[serde(borrow)]
        data: EventData<'a>,
    }
    #[derive(serde::Deserialize)]
    struct EventData<'a> {
        #[serde(borrow)]
        client: Client<'a>,
    }
    #[derive(serde::Deserialize)]
    struct Client<'a> {
        #[serde(borrow)]
        id: std::borrow::Cow<'a, str>,
    }
    let Ok(event) = serde_json::from_slice::<Event<'_>>(frame.as_bytes()) else {
        tracing::warn!(%channel, "malformed presence event; dropped");
        return;
    };
    let about = event.data.client.id;
    let bytes = frame.to_bytes();
    let shared = SharedFrame::new(&bytes);
    for socket in &entry.sockets {
        if socket.id() != about {
            let _ = socket.send_shared(&shared);
        }
    }
    for pending in entry.pending() {
        if pending.socket.id() != about {
            let _ = pending.socket.send_shared(&shared);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_entry_fits_one_socket_in_48_bytes() {
        // Key (16 bytes) + entry: one table slot per channel of this worker.
        assert!(
            std::mem::size_of::<ChannelEntry>() <= 48,
            "{}",
            std::mem::size_of::<ChannelEntry>()
        );
    }
}
