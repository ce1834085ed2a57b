//! A native async SocketCluster client, wire-compatible with `socketcluster-server` 14
//! (protocol v1) and 15+ (protocol v2), following `docs/protocol.md` (§3–§8, §10, §15).
//!
//! One [`Client`] owns one WebSocket in a background Tokio task. It performs the `#handshake`
//! (replaying the stored auth token), answers heartbeats, matches responses to requests by
//! call id, re-subscribes channels and reconnects with the reference backoff after a close.
//! Application code sees futures and streams: [`Client::invoke`] resolves with the response,
//! a [`Channel`] is a `Stream` of the channel's [`Publication`]s, [`Client::events`] is a
//! `Stream` of [`ClientEvent`]s.
//!
//! On channels with history (our server's extensions, `EXTENSIONS.md`), each publication
//! carries its [`StreamPosition`]; every resubscribe after a reconnect recovers what was missed
//! (exactly once, in order), and [`ClientEvent::Recovery`] says when that was not possible.
//! [`SubscribeOptions::history`] replays recent publications on join; [`Client::presence`] and
//! [`Client::presence_events`] tell who is subscribed. See `docs/continuity.md`.
//!
//! # Layout
//!
//! - [`client`](Client): the [`Client`] handle and its [`ClientBuilder`]: emit / invoke,
//!   subscribe / publish, auth, connection control.
//! - [`options`]: [`ClientOptions`] with the reference names and defaults (`ackTimeout`,
//!   `connectTimeout`, `autoReconnectOptions`, `protocolVersion`, …).
//! - [`reconnect`]: the reconnect rule and backoff schedule as pure functions.
//! - [`channel`]: [`Channel`] handles and the `pending` / `subscribed` / `unsubscribed` state
//!   machine.
//! - [`events`]: [`ClientEvent`], [`Events`], [`ConnectionState`], [`AuthState`].
//! - [`position`]: [`StreamPosition`], [`Publication`], [`Recovery`].
//! - [`presence`]: [`Presence`] answers and the [`PresenceEvents`] stream.
//! - [`handlers`]: [`Receiver`] streams and procedure handlers for server-initiated events.
//! - [`token_store`]: the pluggable [`TokenStore`] (in memory by default).
//! - [`error`]: [`ClientError`], [`ConnectionError`], [`InvokeError`].
//! - `driver` (private): the background task — inbound frames, the outbound queue and ack
//!   timers, the channel table, auth state, and the WebSocket transport.
//!
//! # Example
//!
//! The boilerplate page's client (`public/index.html`) in Rust: emit `ping`, watch the
//! counter the server publishes on `pong`, publish, unsubscribe.
//!
//! ```no_run
//! use futures_util::StreamExt;
//! use sc_client::{Client, ClientOptions};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::connect("ws://127.0.0.1:8000/socketcluster/", ClientOptions::default()).await?;
//!
//! // The server counts pings and publishes the running count on "pong".
//! let mut pongs = client.subscribe("pong").await?;
//! pongs.subscribed().await?;
//! client.emit("ping", ()).await?;
//! if let Some(count) = pongs.next().await {
//!     println!("pong {count}");
//! }
//!
//! // Request / response, with the server's errors typed.
//! let echoed = client.invoke("echo", serde_json::json!({"msg": "hi"})).await?;
//! println!("echo: {echoed:?}");
//!
//! // Publish (without and with acknowledgement), then leave the channel.
//! pongs.publish("from rust").await?;
//! pongs.invoke_publish(42).await?;
//! pongs.unsubscribe().await?;
//! while pongs.next().await.is_some() {} // drains what was buffered, then ends
//!
//! client.close().await?;
//! # Ok(()) }
//! ```
//!
//! # Overflow policy
//!
//! The background task never waits for a slow consumer. Each [`Channel`] handle and each
//! [`Receiver`] has a bounded buffer ([`ClientOptions::channel_buffer`],
//! [`ClientOptions::receiver_buffer`]); when it is full, new messages are dropped for that
//! consumer only, counted ([`Channel::dropped`]) and logged. It yields to other tasks every 32
//! messages from the server, so a consumer that reads as fast as it is scheduled keeps up with a
//! burst larger than its buffer. [`Events`] streams that lag skip
//! their oldest events. Commands from [`Client`] handles go through a bounded queue: callers
//! wait when it is full.

pub mod channel;
pub mod client;
mod command;
mod driver;
pub mod error;
pub mod events;
pub mod handlers;
pub mod options;
pub mod position;
pub mod presence;
pub mod reconnect;
mod shared;
mod sink;
pub mod subscription;
pub mod token_store;
mod url;

pub use channel::Channel;
pub use client::{Client, ClientBuilder};
pub use error::{BadConnectionKind, ClientError, ConnectionError, InvokeError};
pub use events::{AuthState, AuthStatus, ClientEvent, ConnectionState, Events};
pub use handlers::{ProcedureFuture, Receiver};
pub use options::{AutoReconnectOptions, ClientOptions, Codec, ProtocolVersion};
pub use position::{Publication, Recovery, StreamPosition};
pub use presence::{Presence, PresenceChange, PresenceClient, PresenceEvent, PresenceEvents};
pub use sc_protocol::{Json, ScError};
pub use subscription::{ChannelState, ChannelStatus, SubscribeOptions, UnsubscribeReason};
pub use token_store::{MemoryTokenStore, TokenStore, TokenStoreError};
pub use url::DEFAULT_PATH;
