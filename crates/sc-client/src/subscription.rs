//! A subscription's state (the channel state machine of docs/protocol.md §7.6) and options,
//! shared by the [`Channel`](crate::Channel) handles and
//! the background task that keeps the subscriptions.

use sc_protocol::{Json, ScError};

use crate::position::StreamPosition;

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
/// [`Channel::subscribed`](crate::Channel::subscribed)).
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

/// Options of [`Client::subscribe_with`](crate::Client::subscribe_with).
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
