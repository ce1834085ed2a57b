//! The SocketCluster wire protocol, as pure data types and codecs (no I/O).
//!
//! Everything here follows `docs/protocol.md` (captured from the reference Node.js packages) to the byte.
//!
//! # Layout
//!
//! - [`json`]: [`Json`], a validated, shared, *unparsed* JSON value. Payloads stay the exact text that
//!   arrived, so forwarding never re-encodes them.
//! - [`frame`]: decoding one inbound WebSocket text frame the way `sc-formatter` does: heartbeat,
//!   packet, batch of packets, or raw message ([`Frame`], [`Packet`]).
//! - [`min_bin`]: the `sc-codec-min-bin` codec (MessagePack, binary frames), transcoding JSON frames
//!   to and from it; [`codec`]: which codec a connection uses.
//! - [`encode`]: building outbound frames (events, responses, batches) with the reference key order.
//! - [`publication`]: [`Publication`], a `#publish` frame encoded once and shared by every subscriber.
//! - [`error`]: [`ScError`], errors as they travel (`sc-errors` dehydration) and their well-known names.
//! - [`close`]: WebSocket close codes, their meanings and the client reconnect rule.
//! - [`version`]: protocol versions and heartbeat dialects.
//! - [`hash`]: `sc-hasher`, mapping channels and keys onto brokers.
//! - [`backoff`]: [`Backoff`], the retry-delay policy every reconnect and restart schedule uses.
//!
//! # Example
//!
//! ```
//! use sc_protocol::{Frame, Packet};
//!
//! let frame = Frame::decode(r#"{"event":"echo","data":{"msg":"hi"},"cid":2}"#);
//! let Frame::Packets(packets) = frame else { panic!("not a packet") };
//! let Packet::Event(event) = &packets[0] else { panic!("not an event") };
//! assert_eq!(event.event, "echo");
//! assert_eq!(event.data.as_ref().map(|d| d.get()), Some(r#"{"msg":"hi"}"#));
//! assert_eq!(event.cid, Some(2));
//!
//! let reply = sc_protocol::encode::response(2, event.data.as_ref().map(|d| d.get()));
//! assert_eq!(&reply[..], br#"{"rid":2,"data":{"msg":"hi"}}"#);
//! ```

pub mod backoff;
pub mod close;
pub mod codec;
pub mod encode;
pub mod error;
pub mod frame;
pub mod hash;
pub mod json;
pub mod min_bin;
pub mod publication;
pub mod version;

pub use backoff::Backoff;
pub use close::CloseCode;
pub use codec::{Codec, CodecOption};
pub use error::ScError;
pub use frame::{EventPacket, Frame, Packet, ResponsePacket};
pub use json::Json;
pub use publication::{Position, Publication};
pub use version::{HeartbeatDialect, ProtocolVersion};
