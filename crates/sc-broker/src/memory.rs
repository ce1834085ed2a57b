//! [`MemoryBroker`]: the in-process engine used when a worker runs alone.

use std::collections::HashSet;
use std::sync::Arc;

use parking_lot::RwLock;
use sc_protocol::Publication;

use crate::{BoxFuture, Broker, BrokerError, DeliverySink};

/// Delivers publications straight back to the attached sink, in the publisher's call.
///
/// There is nothing to lose and nothing to reconnect: every operation succeeds at once.
#[derive(Default)]
pub struct MemoryBroker {
    sink: RwLock<Option<Arc<dyn DeliverySink>>>,
    subscribed: RwLock<HashSet<Arc<str>>>,
}

impl MemoryBroker {
    /// A broker with no sink attached yet.
    pub fn new() -> MemoryBroker {
        MemoryBroker::default()
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
