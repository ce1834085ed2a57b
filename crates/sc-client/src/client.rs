//! [`Client`]: the cheap, cloneable handle applications use, and [`ClientBuilder`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use parking_lot::Mutex;
use sc_protocol::{Json, ScError};
use serde::Serialize;
use tokio::runtime::Handle;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::channel::Channel;
use crate::command::{Command, Reply};
use crate::driver::{Driver, transport};
use crate::error::{ClientError, ConnectionError, InvokeError};
use crate::events::{AuthState, AuthStatus, ClientEvent, ConnectionState, Events};
use crate::handlers::{ProcedureFuture, Receiver};
use crate::options::{AutoReconnectOptions, ClientOptions, Codec, ProtocolVersion};
use crate::position::StreamPosition;
use crate::presence::{Presence, PresenceEvents};
use crate::shared::{Shared, Snapshot};
use crate::sink;
use crate::subscription::SubscribeOptions;
use crate::token_store::{TokenStore, decode_payload};
use crate::url::build_uri;

/// Commands waiting for the background task; callers wait (asynchronously) when it is full.
const COMMAND_BUFFER: usize = 1024;

/// A SocketCluster client: a handle to a background task that owns the connection.
///
/// Clone it freely; every clone talks to the same connection. The background task (and the
/// connection) ends when the last `Client` — including the ones held by [`Channel`]s — is
/// dropped; it then closes the WebSocket with 1000.
#[derive(Clone)]
pub struct Client {
    commands: mpsc::Sender<Command>,
    shared: Arc<Shared>,
}

impl Client {
    /// Connects to `url` (`ws://host:port/socketcluster/`) and waits for the first handshake.
    ///
    /// Fails with [`ClientError::InvalidUrl`] / [`ClientError::UnsupportedScheme`] for a bad URL
    /// and with [`ClientError::Connect`] when the first attempt fails (not a SocketCluster
    /// server, refused handshake, timeout…). Once connected, later failures are handled by the
    /// reconnect rules. `options.auto_connect` is ignored: this always connects.
    pub async fn connect(url: &str, options: ClientOptions) -> Result<Client, ClientError> {
        let options = ClientOptions {
            auto_connect: true,
            ..options
        };
        let (client, mut events) = Client::start(url, options)?;
        let mut last_error = None;
        while let Some(event) = events.next().await {
            match event {
                ClientEvent::Connect { .. } => return Ok(client),
                ClientEvent::Error(error) => last_error = Some(error),
                ClientEvent::ConnectAbort { code, reason }
                | ClientEvent::Disconnect { code, reason } => {
                    return Err(ClientError::Connect(
                        last_error.unwrap_or(ConnectionError::Closed { code, reason }),
                    ));
                }
                _ => {}
            }
        }
        Err(ClientError::Closed)
    }

    /// Creates the client and returns at once; it connects in the background (unless
    /// `options.auto_connect` is false). Only a bad URL or bad options fail here.
    pub fn spawn(url: &str, options: ClientOptions) -> Result<Client, ClientError> {
        Client::start(url, options).map(|(client, _)| client)
    }

    /// A builder with the default options.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), sc_client::ClientError> {
    /// let client = sc_client::Client::builder("ws://127.0.0.1:8000/socketcluster/")
    ///     .ack_timeout(std::time::Duration::from_secs(5))
    ///     .query("token", "abc")
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            url: url.into(),
            options: ClientOptions::default(),
        }
    }

    fn start(url: &str, options: ClientOptions) -> Result<(Client, Events), ClientError> {
        let runtime = Handle::try_current().map_err(|_| ClientError::NoRuntime)?;
        options.validate()?;
        let uri = build_uri(url, &options.query)?;
        let (commands, commands_rx) = mpsc::channel(COMMAND_BUFFER);
        let (events, events_rx) = broadcast::channel(options.event_buffer);
        let snapshot = watch::Sender::new(Snapshot {
            state: ConnectionState::Closed,
            id: None,
            auth_state: AuthState::Unauthenticated,
            signed_token: None,
        });
        let shared = Arc::new(Shared {
            options,
            snapshot,
            events,
            registry: Mutex::default(),
            runtime,
        });
        let driver = Driver::new(shared.clone(), uri, commands_rx);
        shared.runtime.spawn(driver.run());
        Ok((Client { commands, shared }, Events::new(events_rx)))
    }

    async fn send(&self, command: Command) -> Result<(), ClientError> {
        self.commands
            .send(command)
            .await
            .map_err(|_| ClientError::Closed)
    }

    // ---- events and RPC ----

    /// Sends an event without waiting for a response (`transmit`). While disconnected the
    /// event is queued (and a connection attempt starts); it is dropped if it cannot be sent
    /// within `ackTimeout`.
    pub async fn emit(&self, event: &str, data: impl Serialize) -> Result<(), ClientError> {
        check_event_name(event)?;
        self.send_event(
            event,
            Some(encode(&data)?),
            None,
            self.shared.options.ack_timeout,
        )
        .await
    }

    /// Alias of [`Client::emit`] (the v15+ name).
    pub async fn transmit(&self, event: &str, data: impl Serialize) -> Result<(), ClientError> {
        self.emit(event, data).await
    }

    /// Sends an event and waits for the server's response, at most `ackTimeout`. `Ok(None)` is
    /// a response without data (`{"rid":n}`).
    pub async fn invoke(
        &self,
        event: &str,
        data: impl Serialize,
    ) -> Result<Option<Json>, InvokeError> {
        self.invoke_with_timeout(event, data, self.shared.options.ack_timeout)
            .await
    }

    /// [`Client::invoke`] with a per-call timeout instead of `ackTimeout`.
    pub async fn invoke_with_timeout(
        &self,
        event: &str,
        data: impl Serialize,
        timeout: Duration,
    ) -> Result<Option<Json>, InvokeError> {
        check_event_name(event)?;
        self.invoke_event(event, Some(encode(&data)?), timeout)
            .await
    }

    async fn invoke_event(
        &self,
        event: &str,
        data: Option<Json>,
        timeout: Duration,
    ) -> Result<Option<Json>, InvokeError> {
        let (tx, rx) = oneshot::channel();
        self.send_event(event, data, Some(Reply::Invoke(tx)), timeout)
            .await?;
        rx.await
            .unwrap_or(Err(InvokeError::Client(ClientError::Closed)))
    }

    async fn send_event(
        &self,
        event: &str,
        data: Option<Json>,
        reply: Option<Reply>,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        self.send(Command::Emit {
            event: event.to_owned(),
            data,
            reply,
            timeout,
        })
        .await
    }

    // ---- pub/sub ----

    /// Subscribes to a channel and returns a handle that streams its messages (see
    /// [`Channel`]). Returns at once with the channel pending; wait for the acknowledgement
    /// with [`Channel::subscribed`].
    pub async fn subscribe(&self, channel: &str) -> Result<Channel, ClientError> {
        self.subscribe_with(channel, SubscribeOptions::default())
            .await
    }

    /// [`Client::subscribe`] with options (`waitForAuth`, `data`, `priority`).
    pub async fn subscribe_with(
        &self,
        channel: &str,
        options: SubscribeOptions,
    ) -> Result<Channel, ClientError> {
        let (sink, source) = sink::buffer(self.shared.options.channel_buffer);
        let (reply, status) = oneshot::channel();
        self.send(Command::Subscribe {
            name: channel.to_owned(),
            options,
            sink,
            reply,
        })
        .await?;
        let status = status.await.map_err(|_| ClientError::Closed)?;
        Ok(Channel::new(
            Arc::from(channel),
            source,
            status,
            self.clone(),
        ))
    }

    /// Unsubscribes from a channel: every handle's stream ends, and `#unsubscribe` is sent if
    /// connected.
    pub async fn unsubscribe(&self, channel: &str) -> Result<(), ClientError> {
        self.send(Command::Unsubscribe {
            name: channel.to_owned(),
        })
        .await
    }

    /// Publishes to a channel without acknowledgement (`transmitPublish`).
    pub async fn publish(&self, channel: &str, data: impl Serialize) -> Result<(), ClientError> {
        let data = publish_data(&self.shared.options.decorate(channel), &data)?;
        self.send_event(
            "#publish",
            Some(data),
            None,
            self.shared.options.ack_timeout,
        )
        .await
    }

    /// Publishes to a channel and waits for the server's acknowledgement (`invokePublish`).
    pub async fn invoke_publish(
        &self,
        channel: &str,
        data: impl Serialize,
    ) -> Result<Option<Json>, InvokeError> {
        let data = publish_data(&self.shared.options.decorate(channel), &data)?;
        self.invoke_event("#publish", Some(data), self.shared.options.ack_timeout)
            .await
    }

    /// Publishes to a history channel and returns the position the server gave the
    /// publication (EXTENSIONS.md E2: the acknowledgement is sent once it is in the history).
    /// `Ok(None)` on channels without history.
    pub async fn invoke_publish_position(
        &self,
        channel: &str,
        data: impl Serialize,
    ) -> Result<Option<StreamPosition>, InvokeError> {
        let ack = self.invoke_publish(channel, data).await?;
        Ok(ack.and_then(|ack| ack.parse::<StreamPosition>().ok()))
    }

    // ---- presence ----

    /// Who is subscribed to a presence channel (`#presence`, EXTENSIONS.md E5). Only a client
    /// subscribed to the channel may ask; otherwise (or on a channel without presence) the
    /// server answers with a `PresenceError` ([`InvokeError::Remote`]).
    pub async fn presence(&self, channel: &str) -> Result<Presence, InvokeError> {
        let channel = self.shared.options.decorate(channel);
        let data = Json::from_text(&format!(r#"{{"channel":{}}}"#, Json::string(&channel)))
            .map_err(|e| ClientError::Encode(e.to_string()))?;
        let answer = self
            .invoke_event("#presence", Some(data), self.shared.options.ack_timeout)
            .await?;
        let answer = answer.unwrap_or(Json::NULL);
        answer.parse::<Presence>().map_err(|e| {
            InvokeError::Remote(ScError::new(
                "InvalidPresenceAnswer",
                format!("unexpected #presence answer {answer}: {e}"),
            ))
        })
    }

    /// Every `#presenceJoin` / `#presenceLeave` the server sends from now on (for all the
    /// client's presence channels), in order.
    pub fn presence_events(&self) -> PresenceEvents {
        let (sink, source) = sink::buffer(self.shared.options.receiver_buffer);
        self.shared.registry.lock().add_presence(sink);
        PresenceEvents::new(source)
    }

    /// Subscribes every pending channel now; needed only with `auto_subscribe_on_connect: false`.
    pub async fn process_pending_subscriptions(&self) -> Result<(), ClientError> {
        self.send(Command::ProcessPendingSubscriptions).await
    }

    // ---- server-initiated events ----

    /// A stream of the data of every server transmit named `event`. Several receivers for one
    /// name each get every message.
    pub fn receiver(&self, event: &str) -> Receiver {
        let (sink, source) = sink::buffer(self.shared.options.receiver_buffer);
        self.shared.registry.lock().add_receiver(event, sink);
        Receiver::new(event.to_owned(), source)
    }

    /// Calls `handler` with the data of every server transmit named `event` (on a task of its
    /// own, in order). Abort the returned handle to stop.
    pub fn on<F>(&self, event: &str, handler: F) -> JoinHandle<()>
    where
        F: Fn(Json) + Send + Sync + 'static,
    {
        let mut receiver = self.receiver(event);
        self.shared.runtime.spawn(async move {
            while let Some(data) = receiver.next().await {
                handler(data);
            }
        })
    }

    /// Answers server invokes named `procedure`: `Ok(data)` becomes `{"rid":n,"data":…}`
    /// (`Ok(None)`: `{"rid":n}`), `Err(error)` becomes `{"rid":n,"error":…}`. Each call runs on
    /// its own task. Replaces any previous handler for that name; without one, such invokes are
    /// not answered (as in the reference).
    pub fn procedure<F, Fut>(&self, procedure: &str, handler: F)
    where
        F: Fn(Option<Json>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Option<Json>, ScError>> + Send + 'static,
    {
        let boxed =
            Arc::new(move |data: Option<Json>| -> ProcedureFuture { Box::pin(handler(data)) });
        self.shared
            .registry
            .lock()
            .set_procedure(procedure, Some(boxed));
    }

    /// Removes the handler of `procedure`.
    pub fn remove_procedure(&self, procedure: &str) {
        self.shared.registry.lock().set_procedure(procedure, None);
    }

    // ---- auth ----

    /// Sends `#authenticate` with a signed token. On success the token is stored (even when the
    /// server says it is not valid yet) and the auth state follows `is_authenticated`; an error
    /// response makes the client unauthenticated.
    pub async fn authenticate(&self, signed_token: &str) -> Result<AuthStatus, InvokeError> {
        let (reply, rx) = oneshot::channel();
        let token = signed_token.to_owned();
        let data = Some(Json::string(signed_token));
        let reply = Reply::Authenticate { token, reply };
        self.send_event(
            "#authenticate",
            data,
            Some(reply),
            self.shared.options.ack_timeout,
        )
        .await?;
        rx.await
            .unwrap_or(Err(InvokeError::Client(ClientError::Closed)))
    }

    /// Deletes the stored token, sends `#removeAuthToken` (unless closed) and becomes
    /// unauthenticated.
    pub async fn deauthenticate(&self) -> Result<(), ClientError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Deauthenticate { reply }).await?;
        rx.await.unwrap_or(Err(ClientError::Closed))
    }

    /// The auth state.
    pub fn auth_state(&self) -> AuthState {
        self.shared.snapshot.borrow().auth_state
    }

    /// The signed token the client is authenticated with.
    pub fn signed_auth_token(&self) -> Option<String> {
        self.shared.snapshot.borrow().signed_token.clone()
    }

    /// The payload of the signed token, decoded but not verified.
    pub fn auth_token(&self) -> Option<serde_json::Value> {
        self.signed_auth_token().as_deref().and_then(decode_payload)
    }

    /// The token store.
    pub fn token_store(&self) -> &Arc<dyn TokenStore> {
        &self.shared.options.token_store
    }

    // ---- connection ----

    /// Closes the connection with `code` and `reason`. The reconnect rule applies to the code,
    /// as in the reference: 1000 and 4500+ stay closed, other codes reconnect. On a closed
    /// client this cancels a scheduled reconnect.
    pub async fn disconnect(&self, code: u16, reason: &str) -> Result<(), ClientError> {
        if !transport::sendable_close_code(code) {
            return Err(ClientError::InvalidCloseCode(code));
        }
        self.send(Command::Disconnect {
            code,
            reason: reason.to_owned(),
        })
        .await
    }

    /// `disconnect(1000)`: closes normally and stays closed (until the next emit or
    /// [`Client::reconnect`]).
    pub async fn close(&self) -> Result<(), ClientError> {
        self.disconnect(1000, "").await
    }

    /// Connects now if the client is closed: the first connection with `auto_connect: false`,
    /// after a [`Client::disconnect`], or to skip a scheduled reconnect delay. Does nothing
    /// while connecting or open.
    pub async fn reconnect(&self) -> Result<(), ClientError> {
        self.send(Command::Connect).await
    }

    /// The connection state.
    pub fn state(&self) -> ConnectionState {
        self.shared.snapshot.borrow().state
    }

    /// The socket id the server assigned in the current connection.
    pub fn id(&self) -> Option<String> {
        self.shared.snapshot.borrow().id.clone()
    }

    /// Waits until the connection is open (returns at once if it is).
    pub async fn connected(&self) -> Result<(), ClientError> {
        let mut snapshot = self.shared.snapshot.subscribe();
        snapshot
            .wait_for(|s| s.state == ConnectionState::Open)
            .await
            .map(drop)
            .map_err(|_| ClientError::Closed)
    }

    /// A stream of the client's events from now on.
    pub fn events(&self) -> Events {
        Events::new(self.shared.events.subscribe())
    }

    /// The options the client runs with.
    pub fn options(&self) -> &ClientOptions {
        &self.shared.options
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("snapshot", &*self.shared.snapshot.borrow())
            .finish_non_exhaustive()
    }
}

fn check_event_name(event: &str) -> Result<(), ClientError> {
    if event.starts_with('#') {
        Err(ClientError::ReservedEvent(event.to_owned()))
    } else {
        Ok(())
    }
}

fn encode(data: &impl Serialize) -> Result<Json, ClientError> {
    Json::encode(data).map_err(|e| ClientError::Encode(e.to_string()))
}

/// `{"channel":…,"data":…}`.
fn publish_data(channel: &str, data: &impl Serialize) -> Result<Json, ClientError> {
    let data = encode(data)?;
    Json::from_text(&format!(
        r#"{{"channel":{},"data":{}}}"#,
        Json::string(channel),
        data
    ))
    .map_err(|e| ClientError::Encode(e.to_string()))
}

/// Builds a [`Client`] option by option (the fields of [`ClientOptions`]).
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    url: String,
    options: ClientOptions,
}

impl ClientBuilder {
    /// Replaces all options.
    pub fn options(mut self, options: ClientOptions) -> Self {
        self.options = options;
        self
    }

    /// `ackTimeout`.
    pub fn ack_timeout(mut self, timeout: Duration) -> Self {
        self.options.ack_timeout = timeout;
        self
    }

    /// `connectTimeout`.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.options.connect_timeout = timeout;
        self
    }

    /// `autoConnect` (for [`ClientBuilder::spawn`]).
    pub fn auto_connect(mut self, enabled: bool) -> Self {
        self.options.auto_connect = enabled;
        self
    }

    /// `autoReconnect`.
    pub fn auto_reconnect(mut self, enabled: bool) -> Self {
        self.options.auto_reconnect = enabled;
        self
    }

    /// `autoReconnectOptions`.
    pub fn auto_reconnect_options(mut self, options: AutoReconnectOptions) -> Self {
        self.options.auto_reconnect_options = options;
        self
    }

    /// `autoSubscribeOnConnect`.
    pub fn auto_subscribe_on_connect(mut self, enabled: bool) -> Self {
        self.options.auto_subscribe_on_connect = enabled;
        self
    }

    /// `protocolVersion`.
    pub fn protocol_version(mut self, version: ProtocolVersion) -> Self {
        self.options.protocol_version = version;
        self
    }

    /// `pingTimeoutDisabled`.
    pub fn ping_timeout_disabled(mut self, disabled: bool) -> Self {
        self.options.ping_timeout_disabled = disabled;
        self
    }

    /// Adds a query parameter.
    pub fn query(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.options.query.push((key.into(), value.into()));
        self
    }

    /// The token store.
    pub fn token_store(mut self, store: impl TokenStore) -> Self {
        self.options.token_store = Arc::new(store);
        self
    }

    /// Per-channel-handle buffer capacity.
    pub fn channel_buffer(mut self, capacity: usize) -> Self {
        self.options.channel_buffer = capacity;
        self
    }

    /// Per-receiver buffer capacity.
    pub fn receiver_buffer(mut self, capacity: usize) -> Self {
        self.options.receiver_buffer = capacity;
        self
    }

    /// Events broadcast capacity.
    pub fn event_buffer(mut self, capacity: usize) -> Self {
        self.options.event_buffer = capacity;
        self
    }

    /// `codecEngine`: see [`ClientOptions::codec`].
    pub fn codec(mut self, codec: Codec) -> Self {
        self.options.codec = codec;
        self
    }

    /// `channelPrefix`: see [`ClientOptions::channel_prefix`].
    pub fn channel_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.options.channel_prefix = Some(prefix.into());
        self
    }

    /// `maxPayload`: see [`ClientOptions::max_payload`].
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.options.max_payload = bytes;
        self
    }

    /// [`Client::connect`] with these options.
    pub async fn connect(self) -> Result<Client, ClientError> {
        Client::connect(&self.url, self.options).await
    }

    /// [`Client::spawn`] with these options.
    pub fn spawn(self) -> Result<Client, ClientError> {
        Client::spawn(&self.url, self.options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_send<T: Send>() {}

    #[test]
    fn handles_cross_threads() {
        assert_send_sync::<Client>();
        assert_send::<Channel>();
        assert_send::<Events>();
        assert_send::<Receiver>();
    }

    #[test]
    fn publish_data_keeps_key_order() {
        let data = publish_data("news", &serde_json::json!({"headline": "x"})).unwrap();
        assert_eq!(data.get(), r#"{"channel":"news","data":{"headline":"x"}}"#);
        assert!(check_event_name("#publish").is_err());
        assert!(check_event_name("publish").is_ok());
    }
}
