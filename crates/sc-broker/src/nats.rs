//! [`NatsBroker`]: publications carried between machines by NATS core pub/sub.
//!
//! A [`NatsLink`] is one `async-nats` client connection, shared by a [`NatsBroker`] and a
//! [`NatsKv`]. Each channel the process holds is one NATS subscription on
//! `<subject prefix><encoded channel>` (default `sc.ch.…`); publications travel as their encoded
//! `#publish` frame and are rebuilt with [`Publication::from_frame`], never re-encoded.
//!
//! Channel names may contain what NATS subjects cannot (`.`, `*`, `>`, spaces, …), so each
//! channel becomes one subject token by [`encode_token`]: ASCII letters, digits, `-` and `_`
//! stay, every other byte is written `=XX` (hex), and the empty name is `=`. The encoding is
//! injective, so two channels never share a subject.
//!
//! # Failures
//!
//! - `async-nats` reconnects by itself: at once, then with a backoff doubling from 50 ms to
//!   [`NatsOptions::max_reconnect_delay`] (1 s), forever, and re-subscribes every live
//!   subscription on the new connection; callers never resubscribe. A silent network failure is
//!   detected by pings every [`NatsOptions::ping_interval`] (two unanswered pings close the
//!   connection). One warning is logged when the connection drops, one line when it is back.
//! - While disconnected, `publish` and `subscribe` fail at once with
//!   [`BrokerError::Unavailable`] instead of queueing in the client; `unsubscribe` succeeds.
//!   Publications made while down are lost (core NATS stores nothing), and so are the ones the
//!   server sent while we were gone. A publish accepted just before the drop is noticed may be
//!   lost, or delivered after the reconnect.
//! - Every operation is bounded by [`NatsOptions::op_timeout`] ([`BrokerError::Timeout`]).
//! - A frame larger than [`NatsOptions::max_message_size`] or than the server's `max_payload`
//!   (1 MiB by default) is refused with [`BrokerError::TooLarge`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::connection::State;
use async_nats::{Client, ConnectErrorKind, Event};
use futures_util::StreamExt;
use parking_lot::{Mutex, RwLock};
use sc_protocol::Publication;

use crate::engine::{EngineError, redact};
use crate::kv_nats::NatsKv;
use crate::nats_url::NatsUrl;
use crate::support::{AbortOnDrop, backoff};
use crate::{BoxFuture, Broker, BrokerError, DeliverySink};

const ENGINE: &str = "nats";

/// Settings of the NATS engine (broker and key/value store).
#[derive(Debug, Clone)]
pub struct NatsOptions {
    /// Subject prefix of channel traffic: channel `c` is published on `<prefix><encoded c>`.
    /// Default `sc.ch.`.
    pub subject_prefix: String,
    /// JetStream key/value bucket of the store. Default `sc_kv`.
    pub bucket: String,
    /// Replicas of the JetStream streams and bucket we create (key/value, history, presence);
    /// 0 picks `min(3, servers in the cluster)`: 1 on a lone server. Default 0.
    pub replicas: usize,
    /// Longest wait for any one operation. Default 5 s.
    pub op_timeout: Duration,
    /// Longest wait for a connection attempt. Default 2 s.
    pub connect_timeout: Duration,
    /// Largest publish frame (and stored key/value entry), in bytes; the server's `max_payload`
    /// (1 MiB unless configured) caps it further. Default 8 MiB.
    pub max_message_size: usize,
    /// Cap of the reconnect backoff. Default 1 s.
    pub max_reconnect_delay: Duration,
    /// How often the client pings the server to detect a dead connection. Default 1 s.
    pub ping_interval: Duration,
    /// How often the store looks for due expiries (see [`NatsKv`]). Default 500 ms.
    pub expiry_sweep_interval: Duration,
}

impl Default for NatsOptions {
    fn default() -> Self {
        NatsOptions {
            subject_prefix: "sc.ch.".to_owned(),
            bucket: "sc_kv".to_owned(),
            replicas: 0,
            op_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            max_message_size: 8 * 1024 * 1024,
            max_reconnect_delay: Duration::from_secs(1),
            ping_interval: Duration::from_secs(1),
            expiry_sweep_interval: Duration::from_millis(500),
        }
    }
}

/// Connects to the NATS server(s) at `url` (`nats://[user:pass@]host[:port]`, several
/// separated by `,`) and returns a broker and a key/value store sharing one connection. The
/// store needs JetStream on the server (`nats-server -js`).
///
/// Fails with [`EngineError::InvalidUrl`], [`EngineError::Auth`], [`EngineError::Unreachable`],
/// or [`EngineError::Setup`] (JetStream missing).
pub async fn connect(url: &str, options: NatsOptions) -> Result<(NatsBroker, NatsKv), EngineError> {
    let link = NatsLink::connect(url, options).await?;
    let kv = NatsKv::with_link(link.clone()).await?;
    Ok((NatsBroker::with_link(link), kv))
}

/// Writes `name` as one NATS subject token / key-value key segment: `[A-Za-z0-9_-]` kept, every
/// other byte as `=XX`, the empty name as `=`.
///
/// ```
/// use sc_broker::nats::encode_token;
/// assert_eq!(encode_token("news"), "news");
/// assert_eq!(encode_token("a.b c>*"), "a=2Eb=20c=3E=2A");
/// assert_eq!(encode_token(""), "=");
/// ```
pub fn encode_token(name: &str) -> String {
    if name.is_empty() {
        return "=".to_owned();
    }
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("={byte:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes of a URL's user info.
pub(crate) fn percent_decode(text: &str) -> String {
    unescape_hex(text, b'%')
}

/// Replaces every `escape` followed by two hex digits with that byte; anything else is kept.
pub(crate) fn unescape_hex(text: &str, escape: u8) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (byte, Some(decoded)) if byte == escape => {
                out.push(decoded);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One NATS client connection, shared by a [`NatsBroker`] and a [`NatsKv`].
pub struct NatsLink {
    client: Client,
    options: NatsOptions,
    /// The URL with its password redacted, for logs.
    target: String,
    /// The configured servers, `host:port`.
    servers: Vec<String>,
    /// The servers' last known state.
    nodes: Arc<crate::nats_cluster::NodeTable>,
    sink: RwLock<Option<Arc<dyn DeliverySink>>>,
}

impl NatsLink {
    /// Connects (one attempt, bounded by the connect timeout); later drops are reconnected
    /// automatically.
    pub async fn connect(
        url: &str,
        mut options: NatsOptions,
    ) -> Result<Arc<NatsLink>, EngineError> {
        let target = redact(url);
        let outage = Arc::new(OutageLog {
            target: target.clone(),
            since: Mutex::new(None),
        });
        let max_delay = options.max_reconnect_delay;
        let parsed = NatsUrl::parse(url).map_err(|reason| EngineError::InvalidUrl {
            url: target.clone(),
            reason,
        })?;
        if let Some(replicas) = parsed.replicas {
            options.replicas = replicas;
        }
        let connect_options = crate::nats_cluster::connect_options(&parsed)
            .await
            .map_err(|reason| EngineError::InvalidUrl {
                url: target.clone(),
                reason,
            })?;
        let connect_options = connect_options
            .name("socketcluster")
            .connection_timeout(options.connect_timeout)
            .request_timeout(Some(options.op_timeout))
            .ping_interval(options.ping_interval)
            .max_reconnects(None)
            // async-nats counts attempts from 1, the first one waiting nothing.
            .reconnect_delay_callback(move |attempts| {
                backoff(attempts.saturating_sub(1) as u32, max_delay)
            })
            .event_callback(move |event| {
                let outage = outage.clone();
                async move { outage.on_event(event) }
            });
        let connecting = connect_options.connect(parsed.servers.clone());
        let client = match tokio::time::timeout(options.connect_timeout * 2, connecting).await {
            Ok(Ok(client)) => client,
            Ok(Err(error)) => {
                let reason = error.to_string();
                let (engine, target) = (ENGINE, target.clone());
                return Err(match error.kind() {
                    ConnectErrorKind::ServerParse => EngineError::InvalidUrl {
                        url: target,
                        reason,
                    },
                    ConnectErrorKind::Authentication | ConnectErrorKind::AuthorizationViolation => {
                        EngineError::Auth {
                            engine,
                            target,
                            reason,
                        }
                    }
                    _ => EngineError::Unreachable {
                        engine,
                        target,
                        reason,
                    },
                });
            }
            Err(_) => {
                return Err(EngineError::Unreachable {
                    engine: ENGINE,
                    target,
                    reason: "connect timed out".to_owned(),
                });
            }
        };
        let link = Arc::new(NatsLink {
            client,
            options,
            target,
            servers: parsed.addrs(),
            nodes: Arc::default(),
            sink: RwLock::new(None),
        });
        tokio::spawn(crate::nats_cluster::probe_peers(
            Arc::downgrade(&link),
            link.nodes.clone(),
        ));
        Ok(link)
    }

    /// Whether the client is connected right now.
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == State::Connected
    }

    /// The options the link was made with.
    pub fn options(&self) -> &NatsOptions {
        &self.options
    }

    /// The URL, password redacted.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The servers of the URL, `host:port`.
    pub fn servers(&self) -> &[String] {
        &self.servers
    }

    /// Every server we know of and whether it is up (see [`crate::nats_cluster`]).
    pub fn engine_health(&self) -> crate::EngineHealth {
        self.nodes.health(self)
    }

    /// Replicas of the JetStream streams and buckets we create (see [`NatsOptions::replicas`]).
    pub fn replicas(&self) -> usize {
        crate::nats_cluster::replicas(self)
    }

    pub(crate) fn unavailable(&self) -> BrokerError {
        BrokerError::Unavailable(format!("nats at {} is not connected", self.target))
    }

    /// Fails at once while disconnected.
    pub(crate) fn ensure_connected(&self) -> Result<(), BrokerError> {
        if self.is_connected() {
            Ok(())
        } else {
            Err(self.unavailable())
        }
    }

    /// The largest payload we send: our limit, capped by the server's.
    pub(crate) fn payload_limit(&self) -> usize {
        self.options
            .max_message_size
            .min(self.client.server_info().max_payload)
    }

    fn subject(&self, channel: &str) -> String {
        format!("{}{}", self.options.subject_prefix, encode_token(channel))
    }

    /// Bounds `future` by the operation timeout.
    pub(crate) async fn bounded<T>(
        &self,
        action: &'static str,
        future: impl std::future::Future<Output = T>,
    ) -> Result<T, BrokerError> {
        tokio::time::timeout(self.options.op_timeout, future)
            .await
            .map_err(|_| BrokerError::Timeout { action })
    }
}

/// Logs one line when the connection drops and one when it is back.
struct OutageLog {
    target: String,
    since: Mutex<Option<Instant>>,
}

impl OutageLog {
    fn on_event(&self, event: Event) {
        match event {
            Event::Disconnected => {
                let mut since = self.since.lock();
                if since.is_none() {
                    *since = Some(Instant::now());
                    tracing::warn!(
                        engine = ENGINE,
                        target = %self.target,
                        "engine connection lost; publish and subscribe fail with Unavailable until it is back, reconnecting"
                    );
                }
            }
            Event::Connected => {
                if let Some(since) = self.since.lock().take() {
                    tracing::info!(
                        engine = ENGINE,
                        target = %self.target,
                        downtime_ms = since.elapsed().as_millis() as u64,
                        "engine connection restored; channel subscriptions restored"
                    );
                }
            }
            Event::SlowConsumer(sid) => {
                tracing::debug!(
                    engine = ENGINE,
                    sid,
                    "subscription fell behind; the client dropped messages"
                );
            }
            Event::ServerError(error) => tracing::debug!(engine = ENGINE, %error, "server error"),
            other => tracing::debug!(engine = ENGINE, event = %other, "client event"),
        }
    }
}

/// Publishes and subscribes through NATS (see the [module](self) documentation for the failure
/// behaviour).
pub struct NatsBroker {
    link: Arc<NatsLink>,
    /// One forwarding task per held channel; dropping it (abort) drops the NATS subscription.
    channels: Mutex<HashMap<String, AbortOnDrop>>,
    /// History and presence in JetStream.
    streams: Arc<crate::stream_nats::NatsStreams>,
}

impl NatsBroker {
    /// Connects a broker alone (see [`connect`] for a broker and a store on one connection).
    pub async fn connect(url: &str, options: NatsOptions) -> Result<NatsBroker, EngineError> {
        Ok(NatsBroker::with_link(
            NatsLink::connect(url, options).await?,
        ))
    }

    /// A broker on an existing link.
    pub fn with_link(link: Arc<NatsLink>) -> NatsBroker {
        NatsBroker {
            streams: Arc::new(crate::stream_nats::NatsStreams::new(link.clone())),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_safe_and_injective() {
        let names = [
            "news", "a.b", "a=2Eb", "", "=", "*", ">", "a b", "ü", "user/123", "x_y-z",
        ];
        let tokens: Vec<String> = names.iter().map(|n| encode_token(n)).collect();
        for token in &tokens {
            assert!(!token.is_empty());
            assert!(
                token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_=".contains(&b)),
                "{token}"
            );
        }
        let unique: std::collections::HashSet<&String> = tokens.iter().collect();
        assert_eq!(unique.len(), names.len());
        assert_eq!(encode_token("ü"), "=C3=BC");
    }

    #[test]
    fn decodes_user_info() {
        assert_eq!(percent_decode("p%40ss%3Aw"), "p@ss:w");
        assert_eq!(percent_decode("plain%"), "plain%");
    }
}
