//! One connection's life: read frames, keep the heartbeat, enforce the handshake rules, dispatch.
//!
//! Each connection runs two tasks: this reader (which owns all protocol state and processes the
//! client's packets strictly in order) and the writer of [`crate::outbound`].

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use sc_protocol::frame::HandshakeData;
use std::sync::Arc;

use sc_protocol::{CloseCode, EventPacket, Frame, HeartbeatDialect, Json, Packet, ScError, encode};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, MissedTickBehavior, sleep, sleep_until};
use tokio_websockets::WebSocketStream;

use crate::dispatch;
use crate::heartbeat::{Detector, TickAction, probe_window};
use crate::middleware::{Block, HandshakeScAction, RawAction, block_error};
use crate::outbound::run_writer;
use crate::socket::{Socket, SocketState};

/// How long to wait for the client's close frame after ours.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Whether to keep reading after a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    /// Close the connection with this code (protocol-level close: empty reason).
    Close(CloseCode),
}

/// Runs a connection from WebSocket open to close.
pub(crate) async fn run<S>(ws: WebSocketStream<S>, socket: Socket)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sink, mut stream) = ws.split();
    let writer_socket = socket.clone();
    let mut writer = tokio::spawn(async move { run_writer(sink, &writer_socket.0.queue).await });
    let options = socket.0.server.options.clone();
    let mut connection = Connection {
        detector: Detector::new(socket.dialect()),
        socket: socket.clone(),
        last_activity: Instant::now(),
    };

    let start = Instant::now();
    let pings_enabled = !options.ping_timeout_disabled;
    let mut ping =
        tokio::time::interval_at(start + options.ping_interval(), options.ping_interval());
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let far_future = start + Duration::from_secs(86_400 * 365);
    let probe = sleep_until(far_future);
    let pong_check = sleep(options.ping_timeout());
    let handshake_deadline = sleep(options.handshake_timeout());
    let close_grace = sleep_until(far_future);
    tokio::pin!(probe, pong_check, handshake_deadline, close_grace);
    let mut writer_done = false;
    let mut close: Option<(CloseCode, String)> = None;

    loop {
        tokio::select! {
            message = stream.next() => match message {
                Some(Ok(message)) => {
                    if let Some((code, reason)) = message.as_close() {
                        close.get_or_insert((CloseCode(code.into()), reason.to_owned()));
                        break;
                    }
                    if !(message.is_text() || message.is_binary()) {
                        continue; // WebSocket control pings are answered by the WebSocket layer.
                    }
                    connection.last_activity = Instant::now();
                    let payload: Bytes = message.into_payload().into();
                    if let Flow::Close(code) = connection.on_frame(payload).await {
                        close.get_or_insert((code, String::new()));
                        socket.close_with(code, "", false);
                    }
                }
                Some(Err(error)) => {
                    let code = close_code_for(&error);
                    tracing::debug!(socket = %socket.id(), %error, "connection error");
                    close.get_or_insert((code, error.to_string()));
                    break;
                }
                None => break,
            },
            _ = ping.tick(), if pings_enabled => match connection.detector.on_tick() {
                TickAction::Ping(dialect) => { let _ = socket.send_frame(ping_frame(dialect)); }
                TickAction::Probe => {
                    let _ = socket.send_frame(ping_frame(HeartbeatDialect::V1));
                    probe.as_mut().reset(Instant::now() + probe_window(options.ping_interval()));
                }
                TickAction::Wait => {}
            },
            () = &mut probe => {
                probe.as_mut().reset(far_future);
                if let Some(dialect) = connection.detector.on_probe_expired() {
                    socket.set_dialect(dialect);
                    let _ = socket.send_frame(ping_frame(dialect));
                }
            }
            () = &mut pong_check, if pings_enabled && !writer_done => {
                let deadline = connection.last_activity + options.ping_timeout();
                if deadline <= Instant::now() {
                    close.get_or_insert((CloseCode::PONG_TIMEOUT, String::new()));
                    socket.close_with(CloseCode::PONG_TIMEOUT, "", false);
                    pong_check.as_mut().reset(far_future);
                } else {
                    pong_check.as_mut().reset(deadline);
                }
            }
            () = &mut handshake_deadline, if socket.state() == SocketState::Connecting && !writer_done => {
                close.get_or_insert((CloseCode::HANDSHAKE_TIMEOUT, String::new()));
                socket.close_with(CloseCode::HANDSHAKE_TIMEOUT, "", true);
                handshake_deadline.as_mut().reset(far_future);
            }
            result = &mut writer, if !writer_done => {
                writer_done = true;
                if let Ok(Some(code)) = result {
                    close.get_or_insert((code, String::new()));
                }
                close_grace.as_mut().reset(Instant::now() + CLOSE_GRACE);
            }
            () = &mut close_grace => break,
        }
    }

    let (code, reason) = close.unwrap_or((CloseCode(1006), String::new()));
    for channel in socket.mark_closed(code, &reason) {
        socket
            .0
            .server
            .hub
            .unsubscribe_socket(&socket, &channel)
            .await;
    }
    socket.0.server.unregister(&socket);
    if !writer_done
        && tokio::time::timeout(Duration::from_secs(1), &mut writer)
            .await
            .is_err()
    {
        writer.abort();
    }
    tracing::debug!(socket = %socket.id(), code = code.0, "socket closed");
}

fn ping_frame(dialect: HeartbeatDialect) -> Bytes {
    Bytes::from_static(dialect.ping().as_bytes())
}

fn close_code_for(error: &tokio_websockets::Error) -> CloseCode {
    match error {
        tokio_websockets::Error::PayloadTooLong { .. } => CloseCode::MESSAGE_TOO_BIG,
        tokio_websockets::Error::Protocol(_) => CloseCode::PROTOCOL_ERROR,
        _ => CloseCode(1006),
    }
}

/// Protocol state of one connection, owned by its reader task.
pub(crate) struct Connection {
    pub(crate) socket: Socket,
    detector: Detector,
    last_activity: Instant,
}

impl Connection {
    async fn on_frame(&mut self, payload: Bytes) -> Flow {
        let middleware = &self.socket.0.server.middleware;
        let payload = if middleware.has_inbound_raw() {
            let action = RawAction {
                socket: self.socket.clone(),
                message: payload,
            };
            let timeout = self.socket.0.server.options.middleware_timeout();
            match middleware.run_inbound_raw(action, timeout).await {
                Ok(action) => action.message,
                Err(_) => return Flow::Continue,
            }
        } else {
            payload
        };
        let frame = Frame::decode_bytes(payload);
        if self.socket.state() == SocketState::Connecting {
            return self.on_frame_before_handshake(frame).await;
        }
        match frame {
            Frame::Packets(packets) => {
                for packet in packets {
                    if let Flow::Close(code) = self.on_packet(packet).await {
                        return Flow::Close(code);
                    }
                }
                Flow::Continue
            }
            Frame::PongV1 => self.on_pong(HeartbeatDialect::V1, "#2"),
            Frame::Empty => self.on_pong(HeartbeatDialect::V2, ""),
            Frame::PingV1 => dispatch::on_raw(&self.socket, Bytes::from_static(b"#1")),
            Frame::Raw(bytes) => dispatch::on_raw(&self.socket, bytes),
        }
    }

    async fn on_frame_before_handshake(&mut self, frame: Frame) -> Flow {
        let strict = self.socket.0.server.options.strict_handshake;
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
                if let Flow::Close(code) = self.on_handshake(event).await {
                    return Flow::Close(code);
                }
            }
            _ if strict => return Flow::Close(CloseCode::MESSAGE_BEFORE_HANDSHAKE),
            _ => return Flow::Continue,
        }
        for packet in packets {
            if let Flow::Close(code) = self.on_packet(packet).await {
                return Flow::Close(code);
            }
        }
        Flow::Continue
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

    async fn on_packet(&mut self, packet: Packet) -> Flow {
        match packet {
            Packet::Event(event) => dispatch::on_event(self, event).await,
            Packet::Response(response) => {
                let result = match response.error {
                    Some(error) => Err(ScError::from_json(&error)),
                    None => Ok(response.data),
                };
                self.socket.resolve_invoke(response.rid, result);
                Flow::Continue
            }
            Packet::Raw(bytes) => dispatch::on_raw(&self.socket, bytes),
        }
    }

    /// `#handshake` (PROTOCOL.md §4.2–4.4): verify the token, run handshake middleware, answer.
    async fn on_handshake(&mut self, event: EventPacket) -> Flow {
        let Some(cid) = event.cid else {
            return Flow::Close(CloseCode::HANDSHAKE_REJECTED);
        };
        let server = self.socket.0.server.clone();
        let timeout = server.options.middleware_timeout();
        let v1 = self.dialect() == Some(HeartbeatDialect::V1);
        let handshake = HandshakeData::parse(event.data.as_ref());

        let mut verified = None;
        let mut auth_error = None;
        if let Some(token) = handshake.auth_token {
            match crate::dispatch::verify_and_authenticate(&self.socket, &token).await {
                Ok(token) => verified = Some(token),
                Err((error, bad)) => auth_error = Some((error, bad)),
            }
        }

        let action = HandshakeScAction {
            socket: self.socket.clone(),
            auth_token: verified.clone(),
        };
        if let Err(block) = server.middleware.run_handshake_sc(action, timeout).await {
            return self.reject_handshake(cid, block);
        }

        let bad_token = auth_error.as_ref().is_some_and(|(_, bad)| *bad);
        if bad_token && v1 {
            let _ = self
                .socket
                .send_frame(encode::event("#removeAuthToken", Some("null"), None));
        }
        let mut data = String::with_capacity(128);
        data.push_str("{\"id\":");
        data.push_str(Json::string(self.socket.id()).get());
        data.push_str(",\"pingTimeout\":");
        data.push_str(&server.options.ping_timeout.to_string());
        if let Some((error, _)) = &auth_error {
            data.push_str(",\"authError\":");
            data.push_str(error.to_json().get());
        }
        data.push_str(if verified.is_some() {
            ",\"isAuthenticated\":true}"
        } else {
            ",\"isAuthenticated\":false}"
        });
        let _ = self.socket.send_frame(encode::response(cid, Some(&data)));
        if bad_token && !v1 {
            let _ = self
                .socket
                .send_frame(encode::event("#removeAuthToken", None, None));
        }
        if let Some(token) = verified {
            self.socket.set_auth(Arc::new(token));
        }
        self.socket.set_open();
        server.register(&self.socket);
        server.run_connection_handlers(&self.socket).await;
        Flow::Continue
    }

    /// Handshake middleware said no: error response, then close with its status code.
    fn reject_handshake(&mut self, cid: u64, block: Block) -> Flow {
        let dialect = self.dialect();
        let error = block_error(block, dialect, "handshakeSC", "handshake", "handshakeSC");
        let code = error
            .field("statusCode")
            .and_then(|c| c.parse::<u16>().ok())
            .filter(|c| (4000..5000).contains(c))
            .unwrap_or(CloseCode::HANDSHAKE_REJECTED.0);
        tracing::debug!(socket = %self.socket.id(), code, "handshake rejected by middleware");
        if dialect == Some(HeartbeatDialect::V1) {
            let data = format!("{{\"code\":{code}}}");
            let _ = self.socket.send_frame(encode::error_response(
                cid,
                error.to_json().get(),
                Some(&data),
            ));
            let _ = self
                .socket
                .send_frame(encode::event("#disconnect", Some(&data), None));
        } else {
            let error = if error.field("statusCode").is_some() {
                error
            } else {
                error.with("statusCode", code)
            };
            let _ =
                self.socket
                    .send_frame(encode::error_response(cid, error.to_json().get(), None));
        }
        Flow::Close(CloseCode(code))
    }

    pub(crate) fn dialect(&self) -> Option<HeartbeatDialect> {
        self.detector.known()
    }

    pub(crate) fn settle_dialect(&mut self, dialect: HeartbeatDialect) {
        if self.detector.known().is_none() {
            self.detector = Detector::Known(dialect);
            self.socket.set_dialect(dialect);
        }
    }
}
