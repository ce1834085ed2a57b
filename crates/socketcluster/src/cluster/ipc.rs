//! Messages between the master and its worker and broker processes (`sendToMaster`,
//! `sendToWorker`, `sendToBroker`, with replies), over a Unix socket the master listens on.
//!
//! Frames are length-delimited JSON [`Envelope`]s. Each child opens one connection, introduces
//! itself with `hello`, reports `ready` once it serves, and then exchanges `message` /
//! `response` envelopes with the master.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use sc_protocol::Json;
use serde::{Deserialize, Serialize};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use super::ProcessRole;

/// How long a message waits for its reply (SocketCluster's `ipcAckTimeout`).
pub const IPC_ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// One IPC frame.
///
/// Adjacently tagged (`{"type":…,"body":…}`, type first) rather than internally tagged: serde
/// buffers internally tagged content, and the verbatim [`Json`] payloads cannot be read back from
/// such a buffer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "body", rename_all = "camelCase")]
pub enum Envelope {
    /// First frame of a child: who it is.
    Hello {
        /// Worker or broker.
        role: ProcessRole,
        /// Its id (0-based, stable across reboots).
        id: usize,
        /// Its process id.
        pid: u32,
    },
    /// The child serves (worker: listening; broker: accepting workers).
    Ready,
    /// A message expecting a reply with the same `cid`.
    Message {
        /// Call id.
        cid: u64,
        /// Payload.
        data: Json,
    },
    /// The reply to a message.
    Response {
        /// The call id answered.
        rid: u64,
        /// Reply data.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data: Option<Json>,
        /// Error message, when the handler failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
}

/// An IPC call failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum IpcError {
    /// The other side is not connected.
    #[error("the target process is not connected")]
    NotConnected,
    /// No reply within [`IPC_ACK_TIMEOUT`].
    #[error("TimeoutError: IPC response timed out")]
    Timeout,
    /// The other side's handler failed.
    #[error("{0}")]
    Remote(String),
}

/// Handles a message from the other side; its result is the reply.
pub type MessageHandler = Arc<dyn Fn(Json) -> super::BoxFuture<Result<Json, String>> + Send + Sync>;

type PendingReply = oneshot::Sender<Result<Json, IpcError>>;

/// One side of an IPC connection: send messages and await replies; answer the other side's.
#[derive(Clone)]
pub struct IpcPeer {
    outbound: mpsc::UnboundedSender<Envelope>,
    pending: Arc<Mutex<HashMap<u64, PendingReply>>>,
    next_cid: Arc<AtomicU64>,
}

impl IpcPeer {
    /// Sends `data` and waits for the reply.
    pub async fn request(&self, data: Json) -> Result<Json, IpcError> {
        let cid = self.next_cid.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(cid, tx);
        if self.outbound.send(Envelope::Message { cid, data }).is_err() {
            self.pending.lock().remove(&cid);
            return Err(IpcError::NotConnected);
        }
        match tokio::time::timeout(IPC_ACK_TIMEOUT, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(IpcError::NotConnected),
            Err(_) => {
                self.pending.lock().remove(&cid);
                Err(IpcError::Timeout)
            }
        }
    }

    /// Sends a frame without waiting (hello, ready).
    pub fn send(&self, envelope: Envelope) -> Result<(), IpcError> {
        self.outbound
            .send(envelope)
            .map_err(|_| IpcError::NotConnected)
    }

    /// Wraps a connection: the peer (to send) and the driver (to run it).
    pub fn new(stream: UnixStream) -> (IpcPeer, IpcDriver) {
        let (outbound, queue) = mpsc::unbounded_channel::<Envelope>();
        let peer = IpcPeer {
            outbound,
            pending: Arc::default(),
            next_cid: Arc::new(AtomicU64::new(1)),
        };
        let driver = IpcDriver {
            peer: peer.clone(),
            queue,
            framed: Framed::new(stream, LengthDelimitedCodec::new()),
        };
        (peer, driver)
    }

    fn dispatch(&self, envelope: Envelope, handler: &MessageHandler, on_other: &impl Fn(Envelope)) {
        match envelope {
            Envelope::Message { cid, data } => {
                let reply = self.outbound.clone();
                let future = handler(data);
                tokio::spawn(async move {
                    let (data, error) = match future.await {
                        Ok(data) => (Some(data), None),
                        Err(error) => (None, Some(error)),
                    };
                    let _ = reply.send(Envelope::Response {
                        rid: cid,
                        data,
                        error,
                    });
                });
            }
            Envelope::Response { rid, data, error } => {
                if let Some(tx) = self.pending.lock().remove(&rid) {
                    let _ = tx.send(match error {
                        Some(error) => Err(IpcError::Remote(error)),
                        None => Ok(data.unwrap_or(Json::NULL)),
                    });
                }
            }
            other => on_other(other),
        }
    }
}

/// Runs one IPC connection: writes queued envelopes, dispatches incoming ones.
pub struct IpcDriver {
    peer: IpcPeer,
    queue: mpsc::UnboundedReceiver<Envelope>,
    framed: Framed<UnixStream, LengthDelimitedCodec>,
}

impl IpcDriver {
    /// Spawns the connection's task. Messages go to `handler` (its result is the reply);
    /// other frames (hello, ready) to `on_other`. The task ends when the connection closes.
    pub fn spawn(
        self,
        handler: MessageHandler,
        on_other: impl Fn(Envelope) + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let IpcDriver {
            peer,
            mut queue,
            mut framed,
        } = self;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    envelope = queue.recv() => {
                        let Some(envelope) = envelope else { break };
                        let Ok(bytes) = serde_json::to_vec(&envelope) else { continue };
                        if framed.send(bytes::Bytes::from(bytes)).await.is_err() {
                            break;
                        }
                    }
                    frame = framed.next() => {
                        let Some(Ok(frame)) = frame else { break };
                        let Ok(envelope) = serde_json::from_slice::<Envelope>(&frame) else {
                            tracing::warn!("ignoring an undecodable IPC frame");
                            continue;
                        };
                        peer.dispatch(envelope, &handler, &on_other);
                    }
                }
            }
            peer.pending.lock().clear();
        })
    }
}

/// A child's end: connects to the master's socket and says hello.
pub async fn connect_child(
    socket: &Path,
    role: ProcessRole,
    id: usize,
    handler: MessageHandler,
) -> std::io::Result<(IpcPeer, tokio::task::JoinHandle<()>)> {
    let stream = UnixStream::connect(socket).await?;
    let (peer, driver) = IpcPeer::new(stream);
    let task = driver.spawn(handler, |_| {});
    let _ = peer.send(Envelope::Hello {
        role,
        id,
        pid: std::process::id(),
    });
    Ok((peer, task))
}

/// A message handler that user code sets later (`on_master_message`, `on_message`): the IPC side
/// holds [`HandlerSlot::handler`], which reads the slot on every message and answers `null` while
/// it is empty.
#[derive(Clone, Default)]
pub struct HandlerSlot(Arc<Mutex<Option<MessageHandler>>>);

impl HandlerSlot {
    /// Sets (or replaces) the handler.
    pub fn set<F, Fut>(&self, handler: F)
    where
        F: Fn(Json) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Json, String>> + Send + 'static,
    {
        *self.0.lock() = Some(Arc::new(move |data| Box::pin(handler(data))));
    }

    /// A handler that forwards to whatever the slot holds when a message arrives.
    pub fn handler(&self) -> MessageHandler {
        let slot = self.0.clone();
        Arc::new(move |data| {
            let handler = slot.lock().clone();
            match handler {
                Some(handler) => handler(data),
                None => Box::pin(async { Ok(Json::NULL) }),
            }
        })
    }
}

/// A handler that answers every message with `null`.
pub fn null_handler() -> MessageHandler {
    Arc::new(|_| Box::pin(async { Ok(Json::NULL) }))
}

impl std::fmt::Debug for IpcDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpcDriver").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for HandlerSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandlerSlot").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for IpcPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpcPeer").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_shapes() {
        let hello = Envelope::Hello {
            role: ProcessRole::Worker,
            id: 1,
            pid: 42,
        };
        assert_eq!(
            serde_json::to_string(&hello).unwrap(),
            r#"{"type":"hello","body":{"role":"worker","id":1,"pid":42}}"#
        );
        let response = Envelope::Response {
            rid: 3,
            data: Some(Json::encode(&1).unwrap()),
            error: None,
        };
        assert_eq!(
            serde_json::to_string(&response).unwrap(),
            r#"{"type":"response","body":{"rid":3,"data":1}}"#
        );
    }

    #[tokio::test]
    async fn request_and_reply_over_a_socket_pair() {
        let (a, b) = UnixStream::pair().unwrap();
        let doubler: MessageHandler = Arc::new(|data: Json| {
            Box::pin(async move {
                let n: u64 = data.parse().map_err(|e| e.to_string())?;
                Ok(Json::encode(&(n * 2)).unwrap())
            })
        });
        let (client, driver) = IpcPeer::new(a);
        driver.spawn(null_handler(), |_| {});
        let (_server, driver) = IpcPeer::new(b);
        driver.spawn(doubler, |_| {});
        let reply = client.request(Json::encode(&21).unwrap()).await.unwrap();
        assert_eq!(reply.get(), "42");
        let error = client.request(Json::string("x")).await.unwrap_err();
        assert!(matches!(error, IpcError::Remote(_)));
    }
}
