//! [`NatsBroker`]: publications carried between machines by NATS core pub/sub.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::StreamExt;
use parking_lot::Mutex;
use sc_protocol::Publication;

use super::link::{ENGINE, NatsLink, NatsOptions};
use crate::error::EngineError;
use crate::support::AbortOnDrop;
use crate::{BoxFuture, Broker, BrokerError, DeliverySink};

/// Publishes and subscribes through NATS (see the [`link`](super::link) documentation for the failure
/// behaviour).
pub struct NatsBroker {
    link: Arc<NatsLink>,
    /// One forwarding task per held channel; dropping it (abort) drops the NATS subscription.
    channels: Mutex<HashMap<String, AbortOnDrop>>,
    /// History and presence in JetStream.
    streams: Arc<super::stream::NatsStreams>,
}

impl NatsBroker {
    /// Connects a broker alone (see [`connect`](super::connect) for a broker and a store on one connection).
    pub async fn connect(url: &str, options: NatsOptions) -> Result<NatsBroker, EngineError> {
        Ok(NatsBroker::with_link(
            NatsLink::connect(url, options).await?,
        ))
    }

    /// A broker on an existing link.
    pub fn with_link(link: Arc<NatsLink>) -> NatsBroker {
        NatsBroker {
            streams: Arc::new(super::stream::NatsStreams::new(link.clone())),
            link,
            channels: Mutex::new(HashMap::new()),
        }
    }

    /// The link this broker uses.
    pub fn link(&self) -> &Arc<NatsLink> {
        &self.link
    }
}

/// Hands every message of one subscription to the attached sink.
async fn forward(mut subscriber: async_nats::Subscriber, link: Arc<NatsLink>) {
    while let Some(message) = subscriber.next().await {
        match Publication::from_frame(message.payload) {
            Ok(publication) => {
                let sink = link.sink.read().clone();
                if let Some(sink) = sink {
                    sink.deliver(publication);
                }
            }
            Err(_) => {
                tracing::debug!(engine = ENGINE, subject = %message.subject, "ignored a message that is not a #publish frame")
            }
        }
    }
}

impl Broker for NatsBroker {
    fn attach(&self, sink: Arc<dyn DeliverySink>) {
        *self.link.sink.write() = Some(sink);
    }

    fn subscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            self.link.ensure_connected()?;
            if self.channels.lock().contains_key(channel) {
                return Ok(());
            }
            let client = self.link.client();
            let subscriber = self
                .link
                .bounded("subscribe", client.subscribe(self.link.subject(channel)))
                .await?
                .map_err(|e| BrokerError::Unavailable(format!("nats subscribe: {e}")))?;
            // Wait for the server to have the subscription: publications made after we return
            // must reach us. `flush` only writes the bytes out; a request nobody answers is a
            // round trip through the server, which handles our connection's operations in
            // order, so its "no responders" reply means the SUB was processed. On failure the
            // subscriber is dropped, which unsubscribes.
            let probe = client.request(
                format!("_sc_probe.{}", client.new_inbox()),
                bytes::Bytes::new(),
            );
            match self.link.bounded("subscribe", probe).await? {
                Ok(_) => {}
                Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {}
                Err(e) => return Err(BrokerError::Unavailable(format!("nats subscribe: {e}"))),
            }
            let task = tokio::spawn(forward(subscriber, self.link.clone()));
            self.channels
                .lock()
                .insert(channel.to_owned(), AbortOnDrop(task));
            Ok(())
        })
    }

    fn unsubscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            let task = self.channels.lock().remove(channel);
            if let Some(mut task) = task {
                task.0.abort();
                // Wait until the task has stopped, so nothing is delivered after we return.
                let _ = self.link.bounded("unsubscribe", &mut task.0).await;
            }
            Ok(())
        })
    }

    fn publish(&self, publication: Publication) -> BoxFuture<'_, Result<(), BrokerError>> {
        Box::pin(async move {
            let frame = publication.frame();
            let limit = self.link.payload_limit();
            if frame.len() > limit {
                return Err(BrokerError::TooLarge {
                    size: frame.len(),
                    limit,
                });
            }
            self.link.ensure_connected()?;
            let subject = self.link.subject(publication.channel());
            self.link
                .bounded(
                    "publish",
                    self.link.client().publish(subject, frame.clone()),
                )
                .await?
                .map_err(|e| match e.kind() {
                    async_nats::client::PublishErrorKind::MaxPayloadExceeded => {
                        BrokerError::TooLarge {
                            size: frame.len(),
                            limit,
                        }
                    }
                    _ => BrokerError::Unavailable(format!("nats publish: {e}")),
                })
        })
    }

    fn describe(&self) -> String {
        format!("nats {}", self.link.target)
    }

    fn health(&self) -> crate::EngineHealth {
        self.link.engine_health()
    }

    fn is_connected(&self) -> bool {
        self.link.is_connected()
    }

    fn publish_stored(
        &self,
        publication: Publication,
        policy: crate::HistoryPolicy,
    ) -> BoxFuture<'_, Result<crate::Position, BrokerError>> {
        Box::pin(async move { self.streams.publish(&publication, policy).await })
    }

    fn read_history<'a>(
        &'a self,
        channel: &'a str,
        policy: crate::HistoryPolicy,
        read: crate::HistoryRead,
    ) -> BoxFuture<'a, Result<crate::HistoryPage, BrokerError>> {
        Box::pin(async move { self.streams.read(channel, policy, &read).await })
    }

    fn presence_join<'a>(
        &'a self,
        channel: &'a str,
        member: crate::PresenceMember,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        self.streams.start_lease();
        Box::pin(async move { self.streams.join(channel, &member).await })
    }

    fn presence_leave<'a>(
        &'a self,
        channel: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move { self.streams.leave(channel, id).await })
    }

    fn presence<'a>(
        &'a self,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<crate::PresenceInfo, BrokerError>> {
        Box::pin(async move { self.streams.query(channel).await })
    }
}
