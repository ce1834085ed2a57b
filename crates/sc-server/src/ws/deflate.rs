//! permessage-deflate (RFC 7692): negotiation, compressing server messages, and bounded inflating
//! of client messages.
//!
//! Always without context takeover, in both directions: every message is compressed and
//! inflated on its own, so a connection keeps no deflate state at all (the compressor and the
//! inflater are per thread). The cost is a worse ratio for small messages that repeat what earlier
//! messages said. The gain: 0 bytes of deflate memory per connection (a context-takeover
//! connection holds two windows, 64 KiB and more), and a published message compresses to the
//! same bytes for every subscriber, so it is compressed once per thread and shared
//! ([`compress_shared`]).

use std::cell::RefCell;
use std::collections::VecDeque;

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The extension's name in `Sec-WebSocket-Extensions`.
const NAME: &str = "permessage-deflate";

/// The empty stored block a sync flush ends with; removed from, and appended to, messages
/// (RFC 7692 §7.2.1, §7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xFF, 0xFF];

/// Compressed forms of shared frames remembered per thread (see [`compress_shared`]).
const SHARED_CACHE_LEN: usize = 64;

/// Frames above this size are compressed without being remembered (the cache would keep them).
const SHARED_CACHE_MAX_FRAME: usize = 64 * 1024;

/// What a connection agreed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Deflate {
    /// Messages shorter than this go uncompressed.
    pub(crate) threshold: usize,
    /// The largest LZ77 window our messages may use (`server_max_window_bits`, 8 to 15).
    pub(crate) window_bits: u8,
}

/// Picks the first acceptable `permessage-deflate` offer of a `Sec-WebSocket-Extensions` header
/// (all its values, in order). Returns the agreement and the response header value.
///
/// Offers with unknown, repeated or invalid parameters are declined (RFC 7692 §5, §7.1).
pub(crate) fn negotiate<'a>(
    offers: impl Iterator<Item = &'a str>,
    threshold: usize,
) -> Option<(Deflate, String)> {
    offers
        .flat_map(|value| value.split(','))
        .find_map(|offer| accept_offer(offer, threshold))
}

fn accept_offer(offer: &str, threshold: usize) -> Option<(Deflate, String)> {
    let mut parts = offer.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case(NAME) {
        return None;
    }
    let mut seen = [false; 4];
    let mut window_bits = None;
    for param in parts {
        let (name, value) = match param.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value.trim().trim_matches('"'))),
            None => (param, None),
        };
        let index = match name.to_ascii_lowercase().as_str() {
            "server_no_context_takeover" if value.is_none() => 0,
            "client_no_context_takeover" if value.is_none() => 1,
            "server_max_window_bits" => {
                window_bits = Some(parse_bits(value?)?);
                2
            }
            "client_max_window_bits" => {
                if let Some(value) = value {
                    parse_bits(value)?;
                }
                3
            }
            _ => return None,
        };
        if std::mem::replace(&mut seen[index], true) {
            return None;
        }
    }
    // We never keep context: say so for both sides (a client must accept
    // client_no_context_takeover even if it did not offer it, RFC 7692 §7.1.1.2).
    let mut response = format!("{NAME}; server_no_context_takeover; client_no_context_takeover");
    if let Some(bits) = window_bits {
        response.push_str(&format!("; server_max_window_bits={bits}"));
    }
    let deflate = Deflate {
        threshold,
        window_bits: window_bits.unwrap_or(15),
    };
    Some((deflate, response))
}

/// A window size parameter: 8 to 15, digits only.
fn parse_bits(value: &str) -> Option<u8> {
    if value.is_empty() || value.len() > 2 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok().filter(|bits| (8..=15).contains(bits))
}

thread_local! {
    static COMPRESS: RefCell<Compress> = RefCell::new(Compress::new(Compression::fast(), false));
    static INFLATE: RefCell<Decompress> = RefCell::new(Decompress::new(false));
    static SHARED: RefCell<VecDeque<(Bytes, u8, Bytes)>> = const { RefCell::new(VecDeque::new()) };
}

/// The compressed form of a message (without the sync flush tail, ready for a frame with RSV1).
///
/// A frame shared by several sockets (a publication) is compressed once per thread: the last
/// few compressed frames are remembered with a reference to their source, so the source cannot
/// be freed and its address reused while it is a key.
pub(crate) fn compress_shared(payload: &Bytes, window_bits: u8) -> Bytes {
    let shared = !payload.is_unique() && payload.len() <= SHARED_CACHE_MAX_FRAME;
    if shared {
        let hit = SHARED.with(|cache| {
            cache
                .borrow()
                .iter()
                .find(|(source, bits, _)| {
                    *bits == window_bits
                        && source.as_ptr() == payload.as_ptr()
                        && source.len() == payload.len()
                })
                .map(|(_, _, compressed)| compressed.clone())
        });
        if let Some(compressed) = hit {
            return compressed;
        }
    }
    let compressed = Bytes::from(compress(payload, window_bits));
    if shared {
        SHARED.with(|cache| {
            let mut cache = cache.borrow_mut();
            if cache.len() == SHARED_CACHE_LEN {
                cache.pop_front();
            }
            cache.push_back((payload.clone(), window_bits, compressed.clone()));
        });
    }
    compressed
}

/// Compresses one message on its own (no context takeover). Back-references stay within
/// `2^window_bits` bytes: for a window below 15 bits the input is compressed in pieces of that
/// size, with a full flush (which forgets the history) between them.
pub(crate) fn compress(payload: &[u8], window_bits: u8) -> Vec<u8> {
    COMPRESS.with(|compress| {
        let mut compress = compress.borrow_mut();
        compress.reset();
        let mut out = Vec::with_capacity(payload.len() / 2 + 64);
        let piece = if window_bits >= 15 {
            payload.len().max(1)
        } else {
            1 << window_bits
        };
        let mut pieces = payload.chunks(piece).peekable();
        if pieces.peek().is_none() {
            run_compress(&mut compress, &[], &mut out, FlushCompress::Sync);
        }
        while let Some(piece) = pieces.next() {
            let flush = if pieces.peek().is_some() {
                FlushCompress::Full
            } else {
                FlushCompress::Sync
            };
            run_compress(&mut compress, piece, &mut out, flush);
        }
        if out.ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
        out
    })
}

fn run_compress(compress: &mut Compress, input: &[u8], out: &mut Vec<u8>, flush: FlushCompress) {
    let start = compress.total_in();
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(256));
        }
        let consumed = (compress.total_in() - start) as usize;
        // A raw deflate stream into a Vec with spare room cannot fail.
        let _ = compress.compress_vec(&input[consumed..], out, flush);
        let consumed = (compress.total_in() - start) as usize;
        if consumed == input.len() && out.len() < out.capacity() {
            return;
        }
    }
}

/// Why a compressed message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InflateError {
    /// It inflates past the limit (stopped there, before allocating more).
    TooLong,
    /// It is not a valid deflate stream.
    Invalid,
}

/// Inflates one message of at most `max_len` bytes, without ever holding more than
/// `max_len + 1` bytes of output (a zip bomb stops at the limit).
pub(crate) fn inflate(compressed: &[u8], max_len: usize) -> Result<Bytes, InflateError> {
    INFLATE.with(|inflate| {
        let mut inflate = inflate.borrow_mut();
        inflate.reset(false);
        let cap = max_len.saturating_add(1);
        let mut out = Vec::with_capacity(compressed.len().saturating_mul(3).max(64).min(cap));
        let ended = run_inflate(&mut inflate, compressed, &mut out, cap)?;
        if !ended {
            run_inflate(&mut inflate, &TAIL, &mut out, cap)?;
        }
        Ok(Bytes::from(out))
    })
}

/// Feeds `input`; returns whether the stream ended (a final block). Stops once all of `input`
/// is consumed and a call makes no more progress (the inflater may hold output back until it
/// gets room for it).
fn run_inflate(
    inflate: &mut Decompress,
    input: &[u8],
    out: &mut Vec<u8>,
    cap: usize,
) -> Result<bool, InflateError> {
    let start = inflate.total_in();
    loop {
        if out.len() == out.capacity() {
            if out.len() >= cap {
                return Err(InflateError::TooLong);
            }
            let more = out.capacity().max(64).min(cap - out.len());
            out.reserve_exact(more);
        }
        let (before_in, before_out) = (inflate.total_in(), out.len());
        let status = inflate
            .decompress_vec(
                &input[(before_in - start) as usize..],
                out,
                FlushDecompress::Sync,
            )
            .map_err(|_| InflateError::Invalid)?;
        if out.len() >= cap {
            return Err(InflateError::TooLong);
        }
        if status == Status::StreamEnd {
            return Ok(true);
        }
        let progress = inflate.total_in() != before_in || out.len() != before_out;
        if !progress && out.len() < out.capacity() {
            return Ok(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(value: &str) -> Option<(Deflate, String)> {
        negotiate(std::iter::once(value), 0)
    }

    #[test]
    fn negotiates_the_first_valid_offer() {
        let (deflate, response) = offer("permessage-deflate; client_max_window_bits").unwrap();
        assert_eq!(deflate.window_bits, 15);
        assert_eq!(
            response,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
        let (deflate, response) = offer(
            "permessage-deflate; server_max_window_bits=20, permessage-deflate; server_max_window_bits=10",
        )
        .unwrap();
        assert_eq!(deflate.window_bits, 10);
        assert!(response.ends_with("; server_max_window_bits=10"));
        for declined in [
            "x-webkit-deflate-frame",
            "permessage-deflate; foo",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; client_max_window_bits=016",
            "permessage-deflate; server_no_context_takeover=1",
        ] {
            assert_eq!(offer(declined), None, "{declined}");
        }
    }

    #[test]
    fn round_trips_with_every_window() {
        let text: Vec<u8> = (0..20_000u32)
            .flat_map(|n| format!("{{\"n\":{}}}", n % 97).into_bytes())
            .collect();
        for bits in 8..=15 {
            let compressed = compress(&text, bits);
            assert!(compressed.len() < text.len() / 2, "{bits}");
            assert_eq!(inflate(&compressed, text.len()).unwrap(), text);
        }
        assert_eq!(inflate(&compress(b"", 15), 10).unwrap(), Bytes::new());
        // Hard to compress: the inflater holds output back between calls.
        let mut seed = 1u32;
        let noisy: Vec<u8> = (0..300_000)
            .map(|_| {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (seed >> 24) as u8
            })
            .collect();
        // Long-distance matches: blocks of noise repeated at varying distances.
        let mut echoes = Vec::new();
        while echoes.len() < 300_000 {
            let at = echoes.len() % 200_000;
            echoes.extend_from_slice(&noisy[at..at + 20_000 + at % 7_000]);
            echoes.extend_from_slice(&noisy[at * 3 % 250_000..][..300]);
        }
        for len in [65_536, 131_072, 300_000] {
            for bits in [9, 15] {
                let data = &echoes[..len];
                let compressed = compress(data, bits);
                assert_eq!(
                    inflate(&compressed, len).unwrap().len(),
                    len,
                    "{len} {bits}"
                );
            }
        }
        for len in [65_536, 131_072, 300_000] {
            for bits in [9, 15] {
                let noisy = &noisy[..len];
                let compressed = compress(noisy, bits);
                assert_eq!(inflate(&compressed, len).unwrap(), noisy, "{len} {bits}");
                let half: Vec<u8> = noisy.iter().map(|b| b % 16).collect();
                let compressed = compress(&half, bits);
                assert_eq!(inflate(&compressed, len).unwrap(), half, "{len} {bits}");
            }
        }
    }

    #[test]
    fn inflating_stops_at_the_limit() {
        let bomb = compress(&vec![0; 10 << 20], 15);
        assert!(bomb.len() < 200_000, "{}", bomb.len());
        assert_eq!(inflate(&bomb, 1 << 20), Err(InflateError::TooLong));
        assert_eq!(inflate(&bomb, 10 << 20).unwrap().len(), 10 << 20);
        assert_eq!(inflate(b"\xff\xff\xff", 100), Err(InflateError::Invalid));
    }

    #[test]
    fn a_shared_frame_is_compressed_once() {
        let frame = Bytes::from(vec![b'a'; 5000]);
        let copy = frame.clone();
        let first = compress_shared(&frame, 15);
        let second = compress_shared(&copy, 15);
        assert_eq!(first.as_ptr(), second.as_ptr(), "the same allocation");
        let other = Bytes::from(vec![b'a'; 5000]);
        assert_ne!(compress_shared(&other, 15).as_ptr(), first.as_ptr());
    }
}
