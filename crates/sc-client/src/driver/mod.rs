//! The background task that owns the connection and all client state.
//!
//! One task per client runs [`Driver::run`]: a `select!` loop over the WebSocket, the
//! connection attempt in progress, commands from [`Client`](crate::Client) handles, procedure
//! answers, and a single timer (the earliest of connect, ping, reconnect and ack deadlines).
//! Owning everything in one task means no locks around protocol state and a strict order of
//! events, as in the single-threaded reference client.
//!
//! - [`outbound`]: queue, requests in flight, ack timers, call ids.
//! - [`inbound`]: frames and packets from the server; the handshake response.
//! - [`channels`]: the channel table and its state machine.
//! - [`auth`]: token store plumbing and auth state changes.
//! - [`transport`]: opening and closing the WebSocket, error → close code.

mod auth;
mod channels;
mod inbound;
mod outbound;
pub(crate) mod transport;

use std::future::{Future, pending};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::Uri;
use sc_protocol::{CloseCode, Codec, Json, encode, min_bin};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_websockets::{Message, Payload};

use crate::command::{Command, ProcedureResponse};
use crate::error::{BadConnectionKind, ConnectionError, InvokeError};
use crate::events::{AuthState, ClientEvent, ConnectionState};
use crate::reconnect::{ReconnectAttempts, ReconnectDecision, decide};
use crate::shared::Shared;
use channels::Channels;
use outbound::{Awaiting, Expired, Outbound};
use transport::Ws;

/// Procedure answers waiting to be written (handlers block on a full buffer, not the driver).
const PROCEDURE_RESPONSE_BUFFER: usize = 256;

/// Messages from the server handled in a row before the driver yields to other tasks. Handing a
/// message to a channel or receiver only wakes its consumer; without a turn, the consumer cannot
/// drain its buffer while the driver goes through a burst that arrived at once (thousands of
/// frames already read off the socket need no I/O, so nothing else makes the driver yield), and
/// deliveries beyond [`ClientOptions::channel_buffer`](crate::ClientOptions::channel_buffer)
/// would be dropped for a consumer that keeps up. Well below that buffer's default (1024).
const MESSAGES_PER_TURN: u32 = 32;

/// Timers never reach further than this (keeps `Instant` arithmetic far from overflow).
const MAX_TIMER: Duration = Duration::from_secs(365 * 24 * 3600);

/// `now + duration`, clamped to [`MAX_TIMER`].
pub(crate) fn deadline_after(duration: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(duration.min(MAX_TIMER)).unwrap_or(now)
}

type Attempt = Pin<Box<dyn Future<Output = Result<Ws, ConnectionError>> + Send>>;

/// Where the connection is.
enum Phase {
    /// No connection.
    Closed,
    /// Opening the WebSocket; `deadline` is `connectTimeout`.
    Connecting { attempt: Attempt, deadline: Instant },
    /// WebSocket open, `#handshake` sent, waiting for its response.
    Handshaking { ws: Ws },
    /// Handshake done.
    Open { ws: Ws },
}

impl Phase {
    fn state(&self) -> ConnectionState {
        match self {
            Phase::Closed => ConnectionState::Closed,
            Phase::Connecting { .. } | Phase::Handshaking { .. } => ConnectionState::Connecting,
            Phase::Open { .. } => ConnectionState::Open,
        }
    }

    fn ws_mut(&mut self) -> Option<&mut Ws> {
        match self {
            Phase::Handshaking { ws } | Phase::Open { ws } => Some(ws),
            _ => None,
        }
    }

    fn is_open(&self) -> bool {
        matches!(self, Phase::Open { .. })
    }
}

/// What woke the loop.
enum Wake {
    Message(Option<Result<Message, tokio_websockets::Error>>),
    Opened(Result<Ws, ConnectionError>),
    Respond(ProcedureResponse),
    Command(Command),
    Timer,
    Shutdown,
}

/// The client's state and connection, owned by its background task.
pub(crate) struct Driver {
    shared: Arc<Shared>,
    uri: Uri,
    commands: mpsc::Receiver<Command>,
    responses_tx: mpsc::Sender<ProcedureResponse>,
    responses_rx: mpsc::Receiver<ProcedureResponse>,
    phase: Phase,
    /// Generation of the WebSocket; procedure answers are only written to the connection their
    /// request came from.
    epoch: u64,
    out: Outbound,
    channels: Channels,
    backoff: ReconnectAttempts,
    reconnect_at: Option<Instant>,
    /// Retry pending subscriptions refused with `BrokerError` (EXTENSIONS.md E6) at this time.
    resubscribe_at: Option<Instant>,
    /// Close with 4000 if no ping arrives before this.
    ping_deadline: Option<Instant>,
    /// `connectTimeout` until the handshake response, then the server's `pingTimeout`.
    ping_timeout: Duration,
    auth_state: AuthState,
    signed_token: Option<String>,
    /// The token sent in the current handshake.
    handshake_token: Option<String>,
    /// Set while the handshake response is processed, so that becoming authenticated does not
    /// subscribe pending channels twice.
    preparing_subscriptions: bool,
    /// No reconnects once the client is going away.
    shutting_down: bool,
}

impl Driver {
    pub(crate) fn new(shared: Arc<Shared>, uri: Uri, commands: mpsc::Receiver<Command>) -> Driver {
        let (responses_tx, responses_rx) = mpsc::channel(PROCEDURE_RESPONSE_BUFFER);
        let ping_timeout = shared.options.connect_timeout;
        Driver {
            shared,
            uri,
            commands,
            responses_tx,
            responses_rx,
            phase: Phase::Closed,
            epoch: 0,
            out: Outbound::new(),
            channels: Channels::default(),
            backoff: ReconnectAttempts::new(),
            reconnect_at: None,
            resubscribe_at: None,
            ping_deadline: None,
            ping_timeout,
            auth_state: AuthState::Unauthenticated,
            signed_token: None,
            handshake_token: None,
            preparing_subscriptions: false,
            shutting_down: false,
        }
    }

    /// Runs until every [`Client`](crate::Client) handle is gone.
    pub(crate) async fn run(mut self) {
        if self.shared.options.auto_connect {
            self.start_connecting();
        }
        let mut messages: u32 = 0;
        loop {
            if messages >= MESSAGES_PER_TURN {
                // Let the consumers just woken drain their buffers before the next message.
                messages = 0;
                tokio::task::yield_now().await;
            }
            let deadline = self.next_deadline();
            let wake = tokio::select! {
                wake = next_io(&mut self.phase) => wake,
                Some(response) = self.responses_rx.recv() => Wake::Respond(response),
                command = self.commands.recv() => command.map_or(Wake::Shutdown, Wake::Command),
                () = sleep_until(deadline) => Wake::Timer,
            };
            match wake {
                Wake::Message(message) => {
                    messages += 1;
                    self.on_message(message).await;
                }
                Wake::Opened(result) => self.on_opened(result).await,
                Wake::Respond(response) => self.on_procedure_response(response).await,
                Wake::Command(command) => self.on_command(command).await,
                Wake::Timer => self.on_timer().await,
                Wake::Shutdown => break,
            }
        }
        self.shutdown();
    }

    async fn on_command(&mut self, command: Command) {
        match command {
            Command::Emit {
                event,
                data,
                reply,
                timeout,
            } => {
                if matches!(self.phase, Phase::Closed) {
                    self.start_connecting();
                }
                self.out
                    .enqueue(event, data, reply, deadline_after(timeout));
                self.flush_queue().await;
            }
            Command::Subscribe {
                name,
                options,
                sink,
                reply,
            } => {
                let status = self.subscribe(name, options, sink).await;
                let _ = reply.send(status);
            }
            Command::Unsubscribe { name } => self.unsubscribe(&name).await,
            Command::ProcessPendingSubscriptions => self.process_pending_subscriptions().await,
            Command::Deauthenticate { reply } => {
                let result = self.deauthenticate().await;
                let _ = reply.send(result);
            }
            Command::Disconnect { code, reason } => {
                if matches!(self.phase, Phase::Closed) {
                    // `disconnect()` on a closed client cancels a scheduled reconnect.
                    self.reconnect_at = None;
                } else {
                    self.teardown(code, reason.clone(), Some((code, reason)));
                }
            }
            Command::Connect => self.start_connecting(),
        }
    }

    /// Starts a connection attempt if the client is closed (cancelling a scheduled reconnect).
    fn start_connecting(&mut self) {
        if !matches!(self.phase, Phase::Closed) {
            return;
        }
        self.reconnect_at = None;
        let options = &self.shared.options;
        let attempt: Attempt = Box::pin(transport::open(self.uri.clone(), options.max_payload));
        self.phase = Phase::Connecting {
            attempt,
            deadline: deadline_after(options.connect_timeout),
        };
        self.shared
            .snapshot
            .send_modify(|s| s.state = ConnectionState::Connecting);
        self.emit(ClientEvent::Connecting);
    }

    /// The WebSocket opened (or failed to): send the handshake.
    async fn on_opened(&mut self, result: Result<Ws, ConnectionError>) {
        let ws = match result {
            Ok(ws) => ws,
            Err(error) => {
                self.emit(ClientEvent::Error(error));
                self.teardown(1006, String::new(), None);
                return;
            }
        };
        self.phase = Phase::Handshaking { ws };
        self.epoch += 1;
        self.ping_timeout = self.shared.options.connect_timeout;
        self.reset_ping_deadline();
        let token = self.load_token();
        let data = format!(
            r#"{{"authToken":{}}}"#,
            token.as_deref().map_or(Json::NULL, Json::string)
        );
        self.handshake_token = token;
        let cid = self.out.cid();
        let deadline = deadline_after(self.shared.options.ack_timeout);
        self.out.track(
            cid,
            "#handshake".to_owned(),
            Awaiting::Handshake,
            Some(deadline),
        );
        self.write(encode::event("#handshake", Some(&data), Some(cid)))
            .await;
    }

    /// Sends queued events if the connection is open.
    async fn flush_queue(&mut self) {
        while self.phase.is_open() {
            let Some(item) = self.out.pop_queued() else {
                break;
            };
            let cid = item.reply.as_ref().map(|_| self.out.cid());
            let frame = encode::event(&item.event, item.data.as_ref().map(Json::get), cid);
            if let (Some(cid), Some(reply)) = (cid, item.reply) {
                self.out
                    .track(cid, item.event, Awaiting::Reply(reply), Some(item.deadline));
            }
            self.write(frame).await;
        }
    }

    /// Writes one text frame. A failed (or stuck) write ends the connection with 1006.
    async fn write(&mut self, frame: Bytes) {
        let timeout = self.shared.options.ack_timeout.max(Duration::from_secs(1));
        let Some(ws) = self.phase.ws_mut() else {
            return;
        };
        let message = match self.shared.options.codec {
            Codec::Json => Message::text(Payload::from(frame)),
            // v2 pongs bypass the codec: always an empty text frame.
            Codec::MinBin if frame.is_empty() => Message::text(Payload::from(frame)),
            Codec::MinBin if &frame[..] == b"#2" => {
                Message::binary(Payload::from(Bytes::from_static(min_bin::PONG_V1)))
            }
            Codec::MinBin => match min_bin::encode_frame(&frame) {
                Ok(bytes) => Message::binary(Payload::from(bytes)),
                Err(error) => {
                    tracing::error!(%error, "cannot encode a packet as min-bin; dropped");
                    return;
                }
            },
        };
        let error = match tokio::time::timeout(timeout, ws.send(message)).await {
            Ok(Ok(())) => return,
            Ok(Err(e)) => ConnectionError::WebSocket {
                code: 1006,
                message: format!("write failed: {e}"),
            },
            Err(_) => ConnectionError::WebSocket {
                code: 1006,
                message: "write timed out".to_owned(),
            },
        };
        self.emit(ClientEvent::Error(error));
        self.teardown(1006, String::new(), None);
    }

    async fn on_procedure_response(&mut self, response: ProcedureResponse) {
        if response.epoch != self.epoch {
            tracing::debug!(
                cid = response.cid,
                "procedure answered after its connection closed; dropped"
            );
            return;
        }
        let frame = match &response.result {
            Ok(data) => encode::response(response.cid, data.as_ref().map(Json::get)),
            Err(error) => encode::error_response(response.cid, error.to_json().get(), None),
        };
        self.write(frame).await;
    }

    /// The earliest of all deadlines.
    fn next_deadline(&self) -> Option<Instant> {
        let connect = match &self.phase {
            Phase::Connecting { deadline, .. } => Some(*deadline),
            _ => None,
        };
        [
            connect,
            self.ping_deadline,
            self.reconnect_at,
            self.resubscribe_at,
            self.out.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    async fn on_timer(&mut self) {
        let now = Instant::now();
        if let Phase::Connecting { deadline, .. } = &self.phase {
            if *deadline <= now {
                self.emit(ClientEvent::Error(ConnectionError::ConnectTimeout(
                    self.shared.options.connect_timeout,
                )));
                self.teardown(CloseCode::CONNECT_TIMEOUT.0, String::new(), None);
            }
        }
        if self.ping_deadline.is_some_and(|d| d <= now) {
            self.emit(ClientEvent::Error(ConnectionError::PingTimeout(
                self.ping_timeout,
            )));
            self.teardown(
                CloseCode::PING_TIMEOUT.0,
                String::new(),
                Some((CloseCode::PING_TIMEOUT.0, String::new())),
            );
        }
        if self.resubscribe_at.is_some_and(|d| d <= now) {
            self.resubscribe_at = None;
            self.process_pending_subscriptions().await;
        }
        if self.reconnect_at.is_some_and(|d| d <= now) {
            self.reconnect_at = None;
            self.start_connecting();
        }
        for expired in self.out.pop_expired(now) {
            match expired {
                Expired::Queued(item) => match item.reply {
                    Some(reply) => reply.fail(InvokeError::Timeout { event: item.event }),
                    None => {
                        tracing::debug!(event = %item.event, "event dropped: not sent within ackTimeout")
                    }
                },
                Expired::InFlight(flight) => match flight.awaiting {
                    Awaiting::Reply(reply) => reply.fail(InvokeError::Timeout {
                        event: flight.event,
                    }),
                    Awaiting::Handshake => {
                        let timeout = self.shared.options.ack_timeout;
                        self.emit(ClientEvent::Error(ConnectionError::HandshakeTimeout(
                            timeout,
                        )));
                        let code = CloseCode::HANDSHAKE_FAILED.0;
                        self.teardown(code, String::new(), Some((code, String::new())));
                    }
                    Awaiting::Subscribe { .. } => {}
                },
            }
        }
    }

    fn reset_ping_deadline(&mut self) {
        self.ping_deadline = if self.shared.options.ping_timeout_disabled {
            None
        } else {
            Some(deadline_after(self.ping_timeout))
        };
    }

    /// Ends the current connection (or attempt) with `code`: channels go back to pending,
    /// everything waiting fails with `BadConnectionError`, and the reconnect rule is applied.
    /// `close` is the close frame to send when this side initiates the close.
    fn teardown(&mut self, code: u16, reason: String, close: Option<(u16, String)>) {
        let was_open = match self.phase.state() {
            ConnectionState::Closed => return,
            ConnectionState::Open => true,
            ConnectionState::Connecting => false,
        };
        if let Phase::Handshaking { ws } | Phase::Open { ws } =
            std::mem::replace(&mut self.phase, Phase::Closed)
        {
            let close = close.map(|(code, reason)| {
                if transport::sendable_close_code(code) {
                    (code, reason)
                } else {
                    (CloseCode::HANDSHAKE_FAILED.0, String::new())
                }
            });
            transport::close_in_background(&self.shared.runtime, ws, close);
        }
        self.ping_deadline = None;
        self.shared.snapshot.send_modify(|s| {
            s.state = ConnectionState::Closed;
            s.id = None;
        });
        self.suspend_subscriptions();

        let reason = if reason.is_empty() {
            default_reason(code)
        } else {
            reason
        };
        self.emit(if was_open {
            ClientEvent::Disconnect {
                code,
                reason: reason.clone(),
            }
        } else {
            ClientEvent::ConnectAbort {
                code,
                reason: reason.clone(),
            }
        });

        let kind = if was_open {
            BadConnectionKind::Disconnect
        } else {
            BadConnectionKind::ConnectAbort
        };
        let bad = |event: String| InvokeError::BadConnection {
            event,
            kind,
            code,
            reason: reason.clone(),
        };
        let (queued, in_flight) = self.out.drain();
        for item in queued {
            if let Some(reply) = item.reply {
                reply.fail(bad(item.event));
            }
        }
        for flight in in_flight {
            if let Awaiting::Reply(reply) = flight.awaiting {
                reply.fail(bad(flight.event));
            }
        }

        if self.shared.options.auto_reconnect && !self.shutting_down {
            match decide(code) {
                ReconnectDecision::Immediate => self.schedule_reconnect(Some(Duration::ZERO)),
                ReconnectDecision::Backoff => self.schedule_reconnect(None),
                ReconnectDecision::Never => {}
            }
        }
    }

    fn schedule_reconnect(&mut self, initial: Option<Duration>) {
        let delay = self
            .backoff
            .next_delay(&self.shared.options.auto_reconnect_options, initial);
        self.reconnect_at = Some(deadline_after(delay));
        self.emit(ClientEvent::ReconnectScheduled {
            delay,
            attempt: self.backoff.attempts(),
        });
    }

    /// Every handle is gone: close normally and end all streams.
    fn shutdown(&mut self) {
        self.shutting_down = true;
        self.teardown(
            CloseCode::NORMAL.0,
            String::new(),
            Some((CloseCode::NORMAL.0, String::new())),
        );
        self.reconnect_at = None;
        self.close_all_channels();
    }

    fn emit(&self, event: ClientEvent) {
        // No receivers is fine: nobody is listening.
        let _ = self.shared.events.send(event);
    }
}

/// The `sc-errors` text the reference reports as the reason when a close came without one.
fn default_reason(code: u16) -> String {
    match code {
        1000..=1003 | 1005..=1011 | 4000..=4009 => CloseCode(code).text(),
        _ => String::new(),
    }
}

/// The next thing the connection produces: the attempt's outcome, or a WebSocket message.
async fn next_io(phase: &mut Phase) -> Wake {
    match phase {
        Phase::Connecting { attempt, .. } => Wake::Opened(attempt.as_mut().await),
        Phase::Handshaking { ws } | Phase::Open { ws } => Wake::Message(ws.next().await),
        Phase::Closed => pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => pending().await,
    }
}

/// A driver with default options and no connection, and a receiver of its events.
#[cfg(test)]
pub(crate) fn test_driver() -> (Driver, tokio::sync::broadcast::Receiver<ClientEvent>) {
    use crate::options::ClientOptions;
    use crate::shared::Snapshot;

    let options = ClientOptions {
        channel_buffer: 2,
        ..ClientOptions::default()
    };
    let (events, events_rx) = tokio::sync::broadcast::channel(64);
    let snapshot = tokio::sync::watch::Sender::new(Snapshot {
        state: ConnectionState::Closed,
        id: None,
        auth_state: AuthState::Unauthenticated,
        signed_token: None,
    });
    let shared = Arc::new(Shared {
        options,
        snapshot,
        events,
        registry: Default::default(),
        runtime: tokio::runtime::Handle::current(),
    });
    let (_commands, commands_rx) = mpsc::channel(1);
    let uri: Uri = "ws://127.0.0.1:1/socketcluster/"
        .parse()
        .expect("valid URI");
    (Driver::new(shared, uri, commands_rx), events_rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_reasons() {
        assert_eq!(default_reason(4000), "Server ping timed out");
        assert_eq!(default_reason(1006), "Socket hung up");
        assert_eq!(default_reason(4321), "");
        assert_eq!(default_reason(4100), "");
    }

    #[test]
    fn deadlines_never_overflow() {
        let far = deadline_after(Duration::MAX);
        assert!(far > Instant::now());
    }
}
