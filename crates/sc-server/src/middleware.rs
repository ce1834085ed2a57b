//! Middleware: code that decides who may connect, subscribe, publish and emit.
//!
//! Every point where SocketCluster has middleware has one here. A middleware is an async closure
//! that receives the action and either returns it (possibly changed: e.g. transformed data) to
//! allow it, or a [`Block`]. Several middlewares of one kind run in registration order; the first
//! block stops the chain. Each call is bounded by `middlewareTimeout` and a panic counts as a
//! block, so a broken middleware never stalls or crashes the server.
//!
//! How the reference styles map onto this:
//!
//! - **v14 (`addMiddleware(type, fn)`)**: one registration method per type:
//!   [`Middleware::handshake_ws`], [`Middleware::handshake_sc`], [`Middleware::authenticate`],
//!   [`Middleware::subscribe`], [`Middleware::publish_in`], [`Middleware::publish_out`],
//!   [`Middleware::emit`]. `next()` is `Ok(action)`, `next(err)` is `Err(Block::Error(err))`,
//!   `next(true)` is `Err(Block::Silent)`.
//! - **v15+ (`setMiddleware(type, async stream => for await (action of stream) …)`)**: the
//!   `inbound` stream becomes [`Middleware::inbound`], one closure called with each
//!   [`InboundAction`] (match on its variant as you would on `action.type`); `action.allow()` is
//!   `Ok(action)`, `action.block(err)` is `Err(Block::Error(err))`, `action.block()` is
//!   `Err(Block::Silent)`. `handshake` maps to `handshake_ws` + `handshake_sc`, `inboundRaw` to
//!   [`Middleware::inbound_raw`], `outbound` to [`Middleware::publish_out`].
//!
//! ```
//! use sc_server::middleware::{Block, SubscribeAction};
//! use sc_server::{ScError, Server};
//!
//! let server = Server::new(Default::default()).unwrap();
//! server.middleware().subscribe(|action: SubscribeAction| async move {
//!     if action.channel.starts_with("admin/") && !action.socket.is_authenticated() {
//!         return Err(Block::Error(ScError::new("ForbiddenChannelError", "Sign in first")));
//!     }
//!     Ok(action)
//! });
//! ```

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use parking_lot::RwLock;
use sc_protocol::error::names;
use sc_protocol::{HeartbeatDialect, Json, Publication, ScError};

use crate::auth::AuthToken;
use crate::handler::BoxFuture;
use crate::socket::{Socket, UpgradeRequest};

/// A middleware's refusal.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    /// Refuse with this error (the client sees it as the response error).
    Error(ScError),
    /// Refuse without an error of our own: the client gets a `SilentMiddlewareBlockedError`.
    Silent,
}

impl<E: Into<ScError>> From<E> for Block {
    fn from(error: E) -> Block {
        Block::Error(error.into())
    }
}

/// The HTTP upgrade request (before `101`). A block answers `401 Unauthorized`.
#[derive(Debug, Clone)]
pub struct HandshakeWsAction {
    /// The request: remote address, URI with query, headers (origin, cookies, …).
    pub request: UpgradeRequest,
}

/// The SocketCluster `#handshake`, after the token (if any) was verified. A block closes the
/// socket with the error's `statusCode` (a number in 4000–4999) or 4008.
#[derive(Debug, Clone)]
pub struct HandshakeScAction {
    /// The connecting socket (not open yet).
    pub socket: Socket,
    /// The verified token the client sent, if any.
    pub auth_token: Option<AuthToken>,
}

/// A token that verified, before the socket counts as authenticated (handshake or
/// `#authenticate`). Block with an error carrying `isBadToken: true` to make the client drop it.
#[derive(Debug, Clone)]
pub struct AuthenticateAction {
    /// The socket.
    pub socket: Socket,
    /// The verified token.
    pub token: AuthToken,
}

/// An application event from a client: a transmit (no `cid`) or an invoke.
#[derive(Debug, Clone)]
pub struct EventAction {
    /// The socket.
    pub socket: Socket,
    /// Event name.
    pub event: String,
    /// Event data; replace it to transform what the handler sees.
    pub data: Option<Json>,
    /// Whether the client expects a response.
    pub is_invoke: bool,
}

/// A `#subscribe`.
#[derive(Debug, Clone)]
pub struct SubscribeAction {
    /// The socket.
    pub socket: Socket,
    /// Channel name.
    pub channel: String,
    /// The subscription's `data` option.
    pub data: Option<Json>,
    /// The channel's `waitForAuth` option.
    pub wait_for_auth: bool,
}

/// A client `#publish`. Replace `data` to transform what subscribers receive.
#[derive(Debug, Clone)]
pub struct PublishAction {
    /// The socket.
    pub socket: Socket,
    /// Channel name.
    pub channel: String,
    /// Published data.
    pub data: Option<Json>,
}

/// Every inbound action of a socket, as v15+'s `inbound` middleware stream sees them.
#[derive(Debug, Clone)]
pub enum InboundAction {
    /// An application event without `cid`.
    Transmit(EventAction),
    /// An application event with `cid`.
    Invoke(EventAction),
    /// `#subscribe`.
    Subscribe(SubscribeAction),
    /// `#publish`.
    PublishIn(PublishAction),
    /// A verified token (handshake or `#authenticate`).
    Authenticate(AuthenticateAction),
}

impl InboundAction {
    /// v15+'s `action.type`.
    pub fn type_name(&self) -> &'static str {
        self.kind().type_name()
    }

    /// This action's kind.
    pub(crate) fn kind(&self) -> InboundKind {
        match self {
            InboundAction::Transmit(_) => InboundKind::Transmit,
            InboundAction::Invoke(_) => InboundKind::Invoke,
            InboundAction::Subscribe(_) => InboundKind::Subscribe,
            InboundAction::PublishIn(_) => InboundKind::PublishIn,
            InboundAction::Authenticate(_) => InboundKind::Authenticate,
        }
    }
}

/// The kind of an [`InboundAction`], without the action: what a block's error names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InboundKind {
    Transmit,
    Invoke,
    Subscribe,
    PublishIn,
    Authenticate,
}

impl InboundKind {
    /// v15+'s `action.type`.
    pub(crate) fn type_name(self) -> &'static str {
        match self {
            InboundKind::Transmit => "transmit",
            InboundKind::Invoke => "invoke",
            InboundKind::Subscribe => "subscribe",
            InboundKind::PublishIn => "publishIn",
            InboundKind::Authenticate => "authenticate",
        }
    }

    /// This kind's bit (see [`kind`]).
    fn bit(self) -> u8 {
        match self {
            InboundKind::Transmit => kind::TRANSMIT,
            InboundKind::Invoke => kind::INVOKE,
            InboundKind::Subscribe => kind::SUBSCRIBE,
            InboundKind::PublishIn => kind::PUBLISH_IN,
            InboundKind::Authenticate => kind::AUTHENTICATE,
        }
    }

    /// v14's middleware type for this kind.
    fn v14_type(self) -> &'static str {
        match self {
            InboundKind::Transmit | InboundKind::Invoke => "emit",
            InboundKind::Subscribe => "subscribe",
            InboundKind::PublishIn => "publishIn",
            InboundKind::Authenticate => "authenticate",
        }
    }
}

/// A raw inbound message (every frame, before it is decoded). Replace `message` to rewrite it.
#[derive(Debug, Clone)]
pub struct RawAction {
    /// The socket.
    pub socket: Socket,
    /// The frame's payload.
    pub message: Bytes,
}

/// What publish-out middleware decides for one subscriber.
#[derive(Debug, Clone, PartialEq)]
pub enum OutboundVerdict {
    /// Deliver the shared frame unchanged.
    Allow,
    /// Deliver this data instead (encoded for this subscriber only).
    Replace(Json),
    /// Deliver nothing to this subscriber.
    Block,
}

type AsyncMiddleware<A> = Arc<dyn Fn(A) -> BoxFuture<Result<A, Block>> + Send + Sync>;
type OutboundMiddleware = Arc<dyn Fn(&Socket, &Publication) -> OutboundVerdict + Send + Sync>;

/// The server's middleware, by kind. Get it with [`crate::Server::middleware`].
#[derive(Default)]
pub struct Middleware {
    handshake_ws: Stack<HandshakeWsAction>,
    handshake_sc: Stack<HandshakeScAction>,
    inbound: Stack<InboundAction>,
    /// The kinds of inbound action (bits, see [`InboundAction::kind`]) some inbound middleware
    /// looks at: the others skip the stack, which would only hand them back unchanged.
    inbound_kinds: AtomicU8,
    inbound_raw: Stack<RawAction>,
    outbound: RwLock<Vec<OutboundMiddleware>>,
    has_outbound: AtomicBool,
    /// Blocks per point of [`crate::metrics::MIDDLEWARE_POINTS`].
    blocked: [std::sync::atomic::AtomicU64; crate::metrics::MIDDLEWARE_POINTS.len()],
}

/// Bits of [`InboundAction`] kinds.
mod kind {
    pub(super) const TRANSMIT: u8 = 1;
    pub(super) const INVOKE: u8 = 2;
    pub(super) const SUBSCRIBE: u8 = 4;
    pub(super) const PUBLISH_IN: u8 = 8;
    pub(super) const AUTHENTICATE: u8 = 16;
    pub(super) const ALL: u8 = u8::MAX;
}

/// The middlewares of one kind, in registration order.
///
/// Registrations are rare and runs are many: a run takes the current list with one reference
/// count (copy-on-write: a registration replaces the list).
struct Stack<A> {
    items: RwLock<Arc<[Entry<A>]>>,
    any: AtomicBool,
}

/// One registered middleware.
struct Entry<A> {
    /// The kinds of action it looks at ([`kind`] bits; [`kind::ALL`] outside the inbound
    /// stack): the others pass it by, as it would hand them back unchanged.
    kinds: u8,
    call: AsyncMiddleware<A>,
}

impl<A> Clone for Entry<A> {
    fn clone(&self) -> Self {
        Entry {
            kinds: self.kinds,
            call: self.call.clone(),
        }
    }
}

impl<A> Default for Stack<A> {
    fn default() -> Self {
        Stack {
            items: RwLock::new(Arc::from([])),
            any: AtomicBool::new(false),
        }
    }
}

impl<A: Send + 'static> Stack<A> {
    fn push(&self, middleware: AsyncMiddleware<A>) {
        self.push_for(kind::ALL, middleware);
    }

    /// Registers a middleware that only looks at actions of `kinds`.
    fn push_for(&self, kinds: u8, middleware: AsyncMiddleware<A>) {
        let mut items = self.items.write();
        let mut next = items.to_vec();
        next.push(Entry {
            kinds,
            call: middleware,
        });
        *items = next.into();
        self.any.store(true, Ordering::Release);
    }

    fn is_empty(&self) -> bool {
        !self.any.load(Ordering::Acquire)
    }

    /// Runs the middlewares that look at actions of kind `kind` (a [`kind`] bit) in order.
    async fn run(&self, mut action: A, kind: u8, timeout: Duration) -> Result<A, Block> {
        if self.is_empty() {
            return Ok(action);
        }
        let items = self.items.read().clone();
        for entry in items.iter().filter(|entry| entry.kinds & kind != 0) {
            let mut call = std::panic::AssertUnwindSafe((entry.call)(action)).catch_unwind();
            // Most middleware answers at once: the timer (a clock read and a timer entry) is
            // armed only for one that waits, from its first poll on.
            let first = std::future::poll_fn(|cx| Poll::Ready(call.poll_unpin(cx))).await;
            let outcome = match first {
                Poll::Ready(outcome) => Ok(outcome),
                Poll::Pending => tokio::time::timeout(timeout, call).await,
            };
            action = match outcome {
                Ok(Ok(result)) => result?,
                Ok(Err(_)) => {
                    tracing::error!("a middleware panicked; the action is blocked");
                    return Err(Block::Error(ScError::new(
                        "MiddlewareError",
                        "A middleware failed",
                    )));
                }
                Err(_) => {
                    tracing::warn!(
                        "a middleware did not answer within middlewareTimeout; the action is blocked"
                    );
                    return Err(Block::Error(ScError::new(
                        names::TIMEOUT,
                        "Middleware timed out",
                    )));
                }
            };
        }
        Ok(action)
    }
}

fn boxed<A, F, Fut>(f: F) -> AsyncMiddleware<A>
where
    F: Fn(A) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<A, Block>> + Send + 'static,
{
    Arc::new(move |action| Box::pin(f(action)))
}

macro_rules! inbound_kind {
    ($(#[$doc:meta])* $method:ident, $action:ty, $kinds:expr, $($variant:ident)|+) => {
        $(#[$doc])*
        pub fn $method<F, Fut>(&self, f: F)
        where
            F: Fn($action) -> Fut + Send + Sync + 'static,
            Fut: Future<Output = Result<$action, Block>> + Send + 'static,
        {
            let f = Arc::new(f);
            self.inbound.push_for($kinds, Arc::new(move |action: InboundAction| -> BoxFuture<Result<InboundAction, Block>> {
                match action {
                    $(InboundAction::$variant(inner) => {
                        let fut = f(inner);
                        Box::pin(async move { fut.await.map(InboundAction::$variant) })
                    })+
                    other => Box::pin(std::future::ready(Ok(other))),
                }
            }));
            self.inbound_kinds.fetch_or($kinds, Ordering::AcqRel);
        }
    };
}

impl Middleware {
    /// Runs on every WebSocket upgrade request (after the origin check). Block: HTTP 401.
    pub fn handshake_ws<F, Fut>(&self, f: F)
    where
        F: Fn(HandshakeWsAction) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<HandshakeWsAction, Block>> + Send + 'static,
    {
        self.handshake_ws.push(boxed(f));
    }

    /// Runs on `#handshake`, after token verification. Block: error response, close 4008 or the
    /// error's `statusCode`.
    pub fn handshake_sc<F, Fut>(&self, f: F)
    where
        F: Fn(HandshakeScAction) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<HandshakeScAction, Block>> + Send + 'static,
    {
        self.handshake_sc.push(boxed(f));
    }

    /// Runs on every inbound action (v15+'s `inbound` stream).
    pub fn inbound<F, Fut>(&self, f: F)
    where
        F: Fn(InboundAction) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<InboundAction, Block>> + Send + 'static,
    {
        self.inbound.push(boxed(f));
        self.inbound_kinds.fetch_or(kind::ALL, Ordering::AcqRel);
    }

    inbound_kind!(
        /// Runs on `#subscribe` (v14 `subscribe`).
        subscribe, SubscribeAction, kind::SUBSCRIBE, Subscribe
    );
    inbound_kind!(
        /// Runs on client `#publish` (v14 `publishIn`).
        publish_in, PublishAction, kind::PUBLISH_IN, PublishIn
    );
    inbound_kind!(
        /// Runs on application events, with or without `cid` (v14 `emit`).
        emit, EventAction, kind::TRANSMIT | kind::INVOKE, Transmit | Invoke
    );
    inbound_kind!(
        /// Runs when a token verified, before the socket is authenticated (v14 `authenticate`).
        authenticate, AuthenticateAction, kind::AUTHENTICATE, Authenticate
    );

    /// Runs on every inbound frame before decoding (v15+ `inboundRaw`). Blocked frames are
    /// dropped silently.
    pub fn inbound_raw<F, Fut>(&self, f: F)
    where
        F: Fn(RawAction) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<RawAction, Block>> + Send + 'static,
    {
        self.inbound_raw.push(boxed(f));
    }

    /// Runs for each subscriber of each publication (v14 `publishOut`, v15+ `outbound`). It is
    /// synchronous on purpose: it sits on the fan-out path, which never waits.
    pub fn publish_out<F>(&self, f: F)
    where
        F: Fn(&Socket, &Publication) -> OutboundVerdict + Send + Sync + 'static,
    {
        self.outbound.write().push(Arc::new(f));
        self.has_outbound.store(true, Ordering::Release);
    }

    pub(crate) fn has_handshake_ws(&self) -> bool {
        !self.handshake_ws.is_empty()
    }

    pub(crate) async fn run_handshake_ws(
        &self,
        action: HandshakeWsAction,
        timeout: Duration,
    ) -> Result<(), Block> {
        let result = self
            .handshake_ws
            .run(action, kind::ALL, timeout)
            .await
            .map(drop);
        self.count_block("handshakeWS", result.is_err());
        result
    }

    pub(crate) async fn run_handshake_sc(
        &self,
        action: HandshakeScAction,
        timeout: Duration,
    ) -> Result<(), Block> {
        let result = self
            .handshake_sc
            .run(action, kind::ALL, timeout)
            .await
            .map(drop);
        self.count_block("handshakeSC", result.is_err());
        result
    }

    /// Whether some inbound middleware looks at application events (with a `cid`: invokes).
    pub(crate) fn has_inbound_event(&self, invoke: bool) -> bool {
        let bit = if invoke { kind::INVOKE } else { kind::TRANSMIT };
        self.inbound_kinds.load(Ordering::Acquire) & bit != 0
    }

    /// Whether some inbound middleware looks at actions of `kind`.
    pub(crate) fn has_inbound_for(&self, kind: InboundKind) -> bool {
        self.inbound_kinds.load(Ordering::Acquire) & kind.bit() != 0
    }

    /// Runs the inbound middleware that looks at actions like `action`, in registration order.
    pub(crate) async fn run_inbound(
        &self,
        action: InboundAction,
        timeout: Duration,
    ) -> Result<InboundAction, Block> {
        let kind = action.kind();
        let result = self.inbound.run(action, kind.bit(), timeout).await;
        let point = kind.type_name();
        self.count_block(point, result.is_err());
        result
    }

    fn count_block(&self, point: &str, blocked: bool) {
        if blocked
            && let Some(slot) = crate::metrics::MIDDLEWARE_POINTS
                .iter()
                .position(|p| *p == point)
        {
            self.blocked[slot].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Blocks so far, by point.
    pub(crate) fn blocked(&self) -> Vec<(String, u64)> {
        crate::metrics::MIDDLEWARE_POINTS
            .iter()
            .zip(&self.blocked)
            .map(|(p, n)| ((*p).to_owned(), n.load(Ordering::Relaxed)))
            .collect()
    }

    pub(crate) fn has_inbound_raw(&self) -> bool {
        !self.inbound_raw.is_empty()
    }

    pub(crate) async fn run_inbound_raw(
        &self,
        action: RawAction,
        timeout: Duration,
    ) -> Result<RawAction, Block> {
        let result = self.inbound_raw.run(action, kind::ALL, timeout).await;
        self.count_block("inboundRaw", result.is_err());
        result
    }

    pub(crate) fn has_outbound(&self) -> bool {
        self.has_outbound.load(Ordering::Acquire)
    }

    /// The combined verdict of every publish-out middleware for one subscriber.
    pub(crate) fn run_outbound(
        &self,
        socket: &Socket,
        publication: &Publication,
    ) -> OutboundVerdict {
        let mut verdict = OutboundVerdict::Allow;
        for middleware in self.outbound.read().iter() {
            let current;
            let seen = match &verdict {
                OutboundVerdict::Replace(data) => {
                    current = Publication::new(publication.channel(), Some(data));
                    &current
                }
                _ => publication,
            };
            match middleware(socket, seen) {
                OutboundVerdict::Allow => {}
                OutboundVerdict::Block => return OutboundVerdict::Block,
                replaced => verdict = replaced,
            }
        }
        verdict
    }
}

/// The error a client sees for a block: the middleware's own, or the generated silent one in the
/// dialect's wording (v14: `Action was silently blocked by emit middleware`; v15+: `The invoke
/// AGAction was blocked by inbound middleware`).
pub(crate) fn block_error(
    block: Block,
    dialect: Option<HeartbeatDialect>,
    v15_action: &str,
    v15_stream: &str,
    v14_type: &str,
) -> ScError {
    match block {
        Block::Error(error) => error,
        Block::Silent if dialect == Some(HeartbeatDialect::V1) => ScError::new(
            names::SILENT_MIDDLEWARE_BLOCKED,
            format!("Action was silently blocked by {v14_type} middleware"),
        )
        .with("type", v14_type),
        Block::Silent => ScError::new(
            names::SILENT_MIDDLEWARE_BLOCKED,
            format!("The {v15_action} AGAction was blocked by {v15_stream} middleware"),
        )
        .with("type", v15_stream),
    }
}

/// [`block_error`] for an inbound action of `kind`.
pub(crate) fn inbound_block_error(
    block: Block,
    dialect: Option<HeartbeatDialect>,
    kind: InboundKind,
) -> ScError {
    block_error(block, dialect, kind.type_name(), "inbound", kind.v14_type())
}

impl std::fmt::Debug for Middleware {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Middleware").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adds(n: u32) -> AsyncMiddleware<u32> {
        boxed(move |x: u32| async move { Ok(x * 10 + n) })
    }

    #[tokio::test]
    async fn a_stack_runs_in_order_and_skips_middleware_of_other_kinds() {
        let stack = Stack::<u32>::default();
        assert_eq!(stack.run(7, kind::ALL, Duration::from_secs(1)).await, Ok(7));
        stack.push(adds(1));
        stack.push_for(kind::SUBSCRIBE, adds(2));
        stack.push_for(kind::PUBLISH_IN | kind::SUBSCRIBE, adds(3));
        let timeout = Duration::from_secs(1);
        assert_eq!(stack.run(0, kind::SUBSCRIBE, timeout).await, Ok(123));
        assert_eq!(stack.run(0, kind::PUBLISH_IN, timeout).await, Ok(13));
        assert_eq!(stack.run(0, kind::INVOKE, timeout).await, Ok(1));
        // A run keeps the list it started with; a registration meanwhile applies to later runs.
        let before = stack.items.read().clone();
        stack.push(adds(4));
        assert_eq!(before.len(), 3);
        assert_eq!(stack.run(0, kind::INVOKE, timeout).await, Ok(14));
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_middleware_is_bounded_by_the_timeout_and_panics_block() {
        let timeout = Duration::from_millis(200);
        let stack = Stack::<u32>::default();
        // Answers after 150 ms: within the timeout, although it was not ready at once.
        stack.push(boxed(|x: u32| async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            Ok(x + 1)
        }));
        assert_eq!(stack.run(1, kind::ALL, timeout).await, Ok(2));

        stack.push(boxed(|x: u32| async move {
            if x == 10 {
                std::future::pending::<()>().await;
            }
            if x == 20 {
                panic!("middleware bug");
            }
            Ok(x)
        }));
        let started = tokio::time::Instant::now();
        let Err(Block::Error(error)) = stack.run(9, kind::ALL, timeout).await else {
            panic!("a hanging middleware times out");
        };
        assert_eq!(error.name(), Some(names::TIMEOUT));
        // (Paused clock.) The first middleware took 150 ms, the second was given its own 200.
        assert!(started.elapsed() >= Duration::from_millis(350));
        let Err(Block::Error(error)) = stack.run(19, kind::ALL, timeout).await else {
            panic!("a panicking middleware blocks");
        };
        assert_eq!(error.name(), Some("MiddlewareError"));
        assert_eq!(stack.run(3, kind::ALL, timeout).await, Ok(4));
    }
}
