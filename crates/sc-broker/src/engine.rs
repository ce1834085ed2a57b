//! Choosing an engine from a URL: [`connect_engine`] and [`EngineError`].
//!
//! | URL | broker | key/value store | cargo feature |
//! |---|---|---|---|
//! | `memory://` | [`MemoryBroker`] | [`MemoryKv`] | — |
//! | `redis://[user:pass@]host[:port][/db]`, `rediss://…[?tls_ca=/path/ca.pem]` (TLS) | `RedisBroker` | `RedisKv` | `redis` |
//! | `redis-sentinel://[user:pass@]s1:26379,s2:26379/<master>[/db]`, `rediss-sentinel://…` | `RedisBroker` | `RedisKv` | `redis` |
//! | `redis-cluster://[user:pass@]h1:p1,h2:p2,…`, `rediss-cluster://…` (sharded pub/sub) | `RedisBroker` | `RedisKv` | `redis` |
//! | `nats://[user:pass@]host[:port][,host2…][?creds=…]`, `tls://…` | `NatsBroker` | `NatsKv` (JetStream) | `nats` |
//!
//! NATS URLs (server lists, credentials files, TLS options) are described in
//! `sc_broker::nats::nodes` (feature `nats`) and `docs/scaling.md`.
//!
//! The Redis and NATS engines use their default options here; build them with
//! `redis::connect` / `nats::connect` to change prefixes, timeouts or limits.

use std::sync::Arc;

use crate::error::EngineError;
use crate::kv::KvStore;
use crate::url::redact;
use crate::{Broker, MemoryBroker, MemoryKv};

/// Connects the engine named by `url`'s scheme and returns its broker and key/value store,
/// which share one connection (see the [module table](self)).
///
/// Fails with a typed [`EngineError`] on an unknown scheme, a malformed URL, refused
/// credentials, or an engine that cannot be reached at start-up (later outages are survived, see
/// the engines' documentation).
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let (broker, kv) = sc_broker::connect_engine("memory://").await.unwrap();
/// assert_eq!(broker.describe(), "memory");
/// # let _ = kv;
/// let err = sc_broker::connect_engine("mongodb://x").await.err().unwrap();
/// assert!(matches!(err, sc_broker::EngineError::UnknownScheme { .. }));
/// # });
/// ```
pub async fn connect_engine(url: &str) -> Result<(Arc<dyn Broker>, Arc<dyn KvStore>), EngineError> {
    let scheme = scheme_of(url)?;
    match scheme.as_str() {
        "memory" => Ok((Arc::new(MemoryBroker::new()), Arc::new(MemoryKv::new()))),
        "redis" | "rediss" | "redis-sentinel" | "rediss-sentinel" | "redis-cluster"
        | "rediss-cluster" => connect_redis(url).await,
        "nats" | "tls" => connect_nats(url).await,
        _ => Err(EngineError::UnknownScheme {
            scheme,
            url: redact(url),
        }),
    }
}

#[cfg(feature = "redis")]
async fn connect_redis(url: &str) -> Result<(Arc<dyn Broker>, Arc<dyn KvStore>), EngineError> {
    let (broker, kv) = crate::redis::connect(url, crate::redis::RedisOptions::default()).await?;
    Ok((Arc::new(broker), Arc::new(kv)))
}

#[cfg(not(feature = "redis"))]
async fn connect_redis(url: &str) -> Result<(Arc<dyn Broker>, Arc<dyn KvStore>), EngineError> {
    Err(EngineError::NotCompiled {
        scheme: scheme_of(url)?,
        feature: "redis",
    })
}

#[cfg(feature = "nats")]
async fn connect_nats(url: &str) -> Result<(Arc<dyn Broker>, Arc<dyn KvStore>), EngineError> {
    let (broker, kv) = crate::nats::connect(url, crate::nats::NatsOptions::default()).await?;
    Ok((Arc::new(broker), Arc::new(kv)))
}

#[cfg(not(feature = "nats"))]
async fn connect_nats(url: &str) -> Result<(Arc<dyn Broker>, Arc<dyn KvStore>), EngineError> {
    Err(EngineError::NotCompiled {
        scheme: scheme_of(url)?,
        feature: "nats",
    })
}

/// The lower-cased scheme of `url`, or [`EngineError::InvalidUrl`].
fn scheme_of(url: &str) -> Result<String, EngineError> {
    let invalid = |reason: &str| EngineError::InvalidUrl {
        url: redact(url),
        reason: reason.to_owned(),
    };
    let (scheme, _) = url
        .split_once("://")
        .ok_or_else(|| invalid("expected <scheme>://…"))?;
    let valid = scheme
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    if !valid {
        return Err(invalid("the scheme is not valid"));
    }
    Ok(scheme.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes() {
        assert_eq!(scheme_of("REDIS://h").unwrap(), "redis");
        assert!(matches!(
            scheme_of("localhost:6379"),
            Err(EngineError::InvalidUrl { .. })
        ));
        assert!(matches!(
            scheme_of("://h"),
            Err(EngineError::InvalidUrl { .. })
        ));
        assert!(matches!(
            scheme_of("1x://h"),
            Err(EngineError::InvalidUrl { .. })
        ));
    }

    #[tokio::test]
    async fn memory_and_unknown() {
        let (broker, _kv) = connect_engine("memory://").await.unwrap();
        assert!(broker.is_connected());
        let err = connect_engine("kafka://:pw@h").await.err().unwrap();
        assert_eq!(
            err,
            EngineError::UnknownScheme {
                scheme: "kafka".into(),
                url: "kafka://:***@h".into()
            }
        );
        assert!(!err.to_string().contains("pw"));
    }
}
