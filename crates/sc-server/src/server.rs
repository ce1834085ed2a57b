//! [`Server`]: one worker's realtime server, its handlers and its sockets.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;
use sc_broker::{Broker, KvStore, MemoryBroker, MemoryKv};
use sc_protocol::{CloseCode, HeartbeatDialect, ProtocolVersion};

use crate::auth::{AuthEngine, AuthToken, TokenError};
use crate::exchange::Exchange;
use crate::handler::{ConnectionHandler, Handler};
use crate::hub::Hub;
use crate::middleware::Middleware;
use crate::options::{InvalidOptions, ServerOptions};
use crate::socket::Socket;

/// A SocketCluster realtime server. Cheap to clone; all clones are the same server.
///
/// ```no_run
/// use sc_server::{Reply, Request, Server, ServerOptions, Socket};
/// use sc_protocol::ScError;
///
/// # async fn run() -> anyhow::Result<()> {
/// let server = Server::new(ServerOptions::default())?;
/// let exchange = server.exchange();
/// server.on("echo", |req: Request| async move { Ok::<_, ScError>(Reply::from(req.data().cloned())) });
/// server.on_connection(move |socket: Socket| {
///     let exchange = exchange.clone();
///     async move {
///         let _ = socket.on("ping", move |_req: Request| {
///             let exchange = exchange.clone();
///             async move { exchange.publish("pong", &1).await.map_err(ScError::from) }
///         });
///     }
/// });
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
/// server.serve(listener, server.app(None)).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Server(pub(crate) Arc<ServerShared>);

pub(crate) struct ServerShared {
    pub(crate) options: Arc<ServerOptions>,
    pub(crate) hub: Arc<Hub>,
    pub(crate) kv: Arc<dyn KvStore>,
    pub(crate) handlers: RwLock<HashMap<Box<str>, Arc<dyn Handler>>>,
    connection_handlers: RwLock<Vec<Arc<dyn ConnectionHandler>>>,
    clients: RwLock<HashMap<Box<str>, Socket>>,
    pub(crate) stats: Stats,
    pub(crate) metrics: Arc<crate::metrics::ServerMetrics>,
    /// Set when a drain starts: `/health/ready` answers 503 and upgrades are refused.
    draining: std::sync::atomic::AtomicBool,
    pub(crate) auth: AuthEngine,
    pub(crate) middleware: Arc<Middleware>,
    auth_listeners: RwLock<Vec<Arc<AuthListener>>>,
    health_check: RwLock<Option<HealthCheck>>,
}

type HealthCheck = Arc<dyn Fn() -> crate::handler::BoxFuture<serde_json::Value> + Send + Sync>;

type AuthListener = dyn Fn(&Socket, AuthEvent<'_>) + Send + Sync;

/// A change of a socket's authentication, for [`Server::on_auth_event`].
#[derive(Debug, Clone, Copy)]
pub enum AuthEvent<'a> {
    /// The socket became authenticated (handshake token, `#authenticate`, or `set_auth_token`).
    Authenticated(&'a AuthToken),
    /// The socket stopped being authenticated (logout, expiry, bad token, `deauthenticate`).
    Deauthenticated,
    /// The client presented a token that was refused (SocketCluster's `badSocketAuthToken`).
    BadToken(&'a TokenError),
}

/// Counters for the health and metrics endpoints.
#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) connections_total: AtomicU64,
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
        options.validate()?;
        let auth = AuthEngine::from_options(&options)?;
        let middleware = Arc::new(Middleware::default());
        Ok(Server(Arc::new(ServerShared {
            auth,
            hub: Hub::new(
                broker,
                middleware.clone(),
                crate::streams::Streams::from_options(&options),
            ),
            kv,
            middleware,
            auth_listeners: RwLock::new(Vec::new()),
            health_check: RwLock::new(None),
            options: Arc::new(options),
            handlers: RwLock::new(HashMap::new()),
            connection_handlers: RwLock::new(Vec::new()),
            clients: RwLock::new(HashMap::new()),
            stats: Stats::default(),
            metrics: Arc::default(),
            draining: std::sync::atomic::AtomicBool::new(false),
        })))
    }

    /// The server's options.
    pub fn options(&self) -> &ServerOptions {
        &self.0.options
    }

    /// Publish to and subscribe to channels from server code.
    pub fn exchange(&self) -> Exchange {
        Exchange::new(self.0.hub.clone(), self.0.kv.clone())
    }

    /// Runs `handler` for every socket once its handshake succeeded (SocketCluster's `connection`
    /// event). Handlers run in registration order.
    pub fn on_connection<H: ConnectionHandler>(&self, handler: H) {
        self.0.connection_handlers.write().push(Arc::new(handler));
    }

    /// The middleware: who may connect, subscribe, publish and emit.
    pub fn middleware(&self) -> &Middleware {
        &self.0.middleware
    }

    /// The auth engine (signs and verifies tokens with the server's `authKey`).
    pub fn auth(&self) -> &AuthEngine {
        &self.0.auth
    }

    /// Runs `listener` whenever a socket's authentication changes (SocketCluster's
    /// `authentication`, `deauthentication` and `badSocketAuthToken` events).
    pub fn on_auth_event(&self, listener: impl Fn(&Socket, AuthEvent<'_>) + Send + Sync + 'static) {
        self.0.auth_listeners.write().push(Arc::new(listener));
    }

    /// Adds fields to `GET /health` (e.g. the state of an engine behind the brokers). The check
    /// returns a JSON object; if it holds `"healthy": false`, the status reads `degraded`.
    pub fn set_health_check<F, Fut>(&self, check: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = serde_json::Value> + Send + 'static,
    {
        *self.0.health_check.write() = Some(Arc::new(move || Box::pin(check())));
    }

    /// The health report served on `GET /health`.
    pub async fn health(&self) -> serde_json::Value {
        let broker = self.0.hub.broker();
        let mut report = serde_json::json!({
            "status": "ok",
            "clients": self.clients_count(),
            "connectionsTotal": self.connections_total(),
            "broker": broker.describe(),
            "brokerConnected": broker.is_connected(),
            "engineNodes": broker.health().nodes,
            "protocolVersion": self.options().protocol_version,
        });
        let mut healthy = broker.is_connected();
        let check = self.0.health_check.read().clone();
        if let Some(check) = check
            && let serde_json::Value::Object(extra) = check().await
        {
            healthy &= extra.get("healthy") != Some(&serde_json::Value::Bool(false));
            if let serde_json::Value::Object(fields) = &mut report {
                fields.extend(extra);
            }
        }
        if !healthy {
            report["status"] = "degraded".into();
        }
        report
    }

    /// Registers a handler for `event` on every socket (a socket's own [`Socket::on`] handler of
    /// the same name takes precedence). Costs nothing per socket. Names starting with `#` are
    /// refused (returns false).
    pub fn on<H: Handler>(&self, event: &str, handler: H) -> bool {
        if event.starts_with('#') {
            return false;
        }
        self.0
            .handlers
            .write()
            .insert(event.into(), Arc::new(handler));
        true
    }

    /// Number of sockets that completed the handshake and are still open.
    pub fn clients_count(&self) -> usize {
        self.0.clients.read().len()
    }

    /// The open socket with this id.
    pub fn socket(&self, id: &str) -> Option<Socket> {
        self.0.clients.read().get(id).cloned()
    }

    /// All open sockets.
    pub fn sockets(&self) -> Vec<Socket> {
        self.0.clients.read().values().cloned().collect()
    }

    /// Connections accepted since start.
    pub fn connections_total(&self) -> u64 {
        self.0.stats.connections_total.load(Ordering::Relaxed)
    }

    /// This server's counters and gauges now (for `/metrics` and the admin page).
    pub fn metrics(&self) -> crate::metrics::MetricsSnapshot {
        let mut snapshot = self.0.metrics.snapshot();
        let hub = &self.0.hub;
        let (subscriptions, channels, top) = hub.census(10);
        snapshot.connections = self.clients_count() as u64;
        snapshot.subscriptions = subscriptions;
        snapshot.channels = channels;
        snapshot.top_channels = top;
        snapshot.publications = hub.delivered.load(Ordering::Relaxed);
        snapshot.rejections = self.0.middleware.blocked();
        snapshot.engine_up = hub.broker().is_connected();
        snapshot.engine_nodes = hub.broker().health().nodes;
        snapshot
    }

    /// Stops counting messages, bytes and handler time (for servers that export no metrics, and
    /// to measure what counting costs). Gauges and connection counters stay.
    pub fn disable_metrics(&self) {
        self.0.metrics.disable();
    }

    /// Starts a drain: from now on `GET /health/ready` answers 503 and new WebSocket upgrades are
    /// refused with 503 (clients retry, landing on another worker or instance). Open sockets stay
    /// until closed (see [`Server::disconnect_all`]).
    pub fn start_draining(&self) {
        self.0.draining.store(true, Ordering::Release);
    }

    /// Whether a drain started.
    pub fn is_draining(&self) -> bool {
        self.0.draining.load(Ordering::Acquire)
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

    /// The heartbeat dialect new connections start with (`None` in auto mode).
    pub(crate) fn fixed_dialect(&self) -> Option<HeartbeatDialect> {
        match self.0.options.protocol_version {
            ProtocolVersion::V1 => Some(HeartbeatDialect::V1),
            ProtocolVersion::V2 => Some(HeartbeatDialect::V2),
            ProtocolVersion::Auto => None,
        }
    }
}

impl ServerShared {
    pub(crate) fn emit_auth_event(&self, socket: &Socket, event: AuthEvent<'_>) {
        if !matches!(event, AuthEvent::BadToken(_)) {
            crate::streams_dispatch::refresh_presence(socket);
        }
        let listeners = self.auth_listeners.read().clone();
        for listener in listeners {
            listener(socket, event);
        }
    }

    pub(crate) fn register(&self, socket: &Socket) {
        self.metrics.handshake();
        self.clients
            .write()
            .insert(socket.id().into(), socket.clone());
    }

    pub(crate) fn unregister(&self, socket: &Socket) {
        self.clients.write().remove(socket.id());
    }

    pub(crate) async fn run_connection_handlers(&self, socket: &Socket) {
        let handlers = self.connection_handlers.read().clone();
        for handler in handlers {
            handler.call(socket.clone()).await;
        }
    }
}
