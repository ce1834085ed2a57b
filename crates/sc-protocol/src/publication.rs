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
    /// The stream position (EXTENSIONS.md E2) on channels with history; also written into
    /// `frame` as its `offset` and `epoch` keys. Kept apart so other codecs can encode it.
    position: Option<Position>,
}

/// A publication's place in its channel's history (EXTENSIONS.md E2): `offset` counts the
/// channel's publications from 1, `epoch` names one unbroken history.
///
/// ```
/// use sc_protocol::{Json, Position, Publication};
///
/// let p = Publication::new("room/1", Some(&Json::from_text(r#"{"text":"hi"}"#).unwrap()))
///     .with_position(Position::new(42, "k3Vq9"));
/// assert_eq!(
///     &p.frame()[..],
///     br##"{"event":"#publish","data":{"channel":"room/1","data":{"text":"hi"},"offset":42,"epoch":"k3Vq9"}}"##
/// );
/// assert_eq!(Publication::from_frame(p.frame().clone()).unwrap(), p);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Position {
    /// 1 for the channel's first publication, +1 for each next one (0: none yet).
    pub offset: u64,
    /// Identifies one unbroken history; changes whenever publications may have been lost.
    pub epoch: Arc<str>,
}

impl Position {
    /// A position.
    pub fn new(offset: u64, epoch: &str) -> Position {
        Position {
            offset,
            epoch: Arc::from(epoch),
        }
    }

    /// `{"offset":N,"epoch":"E"}`, the shape used in acknowledgements.
    pub fn to_json(&self) -> String {
        let mut out = BytesMut::with_capacity(32 + self.epoch.len());
        out.put_slice(b"{\"offset\":");
        out.put_slice(self.offset.to_string().as_bytes());
        out.put_slice(b",\"epoch\":");
        write_json_string(&mut out, &self.epoch);
        out.put_u8(b'}');
        String::from_utf8(out.to_vec()).unwrap_or_default()
    }
}

/// A frame is not a well-formed `#publish` frame.
#[derive(Debug, thiserror::Error)]
#[error("not a #publish frame")]
pub struct NotAPublication;

impl Publication {
    /// Encodes a publication of `data` (or of no data) to `channel`.
    pub fn new(channel: &str, data: Option<&Json>) -> Publication {
        Publication::encode(Arc::from(channel), false, data, None)
    }

    /// [`Publication::new`] with a channel name already shared.
    pub fn new_shared(channel: Arc<str>, data: Option<&Json>) -> Publication {
        Publication::encode(channel, false, data, None)
    }

    /// [`Publication::new`] for a channel whose name is known to need no escaping in JSON
    /// (`plain_channel`: it arrived as a JSON string without escapes), so that it is copied as
    /// it is.
    pub(crate) fn from_parts(
        channel: Arc<str>,
        plain_channel: bool,
        data: Option<&Json>,
    ) -> Publication {
        Publication::encode(channel, plain_channel, data, None)
    }

    /// The same publication at `position` (its frame re-encoded once with `offset` and `epoch`
    /// after `data`, EXTENSIONS.md E2).
    pub fn with_position(&self, position: Position) -> Publication {
        Publication::encode(
            self.channel.clone(),
            false,
            self.data.as_ref(),
            Some(position),
        )
    }

    fn encode(
        channel: Arc<str>,
        plain_channel: bool,
        data: Option<&Json>,
        position: Option<Position>,
    ) -> Publication {
        let data_len = data.map_or(0, |d| d.as_bytes().len());
        let extra = position.as_ref().map_or(0, |p| 40 + p.epoch.len());
        let mut out = BytesMut::with_capacity(PREFIX.len() + channel.len() + data_len + 16 + extra);
        out.put_slice(PREFIX);
        if plain_channel {
            // A name that arrived as a JSON string without escapes needs none: it has no quote,
            // no backslash and no control character (JSON forbids them unescaped).
            out.put_u8(b'"');
            out.put_slice(channel.as_bytes());
            out.put_u8(b'"');
        } else {
            write_json_string(&mut out, &channel);
        }
        let data_start = out.len() + 8;
        if let Some(data) = data {
            out.put_slice(b",\"data\":");
            out.put_slice(data.as_bytes());
        }
        if let Some(position) = &position {
            out.put_slice(b",\"offset\":");
            out.put_slice(position.offset.to_string().as_bytes());
            out.put_slice(b",\"epoch\":");
            write_json_string(&mut out, &position.epoch);
        }
        out.put_slice(b"}}");
        let frame = out.freeze();
        let data = data.map(|d| {
            Json::from_validated(frame.slice(data_start..data_start + d.as_bytes().len()))
        });
        Publication {
            channel,
            frame,
            data,
            position,
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
        let position = read_position(event.data.as_ref(), &frame)?;
        Ok(Publication {
            channel: Arc::from(publish.channel),
            frame,
            data: publish.data,
            position,
        })
    }

    /// The stream position, on channels with history (EXTENSIONS.md E2).
    pub fn position(&self) -> Option<&Position> {
        self.position.as_ref()
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

impl Publication {
    /// Reads back a publication whose channel came beside its frame (as a broker process sends
    /// them, crates/sc-broker `process::protocol`): when the frame is `channel`'s `#publish`
    /// frame as [`Publication::new`] writes it, only its data is read (validated once), instead
    /// of the whole frame twice as [`Publication::from_frame`] does; any other frame (one with a
    /// position, say) is read by `from_frame`, which also checks that its channel is `channel`.
    ///
    /// ```
    /// use sc_protocol::{Json, Publication};
    ///
    /// let p = Publication::new("news", Some(&Json::from_text(r#"{"a":1}"#).unwrap()));
    /// let back = Publication::from_channel_and_frame("news", p.frame().clone()).unwrap();
    /// assert_eq!(back, p);
    /// assert!(Publication::from_channel_and_frame("other", p.frame().clone()).is_err());
    /// ```
    pub fn from_channel_and_frame(
        channel: &str,
        frame: Bytes,
    ) -> Result<Publication, NotAPublication> {
        let data = match data_range(channel, &frame) {
            Some(None) => Some(None),
            // Data that does not validate may be a positioned frame's: `from_frame` tells.
            Some(Some((start, end))) => Json::from_bytes(frame.slice(start..end)).ok().map(Some),
            None => None,
        };
        if let Some(data) = data {
            return Ok(Publication {
                channel: Arc::from(channel),
                frame,
                data,
                position: None,
            });
        }
        let publication = Publication::from_frame(frame)?;
        if publication.channel() != channel {
            return Err(NotAPublication);
        }
        Ok(publication)
    }
}

/// Where the data of `channel`'s plain `#publish` frame lies: `Some(None)` for a frame without
/// data, `Some(Some(range))` for one with data (not yet validated; a positioned frame's data
/// runs on into its position and fails validation), `None` for a frame of another shape.
fn data_range(channel: &str, frame: &[u8]) -> Option<Option<(usize, usize)>> {
    // Only channel names that JSON writes verbatim between quotes take the short way.
    if channel.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        return None;
    }
    let rest = frame.strip_prefix(PREFIX)?;
    let rest = rest.strip_prefix(b"\"")?;
    let rest = rest.strip_prefix(channel.as_bytes())?;
    let rest = rest.strip_prefix(b"\"")?;
    let rest = rest.strip_suffix(b"}}")?;
    if rest.is_empty() {
        return Some(None);
    }
    let data = rest.strip_prefix(b",\"data\":")?;
    let end = frame.len() - 2;
    Some(Some((end - data.len(), end)))
}

/// The `offset` and `epoch` of a positioned frame. Only frames whose end can be a position
/// (`…"}}`) are parsed a second time, so plain publications cost nothing more.
fn read_position(data: Option<&Json>, frame: &[u8]) -> Result<Option<Position>, NotAPublication> {
    if !frame.ends_with(b"\"}}") {
        return Ok(None);
    }
    let Some(data) = data else { return Ok(None) };
    #[derive(serde::Deserialize)]
    struct Fields<'a> {
        offset: Option<u64>,
        #[serde(borrow)]
        epoch: Option<std::borrow::Cow<'a, str>>,
    }
    let fields: Fields<'_> =
        serde_json::from_slice(data.as_bytes()).map_err(|_| NotAPublication)?;
    match (fields.offset, fields.epoch) {
        (Some(offset), Some(epoch)) => Ok(Some(Position::new(offset, &epoch))),
        _ => Ok(None),
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
    fn channel_beside_the_frame_reads_only_the_data() {
        let data = Json::from_text(r#"{"n":[1,2]}"#).unwrap();
        for p in [
            Publication::new("room/1", Some(&data)),
            Publication::new("room/1", None),
            Publication::new("we\"ird", Some(&data)),
            Publication::new("c", Some(&Json::from_text(r#""text""#).unwrap()))
                .with_position(Position::new(7, "e1")),
        ] {
            let back = Publication::from_channel_and_frame(p.channel(), p.frame().clone());
            assert_eq!(back.unwrap(), p);
        }
        let p = Publication::new("room/1", Some(&data));
        assert!(Publication::from_channel_and_frame("room/2", p.frame().clone()).is_err());
        let broken =
            Bytes::from_static(br##"{"event":"#publish","data":{"channel":"c","data":{"a"}}"##);
        assert!(Publication::from_channel_and_frame("c", broken).is_err());
    }

    #[test]
    fn rejects_other_frames() {
        assert!(
            Publication::from_frame(Bytes::from_static(br#"{"event":"x","data":{}}"#)).is_err()
        );
        assert!(Publication::from_frame(Bytes::from_static(b"garbage")).is_err());
    }

    #[test]
    fn positions_round_trip_and_plain_string_data_has_none() {
        let data = Json::from_text(r#""text""#).unwrap();
        let plain = Publication::new("c", Some(&data));
        assert_eq!(
            Publication::from_frame(plain.frame().clone())
                .unwrap()
                .position(),
            None
        );
        let placed = plain.with_position(Position::new(7, "e1"));
        assert_eq!(
            &placed.frame()[..],
            br##"{"event":"#publish","data":{"channel":"c","data":"text","offset":7,"epoch":"e1"}}"##
        );
        let back = Publication::from_frame(placed.frame().clone()).unwrap();
        assert_eq!(back.position(), Some(&Position::new(7, "e1")));
        assert_eq!(back.data().unwrap().get(), r#""text""#);
        assert_eq!(
            Position::new(3, "x").to_json(),
            r#"{"offset":3,"epoch":"x"}"#
        );
    }
}
