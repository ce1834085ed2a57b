//! [`Channel`]: a subscription handle that is a [`Stream`] of the channel's messages, and the
//! channel state machine of docs/protocol.md §7.6.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use futures_util::Stream;
use sc_protocol::{Json, ScError};
use serde::Serialize;
use tokio::sync::watch;

use crate::client::Client;
use crate::error::{ClientError, InvokeError};
use crate::position::{Publication, StreamPosition};
use crate::presence::Presence;
use crate::sink::DataSource;

/// A channel's subscription state (`pending` / `subscribed` / `unsubscribed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelState {
    /// Wanted, but not (yet, or no longer) acknowledged: waiting for the connection, for
    /// authentication (`wait_for_auth`), or for the `#subscribe` response. Re-subscribed after
    /// every handshake.
    Pending,
    /// The server acknowledged the subscription.
    Subscribed,
    /// Gone for good; see [`UnsubscribeReason`].
    Unsubscribed,
}

/// Why a channel ended up [`ChannelState::Unsubscribed`] (an error for
/// [`Channel::subscribed`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UnsubscribeReason {
    /// The application unsubscribed.
    #[error("the channel was unsubscribed")]
    Unsubscribed,
    /// The server sent `#kickOut`.
    #[error("the server kicked the client out of the channel: {}", message.as_deref().unwrap_or(""))]
    KickedOut {
        /// The server's message (JSON text if it was not a string).
        message: Option<String>,
    },
    /// The server refused the `#subscribe` (except with `BrokerError`, an unavailable channel
    /// store: that subscribe is retried every second while the channel stays pending).
    #[error("the server refused the subscription: {0}")]
    SubscribeFailed(ScError),
    /// The client shut down.
    #[error("the client has shut down")]
    ClientClosed,
}

/// A channel's state, and why it is unsubscribed when it is.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelStatus {
    /// The state.
    pub state: ChannelState,
    /// Set when `state` is [`ChannelState::Unsubscribed`].
    pub reason: Option<UnsubscribeReason>,
    /// The last position held on a history channel.
    pub position: Option<StreamPosition>,
}

impl ChannelStatus {
    pub(crate) const PENDING: ChannelStatus = ChannelStatus {
        state: ChannelState::Pending,
        reason: None,
        position: None,
    };

    pub(crate) fn unsubscribed(
        reason: UnsubscribeReason,
        position: Option<StreamPosition>,
    ) -> ChannelStatus {
        ChannelStatus {
            state: ChannelState::Unsubscribed,
            reason: Some(reason),
            position,
        }
    }
}

/// Options of [`Client::subscribe_with`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubscribeOptions {
    /// `waitForAuth`: only subscribe while authenticated (sent as `"waitForAuth":true`).
    pub wait_for_auth: bool,
    /// `data`: free-form data for the server's subscribe middleware (sent unless it is a falsy
    /// JSON value, as the reference clients do).
    pub data: Option<Json>,
    /// `priority`: pending channels are subscribed highest priority first.
    pub priority: i64,
    /// History on join (EXTENSIONS.md E4): ask a history channel to replay its last `limit`
    /// retained publications before acknowledging the first subscribe
    /// (`"data":{"history":{"limit":n}}`). Not sent again once the client holds a position.
    pub history: Option<u64>,
    /// Start from this position (e.g. one saved by an earlier run): the first subscribe asks
    /// to recover from it (`"data":{"recover":{…}}`), as every resubscribe after a reconnect
    /// does on its own.
    pub recover: Option<StreamPosition>,
}

/// A subscription to one channel: a [`Stream`] of the [`Publication`]s on it (the data, and
/// the position on a history channel).
///
/// Messages arrive while the channel is pending or subscribed. The stream **ends** when the
/// channel is unsubscribed for good (by [`Channel::unsubscribe`] or
/// [`Client::unsubscribe`], a `#kickOut`, a refused subscription, or the client shutting down);
/// disconnects do not end it — the channel goes back to pending and is re-subscribed after the
/// next handshake. On a history channel that resubscribe recovers (EXTENSIONS.md E3): the
/// publications missed meanwhile arrive first, in order, exactly once; when that is not
/// possible a [`ClientEvent::Recovery`](crate::ClientEvent::Recovery) says so.
///
/// Several handles may exist for one channel (one per `subscribe` call); each has its own
/// buffer and they share the subscription. Overflow policy: each handle buffers up to
/// [`ClientOptions::channel_buffer`](crate::ClientOptions::channel_buffer) messages; when it is
/// full, new messages are dropped for that handle and counted in [`Channel::dropped`].
///
/// A `Channel` keeps the client's background task alive (it holds a [`Client`]).
pub struct Channel {
    name: Arc<str>,
    source: DataSource<Publication>,
    status: watch::Receiver<ChannelStatus>,
    client: Client,
}

impl Channel {
    pub(crate) fn new(
        name: Arc<str>,
        source: DataSource<Publication>,
        status: watch::Receiver<ChannelStatus>,
        client: Client,
    ) -> Self {
        Channel {
            name,
            source,
            status,
            client,
        }
    }

    /// The channel name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The current state.
    pub fn state(&self) -> ChannelState {
        self.status.borrow().state
    }

    /// The current state and, when unsubscribed, why.
    pub fn status(&self) -> ChannelStatus {
        self.status.borrow().clone()
    }

    /// Waits until the server acknowledged the subscription. Fails with the reason if the
    /// channel ends up unsubscribed instead.
    pub async fn subscribed(&self) -> Result<(), UnsubscribeReason> {
        let mut status = self.status.clone();
        let result = status
            .wait_for(|s| s.state != ChannelState::Pending)
            .await
            .map(|s| s.clone())
            .map_err(|_| UnsubscribeReason::ClientClosed)?;
        match result.state {
            ChannelState::Subscribed => Ok(()),
            _ => Err(result.reason.unwrap_or(UnsubscribeReason::ClientClosed)),
        }
    }

    /// Waits until the channel changes state, then returns the new status (`None` once the
    /// client has shut down).
    pub async fn changed(&mut self) -> Option<ChannelStatus> {
        self.status.changed().await.ok()?;
        Some(self.status.borrow_and_update().clone())
    }

    /// The last position the client holds for this channel (from the subscribe
    /// acknowledgement and the deliveries); `None` on channels without history.
    pub fn position(&self) -> Option<StreamPosition> {
        self.status.borrow().position.clone()
    }

    /// Who is subscribed to this presence channel (EXTENSIONS.md E5); see
    /// [`Client::presence`].
    pub async fn presence(&self) -> Result<Presence, InvokeError> {
        self.client.presence(&self.name).await
    }

    /// Messages dropped so far because this handle's buffer was full.
    pub fn dropped(&self) -> u64 {
        self.source.dropped.load(Ordering::Relaxed)
    }

    /// Unsubscribes the channel (for every handle): sends `#unsubscribe` if connected and ends
    /// the streams.
    pub async fn unsubscribe(&self) -> Result<(), ClientError> {
        self.client.unsubscribe(&self.name).await
    }

    /// Publishes `data` to this channel without acknowledgement (`transmitPublish`).
    pub async fn publish(&self, data: impl Serialize) -> Result<(), ClientError> {
        self.client.publish(&self.name, data).await
    }

    /// Publishes `data` to this channel and waits for the server's acknowledgement
    /// (`invokePublish`).
    pub async fn invoke_publish(&self, data: impl Serialize) -> Result<Option<Json>, InvokeError> {
        self.client.invoke_publish(&self.name, data).await
    }

    /// The client this channel belongs to.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

impl Stream for Channel {
    type Item = Publication;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Publication>> {
        self.source.rx.poll_recv(cx)
    }
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("name", &self.name)
            .field("status", &*self.status.borrow())
            .finish()
    }
}
