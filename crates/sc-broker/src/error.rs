//! What can go wrong: [`BrokerError`] for an operation, [`EngineError`] for setting an engine up.
//!
//! Depends on nothing else in the crate.

/// A broker operation failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum BrokerError {
    /// The engine cannot be reached right now; the operation was not performed.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// The engine did not answer in time.
    #[error("broker operation {action} timed out")]
    Timeout {
        /// The action that timed out (`subscribe`, `publish`, …).
        action: &'static str,
    },
    /// The message is larger than the engine accepts.
    #[error("message of {size} bytes exceeds the broker limit of {limit} bytes")]
    TooLarge {
        /// Size of the refused message.
        size: usize,
        /// The engine's limit.
        limit: usize,
    },
    /// The engine refused or failed the operation.
    #[error("{0}")]
    Engine(String),
}

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
        "unknown engine scheme {scheme:?} in {url:?} (expected memory://, redis://, rediss://, redis-sentinel://, redis-cluster://, nats:// or tls://)"
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
