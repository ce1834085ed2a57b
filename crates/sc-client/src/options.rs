//! [`ClientOptions`]: the client's settings, with the names and defaults of the reference
//! `socketcluster-client` (docs/protocol.md §13.4).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use sc_protocol::Backoff;
pub use sc_protocol::{Codec, ProtocolVersion};

use crate::error::ClientError;
use crate::token_store::{MemoryTokenStore, TokenStore};

/// Upper bound for buffer sizes: keeps a typo from reserving gigabytes up front.
const MAX_BUFFER: usize = 1 << 20;

/// Client settings. Every field has the reference client's default (see [`Default`]).
///
/// ```
/// use std::time::Duration;
/// use sc_client::{ClientOptions, ProtocolVersion};
///
/// let options = ClientOptions {
///     ack_timeout: Duration::from_secs(2),
///     protocol_version: ProtocolVersion::V1,
///     ..ClientOptions::default()
/// };
/// assert_eq!(options.connect_timeout, Duration::from_secs(20));
/// ```
#[derive(Clone)]
pub struct ClientOptions {
    /// `ackTimeout` (10 s): how long an `invoke` waits for its response, and how long an event
    /// emitted while disconnected may wait in the outbound queue. Also the handshake timeout
    /// (close code 4003).
    pub ack_timeout: Duration,
    /// `connectTimeout` (20 s): how long opening the WebSocket may take (close code 4007). Also
    /// the ping timeout used between WebSocket open and the handshake response.
    pub connect_timeout: Duration,
    /// `autoConnect` (true): start connecting as soon as the client is created. With `false`
    /// the client stays closed until [`Client::reconnect`](crate::Client::reconnect) or the first
    /// emit.
    pub auto_connect: bool,
    /// `autoReconnect` (true): reconnect after a close, following docs/protocol.md §15.1.
    pub auto_reconnect: bool,
    /// `autoReconnectOptions`: the backoff schedule.
    pub auto_reconnect_options: AutoReconnectOptions,
    /// `autoSubscribeOnConnect` (true): re-subscribe pending channels right after each
    /// handshake. With `false`, call
    /// [`Client::process_pending_subscriptions`](crate::Client::process_pending_subscriptions).
    pub auto_subscribe_on_connect: bool,
    /// `protocolVersion` (2): which heartbeat the client answers. `V1` answers `#1` with `#2`,
    /// `V2` answers the empty frame with the empty frame, `Auto` answers both.
    pub protocol_version: ProtocolVersion,
    /// `pingTimeoutDisabled` (false): never close with 4000 for lack of server pings.
    pub ping_timeout_disabled: bool,
    /// `query`: extra query parameters for the connection URL (`?key=value&…`, form-encoded;
    /// repeat a key to send an array).
    pub query: Vec<(String, String)>,
    /// Where the signed auth token lives between connections (in memory by default).
    pub token_store: Arc<dyn TokenStore>,
    /// Capacity of each [`Channel`](crate::Channel) handle's message buffer (1024). When a
    /// consumer falls behind, new messages for that handle are dropped (and counted).
    pub channel_buffer: usize,
    /// Capacity of each [`Receiver`](crate::Receiver)'s buffer (1024); same overflow policy as
    /// channels.
    pub receiver_buffer: usize,
    /// Capacity of the [`Events`](crate::Events) broadcast (256). A lagging events stream skips
    /// the oldest events.
    pub event_buffer: usize,
    /// Largest inbound WebSocket message accepted, in bytes (100 MiB, the `ws` default). A
    /// bigger message closes the connection with 1009 (and the client reconnects).
    pub max_payload: usize,
    /// `codecEngine`: [`Codec::Json`] (sc-formatter, text frames) or [`Codec::MinBin`]
    /// (sc-codec-min-bin, binary frames). The server must speak the same (or run `codec auto`).
    pub codec: Codec,
    /// `channelPrefix`: prepended to every channel name on the wire (subscribe, unsubscribe,
    /// publish) and removed from the names the server sends back, so that several apps can
    /// share one server's channel namespace.
    pub channel_prefix: Option<String>,
}

/// `autoReconnectOptions`: the reconnect backoff (docs/protocol.md §15.1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AutoReconnectOptions {
    /// `initialDelay` (10 s): the base delay of the first attempt.
    pub initial_delay: Duration,
    /// `randomness` (10 s): up to this much is added at random to the base delay.
    pub randomness: Duration,
    /// `multiplier` (1.5): each further attempt multiplies the delay by this factor.
    pub multiplier: f64,
    /// `maxDelay` (60 s): no delay is ever longer.
    pub max_delay: Duration,
}

impl AutoReconnectOptions {
    /// These options as the retry policy the client's reconnect schedule follows (no jitter: the
    /// randomness is added to the base delay, as the reference client does).
    ///
    /// ```
    /// use std::time::Duration;
    /// use sc_client::AutoReconnectOptions;
    ///
    /// let policy = AutoReconnectOptions::default().backoff();
    /// assert_eq!(policy.delay_with(1, 0.0), Duration::from_millis(15_000));
    /// ```
    pub fn backoff(&self) -> Backoff {
        Backoff {
            randomness: self.randomness,
            ..Backoff::new(self.initial_delay, self.multiplier, self.max_delay)
        }
    }
}

impl Default for AutoReconnectOptions {
    fn default() -> Self {
        AutoReconnectOptions {
            initial_delay: Duration::from_millis(10_000),
            randomness: Duration::from_millis(10_000),
            multiplier: 1.5,
            max_delay: Duration::from_millis(60_000),
        }
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            ack_timeout: Duration::from_millis(10_000),
            connect_timeout: Duration::from_millis(20_000),
            auto_connect: true,
            auto_reconnect: true,
            auto_reconnect_options: AutoReconnectOptions::default(),
            auto_subscribe_on_connect: true,
            protocol_version: ProtocolVersion::V2,
            ping_timeout_disabled: false,
            query: Vec::new(),
            token_store: Arc::new(MemoryTokenStore::new()),
            channel_buffer: 1024,
            receiver_buffer: 1024,
            event_buffer: 256,
            max_payload: 100 * 1024 * 1024,
            codec: Codec::Json,
            channel_prefix: None,
        }
    }
}

impl ClientOptions {
    /// A channel's name on the wire (`channelPrefix` + name).
    pub(crate) fn decorate<'a>(&self, channel: &'a str) -> std::borrow::Cow<'a, str> {
        match &self.channel_prefix {
            Some(prefix) => format!("{prefix}{channel}").into(),
            None => channel.into(),
        }
    }

    /// A channel's name as the application knows it (the wire name without `channelPrefix`).
    pub(crate) fn undecorate<'a>(&self, channel: &'a str) -> &'a str {
        match &self.channel_prefix {
            Some(prefix) => channel.strip_prefix(prefix.as_str()).unwrap_or(channel),
            None => channel,
        }
    }

    /// Checks the values that would otherwise make the client misbehave.
    pub(crate) fn validate(&self) -> Result<(), ClientError> {
        let bad = |what: &str| Err(ClientError::InvalidOptions(what.to_owned()));
        for (name, value) in [
            ("channel_buffer", self.channel_buffer),
            ("receiver_buffer", self.receiver_buffer),
            ("event_buffer", self.event_buffer),
        ] {
            if value == 0 || value > MAX_BUFFER {
                return Err(ClientError::InvalidOptions(format!(
                    "{name} must be between 1 and {MAX_BUFFER}"
                )));
            }
        }
        if self.max_payload == 0 {
            return bad("max_payload must be positive");
        }
        let multiplier = self.auto_reconnect_options.multiplier;
        if !multiplier.is_finite() || multiplier < 0.0 {
            return bad("auto_reconnect_options.multiplier must be a finite number >= 0");
        }
        Ok(())
    }

    /// Whether a heartbeat of protocol v1 (`#1`) is answered.
    pub(crate) fn answers_v1_ping(&self) -> bool {
        matches!(
            self.protocol_version,
            ProtocolVersion::V1 | ProtocolVersion::Auto
        )
    }

    /// Whether a heartbeat of protocol v2 (the empty frame) is answered.
    pub(crate) fn answers_v2_ping(&self) -> bool {
        matches!(
            self.protocol_version,
            ProtocolVersion::V2 | ProtocolVersion::Auto
        )
    }
}

impl fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOptions")
            .field("ack_timeout", &self.ack_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("auto_connect", &self.auto_connect)
            .field("auto_reconnect", &self.auto_reconnect)
            .field("auto_reconnect_options", &self.auto_reconnect_options)
            .field("auto_subscribe_on_connect", &self.auto_subscribe_on_connect)
            .field("protocol_version", &self.protocol_version)
            .field("ping_timeout_disabled", &self.ping_timeout_disabled)
            .field("query", &self.query)
            .field("channel_buffer", &self.channel_buffer)
            .field("receiver_buffer", &self.receiver_buffer)
            .field("event_buffer", &self.event_buffer)
            .field("max_payload", &self.max_payload)
            .field("codec", &self.codec)
            .field("channel_prefix", &self.channel_prefix)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_reference_client() {
        let o = ClientOptions::default();
        assert_eq!(o.ack_timeout, Duration::from_secs(10));
        assert_eq!(o.connect_timeout, Duration::from_secs(20));
        assert!(o.auto_connect && o.auto_reconnect && o.auto_subscribe_on_connect);
        assert_eq!(o.protocol_version, ProtocolVersion::V2);
        let r = o.auto_reconnect_options;
        assert_eq!(
            (r.initial_delay, r.randomness, r.multiplier, r.max_delay),
            (
                Duration::from_secs(10),
                Duration::from_secs(10),
                1.5,
                Duration::from_secs(60)
            )
        );
        assert!(o.validate().is_ok());
    }

    #[test]
    fn rejects_unusable_values() {
        let o = ClientOptions {
            channel_buffer: 0,
            ..ClientOptions::default()
        };
        assert!(matches!(o.validate(), Err(ClientError::InvalidOptions(_))));
        let mut o = ClientOptions::default();
        o.auto_reconnect_options.multiplier = f64::NAN;
        assert!(o.validate().is_err());
    }
}
