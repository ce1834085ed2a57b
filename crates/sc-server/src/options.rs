//! [`ServerOptions`]: the server's settings, with SocketCluster's option names and defaults.

use std::time::Duration;

use sc_protocol::{CodecOption, ProtocolVersion};
use serde::{Deserialize, Serialize};

/// Settings of one realtime server (docs/protocol.md §13). Field names serialise in SocketCluster's
/// camelCase (`pingInterval`, `socketChannelLimit`, …), so a config file reads like the reference's
/// options object. Durations are in milliseconds, as in SocketCluster.
///
/// ```
/// let options = sc_server::ServerOptions { ping_interval: 2000, ..Default::default() };
/// assert_eq!(options.path, "/socketcluster/");
/// assert_eq!(options.socket_channel_limit, Some(1000));
/// options.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServerOptions {
    /// URL path of the WebSocket endpoint; matched exactly (query ignored).
    pub path: String,
    /// Heartbeat dialect: `1`, `2`, or `auto` (detect per connection; serves 14.x and 15+ clients).
    pub protocol_version: ProtocolVersion,
    /// Wire codec: `json` (sc-formatter), `min-bin` (sc-codec-min-bin), or `auto` (each
    /// connection's codec is read from its handshake frame: text = JSON, binary = min-bin).
    pub codec: CodecOption,
    /// Batch every outbound packet for `batchOnHandshakeDuration` ms after the handshake (the
    /// burst of re-subscriptions then goes out in a few frames).
    pub batch_on_handshake: bool,
    /// How long `batchOnHandshake` batches (ms).
    pub batch_on_handshake_duration: u64,
    /// While a socket batches, how often its batch is flushed (ms).
    pub batch_interval: u64,
    /// How long server-initiated invokes wait for the client's response.
    pub ack_timeout: u64,
    /// How long a new connection may take to send `#handshake` (else close 4005).
    pub handshake_timeout: u64,
    /// Close with 4009 when anything but `#handshake` arrives first.
    pub strict_handshake: bool,
    /// Interval between server pings.
    pub ping_interval: u64,
    /// Close with 4001 when the client is silent this long; sent to clients in the handshake.
    pub ping_timeout: u64,
    /// No pings and no pong timeout.
    pub ping_timeout_disabled: bool,
    /// Whether clients may `#publish`.
    pub allow_client_publish: bool,
    /// Most channels one socket may subscribe to (`None`: unlimited). SocketCluster's cluster
    /// default is 1000.
    pub socket_channel_limit: Option<usize>,
    /// Allowed origins: `host:port`, `host:*`, `*:port` entries, or `*:*` for all.
    pub origins: String,
    /// Largest inbound message in bytes (above it: close 1009). Default 100 MiB, as the reference.
    pub max_payload: usize,
    /// Most frames waiting in one socket's outbound queue. A socket that lets its queue fill up
    /// (a slow consumer) is closed with code 4100; no other socket ever waits for it.
    pub outbound_queue_limit: usize,
    /// Most event handlers of one socket that may be running at once (default 64). A handler
    /// that waits (for the broker, a database, …) holds one of these slots until it finishes;
    /// when every slot is taken the server stops reading that socket until one frees up, so a
    /// client that floods events is slowed down instead of turning its flood into unbounded work
    /// (docs/security.md, "Inbound work and backpressure").
    pub inbound_handler_limit: usize,
    /// Application name, informational (logs, health endpoint).
    pub app_name: Option<String>,
    /// HMAC secret for signing and verifying auth tokens. Unset: a random key per start (tokens
    /// then die with the process; a process cluster shares one per run), unless a key pair is
    /// given.
    pub auth_key: Option<String>,
    /// PEM private key for asymmetric signing (with `authPublicKey` and `authAlgorithm`).
    pub auth_private_key: Option<String>,
    /// PEM public key for asymmetric verification.
    pub auth_public_key: Option<String>,
    /// Signing algorithm (`HS256` by default; `RS256`, `ES256`, … with a key pair).
    pub auth_algorithm: Option<String>,
    /// Algorithms accepted when verifying (default: the signing algorithm, or the HMAC family).
    pub auth_verify_algorithms: Option<Vec<String>>,
    /// Token lifetime in seconds when `set_auth_token` is not told otherwise.
    pub auth_default_expiry: u64,
    /// Longest a middleware may take before its action is blocked (ms).
    pub middleware_timeout: u64,
    /// Negotiate permessage-deflate (RFC 7692) with clients that offer it. Off by default, as in
    /// SocketCluster. Always without context takeover: no deflate memory per connection, and a
    /// publication is compressed once for all its subscribers.
    pub per_message_deflate: bool,
    /// Messages shorter than this many bytes go uncompressed even when deflate is on.
    pub per_message_deflate_threshold: usize,
    /// Longest wait for an HTTP request's complete header, including the wait for its first
    /// byte on a new or kept-alive connection (ms; the connection is then closed). Applies to
    /// [`crate::Server::serve`].
    pub http_header_timeout: u64,
    /// Longest an HTTP connection that did not upgrade may go without a byte read or written
    /// while no request is being handled (ms). Applies to [`crate::Server::serve`].
    pub http_idle_timeout: u64,
    /// Most connections that did not upgrade to WebSocket (yet) at once; beyond it new
    /// connections are closed as soon as accepted. Applies to [`crate::Server::serve`].
    pub max_pending_connections: usize,
    /// Channels that keep history (EXTENSIONS.md E1): the first entry whose `pattern` matches a
    /// channel gives its `size` and `ttl`. Empty: no channel keeps history. Reads a list of
    /// `{pattern, size, ttl}` tables, or of `"pattern:size:ttl"` strings, or one string of
    /// comma-separated `pattern:size:ttl` entries (for environment variables).
    #[serde(deserialize_with = "history_entries")]
    pub history: Vec<HistoryOption>,
    /// Patterns of channels that keep presence (EXTENSIONS.md E1, E5). Reads a list of
    /// patterns, or one comma-separated string.
    #[serde(deserialize_with = "pattern_list")]
    pub presence: Vec<String>,
}

/// One `history` entry: channels whose name matches `pattern` (a glob where `*` matches any run
/// of characters) keep their last `size` publications for `ttl` seconds.
///
/// As a flag or environment value it reads `pattern:size:ttl` (`room/*:1000:600`); see
/// [`HistoryOption::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryOption {
    /// Channel glob (`room/*`, `chat/*/messages`, `*`).
    pub pattern: String,
    /// Publications kept per channel.
    pub size: usize,
    /// Seconds each publication is kept.
    pub ttl: u64,
}

/// A `history` entry as written: a table or a `pattern:size:ttl` string.
#[derive(Deserialize)]
#[serde(untagged)]
enum HistoryEntry {
    Table(HistoryOption),
    Text(String),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    Many(Vec<T>),
    One(String),
}

fn history_entries<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<HistoryOption>, D::Error> {
    let entries = match OneOrMany::<HistoryEntry>::deserialize(d)? {
        OneOrMany::Many(entries) => entries,
        OneOrMany::One(text) => split_list(&text).map(HistoryEntry::Text).collect(),
    };
    entries
        .into_iter()
        .map(|entry| match entry {
            HistoryEntry::Table(option) => Ok(option),
            HistoryEntry::Text(text) => {
                HistoryOption::parse(&text).map_err(|e| serde::de::Error::custom(e.0))
            }
        })
        .collect()
}

fn pattern_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(match OneOrMany::<String>::deserialize(d)? {
        OneOrMany::Many(patterns) => patterns,
        OneOrMany::One(text) => split_list(&text).collect(),
    })
}

fn split_list(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

impl HistoryOption {
    /// Reads the `pattern:size:ttl` form (the pattern may itself contain `:`; the last two
    /// fields are the numbers).
    ///
    /// ```
    /// let h = sc_server::options::HistoryOption::parse("room/*:1000:600").unwrap();
    /// assert_eq!((h.pattern.as_str(), h.size, h.ttl), ("room/*", 1000, 600));
    /// assert!(sc_server::options::HistoryOption::parse("room/*:1000").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<HistoryOption, InvalidOptions> {
        let bad = || {
            InvalidOptions(format!(
                "history entry {text:?} must read pattern:size:ttl (e.g. room/*:1000:600)"
            ))
        };
        let mut fields = text.rsplitn(3, ':');
        let ttl = fields
            .next()
            .and_then(|t| t.trim().parse().ok())
            .ok_or_else(bad)?;
        let size = fields
            .next()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(bad)?;
        let pattern = fields.next().ok_or_else(bad)?.to_owned();
        let option = HistoryOption { pattern, size, ttl };
        option.validate()?;
        Ok(option)
    }

    fn validate(&self) -> Result<(), InvalidOptions> {
        if self.pattern.is_empty() {
            return Err(InvalidOptions(
                "a history pattern must not be empty".to_owned(),
            ));
        }
        if self.size == 0 || self.size > 1_000_000 {
            return Err(InvalidOptions(format!(
                "history size for {:?} must be between 1 and 1000000, not {}",
                self.pattern, self.size
            )));
        }
        if self.ttl == 0 || self.ttl > 365 * 86_400 {
            return Err(InvalidOptions(format!(
                "history ttl for {:?} must be between 1 and 31536000 seconds, not {}",
                self.pattern, self.ttl
            )));
        }
        Ok(())
    }
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            path: "/socketcluster/".to_owned(),
            protocol_version: ProtocolVersion::Auto,
            codec: CodecOption::Auto,
            batch_on_handshake: false,
            batch_on_handshake_duration: 400,
            batch_interval: 50,
            ack_timeout: 10_000,
            handshake_timeout: 10_000,
            strict_handshake: true,
            ping_interval: 8_000,
            ping_timeout: 20_000,
            ping_timeout_disabled: false,
            allow_client_publish: true,
            socket_channel_limit: Some(1000),
            origins: "*:*".to_owned(),
            max_payload: 100 * 1024 * 1024,
            outbound_queue_limit: 4096,
            inbound_handler_limit: 64,
            app_name: None,
            auth_key: None,
            auth_private_key: None,
            auth_public_key: None,
            auth_algorithm: None,
            auth_verify_algorithms: None,
            auth_default_expiry: 86_400,
            middleware_timeout: 10_000,
            history: Vec::new(),
            presence: Vec::new(),
            per_message_deflate: false,
            per_message_deflate_threshold: 1024,
            http_header_timeout: 10_000,
            http_idle_timeout: 10_000,
            max_pending_connections: 1024,
        }
    }
}

/// An option value is out of range.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("InvalidOptionsError: {0}")]
pub struct InvalidOptions(pub String);

/// The durations of [`ServerOptions`] as [`Duration`]s: `options.ping_interval` is SocketCluster's
/// number of milliseconds, `options.durations().ping_interval` the same as a `Duration`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Durations {
    /// `ackTimeout`.
    pub(crate) ack_timeout: Duration,
    /// `handshakeTimeout`.
    pub(crate) handshake_timeout: Duration,
    /// `pingInterval`.
    pub(crate) ping_interval: Duration,
    /// `pingTimeout`.
    pub(crate) ping_timeout: Duration,
    /// `middlewareTimeout`.
    pub(crate) middleware_timeout: Duration,
    /// `batchInterval`.
    pub(crate) batch_interval: Duration,
    /// `batchOnHandshakeDuration`.
    pub(crate) batch_on_handshake: Duration,
}

impl ServerOptions {
    /// Checks every value; the server refuses to start with invalid options.
    pub fn validate(&self) -> Result<(), InvalidOptions> {
        let positive = [
            ("ackTimeout", self.ack_timeout),
            ("handshakeTimeout", self.handshake_timeout),
            ("pingInterval", self.ping_interval),
            ("pingTimeout", self.ping_timeout),
            ("middlewareTimeout", self.middleware_timeout),
            ("httpHeaderTimeout", self.http_header_timeout),
            ("httpIdleTimeout", self.http_idle_timeout),
            ("batchOnHandshakeDuration", self.batch_on_handshake_duration),
            ("batchInterval", self.batch_interval),
        ];
        for (name, value) in positive {
            if value == 0 || value > i32::MAX as u64 {
                return Err(InvalidOptions(format!(
                    "{name} must be between 1 and 2147483647 ms, not {value}"
                )));
            }
        }
        if !self.path.starts_with('/') {
            return Err(InvalidOptions(format!(
                "path must start with '/', not {:?}",
                self.path
            )));
        }
        if self.max_payload == 0 {
            return Err(InvalidOptions("maxPayload must be positive".to_owned()));
        }
        if self.outbound_queue_limit == 0 {
            return Err(InvalidOptions(
                "outboundQueueLimit must be positive".to_owned(),
            ));
        }
        for entry in &self.history {
            entry.validate()?;
        }
        if self.presence.iter().any(String::is_empty) {
            return Err(InvalidOptions(
                "a presence pattern must not be empty".to_owned(),
            ));
        }
        if self.inbound_handler_limit == 0 {
            return Err(InvalidOptions(
                "inboundHandlerLimit must be positive".to_owned(),
            ));
        }
        if self.max_pending_connections == 0 {
            return Err(InvalidOptions(
                "maxPendingConnections must be positive".to_owned(),
            ));
        }
        if self.socket_channel_limit == Some(0) {
            return Err(InvalidOptions(
                "socketChannelLimit must be positive (omit it for no limit)".to_owned(),
            ));
        }
        Ok(())
    }

    /// The durations among the options as [`Duration`]s (the fields hold SocketCluster's
    /// milliseconds).
    pub(crate) fn durations(&self) -> Durations {
        Durations {
            ack_timeout: Duration::from_millis(self.ack_timeout),
            handshake_timeout: Duration::from_millis(self.handshake_timeout),
            ping_interval: Duration::from_millis(self.ping_interval),
            ping_timeout: Duration::from_millis(self.ping_timeout),
            middleware_timeout: Duration::from_millis(self.middleware_timeout),
            batch_interval: Duration::from_millis(self.batch_interval),
            batch_on_handshake: Duration::from_millis(self.batch_on_handshake_duration),
        }
    }

    pub(crate) fn listen_limits(&self) -> crate::listen::Limits {
        crate::listen::Limits {
            header_timeout: Duration::from_millis(self.http_header_timeout),
            idle_timeout: Duration::from_millis(self.http_idle_timeout),
            max_pending: self.max_pending_connections,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_socketcluster_names() {
        let o: ServerOptions = serde_json::from_str(
            r#"{"pingInterval":1000,"socketChannelLimit":2,"protocolVersion":"1","codec":"min-bin","batchInterval":20}"#,
        )
        .unwrap();
        assert_eq!(
            (o.ping_interval, o.socket_channel_limit, o.protocol_version),
            (1000, Some(2), ProtocolVersion::V1)
        );
        assert_eq!(o.ping_timeout, 20_000);
        assert_eq!((o.codec, o.batch_interval), (CodecOption::MinBin, 20));
        assert_eq!(o.batch_on_handshake_duration, 400);
    }

    #[test]
    fn history_and_presence_forms() {
        let o: ServerOptions = serde_json::from_str(
            r#"{"history":[{"pattern":"room/*","size":1000,"ttl":600},"chat/*:50:60"],"presence":["room/*"]}"#,
        )
        .unwrap();
        assert_eq!(
            o.history[1],
            HistoryOption {
                pattern: "chat/*".into(),
                size: 50,
                ttl: 60
            }
        );
        assert_eq!(o.history[0].size, 1000);
        assert_eq!(o.presence, ["room/*"]);
        let o: ServerOptions =
            serde_json::from_str(r#"{"history":"a:1:2, b/*:3:4","presence":"a,b/*"}"#).unwrap();
        assert_eq!(o.history.len(), 2);
        assert_eq!(o.presence, ["a", "b/*"]);
        let o: ServerOptions = serde_json::from_str(r#"{"history":"","presence":""}"#).unwrap();
        assert!(o.history.is_empty() && o.presence.is_empty());
        assert!(serde_json::from_str::<ServerOptions>(r#"{"history":"a:0:2"}"#).is_err());
        assert!(serde_json::from_str::<ServerOptions>(r#"{"history":"a:x:2"}"#).is_err());
        let back: ServerOptions =
            serde_json::from_str(&serde_json::to_string(&o).unwrap()).unwrap();
        assert_eq!(back, o);
    }

    #[test]
    fn rejects_bad_values() {
        assert!(
            ServerOptions {
                ping_interval: 0,
                ..Default::default()
            }
            .validate()
            .is_err()
        );
        assert!(
            ServerOptions {
                path: "x".into(),
                ..Default::default()
            }
            .validate()
            .is_err()
        );
        assert!(
            ServerOptions {
                inbound_handler_limit: 0,
                ..Default::default()
            }
            .validate()
            .is_err()
        );
        assert!(
            ServerOptions {
                socket_channel_limit: Some(0),
                ..Default::default()
            }
            .validate()
            .is_err()
        );
    }
}
