//! WebSocket close codes and what they mean to SocketCluster peers (docs/protocol.md §10).

use std::fmt;

/// A WebSocket close code, with SocketCluster's meanings.
///
/// ```
/// use sc_protocol::CloseCode;
///
/// assert_eq!(CloseCode::PONG_TIMEOUT.0, 4001);
/// assert_eq!(CloseCode::PONG_TIMEOUT.text(), "Client pong timed out");
/// assert!(CloseCode(4321).client_reconnects());
/// assert!(!CloseCode(4500).client_reconnects());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// Normal closure; the reference clients do not reconnect.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// Going away (server shutting down, page unload).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// Protocol error at the WebSocket level.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// Invalid UTF-8 in a text frame.
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// Policy violation.
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// A message was above `maxPayload`.
    pub const MESSAGE_TOO_BIG: CloseCode = CloseCode(1009);
    /// Unexpected server condition.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// Client: no ping from the server within `pingTimeout`.
    pub const PING_TIMEOUT: CloseCode = CloseCode(4000);
    /// Server: no pong from the client within `pingTimeout`.
    pub const PONG_TIMEOUT: CloseCode = CloseCode(4001);
    /// Server failed to sign an auth token.
    pub const AUTH_SIGN_FAILED: CloseCode = CloseCode(4002);
    /// Client: the handshake failed or timed out.
    pub const HANDSHAKE_FAILED: CloseCode = CloseCode(4003);
    /// No `#handshake` within `handshakeTimeout`.
    pub const HANDSHAKE_TIMEOUT: CloseCode = CloseCode(4005);
    /// Client: WebSocket not open within `connectTimeout`.
    pub const CONNECT_TIMEOUT: CloseCode = CloseCode(4007);
    /// Handshake rejected (middleware, or a `#handshake`/`#authenticate` without numeric cid).
    pub const HANDSHAKE_REJECTED: CloseCode = CloseCode(4008);
    /// A message arrived before the handshake (strict handshake).
    pub const MESSAGE_BEFORE_HANDSHAKE: CloseCode = CloseCode(4009);
    /// This implementation: the socket's bounded outbound queue overflowed (a slow consumer).
    /// In the application range below 4500, so reference clients reconnect with backoff.
    pub const SLOW_CONSUMER: CloseCode = CloseCode(4100);

    /// The `sc-errors` text for this code.
    pub fn text(self) -> String {
        let known = match self.0 {
            1000 => "Socket closed normally",
            1001 => "Socket was disconnected",
            1002 => "A WebSocket protocol error was encountered",
            1003 => "Server terminated socket because it received invalid data",
            1005 => "Socket closed without status code",
            1006 => "Socket hung up",
            1007 => "Message format was incorrect",
            1008 => "Encountered a policy violation",
            1009 => "Message was too big to process",
            1010 => {
                "Client ended the connection because the server did not comply with extension requirements"
            }
            1011 => "Server encountered an unexpected fatal condition",
            4000 => "Server ping timed out",
            4001 => "Client pong timed out",
            4002 => "Server failed to sign auth token",
            4003 => "Failed to complete handshake",
            4004 => "Client failed to save auth token",
            4005 => "Did not receive #handshake from client before timeout",
            4006 => "Failed to bind socket to message broker",
            4007 => "Client connection establishment timed out",
            4008 => "Server rejected handshake from client",
            4009 => "Server received a message before the client handshake",
            4100 => "Outbound queue full: the client did not read fast enough",
            code => return format!("Socket connection closed with status code {code}"),
        };
        known.to_owned()
    }

    /// Whether the reference clients reconnect after observing this code.
    pub fn client_reconnects(self) -> bool {
        self.0 != 1000 && self.0 < 4500
    }

    /// Whether the reference clients reconnect immediately (no backoff) after this code.
    pub fn client_reconnects_immediately(self) -> bool {
        matches!(self.0, 4000 | 4001 | 1005)
    }

    /// Whether an application may close a socket with this code (1000, 3000–4999 except the
    /// codes below 4100 that the protocol reserves).
    pub fn is_application_code(self) -> bool {
        self.0 == 1000 || (3000..=3999).contains(&self.0) || (4010..=4999).contains(&self.0)
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.0, self.text())
    }
}
