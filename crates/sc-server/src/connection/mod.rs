//! One connection's life: read frames, write what is queued, keep the heartbeat, enforce the
//! handshake rules, dispatch.
//!
//! Each connection is one task. It owns all protocol state and processes the client's packets
//! strictly in order (a `#publish` the broker can take in order at once, as the cluster's broker
//! link does, is only started in order: the broker answers it later through a callback, see
//! `dispatch::start_publish`); between frames it drains the socket's outbound queue ([`outbound`])
//! into the WebSocket with one flush, and one timer ([`timers`]) serves all its deadlines. A
//! handler that waits runs in a task of its own; the few protocol steps that wait (handshake,
//! middleware, broker calls) are boxed futures driven by this task while it keeps writing.
//!
//! The files of this folder import one way: this run loop → [`dispatch`] (events after the
//! handshake; [`subscribe`] for `#subscribe`) → [`handshake`] (`#handshake` and
//! `#authenticate`). [`heartbeat`] (dialect detection), [`timers`] and [`outbound`] depend on
//! none of them.

pub(crate) mod dispatch;
mod handshake;
mod heartbeat;
pub(crate) mod outbound;
mod subscribe;
mod timers;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use sc_protocol::frame::PublishPacket;
use sc_protocol::{CloseCode, Codec, Frame, HeartbeatDialect, Packet, min_bin};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, sleep_until};

use crate::middleware::RawAction;
use crate::socket::{Socket, SocketState};
use crate::ws::{self, Inbound, WebSocket};
use dispatch::{Deferred, Flow, Step};
use heartbeat::Detector;
use outbound::{OutboundQueue, Writer, WriterEnd};
use timers::{Expired, Timers};

/// How long the frames still queued when the connection ends may take to be written.
const FINAL_FLUSH: Duration = Duration::from_secs(1);

/// Packets (and frames) one connection handles in a row before it lets every other task run.
///
/// A batch frame may hold thousands of packets whose handlers finish at once (a publish to the
/// in-process broker is delivered before the handler returns). Handled in one go, they would
/// fill the queues of every subscriber on this thread before any subscriber's writer ran; with a
/// turn every 64 packets, readers that keep up drain their queues in between.
const PACKETS_PER_TURN: u32 = 64;

/// Inbound frames a connection handles in a row, while more are already buffered, before its
/// writer flushes what they queued.
const FRAMES_PER_FLUSH: u32 = 16;

/// What woke the connection task.
enum Wake {
    /// A message from the client, an error, or the end of the stream.
    Inbound(Option<Result<Inbound, ws::Error>>),
    /// The writer is done for good.
    Written(WriterEnd),
    /// The timer fired.
    Timer,
}

/// Runs a connection from WebSocket open to close, in one task: reading, writing and timers.
///
/// A panic anywhere in the connection's own work (a bug, or user code run inline such as a
/// connection handler) is caught here: the socket is still unregistered and unsubscribed, and
/// the client gets a 1011 close frame, so `/health` and a graceful drain stay right.
pub(crate) async fn run<S>(mut ws: WebSocket<S>, socket: Socket)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let queue = &socket.0.queue;
    let registered = Unregister(&socket);
    let mut writer = Writer::new(
        socket.server().metrics().clone(),
        socket.server().hub().drained_signal(),
    );
    let mut writer_done = false;
    let mut close: Option<(CloseCode, String)> = None;
    let served = AssertUnwindSafe(serve(
        &mut ws,
        &socket,
        &mut writer,
        &mut writer_done,
        &mut close,
    ))
    .catch_unwind()
    .await;
    if served.is_err() {
        tracing::error!(socket = %socket.id(), "connection task panicked; closing it with 1011");
        close = Some((CloseCode::INTERNAL_ERROR, String::new()));
        socket.close_with(CloseCode::INTERNAL_ERROR, "Internal server error", false);
    }

    let (code, reason) = close.unwrap_or((CloseCode(1006), String::new()));
    socket.server().metrics().disconnect(code.0);
    if std::panic::catch_unwind(AssertUnwindSafe(|| socket.mark_closed(code, &reason))).is_err() {
        tracing::error!(socket = %socket.id(), "a disconnect listener panicked");
    }
    socket.unsubscribe_all().await;
    // Publishers waiting for this socket's queue need not wait for it any more.
    socket.server().hub().notify_drained();
    drop(registered);
    if !writer_done {
        // Write what is still queued (the queue is finished now), for at most a second.
        let flush = std::future::poll_fn(|cx| writer.poll(&mut ws, queue, cx));
        let _ = tokio::time::timeout(FINAL_FLUSH, flush).await;
    }
    tracing::debug!(socket = %socket.id(), code = code.0, "socket closed");
}

/// Removes the socket from the server's table when the connection ends, however it ends.
struct Unregister<'a>(&'a Socket);

impl Drop for Unregister<'_> {
    fn drop(&mut self) {
        self.0.server().unregister(self.0);
    }
}

/// The connection's loop: reads, writes and timers until the connection ends; leaves the close
/// code in `close`.
async fn serve<S>(
    ws: &mut WebSocket<S>,
    socket: &Socket,
    writer: &mut Writer,
    writer_done: &mut bool,
    close: &mut Option<(CloseCode, String)>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let options = socket.server().options().clone();
    let queue = &socket.0.queue;
    let mut connection = Connection {
        detector: Detector::new(socket.dialect()),
        socket: socket.clone(),
        last_activity: Instant::now(),
        work: 0,
    };
    let mut timers = Timers::new(&options, connection.last_activity);
    let timer = sleep_until(connection.next_deadline(&timers, false));
    tokio::pin!(timer);
    // Inbound frames handled since the writer last had its turn.
    let mut unflushed: u32 = 0;

    loop {
        if connection.work >= PACKETS_PER_TURN {
            // A busy client: let other connections have their turn before reading on.
            connection.work = 0;
            tokio::task::yield_now().await;
        }
        let wake = std::future::poll_fn(|cx| {
            // Read on while the client's frames are already here, and write when they run out
            // (or after `FRAMES_PER_FLUSH` of them): what handling them queued (answers,
            // deliveries) then goes out in one flush instead of one write per inbound frame.
            let write_first = unflushed >= FRAMES_PER_FLUSH;
            if write_first && !*writer_done {
                unflushed = 0;
                if let Poll::Ready(end) = writer.poll(ws, queue, cx) {
                    return Poll::Ready(Wake::Written(end));
                }
            }
            if let Poll::Ready(message) = ws.poll_next(cx) {
                return Poll::Ready(Wake::Inbound(message));
            }
            if !write_first && !*writer_done {
                unflushed = 0;
                if let Poll::Ready(end) = writer.poll(ws, queue, cx) {
                    return Poll::Ready(Wake::Written(end));
                }
            }
            timer.as_mut().poll(cx).map(|()| Wake::Timer)
        })
        .await;
        // Running: frames queued from now on are written before the task waits again.
        queue.unregister();
        let mut fired = false;
        match wake {
            Wake::Inbound(Some(Ok(Inbound::Close(code, reason)))) => {
                close.get_or_insert((CloseCode(code), reason));
                break;
            }
            Wake::Inbound(Some(Ok(message @ (Inbound::Text(_) | Inbound::Binary(_))))) => {
                connection.last_activity = Instant::now();
                connection.work += 1;
                unflushed += 1;
                socket.server().metrics().frame_in();
                let (payload, binary) = match message {
                    Inbound::Binary(payload) => (payload, true),
                    Inbound::Text(payload) => (payload, false),
                    Inbound::Close(..) => continue,
                };
                let flow = match connection.on_frame(payload, binary) {
                    Handled::Done(flow) => flow,
                    Handled::Later(future) => {
                        let active = (!*writer_done).then_some(&mut *writer);
                        let (flow, end) = keep_writing(future, active, ws, queue).await;
                        if let Some(end) = end {
                            *writer_done = true;
                            on_writer_end(end, close, &mut timers);
                        }
                        flow
                    }
                };
                if let Flow::Close(code) = flow {
                    close.get_or_insert((code, String::new()));
                    socket.close_with(code, "", false);
                }
            }
            Wake::Inbound(Some(Err(error))) => {
                let code = close_code_for(&error);
                tracing::debug!(socket = %socket.id(), %error, "connection error");
                close.get_or_insert((code, error.to_string()));
                break;
            }
            Wake::Inbound(None) => break,
            Wake::Written(end) => {
                *writer_done = true;
                on_writer_end(end, close, &mut timers);
            }
            Wake::Timer => {
                fired = true;
                match timers.fire(
                    &mut connection.detector,
                    socket,
                    connection.last_activity,
                    *writer_done,
                ) {
                    Some(Expired::Pong) => {
                        close.get_or_insert((CloseCode::PONG_TIMEOUT, String::new()));
                        socket.close_with(CloseCode::PONG_TIMEOUT, "", false);
                    }
                    Some(Expired::Handshake) => {
                        close.get_or_insert((CloseCode::HANDSHAKE_TIMEOUT, String::new()));
                        socket.close_with(CloseCode::HANDSHAKE_TIMEOUT, "", true);
                    }
                    Some(Expired::CloseGrace) => break,
                    None => {}
                }
            }
        }
        let next = connection.next_deadline(&timers, *writer_done);
        if fired || next < timer.deadline() {
            timer.as_mut().reset(next);
        }
    }
}

/// The writer ended: its close code (if it wrote one) is the connection's, and the client gets
/// a grace period to answer with its own close frame.
fn on_writer_end(end: WriterEnd, close: &mut Option<(CloseCode, String)>, timers: &mut Timers) {
    if let WriterEnd::Closed(code) = end {
        close.get_or_insert((code, String::new()));
    }
    timers.start_close_grace();
}

/// Runs a frame's deferred handling to completion while still writing what gets queued for this
/// socket meanwhile (channel deliveries, answers of handlers running in their own tasks, ...).
async fn keep_writing<S>(
    mut future: BoxFuture<'_, Flow>,
    writer: Option<&mut Writer>,
    ws: &mut WebSocket<S>,
    queue: &OutboundQueue,
) -> (Flow, Option<WriterEnd>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut writer = writer;
    let mut end = None;
    let flow = std::future::poll_fn(|cx| {
        // What the future queues needs no wake-up (the writer runs right after it); a wake-up
        // of this running task would also cost it its turn: it would be rescheduled behind
        // every other task instead of right after what woke it.
        queue.unregister();
        if let Poll::Ready(flow) = future.as_mut().poll(cx) {
            return Poll::Ready(flow);
        }
        if let Some(active) = writer.as_deref_mut()
            && let Poll::Ready(done) = active.poll(ws, queue, cx)
        {
            end = Some(done);
            writer = None;
        }
        Poll::Pending
    })
    .await;
    queue.unregister();
    (flow, end)
}

fn close_code_for(error: &ws::Error) -> CloseCode {
    match error {
        ws::Error::PayloadTooLong { .. } => CloseCode::MESSAGE_TOO_BIG,
        ws::Error::Protocol(_) => CloseCode::PROTOCOL_ERROR,
        _ => CloseCode(1006),
    }
}

/// The result of handling a frame: done at once, or a rest that waits.
enum Handled<'a> {
    Done(Flow),
    Later(BoxFuture<'a, Flow>),
}

/// Protocol state of one connection, owned by its task.
struct Connection {
    socket: Socket,
    detector: Detector,
    last_activity: Instant,
    /// Packets and frames handled since this task last gave others a turn.
    work: u32,
}

impl Connection {
    /// Handles one frame. Most frames are handled at once; only what waits (handshake,
    /// middleware, broker calls) becomes a future, boxed so that it costs an idle connection
    /// nothing.
    fn on_frame(&mut self, payload: Bytes, binary: bool) -> Handled<'_> {
        if self.socket.codec().is_none() {
            // Codec `auto`: the first frame (the handshake) tells. MessagePack packets start
            // with a map or array marker; a binary frame of JSON text starts with `{` or `[`.
            let min_bin = binary && matches!(payload.first(), Some(0x80..=0x9f | 0xdc..=0xdf));
            self.socket
                .set_codec(if min_bin { Codec::MinBin } else { Codec::Json });
        }
        if self.socket.server().middleware().has_inbound_raw()
            || self.socket.state() == SocketState::Connecting
        {
            return Handled::Later(Box::pin(self.on_frame_later(payload, binary)));
        }
        if !(binary && self.socket.codec() == Some(Codec::MinBin))
            && let Some(publish) = PublishPacket::decode(&payload)
        {
            // The most common frame of a busy server, read in one pass.
            self.work += 1;
            return Handled::Later(Box::pin(dispatch::on_publish_read(&self.socket, publish)));
        }
        let frame = match self.decode(payload, binary) {
            Ok(frame) => frame,
            Err(flow) => return Handled::Done(flow),
        };
        match frame {
            Frame::Packets(packets) => {
                let mut packets = packets.into_iter();
                while let Some(packet) = packets.next() {
                    match self.on_packet_now(packet) {
                        Step::Done(Flow::Continue) => {}
                        Step::Done(flow) => return Handled::Done(flow),
                        Step::Deferred(deferred) => {
                            return Handled::Later(Box::pin(
                                self.on_packets_later(Some(deferred), packets),
                            ));
                        }
                    }
                    if self.work >= PACKETS_PER_TURN && !packets.as_slice().is_empty() {
                        // The rest of a big batch: after a turn for everyone else.
                        return Handled::Later(Box::pin(self.on_packets_later(None, packets)));
                    }
                }
                Handled::Done(Flow::Continue)
            }
            frame => Handled::Done(self.on_heartbeat_or_raw(frame)),
        }
    }

    /// Decodes a frame with the socket's codec. Binary frames of a min-bin socket are
    /// MessagePack; everything else is read as JSON text (sc-formatter). A frame that is not
    /// MessagePack closes the connection: 4009 before the handshake (as any undecodable frame),
    /// 1007 after it.
    fn decode(&self, payload: Bytes, binary: bool) -> Result<Frame, Flow> {
        if !(binary && self.socket.codec() == Some(Codec::MinBin)) {
            return Ok(Frame::decode_bytes(payload));
        }
        min_bin::decode_frame(&payload).map_err(|error| {
            let code = if self.socket.state() == SocketState::Connecting
                && self.socket.server().options().strict_handshake
            {
                CloseCode::MESSAGE_BEFORE_HANDSHAKE
            } else {
                CloseCode::INVALID_PAYLOAD
            };
            tracing::info!(socket = %self.socket.id(), %error, code = code.0, len = payload.len(), "closing: undecodable min-bin frame");
            Flow::Close(code)
        })
    }

    /// The complete handling of a frame, for frames that (may) have to wait.
    async fn on_frame_later(&mut self, payload: Bytes, binary: bool) -> Flow {
        let middleware = self.socket.server().middleware();
        let payload = if middleware.has_inbound_raw() {
            let action = RawAction {
                socket: self.socket.clone(),
                message: payload,
            };
            let timeout = self
                .socket
                .server()
                .options()
                .durations()
                .middleware_timeout;
            match middleware.run_inbound_raw(action, timeout).await {
                Ok(action) => action.message,
                Err(_) => return Flow::Continue,
            }
        } else {
            payload
        };
        let frame = match self.decode(payload, binary) {
            Ok(frame) => frame,
            Err(flow) => return flow,
        };
        if self.socket.state() == SocketState::Connecting {
            return self.on_frame_before_handshake(frame).await;
        }
        match frame {
            Frame::Packets(packets) => self.on_packets_later(None, packets.into_iter()).await,
            frame => self.on_heartbeat_or_raw(frame),
        }
    }

    /// A packet whose handling was deferred (if any), then the rest of its batch.
    async fn on_packets_later(
        &mut self,
        deferred: Option<Deferred>,
        rest: std::vec::IntoIter<Packet>,
    ) -> Flow {
        if let Some(deferred) = deferred
            && let Flow::Close(code) = dispatch::on_deferred(&self.socket, deferred).await
        {
            return Flow::Close(code);
        }
        for packet in rest {
            if let Flow::Close(code) = self.on_packet(packet).await {
                return Flow::Close(code);
            }
        }
        Flow::Continue
    }

    /// Gives every other task a turn when this connection has handled [`PACKETS_PER_TURN`]
    /// packets in a row.
    async fn take_turns(&mut self) {
        if self.work >= PACKETS_PER_TURN {
            self.work = 0;
            tokio::task::yield_now().await;
        }
    }

    /// Pongs, the v1 ping and raw messages.
    fn on_heartbeat_or_raw(&mut self, frame: Frame) -> Flow {
        match frame {
            Frame::PongV1 => self.on_pong(HeartbeatDialect::V1, "#2"),
            Frame::Empty => self.on_pong(HeartbeatDialect::V2, ""),
            Frame::PingV1 => dispatch::on_raw(&self.socket, Bytes::from_static(b"#1")),
            Frame::Raw(bytes) => dispatch::on_raw(&self.socket, bytes),
            Frame::Packets(_) => Flow::Continue,
        }
    }

    async fn on_frame_before_handshake(&mut self, frame: Frame) -> Flow {
        let strict = self.socket.server().options().strict_handshake;
        let Frame::Packets(packets) = frame else {
            return if strict {
                Flow::Close(CloseCode::MESSAGE_BEFORE_HANDSHAKE)
            } else {
                Flow::Continue
            };
        };
        let mut packets = packets.into_iter();
        match packets.next() {
            Some(Packet::Event(event)) if event.event == "#handshake" => {
                if let Err(code) =
                    handshake::on_handshake(&self.socket, self.dialect(), event).await
                {
                    return Flow::Close(code);
                }
            }
            _ if strict => return Flow::Close(CloseCode::MESSAGE_BEFORE_HANDSHAKE),
            _ => return Flow::Continue,
        }
        self.on_packets_later(None, packets).await
    }

    fn on_pong(&mut self, dialect: HeartbeatDialect, text: &'static str) -> Flow {
        if self.detector.on_pong(dialect) {
            self.socket.set_dialect(dialect);
            self.socket.check_expiry();
            Flow::Continue
        } else {
            dispatch::on_raw(&self.socket, Bytes::from_static(text.as_bytes()))
        }
    }

    /// Handles a packet as far as possible without waiting.
    fn on_packet_now(&mut self, packet: Packet) -> Step {
        self.work += 1;
        let step = dispatch::on_packet(&self.socket, self.dialect(), packet);
        if let Step::Done(Flow::Close(_)) = step {
            // A v1 `#disconnect` settles the dialect of a connection still detecting it.
            self.sync_dialect();
        }
        step
    }

    async fn on_packet(&mut self, packet: Packet) -> Flow {
        self.take_turns().await;
        match self.on_packet_now(packet) {
            Step::Done(flow) => flow,
            Step::Deferred(deferred) => dispatch::on_deferred(&self.socket, deferred).await,
        }
    }

    /// The earliest deadline of `timers` that matters now.
    fn next_deadline(&self, timers: &Timers, writer_done: bool) -> Instant {
        let connecting = self.socket.state() == SocketState::Connecting;
        timers.next(self.last_activity, connecting, writer_done)
    }

    /// The heartbeat dialect, once known.
    fn dialect(&self) -> Option<HeartbeatDialect> {
        self.detector.known()
    }

    /// Takes the dialect the socket settled on (by dispatch) while still detecting it.
    fn sync_dialect(&mut self) {
        if self.detector.known().is_none()
            && let Some(dialect) = self.socket.dialect()
        {
            self.detector = Detector::Known(dialect);
        }
    }
}
