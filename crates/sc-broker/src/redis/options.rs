//! [`RedisOptions`]: the Redis engine's settings.

use std::time::Duration;

/// The engine's name in errors.
pub(super) const ENGINE: &str = "redis";

/// Settings of the Redis engine (broker and key/value store).
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// Prefix of every Redis name we use, so several apps can share one Redis: channels are
    /// `<prefix>ch:<channel>`, key/value entries `<prefix>kv:<top-level key>`, nested expiries the
    /// sorted set `<prefix>kvx`. Default `sc:`.
    pub prefix: String,
    /// Longest wait for any one operation (publish, subscribe, a key/value command). Default 5 s.
    pub op_timeout: Duration,
    /// Longest wait for a connection attempt. Default 2 s.
    pub connect_timeout: Duration,
    /// Largest publish frame (and stored key/value entry), in bytes. Default 8 MiB — far below
    /// Redis' own 512 MB bulk limit, so one oversized message cannot stall the connection that
    /// every channel shares.
    pub max_message_size: usize,
    /// Cap of the reconnect backoff. Default 1 s: delivery resumes within about a second of
    /// Redis coming back.
    pub max_reconnect_delay: Duration,
    /// How often the pub/sub connection is pinged to detect a silent network failure. Default 1 s.
    pub ping_interval: Duration,
    /// How often the store looks for due nested-key expiries (see [`RedisKv`](super::RedisKv)). Default 500 ms.
    pub expiry_sweep_interval: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            prefix: "sc:".to_owned(),
            op_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            max_message_size: 8 * 1024 * 1024,
            max_reconnect_delay: Duration::from_secs(1),
            ping_interval: Duration::from_secs(1),
            expiry_sweep_interval: Duration::from_millis(500),
        }
    }
}
