//! A SocketCluster server for one worker, wire-compatible with the official JavaScript clients
//! (`socketcluster-client` 14.x speaking protocol v1 and 15+ speaking v2, on the same endpoint).
//!
//! # Layout
//!
//! - [`server`]: [`Server`] (every `impl Server` method is there): its handlers, its sockets,
//!   draining and serving, alone or inside an existing axum app; [`http`] holds the HTTP side
//!   (upgrade, static files, `/health`). docs/architecture.md maps every file.
//! - [`socket`]: [`Socket`], the handle on one client: `emit`, `invoke`, `disconnect`, …
//! - [`handler`]: [`Request`], [`Reply`] and the [`Handler`] trait your async closures implement.
//! - [`exchange`]: [`Exchange`]: `publish` and `subscribe` (as a `Stream`) from server code.
//! - `connection/` (one task per connection: the run loop in `mod.rs`, `timers`, `handshake`
//!   with `#authenticate`, `dispatch` of protocol and application events, `subscribe`,
//!   `outbound` (bounded per-socket queue and the writer that batches flushes), `heartbeat`
//!   (v1/v2 dialect detection)), `shared` (the state a server and its sockets share), `hub`
//!   (channel table and fan-out), `ws` (the WebSocket protocol after the upgrade,
//!   permessage-deflate), `listen` (the accept loop and the limits of connections before their
//!   upgrade): internals. With the `ws-echo` feature,
//!   `echo` serves a plain echo endpoint over the same layer for the Autobahn suite.
//! - [`auth`]: JWT auth tokens ([`AuthEngine`]) as SocketCluster signs and verifies them.
//! - [`middleware`]: who may connect, subscribe, publish and emit ([`Middleware`]).
//! - [`options`]: [`ServerOptions`] with SocketCluster's names and defaults.
//! - [`metrics`]: counters and gauges ([`metrics::MetricsSnapshot`]) for `/metrics`.
//! - [`tls`]: TLS on the same port (rustls), reloadable certificates.
//!
//! # The seed's boilerplate, in Rust
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use sc_protocol::ScError;
//! use sc_server::{Reply, Request, Server, ServerOptions};
//!
//! # async fn run() -> anyhow::Result<()> {
//! let server = Server::new(ServerOptions::default())?;
//! let exchange = server.exchange();
//! let count = Arc::new(AtomicU64::new(0));
//! // A client emits `ping`; the worker counts it and publishes the count to `pong`.
//! server.on("ping", move |_req: Request| {
//!     let (exchange, count) = (exchange.clone(), count.clone());
//!     async move {
//!         let n = count.fetch_add(1, Ordering::Relaxed) + 1;
//!         exchange.publish("pong", &n).await.map_err(ScError::from)
//!     }
//! });
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8000").await?;
//! server.serve(listener, server.app(Some("public".into()))).await?;
//! # Ok(()) }
//! ```

#![warn(missing_debug_implementations)]

pub mod auth;
mod connection;
#[cfg(feature = "ws-echo")]
pub mod echo;
pub mod error;
pub mod exchange;
#[doc(hidden)]
pub mod fuzzing;
pub mod handler;
pub mod http;
mod hub;
mod id;
mod listen;
pub mod metrics;
pub mod middleware;
pub mod options;
mod origin;
pub mod server;
mod shared;
pub mod socket;
mod streams;
pub mod tls;
mod ws;

pub use auth::{AuthEngine, AuthToken, SignOptions, TokenError};
pub use error::{ExchangeError, InvokeError, SendError};
pub use exchange::{ChannelStream, Exchange};
pub use handler::{ConnectionHandler, Handler, Reply, Request};
pub use middleware::{Block, Middleware, OutboundVerdict};
pub use options::{HistoryOption, InvalidOptions, ServerOptions};
pub use server::{AuthEvent, Server};
pub use socket::{Socket, SocketState, UpgradeRequest};
pub use tls::{TlsError, TlsSettings};

pub use sc_broker::{
    Broker, BrokerError, HistoryPage, HistoryRead, MemoryBroker, Position, PresenceInfo,
    PresenceMember,
};
pub use sc_protocol::{CloseCode, Json, ProtocolVersion, Publication, ScError};
