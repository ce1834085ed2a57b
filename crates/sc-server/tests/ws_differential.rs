//! Differential check of the WebSocket frame layer (issue 12, proof 3): the same client byte
//! streams, split into reads at random points, go to our parser and to tokio-websockets' server
//! side; both must agree on every message, the close code and the class of error.
//!
//! Streams are built from frames (messages split into fragments with control frames between
//! them, raw frames with arbitrary header bits, unmasked or over-long frames, close frames with
//! any code and reason) followed by optional garbage, so most of them go deep into the parser
//! rather than failing at the first byte.
//!
//! One difference is by design and kept out of the streams: tokio-websockets checks the UTF-8 of
//! a fragmented text message fragment by fragment, we check the whole message when it is
//! complete. Both close with 1007 before delivering the message; only a *different* error later
//! in the same message would be reported differently, so the fragments before the last one carry
//! UTF-8 that is valid so far (the last may carry anything).

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::StreamExt;
use proptest::prelude::*;
use sc_server::fuzzing::{WsErrorClass, WsEvent, ws_read};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_websockets::proto::ProtocolError;
use tokio_websockets::{Error, Limits, ServerBuilder};

/// Reads return the chunks in order, then the end of the stream; writes go nowhere.
struct Chunks(VecDeque<Bytes>);

impl AsyncRead for Chunks {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(chunk) = self.0.front_mut() {
            let n = chunk.len().min(buf.remaining());
            buf.put_slice(&chunk.split_to(n));
            if chunk.is_empty() {
                self.0.pop_front();
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Chunks {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(b.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// What tokio-websockets' server makes of the same reads, in our terms.
fn reference_read(chunks: &[&[u8]], max_payload: usize) -> Vec<WsEvent> {
    let io = Chunks(
        chunks
            .iter()
            .filter(|c| !c.is_empty())
            .map(|c| Bytes::copy_from_slice(c))
            .collect(),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut ws = ServerBuilder::new()
            .limits(Limits::default().max_payload_len(Some(max_payload)))
            .serve(io);
        let mut events = Vec::new();
        loop {
            let event = match ws.next().await {
                None => WsEvent::End,
                Some(Ok(message)) if message.is_ping() || message.is_pong() => continue,
                Some(Ok(message)) => {
                    if let Some((code, reason)) = message.as_close() {
                        WsEvent::Close(code.into(), reason.to_owned())
                    } else if message.is_text() {
                        WsEvent::Text(message.into_payload().to_vec())
                    } else {
                        WsEvent::Binary(message.into_payload().to_vec())
                    }
                }
                Some(Err(error)) => WsEvent::Error(match error {
                    Error::Protocol(ProtocolError::InvalidUtf8) => WsErrorClass::InvalidUtf8,
                    Error::Protocol(_) => WsErrorClass::Protocol,
                    Error::PayloadTooLong { .. } => WsErrorClass::TooLong,
                    _ => WsErrorClass::Io,
                }),
            };
            let last = !matches!(event, WsEvent::Text(_) | WsEvent::Binary(_));
            events.push(event);
            if last {
                return events;
            }
        }
    })
}

/// The end of the stream, clean or mid-frame, is one class: no close frame either way.
fn normalise(mut events: Vec<WsEvent>) -> Vec<WsEvent> {
    if let Some(last) = events.last_mut()
        && *last == WsEvent::Error(WsErrorClass::Io)
    {
        *last = WsEvent::End;
    }
    events
}

/// A client frame: header bits as given, masked unless `unmasked`.
fn frame(first: u8, payload: &[u8], mask: [u8; 4], unmasked: bool, wide: u8) -> Vec<u8> {
    let mut out = vec![first];
    let bit = if unmasked { 0 } else { 0x80 };
    let n = payload.len();
    match wide {
        // Shortest encoding, as RFC 6455 requires.
        0 if n < 126 => out.push(bit | n as u8),
        0 | 1 if n < 65_536 => {
            out.push(bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        _ => {
            out.push(bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if !unmasked {
        out.extend_from_slice(&mask);
    }
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// One item of a generated stream.
#[derive(Debug, Clone)]
enum Item {
    /// A text or binary message in `pieces` fragments, with a ping after the first if `ping`.
    Message {
        text: bool,
        payload: Vec<u8>,
        pieces: usize,
        ping: bool,
    },
    /// A control frame (ping 9, pong 10, close 8) with this payload.
    Control(u8, Vec<u8>),
    /// A frame with arbitrary first byte, masking and length encoding.
    Raw {
        first: u8,
        payload: Vec<u8>,
        unmasked: bool,
        wide: u8,
    },
}

fn payload() -> impl Strategy<Value = (bool, Vec<u8>)> {
    prop_oneof![
        4 => "\\PC{0,24}".prop_map(|s| (true, s.into_bytes())),
        2 => prop::collection::vec(any::<u8>(), 0..40).prop_map(|b| (false, b)),
        1 => prop::collection::vec(any::<u8>(), 0..40).prop_map(|b| (true, b)),
        1 => (100usize..300).prop_map(|n| (true, "é".repeat(n / 2).into_bytes())),
    ]
}

fn close_payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        (any::<u16>(), "\\PC{0,10}").prop_map(|(code, reason)| {
            let mut p = code.to_be_bytes().to_vec();
            p.extend_from_slice(reason.as_bytes());
            p
        }),
        (1000u16..1012, prop::collection::vec(any::<u8>(), 0..6)).prop_map(|(code, reason)| {
            let mut p = code.to_be_bytes().to_vec();
            p.extend(reason);
            p
        }),
        prop::collection::vec(any::<u8>(), 1..3),
    ]
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        6 => (payload(), 1usize..4, any::<bool>()).prop_map(|((text, payload), pieces, ping)| {
            Item::Message { text, payload, pieces, ping }
        }),
        1 => prop::collection::vec(any::<u8>(), 0..8).prop_map(|p| Item::Control(9, p)),
        1 => prop::collection::vec(any::<u8>(), 0..8).prop_map(|p| Item::Control(10, p)),
        1 => close_payload().prop_map(|p| Item::Control(8, p)),
        1 => (any::<u8>(), prop::collection::vec(any::<u8>(), 0..130), prop::bool::weighted(0.2), 0u8..3)
            .prop_map(|(first, payload, unmasked, wide)| Item::Raw { first, payload, unmasked, wide }),
    ]
}

/// Splits `payload` into `pieces` fragments; fragments before the last end on a UTF-8 character
/// boundary of valid text when the message is text (see the module documentation).
fn fragments(text: bool, payload: &[u8], pieces: usize) -> Vec<Vec<u8>> {
    let valid_prefix = if text {
        match std::str::from_utf8(payload) {
            Ok(_) => payload.len(),
            Err(e) => e.valid_up_to(),
        }
    } else {
        payload.len()
    };
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..pieces {
        let mut cut = valid_prefix * i / pieces;
        if text {
            while cut > start && std::str::from_utf8(&payload[start..cut]).is_err() {
                cut -= 1;
            }
        }
        out.push(payload[start..cut.max(start)].to_vec());
        start = cut.max(start);
    }
    out.push(payload[start..].to_vec());
    out
}

fn render(items: &[Item], mask: [u8; 4], tail: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for item in items {
        match item {
            Item::Message {
                text,
                payload,
                pieces,
                ping,
            } => {
                let parts = fragments(*text, payload, *pieces);
                let last = parts.len() - 1;
                for (i, part) in parts.iter().enumerate() {
                    let opcode = match (i, text) {
                        (0, true) => 1,
                        (0, false) => 2,
                        _ => 0,
                    };
                    let fin = if i == last { 0x80 } else { 0 };
                    out.extend(frame(fin | opcode, part, mask, false, 0));
                    if *ping && i == 0 && last > 0 {
                        out.extend(frame(0x89, b"p", mask, false, 0));
                    }
                }
            }
            Item::Control(opcode, payload) => {
                out.extend(frame(0x80 | opcode, payload, mask, false, 0));
            }
            Item::Raw {
                first,
                payload,
                unmasked,
                wide,
            } => out.extend(frame(*first, payload, mask, *unmasked, *wide)),
        }
    }
    out.extend_from_slice(tail);
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn our_frame_layer_agrees_with_tokio_websockets(
        items in prop::collection::vec(item(), 1..6),
        mask in any::<[u8; 4]>(),
        tail in prop::collection::vec(any::<u8>(), 0..4),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        small in any::<bool>(),
    ) {
        let stream = render(&items, mask, &tail);
        let max_payload = if small { 100 } else { 1 << 20 };
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
        points.sort_unstable();
        let mut chunks = Vec::new();
        let mut start = 0;
        for point in points {
            chunks.push(&stream[start..point]);
            start = point;
        }
        chunks.push(&stream[start..]);

        let ours = normalise(ws_read(&chunks, max_payload));
        let theirs = normalise(reference_read(&chunks, max_payload));
        prop_assert_eq!(ours, theirs, "stream {:02x?}", stream);
    }
}
