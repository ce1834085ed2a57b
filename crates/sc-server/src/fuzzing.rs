//! Entry points for the fuzz targets (`fuzz/`), their corpus replay and the differential test of
//! the frame layer. Not part of the public API: hidden from the docs, may change at any time.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::ws::{self, Inbound, WebSocket};

/// What the server's WebSocket layer made of a client's bytes, one item per message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsEvent {
    /// A complete text message.
    Text(Vec<u8>),
    /// A complete binary message.
    Binary(Vec<u8>),
    /// The client's close frame: its code (1005 without one) and reason.
    Close(u16, String),
    /// The connection failed.
    Error(WsErrorClass),
    /// The stream ended (cleanly, or in the middle of a frame).
    End,
}

/// The kind of failure, as the close code the server answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsErrorClass {
    /// A protocol violation (1002).
    Protocol,
    /// Invalid UTF-8 in a text message or close reason (1007).
    InvalidUtf8,
    /// A message longer than `max_payload` (1009).
    TooLong,
    /// An I/O error (no close frame).
    Io,
}

/// Feeds `chunks` (one read each) to the server's WebSocket layer and returns what it yields,
/// up to and including the first close, error or end.
pub fn ws_read(chunks: &[&[u8]], max_payload: usize) -> Vec<WsEvent> {
    let io = Chunks {
        chunks: chunks
            .iter()
            .map(|c| Bytes::copy_from_slice(c))
            .filter(|c| !c.is_empty())
            .collect(),
    };
    let mut ws = WebSocket::new(io, max_payload);
    let waker = futures_util::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    let mut events = Vec::new();
    loop {
        let event = match ws.poll_next(&mut cx) {
            // Every read and write of `Chunks` is ready at once.
            Poll::Pending => WsEvent::Error(WsErrorClass::Io),
            Poll::Ready(None) => WsEvent::End,
            Poll::Ready(Some(Ok(Inbound::Text(text)))) => WsEvent::Text(text.to_vec()),
            Poll::Ready(Some(Ok(Inbound::Binary(data)))) => WsEvent::Binary(data.to_vec()),
            Poll::Ready(Some(Ok(Inbound::Close(code, reason)))) => WsEvent::Close(code, reason),
            Poll::Ready(Some(Err(error))) => WsEvent::Error(match error {
                ws::Error::Protocol(e) if e.as_str() == "invalid utf-8" => {
                    WsErrorClass::InvalidUtf8
                }
                ws::Error::Protocol(_) => WsErrorClass::Protocol,
                ws::Error::PayloadTooLong { .. } => WsErrorClass::TooLong,
                ws::Error::Io(_) | ws::Error::AlreadyClosed => WsErrorClass::Io,
            }),
        };
        let last = !matches!(event, WsEvent::Text(_) | WsEvent::Binary(_));
        events.push(event);
        if last {
            return events;
        }
    }
}

/// A connection whose reads return the given chunks in order, then the end of the stream;
/// writes go nowhere.
struct Chunks {
    chunks: VecDeque<Bytes>,
}

impl AsyncRead for Chunks {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(chunk) = self.chunks.front_mut() {
            let n = chunk.len().min(buf.remaining());
            buf.put_slice(&chunk.split_to(n));
            if chunk.is_empty() {
                self.chunks.pop_front();
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Chunks {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
