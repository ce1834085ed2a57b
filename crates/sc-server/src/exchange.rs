//! [`Exchange`]: publish to channels and subscribe to them from server code.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::Stream;
use sc_protocol::{Json, Publication};
use serde::Serialize;
use tokio::sync::mpsc;

use sc_broker::{HistoryPage, HistoryRead, KvCommand, KvStore, Position, PresenceInfo};

use crate::error::ExchangeError;
use crate::hub::Hub;

/// Buffered messages per server-side channel stream; when the consumer falls this far behind,
/// newer messages are dropped (and logged) rather than slowing the fan-out.
pub const CHANNEL_STREAM_BUFFER: usize = 1024;

/// The server's access to channels (SocketCluster's `exchange`): publish to every subscriber on
/// every worker, and subscribe from server code.
///
/// ```no_run
/// use futures_util::StreamExt;
/// # async fn demo(exchange: sc_server::Exchange) -> Result<(), sc_server::ExchangeError> {
/// let mut pongs = exchange.subscribe("pong").await?;
/// exchange.publish("pong", &1).await?;
/// let first = pongs.next().await.unwrap();
/// assert_eq!(first.data().unwrap().get(), "1");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Exchange {
    hub: Arc<Hub>,
    kv: Arc<dyn KvStore>,
}

impl Exchange {
    pub(crate) fn new(hub: Arc<Hub>, kv: Arc<dyn KvStore>) -> Exchange {
        Exchange { hub, kv }
    }

    /// The key/value store (SocketCluster's broker data): in-process, in the broker processes,
    /// or in the engine, depending on how the server was built.
    pub fn kv(&self) -> &Arc<dyn KvStore> {
        &self.kv
    }

    /// Runs one key/value command.
    pub async fn kv_command(&self, command: KvCommand) -> Result<Json, ExchangeError> {
        Ok(self.kv.execute(command).await?)
    }

    /// Stores `value` at `key` (a path: `&["user", "bob"]`).
    pub async fn set<T: Serialize + ?Sized>(
        &self,
        key: &[&str],
        value: &T,
    ) -> Result<(), ExchangeError> {
        let value = Json::encode(value).map_err(|e| ExchangeError::Serialize(e.to_string()))?;
        self.kv_command(KvCommand::Set {
            key: path(key),
            value,
        })
        .await
        .map(drop)
    }

    /// The value at `key`, if any.
    pub async fn get(&self, key: &[&str]) -> Result<Option<Json>, ExchangeError> {
        let value = self.kv_command(KvCommand::Get { key: path(key) }).await?;
        Ok((!value.is_null()).then_some(value))
    }

    /// Appends `value` to the list at `key`; returns its index.
    pub async fn add<T: Serialize + ?Sized>(
        &self,
        key: &[&str],
        value: &T,
    ) -> Result<u64, ExchangeError> {
        let value = Json::encode(value).map_err(|e| ExchangeError::Serialize(e.to_string()))?;
        let index = self
            .kv_command(KvCommand::Add {
                key: path(key),
                value,
            })
            .await?;
        Ok(index.parse().unwrap_or(0))
    }

    /// Number of entries at `key`.
    pub async fn count(&self, key: &[&str]) -> Result<u64, ExchangeError> {
        Ok(self
            .kv_command(KvCommand::Count { key: path(key) })
            .await?
            .parse()
            .unwrap_or(0))
    }

    /// Removes `key`; returns what was there.
    pub async fn remove(&self, key: &[&str]) -> Result<Option<Json>, ExchangeError> {
        let value = self
            .kv_command(KvCommand::Remove { key: path(key) })
            .await?;
        Ok((!value.is_null()).then_some(value))
    }

    /// Whether `key` exists.
    pub async fn has_key(&self, key: &[&str]) -> Result<bool, ExchangeError> {
        Ok(self
            .kv_command(KvCommand::HasKey { key: path(key) })
            .await?
            .get()
            == "true")
    }

    /// Deletes `key` after `seconds`.
    pub async fn expire(&self, key: &[&str], seconds: u64) -> Result<(), ExchangeError> {
        self.kv_command(KvCommand::Expire {
            keys: vec![path(key)],
            seconds,
        })
        .await
        .map(drop)
    }

    /// Publishes `data` (serialised as JSON) to `channel`. On a channel with history the result
    /// is the position the publication was given (it is in the history once this returns);
    /// otherwise `None`.
    ///
    /// ```no_run
    /// # async fn demo(exchange: sc_server::Exchange) -> Result<(), sc_server::ExchangeError> {
    /// // With the option history = [{ pattern = "room/*", size = 1000, ttl = 600 }]:
    /// let position = exchange.publish("room/lobby", &"hello").await?.unwrap();
    /// println!("stored at offset {} of epoch {}", position.offset, position.epoch);
    /// assert!(exchange.publish("pong", &1).await?.is_none());
    /// # Ok(()) }
    /// ```
    pub async fn publish<T: Serialize + ?Sized>(
        &self,
        channel: &str,
        data: &T,
    ) -> Result<Option<Position>, ExchangeError> {
        let data = Json::encode(data).map_err(|e| ExchangeError::Serialize(e.to_string()))?;
        self.publish_json(channel, Some(&data)).await
    }

    /// Publishes data that is already JSON (forwarded verbatim), or no data. Returns the
    /// position on a channel with history.
    pub async fn publish_json(
        &self,
        channel: &str,
        data: Option<&Json>,
    ) -> Result<Option<Position>, ExchangeError> {
        self.publish_encoded(Publication::new(channel, data)).await
    }

    /// Publishes an already encoded publication. Returns the position on a channel with
    /// history.
    ///
    /// Returns once the publication went out and, if a subscriber on this worker has fallen half
    /// an outbound queue behind, once that subscriber's backlog is being written (see
    /// docs/security.md, "Inbound work and backpressure"): a publishing loop runs at the pace of
    /// the subscribers that keep reading instead of getting them cut off as slow consumers.
    pub async fn publish_encoded(
        &self,
        publication: Publication,
    ) -> Result<Option<Position>, ExchangeError> {
        let channel = publication.channel_arc().clone();
        let position = match self.hub.streams().history(&channel) {
            None => {
                self.hub.broker().publish(publication).await?;
                None
            }
            Some(policy) => Some(
                self.hub
                    .broker()
                    .publish_stored(publication, policy)
                    .await?,
            ),
        };
        self.hub.pace(&channel).await;
        Ok(position)
    }

    /// Reads the history of a channel with history: everything after `since` (the page says
    /// whether that is complete, as a recovering client's `recovered`), or with `None` the
    /// retained publications. Each publication carries its [`Position`].
    ///
    /// ```no_run
    /// # async fn demo(exchange: sc_server::Exchange) -> Result<(), sc_server::ExchangeError> {
    /// let page = exchange.history("room/lobby", None).await?;
    /// for publication in &page.publications {
    ///     println!("{:?} {:?}", publication.position(), publication.data());
    /// }
    /// let newer = exchange.history("room/lobby", Some(page.position.clone())).await?;
    /// assert!(newer.recovered);
    /// # Ok(()) }
    /// ```
    pub async fn history(
        &self,
        channel: &str,
        since: Option<Position>,
    ) -> Result<HistoryPage, ExchangeError> {
        let policy = self
            .hub
            .streams()
            .history(channel)
            .ok_or_else(|| ExchangeError::NoHistory(channel.to_owned()))?;
        let read = match since {
            Some(position) => HistoryRead::Since(position),
            None => HistoryRead::Last(policy.size),
        };
        Ok(self
            .hub
            .broker()
            .read_history(channel, policy, read)
            .await?)
    }

    /// Who is in a presence channel, over every worker and instance (at most 1000 listed;
    /// `count` is exact).
    ///
    /// ```no_run
    /// # async fn demo(exchange: sc_server::Exchange) -> Result<(), sc_server::ExchangeError> {
    /// let here = exchange.presence("room/lobby").await?;
    /// println!("{} here: {:?}", here.count, here.clients.iter().map(|c| &c.user).collect::<Vec<_>>());
    /// # Ok(()) }
    /// ```
    pub async fn presence(&self, channel: &str) -> Result<PresenceInfo, ExchangeError> {
        if !self.hub.streams().presence(channel) {
            return Err(ExchangeError::NoPresence(channel.to_owned()));
        }
        Ok(self.hub.broker().presence(channel).await?)
    }

    /// Subscribes server code to `channel`; the stream yields every publication until dropped.
    pub async fn subscribe(&self, channel: &str) -> Result<ChannelStream, ExchangeError> {
        let channel: Arc<str> = Arc::from(channel);
        let (id, rx) = self.hub.watch(&channel, CHANNEL_STREAM_BUFFER).await?;
        Ok(ChannelStream {
            hub: self.hub.clone(),
            channel,
            id,
            rx,
        })
    }

    /// Number of local subscribers (sockets and server-side streams) of `channel` in this worker.
    pub fn subscriber_count(&self, channel: &str) -> usize {
        self.hub.subscriber_count(channel)
    }

    /// Channels with at least one local subscriber in this worker.
    pub fn channels(&self) -> Vec<String> {
        self.hub.channel_names()
    }

    /// A description of the broker engine behind the exchange (for logs and health checks).
    pub fn broker_description(&self) -> String {
        self.hub.broker().describe()
    }
}

fn path(key: &[&str]) -> Vec<String> {
    key.iter().map(|s| (*s).to_owned()).collect()
}

/// Publications of one channel, for server code. Dropping it unsubscribes.
pub struct ChannelStream {
    hub: Arc<Hub>,
    channel: Arc<str>,
    id: u64,
    rx: mpsc::Receiver<Publication>,
}

impl ChannelStream {
    /// The channel name.
    pub fn channel(&self) -> &str {
        &self.channel
    }
}

impl Stream for ChannelStream {
    type Item = Publication;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Publication>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for ChannelStream {
    fn drop(&mut self) {
        let (hub, channel, id) = (self.hub.clone(), self.channel.clone(), self.id);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { hub.unwatch(&channel, id).await });
        }
    }
}

impl std::fmt::Debug for ChannelStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelStream").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchange").finish_non_exhaustive()
    }
}
