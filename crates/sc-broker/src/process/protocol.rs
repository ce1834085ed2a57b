//! The worker ↔ broker wire format: one message per length-prefixed frame.
//!
//! Each frame (4-byte big-endian length, then the body; see [`codec`]) holds exactly one message:
//! a 1-byte kind followed by a kind-specific payload. Integers are big-endian; a trailing
//! variable-length field (channel name, frame, JSON) runs to the end of the body, so it needs no
//! length of its own.
//!
//! | kind | direction | message | payload |
//! |---|---|---|---|
//! | `0x01` | worker → broker | [`WorkerMessage::Subscribe`] | `id:u64` `channel` |
//! | `0x02` | worker → broker | [`WorkerMessage::Unsubscribe`] | `id:u64` `channel` |
//! | `0x03` | worker → broker | [`WorkerMessage::Publish`] | `id:u64` `channel_len:u32` `channel` `frame` |
//! | `0x04` | worker → broker | [`WorkerMessage::Kv`] | `id:u64` [`KvCommand`] as JSON |
//! | `0x05` | worker → broker | [`WorkerMessage::Send`] | `id:u64` JSON |
//! | `0x06` | worker → broker | [`WorkerMessage::Stream`] | `id:u64` JSON ([`StreamRequest`](super::stream_wire::StreamRequest)) |
//! | `0x07` | worker → broker | [`WorkerMessage::SharedAck`] | `token:u64` |
//! | `0x81` | broker → worker | [`BrokerMessage::Publication`] | `frame` (read, no longer sent) |
//! | `0x82` | broker → worker | [`BrokerMessage::Reply`] (`Ok`) | `id:u64` JSON |
//! | `0x83` | broker → worker | [`BrokerMessage::Reply`] (`Err`) | `id:u64` message (UTF-8) |
//! | `0x84` | broker → worker | [`BrokerMessage::Ready`] | `broker_id:u32` |
//! | `0x85` | broker → worker | [`BrokerMessage::Shared`] | `token:u64` `channel` |
//! | `0x86` | broker → worker | [`BrokerMessage::Delivery`] | `channel_len:u32` `channel` `frame` |
//! | `0x87` | broker → worker | [`BrokerMessage::Acks`] | `id:u64` … (one or more) |
//!
//! `frame` is a [`Publication::frame`](sc_protocol::Publication::frame): the `#publish` frame
//! exactly as subscribers receive it. It crosses the link byte for byte; the payload is never
//! re-encoded. A publish carries its channel name beside the frame so the broker routes it
//! without parsing any JSON, and a delivery carries it too, so the worker rebuilds the
//! publication with
//! [`Publication::from_channel_and_frame`](sc_protocol::Publication::from_channel_and_frame),
//! which reads only the data (validated once) instead of the whole frame twice.
//!
//! # Batched acknowledgements
//!
//! A publish that succeeded is acknowledged in an [`BrokerMessage::Acks`] with the ids of every
//! publish of that connection the broker handled since its last one: the broker sends it when
//! the connection has no more commands ready to read (or after [`MAX_ACKS`] of them), and before
//! any other answer. It always follows the deliveries of the publishes it acknowledges on the
//! same connection. A failed publish is answered with its own [`BrokerMessage::Reply`].
//!
//! Workers and brokers of one cluster run the same binary (the master starts them all); the
//! kinds above are not meant to be read by another version.
//!
//! # Solo channels
//!
//! A worker connection that subscribes to a channel nobody else subscribes to on this broker (and
//! the broker has no upstream engine) gets the reply value `true` ([`solo_reply`]): until told
//! otherwise, it may deliver its own publications on that channel itself, without sending them
//! here, since nobody else would get them. When a second connection subscribes, the broker sends
//! the solo holder [`BrokerMessage::Shared`] and answers the new subscriber only once the holder
//! has confirmed with [`WorkerMessage::SharedAck`]: from then on the holder publishes through the
//! broker again, so every publication made after the new subscription completed reaches it. A
//! channel stays shared until every connection has left it (docs/cluster.md, "Solo channels").
//!
//! Request id `0` ([`NO_REPLY`]) asks the broker not to answer (fire-and-forget publish or
//! unsubscribe); any other id is answered exactly once: with a [`BrokerMessage::Reply`], or, for
//! a publish that succeeded, within a [`BrokerMessage::Acks`].
//!
//! [`WorkerMessage::decode`] and [`BrokerMessage::decode`] accept arbitrary bytes and never
//! panic: garbage yields a [`DecodeError`].

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use tokio_util::codec::LengthDelimitedCodec;

use sc_protocol::{Json, Publication};

use crate::{KeyPath, KvCommand};

/// The largest message body either side accepts (16 MiB). A publish whose frame does not fit is
/// refused by the worker with [`BrokerError::TooLarge`](crate::BrokerError::TooLarge).
pub const MAX_FRAME_LEN: usize = 16 * 1024 * 1024;

/// The request id that asks for no reply.
pub const NO_REPLY: u64 = 0;

const SUBSCRIBE: u8 = 0x01;
const UNSUBSCRIBE: u8 = 0x02;
const PUBLISH: u8 = 0x03;
const KV: u8 = 0x04;
const SEND: u8 = 0x05;
const STREAM: u8 = 0x06;
const SHARED_ACK: u8 = 0x07;
const PUBLICATION: u8 = 0x81;
const REPLY_OK: u8 = 0x82;
const REPLY_ERR: u8 = 0x83;
const READY: u8 = 0x84;
const SHARED: u8 = 0x85;
const DELIVERY: u8 = 0x86;
const ACKS: u8 = 0x87;

/// The most publish ids one [`BrokerMessage::Acks`] carries.
pub const MAX_ACKS: usize = 256;

/// The reply value of a subscribe that made the connection the channel's solo subscriber, `true`
/// (see the module documentation); any other subscribe is answered with `null`.
pub fn solo_reply() -> Json {
    // A literal JSON value: cannot fail.
    Json::from_text("true").unwrap_or(Json::NULL)
}

/// Whether a subscribe's reply value made the connection the channel's solo subscriber.
pub fn is_solo_reply(value: &Json) -> bool {
    value.as_bytes() == b"true"
}

/// The framing codec both sides use: a 4-byte big-endian length prefix, bodies of at most
/// [`MAX_FRAME_LEN`] bytes.
pub fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .max_frame_length(MAX_FRAME_LEN)
        .new_codec()
}

/// A message from a worker to a broker.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkerMessage {
    /// Add this connection to the subscribers of `channel` (idempotent).
    Subscribe {
        /// Request id; the reply comes once the subscription is in place.
        id: u64,
        /// The channel.
        channel: String,
    },
    /// Remove this connection from the subscribers of `channel` (idempotent).
    Unsubscribe {
        /// Request id, or [`NO_REPLY`].
        id: u64,
        /// The channel.
        channel: String,
    },
    /// Deliver a publication to every subscriber of `channel`.
    Publish {
        /// Request id, or [`NO_REPLY`]; the reply comes once the publication has been handed to
        /// every subscriber's queue (or to the upstream engine).
        id: u64,
        /// The publication's channel (so the broker need not parse `frame`).
        channel: String,
        /// The encoded `#publish` frame, verbatim.
        frame: Bytes,
    },
    /// Run a key/value command on the broker's store; the reply carries its result.
    Kv {
        /// Request id.
        id: u64,
        /// The command.
        command: KvCommand,
    },
    /// A custom message for the broker controller's message handler; the reply carries its answer.
    Send {
        /// Request id.
        id: u64,
        /// The message.
        data: Json,
    },
    /// A history or presence operation (EXTENSIONS.md), see
    /// [`StreamRequest`](super::stream_wire::StreamRequest); the reply carries its result.
    Stream {
        /// Request id.
        id: u64,
        /// The request, as JSON.
        request: Json,
    },
    /// The worker has stopped delivering its own publications of a channel itself: the answer to
    /// [`BrokerMessage::Shared`].
    SharedAck {
        /// The token of the [`BrokerMessage::Shared`] being answered.
        token: u64,
    },
}

/// A message from a broker to a worker.
#[derive(Debug, Clone, PartialEq)]
pub enum BrokerMessage {
    /// A publication on a channel this connection subscribes to (sent by earlier versions;
    /// see [`BrokerMessage::Delivery`]).
    Publication {
        /// The encoded `#publish` frame, verbatim.
        frame: Bytes,
    },
    /// A publication on a channel this connection subscribes to, with its channel.
    Delivery {
        /// The publication's channel (so the worker need not parse `frame` for it).
        channel: String,
        /// The encoded `#publish` frame, verbatim.
        frame: Bytes,
    },
    /// The publishes with these request ids succeeded (see "Batched acknowledgements").
    Acks {
        /// Request ids, in the order the publishes were handled.
        ids: Vec<u64>,
    },
    /// The answer to the request with the same id.
    Reply {
        /// The request id.
        id: u64,
        /// The value, or why the request failed.
        result: Result<Json, String>,
    },
    /// First message on every connection: the broker is ready to serve requests.
    Ready {
        /// The broker's index in the cluster.
        broker_id: u32,
    },
    /// Another connection subscribed to `channel`, of which this connection was the solo
    /// subscriber: publish it through the broker from now on, then answer with
    /// [`WorkerMessage::SharedAck`] carrying `token`.
    Shared {
        /// Identifies this message's acknowledgement.
        token: u64,
        /// The channel.
        channel: String,
    },
}

/// A message body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The body is empty (not even a kind byte).
    #[error("empty message")]
    Empty,
    /// The kind byte is not one this side understands.
    #[error("unknown message kind {0:#04x}")]
    UnknownKind(u8),
    /// The body ends before a fixed-size field or a declared length.
    #[error("message of kind {0:#04x} is truncated")]
    Truncated(u8),
    /// A text field is not valid UTF-8.
    #[error("{0} is not valid UTF-8")]
    Utf8(&'static str),
    /// A JSON field is not valid JSON (or not a valid key/value command).
    #[error("{what} is not valid: {reason}")]
    Json {
        /// Which field.
        what: &'static str,
        /// The parser's complaint.
        reason: String,
    },
}

impl WorkerMessage {
    /// A publish of `publication` under request `id`.
    pub fn publish(id: u64, publication: &Publication) -> WorkerMessage {
        WorkerMessage::Publish {
            id,
            channel: publication.channel().to_owned(),
            frame: publication.frame().clone(),
        }
    }

    /// The body of a publish of `publication` under request `id`, encoded straight from it: the
    /// same bytes as `WorkerMessage::publish(id, publication).encode()`, without copying the
    /// channel into a message first (the per-publish path of the broker link).
    pub fn publish_body(id: u64, publication: &Publication) -> Bytes {
        publish_body(id, publication.channel(), publication.frame())
    }

    /// The request id.
    pub fn id(&self) -> u64 {
        match self {
            WorkerMessage::Subscribe { id, .. }
            | WorkerMessage::Unsubscribe { id, .. }
            | WorkerMessage::Publish { id, .. }
            | WorkerMessage::Kv { id, .. }
            | WorkerMessage::Send { id, .. }
            | WorkerMessage::Stream { id, .. } => *id,
            WorkerMessage::SharedAck { .. } => NO_REPLY,
        }
    }

    /// The message body (kind byte and payload), without the length prefix.
    pub fn encode(&self) -> Bytes {
        match self {
            WorkerMessage::Subscribe { id, channel } => {
                with_id(SUBSCRIBE, *id, channel.len(), |b| {
                    b.put_slice(channel.as_bytes())
                })
            }
            WorkerMessage::Unsubscribe { id, channel } => {
                with_id(UNSUBSCRIBE, *id, channel.len(), |b| {
                    b.put_slice(channel.as_bytes())
                })
            }
            WorkerMessage::Publish { id, channel, frame } => publish_body(*id, channel, frame),
            WorkerMessage::Kv { id, command } => {
                // Serialising strings, numbers and validated JSON cannot fail.
                let json = serde_json::to_vec(&KvWire::from(command)).unwrap_or_default();
                with_id(KV, *id, json.len(), |b| b.put_slice(&json))
            }
            WorkerMessage::Send { id, data } => with_id(SEND, *id, data.as_bytes().len(), |b| {
                b.put_slice(data.as_bytes())
            }),
            WorkerMessage::Stream { id, request } => {
                with_id(STREAM, *id, request.as_bytes().len(), |b| {
                    b.put_slice(request.as_bytes())
                })
            }
            WorkerMessage::SharedAck { token } => with_id(SHARED_ACK, *token, 0, |_| {}),
        }
    }

    /// Reads a message body. Never panics, whatever the bytes.
    pub fn decode(mut body: Bytes) -> Result<WorkerMessage, DecodeError> {
        let kind = take_kind(&mut body)?;
        match kind {
            SUBSCRIBE | UNSUBSCRIBE => {
                let id = take_u64(&mut body, kind)?;
                let channel = into_string(body, "channel")?;
                Ok(if kind == SUBSCRIBE {
                    WorkerMessage::Subscribe { id, channel }
                } else {
                    WorkerMessage::Unsubscribe { id, channel }
                })
            }
            PUBLISH => {
                let id = take_u64(&mut body, kind)?;
                let len = take_u32(&mut body, kind)? as usize;
                if body.len() < len {
                    return Err(DecodeError::Truncated(kind));
                }
                let channel = into_string(body.split_to(len), "channel")?;
                Ok(WorkerMessage::Publish {
                    id,
                    channel,
                    frame: body,
                })
            }
            KV => {
                let id = take_u64(&mut body, kind)?;
                let command = serde_json::from_slice::<KvWire>(&body)
                    .map_err(|e| e.to_string())
                    .and_then(KvWire::into_command)
                    .map_err(|reason| DecodeError::Json {
                        what: "key/value command",
                        reason,
                    })?;
                Ok(WorkerMessage::Kv { id, command })
            }
            SEND => {
                let id = take_u64(&mut body, kind)?;
                let data = into_json(body, "message data")?;
                Ok(WorkerMessage::Send { id, data })
            }
            STREAM => {
                let id = take_u64(&mut body, kind)?;
                let request = into_json(body, "stream request")?;
                Ok(WorkerMessage::Stream { id, request })
            }
            SHARED_ACK => {
                let token = take_u64(&mut body, kind)?;
                Ok(WorkerMessage::SharedAck { token })
            }
            other => Err(DecodeError::UnknownKind(other)),
        }
    }
}

impl BrokerMessage {
    /// The body of a publication message for `frame`: built once per publish and shared by every
    /// subscribed connection.
    pub fn publication(frame: &[u8]) -> Bytes {
        let mut b = BytesMut::with_capacity(1 + frame.len());
        b.put_u8(PUBLICATION);
        b.put_slice(frame);
        b.freeze()
    }

    /// The body of a delivery message of `frame` on `channel`: built once per publish and shared
    /// by every subscribed connection.
    pub fn delivery(channel: &str, frame: &[u8]) -> Bytes {
        let mut b = BytesMut::with_capacity(5 + channel.len() + frame.len());
        b.put_u8(DELIVERY);
        // Channel names come from a frame, far below 4 GiB.
        b.put_u32(u32::try_from(channel.len()).unwrap_or(u32::MAX));
        b.put_slice(channel.as_bytes());
        b.put_slice(frame);
        b.freeze()
    }

    /// The body of an acknowledgement of the publishes `ids`.
    pub fn acks(ids: &[u64]) -> Bytes {
        let mut b = BytesMut::with_capacity(1 + 8 * ids.len());
        b.put_u8(ACKS);
        for id in ids {
            b.put_u64(*id);
        }
        b.freeze()
    }

    /// The message body (kind byte and payload), without the length prefix.
    pub fn encode(&self) -> Bytes {
        match self {
            BrokerMessage::Publication { frame } => BrokerMessage::publication(frame),
            BrokerMessage::Delivery { channel, frame } => BrokerMessage::delivery(channel, frame),
            BrokerMessage::Acks { ids } => BrokerMessage::acks(ids),
            BrokerMessage::Reply { id, result: Ok(v) } => {
                with_id(REPLY_OK, *id, v.as_bytes().len(), |b| {
                    b.put_slice(v.as_bytes())
                })
            }
            BrokerMessage::Reply { id, result: Err(e) } => {
                with_id(REPLY_ERR, *id, e.len(), |b| b.put_slice(e.as_bytes()))
            }
            BrokerMessage::Ready { broker_id } => {
                let mut b = BytesMut::with_capacity(5);
                b.put_u8(READY);
                b.put_u32(*broker_id);
                b.freeze()
            }
            BrokerMessage::Shared { token, channel } => {
                with_id(SHARED, *token, channel.len(), |b| {
                    b.put_slice(channel.as_bytes())
                })
            }
        }
    }

    /// Reads a message body. Never panics, whatever the bytes. A publication's frame is passed
    /// through unparsed (the worker validates it with `Publication::from_frame`).
    pub fn decode(mut body: Bytes) -> Result<BrokerMessage, DecodeError> {
        let kind = take_kind(&mut body)?;
        match kind {
            PUBLICATION => Ok(BrokerMessage::Publication { frame: body }),
            DELIVERY => {
                let len = take_u32(&mut body, kind)? as usize;
                if body.len() < len {
                    return Err(DecodeError::Truncated(kind));
                }
                let channel = into_string(body.split_to(len), "channel")?;
                Ok(BrokerMessage::Delivery {
                    channel,
                    frame: body,
                })
            }
            ACKS => {
                if body.is_empty() || body.len() % 8 != 0 {
                    return Err(DecodeError::Truncated(kind));
                }
                let ids = body.chunks_exact(8).map(|mut id| id.get_u64()).collect();
                Ok(BrokerMessage::Acks { ids })
            }
            REPLY_OK => {
                let id = take_u64(&mut body, kind)?;
                let value = into_json(body, "reply value")?;
                Ok(BrokerMessage::Reply {
                    id,
                    result: Ok(value),
                })
            }
            REPLY_ERR => {
                let id = take_u64(&mut body, kind)?;
                let error = into_string(body, "reply error")?;
                Ok(BrokerMessage::Reply {
                    id,
                    result: Err(error),
                })
            }
            READY => {
                let broker_id = take_u32(&mut body, kind)?;
                Ok(BrokerMessage::Ready { broker_id })
            }
            SHARED => {
                let token = take_u64(&mut body, kind)?;
                let channel = into_string(body, "channel")?;
                Ok(BrokerMessage::Shared { token, channel })
            }
            other => Err(DecodeError::UnknownKind(other)),
        }
    }
}

/// [`KvCommand`]'s JSON shape (`{"action":"set","key":[…],"value":…}`), read through a plain
/// struct: serde's internally tagged enums buffer their fields, and a buffered field cannot be
/// read back as raw JSON text, so `KvCommand`'s derived `Deserialize` rejects `value`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct KvWire {
    action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<KeyPath>,
    /// `Some` whenever the field is present, even for `null`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    value: Option<Json>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    from: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    to: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    keys: Option<Vec<KeyPath>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seconds: Option<u64>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Json>, D::Error> {
    Json::deserialize(d).map(Some)
}

impl From<&KvCommand> for KvWire {
    fn from(command: &KvCommand) -> KvWire {
        let wire = |action: &str| KvWire {
            action: action.to_owned(),
            ..KvWire::default()
        };
        let keyed = |action: &str, key: &KeyPath| KvWire {
            key: Some(key.clone()),
            ..wire(action)
        };
        // Exhaustive on purpose: a new command must be given its wire form here.
        match command {
            KvCommand::Set { key, value } => KvWire {
                value: Some(value.clone()),
                ..keyed("set", key)
            },
            KvCommand::Get { key } => keyed("get", key),
            KvCommand::GetRange { key, from, to } => KvWire {
                from: Some(*from),
                to: *to,
                ..keyed("getRange", key)
            },
            KvCommand::GetAll => wire("getAll"),
            KvCommand::Count { key } => keyed("count", key),
            KvCommand::Add { key, value } => KvWire {
                value: Some(value.clone()),
                ..keyed("add", key)
            },
            KvCommand::Remove { key } => keyed("remove", key),
            KvCommand::RemoveRange { key, from, to } => KvWire {
                from: Some(*from),
                to: *to,
                ..keyed("removeRange", key)
            },
            KvCommand::RemoveAll => wire("removeAll"),
            KvCommand::Pop { key } => keyed("pop", key),
            KvCommand::HasKey { key } => keyed("hasKey", key),
            KvCommand::Expire { keys, seconds } => KvWire {
                keys: Some(keys.clone()),
                seconds: Some(*seconds),
                ..wire("expire")
            },
            KvCommand::Unexpire { keys } => KvWire {
                keys: Some(keys.clone()),
                ..wire("unexpire")
            },
        }
    }
}

impl KvWire {
    fn into_command(self) -> Result<KvCommand, String> {
        let action = self.action;
        let missing = |field: &str| format!("{action}: missing field `{field}`");
        let key = self.key.ok_or_else(|| missing("key"));
        let value = self.value.ok_or_else(|| missing("value"));
        let from = self.from.ok_or_else(|| missing("from"));
        let keys = self.keys.ok_or_else(|| missing("keys"));
        let to = self.to;
        Ok(match action.as_str() {
            "set" => KvCommand::Set {
                key: key?,
                value: value?,
            },
            "get" => KvCommand::Get { key: key? },
            "getRange" => KvCommand::GetRange {
                key: key?,
                from: from?,
                to,
            },
            "getAll" => KvCommand::GetAll,
            "count" => KvCommand::Count { key: key? },
            "add" => KvCommand::Add {
                key: key?,
                value: value?,
            },
            "remove" => KvCommand::Remove { key: key? },
            "removeRange" => KvCommand::RemoveRange {
                key: key?,
                from: from?,
                to,
            },
            "removeAll" => KvCommand::RemoveAll,
            "pop" => KvCommand::Pop { key: key? },
            "hasKey" => KvCommand::HasKey { key: key? },
            "expire" => KvCommand::Expire {
                keys: keys?,
                seconds: self.seconds.ok_or_else(|| missing("seconds"))?,
            },
            "unexpire" => KvCommand::Unexpire { keys: keys? },
            other => return Err(format!("unknown key/value action `{other}`")),
        })
    }
}

fn with_id(kind: u8, id: u64, rest: usize, write: impl FnOnce(&mut BytesMut)) -> Bytes {
    let mut b = BytesMut::with_capacity(9 + rest);
    b.put_u8(kind);
    b.put_u64(id);
    write(&mut b);
    b.freeze()
}

/// A publish body: request id, channel length and channel, then the frame.
fn publish_body(id: u64, channel: &str, frame: &[u8]) -> Bytes {
    with_id(PUBLISH, id, 4 + channel.len() + frame.len(), |b| {
        // Channel names come from a frame, far below 4 GiB.
        b.put_u32(u32::try_from(channel.len()).unwrap_or(u32::MAX));
        b.put_slice(channel.as_bytes());
        b.put_slice(frame);
    })
}

fn take_kind(body: &mut Bytes) -> Result<u8, DecodeError> {
    if body.is_empty() {
        return Err(DecodeError::Empty);
    }
    Ok(body.get_u8())
}

fn take_u64(body: &mut Bytes, kind: u8) -> Result<u64, DecodeError> {
    if body.len() < 8 {
        return Err(DecodeError::Truncated(kind));
    }
    Ok(body.get_u64())
}

fn take_u32(body: &mut Bytes, kind: u8) -> Result<u32, DecodeError> {
    if body.len() < 4 {
        return Err(DecodeError::Truncated(kind));
    }
    Ok(body.get_u32())
}

fn into_string(body: Bytes, what: &'static str) -> Result<String, DecodeError> {
    String::from_utf8(body.to_vec()).map_err(|_| DecodeError::Utf8(what))
}

fn into_json(body: Bytes, what: &'static str) -> Result<Json, DecodeError> {
    Json::from_bytes(body).map_err(|e| DecodeError::Json {
        what,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn json(text: &str) -> Json {
        Json::from_text(text).unwrap()
    }

    #[test]
    fn publish_carries_the_frame_verbatim() {
        let p = Publication::new("news", Some(&json(r#"{"a" : 1.50}"#)));
        let msg = WorkerMessage::publish(7, &p);
        let body = msg.encode();
        assert_eq!(body[0], PUBLISH);
        let WorkerMessage::Publish { id, channel, frame } = WorkerMessage::decode(body).unwrap()
        else {
            panic!("not a publish");
        };
        assert_eq!((id, channel.as_str()), (7, "news"));
        assert_eq!(frame, p.frame());
        assert_eq!(Publication::from_frame(frame).unwrap(), p);
        assert_eq!(
            WorkerMessage::publish_body(7, &p),
            WorkerMessage::publish(7, &p).encode(),
            "the direct encoding is the message's"
        );
    }

    #[test]
    fn broker_publication_is_kind_then_frame() {
        let p = Publication::new("x", None);
        let body = BrokerMessage::publication(p.frame());
        assert_eq!(body[0], PUBLICATION);
        assert_eq!(&body[1..], &p.frame()[..]);
        assert_eq!(
            BrokerMessage::decode(body).unwrap(),
            BrokerMessage::Publication {
                frame: p.frame().clone()
            }
        );
    }

    #[test]
    fn a_delivery_carries_its_channel_beside_the_frame() {
        let p = Publication::new("news", Some(&json(r#"{"a":1}"#)));
        let body = BrokerMessage::delivery(p.channel(), p.frame());
        assert_eq!(body[0], DELIVERY);
        let BrokerMessage::Delivery { channel, frame } = BrokerMessage::decode(body).unwrap()
        else {
            panic!("not a delivery");
        };
        assert_eq!(channel, "news");
        assert_eq!(
            Publication::from_channel_and_frame(&channel, frame).unwrap(),
            p
        );
        assert_eq!(
            BrokerMessage::decode(BrokerMessage::acks(&[3, 1, 2])).unwrap(),
            BrokerMessage::Acks { ids: vec![3, 1, 2] }
        );
        assert_eq!(
            BrokerMessage::decode(Bytes::from_static(&[ACKS, 0, 0, 0])),
            Err(DecodeError::Truncated(ACKS))
        );
        assert_eq!(
            BrokerMessage::decode(Bytes::from_static(&[ACKS])),
            Err(DecodeError::Truncated(ACKS))
        );
    }

    #[test]
    fn kv_commands_round_trip_with_json_values() {
        let commands = [
            KvCommand::Set {
                key: vec!["user".into(), "bob".into()],
                value: json(r#"{"age":5}"#),
            },
            KvCommand::GetRange {
                key: vec!["list".into()],
                from: 1,
                to: None,
            },
            KvCommand::GetAll,
            KvCommand::Expire {
                keys: vec![vec!["a".into()], vec!["b".into(), "c".into()]],
                seconds: 3,
            },
        ];
        for command in commands {
            let msg = WorkerMessage::Kv { id: 3, command };
            assert_eq!(WorkerMessage::decode(msg.encode()).unwrap(), msg);
        }
    }

    #[test]
    fn kv_wire_form_is_kv_commands_serde_form() {
        let command = KvCommand::Set {
            key: vec!["k".into()],
            value: Json::NULL,
        };
        let ours = serde_json::to_value(KvWire::from(&command)).unwrap();
        assert_eq!(ours, serde_json::to_value(&command).unwrap());
        let range = KvCommand::GetRange {
            key: vec!["k".into()],
            from: 1,
            to: Some(2),
        };
        let ours = serde_json::to_value(KvWire::from(&range)).unwrap();
        assert_eq!(ours, serde_json::to_value(&range).unwrap());
        // `null` is a value, not a missing one.
        let msg = WorkerMessage::Kv { id: 1, command };
        assert_eq!(WorkerMessage::decode(msg.encode()).unwrap(), msg);
    }

    #[test]
    fn typed_errors_for_garbage() {
        assert_eq!(WorkerMessage::decode(Bytes::new()), Err(DecodeError::Empty));
        assert_eq!(
            WorkerMessage::decode(Bytes::from_static(&[0x7f])),
            Err(DecodeError::UnknownKind(0x7f))
        );
        assert_eq!(
            WorkerMessage::decode(Bytes::from_static(&[SUBSCRIBE, 0, 0])),
            Err(DecodeError::Truncated(SUBSCRIBE))
        );
        let mut publish = vec![PUBLISH, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 9];
        publish.extend_from_slice(b"abc");
        assert_eq!(
            WorkerMessage::decode(Bytes::from(publish)),
            Err(DecodeError::Truncated(PUBLISH))
        );
        let mut subscribe = vec![SUBSCRIBE, 0, 0, 0, 0, 0, 0, 0, 1];
        subscribe.push(0xff);
        assert_eq!(
            WorkerMessage::decode(Bytes::from(subscribe)),
            Err(DecodeError::Utf8("channel"))
        );
        let mut kv = vec![KV, 0, 0, 0, 0, 0, 0, 0, 1];
        kv.extend_from_slice(br#"{"action":"nope"}"#);
        assert!(matches!(
            WorkerMessage::decode(Bytes::from(kv)),
            Err(DecodeError::Json { .. })
        ));
        assert_eq!(
            BrokerMessage::decode(Bytes::from_static(&[READY, 1])),
            Err(DecodeError::Truncated(READY))
        );
        let mut reply = vec![REPLY_OK, 0, 0, 0, 0, 0, 0, 0, 1];
        reply.extend_from_slice(b"{oops");
        assert!(matches!(
            BrokerMessage::decode(Bytes::from(reply)),
            Err(DecodeError::Json { .. })
        ));
    }

    fn any_json() -> impl Strategy<Value = Json> {
        prop_oneof![
            Just(Json::NULL),
            any::<i64>().prop_map(|n| Json::encode(&n).unwrap()),
            ".*".prop_map(|s: String| Json::string(&s)),
            proptest::collection::vec(any::<bool>(), 0..4).prop_map(|v| Json::encode(&v).unwrap()),
        ]
    }

    fn any_key() -> impl Strategy<Value = Vec<String>> {
        proptest::collection::vec(".{0,8}", 1..4)
    }

    fn any_kv() -> impl Strategy<Value = KvCommand> {
        prop_oneof![
            (any_key(), any_json()).prop_map(|(key, value)| KvCommand::Set { key, value }),
            any_key().prop_map(|key| KvCommand::Get { key }),
            (any_key(), any::<u16>(), proptest::option::of(any::<u16>())).prop_map(
                |(key, from, to)| KvCommand::RemoveRange {
                    key,
                    from: from.into(),
                    to: to.map(usize::from),
                }
            ),
            Just(KvCommand::RemoveAll),
            Just(KvCommand::GetAll),
            (any_key(), any_json()).prop_map(|(key, value)| KvCommand::Add { key, value }),
            (any_key(), any::<u16>(), proptest::option::of(any::<u16>())).prop_map(
                |(key, from, to)| KvCommand::GetRange {
                    key,
                    from: from.into(),
                    to: to.map(usize::from),
                }
            ),
            any_key().prop_map(|key| KvCommand::Count { key }),
            any_key().prop_map(|key| KvCommand::Remove { key }),
            any_key().prop_map(|key| KvCommand::Pop { key }),
            any_key().prop_map(|key| KvCommand::HasKey { key }),
            proptest::collection::vec(any_key(), 0..3)
                .prop_map(|keys| KvCommand::Unexpire { keys }),
            (proptest::collection::vec(any_key(), 0..3), any::<u32>()).prop_map(
                |(keys, seconds)| KvCommand::Expire {
                    keys,
                    seconds: seconds.into(),
                }
            ),
        ]
    }

    fn any_worker_message() -> impl Strategy<Value = WorkerMessage> {
        prop_oneof![
            (any::<u64>(), ".*").prop_map(|(id, channel)| WorkerMessage::Subscribe { id, channel }),
            (any::<u64>(), ".*")
                .prop_map(|(id, channel)| WorkerMessage::Unsubscribe { id, channel }),
            (any::<u64>(), ".*", proptest::option::of(any_json())).prop_map(
                |(id, channel, data)| {
                    WorkerMessage::publish(id, &Publication::new(&channel, data.as_ref()))
                }
            ),
            (any::<u64>(), any_kv()).prop_map(|(id, command)| WorkerMessage::Kv { id, command }),
            (any::<u64>(), any_json()).prop_map(|(id, data)| WorkerMessage::Send { id, data }),
            (any::<u64>(), any_json())
                .prop_map(|(id, request)| WorkerMessage::Stream { id, request }),
            any::<u64>().prop_map(|token| WorkerMessage::SharedAck { token }),
        ]
    }

    fn any_broker_message() -> impl Strategy<Value = BrokerMessage> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..64).prop_map(|f| {
                BrokerMessage::Publication {
                    frame: Bytes::from(f),
                }
            }),
            (any::<u64>(), any_json())
                .prop_map(|(id, v)| BrokerMessage::Reply { id, result: Ok(v) }),
            (any::<u64>(), ".*").prop_map(|(id, e)| BrokerMessage::Reply { id, result: Err(e) }),
            any::<u32>().prop_map(|broker_id| BrokerMessage::Ready { broker_id }),
            (".*", proptest::collection::vec(any::<u8>(), 0..64)).prop_map(|(channel, f)| {
                BrokerMessage::Delivery {
                    channel,
                    frame: Bytes::from(f),
                }
            }),
            proptest::collection::vec(any::<u64>(), 1..40)
                .prop_map(|ids| BrokerMessage::Acks { ids }),
            (any::<u64>(), ".*")
                .prop_map(|(token, channel)| BrokerMessage::Shared { token, channel }),
        ]
    }

    proptest! {
        #[test]
        fn worker_messages_round_trip(msg in any_worker_message()) {
            prop_assert_eq!(WorkerMessage::decode(msg.encode()).unwrap(), msg);
        }

        #[test]
        fn broker_messages_round_trip(msg in any_broker_message()) {
            prop_assert_eq!(BrokerMessage::decode(msg.encode()).unwrap(), msg);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = WorkerMessage::decode(Bytes::from(bytes.clone()));
            let _ = BrokerMessage::decode(Bytes::from(bytes));
        }

        #[test]
        fn decode_never_panics_on_mangled_valid_messages(
            msg in any_worker_message(),
            cut in any::<prop::sample::Index>(),
        ) {
            let body = msg.encode();
            let _ = WorkerMessage::decode(body.slice(..cut.index(body.len() + 1)));
        }
    }
}
