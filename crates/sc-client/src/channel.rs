//! [`Channel`]: a subscription handle that is a [`Stream`] of the channel's messages; its states
//! (docs/protocol.md §7.6) are in [`subscription`](crate::subscription).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use futures_util::Stream;
use sc_protocol::Json;
use serde::Serialize;
use tokio::sync::watch;

use crate::client::Client;
use crate::error::{ClientError, InvokeError};
use crate::position::{Publication, StreamPosition};
use crate::presence::Presence;
use crate::sink::DataSource;
pub use crate::subscription::{ChannelState, ChannelStatus, SubscribeOptions, UnsubscribeReason};

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
