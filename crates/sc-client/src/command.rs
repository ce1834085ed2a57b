//! Messages from [`Client`](crate::Client) handles to the background task.

use std::time::Duration;

use sc_protocol::{Json, ScError};
use tokio::sync::{oneshot, watch};

use crate::error::{ClientError, InvokeError};
use crate::events::AuthStatus;
use crate::position::Publication;
use crate::sink::DataSink;
use crate::subscription::{ChannelStatus, SubscribeOptions};

/// What the background task is asked to do.
pub(crate) enum Command {
    /// Send an event (queued while not open), optionally waiting for its response.
    Emit {
        event: String,
        data: Option<Json>,
        reply: Option<Reply>,
        timeout: Duration,
    },
    /// Subscribe to a channel and attach one more consumer buffer to it.
    Subscribe {
        name: String,
        options: SubscribeOptions,
        sink: DataSink<Publication>,
        reply: oneshot::Sender<watch::Receiver<ChannelStatus>>,
    },
    /// Unsubscribe from a channel.
    Unsubscribe { name: String },
    /// Subscribe every pending channel now (for `autoSubscribeOnConnect: false`).
    ProcessPendingSubscriptions,
    /// Forget the token and tell the server.
    Deauthenticate {
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
    /// Close the connection with this code (reconnect rules apply to the code).
    Disconnect { code: u16, reason: String },
    /// Connect now if closed.
    Connect,
}

/// Who waits for the response to an event.
pub(crate) enum Reply {
    /// An application `invoke`.
    Invoke(oneshot::Sender<Result<Option<Json>, InvokeError>>),
    /// [`Client::authenticate`](crate::Client::authenticate): the token is saved on success.
    Authenticate {
        token: String,
        reply: oneshot::Sender<Result<AuthStatus, InvokeError>>,
    },
}

impl Reply {
    /// Reports a local failure (timeout, bad connection) to the waiting caller.
    pub(crate) fn fail(self, error: InvokeError) {
        match self {
            Reply::Invoke(tx) => {
                let _ = tx.send(Err(error));
            }
            Reply::Authenticate { reply, .. } => {
                let _ = reply.send(Err(error));
            }
        }
    }
}

/// A procedure handler's answer, on its way back to the connection it came from.
pub(crate) struct ProcedureResponse {
    /// The connection generation the request arrived on.
    pub(crate) epoch: u64,
    /// The server's cid (our `rid`).
    pub(crate) cid: u64,
    /// The handler's result.
    pub(crate) result: Result<Option<Json>, ScError>,
}
