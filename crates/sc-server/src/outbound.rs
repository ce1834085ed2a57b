//! The per-socket outbound queue and the writer task that drains it.
//!
//! Every frame for a socket (responses, events, channel deliveries) goes through one bounded
//! queue. Producers never wait: a full queue marks the socket as a slow consumer and the writer
//! closes it with [`CloseCode::SLOW_CONSUMER`]. The writer takes everything queued at once and
//! writes it with a single flush.

use std::collections::VecDeque;
use std::mem;

use bytes::Bytes;
use futures_util::{Sink, SinkExt};
use parking_lot::Mutex;
use sc_protocol::CloseCode;
use tokio::sync::Notify;
use tokio_websockets::{Message, Payload};

/// One item for the writer.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// A text frame.
    Text(Bytes),
    /// Close the connection with this code and reason after everything queued before it.
    Close(CloseCode, String),
}

/// Why a frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PushError {
    /// The socket is closed or closing.
    Closed,
    /// The queue was full: the socket is now being closed as a slow consumer.
    Overflow,
}

#[derive(Default)]
struct State {
    items: VecDeque<Outbound>,
    /// No more frames are accepted (a close was queued, the connection ended, or overflow).
    closed: bool,
    /// The queue overflowed: drop everything and close with 4100.
    overflowed: bool,
    /// The connection is gone: the writer should stop.
    finished: bool,
}

/// A bounded, lock-protected frame queue with a wake-up for its single writer.
///
/// A `VecDeque` behind a mutex rather than a channel: it allocates nothing until used, and the
/// writer can take the whole backlog in one swap.
pub(crate) struct OutboundQueue {
    state: Mutex<State>,
    wake: Notify,
    /// Signalled on overflow, to interrupt a writer blocked on a client that does not read.
    abort: Notify,
    limit: usize,
}

impl OutboundQueue {
    pub(crate) fn new(limit: usize) -> OutboundQueue {
        OutboundQueue {
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            abort: Notify::new(),
            limit,
        }
    }

    /// Queues a text frame.
    pub(crate) fn push(&self, frame: Bytes) -> Result<(), PushError> {
        {
            let mut state = self.state.lock();
            if state.closed {
                return Err(PushError::Closed);
            }
            if state.items.len() >= self.limit {
                state.closed = true;
                state.overflowed = true;
                state.items.clear();
                drop(state);
                self.wake.notify_one();
                self.abort.notify_one();
                return Err(PushError::Overflow);
            }
            state.items.push_back(Outbound::Text(frame));
        }
        self.wake.notify_one();
        Ok(())
    }

    /// Queues a close after the frames already queued; later pushes fail. Returns false if the
    /// socket was already closing.
    pub(crate) fn push_close(&self, code: CloseCode, reason: String) -> bool {
        {
            let mut state = self.state.lock();
            if state.closed {
                return false;
            }
            state.closed = true;
            state.items.push_back(Outbound::Close(code, reason));
        }
        self.wake.notify_one();
        true
    }

    /// The connection ended: stop accepting frames and let the writer finish.
    pub(crate) fn finish(&self) {
        {
            let mut state = self.state.lock();
            state.closed = true;
            state.finished = true;
        }
        self.wake.notify_one();
    }

    /// Number of frames waiting.
    pub(crate) fn len(&self) -> usize {
        self.state.lock().items.len()
    }

    /// Waits for work and swaps the backlog into `batch`.
    async fn take(&self, batch: &mut VecDeque<Outbound>) -> Take {
        loop {
            let notified = self.wake.notified();
            {
                let mut state = self.state.lock();
                if state.overflowed {
                    return Take::Overflow;
                }
                if !state.items.is_empty() {
                    mem::swap(&mut state.items, batch);
                    return Take::Items;
                }
                if state.finished {
                    return Take::Finished;
                }
            }
            notified.await;
        }
    }
}

enum Take {
    Items,
    Overflow,
    Finished,
}

/// Drains `queue` into `sink` until a close is written, the queue overflows or the connection
/// ends. Returns the close code it sent, if any.
pub(crate) async fn run_writer<S>(mut sink: S, queue: &OutboundQueue) -> Option<CloseCode>
where
    S: Sink<Message, Error = tokio_websockets::Error> + Unpin,
{
    let mut batch = VecDeque::new();
    loop {
        match queue.take(&mut batch).await {
            Take::Items => {
                let written = tokio::select! {
                    written = write_batch(&mut sink, &mut batch) => written,
                    // The client stopped reading and its queue overflowed while we were blocked
                    // on it: give up on it without a close frame (it would not be read either).
                    () = queue.abort.notified() => {
                        tracing::warn!("dropping a slow consumer: its outbound queue reached {} frames", queue.limit);
                        return Some(CloseCode::SLOW_CONSUMER);
                    }
                };
                match written {
                    Written::All => {}
                    Written::Closed(code) => return Some(code),
                    Written::Failed => return None,
                }
            }
            Take::Overflow => {
                tracing::warn!(
                    "closing a slow consumer: its outbound queue reached {} frames",
                    queue.limit
                );
                let close = send_close(&mut sink, CloseCode::SLOW_CONSUMER, "");
                let _ = tokio::time::timeout(std::time::Duration::from_secs(1), close).await;
                return Some(CloseCode::SLOW_CONSUMER);
            }
            Take::Finished => {
                let _ = sink.flush().await;
                return None;
            }
        }
    }
}

enum Written {
    All,
    Closed(CloseCode),
    Failed,
}

/// Writes a batch with one flush at the end (or up to a close, which ends the connection).
async fn write_batch<S>(sink: &mut S, batch: &mut VecDeque<Outbound>) -> Written
where
    S: Sink<Message, Error = tokio_websockets::Error> + Unpin,
{
    while let Some(item) = batch.pop_front() {
        let result = match item {
            Outbound::Text(frame) => sink.feed(Message::text(Payload::from(frame))).await,
            Outbound::Close(code, reason) => {
                let _ = send_close(sink, code, &reason).await;
                return Written::Closed(code);
            }
        };
        if result.is_err() {
            return Written::Failed;
        }
    }
    if sink.flush().await.is_err() {
        Written::Failed
    } else {
        Written::All
    }
}

async fn send_close<S>(
    sink: &mut S,
    code: CloseCode,
    reason: &str,
) -> Result<(), tokio_websockets::Error>
where
    S: Sink<Message, Error = tokio_websockets::Error> + Unpin,
{
    let code = tokio_websockets::CloseCode::try_from(code.0)
        .unwrap_or(tokio_websockets::CloseCode::NORMAL_CLOSURE);
    // A close reason is at most 123 bytes.
    let reason = truncate_utf8(reason, 123);
    sink.send(Message::close(Some(code), reason)).await
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
mod tests {
    use super::*;

    #[test]
    fn overflow_closes_and_drops_backlog() {
        let q = OutboundQueue::new(2);
        q.push(Bytes::from_static(b"a")).unwrap();
        q.push(Bytes::from_static(b"b")).unwrap();
        assert_eq!(q.push(Bytes::from_static(b"c")), Err(PushError::Overflow));
        assert_eq!(q.push(Bytes::from_static(b"d")), Err(PushError::Closed));
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn close_is_queued_after_frames_and_blocks_later_pushes() {
        let q = OutboundQueue::new(8);
        q.push(Bytes::from_static(b"a")).unwrap();
        assert!(q.push_close(CloseCode(4321), "bye".into()));
        assert!(!q.push_close(CloseCode(4322), "again".into()));
        assert_eq!(q.push(Bytes::from_static(b"b")), Err(PushError::Closed));
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn truncates_reason_on_char_boundary() {
        let long = "é".repeat(100);
        assert!(truncate_utf8(&long, 123).len() <= 123);
    }
}
