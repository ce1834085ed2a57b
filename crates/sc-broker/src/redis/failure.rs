//! Which Redis errors mean a lost connection, and why opening a connection failed
//! ([`OpenFailure`], turned into the [`EngineError`] a caller sees).

use ::redis::{ErrorKind, RedisError};

use super::options::ENGINE;
use crate::error::EngineError;

/// Whether an error means the connection is gone (as opposed to a refused command).
pub(super) fn is_connection_error(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_unrecoverable_error()
        || error.is_timeout()
}

/// Why a session could not be opened.
pub(super) enum OpenFailure {
    Redis(RedisError),
    TimedOut(&'static str),
    /// Sentinel: no sentinel knows the master, or the server found is not a master.
    NoMaster(String),
}

impl OpenFailure {
    pub(super) fn reason(&self) -> String {
        match self {
            OpenFailure::Redis(error) => error.to_string(),
            OpenFailure::TimedOut(what) => format!("{what} timed out"),
            OpenFailure::NoMaster(why) => why.clone(),
        }
    }

    pub(super) fn into_engine_error(self, target: &str) -> EngineError {
        let (engine, target) = (ENGINE, target.to_owned());
        let reason = self.reason();
        match self {
            OpenFailure::Redis(error) if is_auth_error(&error) => EngineError::Auth {
                engine,
                target,
                reason,
            },
            OpenFailure::Redis(error) if error.kind() == ErrorKind::InvalidClientConfig => {
                EngineError::InvalidUrl {
                    url: target,
                    reason,
                }
            }
            OpenFailure::Redis(error) if !is_connection_error(&error) => EngineError::Setup {
                engine,
                target,
                reason,
            },
            _ => EngineError::Unreachable {
                engine,
                target,
                reason,
            },
        }
    }
}

fn is_auth_error(error: &RedisError) -> bool {
    error.kind() == ErrorKind::AuthenticationFailed
        || matches!(error.code(), Some("NOAUTH" | "WRONGPASS" | "NOPERM"))
}
