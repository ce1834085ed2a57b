//! Event handlers: what runs when a client emits or invokes an event.

use std::future::Future;

use sc_protocol::{Json, ScError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::socket::Socket;

/// A boxed, sendable, `'static` future (handlers, middleware): the workspace's one
/// [`sc_broker::BoxFuture`], at the `'static` lifetime.
pub type BoxFuture<T> = sc_broker::BoxFuture<'static, T>;

/// One inbound event: a transmit (no response expected) or an invoke (the handler's result
/// becomes the response).
#[derive(Debug, Clone)]
pub struct Request {
    pub(crate) socket: Socket,
    pub(crate) event: String,
    pub(crate) data: Option<Json>,
    pub(crate) cid: Option<u64>,
}

impl Request {
    /// The socket the event came from.
    pub fn socket(&self) -> &Socket {
        &self.socket
    }

    /// The event name.
    pub fn event(&self) -> &str {
        &self.event
    }

    /// The event data, verbatim as the client sent it (`None` when the client sent none).
    pub fn data(&self) -> Option<&Json> {
        self.data.as_ref()
    }

    /// Parses the data into `T` (a missing `data` parses as `null`). Fails with an
    /// `InvalidArgumentsError` the client can read.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ScError> {
        self.data
            .as_ref()
            .unwrap_or(&Json::NULL)
            .parse()
            .map_err(|e| {
                ScError::new(
                    sc_protocol::error::names::INVALID_ARGUMENTS,
                    format!("Invalid data for {}: {e}", self.event),
                )
            })
    }

    /// Whether the client waits for a response (it sent a `cid`).
    pub fn expects_response(&self) -> bool {
        self.cid.is_some()
    }
}

/// A successful response: a plain acknowledgement, or data.
///
/// Handlers return anything that converts into a `Reply`: `()` for a plain ack (`{"rid":n}`), a
/// [`Json`] for data, or build one from any serialisable value with [`Reply::json`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reply(pub(crate) Option<Json>);

impl Reply {
    /// A plain acknowledgement without data.
    pub fn ack() -> Reply {
        Reply(None)
    }

    /// A response carrying `data` verbatim.
    pub fn data(data: Json) -> Reply {
        Reply(Some(data))
    }

    /// A response carrying `value`, serialised as JSON.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Reply, ScError> {
        Json::encode(value)
            .map(|j| Reply(Some(j)))
            .map_err(|e| ScError::new("SerializationError", e.to_string()))
    }
}

impl From<()> for Reply {
    fn from((): ()) -> Reply {
        Reply(None)
    }
}

impl From<Json> for Reply {
    fn from(data: Json) -> Reply {
        Reply(Some(data))
    }
}

impl From<Option<Json>> for Reply {
    fn from(data: Option<Json>) -> Reply {
        Reply(data)
    }
}

/// What [`Exchange::publish`](crate::Exchange::publish) returns: on a channel with history the
/// reply carries the position (`{"offset":42,"epoch":"…"}`), otherwise it is a plain ack.
impl From<Option<sc_broker::Position>> for Reply {
    fn from(position: Option<sc_broker::Position>) -> Reply {
        Reply(position.and_then(|p| Json::from_text(&p.to_json()).ok()))
    }
}

/// Code that handles one event name.
///
/// Implemented for every `Fn(Request) -> impl Future<Output = Result<R, E>>` where `R: Into<Reply>`
/// and `E: Into<ScError>`, so plain async closures work:
///
/// ```
/// use sc_server::{Reply, Request};
/// use sc_protocol::ScError;
///
/// let echo = |req: Request| async move { Ok::<_, ScError>(Reply::from(req.data().cloned())) };
/// # fn assert_handler<H: sc_server::Handler>(_: H) {}
/// assert_handler(echo);
/// ```
pub trait Handler: Send + Sync + 'static {
    /// Runs the handler for one request.
    fn call(&self, request: Request) -> BoxFuture<Result<Reply, ScError>>;
}

impl<F, Fut, R, E> Handler for F
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, E>> + Send + 'static,
    R: Into<Reply>,
    E: Into<ScError>,
{
    fn call(&self, request: Request) -> BoxFuture<Result<Reply, ScError>> {
        let fut = self(request);
        Box::pin(async move { fut.await.map(Into::into).map_err(Into::into) })
    }
}

/// Code that runs for every new socket, once its handshake succeeded.
pub trait ConnectionHandler: Send + Sync + 'static {
    /// Runs for one socket. Inbound events wait until this completes, so register the socket's
    /// handlers here before awaiting anything slow.
    fn call(&self, socket: Socket) -> BoxFuture<()>;
}

impl<F, Fut> ConnectionHandler for F
where
    F: Fn(Socket) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    fn call(&self, socket: Socket) -> BoxFuture<()> {
        Box::pin(self(socket))
    }
}
