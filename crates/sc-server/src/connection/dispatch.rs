//! Routing of inbound packets once the handshake is done: responses to the server's invokes,
//! protocol events (`#subscribe`, `#publish`, …) and application events (to handlers).
//!
//! Dispatch works on the socket and its heartbeat dialect; it knows nothing of the connection
//! task that calls it.

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use futures_util::FutureExt;
use sc_protocol::error::names;
use sc_protocol::frame::{PublishPacket, SubscribeData};
use sc_protocol::{
    CloseCode, EventPacket, HeartbeatDialect, Json, Packet, Position, Publication, ScError, encode,
};

use super::handshake;
use super::subscribe::{StreamedSubscribe, subscribe_ack, subscribe_plain};
use crate::handler::{Reply, Request};
use crate::middleware::{
    EventAction, InboundAction, InboundKind, PublishAction, SubscribeAction, inbound_block_error,
};
use crate::socket::{HANDLER_SCOPE, HandlerScope, HandlerSlot, Socket};
use crate::streams::parse_catchup;
use sc_broker::stream::PRESENCE_PREFIX;
use sc_broker::{BrokerError, PublishDone, PublishStart};

/// Whether to keep reading after a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Read on.
    Continue,
    /// Close the connection with this code (protocol-level close: empty reason).
    Close(CloseCode),
}

impl From<Result<(), CloseCode>> for Flow {
    fn from(result: Result<(), CloseCode>) -> Flow {
        match result {
            Ok(()) => Flow::Continue,
            Err(code) => Flow::Close(code),
        }
    }
}

/// How far [`on_packet`] got with a packet.
pub(crate) enum Step {
    /// Handled: this is what comes next.
    Done(Flow),
    /// The rest waits (for middleware, the broker, the auth engine, a handler slot): the caller
    /// finishes it with [`on_deferred`].
    Deferred(Deferred),
}

/// Events the socketcluster-server 14 socket reserves for local use; it drops them when a client
/// sends them (docs/protocol.md §11 rule 2). Applied to v1 connections.
const V14_RESERVED_INBOUND: &[&str] = &[
    "subscribe",
    "unsubscribe",
    "connect",
    "_connect",
    "disconnect",
    "_disconnect",
    "connectAbort",
    "_connectAbort",
    "close",
    "_close",
    "message",
    "error",
    "authStateChange",
    "authTokenSigned",
    "authenticate",
    "deauthenticate",
    "badAuthToken",
    "raw",
];

/// What is left of an event after [`on_event`]: the parts that wait (for middleware, the broker,
/// the auth engine) run in [`on_deferred`].
pub(crate) enum Deferred {
    Authenticate(EventPacket),
    Subscribe(EventPacket),
    Unsubscribe(EventPacket),
    Publish(PublishEvent),
    /// `#presence` (EXTENSIONS.md E5).
    Presence(EventPacket),
    /// An application event that goes through inbound middleware first.
    Application(EventPacket),
    /// An application event whose handler waits for a free slot (`inboundHandlerLimit`).
    Handler(EventPacket),
}

/// A client `#publish`: read in one pass ([`PublishPacket::decode`]), or an event packet whose
/// data is read now.
pub(crate) enum PublishEvent {
    Read(PublishPacket),
    Event(EventPacket),
}

impl PublishEvent {
    fn cid(&self) -> Option<u64> {
        match self {
            PublishEvent::Read(publish) => publish.cid(),
            PublishEvent::Event(event) => event.cid,
        }
    }
}

/// A `#publish` read in one pass from its frame: what [`on_packet`] and [`on_deferred`] do
/// with the same publish as an event packet. The token's expiry is checked at once; the rest is
/// the returned future (which holds only what a publish needs).
pub(crate) fn on_publish_read(
    socket: &Socket,
    publish: PublishPacket,
) -> impl Future<Output = Flow> + Send + '_ {
    socket.check_expiry();
    on_publish(socket, PublishEvent::Read(publish))
}

/// Handles a packet as far as it can without waiting. `dialect` is the connection's heartbeat
/// dialect, once known.
pub(crate) fn on_packet(
    socket: &Socket,
    dialect: Option<HeartbeatDialect>,
    packet: Packet,
) -> Step {
    match packet {
        Packet::Event(event) => on_event(socket, dialect, event),
        Packet::Response(response) => {
            let result = match response.error {
                Some(error) => Err(ScError::from_json(&error)),
                None => Ok(response.data),
            };
            socket.resolve_invoke(response.rid, result);
            Step::Done(Flow::Continue)
        }
        Packet::Raw(bytes) => Step::Done(on_raw(socket, bytes)),
    }
}

/// Handles an event as far as it can without waiting: most events (every application event when
/// no inbound middleware is registered) are done here; the others come back as [`Deferred`].
fn on_event(socket: &Socket, dialect: Option<HeartbeatDialect>, event: EventPacket) -> Step {
    match event.event.as_str() {
        // A repeated handshake is ignored (docs/protocol.md §4.7).
        "#handshake" => return Step::Done(Flow::Continue),
        "#authenticate" => return Step::Deferred(Deferred::Authenticate(event)),
        "#removeAuthToken" => {
            socket.clear_auth();
            return Step::Done(Flow::Continue);
        }
        _ => {}
    }
    // Every other event first checks the token's expiry (docs/protocol.md §8.8), then proceeds.
    socket.check_expiry();
    match event.event.as_str() {
        "#subscribe" => Step::Deferred(Deferred::Subscribe(event)),
        "#unsubscribe" => Step::Deferred(Deferred::Unsubscribe(event)),
        "#publish" => Step::Deferred(Deferred::Publish(PublishEvent::Event(event))),
        "#presence" => Step::Deferred(Deferred::Presence(event)),
        // A v1 client's way to close (socketcluster-server 14); v15+ ignores it (TV-24).
        "#disconnect" if dialect != Some(HeartbeatDialect::V2) => {
            Step::Done(on_client_disconnect(socket, dialect, event))
        }
        name if name.starts_with('#') => Step::Done(Flow::Continue),
        name if dialect == Some(HeartbeatDialect::V1) && V14_RESERVED_INBOUND.contains(&name) => {
            Step::Done(Flow::Continue)
        }
        _ if socket
            .server()
            .middleware()
            .has_inbound_event(event.cid.is_some()) =>
        {
            Step::Deferred(Deferred::Application(event))
        }
        _ => match socket.try_handler_slot() {
            Some(slot) => Step::Done(run_handler(
                socket,
                event.event,
                event.data,
                event.cid,
                slot,
            )),
            None => Step::Deferred(Deferred::Handler(event)),
        },
    }
}

/// The waiting part of an event that [`on_event`] deferred.
pub(crate) async fn on_deferred(socket: &Socket, deferred: Deferred) -> Flow {
    match deferred {
        Deferred::Authenticate(event) => handshake::on_authenticate(socket, event).await.into(),
        Deferred::Subscribe(event) => on_subscribe(socket, event).await,
        Deferred::Unsubscribe(event) => on_unsubscribe(socket, event).await,
        Deferred::Publish(event) => on_publish(socket, event).await,
        Deferred::Presence(event) => on_presence(socket, event).await,
        Deferred::Application(event) => on_application_event(socket, event).await,
        Deferred::Handler(event) => {
            let slot = socket.handler_slot().await;
            run_handler(socket, event.event, event.data, event.cid, slot)
        }
    }
}

/// Runs inbound middleware if any is registered; a block is answered (when the client waits for
/// an answer) and yields `None`.
async fn run_inbound(
    socket: &Socket,
    cid: Option<u64>,
    action: InboundAction,
) -> Option<InboundAction> {
    let server = socket.server();
    let kind = action.kind();
    if !server.middleware().has_inbound_for(kind) {
        return Some(action);
    }
    match server
        .middleware()
        .run_inbound(action, server.options().durations().middleware_timeout)
        .await
    {
        Ok(action) => Some(action),
        Err(block) => {
            let error = inbound_block_error(block, socket.dialect(), kind);
            tracing::debug!(socket = %socket.id(), action = kind.type_name(), %error, "blocked by middleware");
            respond(socket, cid, Err(&error));
            None
        }
    }
}

/// A raw (non-packet) message: logged and ignored.
pub(crate) fn on_raw(socket: &Socket, bytes: Bytes) -> Flow {
    tracing::trace!(socket = %socket.id(), len = bytes.len(), "raw message");
    Flow::Continue
}

/// Answers `cid` (if the client asked for an answer) with `result`.
fn respond(socket: &Socket, cid: Option<u64>, result: Result<Option<&Json>, &ScError>) {
    let Some(cid) = cid else { return };
    let frame = match result {
        Ok(data) => encode::response(cid, data.map(Json::get)),
        Err(error) => encode::error_response(cid, error.to_json().get(), None),
    };
    let _ = socket.send_frame(frame);
}

/// Answers `cid` with the error `name`: `message`, and reads on.
fn respond_error(socket: &Socket, cid: Option<u64>, name: &str, message: String) -> Flow {
    respond(socket, cid, Err(&ScError::new(name, message)));
    Flow::Continue
}

/// `#subscribe` (docs/protocol.md §7.1–7.2).
async fn on_subscribe(socket: &Socket, event: EventPacket) -> Flow {
    let cid = event.cid;
    let Some(subscribe) = SubscribeData::parse(event.data.as_ref()) else {
        return respond_error(
            socket,
            cid,
            names::INVALID_ACTION,
            "Subscribe channel name was malformatted".into(),
        );
    };
    if subscribe.channel.starts_with(PRESENCE_PREFIX) {
        return respond_error(
            socket,
            cid,
            names::INVALID_ACTION,
            format!("Channel names starting with {PRESENCE_PREFIX} are reserved"),
        );
    }
    // Positions are checked before middleware, as v15+ validates a #subscribe (EXTENSIONS.md E7).
    let streams = socket.server().hub().streams();
    let history = streams.history(&subscribe.channel);
    let catchup = match history.map(|_| parse_catchup(subscribe.data.as_ref())) {
        Some(Err(field)) => {
            let message = format!(
                "Invalid {field} option when subscribing to the {} channel",
                subscribe.channel
            );
            tracing::debug!(socket = %socket.id(), channel = %subscribe.channel, field, "bad subscribe option");
            return respond_error(socket, cid, names::INVALID_ARGUMENTS, message);
        }
        Some(Ok(catchup)) => Some(catchup),
        None => None,
    };
    let action = InboundAction::Subscribe(SubscribeAction {
        socket: socket.clone(),
        channel: subscribe.channel,
        data: subscribe.data,
        wait_for_auth: subscribe.wait_for_auth,
    });
    let Some(InboundAction::Subscribe(subscribe_action)) = run_inbound(socket, cid, action).await
    else {
        return Flow::Continue;
    };
    let channel: Arc<str> = Arc::from(subscribe_action.channel.as_str());
    let limit = socket.server().options().socket_channel_limit;
    let (already, count) = socket.subscription_state(&channel);
    // The reference checks the limit before "already subscribed".
    if let Some(limit) = limit
        && count >= limit
    {
        let message = format!(
            "Failed to subscribe socket to the {channel} channel - InvalidActionError: Socket {} tried to exceed the channel subscription limit of {limit}",
            socket.id()
        );
        return respond_error(socket, cid, names::BROKER, message);
    }
    let subscribed = match (history, catchup) {
        (Some(policy), Some(catchup)) => {
            let streamed = StreamedSubscribe {
                channel: &channel,
                policy,
                catchup,
                cid,
                // v1 batch channels get their answer inside a batch array (which a batching
                // socket builds anyway).
                batch: subscribe.batch && !socket.is_batching(),
                already,
            };
            streamed.run(socket).await
        }
        _ if already => Ok(()),
        _ => subscribe_plain(socket, &channel).await,
    };
    match subscribed {
        Ok(()) => {
            if history.is_none()
                && let Some(cid) = cid
            {
                let batch = subscribe.batch && !socket.is_batching();
                let _ = socket.send_frame(subscribe_ack(cid, None, batch));
            }
        }
        Err(error) => {
            tracing::warn!(socket = %socket.id(), %channel, %error, "subscribe failed at the broker");
            let message = format!("Failed to subscribe socket to the {channel} channel - {error}");
            return respond_error(socket, cid, names::BROKER, message);
        }
    }
    Flow::Continue
}

/// `#unsubscribe` (docs/protocol.md §7.3).
async fn on_unsubscribe(socket: &Socket, event: EventPacket) -> Flow {
    let cid = event.cid;
    let Some(channel) = event.data.as_ref().and_then(Json::as_string) else {
        return respond_error(
            socket,
            cid,
            names::INVALID_ACTION,
            "Unsubscribe channel name was malformatted".into(),
        );
    };
    if !socket.unsubscribe_channel(channel.as_str()).await {
        let message = format!(
            "Failed to unsubscribe socket from the {channel} channel - InvalidActionError: Socket {} tried to unsubscribe from a channel which it is not subscribed to",
            socket.id()
        );
        return respond_error(socket, cid, names::BROKER, message);
    }
    respond(socket, cid, Ok(None));
    Flow::Continue
}

/// `#publish` from a client (docs/protocol.md §7.4).
async fn on_publish(socket: &Socket, publish: PublishEvent) -> Flow {
    let cid = publish.cid();
    let server = socket.server();
    if !server.options().allow_client_publish {
        return respond_error(
            socket,
            cid,
            names::INVALID_ACTION,
            "Client publish feature is disabled".into(),
        );
    }
    let publish = match publish {
        PublishEvent::Read(publish) => Some(publish),
        PublishEvent::Event(event) => PublishPacket::from_event(&event),
    };
    let Some(mut publish) = publish else {
        return respond_error(
            socket,
            cid,
            names::INVALID_ACTION,
            "Publish channel name was malformatted".into(),
        );
    };
    if publish.channel().starts_with(PRESENCE_PREFIX) {
        return respond_error(
            socket,
            cid,
            names::INVALID_ACTION,
            format!("Channel names starting with {PRESENCE_PREFIX} are reserved"),
        );
    }
    if server.middleware().has_inbound_for(InboundKind::PublishIn) {
        let action = InboundAction::PublishIn(PublishAction {
            socket: socket.clone(),
            channel: publish.channel().to_owned(),
            data: publish.data().cloned(),
        });
        let Some(InboundAction::PublishIn(action)) = run_inbound(socket, cid, action).await else {
            return Flow::Continue;
        };
        publish = publish.with(&action.channel, action.data);
    }
    // The delivery frame, spliced from the parsed channel and data.
    let publication = publish.publication();
    let hub = server.hub();
    let published = match hub.streams().history(publish.channel()) {
        None => match start_publish(socket, cid, &publication.channel_arc().clone(), publication) {
            Started::Answering => return Flow::Continue,
            Started::Done(result) => result.map(|()| None),
            Started::Wait(publication) => hub.broker().publish(publication).await.map(|()| None),
        },
        Some(policy) => hub
            .broker()
            .publish_stored(publication, policy)
            .await
            .map(Some),
    };
    publish_done(socket, cid, publish.channel(), published).await;
    Flow::Continue
}

/// What [`start_publish`] did with a publication.
enum Started {
    /// Placed; the broker answers the client when it has the publication.
    Answering,
    /// Published already (or failed): pace and answer now.
    Done(Result<(), BrokerError>),
    /// Not started: publish it and wait for the outcome before reading on.
    Wait(Publication),
}

/// Starts a client's publish in its place in the socket's order (see
/// [`Broker::start_publish_then`](sc_broker::Broker::start_publish_then)), so that the connection
/// reads on while the broker answers. The answer is a callback that the broker calls with the
/// outcome (on the cluster link, from the link's reader: no task, timer or channel per publish);
/// it holds one of the socket's handler slots (`inboundHandlerLimit`) until the client is
/// answered, which bounds how many publishes wait at once. A publisher is still paced by its
/// local subscribers: when one of them is congested, the callback paces in a task of its own
/// before it answers (so the pacing holds the slot, `inboundHandlerLimit` publishes later).
/// Gives the publication back when the broker cannot place it at once or every slot is taken.
fn start_publish(
    socket: &Socket,
    cid: Option<u64>,
    channel: &Arc<str>,
    publication: Publication,
) -> Started {
    let Some(slot) = socket.try_handler_slot() else {
        return Started::Wait(publication);
    };
    let mut slot = Some(slot);
    let mut make_done = || -> PublishDone {
        let socket = socket.clone();
        let channel = channel.clone();
        let slot = slot.take();
        Box::new(move |result: Result<(), BrokerError>| {
            answer_later(socket, cid, channel, result, slot);
        })
    };
    match socket
        .server()
        .hub()
        .broker()
        .start_publish_then(publication, &mut make_done)
    {
        PublishStart::Pending => Started::Answering,
        // Done already (delivered on this worker alone, or failed): paced and answered here.
        PublishStart::Done(result) => Started::Done(result),
        PublishStart::Refused(publication) => Started::Wait(publication),
    }
}

/// A started publish's outcome, from the broker: answers the client at once unless a local
/// subscriber of the channel is congested, in which case a task paces the publisher first.
fn answer_later(
    socket: Socket,
    cid: Option<u64>,
    channel: Arc<str>,
    result: Result<(), BrokerError>,
    slot: Option<HandlerSlot>,
) {
    let hub = socket.server().hub();
    if result.is_ok() && hub.channel_congested(&channel) {
        tokio::spawn(async move {
            publish_done(&socket, cid, &channel, Ok(None)).await;
            drop(slot);
        });
        return;
    }
    answer_publish(&socket, cid, &channel, result.map(|()| None));
    drop(slot);
}

/// Paces the publisher after a successful publish, then answers the client.
async fn publish_done(
    socket: &Socket,
    cid: Option<u64>,
    channel: &str,
    published: Result<Option<Position>, BrokerError>,
) {
    if published.is_ok() {
        // The client's next packets wait while a local subscriber is half a queue behind.
        socket.server().hub().pace(channel).await;
    }
    answer_publish(socket, cid, channel, published);
}

/// Answers a client's publish: its position on a channel with history, or the broker's error.
fn answer_publish(
    socket: &Socket,
    cid: Option<u64>,
    channel: &str,
    published: Result<Option<Position>, BrokerError>,
) {
    match published {
        Ok(None) => respond(socket, cid, Ok(None)),
        Ok(Some(position)) => {
            if let Some(cid) = cid {
                let _ = socket.send_frame(encode::response(cid, Some(&position.to_json())));
            }
        }
        Err(error) => {
            tracing::warn!(socket = %socket.id(), channel, %error, "publish failed at the broker");
            let message = format!("Failed to publish to the {channel} channel - {error}");
            respond_error(socket, cid, names::BROKER, message);
        }
    }
}

/// `#presence` (EXTENSIONS.md E5): who is in a presence channel the socket is subscribed to.
async fn on_presence(socket: &Socket, event: EventPacket) -> Flow {
    let cid = event.cid;
    #[derive(serde::Deserialize)]
    struct Query {
        channel: serde_json::Value,
    }
    let channel = event
        .data
        .as_ref()
        .and_then(|d| d.parse::<Query>().ok())
        .and_then(|q| q.channel.as_str().map(str::to_owned));
    let Some(channel) = channel else {
        return respond_error(
            socket,
            cid,
            names::INVALID_ARGUMENTS,
            "The #presence query needs a channel name string".into(),
        );
    };
    let hub = socket.server().hub();
    if !hub.streams().presence(&channel) {
        return respond_error(
            socket,
            cid,
            PRESENCE_ERROR,
            format!("The {channel} channel does not keep presence"),
        );
    }
    if !socket.is_subscribed(&channel) {
        return respond_error(
            socket,
            cid,
            PRESENCE_ERROR,
            format!(
                "Socket {} is not subscribed to the {channel} channel",
                socket.id()
            ),
        );
    }
    match hub.broker().presence(&channel).await {
        Ok(info) => {
            if let Some(cid) = cid {
                let _ = socket.send_frame(encode::response(cid, Some(&info.to_json())));
            }
        }
        Err(error) => {
            tracing::warn!(socket = %socket.id(), %channel, %error, "presence query failed at the broker");
            let error = ScError::new(
                names::BROKER,
                format!("Failed to read the presence of the {channel} channel - {error}"),
            );
            respond(socket, cid, Err::<Option<&Json>, _>(&error));
        }
    }
    Flow::Continue
}

/// The error name of a refused `#presence` query.
const PRESENCE_ERROR: &str = "PresenceError";

/// `#disconnect` from a v1 client: close with its code (socketcluster-server 14 behaviour).
fn on_client_disconnect(
    socket: &Socket,
    dialect: Option<HeartbeatDialect>,
    event: EventPacket,
) -> Flow {
    if dialect.is_none() {
        socket.set_dialect(HeartbeatDialect::V1);
    }
    #[derive(serde::Deserialize)]
    struct Fields {
        code: Option<u16>,
    }
    let code = event
        .data
        .as_ref()
        .and_then(|d| d.parse::<Fields>().ok())
        .and_then(|f| f.code)
        .filter(|c| crate::ws::is_sendable_close_code(*c))
        .unwrap_or(1000);
    Flow::Close(CloseCode(code))
}

/// An application event with inbound middleware: run the middleware, then the handler.
async fn on_application_event(socket: &Socket, event: EventPacket) -> Flow {
    let cid = event.cid;
    let action = EventAction {
        socket: socket.clone(),
        event: event.event,
        data: event.data,
        is_invoke: cid.is_some(),
    };
    let action = if cid.is_some() {
        InboundAction::Invoke(action)
    } else {
        InboundAction::Transmit(action)
    };
    match run_inbound(socket, cid, action).await {
        Some(InboundAction::Invoke(action) | InboundAction::Transmit(action)) => {
            let slot = socket.handler_slot().await;
            run_handler(socket, action.event, action.data, cid, slot)
        }
        _ => Flow::Continue,
    }
}

/// Runs the handler of an application event and answers if the client asked for a response.
///
/// A handler that completes at once is answered inline (no task spawned, order preserved);
/// one that waits continues in its own task so the socket keeps processing. That task holds
/// `slot` until the handler is done: with every slot taken, the connection waits for one before
/// it reads further (per-socket backpressure, `inboundHandlerLimit`).
fn run_handler(
    socket: &Socket,
    event: String,
    data: Option<Json>,
    cid: Option<u64>,
    slot: HandlerSlot,
) -> Flow {
    let Some(handler) = socket.handler(&event) else {
        // Nobody handles it: never answered, as in SocketCluster (the client's ack times out).
        return Flow::Continue;
    };
    let request = Request {
        socket: socket.clone(),
        event,
        data,
        cid,
    };
    let event_name = request.event.clone();
    let started = std::time::Instant::now();
    // A handler that owes a response and disconnects its socket gets its response out first.
    let scope = cid.map(|_| HandlerScope::new(socket));
    let call = handler.call(request);
    let call: crate::handler::BoxFuture<Result<Reply, ScError>> = match &scope {
        Some(scope) => Box::pin(HANDLER_SCOPE.scope(scope.clone(), call)),
        None => call,
    };
    let mut future = std::panic::AssertUnwindSafe(call).catch_unwind();
    let waker = futures_util::task::noop_waker();
    let mut context = std::task::Context::from_waker(&waker);
    match future.poll_unpin(&mut context) {
        Poll::Ready(outcome) => {
            socket.server().metrics().handler_time(started.elapsed());
            answer(socket, cid, &event_name, outcome, scope.as_ref());
        }
        Poll::Pending => {
            let socket = socket.clone();
            tokio::spawn(async move {
                let outcome = future.await;
                socket.server().metrics().handler_time(started.elapsed());
                answer(&socket, cid, &event_name, outcome, scope.as_ref());
                drop(slot);
            });
        }
    }
    Flow::Continue
}

type Outcome = Result<Result<Reply, ScError>, Box<dyn std::any::Any + Send>>;

fn answer(
    socket: &Socket,
    cid: Option<u64>,
    event: &str,
    outcome: Outcome,
    scope: Option<&HandlerScope>,
) {
    match outcome {
        Ok(Ok(reply)) => respond(socket, cid, Ok(reply.0.as_ref())),
        Ok(Err(error)) => respond(socket, cid, Err(&error)),
        Err(_) => {
            tracing::error!(socket = %socket.id(), event, "event handler panicked");
            respond(
                socket,
                cid,
                Err(&ScError::new(
                    "HandlerError",
                    format!("The {event} handler failed"),
                )),
            );
        }
    }
    if let Some((code, reason)) = scope.and_then(HandlerScope::take_deferred) {
        socket.disconnect(code, &reason);
    }
}
