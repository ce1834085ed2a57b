//! Building outbound frames with the reference key order (docs/protocol.md §3), straight into bytes.
//!
//! These writers are on the hot path: they copy payload text verbatim and never build an
//! intermediate JSON tree.

use bytes::{BufMut, Bytes, BytesMut};

/// `{"event":<event>[,"data":<data>][,"cid":<cid>]}`: an event, or a request when `cid` is set.
///
/// ```
/// let frame = sc_protocol::encode::event("serverPush", Some(r#"{"hello":"world"}"#), None);
/// assert_eq!(&frame[..], br#"{"event":"serverPush","data":{"hello":"world"}}"#);
/// ```
pub fn event(event: &str, data: Option<&str>, cid: Option<u64>) -> Bytes {
    let mut out = BytesMut::with_capacity(32 + event.len() + data.map_or(0, str::len));
    write_event(&mut out, event, data, cid);
    out.freeze()
}

/// Appends an event packet to `out` (see [`event`]).
pub fn write_event(out: &mut BytesMut, event: &str, data: Option<&str>, cid: Option<u64>) {
    out.put_slice(b"{\"event\":");
    write_json_string(out, event);
    if let Some(data) = data {
        out.put_slice(b",\"data\":");
        out.put_slice(data.as_bytes());
    }
    if let Some(cid) = cid {
        out.put_slice(b",\"cid\":");
        write_u64(out, cid);
    }
    out.put_u8(b'}');
}

/// `{"rid":<rid>[,"data":<data>]}`: a successful response.
///
/// ```
/// assert_eq!(&sc_protocol::encode::response(7, None)[..], br#"{"rid":7}"#);
/// ```
pub fn response(rid: u64, data: Option<&str>) -> Bytes {
    // The exact length: a buffer filled to its capacity becomes `Bytes` without a second
    // allocation (an acknowledgement is one per publish).
    let len = br#"{"rid":}"#.len()
        + decimal_len(rid)
        + data.map_or(0, |d| br#","data":"#.len() + d.len());
    let mut out = BytesMut::with_capacity(len);
    write_response(&mut out, rid, None, data);
    debug_assert_eq!(out.len(), len);
    out.freeze()
}

/// The number of decimal digits of `n`.
fn decimal_len(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |log| log as usize + 1)
}

/// `{"rid":<rid>,"error":<error>[,"data":<data>]}`: a failed response (`data` only in v1 style).
pub fn error_response(rid: u64, error: &str, data: Option<&str>) -> Bytes {
    let mut out = BytesMut::with_capacity(24 + error.len() + data.map_or(0, str::len));
    write_response(&mut out, rid, Some(error), data);
    out.freeze()
}

/// Appends a response packet to `out`.
pub fn write_response(out: &mut BytesMut, rid: u64, error: Option<&str>, data: Option<&str>) {
    out.put_slice(b"{\"rid\":");
    write_u64(out, rid);
    if let Some(error) = error {
        out.put_slice(b",\"error\":");
        out.put_slice(error.as_bytes());
    }
    if let Some(data) = data {
        out.put_slice(b",\"data\":");
        out.put_slice(data.as_bytes());
    }
    out.put_u8(b'}');
}

/// Joins already-encoded packets into one batch frame `[p1,p2,…]`.
///
/// ```
/// use bytes::Bytes;
/// let batch = sc_protocol::encode::batch(&[Bytes::from_static(b"{\"rid\":2}"), Bytes::from_static(b"{\"rid\":3}")]);
/// assert_eq!(&batch[..], b"[{\"rid\":2},{\"rid\":3}]");
/// ```
pub fn batch(packets: &[Bytes]) -> Bytes {
    let len = packets.iter().map(Bytes::len).sum::<usize>() + packets.len() + 2;
    let mut out = BytesMut::with_capacity(len);
    out.put_u8(b'[');
    for (i, packet) in packets.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        out.put_slice(packet);
    }
    out.put_u8(b']');
    out.freeze()
}

/// Appends `text` as a JSON string literal, escaped exactly as `JSON.stringify` does.
pub fn write_json_string(out: &mut impl BufMut, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.put_u8(b'"');
    let bytes = text.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.put_slice(&bytes[start..i]);
        if escape.is_empty() {
            out.put_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
        } else {
            out.put_slice(escape);
        }
        start = i + 1;
    }
    out.put_slice(&bytes[start..]);
    out.put_u8(b'"');
}

fn write_u64(out: &mut BytesMut, n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&buf[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_frames() {
        assert_eq!(
            &event("#removeAuthToken", None, None)[..],
            br##"{"event":"#removeAuthToken"}"##
        );
        assert_eq!(
            &event("serverQuestion", Some(r#"{"q":"how?"}"#), Some(1))[..],
            br#"{"event":"serverQuestion","data":{"q":"how?"},"cid":1}"#
        );
        assert_eq!(
            &response(2, Some(r#"{"msg":"hi"}"#))[..],
            br#"{"rid":2,"data":{"msg":"hi"}}"#
        );
        assert_eq!(
            &error_response(4, r#""plain string error""#, None)[..],
            br#"{"rid":4,"error":"plain string error"}"#
        );
        assert_eq!(
            &response(18_446_744_073_709_551_615, None)[..],
            br#"{"rid":18446744073709551615}"#
        );
        assert_eq!(&response(0, None)[..], br#"{"rid":0}"#);
        for n in [0, 9, 10, 99, 100, 12_345, u64::MAX] {
            assert_eq!(decimal_len(n), n.to_string().len());
        }
    }

    proptest::proptest! {
        #[test]
        fn json_string_matches_serde(s in "\\PC{0,40}|[\\x00-\\x1f\"\\\\]{0,10}") {
            let mut out = BytesMut::new();
            write_json_string(&mut out, &s);
            proptest::prop_assert_eq!(std::str::from_utf8(&out).unwrap(), serde_json::to_string(&s).unwrap());
        }
    }
}
