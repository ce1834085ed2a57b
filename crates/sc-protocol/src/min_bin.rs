//! The `sc-codec-min-bin` 3.0.0 codec (docs/protocol.md §2.2): MessagePack in binary frames, with the
//! keys of each packet compressed into one short array.
//!
//! | packet | compressed |
//! |---|---|
//! | `{"event":"#publish","data":{"channel":c,"data":d},"cid":n}` | `{"p":[c,d,n]}` (`n` only if present) |
//! | `{"event":e,"data":d,"cid":n}` | `{"e":[e,d,n]}` (`d` is nil when absent, `n` only if present) |
//! | `{"rid":n,"error":x,"data":d}` | `{"r":[n,x,d]}` (always three, nil when absent) |
//!
//! The MessagePack profile is msgpack-lite's (`preset:false`), byte for byte: integers in the
//! signed 32-bit range take the smallest int/uint encoding, every other number is a float64,
//! strings/arrays/maps the smallest header.
//!
//! The server keeps payloads as JSON text ([`crate::Json`]), so this module transcodes: outbound,
//! a JSON frame built by [`crate::encode`] (one packet or a batch) becomes its min-bin frame
//! ([`encode_frame`]); inbound, a min-bin frame becomes the JSON packets the rest of the server
//! reads ([`decode_frame`]). JSON connections never pass through here.
//!
//! A `#publish` whose `data` carries more than `channel` and `data` (a stream position,
//! EXTENSIONS.md E2) is sent in the general form `{"e":["#publish",{…}]}`, which keeps every key.
//!
//! ```
//! use sc_protocol::min_bin;
//!
//! let frame = min_bin::encode_frame(br##"{"event":"#publish","data":{"channel":"news","data":"hello"}}"##).unwrap();
//! assert_eq!(&frame[..], b"\x81\xa1p\x92\xa4news\xa5hello");
//! let back = min_bin::to_json(&frame).unwrap();
//! assert_eq!(back.get(), r##"{"event":"#publish","data":{"channel":"news","data":"hello"}}"##);
//! ```

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Map, Number, Value};

use crate::frame::Frame;
use crate::json::Json;

/// The protocol v1 ping `"#1"` as a min-bin frame (v2 heartbeats bypass the codec).
pub const PING_V1: &[u8] = b"\xa2#1";
/// The protocol v1 pong `"#2"` as a min-bin frame.
pub const PONG_V1: &[u8] = b"\xa2#2";

/// Deepest nesting accepted in an inbound frame (deeper frames are refused, not recursed into).
const MAX_DEPTH: usize = 100;

/// A frame could not be transcoded.
#[derive(Debug, thiserror::Error)]
pub enum MinBinError {
    /// The MessagePack value ends before its announced length.
    #[error("truncated MessagePack value")]
    Truncated,
    /// A byte that starts no MessagePack value (`0xc1`).
    #[error("invalid MessagePack marker 0x{0:02x}")]
    InvalidMarker(u8),
    /// More than one value, or garbage after the value.
    #[error("{0} bytes after the MessagePack value")]
    TrailingBytes(usize),
    /// Nested deeper than the decoder allows.
    #[error("MessagePack value nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// The JSON side was not valid JSON.
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
}

// ---------------------------------------------------------------------------------------------
// Outbound: JSON frame → min-bin frame
// ---------------------------------------------------------------------------------------------

/// Transcodes a JSON frame (one packet, or a batch array of packets) into its min-bin frame.
///
/// ```
/// let frame = sc_protocol::min_bin::encode_frame(br#"{"rid":4}"#).unwrap();
/// assert_eq!(&frame[..], b"\x81\xa1r\x93\x04\xc0\xc0");
/// ```
pub fn encode_frame(json: &[u8]) -> Result<Bytes, MinBinError> {
    let value: Value = serde_json::from_slice(json)?;
    let value = match value {
        Value::Array(items) => Value::Array(items.into_iter().map(compress_packet).collect()),
        Value::Object(object) if is_set(&object, "event") || is_set(&object, "rid") => {
            compress_packet(Value::Object(object))
        }
        other => other,
    };
    let mut out = Vec::with_capacity(json.len());
    write_value(&mut out, &value);
    Ok(Bytes::from(out))
}

/// Encodes any JSON value as MessagePack (msgpack-lite profile), without packet compression.
pub fn encode_value(json: &Json) -> Result<Bytes, MinBinError> {
    let value: Value = serde_json::from_slice(json.as_bytes())?;
    let mut out = Vec::with_capacity(json.as_bytes().len());
    write_value(&mut out, &value);
    Ok(Bytes::from(out))
}

/// `key` is present and not null (JavaScript's `!= null`).
fn is_set(object: &Map<String, Value>, key: &str) -> bool {
    object.get(key).is_some_and(|v| !v.is_null())
}

/// One packet's compressed form (a shallow rewrite, as `compressSinglePacket`).
fn compress_packet(packet: Value) -> Value {
    let Value::Object(mut object) = packet else {
        return packet;
    };
    let (key, array) = if is_set(&object, "event") && is_publish(&object) {
        let Some(Value::Object(mut data)) = object.get_mut("data").map(Value::take) else {
            return Value::Object(object);
        };
        let mut array = vec![
            data.remove("channel").unwrap_or(Value::Null),
            data.remove("data").unwrap_or(Value::Null),
        ];
        array.extend(object.get("cid").filter(|c| !c.is_null()).cloned());
        ("p", array)
    } else if is_set(&object, "event") {
        let mut array = vec![
            object.get_mut("event").map_or(Value::Null, Value::take),
            object.get_mut("data").map_or(Value::Null, Value::take),
        ];
        array.extend(object.get("cid").filter(|c| !c.is_null()).cloned());
        ("e", array)
    } else if is_set(&object, "rid") {
        let array = ["rid", "error", "data"]
            .map(|k| object.get_mut(k).map_or(Value::Null, Value::take))
            .to_vec();
        ("r", array)
    } else {
        return Value::Object(object);
    };
    let mut compressed = Map::new();
    for (k, v) in object {
        if !matches!(k.as_str(), "event" | "data" | "cid" | "rid" | "error") {
            compressed.insert(k, v);
        }
    }
    compressed.insert(key.to_owned(), Value::Array(array));
    Value::Object(compressed)
}

/// A `#publish` event whose data fits the compressed `p` form: an object with no keys but
/// `channel` and `data` (anything more, such as a stream position, needs the general form).
fn is_publish(object: &Map<String, Value>) -> bool {
    object.get("event").and_then(Value::as_str) == Some("#publish")
        && matches!(object.get("data"), Some(Value::Object(data))
            if data.keys().all(|k| k == "channel" || k == "data"))
}

/// Appends `value` as MessagePack, msgpack-lite style.
pub fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.push(0xc0),
        Value::Bool(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            write_len(out, items.len(), 0x90, 16, 0xdc, 0xdd);
            for item in items {
                write_value(out, item);
            }
        }
        Value::Object(map) => {
            write_len(out, map.len(), 0x80, 16, 0xde, 0xdf);
            for (k, v) in map {
                write_str(out, k);
                write_value(out, v);
            }
        }
    }
}

/// A JavaScript number: int32-range integers as the smallest int, everything else float64.
fn write_number(out: &mut Vec<u8>, n: &Number) {
    let int = if let Some(i) = n.as_i64() {
        i32::try_from(i).ok()
    } else if n.is_u64() {
        None
    } else {
        n.as_f64().and_then(|f| {
            (f.fract() == 0.0 && f >= f64::from(i32::MIN) && f <= f64::from(i32::MAX))
                .then_some(f as i32)
        })
    };
    match int {
        Some(i) => write_i32(out, i),
        None => {
            out.push(0xcb);
            out.extend_from_slice(&n.as_f64().unwrap_or(f64::NAN).to_be_bytes());
        }
    }
}

fn write_i32(out: &mut Vec<u8>, i: i32) {
    if (-32..=127).contains(&i) {
        out.push(i as u8);
    } else if i >= 0 {
        if i <= 0xff {
            out.extend_from_slice(&[0xcc, i as u8]);
        } else if i <= 0xffff {
            out.push(0xcd);
            out.extend_from_slice(&(i as u16).to_be_bytes());
        } else {
            out.push(0xce);
            out.extend_from_slice(&(i as u32).to_be_bytes());
        }
    } else if i >= -128 {
        out.extend_from_slice(&[0xd0, i as u8]);
    } else if i >= -32768 {
        out.push(0xd1);
        out.extend_from_slice(&(i as i16).to_be_bytes());
    } else {
        out.push(0xd2);
        out.extend_from_slice(&i.to_be_bytes());
    }
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    let len = s.len();
    if len < 32 {
        out.push(0xa0 | len as u8);
    } else if len <= 0xff {
        out.extend_from_slice(&[0xd9, len as u8]);
    } else if len <= 0xffff {
        out.push(0xda);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
    out.extend_from_slice(s.as_bytes());
}

/// A fix/16/32 header: `fix | len` below `fix_limit`, else the 16- or 32-bit form.
fn write_len(out: &mut Vec<u8>, len: usize, fix: u8, fix_limit: usize, m16: u8, m32: u8) {
    if len < fix_limit {
        out.push(fix | len as u8);
    } else if len <= 0xffff {
        out.push(m16);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(m32);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
}

// ---------------------------------------------------------------------------------------------
// Inbound: min-bin frame → JSON
// ---------------------------------------------------------------------------------------------

/// Decodes a min-bin frame into what a JSON frame would have been: heartbeat, packets (with
/// their keys expanded again) or a raw message.
///
/// Malformed MessagePack is an error (the reference codec throws on it too).
pub fn decode_frame(bytes: &Bytes) -> Result<Frame, MinBinError> {
    let value = read_one(bytes)?;
    Ok(match value {
        Value::String(s) if s == "#1" => Frame::PingV1,
        Value::String(s) if s == "#2" => Frame::PongV1,
        value @ (Value::Object(_) | Value::Array(_)) => {
            match Frame::decode_bytes(Bytes::from(serde_json::to_vec(&decompress(value))?)) {
                Frame::Raw(_) => Frame::Raw(bytes.clone()),
                frame => frame,
            }
        }
        _ => Frame::Raw(bytes.clone()),
    })
}

/// Decodes a min-bin frame into its JSON text, with packet keys expanded (`{"p":…}` becomes a
/// `#publish` event, and so on).
pub fn to_json(bytes: &[u8]) -> Result<Json, MinBinError> {
    let value = decompress(read_one(bytes)?);
    Ok(Json::from_validated(Bytes::from(serde_json::to_vec(
        &value,
    )?)))
}

/// Decodes one MessagePack value into JSON (binary data becomes sc-formatter's base64 marker
/// `{"base64":true,"data":…}`; extension values become null).
pub fn value_to_json(bytes: &[u8]) -> Result<Json, MinBinError> {
    let value = read_one(bytes)?;
    Ok(Json::from_validated(Bytes::from(serde_json::to_vec(
        &value,
    )?)))
}

fn read_one(bytes: &[u8]) -> Result<Value, MinBinError> {
    let mut reader = Reader { bytes, pos: 0 };
    let value = reader.value(0)?;
    match bytes.len() - reader.pos {
        0 => Ok(value),
        rest => Err(MinBinError::TrailingBytes(rest)),
    }
}

/// Expands compressed packets (the frame itself, or each element of a batch).
fn decompress(value: Value) -> Value {
    match value {
        Value::Array(items) => Value::Array(items.into_iter().map(decompress_packet).collect()),
        other => decompress_packet(other),
    }
}

/// The inverse of [`compress_packet`], in the reference's order: `e`, then `p`, then `r`.
fn decompress_packet(packet: Value) -> Value {
    let Value::Object(mut object) = packet else {
        return packet;
    };
    let at = |array: &mut Vec<Value>, i: usize| array.get_mut(i).map(Value::take);
    if let Some(Value::Array(mut e)) = object.remove("e") {
        set(&mut object, "event", at(&mut e, 0));
        set(&mut object, "data", at(&mut e, 1));
        set(&mut object, "cid", at(&mut e, 2).filter(|c| !c.is_null()));
    }
    if let Some(Value::Array(mut p)) = object.remove("p") {
        let mut data = Map::new();
        set(&mut data, "channel", at(&mut p, 0));
        set(&mut data, "data", at(&mut p, 1));
        object.insert("event".into(), Value::String("#publish".into()));
        object.insert("data".into(), Value::Object(data));
        set(&mut object, "cid", at(&mut p, 2).filter(|c| !c.is_null()));
    }
    if let Some(Value::Array(mut r)) = object.remove("r") {
        set(&mut object, "rid", at(&mut r, 0));
        set(&mut object, "error", at(&mut r, 1));
        set(&mut object, "data", at(&mut r, 2));
    }
    Value::Object(object)
}

/// Sets `key` when the value is defined (a missing array element is JavaScript's `undefined`).
fn set(object: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(value) = value {
        object.insert(key.to_owned(), value);
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], MinBinError> {
        let end = self.pos.checked_add(n).ok_or(MinBinError::Truncated)?;
        let slice = self
            .bytes
            .get(self.pos..end)
            .ok_or(MinBinError::Truncated)?;
        self.pos = end;
        Ok(slice)
    }

    fn byte(&mut self) -> Result<u8, MinBinError> {
        Ok(self.take(1)?[0])
    }

    fn be<const N: usize>(&mut self) -> Result<[u8; N], MinBinError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn len(&mut self, width: usize) -> Result<usize, MinBinError> {
        Ok(match width {
            1 => usize::from(self.byte()?),
            2 => usize::from(u16::from_be_bytes(self.be()?)),
            _ => u32::from_be_bytes(self.be()?) as usize,
        })
    }

    fn value(&mut self, depth: usize) -> Result<Value, MinBinError> {
        if depth > MAX_DEPTH {
            return Err(MinBinError::TooDeep);
        }
        let marker = self.byte()?;
        Ok(match marker {
            0x00..=0x7f => Value::from(marker),
            0x80..=0x8f => self.map(usize::from(marker & 0x0f), depth)?,
            0x90..=0x9f => self.array(usize::from(marker & 0x0f), depth)?,
            0xa0..=0xbf => self.str(usize::from(marker & 0x1f))?,
            0xc0 => Value::Null,
            0xc1 => return Err(MinBinError::InvalidMarker(marker)),
            0xc2 => Value::Bool(false),
            0xc3 => Value::Bool(true),
            0xc4..=0xc6 => {
                let len = self.len(1 << (marker - 0xc4))?;
                let data = base64::engine::general_purpose::STANDARD.encode(self.take(len)?);
                serde_json::json!({ "base64": true, "data": data })
            }
            0xc7..=0xc9 => {
                let len = self.len(1 << (marker - 0xc7))?;
                self.take(len + 1)?;
                Value::Null
            }
            0xca => float(f64::from(f32::from_be_bytes(self.be()?))),
            0xcb => float(f64::from_be_bytes(self.be()?)),
            0xcc => Value::from(self.byte()?),
            0xcd => Value::from(u16::from_be_bytes(self.be()?)),
            0xce => Value::from(u32::from_be_bytes(self.be()?)),
            0xcf => Value::from(u64::from_be_bytes(self.be()?)),
            0xd0 => Value::from(i8::from_be_bytes(self.be()?)),
            0xd1 => Value::from(i16::from_be_bytes(self.be()?)),
            0xd2 => Value::from(i32::from_be_bytes(self.be()?)),
            0xd3 => Value::from(i64::from_be_bytes(self.be()?)),
            0xd4..=0xd8 => {
                self.take(1 + (1 << (marker - 0xd4)))?;
                Value::Null
            }
            0xd9..=0xdb => {
                let len = self.len(1 << (marker - 0xd9))?;
                self.str(len)?
            }
            0xdc | 0xdd => {
                let len = self.len(if marker == 0xdc { 2 } else { 4 })?;
                self.array(len, depth)?
            }
            0xde | 0xdf => {
                let len = self.len(if marker == 0xde { 2 } else { 4 })?;
                self.map(len, depth)?
            }
            0xe0..=0xff => Value::from(marker as i8),
        })
    }

    fn str(&mut self, len: usize) -> Result<Value, MinBinError> {
        Ok(Value::String(
            String::from_utf8_lossy(self.take(len)?).into_owned(),
        ))
    }

    /// Room for at most as many items as bytes remain (a lying length allocates nothing).
    fn capacity(&self, len: usize) -> usize {
        len.min(self.bytes.len() - self.pos)
    }

    fn array(&mut self, len: usize, depth: usize) -> Result<Value, MinBinError> {
        let mut items = Vec::with_capacity(self.capacity(len));
        for _ in 0..len {
            items.push(self.value(depth + 1)?);
        }
        Ok(Value::Array(items))
    }

    fn map(&mut self, len: usize, depth: usize) -> Result<Value, MinBinError> {
        let mut map = Map::new();
        for _ in 0..len {
            let key = js_property_key(self.value(depth + 1)?);
            let value = self.value(depth + 1)?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

/// The property name JavaScript makes of a map key that is not a string (msgpack-lite assigns
/// `object[key] = value`): `String(key)`. Linear in the key's size, unlike JSON text of JSON
/// text, which doubles its escapes at every level of nested map keys.
fn js_property_key(key: Value) -> String {
    match key {
        Value::String(s) => s,
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::Null => String::new(),
                other => js_property_key(other),
            })
            .collect::<Vec<_>>()
            .join(","),
        Value::Object(_) => "[object Object]".to_owned(),
        other => other.to_string(),
    }
}

/// A JavaScript number read from a float: integral values print as integers, as
/// `JSON.stringify` does; NaN and infinities become null.
fn float(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
        Value::from(f as i64)
    } else {
        Number::from_f64(f).map_or(Value::Null, Value::Number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Packet;

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    /// docs/protocol.md §2.2 and TV-29/TV-30: server frames, encoded from our JSON frames.
    #[test]
    fn server_frames_match_the_captures() {
        for (json, want) in [
            (
                r#"{"rid":1,"data":{"id":"TtptB38Tb_1u0Fu1AAAA","pingTimeout":3000,"isAuthenticated":false}}"#,
                "81a1729301c083a26964b45474707442333854625f31753046753141414141ab70696e6754696d656f7574cd0bb8af697341757468656e74696361746564c2",
            ),
            (
                r#"{"rid":2,"data":{"msg":"hi"}}"#,
                "81a1729302c081a36d7367a26869",
            ),
            (
                r##"{"event":"#publish","data":{"channel":"news","data":"hello"}}"##,
                "81a17092a46e657773a568656c6c6f",
            ),
            (r#"{"rid":4}"#, "81a1729304c0c0"),
            (r#"{"rid":3}"#, "81a1729303c0c0"),
            (
                r#"{"rid":5,"error":{"message":"Custom failure","name":"CustomError","extra":42},"data":{"partial":true}}"#,
                "81a172930583a76d657373616765ae437573746f6d206661696c757265a46e616d65ab437573746f6d4572726f72a565787472612a81a77061727469616cc3",
            ),
            (r#"{"rid":2,"data":"hi"}"#, "81a1729302c0a26869"),
            // Checked against the npm package: an absent `data` is a nil slot; a batch
            // compresses each element.
            (
                r##"{"event":"#removeAuthToken"}"##,
                "81a16592b02372656d6f766541757468546f6b656ec0",
            ),
            (
                r#"[{"rid":2},{"event":"fire","data":1}]"#,
                "9281a1729302c0c081a16592a46669726501",
            ),
        ] {
            assert_eq!(
                encode_frame(json.as_bytes()).unwrap().to_vec(),
                hex(want),
                "{json}"
            );
        }
    }

    /// The captured client frames, read back as the JSON packets they stand for.
    #[test]
    fn client_frames_match_the_captures() {
        for (frame, want) in [
            (
                "81a16593aa2368616e647368616b6581a961757468546f6b656ec001",
                r##"{"event":"#handshake","data":{"authToken":null},"cid":1}"##,
            ),
            (
                "81a16593a46563686f81a36d7367a2686902",
                r#"{"event":"echo","data":{"msg":"hi"},"cid":2}"#,
            ),
            ("81a16592a466697265a178", r#"{"event":"fire","data":"x"}"#),
            (
                "81a17093a46e657773a568656c6c6f04",
                r##"{"event":"#publish","data":{"channel":"news","data":"hello"},"cid":4}"##,
            ),
            (
                "81a16593aa2373756273637269626581a76368616e6e656ca46e65777303",
                r##"{"event":"#subscribe","data":{"channel":"news"},"cid":3}"##,
            ),
            (
                "81a16593a662696e61727983a13001a13102a1320306",
                r#"{"event":"binary","data":{"0":1,"1":2,"2":3},"cid":6}"#,
            ),
            (
                "81a16592ab23646973636f6e6e65637482a4636f6465cd03e8a464617461c0",
                r##"{"event":"#disconnect","data":{"code":1000,"data":null}}"##,
            ),
            (
                "81a16592a466697265920102",
                r#"{"event":"fire","data":[1,2]}"#,
            ),
        ] {
            let bytes = hex(frame);
            assert_eq!(to_json(&bytes).unwrap().get(), want);
            // …and our encoder writes the same bytes for the same packet.
            assert_eq!(
                encode_frame(want.as_bytes()).unwrap().to_vec(),
                bytes,
                "{want}"
            );
        }
    }

    #[test]
    fn heartbeats() {
        assert_eq!(encode_frame(br##""#1""##).unwrap().to_vec(), PING_V1);
        assert_eq!(
            decode_frame(&Bytes::from_static(PONG_V1)).unwrap(),
            Frame::PongV1
        );
        assert_eq!(
            decode_frame(&Bytes::from_static(PING_V1)).unwrap(),
            Frame::PingV1
        );
    }

    #[test]
    fn decodes_packets_and_batches() {
        let Frame::Packets(p) =
            decode_frame(&Bytes::from(hex("81a16593a46563686fa2686902"))).unwrap()
        else {
            panic!()
        };
        let Packet::Event(e) = &p[0] else { panic!() };
        assert_eq!(
            (e.event.as_str(), e.data.as_ref().unwrap().get(), e.cid),
            ("echo", "\"hi\"", Some(2))
        );
        let batch = encode_frame(br#"[{"rid":2},{"event":"fire","data":1}]"#).unwrap();
        assert_eq!(
            to_json(&batch).unwrap().get(),
            r#"[{"rid":2,"error":null,"data":null},{"event":"fire","data":1}]"#
        );
        let Frame::Packets(p) = decode_frame(&batch).unwrap() else {
            panic!()
        };
        assert_eq!(p.len(), 2);
        assert!(matches!(&p[0], Packet::Response(r) if r.rid == 2 && r.error.is_none()));
        // A scalar is a raw message, as with JSON.
        assert!(matches!(
            decode_frame(&Bytes::from_static(b"\xa3abc")).unwrap(),
            Frame::Raw(_)
        ));
    }

    #[test]
    fn publish_with_extra_keys_keeps_them_in_the_general_form() {
        let json = br##"{"event":"#publish","data":{"channel":"room/1","data":{"text":"hi"},"offset":42,"epoch":"k3Vq9"}}"##;
        let frame = encode_frame(json).unwrap();
        assert_eq!(&frame[..4], b"\x81\xa1e\x92");
        assert_eq!(to_json(&frame).unwrap().get().as_bytes(), json);
    }

    #[test]
    fn numbers_follow_msgpack_lite() {
        for (json, want) in [
            ("0", "00"),
            ("127", "7f"),
            ("128", "cc80"),
            ("255", "ccff"),
            ("256", "cd0100"),
            ("65536", "ce00010000"),
            ("2147483647", "ce7fffffff"),
            ("-1", "ff"),
            ("-32", "e0"),
            ("-33", "d0df"),
            ("-129", "d1ff7f"),
            ("-32769", "d2ffff7fff"),
            ("2147483648", "cb41e0000000000000"),
            ("1.5", "cb3ff8000000000000"),
            ("3.0", "03"),
            ("-0.0", "00"),
            ("1e2", "64"),
            ("null", "c0"),
            ("true", "c3"),
        ] {
            let mut out = Vec::new();
            write_value(&mut out, &serde_json::from_str(json).unwrap());
            assert_eq!(out, hex(want), "{json}");
        }
        let long = "x".repeat(40);
        let mut out = Vec::new();
        write_value(&mut out, &Value::String(long.clone()));
        assert_eq!(&out[..2], &[0xd9, 40]);
        assert_eq!(value_to_json(&out).unwrap().get(), format!("\"{long}\""));
    }

    #[test]
    fn reads_what_clients_may_send() {
        // float64 integral → integer text; bin → base64 marker; int64; float32.
        assert_eq!(
            value_to_json(&hex("cb4202a05f20000000")).unwrap().get(),
            "10000000000"
        );
        assert_eq!(
            value_to_json(&hex("c403010203")).unwrap().get(),
            r#"{"base64":true,"data":"AQID"}"#
        );
        assert_eq!(
            value_to_json(&hex("d3fffffffffffffffe")).unwrap().get(),
            "-2"
        );
        assert_eq!(value_to_json(&hex("ca3fc00000")).unwrap().get(), "1.5");
        assert_eq!(
            value_to_json(&hex("8101c3")).unwrap().get(),
            r#"{"1":true}"#
        );
    }

    #[test]
    fn malformed_input_is_an_error() {
        for bad in ["", "81", "81a1", "c1", "dd7fffffff", "a3ab", "0101", "92c0"] {
            assert!(decode_frame(&Bytes::from(hex(bad))).is_err(), "{bad}");
        }
        let deep = vec![0x91u8; 1000];
        assert!(matches!(
            decode_frame(&Bytes::from(deep)),
            Err(MinBinError::TooDeep)
        ));
    }

    #[test]
    fn map_keys_that_are_not_strings_become_what_javascript_names_them() {
        // {{}: 1}, {[1, [2, nil]]: 2}, {true: 3}, {nil: 4}, {1.5: 5}
        let json = |h: &str| value_to_json(&hex(h)).expect("decodes").to_string();
        assert_eq!(json("818001"), r#"{"[object Object]":1}"#);
        assert_eq!(json("8192019202c002"), r#"{"1,2,":2}"#);
        assert_eq!(json("81c303"), r#"{"true":3}"#);
        assert_eq!(json("81c004"), r#"{"null":4}"#);
        assert_eq!(json("81cb3ff800000000000005"), r#"{"1.5":5}"#);
        // Maps nested as keys of maps: the key text stays constant, however deep.
        let mut nested = vec![0x81u8; 60];
        nested.push(0x80);
        nested.extend(std::iter::repeat_n(0x01, 60));
        let text = json(
            &nested
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
        );
        assert!(text.len() < 100, "{text}");
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = decode_frame(&Bytes::from(bytes));
        }

        #[test]
        fn packets_round_trip(event in "[a-z#]{1,40}", text in "\\PC{0,300}", n in proptest::num::i32::ANY, cid in 1u32..) {
            let data = serde_json::json!({ "t": text, "n": n, "l": [1, "x", null] });
            let json = format!(r#"{{"event":{},"data":{data},"cid":{cid}}}"#, serde_json::to_string(&event).unwrap());
            let frame = encode_frame(json.as_bytes()).unwrap();
            let back = to_json(&frame).unwrap();
            proptest::prop_assert_eq!(back.get(), json);
        }
    }
}
