//! [`Server`]: one worker's realtime server, its handlers and its sockets.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::response::Response;
use sc_broker::{Broker, KvStore, MemoryBroker, MemoryKv};
use sc_protocol::CloseCode;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::auth::AuthEngine;
use crate::error::SendError;
use crate::exchange::Exchange;
use crate::handler::{ConnectionHandler, Handler};
use crate::middleware::Middleware;
use crate::options::{InvalidOptions, ServerOptions};
use crate::shared::ServerShared;
use crate::socket::Socket;

/// How long [`Server::serve_with_shutdown`] lets HTTP requests in flight finish once it stopped
/// accepting.
pub const HTTP_FINISH: Duration = Duration::from_secs(3);

/// A SocketCluster realtime server. Cheap to clone; all clones are the same server.
///
/// ```no_run
/// use sc_server::{Reply, Request, Server, ServerOptions, Socket};
/// use sc_protocol::ScError;
///
/// # async fn run() -> anyhow::Result<()> {
/// let server = Server::new(ServerOptions::default())?;
/// let exchange = server.exchange();
/// server.on("echo", |req: Request| async move { Ok::<_, ScError>(Reply::from(req.data().cloned())) })?;
/// server.on_connection(move |socket: Socket| {
///     let exchange = exchange.clone();
///     async move {
///         socket
///             .on("ping", move |_req: Request| {
///                 let exchange = exchange.clone();
///                 async move { exchange.publish("pong", &1).await.map_err(ScError::from) }
///             })
///             .expect("not a reserved event name");
///     }
/// });
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
/// server.serve(listener, server.app(None)).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Server(pub(crate) Arc<ServerShared>);

pub use crate::auth::AuthEvent;

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("path", &self.options().path)
            .field("clients", &self.clients_count())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A server with the in-process broker (one process, no external service).
    pub fn new(options: ServerOptions) -> Result<Server, InvalidOptions> {
        Server::with_broker(options, Arc::new(MemoryBroker::new()))
    }

    /// A server whose channels go through `broker` (broker processes, Redis, NATS, …).
    pub fn with_broker(
        options: ServerOptions,
        broker: Arc<dyn Broker>,
    ) -> Result<Server, InvalidOptions> {
        Server::with_engine(options, broker, Arc::new(MemoryKv::new()))
    }

    /// A server whose channels go through `broker` and whose key/value data lives in `kv`.
    pub fn with_engine(
        options: ServerOptions,
        broker: Arc<dyn Broker>,
        kv: Arc<dyn KvStore>,
    ) -> Result<Server, InvalidOptions> {
        ServerShared::new(options, broker, kv).map(|shared| Server(Arc::new(shared)))
    }

    /// The server's options.
    pub fn options(&self) -> &ServerOptions {
        self.0.options()
    }

    /// Publish to and subscribe to channels from server code.
    pub fn exchange(&self) -> Exchange {
        Exchange::new(self.0.hub().clone(), self.0.kv().clone())
    }

    /// Runs `handler` for every socket once its handshake succeeded (SocketCluster's `connection`
    /// event). Handlers run in registration order.
    pub fn on_connection<H: ConnectionHandler>(&self, handler: H) {
        self.0.add_connection_handler(Arc::new(handler));
    }

    /// The middleware: who may connect, subscribe, publish and emit.
    pub fn middleware(&self) -> &Middleware {
        self.0.middleware()
    }

    /// The auth engine (signs and verifies tokens with the server's `authKey`).
    pub fn auth(&self) -> &AuthEngine {
        self.0.auth()
    }

    /// Runs `listener` whenever a socket's authentication changes (SocketCluster's
    /// `authentication`, `deauthentication` and `badSocketAuthToken` events).
    pub fn on_auth_event(&self, listener: impl Fn(&Socket, AuthEvent<'_>) + Send + Sync + 'static) {
        self.0.add_auth_listener(Arc::new(listener));
    }

    /// Adds fields to `GET /health` (e.g. the state of an engine behind the brokers). The check
    /// returns a JSON object; if it holds `"healthy": false`, the status reads `degraded`.
    pub fn set_health_check<F, Fut>(&self, check: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = serde_json::Value> + Send + 'static,
    {
        self.0.set_health_check(Arc::new(move || Box::pin(check())));
    }

    /// The health report served on `GET /health`.
    pub async fn health(&self) -> serde_json::Value {
        self.0.health().await
    }

    /// Registers a handler for `event` on every socket (a socket's own [`Socket::on`] handler of
    /// the same name takes precedence, and a later `on` for the same name replaces this one).
    /// Costs nothing per socket. Names starting with `#` belong to the protocol and are refused
    /// with [`SendError::ReservedEvent`], as by [`Socket::on`].
    pub fn on<H: Handler>(&self, event: &str, handler: H) -> Result<(), SendError> {
        crate::error::check_event_name(event)?;
        self.0.set_handler(event, Arc::new(handler));
        Ok(())
    }

    /// Number of sockets that completed the handshake and are still open.
    pub fn clients_count(&self) -> usize {
        self.0.clients_count()
    }

    /// The open socket with this id.
    pub fn socket(&self, id: &str) -> Option<Socket> {
        self.0.socket(id)
    }

    /// All open sockets.
    pub fn sockets(&self) -> Vec<Socket> {
        self.0.sockets()
    }

    /// Connections accepted since start.
    pub fn connections_total(&self) -> u64 {
        self.0.connections_total()
    }

    /// This server's counters and gauges now (for `/metrics` and the admin page).
    pub fn metrics(&self) -> crate::metrics::MetricsSnapshot {
        let mut snapshot = self.0.metrics().snapshot();
        let hub = self.0.hub();
        let (subscriptions, channels, top) = hub.census(10);
        snapshot.connections = self.clients_count() as u64;
        snapshot.subscriptions = subscriptions;
        snapshot.channels = channels;
        snapshot.top_channels = top;
        snapshot.publications = hub.delivered.load(Ordering::Relaxed);
        snapshot.rejections = self.0.middleware().blocked();
        snapshot.engine_up = hub.broker().is_connected();
        snapshot.engine_nodes = hub.broker().health().nodes;
        snapshot
    }

    /// Stops counting messages, bytes and handler time (for servers that export no metrics, and
    /// to measure what counting costs). Gauges and connection counters stay.
    pub fn disable_metrics(&self) {
        self.0.metrics().disable();
    }

    /// Starts a drain: from now on `GET /health/ready` answers 503 and new WebSocket upgrades are
    /// refused with 503 (clients retry, landing on another worker or instance). Open sockets stay
    /// until closed (see [`Server::disconnect_all`]).
    pub fn start_draining(&self) {
        self.0.start_draining();
    }

    /// Whether a drain started.
    pub fn is_draining(&self) -> bool {
        self.0.is_draining()
    }

    /// Waits until no socket is open, at most `timeout`; true if none is. Wakes the moment the
    /// last socket leaves.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        self.0.wait_idle(Instant::now() + timeout).await
    }

    /// Drains the server at once: starts draining ([`Server::start_draining`]), closes every
    /// open socket with 1001 (going away: official clients reconnect, landing elsewhere) and
    /// waits until the last one has left, at most `timeout`. Returns how many sockets are still
    /// open (0 after a complete drain). To spread the closes over time, close the sockets
    /// yourself with [`Server::going_away`] and wait with [`Server::wait_idle`].
    pub async fn drain(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        self.start_draining();
        for socket in self.sockets() {
            self.going_away(&socket, "Server is shutting down");
        }
        self.0.wait_idle(deadline).await;
        self.clients_count()
    }

    /// Closes one socket with 1001 (going away: official clients reconnect), as a drain does.
    pub fn going_away(&self, socket: &Socket, reason: &str) {
        socket.close_with(CloseCode(1001), reason, true);
    }

    /// Closes every socket with `code` (e.g. 1001 when shutting down) and returns how many.
    pub fn disconnect_all(&self, code: u16, reason: &str) -> usize {
        let sockets = self.sockets();
        for socket in &sockets {
            socket.close_with(CloseCode(code), reason, true);
        }
        sockets.len()
    }

    /// A router with just the SocketCluster endpoint (`options.path`), to merge into an existing
    /// axum app. Serve it with connect info (`into_make_service_with_connect_info::<SocketAddr>`)
    /// so sockets know their remote address.
    pub fn router(&self) -> Router {
        crate::http::router(&self.0)
    }

    /// The complete HTTP app of a worker: the SocketCluster endpoint, `GET /health`, static files
    /// from `public_dir` (if given) for everything else, and the reference's `400 Bad Request` for
    /// WebSocket upgrades on any other path.
    pub fn app(&self, public_dir: Option<PathBuf>) -> Router {
        crate::http::app(&self.0, public_dir)
    }

    /// Serves `app` on `listener` until the process ends (TCP_NODELAY on, remote addresses
    /// known). Connections that have not upgraded to WebSocket are bounded by
    /// `httpHeaderTimeout`, `httpIdleTimeout` and `maxPendingConnections`; when the process runs
    /// out of file descriptors, accepting pauses (logged once per 10 s) while open connections
    /// keep being served.
    pub async fn serve(&self, listener: TcpListener, app: Router) -> std::io::Result<()> {
        self.serve_until(listener, app, None, std::future::pending())
            .await
    }

    /// Serves `app` over TLS on `listener` (same port for HTTPS and WSS) until the process ends,
    /// with the same limits as [`Server::serve`] (the TLS handshake counts as part of the header
    /// wait). New connections take the certificate [`TlsSettings`](crate::tls::TlsSettings)
    /// holds at that moment, so a reload never touches open ones.
    pub async fn serve_tls(
        &self,
        listener: TcpListener,
        app: Router,
        tls: std::sync::Arc<crate::tls::TlsSettings>,
    ) -> std::io::Result<()> {
        self.serve_until(listener, app, Some(tls), std::future::pending())
            .await
    }

    /// Serves `app` on `listener` (over TLS when `tls` is given) until `shutdown` completes, then
    /// stops accepting and lets HTTP requests in flight finish (WebSocket connections live on
    /// until closed): a worker that exits this way never cuts a request it accepted.
    pub async fn serve_until(
        &self,
        listener: TcpListener,
        app: Router,
        tls: Option<std::sync::Arc<crate::tls::TlsSettings>>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        crate::listen::serve(listener, app, self.options().listen_limits(), tls, shutdown).await
    }

    /// Serves `app` over one connection the caller already has, `io` (an in-memory pipe, a Unix
    /// socket, a custom transport: any byte stream), as if it had been accepted from `remote` on
    /// a listener: HTTP/1.1 with the limits of [`Server::serve`] (`httpHeaderTimeout`,
    /// `httpIdleTimeout`), WebSocket upgrades included. Returns when the HTTP connection ends or
    /// upgrades; an upgraded socket lives on in a task of its own until it closes.
    ///
    /// ```
    /// # async fn run() -> anyhow::Result<()> {
    /// use sc_server::{Server, ServerOptions};
    ///
    /// let server = Server::new(ServerOptions::default())?;
    /// let (client_end, server_end) = tokio::io::duplex(64 * 1024);
    /// let remote = "127.0.0.1:50000".parse()?;
    /// tokio::spawn({
    ///     let server = server.clone();
    ///     async move { server.serve_io(server_end, remote, server.app(None)).await }
    /// });
    /// // Speak HTTP (and then WebSocket) on `client_end`.
    /// # drop(client_end);
    /// # Ok(()) }
    /// ```
    pub async fn serve_io<S>(&self, io: S, remote: SocketAddr, app: Router)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        crate::listen::serve_io(io, remote, app, self.options().listen_limits()).await;
    }

    /// Serves `app` on `listener` until `signal` completes, then shuts down in order: drains
    /// ([`Server::drain`]: upgrades refused, `/health/ready` 503, every socket closed with 1001,
    /// waiting for the last to leave, at most `drain_timeout`) while still answering HTTP, then
    /// stops accepting and lets HTTP requests in flight finish (at most [`HTTP_FINISH`]).
    /// Returns how many sockets were still open when the drain gave up (0 after a clean one).
    ///
    /// ```no_run
    /// # async fn run(server: sc_server::Server) -> std::io::Result<()> {
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
    /// // Whatever tells the server to stop: a signal handler, an admin command, …
    /// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    /// # drop(stop);
    /// let signal = async move {
    ///     let _ = stopped.await;
    /// };
    /// let app = server.app(None);
    /// let left = server
    ///     .serve_with_shutdown(listener, app, signal, std::time::Duration::from_secs(10))
    ///     .await?;
    /// assert_eq!(left, 0, "every client left in time");
    /// # Ok(()) }
    /// ```
    pub async fn serve_with_shutdown(
        &self,
        listener: TcpListener,
        app: Router,
        signal: impl std::future::Future<Output = ()> + Send,
        drain_timeout: Duration,
    ) -> std::io::Result<usize> {
        let stop = std::sync::Arc::new(tokio::sync::Notify::new());
        let serving = {
            let (server, stop) = (self.clone(), stop.clone());
            tokio::spawn(async move {
                let shutdown = async move { stop.notified().await };
                server.serve_until(listener, app, None, shutdown).await
            })
        };
        tokio::pin!(serving);
        tokio::select! {
            served = &mut serving => return served.map_err(std::io::Error::other)?.map(|()| 0),
            () = signal => {}
        }
        let left = self.drain(drain_timeout).await;
        stop.notify_one();
        match tokio::time::timeout(HTTP_FINISH, &mut serving).await {
            Ok(served) => served.map_err(std::io::Error::other)??,
            Err(_) => serving.abort(),
        }
        Ok(left)
    }

    /// Answers a WebSocket upgrade request for this server: use it inside your own axum or hyper
    /// handler when [`Server::router`] does not fit.
    pub async fn accept(&self, request: Request) -> Response {
        crate::http::upgrade(&self.0, request).await
    }
}
