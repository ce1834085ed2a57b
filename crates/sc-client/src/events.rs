//! Connection and auth states, and [`ClientEvent`]s as a [`Stream`] ([`Events`]).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use sc_protocol::ScError;
use tokio::sync::broadcast;

use crate::error::ConnectionError;
use crate::position::{Recovery, StreamPosition};

/// The client's connection state (`getState()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// Opening the WebSocket or waiting for the handshake response.
    Connecting,
    /// Handshake done: events flow.
    Open,
    /// No connection (a reconnect may be scheduled).
    Closed,
}

/// Whether the client holds a token the server accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthState {
    /// The server accepted the token (handshake `isAuthenticated`, `#setAuthToken`, or a
    /// successful [`Client::authenticate`](crate::Client::authenticate)).
    Authenticated,
    /// No accepted token.
    Unauthenticated,
}

/// Something that happened to the client (the reference client's local events, §15.5).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// A connection attempt started.
    Connecting,
    /// The handshake succeeded.
    Connect {
        /// The server-assigned socket id.
        id: String,
        /// Whether the token sent in the handshake was accepted.
        is_authenticated: bool,
        /// The server's `pingTimeout`, now the client's heartbeat timeout.
        ping_timeout: Duration,
        /// Why the token was not accepted, if one was sent and refused.
        auth_error: Option<ScError>,
    },
    /// A connection attempt failed before the handshake completed.
    ConnectAbort {
        /// The close code (1006 for a failed TCP connection or HTTP upgrade).
        code: u16,
        /// The close reason (the `sc-errors` text when the peer gave none).
        reason: String,
    },
    /// An open connection closed.
    Disconnect {
        /// The close code.
        code: u16,
        /// The close reason (the `sc-errors` text when the peer gave none).
        reason: String,
    },
    /// A reconnect attempt is scheduled (not a reference event; it makes the backoff visible).
    ReconnectScheduled {
        /// How long until the attempt.
        delay: Duration,
        /// The attempt number since the last successful handshake (1-based).
        attempt: u32,
    },
    /// A connection failed or ended abnormally, or the token store failed.
    Error(ConnectionError),
    /// A channel subscription was acknowledged.
    Subscribe {
        /// The channel name.
        channel: String,
    },
    /// The server refused a channel subscription; the channel is gone.
    SubscribeFail {
        /// The channel name.
        channel: String,
        /// The server's error.
        error: ScError,
    },
    /// A subscribed channel stopped being subscribed (unsubscribe, kick-out, or disconnect —
    /// after a disconnect the channel is pending and re-subscribed on reconnect).
    Unsubscribe {
        /// The channel name.
        channel: String,
    },
    /// The server kicked the client out of a channel (`#kickOut`); it will not be re-subscribed.
    KickOut {
        /// The channel name.
        channel: String,
        /// The server's message (JSON text if it was not a string).
        message: Option<String>,
    },
    /// The client became (or stays) authenticated with this token.
    Authenticate {
        /// The signed token (`None` if the server said authenticated without a token).
        signed_token: Option<String>,
    },
    /// The client stopped being authenticated.
    Deauthenticate {
        /// The token it held.
        old_signed_token: Option<String>,
    },
    /// A history channel was resubscribed with a position (after a reconnect), or a live
    /// delivery showed that its history was lost (EXTENSIONS.md E3, E7).
    /// [`Recovery::NotRecovered`] is the signal to reload the channel's state another way.
    Recovery {
        /// The channel name.
        channel: String,
        /// Whether every missed publication was replayed.
        recovery: Recovery,
        /// The channel's position now.
        position: StreamPosition,
    },
    /// A frame that is not a SocketCluster packet (or a binary frame), as received.
    Raw(Bytes),
}

/// The client's events as a [`Stream`] (from [`Client::events`](crate::Client::events)).
///
/// Each `Events` sees the events that happen after it was created. Overflow policy: events are
/// kept in a bounded broadcast buffer
/// ([`ClientOptions::event_buffer`](crate::ClientOptions::event_buffer)); a stream that falls
/// further behind skips its oldest events (a `tracing` warning says how many). The stream ends
/// when the client has shut down.
pub struct Events {
    inner: Pin<Box<dyn Stream<Item = ClientEvent> + Send>>,
}

impl Events {
    pub(crate) fn new(rx: broadcast::Receiver<ClientEvent>) -> Events {
        let inner = futures_util::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(event) => return Some((event, rx)),
                    Err(broadcast::error::RecvError::Lagged(skipped)) => {
                        tracing::warn!(
                            skipped,
                            "client events stream lagged; oldest events skipped"
                        );
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        Events {
            inner: Box::pin(inner),
        }
    }
}

impl Stream for Events {
    type Item = ClientEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ClientEvent>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").finish_non_exhaustive()
    }
}

/// The outcome of [`Client::authenticate`](crate::Client::authenticate).
#[derive(Debug, Clone, PartialEq)]
pub struct AuthStatus {
    /// Whether the server accepted the token.
    pub is_authenticated: bool,
    /// Why not, when the server answered without an error but did not authenticate (e.g. a
    /// token that is not valid yet).
    pub auth_error: Option<ScError>,
}
