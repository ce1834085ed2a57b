//! [`Server`]: one worker's realtime server, its handlers and its sockets.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use sc_broker::{Broker, KvStore, MemoryBroker, MemoryKv};
use sc_protocol::{CloseCode, HeartbeatDialect, ProtocolVersion};

use crate::auth::{AuthEngine, AuthToken, TokenError};
use crate::exchange::Exchange;
use crate::handler::{ConnectionHandler, Handler};
use crate::middleware::Middleware;
use crate::options::{InvalidOptions, ServerOptions};
use crate::shared::ServerShared;
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
        let broker = self.0.hub().broker();
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
        let check = self.0.health_check();
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
        self.0.set_handler(event, Arc::new(handler));
        true
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
        match self.0.options().protocol_version {
            ProtocolVersion::V1 => Some(HeartbeatDialect::V1),
            ProtocolVersion::V2 => Some(HeartbeatDialect::V2),
            ProtocolVersion::Auto => None,
        }
    }
}
