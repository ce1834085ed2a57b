//! State shared by the [`Client`](crate::Client) handles and the background task that owns the
//! connection.

use parking_lot::Mutex;
use tokio::runtime::Handle;
use tokio::sync::{broadcast, watch};

use crate::events::{AuthState, ClientEvent, ConnectionState};
use crate::handlers::Registry;
use crate::options::ClientOptions;

/// What handles can read without asking the background task.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub(crate) state: ConnectionState,
    pub(crate) id: Option<String>,
    pub(crate) auth_state: AuthState,
    pub(crate) signed_token: Option<String>,
}

/// State shared by the handles and the background task.
pub(crate) struct Shared {
    pub(crate) options: ClientOptions,
    pub(crate) snapshot: watch::Sender<Snapshot>,
    pub(crate) events: broadcast::Sender<ClientEvent>,
    pub(crate) registry: Mutex<Registry>,
    /// The runtime the client was created in; everything it spawns goes there.
    pub(crate) runtime: Handle,
}
