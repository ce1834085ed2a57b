//! Stream positions of history channels (EXTENSIONS.md E2–E4, E7): [`StreamPosition`],
//! [`Publication`] (a channel item with its position), [`Recovery`] (what a resubscribe
//! achieved), and the wire parsing of positions in deliveries and subscribe acknowledgements.
//!
//! A channel whose name matches a `history` pattern on the server has an *offset* (1 for the
//! first publication, +1 for each next one) and an *epoch* (one unbroken history). The client
//! remembers the last position of each such channel and resubscribes with
//! `{"recover":{offset,epoch}}` after every reconnect, so the server replays what was missed.

use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use sc_protocol::Json;
use serde::{Deserialize, Serialize};

/// A position in a history channel's stream: the offset of a publication and the epoch of the
/// history it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "WirePosition", into = "WirePosition")]
pub struct StreamPosition {
    /// 1 for the first publication of the epoch, +1 for each following one; 0 before any.
    pub offset: u64,
    /// Identifies one unbroken history; a new epoch means publications may have been lost.
    pub epoch: Arc<str>,
}

/// The serde form of [`StreamPosition`]: `{"offset":…,"epoch":"…"}`.
#[derive(Serialize, Deserialize)]
struct WirePosition {
    offset: u64,
    epoch: String,
}

impl From<WirePosition> for StreamPosition {
    fn from(wire: WirePosition) -> StreamPosition {
        StreamPosition::new(wire.offset, wire.epoch)
    }
}

impl From<StreamPosition> for WirePosition {
    fn from(position: StreamPosition) -> WirePosition {
        WirePosition {
            offset: position.offset,
            epoch: position.epoch.to_string(),
        }
    }
}

impl StreamPosition {
    /// A position from its parts.
    pub fn new(offset: u64, epoch: impl Into<Arc<str>>) -> StreamPosition {
        StreamPosition {
            offset,
            epoch: epoch.into(),
        }
    }

    /// `{"offset":…,"epoch":…}`, as `recover` wants it.
    pub(crate) fn to_json_text(&self) -> String {
        format!(
            r#"{{"offset":{},"epoch":{}}}"#,
            self.offset,
            Json::string(&self.epoch)
        )
    }
}

impl fmt::Display for StreamPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.offset, self.epoch)
    }
}

/// One item of a [`Channel`](crate::Channel) stream: the published data and, on a history
/// channel, its position.
///
/// It dereferences to the data ([`Json`]), so `item.get()` and `item.parse::<T>()` read the
/// payload as they did when channel items were plain [`Json`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    /// The published data (`null` when the publication had none).
    pub data: Json,
    /// The position, on channels with history; `None` on plain channels.
    pub position: Option<StreamPosition>,
}

impl Publication {
    /// The data, by value.
    pub fn into_data(self) -> Json {
        self.data
    }

    /// The offset, on a history channel.
    pub fn offset(&self) -> Option<u64> {
        self.position.as_ref().map(|p| p.offset)
    }
}

impl Deref for Publication {
    type Target = Json;

    fn deref(&self) -> &Json {
        &self.data
    }
}

impl fmt::Display for Publication {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.data, f)
    }
}

impl PartialEq<Json> for Publication {
    fn eq(&self, other: &Json) -> bool {
        self.data == *other
    }
}

/// What happened to a history channel's stream when it was resubscribed or when a delivery
/// showed a new epoch (reported as [`ClientEvent::Recovery`](crate::ClientEvent::Recovery)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// The server replayed every publication missed since `from`, exactly once.
    Recovered {
        /// The position the client asked to continue from.
        from: StreamPosition,
    },
    /// Publications may be missing: the server answered `recovered: false` (a new epoch, or
    /// the history no longer holds what was missed; whatever it still held was replayed), or a
    /// live delivery carried a new epoch (the history was lost under the subscription, E7). The
    /// application should reload its state another way.
    NotRecovered {
        /// The position the client held (`None` if it held none).
        from: Option<StreamPosition>,
    },
}

impl Recovery {
    /// Whether nothing was missed.
    pub fn is_recovered(&self) -> bool {
        matches!(self, Recovery::Recovered { .. })
    }
}

/// The position keys of a `#publish` delivery's data (`offset`, `epoch`), when both are there.
pub(crate) fn delivery_position(data: &Json) -> Option<(u64, Cow<'_, str>)> {
    #[derive(Deserialize)]
    struct Keys<'a> {
        offset: Option<u64>,
        #[serde(borrow)]
        epoch: Option<Cow<'a, str>>,
    }
    let keys: Keys<'_> = serde_json::from_slice(data.as_bytes()).ok()?;
    match (keys.offset, keys.epoch) {
        (Some(offset), Some(epoch)) if !epoch.is_empty() => Some((offset, epoch)),
        _ => None,
    }
}

/// The data of a `#subscribe` acknowledgement on a history channel.
#[derive(Debug, PartialEq)]
pub(crate) struct SubscribeAck {
    /// `recovered`, when the subscribe asked to recover.
    pub(crate) recovered: Option<bool>,
    /// The channel's position at the acknowledgement.
    pub(crate) position: StreamPosition,
}

impl SubscribeAck {
    /// Reads `{"recovered"?:bool,"offset":n,"epoch":"…"}`; `None` for plain channels (no data,
    /// or no position in it).
    pub(crate) fn parse(data: Option<&Json>) -> Option<SubscribeAck> {
        #[derive(Deserialize)]
        struct Ack {
            recovered: Option<bool>,
            offset: u64,
            epoch: String,
        }
        let ack: Ack = data?.parse().ok()?;
        if ack.epoch.is_empty() {
            return None;
        }
        Some(SubscribeAck {
            recovered: ack.recovered,
            position: StreamPosition::new(ack.offset, ack.epoch),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> Json {
        Json::from_text(text).unwrap()
    }

    #[test]
    fn positions_in_deliveries() {
        let d = json(
            r#"{"channel":"room/1","data":{"offset":9,"epoch":"no"},"offset":42,"epoch":"k3Vq9"}"#,
        );
        let (offset, epoch) = delivery_position(&d).unwrap();
        assert_eq!((offset, &*epoch), (42, "k3Vq9"));
        for plain in [
            r#"{"channel":"c","data":1}"#,
            r#"{"channel":"c","data":1,"offset":3}"#,
            r#"{"channel":"c","data":1,"offset":-1,"epoch":"e"}"#,
            r#"{"channel":"c","data":1,"offset":1,"epoch":""}"#,
            r#"{"channel":"c","data":1,"offset":1,"epoch":7}"#,
        ] {
            assert_eq!(delivery_position(&json(plain)), None, "{plain}");
        }
    }

    #[test]
    fn subscribe_acks() {
        let ack = SubscribeAck::parse(Some(&json(
            r#"{"recovered":true,"offset":45,"epoch":"k3Vq9"}"#,
        )))
        .unwrap();
        assert_eq!(ack.recovered, Some(true));
        assert_eq!(ack.position, StreamPosition::new(45, "k3Vq9"));
        let fresh = SubscribeAck::parse(Some(&json(r#"{"offset":0,"epoch":"e"}"#))).unwrap();
        assert_eq!(fresh.recovered, None);
        assert_eq!(SubscribeAck::parse(None), None);
        assert_eq!(SubscribeAck::parse(Some(&json("null"))), None);
        assert_eq!(SubscribeAck::parse(Some(&json(r#"{"offset":1}"#))), None);
    }

    #[test]
    fn publication_reads_like_json() {
        let p = Publication {
            data: json(r#"{"text":"hi"}"#),
            position: Some(StreamPosition::new(3, "e")),
        };
        assert_eq!(p.get(), r#"{"text":"hi"}"#);
        assert_eq!(p.parse::<serde_json::Value>().unwrap()["text"], "hi");
        assert_eq!(p.to_string(), r#"{"text":"hi"}"#);
        assert_eq!(p.offset(), Some(3));
        assert_eq!(
            StreamPosition::new(3, "e\"x").to_json_text(),
            r#"{"offset":3,"epoch":"e\"x"}"#
        );
    }
}
