//! Everything that can go wrong, as typed errors.
//!
//! - [`ClientError`]: a local API call could not be carried out (bad URL, bad options, the
//!   client has shut down, the first connection failed…).
//! - [`ConnectionError`]: why a connection failed or ended abnormally; reported on the
//!   [`Events`](crate::Events) stream as [`ClientEvent::Error`](crate::ClientEvent::Error) and
//!   returned by [`Client::connect`](crate::Client::connect).
//! - [`InvokeError`]: why an `invoke` produced no response data.

use std::io;
use std::time::Duration;

use sc_protocol::ScError;
use sc_protocol::error::names;

/// A local API call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The URL could not be parsed or has no host.
    #[error("invalid SocketCluster URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The URL scheme is not `ws` (`wss` needs TLS, which this crate does not bundle).
    #[error("unsupported URL scheme {scheme:?}: only ws:// is supported")]
    UnsupportedScheme {
        /// The scheme as given.
        scheme: String,
    },
    /// An option has an unusable value.
    #[error("invalid client options: {0}")]
    InvalidOptions(String),
    /// The client was created outside a Tokio runtime.
    #[error("sc-client must be used from within a Tokio runtime")]
    NoRuntime,
    /// The data could not be serialised to JSON.
    #[error("could not encode the data as JSON: {0}")]
    Encode(String),
    /// Event names starting with `#` belong to the protocol (docs/protocol.md §11).
    #[error("event name {0:?} is reserved: names starting with '#' belong to the protocol")]
    ReservedEvent(String),
    /// A close code an application may not send (use 1000 or 3000–4999).
    #[error("invalid close code {0}: use 1000 or 3000-4999")]
    InvalidCloseCode(u16),
    /// The token store failed.
    #[error("token store failed: {0}")]
    TokenStore(String),
    /// The first connection attempt of [`Client::connect`](crate::Client::connect) failed.
    #[error(transparent)]
    Connect(#[from] ConnectionError),
    /// The client's background task has stopped (every [`Client`](crate::Client) was dropped).
    #[error("the client has shut down")]
    Closed,
}

/// Why a connection attempt failed or an open connection ended abnormally.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// DNS lookup found no address.
    #[error("could not resolve the server host")]
    Resolve,
    /// The TCP connection failed (refused, reset, unreachable…).
    #[error("could not connect: {message}")]
    Io {
        /// The I/O error kind.
        kind: io::ErrorKind,
        /// The I/O error text.
        message: String,
    },
    /// The server answered the upgrade request with an HTTP status other than 101: it is not
    /// a SocketCluster endpoint (wrong path: 400; plain HTTP server: 404, 501…) or it refused
    /// the client (401, 403).
    #[error(
        "the server answered HTTP {status} instead of switching to WebSocket (not a SocketCluster endpoint?)"
    )]
    HttpStatus {
        /// The HTTP status code.
        status: u16,
    },
    /// The HTTP upgrade response was not a valid WebSocket handshake.
    #[error("WebSocket upgrade failed: {0}")]
    Upgrade(String),
    /// The WebSocket was not open within `connectTimeout` (close code 4007).
    #[error("the WebSocket was not open within connectTimeout ({}ms)", .0.as_millis())]
    ConnectTimeout(Duration),
    /// No `#handshake` response within `ackTimeout` (close code 4003).
    #[error("no handshake response within ackTimeout ({}ms)", .0.as_millis())]
    HandshakeTimeout(Duration),
    /// The server answered the handshake with an error (close code from its `statusCode`,
    /// default 4003).
    #[error("the server rejected the handshake with close code {code}: {error}")]
    HandshakeRejected {
        /// The error the server sent.
        error: ScError,
        /// The close code the client applies.
        code: u16,
    },
    /// The handshake response was not `{"id":…,"pingTimeout":…,"isAuthenticated":…}`
    /// (close code 4003).
    #[error("invalid handshake response: {0}")]
    InvalidHandshakeResponse(String),
    /// The connection closed before the handshake completed.
    #[error("the connection closed during the handshake (code {code}{})", reason_suffix(.reason))]
    ClosedDuringHandshake {
        /// The observed close code.
        code: u16,
        /// The close reason.
        reason: String,
    },
    /// No ping from the server within its `pingTimeout` (close code 4000).
    #[error("no ping from the server within pingTimeout ({}ms)", .0.as_millis())]
    PingTimeout(Duration),
    /// A WebSocket-level failure on an open connection: protocol violation (1002), invalid
    /// UTF-8 (1007), message above `max_payload` (1009), or a failed write (1006).
    #[error("WebSocket error (close code {code}): {message}")]
    WebSocket {
        /// The close code the client applies.
        code: u16,
        /// What happened.
        message: String,
    },
    /// The token store failed while loading, saving or removing the token.
    #[error("token store failed: {0}")]
    TokenStore(String),
    /// The connection closed; no more specific error is known.
    #[error("the connection closed with code {code}{}", reason_suffix(.reason))]
    Closed {
        /// The observed close code.
        code: u16,
        /// The close reason.
        reason: String,
    },
}

fn reason_suffix(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    }
}

/// How the connection failed under a pending request (`BadConnectionError.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadConnectionKind {
    /// The connection had been open (handshake done).
    Disconnect,
    /// The connection was still being established.
    ConnectAbort,
}

impl BadConnectionKind {
    /// The reference's `type` string: `disconnect` or `connectAbort`.
    pub fn as_str(self) -> &'static str {
        match self {
            BadConnectionKind::Disconnect => "disconnect",
            BadConnectionKind::ConnectAbort => "connectAbort",
        }
    }
}

/// An `invoke` failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum InvokeError {
    /// The server answered with an error (hydrated from its `sc-errors` form).
    #[error("{0}")]
    Remote(ScError),
    /// No response within the ack timeout (a late response is ignored).
    #[error("Event response for {event} event timed out")]
    Timeout {
        /// The event name.
        event: String,
    },
    /// The connection closed (or failed to open) before the response arrived.
    #[error("Event {event} was aborted due to a bad connection")]
    BadConnection {
        /// The event name.
        event: String,
        /// Whether the connection had been open.
        kind: BadConnectionKind,
        /// The close code.
        code: u16,
        /// The close reason.
        reason: String,
    },
    /// The call could not be made at all.
    #[error(transparent)]
    Client(#[from] ClientError),
}

impl InvokeError {
    /// The error as the reference client would report it: the server's own error, or a
    /// `TimeoutError` / `BadConnectionError` / `InvalidActionError` built locally.
    pub fn to_sc_error(&self) -> ScError {
        match self {
            InvokeError::Remote(e) => e.clone(),
            InvokeError::Timeout { .. } => ScError::new(names::TIMEOUT, self.to_string()),
            InvokeError::BadConnection {
                kind, code, reason, ..
            } => ScError::new(names::BAD_CONNECTION, self.to_string())
                .with("type", kind.as_str())
                .with("code", code)
                .with("reason", reason),
            InvokeError::Client(e) => ScError::new(names::INVALID_ACTION, e.to_string()),
        }
    }

    /// The server's error, if the server answered with one.
    pub fn remote(&self) -> Option<&ScError> {
        match self {
            InvokeError::Remote(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_match_the_reference() {
        let t = InvokeError::Timeout {
            event: "noreply".into(),
        };
        assert_eq!(t.to_string(), "Event response for noreply event timed out");
        assert_eq!(t.to_sc_error().name(), Some("TimeoutError"));
        let b = InvokeError::BadConnection {
            event: "noreply".into(),
            kind: BadConnectionKind::Disconnect,
            code: 4500,
            reason: "client done".into(),
        };
        assert_eq!(
            b.to_string(),
            "Event noreply was aborted due to a bad connection"
        );
        let e = b.to_sc_error();
        assert_eq!(e.name(), Some("BadConnectionError"));
        assert_eq!(e.field("type").map(|t| t.get()), Some("\"disconnect\""));
    }

    #[test]
    fn connection_error_texts() {
        let e = ConnectionError::HttpStatus { status: 404 };
        assert!(e.to_string().contains("HTTP 404"));
        let e = ConnectionError::Closed {
            code: 4321,
            reason: "dropped by server".into(),
        };
        assert_eq!(
            e.to_string(),
            "the connection closed with code 4321: dropped by server"
        );
    }
}
