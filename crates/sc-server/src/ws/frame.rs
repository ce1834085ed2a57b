//! WebSocket frames (RFC 6455 §5), server side: parsing client frame headers with every check
//! the RFC asks for, unmasking, validating close frames, and encoding the server's frame headers.

use std::fmt;

/// Frame opcodes (RFC 6455 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpCode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl OpCode {
    fn from_bits(bits: u8) -> Option<OpCode> {
        Some(match bits {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    fn bits(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    pub(crate) fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// A violation of the protocol by the client; the connection is closed with 1002 (1007 for
/// invalid UTF-8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProtocolError {
    FragmentedControlFrame,
    InvalidCloseCode,
    InvalidOpcode,
    InvalidPayloadLength,
    InvalidRsv,
    InvalidUtf8,
    /// A compressed message is not a valid deflate stream (closed with 1007).
    InvalidDeflate,
    UnexpectedUnmaskedFrame,
}

impl ProtocolError {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ProtocolError::FragmentedControlFrame => "fragmented control frame",
            ProtocolError::InvalidCloseCode => "invalid close code",
            ProtocolError::InvalidOpcode => "invalid opcode",
            ProtocolError::InvalidPayloadLength => "invalid payload length",
            ProtocolError::InvalidRsv => "invalid extension",
            ProtocolError::InvalidUtf8 => "invalid utf-8",
            ProtocolError::InvalidDeflate => "invalid compressed data",
            ProtocolError::UnexpectedUnmaskedFrame => "unexpected unmasked frame",
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeaderError {
    Protocol(ProtocolError),
    /// The frame's payload is longer than the server accepts.
    TooLong(usize),
}

/// A parsed client frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) fin: bool,
    /// RSV1: the message is compressed (permessage-deflate; only on a message's first frame).
    pub(crate) compressed: bool,
    pub(crate) opcode: OpCode,
    pub(crate) mask: [u8; 4],
    /// Header length in bytes (2 to 14).
    pub(crate) len: usize,
    /// Payload length in bytes.
    pub(crate) payload_len: usize,
}

impl Header {
    /// Header and payload length.
    pub(crate) fn frame_len(&self) -> usize {
        self.len + self.payload_len
    }
}

/// Parses the header at the start of `buf`: `Ok(None)` if more bytes are needed.
///
/// `in_message`: a fragmented message is being received (so a continuation is expected and a new
/// text or binary frame is not). `max_payload`: the longest payload accepted.
#[cfg(test)]
pub(crate) fn parse_header(
    buf: &[u8],
    in_message: bool,
    max_payload: usize,
) -> Result<Option<Header>, HeaderError> {
    parse_header_with(buf, in_message, max_payload, false)
}

/// [`parse_header`], with RSV1 allowed on the first frame of a message when `deflate`
/// (permessage-deflate was negotiated).
pub(crate) fn parse_header_with(
    buf: &[u8],
    in_message: bool,
    max_payload: usize,
    deflate: bool,
) -> Result<Option<Header>, HeaderError> {
    use HeaderError::Protocol as P;
    let [first, second, ..] = *buf else {
        return Ok(None);
    };
    let fin = first & 0x80 != 0;
    let opcode = OpCode::from_bits(first & 0x0F).ok_or(P(ProtocolError::InvalidOpcode))?;
    let compressed = first & 0x40 != 0;
    let rsv1_allowed = deflate && matches!(opcode, OpCode::Text | OpCode::Binary);
    if first & 0x30 != 0 || (compressed && !rsv1_allowed) {
        return Err(P(ProtocolError::InvalidRsv));
    }
    if opcode.is_control() {
        if !fin {
            return Err(P(ProtocolError::FragmentedControlFrame));
        }
    } else if (opcode == OpCode::Continuation) != in_message {
        return Err(P(ProtocolError::InvalidOpcode));
    }
    if second & 0x80 == 0 {
        return Err(P(ProtocolError::UnexpectedUnmaskedFrame));
    }
    let (payload_len, len_bytes) = match second & 0x7F {
        1 if opcode == OpCode::Close => return Err(P(ProtocolError::InvalidPayloadLength)),
        short @ 0..=125 => (usize::from(short), 0),
        _ if opcode.is_control() => return Err(P(ProtocolError::InvalidPayloadLength)),
        126 => {
            let Some(bytes) = buf.get(2..4) else {
                return Ok(None);
            };
            let len = usize::from(u16::from_be_bytes([bytes[0], bytes[1]]));
            // The shortest encoding is required.
            if len <= 125 {
                return Err(P(ProtocolError::InvalidPayloadLength));
            }
            (len, 2)
        }
        _ => {
            let Some(bytes) = buf.get(2..10) else {
                return Ok(None);
            };
            let mut be = [0; 8];
            be.copy_from_slice(bytes);
            let len = u64::from_be_bytes(be);
            if len <= u64::from(u16::MAX) || len >> 63 != 0 {
                return Err(P(ProtocolError::InvalidPayloadLength));
            }
            (usize::try_from(len).unwrap_or(usize::MAX), 8)
        }
    };
    if payload_len > max_payload {
        return Err(HeaderError::TooLong(payload_len));
    }
    let len = 2 + len_bytes + 4;
    let Some(mask) = buf.get(len - 4..len) else {
        return Ok(None);
    };
    Ok(Some(Header {
        fin,
        compressed,
        opcode,
        mask: [mask[0], mask[1], mask[2], mask[3]],
        len,
        payload_len,
    }))
}

/// Unmasks (or masks: the same XOR) a payload in place.
pub(crate) fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let [a, b, c, d] = mask;
    let wide = u64::from_ne_bytes([a, b, c, d, a, b, c, d]);
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    // The remainder starts at a multiple of 8, so the mask is aligned with it.
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
}

/// Whether `code` may appear in a close frame (RFC 6455 §7.4): 1000–1003, 1007–1014, 3000–4999.
pub(crate) fn is_sendable_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Reads a close frame's payload: its code (1005 when it has none) and reason.
pub(crate) fn parse_close(payload: &[u8]) -> Result<(u16, &str), ProtocolError> {
    let [high, low, reason @ ..] = payload else {
        return Ok((1005, ""));
    };
    let code = u16::from_be_bytes([*high, *low]);
    if !is_sendable_close_code(code) {
        return Err(ProtocolError::InvalidCloseCode);
    }
    let reason = std::str::from_utf8(reason).map_err(|_| ProtocolError::InvalidUtf8)?;
    Ok((code, reason))
}

/// An encoded server frame header (servers do not mask).
#[derive(Debug, Clone, Copy)]
pub(crate) struct OutHeader {
    bytes: [u8; 10],
    len: u8,
}

impl OutHeader {
    /// The header of a final frame of `opcode` carrying `payload_len` bytes.
    #[cfg(test)]
    pub(crate) fn new(opcode: OpCode, payload_len: usize) -> OutHeader {
        OutHeader::with_rsv1(opcode, payload_len, false)
    }

    /// The header of a final frame, with RSV1 set if `compressed` (permessage-deflate).
    pub(crate) fn with_rsv1(opcode: OpCode, payload_len: usize, compressed: bool) -> OutHeader {
        let mut bytes = [0; 10];
        bytes[0] = 0x80 | if compressed { 0x40 } else { 0 } | opcode.bits();
        let len = if payload_len <= 125 {
            bytes[1] = payload_len as u8;
            2
        } else if let Ok(short) = u16::try_from(payload_len) {
            bytes[1] = 126;
            bytes[2..4].copy_from_slice(&short.to_be_bytes());
            4
        } else {
            bytes[1] = 127;
            bytes[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
            10
        };
        OutHeader { bytes, len }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame.
    fn client_frame(first: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut frame = vec![first];
        match payload.len() {
            n @ 0..=125 => frame.push(0x80 | n as u8),
            n @ 126..=65535 => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        let mut body = payload.to_vec();
        unmask(&mut body, mask);
        frame.extend_from_slice(&body);
        frame
    }

    #[test]
    fn parses_the_three_length_encodings_and_waits_for_more_bytes() {
        let mask = [1, 2, 3, 4];
        for len in [0, 5, 125, 126, 65535, 65536, 100_000] {
            let payload = vec![b'x'; len];
            let frame = client_frame(0x81, &payload, mask);
            let header = parse_header(&frame, false, usize::MAX).unwrap().unwrap();
            assert_eq!(header.opcode, OpCode::Text);
            assert!(header.fin);
            assert_eq!(header.payload_len, len);
            assert_eq!(header.frame_len(), frame.len());
            assert_eq!(header.mask, mask);
            let mut body = frame[header.len..].to_vec();
            unmask(&mut body, header.mask);
            assert_eq!(body, payload);
            for cut in 0..header.len {
                assert_eq!(parse_header(&frame[..cut], false, usize::MAX), Ok(None));
            }
        }
    }

    #[test]
    fn refuses_what_the_rfc_forbids() {
        use ProtocolError::*;
        let mask = [9, 9, 9, 9];
        let refused = |frame: &[u8], in_message: bool| parse_header(frame, in_message, 1 << 20);
        let p = |e| Err(HeaderError::Protocol(e));
        assert_eq!(
            refused(&client_frame(0xC1, b"x", mask), false),
            p(InvalidRsv)
        );
        assert_eq!(
            refused(&client_frame(0x83, b"x", mask), false),
            p(InvalidOpcode)
        );
        assert_eq!(
            refused(&client_frame(0x80, b"x", mask), false),
            p(InvalidOpcode)
        );
        assert_eq!(
            refused(&client_frame(0x81, b"x", mask), true),
            p(InvalidOpcode)
        );
        assert!(refused(&client_frame(0x80, b"x", mask), true).is_ok());
        assert!(refused(&client_frame(0x89, b"x", mask), true).is_ok());
        assert_eq!(
            refused(&client_frame(0x09, b"x", mask), false),
            p(FragmentedControlFrame)
        );
        assert_eq!(
            refused(&[0x81, 0x01, b'x'], false),
            p(UnexpectedUnmaskedFrame)
        );
        assert_eq!(
            refused(&client_frame(0x88, b"x", mask), false),
            p(InvalidPayloadLength)
        );
        assert_eq!(
            refused(&client_frame(0x89, &[0; 126], mask), false),
            p(InvalidPayloadLength)
        );
        // Lengths not in their shortest encoding.
        assert_eq!(
            refused(&[0x81, 0xFE, 0, 5, 0, 0, 0, 0], false),
            p(InvalidPayloadLength)
        );
        let mut long = vec![0x81, 0xFF];
        long.extend_from_slice(&200u64.to_be_bytes());
        assert_eq!(refused(&long, false), p(InvalidPayloadLength));
        let mut huge = vec![0x81, 0xFF];
        huge.extend_from_slice(&(1u64 << 63).to_be_bytes());
        assert_eq!(refused(&huge, false), p(InvalidPayloadLength));
        // Too long for the server, known from the header alone.
        assert_eq!(
            parse_header(&client_frame(0x81, &[0; 2000], mask)[..4], false, 1024),
            Err(HeaderError::TooLong(2000))
        );
        assert!(parse_header(&client_frame(0x81, &[0; 1024], mask), false, 1024).is_ok());
    }

    #[test]
    fn rsv1_only_on_data_frames_once_deflate_is_negotiated() {
        let mask = [9, 9, 9, 9];
        let with = |first: u8, in_message: bool| {
            parse_header_with(&client_frame(first, b"x", mask), in_message, 1024, true)
        };
        assert!(with(0xC1, false).unwrap().unwrap().compressed);
        assert!(with(0x42, false).unwrap().unwrap().compressed);
        assert!(!with(0x81, false).unwrap().unwrap().compressed);
        let rsv = Err(HeaderError::Protocol(ProtocolError::InvalidRsv));
        assert_eq!(with(0xC0, true), rsv, "continuation");
        assert_eq!(with(0xC9, false), rsv, "ping");
        assert_eq!(with(0xA1, false), rsv, "RSV2");
        assert_eq!(with(0x91, false), rsv, "RSV3");
        assert_eq!(
            OutHeader::with_rsv1(OpCode::Text, 5, true).as_bytes(),
            [0xC1, 5]
        );
    }

    #[test]
    fn close_payloads() {
        assert_eq!(parse_close(b""), Ok((1005, "")));
        assert_eq!(parse_close(b"\x03\xe8bye"), Ok((1000, "bye")));
        assert_eq!(parse_close(b"\x0f\xa0"), Ok((4000, "")));
        assert_eq!(
            parse_close(b"\x03\xed"),
            Err(ProtocolError::InvalidCloseCode)
        ); // 1005
        assert_eq!(
            parse_close(b"\x03\xe7"),
            Err(ProtocolError::InvalidCloseCode)
        ); // 999
        assert_eq!(
            parse_close(b"\x13\x88"),
            Err(ProtocolError::InvalidCloseCode)
        ); // 5000
        assert_eq!(
            parse_close(b"\x03\xe8\xff"),
            Err(ProtocolError::InvalidUtf8)
        );
    }

    #[test]
    fn server_headers() {
        assert_eq!(OutHeader::new(OpCode::Text, 5).as_bytes(), [0x81, 5]);
        assert_eq!(OutHeader::new(OpCode::Close, 0).as_bytes(), [0x88, 0]);
        assert_eq!(
            OutHeader::new(OpCode::Text, 300).as_bytes(),
            [0x81, 126, 1, 44]
        );
        assert_eq!(
            OutHeader::new(OpCode::Binary, 70_000).as_bytes(),
            [0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]
        );
    }

    #[test]
    fn unmask_matches_the_bytewise_definition() {
        let mask = [0xA1, 0xB2, 0xC3, 0xD4];
        for len in 0..40 {
            let data: Vec<u8> = (0..len as u8).collect();
            let mut fast = data.clone();
            unmask(&mut fast, mask);
            let slow: Vec<u8> = data
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            assert_eq!(fast, slow);
        }
    }
}
