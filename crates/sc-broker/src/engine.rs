//! Choosing an engine from a URL: [`connect_engine`] and [`EngineError`].
//!
//! | URL | broker | key/value store | cargo feature |
//! |---|---|---|---|
//! | `memory://` | [`MemoryBroker`] | [`MemoryKv`] | — |
//! | `redis://[user:pass@]host[:port][/db]`, `rediss://…` (TLS) | `RedisBroker` | `RedisKv` | `redis` |
//! | `redis-sentinel://[user:pass@]s1:26379,s2:26379/<master>[/db]`, `rediss-sentinel://…` | `RedisBroker` | `RedisKv` | `redis` |
//! | `redis-cluster://[user:pass@]h1:p1,h2:p2,…`, `rediss-cluster://…` (sharded pub/sub) | `RedisBroker` | `RedisKv` | `redis` |
//! | `nats://[user:pass@]host[:port][,nats://…]` | `NatsBroker` | `NatsKv` (JetStream) | `nats` |
//!
//! The Redis and NATS engines use their default options here; build them with
//! `redis::connect` / `nats::connect` to change prefixes, timeouts or limits.

use std::sync::Arc;

use crate::kv::KvStore;
use crate::{Broker, MemoryBroker, MemoryKv};

/// An engine could not be set up from its URL.
///
/// Messages never contain the password of a URL (it is shown as `***`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The URL cannot be parsed.
    #[error("invalid engine URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL, password redacted.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The URL's scheme names no engine.
    #[error(
        "unknown engine scheme {scheme:?} in {url:?} (expected memory://, redis://, rediss://, redis-sentinel://, redis-cluster:// or nats://)"
    )]
    UnknownScheme {
        /// The scheme found.
        scheme: String,
        /// The URL, password redacted.
        url: String,
    },
    /// The engine exists but this build leaves it out.
    #[error("engine {scheme}:// is not compiled in (build sc-broker with the `{feature}` feature)")]
    NotCompiled {
        /// The scheme asked for.
        scheme: String,
        /// The cargo feature that adds it.
        feature: &'static str,
    },
    /// The engine refused the credentials.
    #[error("{engine} at {target} refused the credentials: {reason}")]
    Auth {
        /// `redis` or `nats`.
        engine: &'static str,
        /// The URL, password redacted.
        target: String,
        /// The engine's answer.
        reason: String,
    },
    /// The engine could not be reached (refused, timed out, DNS, TLS).
    #[error("{engine} at {target} is unreachable: {reason}")]
    Unreachable {
        /// `redis` or `nats`.
        engine: &'static str,
        /// The URL, password redacted.
        target: String,
        /// Why.
        reason: String,
    },
    /// Connected, but the engine cannot serve us (e.g. JetStream disabled on the NATS server).
    #[error("{engine} at {target} cannot be used: {reason}")]
    Setup {
        /// `redis` or `nats`.
        engine: &'static str,
        /// The URL, password redacted.
        target: String,
        /// Why.
        reason: String,
    },
}

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
        "nats" => connect_nats(url).await,
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

/// `url` with the password of its user info replaced by `***` (for logs and errors). Every
/// `,`-separated URL of a list is redacted.
pub(crate) fn redact(url: &str) -> String {
    url.split(',').map(redact_one).collect::<Vec<_>>().join(",")
}

fn redact_one(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    let user_info = &rest[..at];
    let hidden = match user_info.split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => "***".to_owned(),
    };
    format!("{scheme}://{hidden}{}", &rest[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(redact("redis://:secret@h:6379/0"), "redis://:***@h:6379/0");
        assert_eq!(redact("redis://user:secret@h"), "redis://user:***@h");
        assert_eq!(
            redact("nats://token@h:4222,nats://u:p@g"),
            "nats://***@h:4222,nats://u:***@g"
        );
        assert_eq!(redact("redis://h:6379/0?x=a@b"), "redis://h:6379/0?x=a@b");
        assert_eq!(redact("memory://"), "memory://");
    }

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
