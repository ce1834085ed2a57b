//! Decoding inbound frames the way `sc-formatter` and the reference servers do (docs/protocol.md §2.1, §3).

use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::json::Json;

/// What one inbound WebSocket text frame turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// `#1`: the protocol v1 ping (server to client).
    PingV1,
    /// `#2`: the protocol v1 pong (client to server).
    PongV1,
    /// The empty frame: the protocol v2 ping or pong.
    Empty,
    /// One packet, or the packets of a batch (a JSON array), in order.
    Packets(Vec<Packet>),
    /// Anything else: not JSON, a JSON scalar, or an object that is neither event nor response.
    Raw(Bytes),
}

/// One packet of a frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Packet {
    /// `{"event":…,"data":…,"cid":…}`.
    Event(EventPacket),
    /// `{"rid":…,"error":…,"data":…}`.
    Response(ResponsePacket),
    /// A batch element that is neither an event nor a response; handled as a raw message.
    Raw(Bytes),
}

/// An event (or request, when it carries a `cid`).
#[derive(Debug, Clone, PartialEq)]
pub struct EventPacket {
    /// Event, procedure or receiver name. Names starting with `#` belong to the protocol.
    pub event: String,
    /// The payload, verbatim; `None` when the sender left it out.
    pub data: Option<Json>,
    /// The call id, present only when the sender expects a response. Only numeric cids count
    /// (a string cid makes the packet fire-and-forget, as in the v15+ reference server).
    pub cid: Option<u64>,
}

/// A response to an earlier request.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponsePacket {
    /// The cid being answered.
    pub rid: u64,
    /// The error, when the request failed (`"error":null` counts as success).
    pub error: Option<Json>,
    /// The response data.
    pub data: Option<Json>,
}

impl Frame {
    /// Decodes a text frame held in a `&str` (copies it once into shared bytes).
    pub fn decode(text: &str) -> Frame {
        Frame::decode_bytes(Bytes::copy_from_slice(text.as_bytes()))
    }

    /// Decodes a frame's bytes. Packet payloads are zero-copy slices of `bytes`.
    ///
    /// Binary frames are decoded the same way (the reference servers read them as UTF-8 text);
    /// bytes that are not UTF-8 are a raw message.
    pub fn decode_bytes(bytes: Bytes) -> Frame {
        match &bytes[..] {
            b"#1" => return Frame::PingV1,
            b"#2" => return Frame::PongV1,
            b"" => return Frame::Empty,
            _ => {}
        }
        let Ok(text) = std::str::from_utf8(&bytes) else {
            return Frame::Raw(bytes);
        };
        let first = text
            .trim_start_matches([' ', '\n', '\r', '\t'])
            .as_bytes()
            .first();
        match first {
            // One pass: reading the fields validates the whole object.
            Some(b'{') => match packet_from_object(&bytes, text) {
                Some(packet) => Frame::Packets(vec![packet]),
                None => Frame::Raw(bytes),
            },
            Some(b'[') => match serde_json::from_str::<Vec<&RawValue>>(text) {
                Ok(items) => Frame::Packets(
                    items
                        .into_iter()
                        .map(|raw| {
                            packet_from_raw(&bytes, raw).unwrap_or_else(|| {
                                Packet::Raw(bytes.slice_ref(raw.get().as_bytes()))
                            })
                        })
                        .collect(),
                ),
                // A JSON array whose items are not all values cannot happen; anything that does
                // not parse is raw, as with `JSON.parse` failures in sc-formatter.
                Err(_) => Frame::Raw(bytes),
            },
            _ => Frame::Raw(bytes),
        }
    }
}

/// The fields of an inbound packet object; unknown fields are ignored.
#[derive(Deserialize)]
struct PacketFields<'a> {
    #[serde(borrow, default)]
    event: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    data: Option<&'a RawValue>,
    #[serde(borrow, default)]
    cid: Option<&'a RawValue>,
    #[serde(borrow, default)]
    rid: Option<&'a RawValue>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
}

/// A field that is present is `Some`, even when its value is `null` (plain `Option` would turn
/// `"data":null` into `None` and drop it when forwarding).
fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(deserializer).map(Some)
}

fn packet_from_raw(frame: &Bytes, raw: &RawValue) -> Option<Packet> {
    if !raw.get().starts_with('{') {
        return None;
    }
    packet_from_object(frame, raw.get())
}

/// The packet in `text` (a JSON object, part of `frame`), if it is an event or a response.
fn packet_from_object(frame: &Bytes, text: &str) -> Option<Packet> {
    let fields: PacketFields<'_> = serde_json::from_str(text).ok()?;
    let slice = |value: &RawValue| Json::from_validated(frame.slice_ref(value.get().as_bytes()));
    if let Some(event) = fields.event {
        // v15+ servers: `event` must be a string.
        let event: Cow<'_, str> = serde_json::from_str(event.get()).ok()?;
        return Some(Packet::Event(EventPacket {
            event: event.into_owned(),
            data: fields.data.map(slice),
            cid: fields.cid.and_then(numeric_id),
        }));
    }
    let rid = numeric_id(fields.rid?)?;
    let error = fields.error.filter(|e| e.get() != "null").map(slice);
    Some(Packet::Response(ResponsePacket {
        rid,
        error,
        data: fields.data.map(slice),
    }))
}

/// A call id: a JSON number that is a non-negative integer. Anything else does not count.
pub(crate) fn numeric_id(raw: &RawValue) -> Option<u64> {
    let text = raw.get();
    text.parse::<u64>().ok().or_else(|| {
        let float: f64 = text.parse().ok()?;
        (float.fract() == 0.0 && (0.0..9.007_199_254_740_992e15).contains(&float))
            .then_some(float as u64)
    })
}

/// The data of a `#handshake` event: `{"authToken": <string or null>}`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HandshakeData {
    /// The token the client holds; `None` for null, missing, or missing `data`.
    pub auth_token: Option<Json>,
}

impl HandshakeData {
    /// Reads the handshake data; anything unreadable counts as "no token".
    pub fn parse(data: Option<&Json>) -> HandshakeData {
        #[derive(Deserialize)]
        struct Fields {
            #[serde(rename = "authToken", default)]
            auth_token: Option<Json>,
        }
        let auth_token = data
            .and_then(|d| d.parse::<Fields>().ok())
            .and_then(|f| f.auth_token)
            .filter(|t| !t.is_null());
        HandshakeData { auth_token }
    }
}

/// The data of a `#subscribe` event (docs/protocol.md §7.1).
#[derive(Debug, Clone, PartialEq)]
pub struct SubscribeData {
    /// Channel name.
    pub channel: String,
    /// Whether the client only subscribes while authenticated.
    pub wait_for_auth: bool,
    /// Free-form data for subscribe middleware.
    pub data: Option<Json>,
    /// v1 batch channel: the answer goes out inside a batch array.
    pub batch: bool,
}

impl SubscribeData {
    /// Reads `#subscribe` data; `None` when the channel name is missing or not a string.
    pub fn parse(data: Option<&Json>) -> Option<SubscribeData> {
        #[derive(Deserialize)]
        struct Fields {
            channel: String,
            #[serde(rename = "waitForAuth", default)]
            wait_for_auth: Option<serde_json::Value>,
            #[serde(default)]
            data: Option<Json>,
            #[serde(default)]
            batch: Option<serde_json::Value>,
        }
        let fields: Fields = data?.parse().ok()?;
        let truthy = |v: &Option<serde_json::Value>| matches!(v, Some(v) if !(v.is_null() || *v == false || *v == 0 || *v == ""));
        Some(SubscribeData {
            wait_for_auth: truthy(&fields.wait_for_auth),
            batch: truthy(&fields.batch),
            data: fields.data.filter(|d| !d.is_null()),
            channel: fields.channel,
        })
    }
}

/// The data of a client `#publish` event: `{"channel": <string>, "data": <any>}`.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishData {
    /// Channel name.
    pub channel: String,
    /// The published payload, verbatim (`None` when absent, forwarded as no `data` key).
    pub data: Option<Json>,
}

/// The fields of a `#publish` event's data, as both [`PublishData::parse`] and
/// [`PublishPacket::decode`] read them.
#[derive(Deserialize)]
struct PublishFields<'a> {
    #[serde(borrow)]
    channel: Cow<'a, str>,
    #[serde(borrow, default, deserialize_with = "present")]
    data: Option<&'a RawValue>,
}

impl PublishData {
    /// Reads `#publish` data; `None` when the channel is missing or not a string.
    pub fn parse(data: Option<&Json>) -> Option<PublishData> {
        let data = data?;
        let fields: PublishFields<'_> = serde_json::from_slice(data.as_bytes()).ok()?;
        let bytes = data.to_bytes();
        Some(PublishData {
            channel: fields.channel.into_owned(),
            data: fields
                .data
                .map(|raw| Json::from_validated(bytes.slice_ref(raw.get().as_bytes()))),
        })
    }
}

/// How a client `#publish` frame starts when its client wrote it the usual way (every
/// SocketCluster client does: `JSON.stringify({event, data, cid})`).
const PUBLISH_START: &[u8] = br##"{"event":"#publish","##;

/// A client `#publish` event, read in one JSON pass (docs/protocol.md §7.4): the channel and
/// the published data, borrowed from the frame's bytes.
///
/// [`PublishPacket::decode`] reads a frame that is one `#publish` event object, and reads its
/// `data` object in the same pass, where [`Frame::decode_bytes`] and [`PublishData::parse`]
/// take two. [`PublishPacket::publication`] then builds the delivery frame from the parsed
/// slices: the same bytes [`Publication::new`](crate::Publication::new) writes.
///
/// ```
/// use bytes::Bytes;
/// use sc_protocol::frame::PublishPacket;
///
/// let frame = Bytes::from_static(br##"{"event":"#publish","data":{"channel":"news","data":{"a":1}},"cid":8}"##);
/// let publish = PublishPacket::decode(&frame).unwrap();
/// assert_eq!((publish.channel(), publish.cid()), ("news", Some(8)));
/// assert_eq!(
///     &publish.publication().frame()[..],
///     br##"{"event":"#publish","data":{"channel":"news","data":{"a":1}}}"##
/// );
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct PublishPacket {
    /// The channel name, decoded.
    channel: std::sync::Arc<str>,
    /// Whether the channel's JSON string literal is `"` + the name + `"` (it held no escape, so
    /// the delivery frame takes it as it is).
    plain_channel: bool,
    data: Option<Json>,
    cid: Option<u64>,
}

impl PublishPacket {
    /// Reads `frame` as one `#publish` event in one pass, if it is one in the usual shape: a
    /// JSON object starting with `{"event":"#publish",` whose `data` is an object with a string
    /// `channel`. `None` for anything else; such a frame is read with [`Frame::decode_bytes`]
    /// (and [`PublishData::parse`]), which then come to the same verdict as before, whatever it
    /// is (a raw message, another packet, a malformed publish).
    ///
    /// When this returns a packet, the generic path would have read the same channel, data and
    /// cid: the fields are those of [`Frame::decode_bytes`] (unknown keys ignored, a repeated
    /// key refused) and of [`PublishData::parse`].
    pub fn decode(frame: &Bytes) -> Option<PublishPacket> {
        if !frame.starts_with(PUBLISH_START) {
            return None;
        }
        let text = std::str::from_utf8(frame).ok()?;
        #[derive(Deserialize)]
        struct Fields<'a> {
            // `event` (known from the start), `rid` and `error` are read only so that a repeated
            // key is refused here as on the generic path.
            #[serde(borrow, default)]
            #[allow(dead_code)]
            event: Option<&'a RawValue>,
            #[serde(borrow, default)]
            data: Option<PublishFields<'a>>,
            #[serde(borrow, default)]
            cid: Option<&'a RawValue>,
            #[serde(borrow, default)]
            #[allow(dead_code)]
            rid: Option<&'a RawValue>,
            #[serde(borrow, default)]
            #[allow(dead_code)]
            error: Option<&'a RawValue>,
        }
        let fields: Fields<'_> = serde_json::from_str(text).ok()?;
        // `"data":null` reads as `None` here: the generic path refuses it as malformed.
        let data = fields.data?;
        let plain_channel = matches!(data.channel, Cow::Borrowed(_));
        Some(PublishPacket {
            channel: std::sync::Arc::from(data.channel.as_ref()),
            plain_channel,
            data: data
                .data
                .map(|raw| Json::from_validated(frame.slice_ref(raw.get().as_bytes()))),
            cid: fields.cid.and_then(numeric_id),
        })
    }

    /// A `#publish` event read by [`Frame::decode_bytes`]: its data read with
    /// [`PublishData::parse`] (`None` when that finds it malformed).
    pub fn from_event(event: &EventPacket) -> Option<PublishPacket> {
        let publish = PublishData::parse(event.data.as_ref())?;
        Some(PublishPacket {
            channel: std::sync::Arc::from(publish.channel),
            plain_channel: false,
            data: publish.data,
            cid: event.cid,
        })
    }

    /// The channel name.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The published data, verbatim (`None` when absent).
    pub fn data(&self) -> Option<&Json> {
        self.data.as_ref()
    }

    /// The call id, when the client waits for an acknowledgement.
    pub fn cid(&self) -> Option<u64> {
        self.cid
    }

    /// The same publish to `channel` with `data` (as publish-in middleware left them): what is
    /// unchanged keeps its shared form.
    pub fn with(mut self, channel: &str, data: Option<Json>) -> PublishPacket {
        if channel != &*self.channel {
            self.channel = std::sync::Arc::from(channel);
            self.plain_channel = false;
        }
        self.data = data;
        self
    }

    /// The delivery frame every subscriber gets (see [`crate::Publication`]), spliced from the
    /// parsed channel and data.
    pub fn publication(&self) -> crate::Publication {
        crate::Publication::from_parts(self.channel.clone(), self.plain_channel, self.data())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packets(text: &str) -> Vec<Packet> {
        match Frame::decode(text) {
            Frame::Packets(p) => p,
            other => panic!("expected packets for {text}, got {other:?}"),
        }
    }

    #[test]
    fn heartbeats() {
        assert_eq!(Frame::decode("#1"), Frame::PingV1);
        assert_eq!(Frame::decode("#2"), Frame::PongV1);
        assert_eq!(Frame::decode(""), Frame::Empty);
    }

    #[test]
    fn raw_messages_follow_sc_formatter() {
        for raw in [
            "this is raw",
            "{\"bad json",
            "\"hello\"",
            "123",
            "true",
            "null",
            "#3",
            " ",
            "{}",
            "{\"x\":1}",
        ] {
            assert!(
                matches!(Frame::decode(raw), Frame::Raw(_)),
                "{raw:?} should be raw"
            );
        }
    }

    #[test]
    fn event_with_and_without_cid() {
        let p = packets(r#"{"event":"fire","data":{"x":1}}"#);
        assert_eq!(
            p,
            vec![Packet::Event(EventPacket {
                event: "fire".into(),
                data: Some(Json::from_text(r#"{"x":1}"#).unwrap()),
                cid: None
            })]
        );
        let p = packets(r#"  {"event":"askme","cid":8}"#);
        let Packet::Event(e) = &p[0] else { panic!() };
        assert_eq!((e.data.clone(), e.cid), (None, Some(8)));
    }

    #[test]
    fn null_data_is_kept() {
        let p = packets(r#"{"event":"echo","data":null,"cid":3}"#);
        let Packet::Event(e) = &p[0] else { panic!() };
        assert_eq!(e.data.as_ref().map(Json::get), Some("null"));
        let d = Json::from_text(r#"{"channel":"c","data":null}"#).unwrap();
        assert_eq!(
            PublishData::parse(Some(&d))
                .unwrap()
                .data
                .as_ref()
                .map(Json::get),
            Some("null")
        );
    }

    #[test]
    fn string_cid_is_fire_and_forget() {
        let p = packets(r#"{"event":"echo","data":"x","cid":"abc"}"#);
        let Packet::Event(e) = &p[0] else { panic!() };
        assert_eq!(e.cid, None);
    }

    #[test]
    fn non_string_event_is_raw() {
        assert!(matches!(
            Frame::decode(r#"{"event":5,"cid":1}"#),
            Frame::Raw(_)
        ));
    }

    #[test]
    fn responses() {
        let p = packets(r#"{"rid":1,"data":{"a":"like this"}}"#);
        assert_eq!(
            p,
            vec![Packet::Response(ResponsePacket {
                rid: 1,
                error: None,
                data: Some(Json::from_text(r#"{"a":"like this"}"#).unwrap())
            })]
        );
        let p = packets(r#"{"rid":2,"error":null}"#);
        let Packet::Response(r) = &p[0] else { panic!() };
        assert!(r.error.is_none());
        assert!(matches!(Frame::decode(r#"{"rid":"1"}"#), Frame::Raw(_)));
    }

    #[test]
    fn batches_keep_order_and_raw_elements() {
        let p = packets(
            r#"[{"event":"echo","data":"a","cid":2},{"event":"echo","data":"b","cid":3},5]"#,
        );
        assert_eq!(p.len(), 3);
        assert!(matches!(&p[0], Packet::Event(e) if e.cid == Some(2)));
        assert!(matches!(&p[2], Packet::Raw(b) if &b[..] == b"5"));
    }

    #[test]
    fn payload_keeps_original_text() {
        let p = packets(r#"{"event":"e","data":{"a" : 1.50, "b":"\u00e9"},"cid":1}"#);
        let Packet::Event(e) = &p[0] else { panic!() };
        assert_eq!(
            e.data.as_ref().unwrap().get(),
            r#"{"a" : 1.50, "b":"\u00e9"}"#
        );
    }

    #[test]
    fn subscribe_and_publish_data() {
        let d =
            Json::from_text(r#"{"channel":"private","waitForAuth":true,"data":{"sub":"extra"}}"#)
                .unwrap();
        let s = SubscribeData::parse(Some(&d)).unwrap();
        assert_eq!(s.channel, "private");
        assert!(s.wait_for_auth && !s.batch);
        assert_eq!(s.data.unwrap().get(), r#"{"sub":"extra"}"#);
        assert!(
            SubscribeData::parse(Some(&Json::from_text(r#""stringchannel""#).unwrap())).is_none()
        );
        assert!(
            SubscribeData::parse(Some(&Json::from_text(r#"{"channel":123}"#).unwrap())).is_none()
        );
        assert!(SubscribeData::parse(None).is_none());

        let d = Json::from_text(r#"{"channel":"news","data":{"headline" : "x"}}"#).unwrap();
        let p = PublishData::parse(Some(&d)).unwrap();
        assert_eq!(
            (p.channel.as_str(), p.data.unwrap().get()),
            ("news", r#"{"headline" : "x"}"#)
        );
        assert!(
            PublishData::parse(Some(&Json::from_text(r#"{"channel":456}"#).unwrap())).is_none()
        );
    }

    #[test]
    fn handshake_token() {
        let d = Json::from_text(r#"{"authToken":null}"#).unwrap();
        assert_eq!(HandshakeData::parse(Some(&d)).auth_token, None);
        let d = Json::from_text(r#"{"authToken":"abc"}"#).unwrap();
        assert_eq!(
            HandshakeData::parse(Some(&d)).auth_token.unwrap().get(),
            r#""abc""#
        );
        assert_eq!(HandshakeData::parse(None), HandshakeData::default());
    }

    /// Channel, data, cid and delivery frame of a publish.
    type ReadPublish = (String, Option<String>, Option<u64>, Bytes);

    /// The two-pass reading of a client `#publish` (before [`PublishPacket::decode`]): the
    /// channel, data and cid, and the delivery frame; `None` for a frame that is not one
    /// publish event, `Some(None)` for a malformed publish.
    fn two_pass(frame: &Bytes) -> Option<Option<ReadPublish>> {
        let Frame::Packets(packets) = Frame::decode_bytes(frame.clone()) else {
            return None;
        };
        let [Packet::Event(event)] = &packets[..] else {
            return None;
        };
        if event.event != "#publish" {
            return None;
        }
        Some(PublishData::parse(event.data.as_ref()).map(|p| {
            let delivery = crate::Publication::new(&p.channel, p.data.as_ref());
            (
                p.channel,
                p.data.map(|d| d.get().to_owned()),
                event.cid,
                delivery.frame().clone(),
            )
        }))
    }

    /// Checks [`PublishPacket::decode`] against [`two_pass`] on `text`.
    fn same_as_two_passes(text: &str) -> Result<(), proptest::test_runner::TestCaseError> {
        let frame = Bytes::copy_from_slice(text.as_bytes());
        let old = two_pass(&frame);
        match PublishPacket::decode(&frame) {
            Some(new) => {
                // One pass found a publish: two passes find the same.
                let Some(Some((channel, data, cid, delivery))) = old else {
                    return Err(proptest::test_runner::TestCaseError::fail(format!(
                        "one pass read {text:?} as a publish, two passes as {old:?}"
                    )));
                };
                proptest::prop_assert_eq!(new.channel(), channel.as_str());
                proptest::prop_assert_eq!(new.data().map(|d| d.get().to_owned()), data);
                proptest::prop_assert_eq!(new.cid(), cid);
                proptest::prop_assert_eq!(new.publication().frame().clone(), delivery.clone());
                let from_event = {
                    let Frame::Packets(p) = Frame::decode_bytes(frame.clone()) else {
                        unreachable!()
                    };
                    let Packet::Event(e) = &p[0] else {
                        unreachable!()
                    };
                    PublishPacket::from_event(e).unwrap()
                };
                proptest::prop_assert_eq!(
                    from_event.publication().frame().clone(),
                    delivery.clone()
                );
            }
            // Not read in one pass: fine for anything (the generic path takes it), but the
            // usual shape of a well-formed publish must take the fast path.
            None => proptest::prop_assert!(
                !(text.starts_with(r##"{"event":"#publish","data":{"channel":"##)
                    && matches!(old, Some(Some(_)))
                    && !text.contains(r#""data":null"#)
                    && text.matches(r#""data""#).count() <= 2
                    && text.matches(r#""channel""#).count() == 1),
                "{text:?} is a well-formed publish and was not read in one pass"
            ),
        }
        Ok(())
    }

    #[test]
    fn publish_in_one_pass() {
        let frame = Bytes::from_static(
            br##"{"event":"#publish","data":{"channel":"news","data":{"headline" : "x"}},"cid":8}"##,
        );
        let p = PublishPacket::decode(&frame).unwrap();
        assert_eq!(p.channel(), "news");
        assert_eq!(p.data().unwrap().get(), r#"{"headline" : "x"}"#);
        assert_eq!(p.cid(), Some(8));
        assert_eq!(
            &p.publication().frame()[..],
            br##"{"event":"#publish","data":{"channel":"news","data":{"headline" : "x"}}}"##
        );
        // Changed by middleware: the new channel is escaped as it must be.
        let changed = p.clone().with("a\"b", Some(Json::from_text("1").unwrap()));
        assert_eq!(
            &changed.publication().frame()[..],
            br##"{"event":"#publish","data":{"channel":"a\"b","data":1}}"##
        );
        assert_eq!(p.clone().with("news", p.data().cloned()), p);

        for text in [
            // Escapes in the channel: decoded, then written as JSON.stringify would.
            r##"{"event":"#publish","data":{"channel":"a\u0041\/\"\n\u00e9\ud83d\ude00","data":"x"}}"##,
            r##"{"event":"#publish","data":{"channel":"c","data":null},"cid":"s"}"##,
            r##"{"event":"#publish","data":{"channel":"c"},"cid":1.0}"##,
            r##"{"event":"#publish","data":{"data":1,"channel":"c","other":[1,{}]},"x":2,"cid":3}"##,
            r##"{"event":"#publish","cid":4,"data":{"channel":"é😀","data":{"deep":[[[]]]}}}"##,
            // Not one-pass material: malformed, raw, or not a publish.
            r##"{"event":"#publish","data":null,"cid":5}"##,
            r##"{"event":"#publish","cid":5}"##,
            r##"{"event":"#publish","data":{"channel":5},"cid":5}"##,
            r##"{"event":"#publish","data":{"channel":"c","channel":"d"},"cid":5}"##,
            r##"{"event":"#publish","data":{"channel":"c"},"data":{"channel":"d"}}"##,
            r##"{"event":"#publish","event":"x","data":{"channel":"c"}}"##,
            r##"{"event":"#publish","data":{"channel":"c"}} x"##,
            r##"{"event":"#publish","data":{"channel":"c"}"##,
            r##"{"event":"#publish","data":{"channel":"c","data":01}}"##,
            r##"{"event":"#publishx","data":{"channel":"c"}}"##,
            r##"[{"event":"#publish","data":{"channel":"c"}}]"##,
            r##" {"event":"#publish","data":{"channel":"c"}}"##,
        ] {
            same_as_two_passes(text).unwrap();
        }
        assert!(
            PublishPacket::decode(&Bytes::from_static(b"{\"event\":\"#publish\",\xff}")).is_none()
        );
    }

    proptest::proptest! {
        #[test]
        fn publish_one_pass_matches_two_passes(
            channel in "\\PC{0,20}|[\\x00-\\x1f\"\\\\/a\\u{e9}\\u{2028}\\u{1F600}]{0,10}",
            text in "\\PC{0,20}",
            n in proptest::num::i64::ANY,
            shape in 0u8..6,
            cid in proptest::option::of(0u64..1_000_000),
            escape_ascii in proptest::bool::ANY,
        ) {
            let mut channel_json = serde_json::to_string(&channel).unwrap();
            if escape_ascii {
                // Another client's way to write the same name: every ASCII letter as \u00XX.
                channel_json = channel_json
                    .chars()
                    .map(|c| if c.is_ascii_alphabetic() { format!("\\u{:04x}", c as u32) } else { c.to_string() })
                    .collect();
            }
            let data = match shape {
                0 => None,
                1 => Some(serde_json::to_string(&text).unwrap()),
                2 => Some(format!("{{\"t\" : {},\"n\":{n}}}", serde_json::to_string(&text).unwrap())),
                3 => Some(n.to_string()),
                4 => Some("null".to_owned()),
                _ => Some(format!("[{n}, true, {{}}]")),
            };
            let data = data.map_or(String::new(), |d| format!(",\"data\":{d}"));
            let cid = cid.map_or(String::new(), |c| format!(",\"cid\":{c}"));
            let frame = format!(r##"{{"event":"#publish","data":{{"channel":{channel_json}{data}}}{cid}}}"##);
            same_as_two_passes(&frame)?;
        }

        #[test]
        fn publish_one_pass_never_disagrees(s in "\\PC{0,80}") {
            same_as_two_passes(&format!(r##"{{"event":"#publish",{s}"##))?;
        }

        #[test]
        fn decode_never_panics(s in ".{0,200}") {
            let _ = Frame::decode(&s);
        }

        #[test]
        fn echo_payload_survives(text in "[a-zA-Z0-9 \\u{e9}\\u{1F600}]{0,40}", n in proptest::num::i64::ANY) {
            let data = serde_json::to_string(&(text.clone(), n)).unwrap();
            let frame = format!(r#"{{"event":"echo","data":{data},"cid":7}}"#);
            let p = packets(&frame);
            let Packet::Event(e) = &p[0] else { panic!() };
            proptest::prop_assert_eq!(e.data.as_ref().unwrap().get(), data.as_str());
        }
    }
}
