//! [`NatsBroker`]: publications carried between machines by NATS core pub/sub.
//!
//! A [`NatsLink`] is one `async-nats` client connection, shared by a [`NatsBroker`] and a
//! [`NatsKv`]. Each channel the process holds is one NATS subscription on
//! `<subject prefix><encoded channel>` (default `sc.ch.…`); publications travel as their encoded
//! `#publish` frame and are rebuilt with [`Publication::from_frame`](sc_protocol::Publication::from_frame),
//! never re-encoded.
//!
//! Channel names may contain what NATS subjects cannot (`.`, `*`, `>`, spaces, …), so each
//! channel becomes one subject token by [`encode_token`]: ASCII letters, digits, `-` and `_`
//! stay, every other byte is written `=XX` (hex), and the empty name is `=`. The encoding is
//! injective, so two channels never share a subject.
//!
//! Failure behaviour (reconnects, outages, timeouts, limits): see [`link`].

pub mod broker;
pub mod kv;
pub mod link;
pub mod nodes;
pub mod stream;
mod url;

pub use broker::NatsBroker;
pub use kv::NatsKv;
pub use link::{NatsLink, NatsOptions, encode_token};

use crate::error::EngineError;

/// Connects to the NATS server(s) at `url` (`nats://[user:pass@]host[:port]`, several
/// separated by `,`) and returns a broker and a key/value store sharing one connection. The
/// store needs JetStream on the server (`nats-server -js`).
///
/// Fails with [`EngineError::InvalidUrl`], [`EngineError::Auth`], [`EngineError::Unreachable`],
/// or [`EngineError::Setup`] (JetStream missing).
pub async fn connect(url: &str, options: NatsOptions) -> Result<(NatsBroker, NatsKv), EngineError> {
    let link = NatsLink::connect(url, options).await?;
    let kv = NatsKv::with_link(link.clone()).await?;
    Ok((NatsBroker::with_link(link), kv))
}
