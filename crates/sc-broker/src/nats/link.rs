//! [`NatsLink`]: one NATS client connection, shared by the NATS broker, key/value store and
//! streams; [`NatsOptions`]; and [`encode_token`], channel names as subject tokens.
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

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::connection::State;
use async_nats::{Client, ConnectErrorKind, Event};
use parking_lot::{Mutex, RwLock};

use crate::error::EngineError;
use crate::nats::url::NatsUrl;
use crate::support::reconnect_backoff;
use crate::url::redact;
use crate::{BrokerError, DeliverySink};

pub(super) const ENGINE: &str = "nats";

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
    /// How often the store looks for due expiries (see [`NatsKv`](super::NatsKv)). Default 500 ms.
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

/// One NATS client connection, shared by a [`NatsBroker`](super::NatsBroker) and a [`NatsKv`](super::NatsKv).
pub struct NatsLink {
    client: Client,
    options: NatsOptions,
    /// The URL with its password redacted, for logs.
    pub(super) target: String,
    /// The configured servers, `host:port`.
    servers: Vec<String>,
    /// The servers' last known state.
    nodes: Arc<crate::nats::nodes::NodeTable>,
    pub(super) sink: RwLock<Option<Arc<dyn DeliverySink>>>,
}

impl std::fmt::Debug for NatsLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsLink")
            .field("target", &self.target)
            .field("servers", &self.servers)
            .finish_non_exhaustive()
    }
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
        let backoff = reconnect_backoff(options.max_reconnect_delay);
        let parsed = NatsUrl::parse(url).map_err(|reason| EngineError::InvalidUrl {
            url: target.clone(),
            reason,
        })?;
        if let Some(replicas) = parsed.replicas {
            options.replicas = replicas;
        }
        let connect_options =
            crate::nats::nodes::connect_options(&parsed)
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
                backoff.delay(u32::try_from(attempts.saturating_sub(1)).unwrap_or(u32::MAX))
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
        tokio::spawn(crate::nats::nodes::probe_peers(
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

    /// Every server we know of and whether it is up (see [`crate::nats::nodes`]).
    pub fn engine_health(&self) -> crate::EngineHealth {
        self.nodes.health(self)
    }

    /// Replicas of the JetStream streams and buckets we create (see [`NatsOptions::replicas`]).
    pub fn replicas(&self) -> usize {
        crate::nats::nodes::replicas(self)
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

    pub(super) fn subject(&self, channel: &str) -> String {
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
}
