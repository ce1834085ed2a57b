//! The server side of a WebSocket connection once the HTTP upgrade is done (RFC 6455): reading
//! and assembling the client's messages, answering pings, the close handshake, and writing the
//! server's frames with vectored writes.
//!
//! Written for many idle connections: an idle socket holds no buffer at all. Reads go through a
//! per-thread scratch buffer; a message's payload is copied (and unmasked) from there into an
//! allocation of its own size, and only a frame that arrives in pieces is buffered per
//! connection, until it is complete. Outgoing frames are kept as shared [`Bytes`] (a published
//! message is the same allocation for every subscriber) and written with one `writev` per batch.

pub(crate) mod deflate;
mod frame;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub(crate) use deflate::{Deflate, negotiate as negotiate_deflate};
pub(crate) use frame::is_sendable_close_code;
use frame::{Header, HeaderError, OpCode, OutHeader, ProtocolError};

/// Size of each thread's read buffer: the most one read takes from the socket.
const SCRATCH_LEN: usize = 32 * 1024;

/// Outgoing frames handed to one `writev` at most (two slices per frame: header, payload).
const MAX_SLICES: usize = 64;

/// Frames waiting to be written before reading stops, unless told otherwise
/// ([`WebSocket::with_queue_limit`]).
const DEFAULT_MAX_QUEUED: usize = 4096;

/// Queues that grew past this many frames are released once drained; so is a queue that held a
/// single frame (an idle socket's ping), so that an idle socket holds no write buffer.
const KEEP_QUEUE_CAPACITY: usize = 16;

thread_local! {
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH_LEN].into_boxed_slice());
}

/// A message from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Inbound {
    /// A text message (valid UTF-8).
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
    /// The client's close frame: its code (1005 when it gave none) and reason.
    Close(u16, String),
}

/// What ends a WebSocket connection.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// Reading or writing failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The client broke the protocol (closed with 1002, or 1007 for invalid UTF-8).
    #[error("{0}")]
    Protocol(ProtocolError),
    /// A message longer than the server accepts (closed with 1009).
    #[error("payload length of {len} exceeds the limit of {max_len}")]
    PayloadTooLong { len: usize, max_len: usize },
    /// A frame was sent after the close handshake started.
    #[error("attempted to send message after closing connection")]
    AlreadyClosed,
}

/// Where the close handshake is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// We sent a close frame and wait for the client's.
    ClosedByUs,
    /// The client sent a close frame; ours (the echo) goes out, then the stream ends.
    ClosedByPeer,
    /// Both close frames were exchanged, or the connection failed.
    Closed,
}

/// A fragmented message being assembled.
struct Partial {
    opcode: OpCode,
    /// Its first frame had RSV1 set: `data` is deflated.
    compressed: bool,
    data: BytesMut,
}

/// A server frame waiting to be written.
struct Outgoing {
    header: OutHeader,
    payload: Bytes,
}

impl Outgoing {
    fn len(&self) -> usize {
        self.header.as_bytes().len() + self.payload.len()
    }
}

/// A server-side WebSocket over `S` (see the module documentation).
pub(crate) struct WebSocket<S> {
    io: S,
    state: State,
    max_payload: usize,
    /// Most frames waiting to be written: past it, reading stops until they are written (so a
    /// client that sends pings and never reads cannot make the pongs pile up).
    max_queued: usize,
    /// permessage-deflate, if negotiated.
    deflate: Option<Deflate>,
    /// Bytes of a frame that arrived in pieces (no allocation otherwise).
    pending: BytesMut,
    /// The fragmented message being received, if any.
    message: Option<Partial>,
    /// Frames to write; `written` bytes of the first one are written already.
    out: VecDeque<Outgoing>,
    written: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// A WebSocket over an upgraded connection, accepting messages of up to `max_payload` bytes.
    pub(crate) fn new(io: S, max_payload: usize) -> WebSocket<S> {
        WebSocket {
            io,
            state: State::Open,
            max_payload,
            max_queued: DEFAULT_MAX_QUEUED,
            deflate: None,
            pending: BytesMut::new(),
            message: None,
            out: VecDeque::new(),
            written: 0,
        }
    }

    /// Bounds the frames waiting to be written (the socket's outbound queue limit): while that
    /// many wait, the client's frames are not read.
    pub(crate) fn with_queue_limit(mut self, max_queued: usize) -> WebSocket<S> {
        self.max_queued = max_queued.max(1);
        self
    }

    /// Uses permessage-deflate as negotiated in the upgrade.
    pub(crate) fn with_deflate(mut self, deflate: Option<Deflate>) -> WebSocket<S> {
        self.deflate = deflate;
        self
    }

    /// The next message. Pings are answered and pongs skipped here; after the client's close
    /// frame (returned as [`Inbound::Close`]) or an error, the stream ends (`None`).
    pub(crate) fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Inbound, Error>>> {
        loop {
            match self.state {
                State::Closed => return Poll::Ready(None),
                State::ClosedByPeer => {
                    // Our close frame must go out before the stream ends.
                    let flushed = ready!(self.poll_flush(cx));
                    self.state = State::Closed;
                    return Poll::Ready(flushed.err().map(Err));
                }
                State::Open | State::ClosedByUs => {}
            }
            // Control answers (pongs, a close echo) go out as soon as possible.
            if !self.out.is_empty()
                && let Poll::Ready(Err(error)) = self.poll_flush(cx)
            {
                return Poll::Ready(Some(Err(error)));
            }
            if self.out.len() >= self.max_queued {
                // The client does not read what we write: stop reading its frames until it
                // does (the pending write wakes this task).
                return Poll::Pending;
            }
            // A complete frame already received?
            if !self.pending.is_empty() {
                match self.take_pending_frame() {
                    Err(error) => return Poll::Ready(Some(Err(self.fail(error)))),
                    Ok(Some((header, payload))) => match self.on_frame(header, payload) {
                        Ok(Some(message)) => return Poll::Ready(Some(Ok(message))),
                        Ok(None) => continue,
                        Err(error) => return Poll::Ready(Some(Err(self.fail(error)))),
                    },
                    Ok(None) => {}
                }
            }
            match ready!(self.poll_read_frame(cx)) {
                Ok(Some((header, payload))) => match self.on_frame(header, payload) {
                    Ok(Some(message)) => return Poll::Ready(Some(Ok(message))),
                    Ok(None) => {}
                    Err(error) => return Poll::Ready(Some(Err(self.fail(error)))),
                },
                Ok(None) => {}
                Err(Error::Io(error)) if error.kind() == io::ErrorKind::UnexpectedEof => {
                    self.state = State::Closed;
                    return Poll::Ready(None);
                }
                Err(error) => return Poll::Ready(Some(Err(self.fail(error)))),
            }
        }
    }

    /// Reads once. Returns the first frame of what was read if it is complete (the common case:
    /// its payload is copied straight out of the scratch buffer); anything else is kept in
    /// `pending`. End of stream is `UnexpectedEof`.
    fn poll_read_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<(Header, Bytes)>, Error>> {
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let mut read = ReadBuf::new(&mut scratch[..]);
            ready!(Pin::new(&mut self.io).poll_read(cx, &mut read))?;
            let data = read.filled();
            if data.is_empty() {
                let ended = if self.pending.is_empty() {
                    io::Error::new(io::ErrorKind::UnexpectedEof, "end of stream")
                } else {
                    io::Error::other("bytes remaining on stream")
                };
                return Poll::Ready(Err(Error::Io(ended)));
            }
            if !self.pending.is_empty() {
                self.pending.extend_from_slice(data);
                return Poll::Ready(Ok(None));
            }
            match self.parse_header(data)? {
                Some(header) if header.frame_len() <= data.len() => {
                    let mut payload = BytesMut::from(&data[header.len..header.frame_len()]);
                    frame::unmask(&mut payload, header.mask);
                    let rest = &data[header.frame_len()..];
                    if !rest.is_empty() {
                        self.pending.extend_from_slice(rest);
                    }
                    Poll::Ready(Ok(Some((header, payload.freeze()))))
                }
                _ => {
                    // The buffer grows with the bytes that arrive, never from the length a
                    // header announces (which may be a lie).
                    self.pending.extend_from_slice(data);
                    Poll::Ready(Ok(None))
                }
            }
        })
    }

    /// Takes the first frame out of `pending` if it is complete.
    fn take_pending_frame(&mut self) -> Result<Option<(Header, Bytes)>, Error> {
        let Some(header) = self.parse_header(&self.pending)? else {
            return Ok(None);
        };
        if self.pending.len() < header.frame_len() {
            return Ok(None);
        }
        let mut payload = self.pending.split_to(header.frame_len());
        payload.advance(header.len);
        frame::unmask(&mut payload, header.mask);
        if self.pending.is_empty() {
            // Release the buffer (the payload keeps what it needs).
            self.pending = BytesMut::new();
        }
        Ok(Some((header, payload.freeze())))
    }

    fn parse_header(&self, buf: &[u8]) -> Result<Option<Header>, Error> {
        let deflate = self.deflate.is_some();
        frame::parse_header_with(buf, self.message.is_some(), self.max_payload, deflate).map_err(
            |e| match e {
                HeaderError::Protocol(e) => Error::Protocol(e),
                HeaderError::TooLong(len) => Error::PayloadTooLong {
                    len,
                    max_len: self.max_payload,
                },
            },
        )
    }

    /// One complete frame: a message, a control frame, or a fragment.
    fn on_frame(&mut self, header: Header, payload: Bytes) -> Result<Option<Inbound>, Error> {
        let whole = match header.opcode {
            OpCode::Ping => {
                if self.state == State::Open {
                    self.queue(OpCode::Pong, payload);
                }
                return Ok(None);
            }
            OpCode::Pong => return Ok(None),
            OpCode::Close => {
                let (code, reason) = frame::parse_close(&payload).map_err(Error::Protocol)?;
                let reason = reason.to_owned();
                if self.state == State::Open {
                    // Echo the code (RFC 6455 §5.5.1), then end.
                    self.queue(OpCode::Close, payload.slice(..payload.len().min(2)));
                    self.state = State::ClosedByPeer;
                } else {
                    self.state = State::Closed;
                }
                return Ok(Some(Inbound::Close(code, reason)));
            }
            OpCode::Text | OpCode::Binary if header.fin => {
                (header.opcode, self.inflated(header.compressed, payload)?)
            }
            OpCode::Text | OpCode::Binary => {
                self.message = Some(Partial {
                    opcode: header.opcode,
                    compressed: header.compressed,
                    data: BytesMut::from(payload),
                });
                return Ok(None);
            }
            OpCode::Continuation => {
                let Some(partial) = &mut self.message else {
                    return Err(Error::Protocol(ProtocolError::InvalidOpcode));
                };
                let len = partial.data.len() + payload.len();
                if len > self.max_payload {
                    return Err(Error::PayloadTooLong {
                        len,
                        max_len: self.max_payload,
                    });
                }
                partial.data.extend_from_slice(&payload);
                if !header.fin {
                    return Ok(None);
                }
                let Some(Partial {
                    opcode,
                    compressed,
                    data,
                }) = self.message.take()
                else {
                    return Ok(None);
                };
                (opcode, self.inflated(compressed, data.freeze())?)
            }
        };
        Ok(Some(match whole {
            (OpCode::Text, text) => {
                if std::str::from_utf8(&text).is_err() {
                    return Err(Error::Protocol(ProtocolError::InvalidUtf8));
                }
                Inbound::Text(text)
            }
            (_, binary) => Inbound::Binary(binary),
        }))
    }

    /// A message's payload as sent (inflated if it was compressed), at most `max_payload` bytes.
    fn inflated(&self, compressed: bool, payload: Bytes) -> Result<Bytes, Error> {
        if !compressed {
            return Ok(payload);
        }
        deflate::inflate(&payload, self.max_payload).map_err(|error| match error {
            deflate::InflateError::TooLong => Error::PayloadTooLong {
                len: self.max_payload.saturating_add(1),
                max_len: self.max_payload,
            },
            deflate::InflateError::Invalid => Error::Protocol(ProtocolError::InvalidDeflate),
        })
    }

    /// The connection failed: queue the close frame the client deserves, stop reading.
    fn fail(&mut self, error: Error) -> Error {
        let close = match &error {
            _ if self.state != State::Open => None,
            Error::Protocol(ProtocolError::InvalidUtf8) => Some((1007, "invalid utf8".to_owned())),
            Error::Protocol(ProtocolError::InvalidDeflate) => {
                Some((1007, "invalid compressed data".to_owned()))
            }
            Error::Protocol(e) => Some((1002, e.as_str().to_owned())),
            Error::PayloadTooLong { max_len, .. } => Some((1009, format!("max length: {max_len}"))),
            Error::Io(_) | Error::AlreadyClosed => None,
        };
        match close {
            Some((code, reason)) => {
                self.queue(OpCode::Close, close_payload(code, &reason));
                self.state = State::ClosedByPeer;
            }
            None => self.state = State::Closed,
        }
        self.pending = BytesMut::new();
        self.message = None;
        error
    }

    /// Queues a text frame (written by [`WebSocket::poll_flush`]).
    pub(crate) fn send_text(&mut self, payload: Bytes) -> Result<(), Error> {
        if self.state != State::Open {
            return Err(Error::AlreadyClosed);
        }
        self.queue(OpCode::Text, payload);
        Ok(())
    }

    /// Queues a text or binary message (written by [`WebSocket::poll_flush`]).
    #[cfg(feature = "ws-echo")]
    pub(crate) fn send_message(&mut self, binary: bool, payload: Bytes) -> Result<(), Error> {
        if self.state != State::Open {
            return Err(Error::AlreadyClosed);
        }
        self.queue(if binary { OpCode::Binary } else { OpCode::Text }, payload);
        Ok(())
    }

    /// Queues a binary frame (written by [`WebSocket::poll_flush`]).
    pub(crate) fn send_binary(&mut self, payload: Bytes) -> Result<(), Error> {
        if self.state != State::Open {
            return Err(Error::AlreadyClosed);
        }
        self.queue(OpCode::Binary, payload);
        Ok(())
    }

    /// Queues a close frame (`code` must be sendable; the reason is cut to 123 bytes) and starts
    /// the close handshake.
    pub(crate) fn send_close(&mut self, code: u16, reason: &str) -> Result<(), Error> {
        if self.state != State::Open {
            return Err(Error::AlreadyClosed);
        }
        self.queue(
            OpCode::Close,
            close_payload(code, truncate_utf8(reason, 123)),
        );
        self.state = State::ClosedByUs;
        Ok(())
    }

    /// Queues a frame; a data frame of at least the deflate threshold goes out compressed.
    fn queue(&mut self, opcode: OpCode, payload: Bytes) {
        let (payload, compressed) = match self.deflate {
            Some(deflate) if !opcode.is_control() && payload.len() >= deflate.threshold => (
                deflate::compress_shared(&payload, deflate.window_bits),
                true,
            ),
            _ => (payload, false),
        };
        self.out.push_back(Outgoing {
            header: OutHeader::with_rsv1(opcode, payload.len(), compressed),
            payload,
        });
    }

    /// Writes every queued frame (vectored writes), then flushes the connection.
    pub(crate) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let single = self.out.len() <= 1;
        while !self.out.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let count = fill_slices(&self.out, self.written, &mut slices);
            let written = match Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..count]) {
                Poll::Ready(Ok(0)) => Err(io::Error::from(io::ErrorKind::WriteZero)),
                Poll::Ready(result) => result,
                Poll::Pending => return Poll::Pending,
            };
            match written {
                Ok(written) => self.advance(written),
                Err(error) => {
                    self.state = State::Closed;
                    return Poll::Ready(Err(Error::Io(error)));
                }
            }
        }
        if single || self.out.capacity() > KEEP_QUEUE_CAPACITY {
            self.out = VecDeque::new();
        }
        Pin::new(&mut self.io).poll_flush(cx).map_err(|error| {
            self.state = State::Closed;
            Error::Io(error)
        })
    }

    fn advance(&mut self, mut written: usize) {
        written += self.written;
        while let Some(frame) = self.out.front() {
            if written < frame.len() {
                break;
            }
            written -= frame.len();
            self.out.pop_front();
        }
        self.written = written;
    }
}

/// Points `slices` at the unwritten bytes of `out` (as many as fit); returns how many were used.
fn fill_slices<'a>(
    out: &'a VecDeque<Outgoing>,
    mut skip: usize,
    slices: &mut [IoSlice<'a>; MAX_SLICES],
) -> usize {
    let mut count = 0;
    for frame in out {
        for part in [frame.header.as_bytes(), &frame.payload[..]] {
            if skip >= part.len() {
                skip -= part.len();
                continue;
            }
            if count == MAX_SLICES {
                return count;
            }
            slices[count] = IoSlice::new(&part[skip..]);
            skip = 0;
            count += 1;
        }
    }
    count
}

/// A close frame's payload: the code, then the reason.
fn close_payload(code: u16, reason: &str) -> Bytes {
    let mut payload = BytesMut::with_capacity(2 + reason.len());
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(reason.as_bytes());
    payload.freeze()
}

fn truncate_utf8(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests;
