//! [`RedisLink::connect`]: picks the topology (one server, Sentinel, Redis Cluster) from the URL.
//! The topologies import the link; only this file imports the topologies.

use std::sync::Arc;

use super::link::RedisLink;
use super::options::RedisOptions;
use crate::error::EngineError;
use crate::url::redact;

impl RedisLink {
    /// Parses `url`, opens both connections (bounded by the connect timeout) and starts the
    /// supervisor.
    /// `redis-cluster://` and `redis-sentinel://` URLs (and their `rediss-` forms) pick those
    /// topologies (see the [`link`](super::link) module documentation).
    pub async fn connect(url: &str, options: RedisOptions) -> Result<Arc<RedisLink>, EngineError> {
        let target = redact(url);
        let lower = url.to_ascii_lowercase();
        if lower.starts_with("rediss") {
            // rustls needs one process-wide crypto provider; ignore "already installed".
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        if lower.starts_with("redis-cluster:") || lower.starts_with("rediss-cluster:") {
            return super::sharded::connect(url, options).await;
        }
        super::single::connect(url, options, target).await
    }
}
