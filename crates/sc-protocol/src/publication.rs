//! [`Publication`]: a channel message encoded once as its `#publish` frame.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use crate::encode::write_json_string;
use crate::frame::PublishData;
use crate::json::Json;

const PREFIX: &[u8] = br##"{"event":"#publish","data":{"channel":"##;

/// A message published to a channel, held as the exact frame every subscriber receives:
/// `{"event":"#publish","data":{"channel":<channel>,"data":<data>}}`.
///
/// The frame is built once per publish; every subscriber's queue gets a clone of the same
/// [`Bytes`] (a reference-count increment). Engines that carry messages between processes
/// ship [`Publication::frame`] and rebuild it with [`Publication::from_frame`], so the payload is
/// never re-encoded on its way.
///
/// ```
/// use sc_protocol::{Json, Publication};
///
/// let p = Publication::new("news", Some(&Json::from_text(r#"{"headline":"x"}"#).unwrap()));
/// assert_eq!(&p.frame()[..], br##"{"event":"#publish","data":{"channel":"news","data":{"headline":"x"}}}"##);
/// assert_eq!(p.channel(), "news");
/// assert_eq!(p.data().unwrap().get(), r#"{"headline":"x"}"#);
/// assert_eq!(Publication::from_frame(p.frame().clone()).unwrap(), p);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publication {
    channel: Arc<str>,
    frame: Bytes,
    data: Option<Json>,
}

/// A frame is not a well-formed `#publish` frame.
#[derive(Debug, thiserror::Error)]
#[error("not a #publish frame")]
pub struct NotAPublication;

impl Publication {
    /// Encodes a publication of `data` (or of no data) to `channel`.
    pub fn new(channel: &str, data: Option<&Json>) -> Publication {
        let data_len = data.map_or(0, |d| d.as_bytes().len());
        let mut out = BytesMut::with_capacity(PREFIX.len() + channel.len() + data_len + 16);
        out.put_slice(PREFIX);
        write_json_string(&mut out, channel);
        let data_start = out.len() + 8;
        if let Some(data) = data {
            out.put_slice(b",\"data\":");
            out.put_slice(data.as_bytes());
        }
        out.put_slice(b"}}");
        let frame = out.freeze();
        let data = data.map(|d| {
            Json::from_validated(frame.slice(data_start..data_start + d.as_bytes().len()))
        });
        Publication {
            channel: Arc::from(channel),
            frame,
            data,
        }
    }

    /// Reads a publication back from its frame (e.g. after it crossed a broker or engine).
    pub fn from_frame(frame: Bytes) -> Result<Publication, NotAPublication> {
        let crate::Frame::Packets(packets) = crate::Frame::decode_bytes(frame.clone()) else {
            return Err(NotAPublication);
        };
        let [crate::Packet::Event(event)] = &packets[..] else {
            return Err(NotAPublication);
        };
        if event.event != "#publish" || event.cid.is_some() {
            return Err(NotAPublication);
        }
        let publish = PublishData::parse(event.data.as_ref()).ok_or(NotAPublication)?;
        Ok(Publication {
            channel: Arc::from(publish.channel),
            frame,
            data: publish.data,
        })
    }

    /// The channel name.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The channel name, shared.
    pub fn channel_arc(&self) -> &Arc<str> {
        &self.channel
    }

    /// The published data, verbatim (a slice of the frame).
    pub fn data(&self) -> Option<&Json> {
        self.data.as_ref()
    }

    /// The whole `#publish` frame, ready to be written to any subscriber.
    pub fn frame(&self) -> &Bytes {
        &self.frame
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_channel_and_round_trips() {
        let p = Publication::new("we\"ird/ch", None);
        assert_eq!(
            &p.frame()[..],
            br##"{"event":"#publish","data":{"channel":"we\"ird/ch"}}"##
        );
        let back = Publication::from_frame(p.frame().clone()).unwrap();
        assert_eq!(back.channel(), "we\"ird/ch");
        assert!(back.data().is_none());
    }

    #[test]
    fn rejects_other_frames() {
        assert!(
            Publication::from_frame(Bytes::from_static(br#"{"event":"x","data":{}}"#)).is_err()
        );
        assert!(Publication::from_frame(Bytes::from_static(b"garbage")).is_err());
    }
}
