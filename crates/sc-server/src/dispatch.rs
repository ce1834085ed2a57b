//! Routing of inbound events once the handshake is done: protocol events (`#subscribe`,
//! `#publish`, …) and application events (to handlers).

use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use futures_util::FutureExt;
use sc_protocol::error::names;
use sc_protocol::frame::{PublishData, SubscribeData};
use sc_protocol::{CloseCode, EventPacket, HeartbeatDialect, Json, Publication, ScError, encode};

use crate::auth::{AuthToken, TokenError};
use crate::connection::{Connection, Flow};
use crate::handler::{Reply, Request};
use crate::middleware::{
    AuthenticateAction, EventAction, InboundAction, PublishAction, SubscribeAction,
    inbound_block_error,
};
use crate::server::AuthEvent;
use crate::socket::{HANDLER_SCOPE, HandlerScope, HandlerSlot, Socket};
use crate::streams::parse_catchup;
use sc_broker::stream::PRESENCE_PREFIX;

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
    Publish(EventPacket),
    /// `#presence` (EXTENSIONS.md E5).
    Presence(EventPacket),
    /// An application event that goes through inbound middleware first.
    Application(EventPacket),
    /// An application event whose handler waits for a free slot (`inboundHandlerLimit`).
    Handler(EventPacket),
}

/// Handles an event as far as it can without waiting: most events (every application event when
/// no inbound middleware is registered) are done here; the others come back as [`Deferred`].
pub(crate) fn on_event(connection: &mut Connection, event: EventPacket) -> Result<Flow, Deferred> {
    match event.event.as_str() {
        // A repeated handshake is ignored (docs/protocol.md §4.7).
        "#handshake" => return Ok(Flow::Continue),
        "#authenticate" => return Err(Deferred::Authenticate(event)),
        "#removeAuthToken" => {
            connection.socket.clear_auth();
            return Ok(Flow::Continue);
        }
        _ => {}
    }
    // Every other event first checks the token's expiry (docs/protocol.md §8.8), then proceeds.
    connection.socket.check_expiry();
    match event.event.as_str() {
        "#subscribe" => Err(Deferred::Subscribe(event)),
        "#unsubscribe" => Err(Deferred::Unsubscribe(event)),
        "#publish" => Err(Deferred::Publish(event)),
        "#presence" => Err(Deferred::Presence(event)),
        // A v1 client's way to close (socketcluster-server 14); v15+ ignores it (TV-24).
        "#disconnect" if connection.dialect() != Some(HeartbeatDialect::V2) => {
            Ok(on_client_disconnect(connection, event))
        }
        name if name.starts_with('#') => Ok(Flow::Continue),
        name if connection.dialect() == Some(HeartbeatDialect::V1)
            && V14_RESERVED_INBOUND.contains(&name) =>
        {
            Ok(Flow::Continue)
        }
        _ if connection
            .socket
            .0
            .server
            .middleware
            .has_inbound_event(event.cid.is_some()) =>
        {
            Err(Deferred::Application(event))
        }
        _ => match connection.socket.try_handler_slot() {
            Some(slot) => Ok(run_handler(
                &connection.socket,
                event.event,
                event.data,
                event.cid,
                slot,
            )),
            None => Err(Deferred::Handler(event)),
        },
    }
}

/// The waiting part of an event that [`on_event`] deferred.
pub(crate) async fn on_deferred(socket: &Socket, deferred: Deferred) -> Flow {
    match deferred {
        Deferred::Authenticate(event) => on_authenticate(socket, event).await,
        Deferred::Subscribe(event) => on_subscribe(socket, event).await,
        Deferred::Unsubscribe(event) => on_unsubscribe(socket, event).await,
        Deferred::Publish(event) => on_publish(socket, event).await,
        Deferred::Presence(event) => crate::streams_dispatch::on_presence(socket, event).await,
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
    let server = &socket.0.server;
    if !server.middleware.has_inbound_for(&action) {
        return Some(action);
    }
    let kind = action.clone();
    match server
        .middleware
        .run_inbound(action, server.options.middleware_timeout())
        .await
    {
        Ok(action) => Some(action),
        Err(block) => {
            let error = inbound_block_error(block, socket.dialect(), &kind);
            tracing::debug!(socket = %socket.id(), action = kind.type_name(), %error, "blocked by middleware");
            respond(socket, cid, Err(&error));
            None
        }
    }
}

/// Verifies a client's token and runs authenticate middleware. On failure: the error as the client
/// sees it and whether the token is bad (to be removed).
pub(crate) async fn verify_and_authenticate(
    socket: &Socket,
    token: &Json,
) -> Result<AuthToken, (ScError, bool)> {
    let server = &socket.0.server;
    let v2_fields = socket.dialect() != Some(HeartbeatDialect::V1);
    let token = match server.auth.verify(token) {
        Ok(token) => token,
        Err(error) => {
            report_bad_token(socket, &error);
            return Err((error.to_sc_error(v2_fields), error.is_bad_token()));
        }
    };
    let action = InboundAction::Authenticate(AuthenticateAction {
        socket: socket.clone(),
        token,
    });
    let kind = action.clone();
    match server
        .middleware
        .run_inbound(action, server.options.middleware_timeout())
        .await
    {
        Ok(InboundAction::Authenticate(action)) => Ok(action.token),
        Ok(_) => Err((
            ScError::new(
                names::AUTH_TOKEN,
                "authenticate middleware returned another action",
            ),
            false,
        )),
        Err(block) => {
            let error = inbound_block_error(block, socket.dialect(), &kind);
            let bad = error.field("isBadToken").is_some_and(|v| v.get() == "true");
            // `isBadToken` is how our middleware flags a bad token (v15+ style); socketcluster-server
            // 14 took that flag as `next(err, true)`, so v1 clients get the error without it (TV-14).
            let error = if socket.dialect() == Some(HeartbeatDialect::V1) {
                error.without("isBadToken")
            } else {
                error
            };
            Err((error, bad))
        }
    }
}

fn report_bad_token(socket: &Socket, error: &TokenError) {
    if error.is_bad_token() {
        tracing::debug!(socket = %socket.id(), %error, "bad auth token");
        socket
            .0
            .server
            .emit_auth_event(socket, AuthEvent::BadToken(error));
    }
}

/// `#authenticate` (docs/protocol.md §8.7).
async fn on_authenticate(socket: &Socket, event: EventPacket) -> Flow {
    let Some(cid) = event.cid else {
        return Flow::Close(CloseCode::HANDSHAKE_REJECTED);
    };
    let v1 = socket.dialect() == Some(HeartbeatDialect::V1);
    let token = event.data.unwrap_or(Json::NULL);
    match verify_and_authenticate(socket, &token).await {
        Ok(token) => {
            socket.set_auth(Arc::new(token));
            let _ = socket.send_frame(encode::response(
                cid,
                Some(r#"{"isAuthenticated":true,"authError":null}"#),
            ));
        }
        Err((error, false)) => {
            // Not a bad token (e.g. not active yet): an answer, not an error; the client keeps it.
            socket.clear_auth();
            let data = format!(
                r#"{{"isAuthenticated":false,"authError":{}}}"#,
                error.to_json()
            );
            let _ = socket.send_frame(encode::response(cid, Some(&data)));
        }
        Err((error, true)) => {
            let remove = encode::event("#removeAuthToken", v1.then_some("null"), None);
            socket.clear_auth();
            if v1 {
                let data = format!(
                    r#"{{"isAuthenticated":false,"authError":{}}}"#,
                    error.to_json()
                );
                let _ = socket.send_frame(remove);
                let _ = socket.send_frame(encode::error_response(
                    cid,
                    error.to_json().get(),
                    Some(&data),
                ));
            } else {
                let _ = socket.send_frame(encode::error_response(cid, error.to_json().get(), None));
                let _ = socket.send_frame(remove);
            }
        }
    }
    Flow::Continue
}

pub(crate) fn on_raw(socket: &Socket, bytes: Bytes) -> Flow {
    tracing::trace!(socket = %socket.id(), len = bytes.len(), "raw message");
    Flow::Continue
}

pub(crate) fn respond(socket: &Socket, cid: Option<u64>, result: Result<Option<&Json>, &ScError>) {
    let Some(cid) = cid else { return };
    let frame = match result {
        Ok(data) => encode::response(cid, data.map(Json::get)),
        Err(error) => encode::error_response(cid, error.to_json().get(), None),
    };
    let _ = socket.send_frame(frame);
}

pub(crate) fn respond_error(
    socket: &Socket,
    cid: Option<u64>,
    name: &str,
    message: String,
) -> Flow {
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
    let streams = socket.0.server.hub.streams();
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
    let limit = socket.0.server.options.socket_channel_limit;
    let (already, count) = {
        let channels = socket.0.channels.lock();
        (channels.contains(&channel), channels.len())
    };
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
            let streamed = crate::streams_dispatch::StreamedSubscribe {
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
        _ => crate::streams_dispatch::subscribe_plain(socket, &channel).await,
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

/// A subscribe acknowledgement; v1 batch channels get it inside a batch array.
pub(crate) fn subscribe_ack(cid: u64, data: Option<&str>, batch: bool) -> Bytes {
    let ack = encode::response(cid, data);
    if batch { encode::batch(&[ack]) } else { ack }
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
    let removed = socket.0.channels.lock().remove(channel.as_str());
    if !removed {
        let message = format!(
            "Failed to unsubscribe socket from the {channel} channel - InvalidActionError: Socket {} tried to unsubscribe from a channel which it is not subscribed to",
            socket.id()
        );
        return respond_error(socket, cid, names::BROKER, message);
    }
    socket
        .0
        .server
        .hub
        .unsubscribe_socket(socket, &channel)
        .await;
    respond(socket, cid, Ok(None));
    Flow::Continue
}

/// `#publish` from a client (docs/protocol.md §7.4).
async fn on_publish(socket: &Socket, event: EventPacket) -> Flow {
    let cid = event.cid;
    if !socket.0.server.options.allow_client_publish {
        return respond_error(
            socket,
            cid,
            names::INVALID_ACTION,
            "Client publish feature is disabled".into(),
        );
    }
    let Some(publish) = PublishData::parse(event.data.as_ref()) else {
        return respond_error(
            socket,
            cid,
            names::INVALID_ACTION,
            "Publish channel name was malformatted".into(),
        );
    };
    if publish.channel.starts_with(PRESENCE_PREFIX) {
        return respond_error(
            socket,
            cid,
            names::INVALID_ACTION,
            format!("Channel names starting with {PRESENCE_PREFIX} are reserved"),
        );
    }
    let action = InboundAction::PublishIn(PublishAction {
        socket: socket.clone(),
        channel: publish.channel,
        data: publish.data,
    });
    let Some(InboundAction::PublishIn(publish)) = run_inbound(socket, cid, action).await else {
        return Flow::Continue;
    };
    let publication = Publication::new(&publish.channel, publish.data.as_ref());
    let hub = &socket.0.server.hub;
    let published = match hub.streams().history(&publish.channel) {
        None => hub.broker().publish(publication).await.map(|()| None),
        Some(policy) => hub
            .broker()
            .publish_stored(publication, policy)
            .await
            .map(Some),
    };
    match published {
        Ok(None) => respond(socket, cid, Ok(None)),
        Ok(Some(position)) => {
            if let Some(cid) = cid {
                let _ = socket.send_frame(encode::response(cid, Some(&position.to_json())));
            }
        }
        Err(error) => {
            tracing::warn!(socket = %socket.id(), channel = %publish.channel, %error, "publish failed at the broker");
            let message = format!(
                "Failed to publish to the {} channel - {error}",
                publish.channel
            );
            respond_error(socket, cid, names::BROKER, message);
        }
    }
    Flow::Continue
}

/// `#disconnect` from a v1 client: close with its code (socketcluster-server 14 behaviour).
fn on_client_disconnect(connection: &mut Connection, event: EventPacket) -> Flow {
    connection.settle_dialect(HeartbeatDialect::V1);
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
            socket.0.server.metrics.handler_time(started.elapsed());
            answer(socket, cid, &event_name, outcome, scope.as_ref());
        }
        Poll::Pending => {
            let socket = socket.clone();
            tokio::spawn(async move {
                let outcome = future.await;
                socket.0.server.metrics.handler_time(started.elapsed());
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
