//! The per-socket outbound queue and the writer that drains it into the WebSocket.
//!
//! Every frame for a socket (responses, events, channel deliveries) goes through one bounded
//! queue. Producers never wait: a full queue marks the socket as a slow consumer and the writer
//! closes it with [`CloseCode::SLOW_CONSUMER`]. The writer takes everything queued at once and
//! writes it with a single flush.
//!
//! The writer is not a task of its own: it is a small state machine ([`Writer`]) that the
//! connection's task polls next to reading (see [`crate::connection`]). Producers wake that task
//! through the queue's waker; the task unregisters it while it runs, so a response queued while
//! handling a request costs no wake-up at all.

use std::collections::VecDeque;
use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use parking_lot::Mutex;
use sc_protocol::CloseCode;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Sleep;

use crate::ws::{self, WebSocket};

/// One item for the writer.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// A text frame.
    Text(Bytes),
    /// A binary frame (the min-bin codec).
    Binary(Bytes),
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
    /// The queue reached half its limit: publishers of this socket's channels wait for the
    /// writer to take the backlog (see [`crate::hub`], "Pacing").
    congested: bool,
    /// A publisher waited in vain for this queue to make progress: it is not waited for again
    /// until the writer takes a backlog (a client that stopped reading is closed at the limit).
    stalled: bool,
}

/// A bounded, lock-protected frame queue with a wake-up for the connection task that drains it.
///
/// A `VecDeque` behind a mutex rather than a channel: it allocates nothing until used, and the
/// writer can take the whole backlog in one swap.
pub(crate) struct OutboundQueue {
    state: Mutex<State>,
    /// The connection task, while it waits (for frames to write, or for anything else).
    waker: AtomicWaker,
    limit: usize,
}

/// What [`OutboundQueue::poll_take`] found.
enum Take {
    /// Frames were swapped into the batch; `relieved`: the queue was congested (publishers may
    /// be waiting for it).
    Items { relieved: bool },
    /// The queue overflowed.
    Overflow,
    /// The connection ended and nothing is left.
    Finished,
}

impl OutboundQueue {
    pub(crate) fn new(limit: usize) -> OutboundQueue {
        OutboundQueue {
            state: Mutex::new(State::default()),
            waker: AtomicWaker::new(),
            limit,
        }
    }

    /// Queues a text frame.
    #[cfg(test)]
    pub(crate) fn push(&self, frame: Bytes) -> Result<bool, PushError> {
        self.push_item(Outbound::Text(frame))
    }

    /// Queues a text or binary frame. `Ok(true)`: the queue is congested (it holds half its limit
    /// or more and is not stalled), so a publisher should wait for it ([`Self::is_congested`]).
    pub(crate) fn push_item(&self, item: Outbound) -> Result<bool, PushError> {
        let congested;
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
                self.waker.wake();
                return Err(PushError::Overflow);
            }
            state.items.push_back(item);
            if !state.congested && !state.stalled && state.items.len() >= self.high_water() {
                state.congested = true;
            }
            congested = state.congested;
        }
        self.waker.wake();
        Ok(congested)
    }

    /// Half the limit: from here on publishers wait for the writer (at least 1).
    fn high_water(&self) -> usize {
        (self.limit / 2).max(1)
    }

    /// Whether publishers should wait for this queue: it reached half its limit, the writer has
    /// not taken the backlog since, the socket is open and was not found stalled.
    pub(crate) fn is_congested(&self) -> bool {
        let state = self.state.lock();
        state.congested && !state.closed
    }

    /// A publisher waited [`crate::hub::PACE_STALL`] for this queue without progress: stop
    /// waiting for it until the writer takes a backlog again.
    pub(crate) fn mark_stalled(&self) {
        let mut state = self.state.lock();
        state.congested = false;
        state.stalled = true;
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
        self.waker.wake();
        true
    }

    /// The connection ended: stop accepting frames and let the writer finish.
    pub(crate) fn finish(&self) {
        {
            let mut state = self.state.lock();
            state.closed = true;
            state.finished = true;
        }
        self.waker.wake();
    }

    /// Number of frames waiting.
    pub(crate) fn len(&self) -> usize {
        self.state.lock().items.len()
    }

    /// The connection task is running: producers need not wake it (it drains the queue before it
    /// waits again, and registers its waker anew then).
    pub(crate) fn unregister(&self) {
        drop(self.waker.take());
    }

    fn overflowed(&self) -> bool {
        self.state.lock().overflowed
    }

    /// Swaps the backlog into `batch` (which must be empty), or registers the waker.
    fn poll_take(&self, cx: &mut Context<'_>, batch: &mut VecDeque<Outbound>) -> Poll<Take> {
        // Register first, then look: a push in between wakes us rather than being missed.
        self.waker.register(cx.waker());
        let mut state = self.state.lock();
        if state.overflowed {
            return Poll::Ready(Take::Overflow);
        }
        if !state.items.is_empty() {
            mem::swap(&mut state.items, batch);
            let relieved = mem::take(&mut state.congested);
            state.stalled = false;
            return Poll::Ready(Take::Items { relieved });
        }
        if state.finished {
            return Poll::Ready(Take::Finished);
        }
        Poll::Pending
    }
}

/// How the writer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriterEnd {
    /// It wrote a close frame with this code (queued by the server, or 4100 for a slow consumer
    /// whose queue overflowed; a write blocked on such a client is abandoned without one).
    Closed(CloseCode),
    /// The connection ended ([`OutboundQueue::finish`]) and everything queued was flushed, or
    /// writing failed.
    Done,
}

/// Where the writer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for frames.
    Idle,
    /// Frames were handed to the WebSocket: flushing them.
    Flushing,
    /// A close frame was handed over: flushing it, then ending with this code.
    Closing(CloseCode),
    /// The queue overflowed while idle: flushing the 4100 close frame.
    Overflowing,
    /// The queue was finished: flushing what is left.
    Finishing,
}

/// A batch that grew past this many frames is released once written. So is a batch of one
/// frame: a socket that gets a frame now and then (an idle one gets a ping every pingInterval)
/// then holds no queue memory between them, at the price of one allocation per such frame
/// (docs/BENCHMARKS.md, 100k connections); a busy socket, whose batches hold several frames,
/// keeps its buffer.
const KEEP_BATCH_CAPACITY: usize = 16;

/// How long the 4100 close frame of an overflowed queue may take to be written.
const OVERFLOW_CLOSE_WAIT: Duration = Duration::from_secs(1);

/// The writer half of a connection: takes the backlog, feeds it to the WebSocket, flushes once.
pub(crate) struct Writer {
    batch: VecDeque<Outbound>,
    phase: Phase,
    /// Bounds the wait for the 4100 close frame (allocated only then).
    give_up: Option<Pin<Box<Sleep>>>,
    /// Frames written are counted once per batch.
    metrics: std::sync::Arc<crate::metrics::ServerMetrics>,
    /// Publishers waiting for a congested queue are woken when it is taken
    /// ([`crate::hub::Hub::pace`]).
    drained: std::sync::Arc<tokio::sync::Notify>,
}

impl Writer {
    pub(crate) fn new(
        metrics: std::sync::Arc<crate::metrics::ServerMetrics>,
        drained: std::sync::Arc<tokio::sync::Notify>,
    ) -> Writer {
        Writer {
            batch: VecDeque::new(),
            phase: Phase::Idle,
            give_up: None,
            metrics,
            drained,
        }
    }

    /// Makes as much progress as possible; `Ready` once the writer is done for good. Returns
    /// `Pending` with the task registered where progress will come from: the queue (while idle,
    /// or blocked on a client that does not read) and the socket (while writing).
    pub(crate) fn poll<S>(
        &mut self,
        ws: &mut WebSocket<S>,
        queue: &OutboundQueue,
        cx: &mut Context<'_>,
    ) -> Poll<WriterEnd>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        loop {
            match self.phase {
                Phase::Idle if self.batch.is_empty() => {
                    match queue.poll_take(cx, &mut self.batch) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Take::Items { relieved }) => {
                            if relieved {
                                self.drained.notify_waiters();
                            }
                        }
                        Poll::Ready(Take::Overflow) => {
                            tracing::warn!(
                                "closing a slow consumer: its outbound queue reached {} frames",
                                queue.limit
                            );
                            if ws.send_close(CloseCode::SLOW_CONSUMER.0, "").is_err() {
                                return Poll::Ready(WriterEnd::Closed(CloseCode::SLOW_CONSUMER));
                            }
                            self.phase = Phase::Overflowing;
                            self.give_up = Some(Box::pin(tokio::time::sleep(OVERFLOW_CLOSE_WAIT)));
                        }
                        Poll::Ready(Take::Finished) => self.phase = Phase::Finishing,
                    }
                }
                Phase::Idle => {
                    // Hand the batch over (up to a close, which ends the connection).
                    let frames = self.batch.len();
                    self.metrics.frames_out(frames as u64);
                    while let Some(item) = self.batch.pop_front() {
                        let sent = match item {
                            Outbound::Text(frame) => ws.send_text(frame),
                            Outbound::Binary(frame) => ws.send_binary(frame),
                            Outbound::Close(code, reason) => {
                                self.batch.clear();
                                if ws.send_close(close_code(code), &reason).is_err() {
                                    return Poll::Ready(WriterEnd::Closed(code));
                                }
                                self.phase = Phase::Closing(code);
                                continue;
                            }
                        };
                        if sent.is_err() {
                            // The close handshake started: what is left goes nowhere, but the
                            // close frame already queued must still go out.
                            self.batch.clear();
                            self.phase = Phase::Finishing;
                        }
                    }
                    if frames <= 1 || self.batch.capacity() > KEEP_BATCH_CAPACITY {
                        self.batch = VecDeque::new();
                    }
                    if self.phase == Phase::Idle {
                        self.phase = Phase::Flushing;
                    }
                }
                Phase::Flushing | Phase::Closing(_) | Phase::Overflowing | Phase::Finishing => {
                    match ws.poll_flush(cx) {
                        Poll::Pending => {
                            return match self.phase {
                                Phase::Flushing => self.blocked(queue, cx),
                                Phase::Overflowing => self.poll_give_up(cx),
                                _ => Poll::Pending,
                            };
                        }
                        Poll::Ready(result) => match self.phase {
                            Phase::Flushing if result.is_ok() => self.phase = Phase::Idle,
                            Phase::Closing(code) => return Poll::Ready(WriterEnd::Closed(code)),
                            Phase::Overflowing => {
                                return Poll::Ready(WriterEnd::Closed(CloseCode::SLOW_CONSUMER));
                            }
                            _ => return Poll::Ready(WriterEnd::Done),
                        },
                    }
                }
            }
        }
    }

    /// The 4100 close frame is not written yet: give up after [`OVERFLOW_CLOSE_WAIT`].
    fn poll_give_up(&mut self, cx: &mut Context<'_>) -> Poll<WriterEnd> {
        match &mut self.give_up {
            Some(sleep) => sleep
                .as_mut()
                .poll(cx)
                .map(|()| WriterEnd::Closed(CloseCode::SLOW_CONSUMER)),
            None => Poll::Pending,
        }
    }

    /// The socket does not take more right now. If the client stopped reading and its queue
    /// overflowed meanwhile, give up on it without a close frame (it would not be read either).
    fn blocked(&mut self, queue: &OutboundQueue, cx: &mut Context<'_>) -> Poll<WriterEnd> {
        // The socket's waker is registered by the pending write; the queue's waker must be too,
        // for an overflow to interrupt the wait.
        queue.waker.register(cx.waker());
        if queue.overflowed() {
            tracing::warn!(
                "dropping a slow consumer: its outbound queue reached {} frames",
                queue.limit
            );
            self.batch.clear();
            return Poll::Ready(WriterEnd::Closed(CloseCode::SLOW_CONSUMER));
        }
        Poll::Pending
    }
}

/// The code to put in a close frame (one that may not be sent becomes 1000).
fn close_code(code: CloseCode) -> u16 {
    if ws::is_sendable_close_code(code.0) {
        code.0
    } else {
        CloseCode::NORMAL.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_closes_and_drops_backlog() {
        let q = OutboundQueue::new(2);
        assert_eq!(
            q.push(Bytes::from_static(b"a")),
            Ok(true),
            "half the limit: congested"
        );
        assert_eq!(q.push(Bytes::from_static(b"b")), Ok(true));
        assert_eq!(q.push(Bytes::from_static(b"c")), Err(PushError::Overflow));
        assert_eq!(q.push(Bytes::from_static(b"d")), Err(PushError::Closed));
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn close_is_queued_after_frames_and_blocks_later_pushes() {
        let q = OutboundQueue::new(8);
        assert_eq!(q.push(Bytes::from_static(b"a")), Ok(false));
        assert!(q.push_close(CloseCode(4321), "bye".into()));
        assert!(!q.push_close(CloseCode(4322), "again".into()));
        assert_eq!(q.push(Bytes::from_static(b"b")), Err(PushError::Closed));
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn congestion_starts_at_half_the_limit_and_ends_when_the_backlog_is_taken() {
        let q = OutboundQueue::new(4);
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut batch = VecDeque::new();
        assert_eq!(q.push(Bytes::from_static(b"a")), Ok(false));
        assert!(!q.is_congested());
        assert_eq!(q.push(Bytes::from_static(b"b")), Ok(true));
        assert!(q.is_congested());
        assert!(matches!(
            q.poll_take(&mut cx, &mut batch),
            Poll::Ready(Take::Items { relieved: true })
        ));
        assert!(!q.is_congested(), "the writer took the backlog");
        batch.clear();

        // Found stalled: not waited for again until the writer takes a backlog.
        q.push(Bytes::from_static(b"c")).unwrap();
        assert_eq!(q.push(Bytes::from_static(b"d")), Ok(true));
        q.mark_stalled();
        assert!(!q.is_congested());
        assert_eq!(q.push(Bytes::from_static(b"e")), Ok(false));
        assert!(matches!(
            q.poll_take(&mut cx, &mut batch),
            Poll::Ready(Take::Items { relieved: false })
        ));
        batch.clear();
        q.push(Bytes::from_static(b"f")).unwrap();
        assert_eq!(
            q.push(Bytes::from_static(b"g")),
            Ok(true),
            "waited for again"
        );

        // A closed socket is never waited for.
        q.push_close(CloseCode(1000), String::new());
        assert!(!q.is_congested());
    }
}
