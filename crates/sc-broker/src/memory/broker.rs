//! [`MemoryBroker`]: the in-process engine used when a worker runs alone.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use parking_lot::RwLock;
use sc_protocol::Publication;

use crate::memory::stream::{MemoryHistory, MemoryPresence};
use crate::stream::{
    HistoryPage, HistoryPolicy, HistoryRead, Position, PresenceChange, PresenceInfo,
    PresenceMember, presence_event,
};
use crate::{BoxFuture, Broker, BrokerError, DeliverySink};

/// Delivers publications straight back to the attached sink, in the publisher's call.
///
/// There is nothing to lose and nothing to reconnect: every operation succeeds at once. History
/// and presence live in this process ([`MemoryHistory`], [`MemoryPresence`]); the history's
/// epochs last as long as the broker.
#[derive(Default)]
pub struct MemoryBroker {
    sink: RwLock<Option<Arc<dyn DeliverySink>>>,
    subscribed: Arc<RwLock<HashSet<Arc<str>>>>,
    history: Arc<MemoryHistory>,
    presence: MemoryPresence,
    sweeper: OnceLock<()>,
}

impl MemoryBroker {
    /// A broker with no sink attached yet.
    pub fn new() -> MemoryBroker {
        MemoryBroker::default()
    }

    /// The history store (for metrics and tests: [`MemoryHistory::channel_count`]).
    pub fn history(&self) -> &MemoryHistory {
        &self.history
    }

    fn deliver(&self, publication: &Publication) {
        if self.subscribed.read().contains(publication.channel()) {
            let sink = self.sink.read().clone();
            if let Some(sink) = sink {
                sink.deliver(publication.clone());
            }
        }
    }

    fn start_sweeper(&self) {
        self.sweeper.get_or_init(|| {
            let subscribed = self.subscribed.clone();
            self.history.spawn_sweeper(Arc::new(move |channel: &str| {
                subscribed.read().contains(channel)
            }));
        });
    }
}

impl Broker for MemoryBroker {
    fn attach(&self, sink: Arc<dyn DeliverySink>) {
        *self.sink.write() = Some(sink);
    }

    fn subscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), BrokerError>> {
        self.subscribed.write().insert(Arc::from(channel));
        Box::pin(std::future::ready(Ok(())))
    }

    fn unsubscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), BrokerError>> {
        self.subscribed.write().remove(channel);
        Box::pin(std::future::ready(Ok(())))
    }

    fn publish(&self, publication: Publication) -> BoxFuture<'_, Result<(), BrokerError>> {
        if self.subscribed.read().contains(publication.channel()) {
            let sink = self.sink.read().clone();
            if let Some(sink) = sink {
                sink.deliver(publication);
            }
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn describe(&self) -> String {
        "memory".to_owned()
    }

    fn publish_stored(
        &self,
        publication: Publication,
        policy: HistoryPolicy,
    ) -> BoxFuture<'_, Result<Position, BrokerError>> {
        self.start_sweeper();
        let position = self
            .history
            .append(&publication, policy, |placed| self.deliver(placed));
        Box::pin(std::future::ready(Ok(position)))
    }

    fn read_history<'a>(
        &'a self,
        channel: &'a str,
        policy: HistoryPolicy,
        read: HistoryRead,
    ) -> BoxFuture<'a, Result<HistoryPage, BrokerError>> {
        self.start_sweeper();
        Box::pin(std::future::ready(Ok(self
            .history
            .read(channel, policy, &read))))
    }

    fn presence_join<'a>(
        &'a self,
        channel: &'a str,
        member: PresenceMember,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        if self.presence.join(channel, member.clone(), 0) {
            self.deliver(&presence_event(PresenceChange::Join, channel, &member));
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn presence_leave<'a>(
        &'a self,
        channel: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        if let Some(member) = self.presence.leave(channel, id) {
            self.deliver(&presence_event(PresenceChange::Leave, channel, &member));
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn presence<'a>(
        &'a self,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<PresenceInfo, BrokerError>> {
        Box::pin(std::future::ready(Ok(self.presence.query(channel))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;

    #[derive(Default)]
    struct Collect(Mutex<Vec<String>>);
    impl DeliverySink for Collect {
        fn deliver(&self, publication: Publication) {
            self.0.lock().push(publication.channel().to_owned());
        }
    }

    #[tokio::test]
    async fn delivers_only_subscribed_channels() {
        let broker = MemoryBroker::new();
        let sink = Arc::new(Collect::default());
        broker.attach(sink.clone());
        broker.subscribe("a").await.unwrap();
        broker.publish(Publication::new("a", None)).await.unwrap();
        broker.publish(Publication::new("b", None)).await.unwrap();
        broker.unsubscribe("a").await.unwrap();
        broker.publish(Publication::new("a", None)).await.unwrap();
        assert_eq!(*sink.0.lock(), vec!["a".to_owned()]);
    }
}
