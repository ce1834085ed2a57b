//! [`RedisBroker`]: publications carried between machines by Redis pub/sub.
//!
//! One [`RedisLink`] per engine URL holds two connections: a dedicated pub/sub connection (one
//! Redis `SUBSCRIBE` per channel the process holds, on `<prefix>ch:<channel>`), and a
//! multiplexed command connection for `PUBLISH` and the key/value store ([`RedisKv`]). A
//! supervisor task owns both; publications travel as their encoded `#publish` frame and are
//! rebuilt with [`Publication::from_frame`](sc_protocol::Publication::from_frame),
//! never re-encoded.
//!
//! Failure behaviour (reconnects, outages, timeouts, limits) and the topologies (one server,
//! Sentinel, Redis Cluster): see [`link`]; Redis Cluster (sharded pub/sub, slot-tagged keys):
//! [`sharded`]; Sentinel: `sentinel` (private).

pub mod broker;
mod connect;
mod connection;
mod failure;
mod keys;
pub mod kv;
pub mod link;
mod options;
mod sentinel;
pub mod sharded;
mod single;
pub mod stream;
pub mod tls;

pub use broker::RedisBroker;
pub use kv::RedisKv;
pub use link::{RedisConnection, RedisLink, RedisOptions};

use crate::error::EngineError;

/// Connects to the Redis server at `url` (`redis://[user:pass@]host[:port][/db]`, or `rediss://`
/// for TLS, `?tls_ca=/path/ca.pem` to trust a private CA, see [`tls`]; `redis-sentinel://…` and
/// `redis-cluster://…` pick those topologies, see [`link`])
/// and returns a broker and a key/value store sharing one [`RedisLink`].
///
/// Fails with [`EngineError::InvalidUrl`] for a malformed URL, [`EngineError::Auth`] when Redis
/// refuses the credentials, and [`EngineError::Unreachable`] when it cannot be reached.
pub async fn connect(
    url: &str,
    options: RedisOptions,
) -> Result<(RedisBroker, RedisKv), EngineError> {
    let link = RedisLink::connect(url, options).await?;
    Ok((RedisBroker::on_link(link.clone()), RedisKv::with_link(link)))
}
