//! The worker's channel table: channel → local subscribers, one broker subscription per channel.
//!
//! Fan-out takes the table's read lock, clones the publication's shared frame into each
//! subscriber's queue and releases the lock: no await, no allocation per subscriber (beyond the
//! queue's amortised growth), never a wait on a slow socket.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use parking_lot::RwLock;
use sc_broker::{Broker, BrokerError, DeliverySink};
use sc_protocol::Publication;
use tokio::sync::mpsc;

use crate::middleware::{Middleware, OutboundVerdict};
use crate::socket::Socket;

/// Broker operations for one channel run one at a time; channels share these locks by hash.
const OP_LOCKS: usize = 64;

pub(crate) struct Hub {
    channels: RwLock<HashMap<Arc<str>, ChannelEntry>>,
    broker: Arc<dyn Broker>,
    middleware: Arc<Middleware>,
    op_locks: Box<[tokio::sync::Mutex<()>]>,
    next_watcher: std::sync::atomic::AtomicU64,
    /// Publications delivered here (metrics).
    pub(crate) delivered: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct ChannelEntry {
    sockets: Vec<Socket>,
    watchers: Vec<Watcher>,
    /// The broker subscription is in place.
    ready: bool,
}

impl ChannelEntry {
    fn is_empty(&self) -> bool {
        self.sockets.is_empty() && self.watchers.is_empty()
    }
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
    pub(crate) fn new(broker: Arc<dyn Broker>, middleware: Arc<Middleware>) -> Arc<Hub> {
        let hub = Arc::new(Hub {
            channels: RwLock::new(HashMap::new()),
            broker,
            middleware,
            op_locks: (0..OP_LOCKS).map(|_| tokio::sync::Mutex::new(())).collect(),
            next_watcher: std::sync::atomic::AtomicU64::new(1),
            delivered: std::sync::atomic::AtomicU64::new(0),
        });
        hub.broker.attach(Arc::new(HubSink(Arc::downgrade(&hub))));
        hub
    }

    pub(crate) fn broker(&self) -> &Arc<dyn Broker> {
        &self.broker
    }

    /// Delivers one publication to every local subscriber of its channel.
    pub(crate) fn deliver(&self, publication: &Publication) {
        self.delivered
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let channels = self.channels.read();
        let Some(entry) = channels.get(publication.channel()) else {
            return;
        };
        if self.middleware.has_outbound() {
            for socket in &entry.sockets {
                let frame = match self.middleware.run_outbound(socket, publication) {
                    OutboundVerdict::Allow => publication.frame().clone(),
                    OutboundVerdict::Replace(data) => {
                        Publication::new(publication.channel(), Some(&data))
                            .frame()
                            .clone()
                    }
                    OutboundVerdict::Block => continue,
                };
                let _ = socket.send_frame(frame);
            }
        } else {
            for socket in &entry.sockets {
                // A full queue closes that socket (slow consumer); others are unaffected.
                let _ = socket.send_frame(publication.frame().clone());
            }
        }
        for watcher in &entry.watchers {
            if watcher.tx.try_send(publication.clone()).is_err() && !watcher.tx.is_closed() {
                tracing::warn!(
                    channel = publication.channel(),
                    "server-side channel stream is full; dropping a message"
                );
            }
        }
    }

    /// Adds `socket` to `channel`, making sure the broker subscription is in place first.
    pub(crate) async fn subscribe_socket(
        &self,
        socket: &Socket,
        channel: &Arc<str>,
    ) -> Result<(), BrokerError> {
        let ready = {
            let mut channels = self.channels.write();
            let entry = channels.entry(channel.clone()).or_default();
            entry.sockets.push(socket.clone());
            entry.ready
        };
        if ready {
            return Ok(());
        }
        match self.ensure_broker_subscription(channel).await {
            Ok(()) => Ok(()),
            Err(error) => {
                self.unsubscribe_socket(socket, channel).await;
                Err(error)
            }
        }
    }

    /// Removes `socket` from `channel`; the last local subscriber releases the broker subscription.
    pub(crate) async fn unsubscribe_socket(&self, socket: &Socket, channel: &str) {
        let now_empty = {
            let mut channels = self.channels.write();
            let Some(entry) = channels.get_mut(channel) else {
                return;
            };
            if let Some(i) = entry.sockets.iter().position(|s| s.ptr_eq(socket)) {
                entry.sockets.swap_remove(i);
            }
            entry.is_empty()
        };
        if now_empty {
            self.release_if_unused(channel).await;
        }
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
            entry.watchers.push(Watcher { id, tx });
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
            entry.watchers.retain(|w| w.id != id);
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
            .map_or(0, |e| e.sockets.len() + e.watchers.len())
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
        let _guard = self.op_lock(channel).lock().await;
        let was_ready = {
            let mut channels = self.channels.write();
            match channels.get(channel) {
                Some(entry) if entry.is_empty() => {
                    channels.remove(channel).is_some_and(|e| e.ready)
                }
                _ => false,
            }
        };
        if was_ready && let Err(error) = self.broker.unsubscribe(channel).await {
            tracing::warn!(%channel, %error, "broker unsubscribe failed");
        }
    }
}
