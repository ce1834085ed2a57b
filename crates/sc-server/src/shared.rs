//! [`ServerShared`]: the state every clone of a [`Server`](crate::Server) and every
//! [`Socket`] of it share. Its fields are private; the rest of the crate goes through the
//! accessors below.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::RwLock;
use sc_broker::{Broker, KvStore};
use sc_protocol::{HeartbeatDialect, ProtocolVersion};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::auth::{AuthEngine, AuthEvent};
use crate::handler::{BoxFuture, ConnectionHandler, Handler};
use crate::hub::Hub;
use crate::metrics::ServerMetrics;
use crate::middleware::Middleware;
use crate::options::{InvalidOptions, ServerOptions};
use crate::socket::Socket;

/// A check that adds fields to `GET /health`.
pub(crate) type HealthCheck = Arc<dyn Fn() -> BoxFuture<serde_json::Value> + Send + Sync>;

/// A listener of [`AuthEvent`]s.
pub(crate) type AuthListener = dyn Fn(&Socket, AuthEvent<'_>) + Send + Sync;

/// A socket in [`ServerShared`]'s table of open sockets: equal, hashed and looked up by its id.
struct ById(Socket);

impl PartialEq for ById {
    fn eq(&self, other: &ById) -> bool {
        self.0.id() == other.0.id()
    }
}

impl Eq for ById {}

impl std::hash::Hash for ById {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.id().hash(state);
    }
}

impl std::borrow::Borrow<str> for ById {
    fn borrow(&self) -> &str {
        self.0.id()
    }
}

/// One server's state, shared by the server handle and its sockets.
pub(crate) struct ServerShared {
    options: Arc<ServerOptions>,
    hub: Arc<Hub>,
    kv: Arc<dyn KvStore>,
    handlers: RwLock<HashMap<Box<str>, Arc<dyn Handler>>>,
    connection_handlers: RwLock<Vec<Arc<dyn ConnectionHandler>>>,
    /// Open sockets, found by id (the socket's own id is the key: no copy of it).
    clients: RwLock<HashSet<ById>>,
    /// Woken when the last open socket leaves (see [`ServerShared::wait_idle`]).
    emptied: Notify,
    /// Connections accepted since start.
    connections_total: AtomicU64,
    metrics: Arc<ServerMetrics>,
    /// Set when a drain starts: `/health/ready` answers 503 and upgrades are refused.
    draining: AtomicBool,
    auth: AuthEngine,
    middleware: Arc<Middleware>,
    auth_listeners: RwLock<Vec<Arc<AuthListener>>>,
    health_check: RwLock<Option<HealthCheck>>,
}

impl ServerShared {
    /// Checks `options` and builds the state of a server on `broker` and `kv`.
    pub(crate) fn new(
        options: ServerOptions,
        broker: Arc<dyn Broker>,
        kv: Arc<dyn KvStore>,
    ) -> Result<ServerShared, InvalidOptions> {
        options.validate()?;
        let auth = AuthEngine::from_options(&options)?;
        let middleware = Arc::new(Middleware::default());
        Ok(ServerShared {
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
            clients: RwLock::new(HashSet::new()),
            emptied: Notify::new(),
            connections_total: AtomicU64::new(0),
            metrics: Arc::default(),
            draining: AtomicBool::new(false),
        })
    }

    /// The server's options.
    pub(crate) fn options(&self) -> &Arc<ServerOptions> {
        &self.options
    }

    /// The channel table and fan-out.
    pub(crate) fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// The key/value store.
    pub(crate) fn kv(&self) -> &Arc<dyn KvStore> {
        &self.kv
    }

    /// The counters and gauges.
    pub(crate) fn metrics(&self) -> &Arc<ServerMetrics> {
        &self.metrics
    }

    /// The auth engine.
    pub(crate) fn auth(&self) -> &AuthEngine {
        &self.auth
    }

    /// The middleware.
    pub(crate) fn middleware(&self) -> &Arc<Middleware> {
        &self.middleware
    }

    /// The server-wide handler of `event`, if any.
    pub(crate) fn handler(&self, event: &str) -> Option<Arc<dyn Handler>> {
        self.handlers.read().get(event).cloned()
    }

    /// Sets the server-wide handler of `event`.
    pub(crate) fn set_handler(&self, event: &str, handler: Arc<dyn Handler>) {
        self.handlers.write().insert(event.into(), handler);
    }

    /// Adds a handler run for every socket after its handshake.
    pub(crate) fn add_connection_handler(&self, handler: Arc<dyn ConnectionHandler>) {
        self.connection_handlers.write().push(handler);
    }

    /// Runs the connection handlers for `socket`, in registration order.
    pub(crate) async fn run_connection_handlers(&self, socket: &Socket) {
        let handlers = self.connection_handlers.read().clone();
        for handler in handlers {
            handler.call(socket.clone()).await;
        }
    }

    /// Adds a listener of authentication changes.
    pub(crate) fn add_auth_listener(&self, listener: Arc<AuthListener>) {
        self.auth_listeners.write().push(listener);
    }

    /// Tells the auth listeners (and the socket's presence entries) about `event`.
    pub(crate) fn emit_auth_event(&self, socket: &Socket, event: AuthEvent<'_>) {
        if !matches!(event, AuthEvent::BadToken(_)) {
            socket.refresh_presence();
        }
        let listeners = self.auth_listeners.read().clone();
        for listener in listeners {
            listener(socket, event);
        }
    }

    /// Sets the check that adds fields to `GET /health`.
    pub(crate) fn set_health_check(&self, check: HealthCheck) {
        *self.health_check.write() = Some(check);
    }

    /// The check that adds fields to `GET /health`, if one was set.
    pub(crate) fn health_check(&self) -> Option<HealthCheck> {
        self.health_check.read().clone()
    }

    /// Counts an accepted connection.
    pub(crate) fn count_connection(&self) {
        self.connections_total.fetch_add(1, Ordering::Relaxed);
    }

    /// Connections accepted since start.
    pub(crate) fn connections_total(&self) -> u64 {
        self.connections_total.load(Ordering::Relaxed)
    }

    /// Adds a socket whose handshake succeeded to the table of open sockets.
    pub(crate) fn register(&self, socket: &Socket) {
        self.metrics.handshake();
        self.clients.write().replace(ById(socket.clone()));
    }

    /// Removes a socket from the table of open sockets.
    pub(crate) fn unregister(&self, socket: &Socket) {
        let mut clients = self.clients.write();
        if clients.remove(socket.id()) && clients.is_empty() {
            drop(clients);
            self.emptied.notify_waiters();
        }
    }

    /// Waits until no socket is open or `deadline` passed; true if none is open. Wakes when
    /// the last socket leaves, not on a tick.
    pub(crate) async fn wait_idle(&self, deadline: Instant) -> bool {
        loop {
            let emptied = self.emptied.notified();
            tokio::pin!(emptied);
            // Registered before the check: a socket leaving right after it still wakes us.
            emptied.as_mut().enable();
            if self.clients_count() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, emptied).await.is_err() {
                return self.clients_count() == 0;
            }
        }
    }

    /// Number of open sockets.
    pub(crate) fn clients_count(&self) -> usize {
        self.clients.read().len()
    }

    /// The open socket with this id.
    pub(crate) fn socket(&self, id: &str) -> Option<Socket> {
        self.clients.read().get(id).map(|s| s.0.clone())
    }

    /// All open sockets.
    pub(crate) fn sockets(&self) -> Vec<Socket> {
        self.clients.read().iter().map(|s| s.0.clone()).collect()
    }

    /// Starts a drain.
    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Whether a drain started.
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// The health report served on `GET /health`.
    pub(crate) async fn health(&self) -> serde_json::Value {
        let broker = self.hub().broker();
        let mut report = serde_json::json!({
            "status": "ok",
            "clients": self.clients_count(),
            "connectionsTotal": self.connections_total(),
            "broker": broker.describe(),
            "brokerConnected": broker.is_connected(),
            "protocolVersion": self.options.protocol_version,
        });
        let nodes = broker.health().nodes;
        if !nodes.is_empty() {
            report["engineNodes"] = serde_json::json!(nodes);
        }
        let mut healthy = broker.is_connected();
        let check = self.health_check();
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

    /// The heartbeat dialect new connections start with (`None` in auto mode).
    pub(crate) fn fixed_dialect(&self) -> Option<HeartbeatDialect> {
        match self.options.protocol_version {
            ProtocolVersion::V1 => Some(HeartbeatDialect::V1),
            ProtocolVersion::V2 => Some(HeartbeatDialect::V2),
            ProtocolVersion::Auto => None,
        }
    }
}
