//! Errors of the server API, typed per operation.

use sc_broker::BrokerError;
use sc_protocol::ScError;
use sc_protocol::error::names;

/// Sending a frame to a client failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SendError {
    /// The socket is closed or closing.
    #[error("the socket is closed")]
    Closed,
    /// The socket's outbound queue overflowed; it is being closed as a slow consumer.
    #[error("the socket's outbound queue is full; it is being closed as a slow consumer")]
    SlowConsumer,
    /// Event names starting with `#` belong to the protocol.
    #[error("InvalidActionError: the {0:?} event is reserved and cannot be emitted or handled")]
    ReservedEvent(String),
    /// The data could not be serialised to JSON.
    #[error("data could not be serialised: {0}")]
    Serialize(String),
}

/// A server-to-client invoke failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum InvokeError {
    /// The request could not be sent.
    #[error(transparent)]
    Send(#[from] SendError),
    /// No response within `ackTimeout` (SocketCluster's `TimeoutError`).
    #[error("TimeoutError: Event response for {event} event timed out")]
    Timeout {
        /// The event that was not answered.
        event: String,
    },
    /// The connection closed before the response arrived (`BadConnectionError`).
    #[error("BadConnectionError: the socket disconnected before responding")]
    Disconnected,
    /// The client answered with an error.
    #[error("the client responded with an error: {0}")]
    Remote(ScError),
}

/// A server-side exchange operation failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ExchangeError {
    /// The broker failed.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The data could not be serialised to JSON.
    #[error("data could not be serialised: {0}")]
    Serialize(String),
    /// The channel matches no `history` option.
    #[error("the {0} channel keeps no history")]
    NoHistory(String),
    /// The channel matches no `presence` option.
    #[error("the {0} channel keeps no presence")]
    NoPresence(String),
}

impl From<ExchangeError> for ScError {
    fn from(error: ExchangeError) -> ScError {
        ScError::new(names::BROKER, error.to_string())
    }
}

impl From<InvokeError> for ScError {
    fn from(error: InvokeError) -> ScError {
        match error {
            InvokeError::Remote(e) => e,
            InvokeError::Timeout { .. } => ScError::new(names::TIMEOUT, error.to_string()),
            InvokeError::Disconnected => ScError::new(names::BAD_CONNECTION, error.to_string()),
            InvokeError::Send(_) => ScError::new(names::INVALID_ACTION, error.to_string()),
        }
    }
}

impl From<SendError> for ScError {
    fn from(error: SendError) -> ScError {
        ScError::new(names::INVALID_ACTION, error.to_string())
    }
}

pub(crate) fn check_event_name(event: &str) -> Result<(), SendError> {
    if event.starts_with('#') {
        Err(SendError::ReservedEvent(event.to_owned()))
    } else {
        Ok(())
    }
}
