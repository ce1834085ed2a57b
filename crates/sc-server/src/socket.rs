//! [`Socket`]: the server's handle on one connected client.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use sc_protocol::{CloseCode, Codec, HeartbeatDialect, Json, ScError, encode, min_bin};
use serde::Serialize;
use smallvec::SmallVec;
use tokio::sync::oneshot;

use crate::auth::{AuthToken, SignOptions};
use crate::connection::outbound::{Outbound, OutboundQueue, PushError};
use crate::error::{InvokeError, SendError};
use crate::handler::Handler;
use crate::shared::ServerShared;

/// Connection state of a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketState {
    /// The WebSocket is open, the SocketCluster handshake is not done yet.
    Connecting,
    /// Handshake done: events flow.
    Open,
    /// Closed or closing.
    Closed,
}

/// What the HTTP upgrade request said about the client.
#[derive(Debug, Clone)]
pub struct UpgradeRequest {
    /// The client's address (`None` when the server was not told, e.g. behind a custom acceptor).
    pub remote_addr: Option<SocketAddr>,
    /// The request URI (path and query).
    pub uri: http::Uri,
    /// The request headers.
    pub headers: http::HeaderMap,
}

/// The upgrade request as a socket keeps it: the URI and every header packed in one allocation
/// (about the size of the request's text), unpacked into an [`UpgradeRequest`] the first time
/// [`Socket::request`] asks for it.
///
/// A `HeaderMap` of a handful of headers takes about 0.8 KB (its entries, index and values),
/// kept for the socket's whole life although most applications never look at it.
pub(crate) struct KeptRequest {
    remote_addr: Option<SocketAddr>,
    /// The URI, then per header: whether it is sensitive (one byte), its name and its value; each
    /// text preceded by its length (4 bytes, native order).
    packed: Box<[u8]>,
    unpacked: std::sync::OnceLock<Box<UpgradeRequest>>,
}

impl KeptRequest {
    pub(crate) fn new(
        remote_addr: Option<SocketAddr>,
        uri: &http::Uri,
        headers: &http::HeaderMap,
    ) -> KeptRequest {
        let uri = uri.to_string();
        let size = 4
            + uri.len()
            + headers
                .iter()
                .map(|(name, value)| 9 + name.as_str().len() + value.len())
                .sum::<usize>();
        let mut packed = Vec::with_capacity(size);
        push_text(&mut packed, uri.as_bytes());
        for (name, value) in headers {
            packed.push(u8::from(value.is_sensitive()));
            push_text(&mut packed, name.as_str().as_bytes());
            push_text(&mut packed, value.as_bytes());
        }
        KeptRequest {
            remote_addr,
            packed: packed.into_boxed_slice(),
            unpacked: std::sync::OnceLock::new(),
        }
    }

    /// The request, unpacked on first use and kept.
    pub(crate) fn get(&self) -> &UpgradeRequest {
        self.unpacked.get_or_init(|| Box::new(self.to_request()))
    }

    /// An unpacked copy, not kept (e.g. for the handshake middleware). It owns its bytes: none
    /// of them point into the buffer hyper parsed the request from.
    pub(crate) fn to_request(&self) -> UpgradeRequest {
        let mut rest: &[u8] = &self.packed;
        let uri = take_text(&mut rest);
        let uri = http::Uri::try_from(uri).unwrap_or_default();
        let mut entries = Vec::new();
        while !rest.is_empty() {
            let sensitive = rest[0] != 0;
            rest = &rest[1..];
            let name = take_text(&mut rest);
            let value = take_text(&mut rest);
            // Both were a valid name and value when packed.
            if let (Ok(name), Ok(mut value)) = (
                http::HeaderName::from_bytes(name),
                http::HeaderValue::from_bytes(value),
            ) {
                value.set_sensitive(sensitive);
                entries.push((name, value));
            }
        }
        let mut headers = http::HeaderMap::with_capacity(entries.len());
        for (name, value) in entries {
            headers.append(name, value);
        }
        UpgradeRequest {
            remote_addr: self.remote_addr,
            uri,
            headers,
        }
    }
}

/// Appends `text` preceded by its length.
fn push_text(packed: &mut Vec<u8>, text: &[u8]) {
    let len = u32::try_from(text.len()).unwrap_or(u32::MAX);
    packed.extend_from_slice(&len.to_ne_bytes());
    packed.extend_from_slice(&text[..len as usize]);
}

/// Takes a text written by [`push_text`] off the front of `rest`.
fn take_text<'a>(rest: &mut &'a [u8]) -> &'a [u8] {
    let (len, tail) = rest.split_at(4);
    let len = u32::from_ne_bytes([len[0], len[1], len[2], len[3]]) as usize;
    let (text, tail) = tail.split_at(len);
    *rest = tail;
    text
}

/// One of a socket's `inboundHandlerLimit` slots, held while a handler runs; freed on drop
/// (also when the handler panics).
pub(crate) struct HandlerSlot(Socket);

impl Drop for HandlerSlot {
    fn drop(&mut self) {
        self.0.0.handler_slots.add_permits(1);
    }
}

type PendingInvoke = oneshot::Sender<Result<Option<Json>, ScError>>;
type DisconnectListener = Box<dyn FnOnce(CloseCode, &str) + Send>;

/// The server side of one client connection. Cheap to clone; every clone is the same socket.
///
/// ```no_run
/// # async fn demo(socket: sc_server::Socket) -> Result<(), Box<dyn std::error::Error>> {
/// socket.emit("serverPush", &serde_json::json!({ "hello": "world" }))?;
/// let answer = socket.invoke("serverQuestion", &serde_json::json!({ "q": "how?" })).await?;
/// println!("client answered {answer:?}");
/// socket.disconnect(4321, "dropped by server");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Socket(pub(crate) Arc<SocketShared>);

pub(crate) struct SocketShared {
    pub(crate) id: Box<str>,
    server: Arc<ServerShared>,
    pub(crate) queue: OutboundQueue,
    /// Slots for event handlers that keep running after the frame that started them
    /// (`inboundHandlerLimit`): a bound on the work one client can have in flight.
    handler_slots: tokio::sync::Semaphore,
    state: AtomicU8,
    dialect: AtomicU8,
    /// [`Codec`] in use: `CODEC_UNKNOWN` until the handshake frame decided it (codec `auto`).
    codec: AtomicU8,
    /// Mirrors `batch.buffering`, so that sending checks no lock while nothing is batched.
    batching: AtomicBool,
    batch: Mutex<Batch>,
    next_cid: AtomicU64,
    pending: Mutex<HashMap<u64, PendingInvoke>>,
    /// The channels this socket is subscribed to, kept in step with the hub by
    /// [`Socket::subscribe_channel`] and [`Socket::unsubscribe_channel`].
    channels: Mutex<ChannelSet>,
    handlers: RwLock<HashMap<Box<str>, Arc<dyn Handler>>>,
    disconnect_listeners: Mutex<Vec<DisconnectListener>>,
    auth_token: Mutex<Option<Arc<AuthToken>>>,
    request: KeptRequest,
}

const STATE_CONNECTING: u8 = 0;
const STATE_OPEN: u8 = 1;
const STATE_CLOSED: u8 = 2;
const DIALECT_UNKNOWN: u8 = 0;
const DIALECT_V1: u8 = 1;
const DIALECT_V2: u8 = 2;
const CODEC_UNKNOWN: u8 = 0;
const CODEC_JSON: u8 = 1;
const CODEC_MIN_BIN: u8 = 2;

/// A socket's channels: a short list while it holds a few (most sockets hold one or two; the
/// first is held inline, without an allocation), a hash set once it holds more than
/// [`ChannelSet::LIST_MAX`].
enum ChannelSet {
    List(SmallVec<[Arc<str>; 1]>),
    Set(HashSet<Arc<str>>),
}

impl Default for ChannelSet {
    fn default() -> ChannelSet {
        ChannelSet::List(SmallVec::new())
    }
}

impl ChannelSet {
    /// Most channels kept in a list (searched in order).
    const LIST_MAX: usize = 16;

    fn get(&self, channel: &str) -> Option<&Arc<str>> {
        match self {
            ChannelSet::List(list) => list.iter().find(|c| &***c == channel),
            ChannelSet::Set(set) => set.get(channel),
        }
    }

    fn contains(&self, channel: &str) -> bool {
        self.get(channel).is_some()
    }

    fn len(&self) -> usize {
        match self {
            ChannelSet::List(list) => list.len(),
            ChannelSet::Set(set) => set.len(),
        }
    }

    fn iter(&self) -> impl Iterator<Item = &Arc<str>> {
        let (list, set) = match self {
            ChannelSet::List(list) => (Some(list.iter()), None),
            ChannelSet::Set(set) => (None, Some(set.iter())),
        };
        list.into_iter().flatten().chain(set.into_iter().flatten())
    }

    /// Adds `channel`; false if it was there already.
    fn insert(&mut self, channel: Arc<str>) -> bool {
        if self.contains(&channel) {
            return false;
        }
        match self {
            ChannelSet::List(list) if list.len() < Self::LIST_MAX => list.push(channel),
            ChannelSet::List(list) => {
                let mut set: HashSet<Arc<str>> = list.drain(..).collect();
                set.insert(channel);
                *self = ChannelSet::Set(set);
            }
            ChannelSet::Set(set) => {
                set.insert(channel);
            }
        }
        true
    }

    /// Removes `channel`; false if it was not there.
    fn remove(&mut self, channel: &str) -> bool {
        match self {
            ChannelSet::List(list) => match list.iter().position(|c| &**c == channel) {
                Some(i) => {
                    list.remove(i);
                    if list.len() <= 1 {
                        list.shrink_to_fit();
                    }
                    true
                }
                None => false,
            },
            ChannelSet::Set(set) => set.remove(channel),
        }
    }

    fn into_vec(self) -> Vec<Arc<str>> {
        match self {
            ChannelSet::List(list) => list.into_vec(),
            ChannelSet::Set(set) => set.into_iter().collect(),
        }
    }
}

/// Server-side batching state (docs/protocol.md §5.5).
#[derive(Default)]
struct Batch {
    /// Packets are being collected.
    buffering: bool,
    /// The application asked for batching (`start_batching`), as opposed to `batchOnHandshake`.
    requested: bool,
    /// The collected packets, as JSON; encoded (once, as one array) when flushed.
    packets: Vec<Bytes>,
    /// The task that flushes every `batchInterval`.
    ticker: Option<tokio::task::AbortHandle>,
}

/// One encoded frame shared by many sockets (a channel delivery): JSON as built, min-bin
/// encoded on first use, so each codec's bytes are made at most once per publication.
pub(crate) struct SharedFrame<'a> {
    json: &'a Bytes,
    min_bin: std::cell::OnceCell<Option<Bytes>>,
}

impl<'a> SharedFrame<'a> {
    pub(crate) fn new(json: &'a Bytes) -> SharedFrame<'a> {
        SharedFrame {
            json,
            min_bin: std::cell::OnceCell::new(),
        }
    }

    fn min_bin(&self) -> Option<&Bytes> {
        self.min_bin
            .get_or_init(|| match min_bin::encode_frame(self.json) {
                Ok(frame) => Some(frame),
                Err(error) => {
                    tracing::error!(%error, "cannot encode a publication as min-bin");
                    None
                }
            })
            .as_ref()
    }
}

tokio::task_local! {
    /// Set while a handler that owes its client a response runs: a `disconnect()` it calls is
    /// applied after its response was queued (the response reaches the client first, as in
    /// socketcluster-server 14 where `res()` precedes `socket.disconnect()`).
    pub(crate) static HANDLER_SCOPE: HandlerScope;
}

/// See [`HANDLER_SCOPE`].
#[derive(Clone)]
pub(crate) struct HandlerScope {
    socket: usize,
    deferred: Arc<Mutex<Option<(u16, String)>>>,
}

impl HandlerScope {
    pub(crate) fn new(socket: &Socket) -> HandlerScope {
        HandlerScope {
            socket: Arc::as_ptr(&socket.0) as usize,
            deferred: Arc::default(),
        }
    }

    /// The disconnect the handler asked for, to apply now that it answered.
    pub(crate) fn take_deferred(&self) -> Option<(u16, String)> {
        self.deferred.lock().take()
    }
}

impl Socket {
    pub(crate) fn new(
        id: Box<str>,
        server: Arc<ServerShared>,
        request: KeptRequest,
        dialect: Option<HeartbeatDialect>,
    ) -> Socket {
        let limit = server.options().outbound_queue_limit;
        let handler_limit = server.options().inbound_handler_limit;
        let codec = server
            .options()
            .codec
            .fixed()
            .map_or(CODEC_UNKNOWN, codec_code);
        Socket(Arc::new(SocketShared {
            id,
            server,
            queue: OutboundQueue::new(limit),
            handler_slots: tokio::sync::Semaphore::new(handler_limit),
            state: AtomicU8::new(STATE_CONNECTING),
            dialect: AtomicU8::new(dialect.map_or(DIALECT_UNKNOWN, dialect_code)),
            codec: AtomicU8::new(codec),
            batching: AtomicBool::new(false),
            batch: Mutex::new(Batch::default()),
            next_cid: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
            channels: Mutex::new(ChannelSet::default()),
            handlers: RwLock::new(HashMap::new()),
            disconnect_listeners: Mutex::new(Vec::new()),
            auth_token: Mutex::new(None),
            request,
        }))
    }

    /// The socket id sent to the client in the handshake (20 URL-safe characters).
    pub fn id(&self) -> &str {
        &self.0.id
    }

    /// The connection state.
    pub fn state(&self) -> SocketState {
        match self.0.state.load(Ordering::Acquire) {
            STATE_CONNECTING => SocketState::Connecting,
            STATE_OPEN => SocketState::Open,
            _ => SocketState::Closed,
        }
    }

    /// The upgrade request: remote address, URI (with the client's `query`), headers.
    pub fn request(&self) -> &UpgradeRequest {
        self.0.request.get()
    }

    /// The heartbeat dialect in use, once known (always known unless `protocolVersion` is `auto`
    /// and the first ping has not been answered yet).
    pub fn dialect(&self) -> Option<HeartbeatDialect> {
        match self.0.dialect.load(Ordering::Acquire) {
            DIALECT_V1 => Some(HeartbeatDialect::V1),
            DIALECT_V2 => Some(HeartbeatDialect::V2),
            _ => None,
        }
    }

    /// The codec this socket speaks, once known (always known unless the server's codec is
    /// `auto` and the handshake frame has not arrived yet).
    pub fn codec(&self) -> Option<Codec> {
        match self.0.codec.load(Ordering::Acquire) {
            CODEC_JSON => Some(Codec::Json),
            CODEC_MIN_BIN => Some(Codec::MinBin),
            _ => None,
        }
    }

    pub(crate) fn set_codec(&self, codec: Codec) {
        self.0.codec.store(codec_code(codec), Ordering::Release);
    }

    /// Registers a handler for `event` on this socket only (it takes precedence over a
    /// server-wide handler of the same name). Names starting with `#` belong to the protocol and
    /// are refused.
    pub fn on<H: Handler>(&self, event: &str, handler: H) -> Result<(), SendError> {
        crate::error::check_event_name(event)?;
        self.0
            .handlers
            .write()
            .insert(event.into(), Arc::new(handler));
        Ok(())
    }

    /// Runs `listener` once when the socket closes, with the close code and reason.
    pub fn on_disconnect(&self, listener: impl FnOnce(CloseCode, &str) + Send + 'static) {
        if self.state() == SocketState::Closed {
            return;
        }
        self.0.disconnect_listeners.lock().push(Box::new(listener));
    }

    /// Sends an event without expecting a response (SocketCluster's `transmit` / v14 `emit`).
    pub fn emit<T: Serialize + ?Sized>(&self, event: &str, data: &T) -> Result<(), SendError> {
        let data = Json::encode(data).map_err(|e| SendError::Serialize(e.to_string()))?;
        self.emit_json(event, Some(&data))
    }

    /// Sends an event whose data is already JSON (or has none).
    pub fn emit_json(&self, event: &str, data: Option<&Json>) -> Result<(), SendError> {
        crate::error::check_event_name(event)?;
        self.send_frame(encode::event(event, data.map(Json::get), None))
    }

    /// Sends an event and waits for the client's response, up to the server's `ackTimeout`.
    pub async fn invoke<T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: &T,
    ) -> Result<Option<Json>, InvokeError> {
        let data = Json::encode(data)
            .map_err(|e| InvokeError::Send(SendError::Serialize(e.to_string())))?;
        self.invoke_json(event, Some(&data)).await
    }

    /// [`Socket::invoke`] with data that is already JSON.
    pub async fn invoke_json(
        &self,
        event: &str,
        data: Option<&Json>,
    ) -> Result<Option<Json>, InvokeError> {
        crate::error::check_event_name(event)?;
        let cid = self.0.next_cid.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.0.pending.lock().insert(cid, tx);
        if let Err(e) = self.send_frame(encode::event(event, data.map(Json::get), Some(cid))) {
            self.0.pending.lock().remove(&cid);
            return Err(e.into());
        }
        let timeout = self.0.server.options().durations().ack_timeout;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(Ok(data))) => Ok(data),
            Ok(Ok(Err(error))) => Err(InvokeError::Remote(error)),
            Ok(Err(_)) => Err(InvokeError::Disconnected),
            Err(_) => {
                self.0.pending.lock().remove(&cid);
                Err(InvokeError::Timeout {
                    event: event.to_owned(),
                })
            }
        }
    }

    /// Sends a raw text frame (the client sees a `raw` / `message` event). Raw frames bypass
    /// the codec and batching, as `socket.send()` does in SocketCluster.
    pub fn send_raw(&self, text: &str) -> Result<(), SendError> {
        self.push(Outbound::Text(Bytes::copy_from_slice(text.as_bytes())))
    }

    /// Starts batching: from now on every outbound packet (responses, events, channel
    /// deliveries) is collected and sent as one array frame every `batchInterval` ms
    /// (SocketCluster's `startBatching`). Heartbeats and raw frames are never batched.
    pub fn start_batching(&self) {
        self.0.batch.lock().requested = true;
        self.start_ticker();
    }

    /// Sends what was collected now and stops batching (`stopBatching`).
    pub fn stop_batching(&self) {
        self.stop_ticker(false);
        self.flush_batch();
    }

    /// Sends what was collected so far as one array frame; batching goes on if it was on.
    pub fn flush_batch(&self) {
        let packets = std::mem::take(&mut self.0.batch.lock().packets);
        if !packets.is_empty() {
            let _ = self.send_encoded(encode::batch(&packets));
        }
    }

    /// Discards what was collected and stops batching (`cancelBatching`).
    pub fn cancel_batching(&self) {
        self.stop_ticker(true);
    }

    /// Whether outbound packets are being collected into batches.
    pub fn is_batching(&self) -> bool {
        self.0.batching.load(Ordering::Acquire)
    }

    /// `batchOnHandshake`: batch for `batchOnHandshakeDuration`, unless the application has
    /// started batching itself meanwhile.
    pub(crate) fn batch_on_handshake(&self) {
        self.start_ticker();
        let weak = Arc::downgrade(&self.0);
        let duration = self.0.server.options().durations().batch_on_handshake;
        tokio::spawn(async move {
            tokio::time::sleep(duration).await;
            if let Some(shared) = weak.upgrade() {
                let socket = Socket(shared);
                if !socket.0.batch.lock().requested {
                    socket.stop_batching();
                }
            }
        });
    }

    fn start_ticker(&self) {
        let mut batch = self.0.batch.lock();
        batch.buffering = true;
        self.0.batching.store(true, Ordering::Release);
        if batch.ticker.is_some() {
            return;
        }
        let weak = Arc::downgrade(&self.0);
        let interval = self.0.server.options().durations().batch_interval;
        let task = tokio::spawn(async move {
            let mut ticks =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            loop {
                ticks.tick().await;
                match weak.upgrade() {
                    Some(shared) => Socket(shared).flush_batch(),
                    None => break,
                }
            }
        });
        batch.ticker = Some(task.abort_handle());
    }

    /// Stops collecting; `discard` drops what was collected (else it stays for a flush).
    fn stop_ticker(&self, discard: bool) {
        let mut batch = self.0.batch.lock();
        batch.buffering = false;
        batch.requested = false;
        self.0.batching.store(false, Ordering::Release);
        if let Some(ticker) = batch.ticker.take() {
            ticker.abort();
        }
        if discard {
            batch.packets = Vec::new();
        }
    }

    /// Closes the connection with `code` (1000, or 3000–4999 outside the protocol's own
    /// 4000–4009) and `reason`, after the frames already queued. v1 clients first get the
    /// `#disconnect` event, as socketcluster-server 14 sends it.
    ///
    /// Called from a handler that answers its client, the close waits until the handler has
    /// answered: the response goes out first.
    pub fn disconnect(&self, code: u16, reason: &str) {
        let deferred = HANDLER_SCOPE
            .try_with(|scope| {
                let mine = scope.socket == Arc::as_ptr(&self.0) as usize;
                if mine {
                    scope
                        .deferred
                        .lock()
                        .get_or_insert_with(|| (code, reason.to_owned()));
                }
                mine
            })
            .unwrap_or(false);
        if deferred {
            return;
        }
        let code = if CloseCode(code).is_application_code() {
            CloseCode(code)
        } else {
            CloseCode::NORMAL
        };
        self.close_with(code, reason, true);
    }

    /// Frames waiting in this socket's outbound queue (a growing number means a slow client).
    pub fn outbound_queue_len(&self) -> usize {
        self.0.queue.len()
    }

    /// The socket's verified auth token (its claims), if it is authenticated.
    pub fn auth_token(&self) -> Option<Arc<AuthToken>> {
        self.0.auth_token.lock().clone()
    }

    /// Whether the socket holds a verified, unexpired-at-last-check auth token.
    pub fn is_authenticated(&self) -> bool {
        self.0.auth_token.lock().is_some()
    }

    /// Signs `claims` (a JSON object) with the server's key, marks the socket authenticated and
    /// sends the token to the client (`#setAuthToken`), which stores it and sends it again on
    /// every reconnect.
    pub fn set_auth_token(
        &self,
        claims: &serde_json::Value,
        options: &SignOptions,
    ) -> Result<Arc<AuthToken>, ScError> {
        let token = match self.0.server.auth().sign(claims, options) {
            Ok(token) => Arc::new(token),
            Err(error) => {
                tracing::error!(socket = %self.id(), %error, "failed to sign an auth token");
                self.close_with(CloseCode::AUTH_SIGN_FAILED, "", true);
                return Err(error);
            }
        };
        let data = format!("{{\"token\":{}}}", Json::string(&token.signed));
        self.send_frame(encode::event("#setAuthToken", Some(&data), None))?;
        self.set_auth(token.clone());
        Ok(token)
    }

    /// Removes the socket's token on both sides (`#removeAuthToken`).
    pub fn deauthenticate(&self) {
        let data = (self.dialect() == Some(HeartbeatDialect::V1)).then_some("null");
        let _ = self.send_frame(encode::event("#removeAuthToken", data, None));
        self.clear_auth();
    }

    pub(crate) fn set_auth(&self, token: Arc<AuthToken>) {
        *self.0.auth_token.lock() = Some(token.clone());
        self.0
            .server
            .emit_auth_event(self, crate::auth::AuthEvent::Authenticated(&token));
    }

    /// Forgets the token without telling the client (it asked, or it is told separately).
    pub(crate) fn clear_auth(&self) {
        let had = self.0.auth_token.lock().take().is_some();
        if had {
            self.0
                .server
                .emit_auth_event(self, crate::auth::AuthEvent::Deauthenticated);
        }
    }

    /// A slot for a running event handler, if one is free (see `inboundHandlerLimit`).
    pub(crate) fn try_handler_slot(&self) -> Option<HandlerSlot> {
        let permit = self.0.handler_slots.try_acquire().ok()?;
        permit.forget();
        Some(HandlerSlot(self.clone()))
    }

    /// Waits for a free handler slot (the connection reads nothing meanwhile).
    pub(crate) async fn handler_slot(&self) -> HandlerSlot {
        if let Ok(permit) = self.0.handler_slots.acquire().await {
            permit.forget();
        }
        HandlerSlot(self.clone())
    }

    /// Deauthenticates the socket if its token expired (checked on inbound events and pongs).
    pub(crate) fn check_expiry(&self) {
        let expired = self
            .0
            .auth_token
            .lock()
            .as_ref()
            .is_some_and(|t| t.is_expired_at(std::time::SystemTime::now()));
        if expired {
            self.deauthenticate();
        }
    }

    /// Channels this socket is subscribed to.
    pub fn subscriptions(&self) -> Vec<String> {
        self.0
            .channels
            .lock()
            .iter()
            .map(|c| c.to_string())
            .collect()
    }

    /// Whether the socket is subscribed to `channel`.
    pub fn is_subscribed(&self, channel: &str) -> bool {
        self.0.channels.lock().contains(channel)
    }

    /// Removes the socket from `channel` (or from every channel when `None`) and tells the client
    /// with `#kickOut`; the client does not re-subscribe kicked channels.
    pub async fn kick_out(&self, channel: Option<&str>, message: &str) {
        let channels: Vec<Arc<str>> = {
            let subscribed = self.0.channels.lock();
            match channel {
                Some(name) => subscribed.get(name).cloned().into_iter().collect(),
                None => subscribed.iter().cloned().collect(),
            }
        };
        for name in channels {
            let data = kick_out_data(self.dialect(), &name, message);
            let _ = self.send_frame(encode::event("#kickOut", Some(data.get()), None));
            self.unsubscribe_channel(&name).await;
        }
    }

    /// Sends a packet (a JSON frame built by `sc_protocol::encode`): into the batch when
    /// batching, else encoded with the socket's codec.
    pub(crate) fn send_frame(&self, frame: Bytes) -> Result<(), SendError> {
        if self.0.batching.load(Ordering::Acquire) && self.add_to_batch(&frame)? {
            return Ok(());
        }
        self.send_encoded(frame)
    }

    /// Sends a frame shared with other sockets (a channel delivery). `Ok(true)`: the socket's
    /// queue is congested, publishers of the channel should wait for it
    /// ([`crate::hub::Hub::pace`]).
    pub(crate) fn send_shared(&self, frame: &SharedFrame<'_>) -> Result<bool, SendError> {
        if self.0.batching.load(Ordering::Acquire) && self.add_to_batch(frame.json)? {
            return Ok(false);
        }
        match self.codec() {
            Some(Codec::MinBin) => match frame.min_bin() {
                Some(bytes) => self.push_paced(Outbound::Binary(bytes.clone())),
                None => Err(SendError::Serialize("min-bin encoding failed".into())),
            },
            _ => self.push_paced(Outbound::Text(frame.json.clone())),
        }
    }

    /// Whether publishers should wait for this socket's queue (see [`crate::hub::Hub::pace`]).
    pub(crate) fn is_congested(&self) -> bool {
        self.0.queue.is_congested()
    }

    /// A publisher waited for this socket's queue without progress: do not wait for it again
    /// until its writer takes a backlog.
    pub(crate) fn mark_stalled(&self) {
        self.0.queue.mark_stalled();
    }

    /// Collects a packet if the socket is batching (`false`: it is not, send it now).
    fn add_to_batch(&self, frame: &Bytes) -> Result<bool, SendError> {
        let mut batch = self.0.batch.lock();
        if !batch.buffering {
            return Ok(false);
        }
        if self.state() == SocketState::Closed {
            return Err(SendError::Closed);
        }
        batch.packets.push(frame.clone());
        // The batch is bounded like the queue it goes to: a full one is flushed at once.
        if batch.packets.len() >= self.0.server.options().outbound_queue_limit {
            let packets = std::mem::take(&mut batch.packets);
            drop(batch);
            self.send_encoded(encode::batch(&packets))?;
        }
        Ok(true)
    }

    /// Sends a packet frame now (never batched), in the socket's codec.
    pub(crate) fn send_encoded(&self, frame: Bytes) -> Result<(), SendError> {
        match self.codec() {
            Some(Codec::MinBin) => match min_bin::encode_frame(&frame) {
                Ok(bytes) => self.push(Outbound::Binary(bytes)),
                Err(error) => {
                    tracing::error!(socket = %self.id(), %error, "cannot encode a packet as min-bin");
                    Err(SendError::Serialize(error.to_string()))
                }
            },
            _ => self.push(Outbound::Text(frame)),
        }
    }

    /// Sends a heartbeat ping: v2's empty text frame (it bypasses the codec), or v1's `#1`
    /// (through the codec: the min-bin ping is the binary string `"#1"`).
    pub(crate) fn send_ping(&self, dialect: HeartbeatDialect) {
        let item = match (dialect, self.codec()) {
            (HeartbeatDialect::V1, Some(Codec::MinBin)) => {
                Outbound::Binary(Bytes::from_static(min_bin::PING_V1))
            }
            (dialect, _) => Outbound::Text(Bytes::from_static(dialect.ping().as_bytes())),
        };
        let _ = self.push(item);
    }

    fn push(&self, item: Outbound) -> Result<(), SendError> {
        self.push_paced(item).map(drop)
    }

    /// Queues a frame; `Ok(true)`: the queue is congested.
    fn push_paced(&self, item: Outbound) -> Result<bool, SendError> {
        match self.0.queue.push_item(item) {
            Ok(congested) => Ok(congested),
            Err(PushError::Closed) => Err(SendError::Closed),
            Err(PushError::Overflow) => Err(SendError::SlowConsumer),
        }
    }

    /// Closes the socket: optional v1 `#disconnect` event, then the close frame.
    pub(crate) fn close_with(&self, code: CloseCode, reason: &str, announce: bool) {
        // What was collected for a batch goes out before the close.
        if self.0.batching.load(Ordering::Acquire) {
            self.stop_ticker(false);
            self.flush_batch();
        }
        if announce && self.dialect() == Some(HeartbeatDialect::V1) {
            let mut data = format!("{{\"code\":{}", code.0);
            if !reason.is_empty() {
                data.push_str(",\"data\":");
                data.push_str(Json::string(reason).get());
            }
            data.push('}');
            let _ = self.send_frame(encode::event("#disconnect", Some(&data), None));
        }
        // v1 peers get the reason in `#disconnect`; the close frame then carries none.
        let wire_reason = if self.dialect() == Some(HeartbeatDialect::V1) {
            ""
        } else {
            reason
        };
        if self.0.queue.push_close(code, wire_reason.to_owned()) {
            tracing::debug!(socket = %self.id(), code = code.0, reason, "closing socket");
        }
    }

    pub(crate) fn set_open(&self) {
        self.0.state.store(STATE_OPEN, Ordering::Release);
    }

    pub(crate) fn set_dialect(&self, dialect: HeartbeatDialect) {
        self.0
            .dialect
            .store(dialect_code(dialect), Ordering::Release);
    }

    pub(crate) fn handler(&self, event: &str) -> Option<Arc<dyn Handler>> {
        let own = self.0.handlers.read().get(event).cloned();
        own.or_else(|| self.0.server.handler(event))
    }

    /// Completes a server-to-client invoke with the client's response.
    pub(crate) fn resolve_invoke(&self, rid: u64, result: Result<Option<Json>, ScError>) {
        if let Some(tx) = self.0.pending.lock().remove(&rid) {
            let _ = tx.send(result);
        }
    }

    /// Marks the socket closed, fails pending invokes and runs disconnect listeners. The caller
    /// then releases its channels ([`Socket::unsubscribe_all`]).
    pub(crate) fn mark_closed(&self, code: CloseCode, reason: &str) {
        self.0.state.store(STATE_CLOSED, Ordering::Release);
        self.0.queue.finish();
        self.stop_ticker(true);
        self.0.pending.lock().clear();
        let listeners = std::mem::take(&mut *self.0.disconnect_listeners.lock());
        for listener in listeners {
            listener(code, reason);
        }
        self.0.handlers.write().clear();
        self.0.auth_token.lock().take();
    }

    /// The server this socket belongs to.
    pub(crate) fn server(&self) -> &Arc<ServerShared> {
        &self.0.server
    }

    /// Whether the socket holds `channel`, and how many channels it holds.
    pub(crate) fn subscription_state(&self, channel: &str) -> (bool, usize) {
        let channels = self.0.channels.lock();
        (channels.contains(channel), channels.len())
    }

    /// Subscribes the socket to `channel`: adds it to the socket's channels and to the hub (see
    /// [`Hub::subscribe_socket`](crate::hub::Hub::subscribe_socket) for `catching_up` and
    /// `presence`). On failure the socket holds the channel in neither.
    pub(crate) async fn subscribe_channel(
        &self,
        channel: &Arc<str>,
        catching_up: bool,
        presence: bool,
    ) -> Result<(), sc_broker::BrokerError> {
        self.0.channels.lock().insert(channel.clone());
        let hub = self.0.server.hub();
        if let Err(error) = hub
            .subscribe_socket(self, channel, catching_up, presence)
            .await
        {
            self.0.channels.lock().remove(channel);
            return Err(error);
        }
        Ok(())
    }

    /// Unsubscribes the socket from `channel` (socket's channels and hub); false if it was not
    /// subscribed.
    pub(crate) async fn unsubscribe_channel(&self, channel: &str) -> bool {
        let removed = self.0.channels.lock().remove(channel);
        if removed {
            self.0.server.hub().unsubscribe_socket(self, channel).await;
        }
        removed
    }

    /// Unsubscribes the socket from every channel it holds (when it closes).
    pub(crate) async fn unsubscribe_all(&self) {
        let channels = std::mem::take(&mut *self.0.channels.lock()).into_vec();
        for channel in channels {
            self.0.server.hub().unsubscribe_socket(self, &channel).await;
        }
    }

    /// The presence entry of this socket: its id and the `username` claim of its token.
    pub(crate) fn presence_member(&self) -> sc_broker::PresenceMember {
        sc_broker::PresenceMember {
            id: self.id().to_owned(),
            user: self
                .auth_token()
                .and_then(|token| token.claim_str("username").map(str::to_owned)),
        }
    }

    /// After a login or logout, updates the `user` of the socket's presence entries (no event).
    pub(crate) fn refresh_presence(&self) {
        let hub = self.0.server.hub().clone();
        let channels: Vec<Arc<str>> = self
            .0
            .channels
            .lock()
            .iter()
            .filter(|c| hub.streams().presence(c))
            .cloned()
            .collect();
        if channels.is_empty() {
            return;
        }
        let member = self.presence_member();
        tokio::spawn(async move {
            for channel in channels {
                if let Err(error) = hub.broker().presence_join(&channel, member.clone()).await {
                    tracing::warn!(%channel, %error, "presence update failed at the broker");
                }
            }
        });
    }

    pub(crate) fn ptr_eq(&self, other: &Socket) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

fn dialect_code(dialect: HeartbeatDialect) -> u8 {
    match dialect {
        HeartbeatDialect::V1 => DIALECT_V1,
        HeartbeatDialect::V2 => DIALECT_V2,
    }
}

fn codec_code(codec: Codec) -> u8 {
    match codec {
        Codec::Json => CODEC_JSON,
        Codec::MinBin => CODEC_MIN_BIN,
    }
}

/// `#kickOut` data, in each version's key order.
fn kick_out_data(dialect: Option<HeartbeatDialect>, channel: &str, message: &str) -> Json {
    let (channel, message) = (Json::string(channel), Json::string(message));
    let text = if dialect == Some(HeartbeatDialect::V1) {
        format!("{{\"message\":{message},\"channel\":{channel}}}")
    } else {
        format!("{{\"channel\":{channel},\"message\":{message}}}")
    };
    Json::from_text(&text).unwrap_or(Json::NULL)
}

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket")
            .field("id", &self.id())
            .field("state", &self.state())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_frame_is_encoded_once_per_codec() {
        let json = Bytes::from_static(br##"{"event":"#publish","data":{"channel":"c","data":1}}"##);
        let shared = SharedFrame::new(&json);
        let first = shared.min_bin().unwrap().clone();
        let second = shared.min_bin().unwrap().clone();
        // The same buffer both times: the second subscriber gets a reference-count increment.
        assert_eq!(first.as_ptr(), second.as_ptr());
        assert_eq!(&first[..], b"\x81\xa1p\x92\xa1c\x01");
    }

    #[test]
    fn request_copy_keeps_every_header_and_owns_its_bytes() {
        let buffer = bytes::Bytes::from_static(b"/socketcluster/?a=1 abc xyz");
        let mut headers = http::HeaderMap::new();
        headers.append(
            http::header::COOKIE,
            http::HeaderValue::from_maybe_shared(buffer.slice(20..23)).unwrap(),
        );
        headers.append(
            http::header::COOKIE,
            http::HeaderValue::from_maybe_shared(buffer.slice(24..27)).unwrap(),
        );
        headers.insert("x-custom", http::HeaderValue::from_static("v"));
        let mut secret = http::HeaderValue::from_static("s");
        secret.set_sensitive(true);
        headers.insert(http::header::AUTHORIZATION, secret);
        let uri = http::Uri::from_maybe_shared(buffer.slice(0..19)).unwrap();

        let copy = KeptRequest::new(None, &uri, &headers).to_request();
        assert_eq!(copy.headers, headers);
        assert_eq!(copy.uri, uri);
        assert_eq!(copy.uri.query(), Some("a=1"));
        assert!(copy.headers[http::header::AUTHORIZATION].is_sensitive());
        let cookies: Vec<_> = copy.headers.get_all(http::header::COOKIE).iter().collect();
        assert_eq!(cookies, ["abc", "xyz"]);
        let inside = |p: *const u8| buffer.as_ptr_range().contains(&p);
        assert!(
            copy.headers
                .values()
                .all(|v| !inside(v.as_bytes().as_ptr()))
        );
        assert!(!inside(copy.uri.path().as_ptr()));
    }

    #[test]
    fn kept_request_unpacks_to_the_same_request() {
        let mut headers = http::HeaderMap::new();
        headers.append(http::header::COOKIE, http::HeaderValue::from_static("abc"));
        headers.append(http::header::COOKIE, http::HeaderValue::from_static("xyz"));
        headers.insert("x-custom", http::HeaderValue::from_static("v"));
        headers.insert(
            http::header::HOST,
            http::HeaderValue::from_static("127.0.0.1:8000"),
        );
        let mut secret = http::HeaderValue::from_static("s");
        secret.set_sensitive(true);
        headers.insert(http::header::AUTHORIZATION, secret);
        let uri: http::Uri = "/socketcluster/?a=1&b=%20".parse().unwrap();
        let addr: SocketAddr = "10.1.2.3:4567".parse().unwrap();

        let kept = KeptRequest::new(Some(addr), &uri, &headers);
        let request = kept.get();
        assert_eq!(request.remote_addr, Some(addr));
        assert_eq!(request.uri, uri);
        assert_eq!(request.uri.query(), Some("a=1&b=%20"));
        assert_eq!(request.headers, headers);
        assert!(request.headers[http::header::AUTHORIZATION].is_sensitive());
        assert!(!request.headers[http::header::HOST].is_sensitive());
        let cookies: Vec<_> = request
            .headers
            .get_all(http::header::COOKIE)
            .iter()
            .collect();
        assert_eq!(cookies, ["abc", "xyz"]);
        assert!(std::ptr::eq(request, kept.get()), "unpacked once");

        let empty = KeptRequest::new(None, &http::Uri::default(), &http::HeaderMap::new());
        assert_eq!(empty.get().uri, http::Uri::default());
        assert!(empty.get().headers.is_empty());
    }
}
