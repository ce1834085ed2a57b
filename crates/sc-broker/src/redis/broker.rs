//! [`RedisBroker`]: publications carried between machines by Redis pub/sub.

use std::sync::Arc;

use sc_protocol::Publication;

use super::link::{Ctl, RedisLink, RedisOptions};
use crate::error::EngineError;
use crate::{BoxFuture, Broker, BrokerError, DeliverySink};

/// Publishes and subscribes through Redis pub/sub (see the [`link`](super::link) documentation for
/// the failure behaviour).
pub struct RedisBroker {
    link: Arc<RedisLink>,
    /// This process's presence owner id (its members are removed when its lease expires).
    owner: String,
    lease: std::sync::OnceLock<()>,
}

impl std::fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBroker")
            .field("link", &self.link)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

impl RedisBroker {
    /// Connects a broker alone (see [`connect`](super::connect) for a broker and a store on one link).
    pub async fn connect(url: &str, options: RedisOptions) -> Result<RedisBroker, EngineError> {
        Ok(RedisBroker::on_link(
            RedisLink::connect(url, options).await?,
        ))
    }

    pub(super) fn on_link(link: Arc<RedisLink>) -> RedisBroker {
        RedisBroker {
            link,
            owner: crate::stream::new_epoch(),
            lease: std::sync::OnceLock::new(),
        }
    }

    /// The link this broker uses (shared with a [`RedisKv`](super::RedisKv) made by [`connect`](super::connect)).
    pub fn link(&self) -> &Arc<RedisLink> {
        &self.link
    }
}

impl Broker for RedisBroker {
    fn attach(&self, sink: Arc<dyn DeliverySink>) {
        *self.link.shared.sink.write() = Some(sink);
    }

    fn subscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(self.link.control(channel, "subscribe", Ctl::Subscribe))
    }

    fn unsubscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(self.link.control(channel, "unsubscribe", Ctl::Unsubscribe))
    }

    fn publish(&self, publication: Publication) -> BoxFuture<'_, Result<(), BrokerError>> {
        Box::pin(async move {
            let frame = publication.frame();
            let limit = self.link.options().max_message_size;
            if frame.len() > limit {
                return Err(BrokerError::TooLarge {
                    size: frame.len(),
                    limit,
                });
            }
            let key = self.link.channel_key(publication.channel());
            let command = ::redis::cmd(self.link.publish_command())
                .arg(key)
                .arg(&frame[..])
                .to_owned();
            self.link
                .with_connection("publish", |mut conn| async move {
                    command.query_async::<i64>(&mut conn).await
                })
                .await
                .map(drop)
        })
    }

    fn describe(&self) -> String {
        format!("redis {}", self.link.shared.target)
    }

    fn publish_stored(
        &self,
        publication: Publication,
        policy: crate::HistoryPolicy,
    ) -> BoxFuture<'_, Result<crate::Position, BrokerError>> {
        Box::pin(async move { super::stream::publish(&self.link, &publication, policy).await })
    }

    fn read_history<'a>(
        &'a self,
        channel: &'a str,
        policy: crate::HistoryPolicy,
        read: crate::HistoryRead,
    ) -> BoxFuture<'a, Result<crate::HistoryPage, BrokerError>> {
        Box::pin(async move { super::stream::read(&self.link, channel, policy, &read).await })
    }

    fn presence_join<'a>(
        &'a self,
        channel: &'a str,
        member: crate::PresenceMember,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        self.lease.get_or_init(|| {
            super::stream::spawn_lease_keeper(&self.link, self.owner.clone());
        });
        Box::pin(async move {
            if !self.link.is_connected() {
                return Err(self.link.unavailable());
            }
            super::stream::join(&self.link, &self.owner, channel, &member).await
        })
    }

    fn presence_leave<'a>(
        &'a self,
        channel: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            super::stream::leave(&self.link, &self.owner, channel, id)
                .await
                .map(drop)
        })
    }

    fn presence<'a>(
        &'a self,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<crate::PresenceInfo, BrokerError>> {
        Box::pin(super::stream::query(&self.link, channel))
    }

    fn is_connected(&self) -> bool {
        self.link.is_connected()
    }

    fn health(&self) -> crate::EngineHealth {
        self.link.health()
    }
}
